// A parameter store: one parameter group's flat typed buffers (parameters, gradients, fp32
// masters, optimizer states), laid out by its Layout, reduced over its own communicator (the
// dense group over dp; experts over expert-dp later). A ZeRO stage is its residency policy: which
// of those buffers are whole and which are this rank's partition.
//
//   residency        params at rest     gradients                   masters + optimizer states
//   stage 0          whole              whole                       whole
//   stage 1          whole              whole + partition           partition
//   stage 2          whole              partition (+ pooled units)  partition
//   stage 3          partition          partition (+ pooled units)  partition
//
// Precision (DeepSpeed's split). fp32 training: the parameters are what the optimizer updates.
// bf16/fp16 training: parameters at rest are 16-bit (2 bytes), the optimizer updates fp32 masters
// of the owned elements (4 bytes) with fp32 states (8 for Adam), gradients are stored in
// data_types.grad_accum_dtype (default the parameters' dtype): 2 + 2 + 12 bytes per parameter,
// split by the residency. While a unit runs, the parameters its kernels read in fp32 are widened
// into a pooled working copy (model::DTypePolicy::Widened: biases, norm weights); the GEMM weights
// and embedding tables (AsStored) are handed to the kernels as the 16-bit views they are. A unit's
// gradients are computed into a pooled fp32 buffer during its backward and then rounded into the
// gradient storage (stages 0-1: += into the whole buffer) or reduce-scattered (stages 2-3). After
// the optimizer step the owned masters are rounded back to 16 bits, and the all-gathers move
// 16-bit parameters. Unless communication_data_type says otherwise gradients travel in their
// storage dtype, as in DeepSpeed.
//
// Per step (gradient accumulation over GAS micro-batches, DeepSpeed's averaging: gradients are
// summed over the group and scaled by 1/W; gradient_predivide_factor f divides by f before the sum
// and multiplies by f/W after; prescale_gradients divides by W before):
//   stage 0: at the boundary the gradients are all-reduced in buckets of reduce_bucket_size; the
//            optimizer updates everything.
//   stage 1: at the boundary each unit's gradients are reduce-scattered into the partition
//            gradient; the optimizer updates the owned chunks; every unit is then all-gathered in
//            place, at most allgather_bucket_size elements in flight.
//   stage 2: a unit's gradients live in a pooled buffer during its backward, are reduce-scattered
//            into the partition gradient right after (overlap_comm: non-blocking, at most two in
//            flight). Optimizer and all-gather as stage 1.
//   stage 3: as stage 2, and a unit is all-gathered into a pooled buffer before its forward and
//            backward (ReduceGrads, Gather, Prefetch, Release of the instruction list,
//            src/engine/schedule.hpp); prefetch within stage3_prefetch_bucket_size and
//            stage3_max_live_parameters; units of at most stage3_param_persistence_threshold
//            elements stay gathered (refreshed after each step). Granularity is the unit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "base/tensor.hpp"
#include "comm/communicator.hpp"
#include "io/spill.hpp"
#include "kernels/context.hpp"
#include "src/config/ds_config.hpp"
#include "src/engine/layout.hpp"
#include "src/engine/schedule.hpp"

namespace dmpi::engine {

struct Residency {
  bool params_partitioned = false;  // stage 3
  bool grads_partitioned = false;   // stages 2-3
  bool states_partitioned = false;  // stages 1-3
  static Residency of_stage(int stage);
  int stage() const { return params_partitioned ? 3 : grads_partitioned ? 2 : states_partitioned ? 1 : 0; }
};

// A run of elements the optimizer updates on this rank: its fp32 values (the parameters in fp32
// training, the masters in bf16/fp16), the offset into the optimizer-state arrays, weight decay.
struct OwnedSlice {
  float* p;
  size_t state_off, n;
  bool decay;
  size_t flat;  // offset of the first element in the flat layout
};

// Bytes this rank holds, by category (the sizes of the live allocations).
struct StoreMemory {
  size_t params = 0;            // model-dtype parameters at rest (stage 3: partition + persistent units)
  size_t grads = 0;             // gradient buffers at rest (whole and/or partition), in grad_accum_dtype
  size_t masters = 0;           // fp32 master copies of the owned elements (none in fp32 training)
  size_t optimizer_states = 0;  // optimizer states (owned elements x slots x 4 bytes)
  size_t comm_buffers = 0;      // pooled gather / gradient / receive buffers and fp32 working copies
  size_t spill_buffers = 0;     // NVMe offload: the host buffers the spilled categories stream through
  size_t spilled_masters = 0, spilled_states = 0;  // NVMe offload: bytes in the spill files (not in memory)
  size_t total() const { return params + grads + masters + optimizer_states + comm_buffers + spill_buffers; }
};

// NVMe offload (ZeRO-Infinity, offload_optimizer.device "nvme", stages 1-3): the optimizer states,
// and in bf16/fp16 training the fp32 masters, live in spill files of this rank's spill directory
// instead of memory. The optimizer steps them sub_group elements at a time through `buffers`
// host buffers (reading ahead, writing behind: io/spill.hpp); the checkpoint streams them.
struct SpillOptions {
  std::string dir;                        // this rank's spill directory (io::SpillDir)
  io::AioEngine* aio = nullptr;
  std::vector<std::string> state_names;   // the optimizer's states: file and index names
  size_t sub_group = 1000000000;          // zero_optimization.sub_group_size
  int buffers = 4;                        // offload_optimizer.buffer_count
  // offload_param.device "nvme" (stage 3): the parameter partition is not kept in memory either;
  // a unit's chunk is read from the spilled fp32 masters (rounded to 16 bits in bf16/fp16, as
  // the in-memory engine rounds them after each step) ahead of its gather, at most param_buffers
  // chunks staged at a time (offload_param.buffer_count)
  bool params = false;
  int param_buffers = 5;
};

// What the optimizer and the checkpoint see: a logical tensor's elements [begin, begin + n) of a
// section (0: the fp32 parameters/masters, k >= 1: optimizer state k - 1) at `data`.
struct StatePiece {
  int section = 0, tensor = 0;
  size_t begin = 0, n = 0;
  float* data = nullptr;
  int spill = -1;        // NVMe offload: data is null and the elements are at spill_off of spill array `spill`
  size_t spill_off = 0;
};

class ParamStore {
 public:
  // init(t, j0, j1, out): the initial values of elements [j0, j1) of tensor t (model order); only
  // what this rank keeps is ever materialised (stage 3: its partition and the persistent units,
  // DeepSpeed's zero.Init). state_slots: optimizer-state arrays per owned element.
  using Init = std::function<void(int tensor, size_t j0, size_t j1, float* out)>;
  // spill: NVMe offload of the optimizer states and masters (null: everything in memory).
  ParamStore(const model::Model<float>& m, comm::Communicator& comm, const config::DsConfig& ds, int state_slots,
             const Init& init, const kernels::Context& ctx, const SpillOptions* spill = nullptr);
  ~ParamStore();
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  const Layout& layout() const { return layout_; }
  const Residency& residency() const { return res_; }
  bool sixteen_bit() const { return half_; }
  DType param_dtype() const { return pdt_; }
  // the parameter-policy fields of a schedule spec (materialize, gathered, unit_grads, numels, ...)
  void describe_to(ScheduleSpec& s) const;

  // ---- the instruction list's parameter and gradient ops (param units)
  void gather(int u);
  void prefetch(int u);
  void release(int u, bool keep);
  void acquire_grads(int u);
  void reduce_grads(int u);
  // The views of a model unit's uses() and its gradient pointers, valid while its param units are
  // gathered (and, for gradients, acquired).
  void unit_views(int model_unit, std::vector<ConstView>& params, std::vector<float*>& grads);

  // ---- the step
  void begin_step();        // before the first micro-batch
  void end_micro();         // after each micro-batch's backward
  void reduce_gradients();  // at the boundary: the owned gradients are now averaged
  double grad_norm();       // L2 norm of the averaged gradients, every element once
  // Tensor parallelism: the tp group; grad_norm then sums the split tensors over it and counts the
  // replicated ones (identical on every tp rank) once.
  // sum_replicated (sequence parallelism): a replicated parameter's gradient is this tp rank's
  // rows' part; it is summed over the tp group before the dp reduction.
  void set_tp(comm::Communicator* tp, bool sum_replicated = false) { tp_ = tp, sum_replicated_ = sum_replicated; }
  // Pipeline parallelism: the pp group (grad_norm sums the stages' squares over it and counts the
  // last stage's copy of a tied table once) and the group of the two stages holding a tied
  // table (null: none here), over which its gradients are summed at the boundary (DeepSpeed's
  // ReduceTiedGrads) before the dp reduction; a unit holding one is reduced at the boundary.
  void set_pipeline(comm::Communicator* pp, comm::Communicator* tied) { pp_ = pp, tied_ = tied; }
  const std::vector<OwnedSlice>& owned() const { return owned_; }
  // Calls fn(p, g, states, n, decay) over the owned elements with their averaged gradients as
  // fp32 (16-bit gradients widened chunk by chunk; fn may overwrite g) and their optimizer states
  // (states[k]: slot k); fn updates p and the states, and in bf16/fp16 training the updated
  // masters are rounded to this rank's 16-bit parameters. With NVMe offload the elements come
  // sub-group by sub-group from the spill files and go back after fn.
  // whole_tensors (stage 0 only): one call per tensor (Lamb's trust ratio).
  // ZeRO-3 with NVMe offload: fn runs on demand after this returns (fn must own what it uses):
  // each gather of the next forward first updates the sub-groups of its partition chunk, and the
  // first backward, a checkpoint (state_pieces), gather_full, the spill reads and writes, and the
  // next step finish the rest (finish_update); the stream's reads overlap the forward.
  using OwnedFn = std::function<void(float* p, float* g, float* const* states, size_t n, bool decay)>;
  void for_each_owned(const OwnedFn& fn, bool whole_tensors = false);
  void finish_update();          // the optimizer step's update finished (no-op when it is)
  // ZeRO-3 with NVMe offload when nothing needs every gradient before the update (no gradient
  // clipping, no loss scaler, no overflow check; no tensor or pipeline parallelism): armed before
  // a step (before begin_step) with that step's update, the optimizer runs during the step's last
  // backward. begin_step begins the sub-group stream (descending, its first reads overlapping the
  // forward); each sub-group is updated once every unit over it has had its last gradients
  // reduced, if its states have arrived (nothing waits for the disk in the backward);
  // reduce_gradients updates the rest. grad_norm is then summed from each sub-group's gradients
  // before its update. fn as for_each_owned's (it must own what it uses).
  void arm_update(OwnedFn fn);
  // sub-groups the last armed step updated before the backward ended (the rest: reduce_gradients)
  size_t updated_in_backward() const { return in_backward_updates_; }
  size_t pending_update() const;  // sub-groups it has not updated yet
  void fill_state(int slot, float v);  // every element of optimizer state `slot` set to v
  // NVMe offload
  bool spilled() const { return spill_ != nullptr; }
  bool masters_spilled() const { return spill_ && masters_spilled_; }
  bool params_spilled() const { return params_spilled_; }
  // NVMe offload: the time spent waiting for spill I/O so far (the stream's and the parameter reads')
  double spill_wait_seconds() const { return spill_ ? spill_->io_seconds() + param_wait_s_ : 0.0; }
  const io::SpillArrays* spill_arrays() const { return spill_.get(); }
  // NVMe offload: bytes of reads the spill buffers saved so far (io::SpillArrays::bytes_cached)
  double spill_cached_bytes() const { return spill_ ? static_cast<double>(spill_->bytes_cached()) : 0.0; }
  // elements [off, off + n) of spill array k (a StatePiece's spill), synchronous; read is safe
  // from another thread while the optimizer does not run
  void spill_read(int k, size_t off, size_t n, float* out) const { spill_->read(k, off, n, out); }
  void spill_write(int k, size_t off, size_t n, const float* in) {
    finish_update();
    quiesce_reads();
    spill_->write(k, off, n, in);
  }
  void after_optimizer();   // gathers the updated parameters where needed
  void masters_loaded();    // after writing the owned masters (a checkpoint): rounds and gathers
  void skip_step();         // an overflow step: drop the accumulated gradients
  StoreMemory memory() const;
  // What a store of this layout and config holds at rest (nothing is allocated); comm_buffers is
  // an estimate of the pooled buffers a step grows (two of the largest unit's fp32 gradients and
  // working copies, and at stage 3 its gathers).
  static StoreMemory planned(const Layout& layout, const config::DsConfig& ds, int state_slots);

  // ---- the state dict: logical tensors by section (0: parameters/masters, then each optimizer
  // state), the pieces this rank holds: balanced (stage 0: a share of every tensor) or owned.
  std::vector<StatePiece> state_pieces(bool balanced);
  // The whole fp32 parameters (masters) in model order, tensor by tensor: collective at stages 1-3.
  std::vector<std::vector<float>> gather_full();

 private:
  struct Unit {
    float* work = nullptr;      // the unit's fp32 parameters while it runs (fp32 stage 3: the gather)
    const void* src16 = nullptr;  // bf16/fp16: the 16-bit parameters the views read while it runs
    void* g16 = nullptr;        // stage 3, bf16/fp16: the gathered 16-bit parameters (pool buffer)
    comm::WorkPtr gather_work;  // stage 3: prefetch in flight (into work, or g16)
    float* grads = nullptr;     // this micro-batch's fp32 gradients (pooled, or the whole buffer)
    bool persistent = false;
    bool stale = false;  // persistent: the partitions changed since it was gathered (refresh_persistent)
    std::vector<std::pair<size_t, size_t>> widen;  // bf16/fp16: runs (offset in unit, count) of Widened tensors
    // offload_param: the unit's partition chunk read from the masters' spill file (aligned), its
    // read in flight (0: none), and in bf16/fp16 the chunk rounded to 16 bits (pool buffer)
    io::SpillArrays::Buffer rd;
    size_t rd_floats = 0;
    uint64_t rd_ticket = 0;
    void* part16 = nullptr;
  };
  struct PendingReduce {
    comm::WorkPtr work;
    float* buf;  // what was sent (pooled: the unit's gradients, or their 16-bit packing)
    float* recv;
    int unit;
  };
  float* base32(int u) const;  // the unit's fp32 parameters now (resident, working copy or gather)
  // This rank's partition chunk of unit u in the parameters' dtype, for its all-gather: in memory,
  // or (offload_param) read from the spill file; drop_chunk(u) once the gather has it.
  const void* partition_chunk(int u);
  void drop_chunk(int u);
  void read_ahead(int u);    // offload_param: post the read of unit u's chunk (within param_buffers_)
  void post_read(int u);     // offload_param: post it now
  void quiesce_reads();      // offload_param: every read-ahead finished and dropped (the file changes)
  void wait_gather(int u);   // the unit's prefetch all-gather finished, its staged chunk dropped
  void finish_reduce(PendingReduce& r);
  void refresh_persistent(int u);
  struct OwnedScratch {
    std::vector<float> tmp;
    std::vector<float*> base, st;
  };
  void step_slice(const OwnedFn& fn, OwnedScratch& w, const OwnedSlice& s, size_t off, size_t n, float* p,
                  bool whole_tensors);
  // The spill stream's function over sub-group [a, a + m): fn on every owned slice in it; zero:
  // then its gradients zeroed (an update run behind the caller's back); sq: their sum of squares
  // added there first
  io::SpillArrays::Fn spill_fn(const OwnedFn& fn, bool zero, double* sq);
  void begin_armed();                 // begin_step: the armed update's stream begun
  void gradients_final(int u);        // the armed step's last reduction of unit u is in
  OwnedFn armed_fn_;
  bool armed_ = false;                // the armed stream is running (this step's last backward)
  bool armed_norm_ = false;           // grad_norm: the armed stream's sum of squares
  double armed_sq_ = 0.0;
  std::vector<int> group_left_;       // per sub-group: units over it whose last reduction is not in
  size_t in_backward_updates_ = 0;
  void wait_all_reduces();
  void round_to_params(const OwnedSlice& s, size_t off, size_t n, const float* src);
  void widen_partition(size_t a, size_t n, float* out) const;  // bf16/fp16: the 16-bit owned elements [a, a + n) widened
  float* acquire(size_t n) { return pool_.acquire(n); }
  float* acquire16(size_t n) { return pool_.acquire((n + 1) / 2); }
  void release_buf(float* p) { pool_.release(p); }

  const model::Model<float>& model_;
  comm::Communicator& comm_;
  comm::Communicator* tp_ = nullptr;
  bool sum_replicated_ = false;
  void sum_replicated_over_tp(float* unit_grads, int u);  // fp32 gradients of param unit u (unit offsets)
  comm::Communicator *pp_ = nullptr, *tied_ = nullptr;
  bool holds_tied(int u) const;                        // param unit u holds a tied table (and tied_ is set)
  void sum_tied(void* unit_grads, DType t, int u);     // its tied tensors' gradients summed over tied_
  std::vector<int> tied_pending_;                      // tied units whose ReduceGrads waits for the boundary
  kernels::Context ctx_;
  Layout layout_;
  Residency res_;
  int W_, rank_;
  bool overlap_;
  int64_t reduce_bucket_, prefetch_bucket_, max_live_, allgather_bucket_, max_reuse_;
  double pre_scale_ = 1.0, post_scale_ = 1.0;
  bool half_ = false;
  DType pdt_ = DType::F32;         // the parameters' dtype at rest
  DType gdt_ = DType::F32;         // gradient storage (data_types.grad_accum_dtype)
  DType comm_dtype_ = DType::F32;  // communication_data_type of the gradients
  std::vector<Unit> units_;
  Buffer pfull_;    // fp32 stages 0-2: the whole fp32 parameters
  Buffer gfull_;    // stages 0-1: the whole gradient buffer (grad_accum_dtype)
  Buffer gpart_;    // stages 1-3: this rank's partition of the averaged gradients
  Buffer ppart_;    // stage 3: this rank's partition of the fp32 parameters (the masters in bf16/fp16)
  Buffer master_;   // stages 0-2, bf16/fp16: fp32 masters of the owned elements
  Buffer p16_;      // stages 0-2, bf16/fp16: the whole 16-bit parameters
  Buffer p16part_;  // stage 3, bf16/fp16: this rank's partition of the 16-bit parameters
  Buffer wire_;     // stages 0-1: gradients on the wire when not in their storage dtype
  std::map<int, Buffer> persist_;  // stage 3: persistent units, kept gathered (fp32, or 16-bit)
  std::vector<Buffer> states_;
  int slots_ = 0;
  std::unique_ptr<io::SpillArrays> spill_;  // NVMe offload: [masters,] states
  bool masters_spilled_ = false;
  bool params_spilled_ = false;  // offload_param nvme: no partition in memory (read from the masters' file)
  int param_buffers_ = 5, staged_ = 0, last_prefetch_ = -1;
  int first_gathered_ = -1;  // offload_param: the first unit a forward gathers (-1: none)
  int micro_ = 0, gas_ = 1;  // micro-batches of this step done, of gradient_accumulation_steps
  bool in_backward_ = false;
  bool grads_zeroed_ = false;  // the last update zeroed the partition's gradients as it went
  double param_wait_s_ = 0;
  std::multimap<size_t, io::SpillArrays::Buffer> aligned_free_;  // free read buffers by size (floats)
  size_t aligned_bytes_ = 0;
  std::vector<OwnedSlice> owned_;
  size_t owned_numel_ = 0;
  std::vector<PendingReduce> pending_;
  int64_t live_gathered_ = 0;
  // Buffer pools: free buffers by size; every buffer ever allocated is kept for reuse. The
  // parameters' working copies have their own pool: the parts the kernels read as 16-bit views are
  // never written, so those pages are never touched (not resident).
  struct Pool {
    std::map<size_t, std::vector<float*>> free;
    std::map<float*, size_t> size_of;
    std::vector<std::unique_ptr<float[]>> storage;
    size_t bytes = 0;
    float* acquire(size_t n);
    void release(float* p) { free[size_of.at(p)].push_back(p); }
  };
  Pool pool_, work_pool_;
};

}  // namespace dmpi::engine
