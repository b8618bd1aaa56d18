// ZeRO stages 0-3 over the data-parallel group, on the model's flat buffers.
//
// Layout. The model's parameters are grouped in units (embeddings, each transformer block,
// the final LayerNorm: model::UnitSpec). For stages 1-3 every unit is padded to a multiple of
// unit_align(W) = 16 W elements, so it splits into W equal chunks of 16-element (64-byte)
// multiples; rank r owns chunk r of every unit. Its partition is those chunks back to back
// (partition offset of unit u = sum of the chunks of the units before it). Padding is zero
// and never updated. Stage 0 uses the unpadded layout and owns everything.
//
// Precision (DeepSpeed's split). fp32 training: the model's parameters are the ones the
// optimizer updates; gradients fp32. bf16/fp16 training: the parameters at rest are 16-bit
// (2 bytes each), the optimizer updates fp32 masters of the owned elements (4 bytes) and fp32
// states (8 for Adam), and the gradients are stored in data_types.grad_accum_dtype (default the
// model's 16-bit dtype, 2 bytes): the 2 + 2 + 12 bytes per parameter of the ZeRO paper, split by
// stage. A unit's parameters are widened to an fp32 working copy (pooled) just before its
// forward and its backward and dropped after, as stage 3 does with its gathers (the GEMMs read
// the 16-bit values through kernels::register_lowp_copy, and so does the embedding lookup: in
// bf16 the 2-D tensors, model::TensorSpec::read_16bit, are not widened at all and their part of
// the working buffer is never touched); its gradients are
// computed into a pooled fp32 buffer during its backward and then rounded into the gradient
// storage (stages 0-1: += into the full buffer) or reduce-scattered (stages 2-3). After the
// optimizer step the owned masters are rounded back to 16 bits, and the all-gathers move 16-bit
// parameters. Unless communication_data_type says otherwise the gradients travel in their
// storage dtype, as in DeepSpeed.
//
// Per step (gradient accumulation over GAS micro-batches, DeepSpeed's averaging: gradients are
// summed over the group and scaled by 1/W; gradient_predivide_factor f divides by f before the
// sum and multiplies by f/W after; prescale_gradients divides by W before; with a 16-bit
// communication_data_type the gradients travel and are summed in 16 bits):
//   stage 0: full params and grads; at the boundary the grads are all-reduced in buckets of
//            reduce_bucket_size elements; the optimizer updates everything.
//   stage 1: full params and grads; at the boundary each unit's grads are reduce-scattered into
//            this rank's partition gradient; the optimizer updates the owned chunks (in place in
//            fp32 training) with optimizer states for the partition only; every unit is then
//            all-gathered in place, at most allgather_bucket_size elements in flight.
//   stage 2: full params; no full gradient buffer: a unit's gradients live in a pooled buffer
//            from the start to the end of its backward, are reduce-scattered into the partition
//            gradient right after (non-blocking with overlap_comm, at most two in flight), and
//            the buffer is reused. Optimizer and all-gather as stage 1.
//   stage 3: as stage 2, and the parameters at rest are only this rank's partition (in fp32
//            training the master itself). A unit is all-gathered into a pooled buffer before its
//            forward and backward and freed after; the next unit is prefetched when it is at most
//            stage3_prefetch_bucket_size elements and the gathered total stays within
//            stage3_max_live_parameters; at the forward/backward turn a unit whose reuse distance
//            (elements gathered before its backward) is at most stage3_max_reuse_distance is
//            kept (bf16/fp16: its 16-bit gather, widened again for the backward); units of at most stage3_param_persistence_threshold elements stay gathered
//            (refreshed by an all-gather after each step). Granularity is the unit, not the
//            tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "comm/communicator.hpp"
#include "src/config/ds_config.hpp"
#include "src/model/gpt.hpp"

namespace dmpi::engine {

// A run of elements the optimizer updates on this rank: the fp32 parameters it updates (the
// model's own in fp32 training, the masters in bf16/fp16 training), the offset into the
// optimizer-state arrays, and whether weight decay applies.
struct OwnedSlice {
  float* p;
  size_t state_off, n;
  bool decay;
  size_t flat;  // offset of the first element in the model's (padded) flat layout
};

// Bytes this rank holds, by category (the sizes of the live allocations).
struct ZeroMemory {
  size_t params = 0;            // model-dtype parameters at rest (stage 3: partition + persistent units)
  size_t grads = 0;             // gradient buffers at rest (full and/or partition), in grad_accum_dtype
  size_t masters = 0;           // fp32 master copies of the owned elements (none in fp32 training)
  size_t optimizer_states = 0;  // optimizer states (owned elements x slots x 4 bytes)
  size_t comm_buffers = 0;      // pooled gather / gradient-bucket / receive buffers and fp32 working copies
  size_t total() const { return params + grads + masters + optimizer_states + comm_buffers; }
};

class ZeroEngine {
 public:
  // The model must be built with unit_align(stage, W) and either have its weights initialised or
  // be built without a parameter buffer (allocate_params false) and come with `init`, which gives
  // the initial values of flat elements [begin, begin + n) (model::GPT::init_values): then only
  // what this rank keeps is ever materialised (stage 3: its partition and the persistent units,
  // DeepSpeed's zero.Init). bf16/fp16 training (ds.bf16 / ds.fp16 enabled) takes over the model's
  // parameter and gradient storage: build it with neither buffer (ZeroEngine::model_buffers).
  // state_slots: optimizer-state arrays per owned element (Adam 2, SGD-momentum/Lion/Adagrad 1).
  using Init = std::function<void(size_t begin, size_t n, float* out)>;
  ZeroEngine(model::GPT<float>& model, comm::Communicator& dp, const config::DsConfig& ds, int state_slots,
             const Init& init = {});
  ~ZeroEngine();
  static size_t unit_align(int stage, int dp_size) { return stage == 0 ? 1 : 16 * static_cast<size_t>(dp_size); }
  // Which flat buffers the model should allocate for this config: {params, grads}.
  static std::pair<bool, bool> model_buffers(const config::DsConfig& ds);

  void begin_step();                 // before the first micro-batch of a step
  void end_micro();                  // after each backward
  void reduce_gradients();           // at the boundary: the owned gradients are now averaged
  double grad_norm();                // L2 norm of the averaged gradients, every element once
  const std::vector<OwnedSlice>& owned() const { return owned_; }
  // The optimizer step: calls fn(p, g, state_off, n, decay) over the owned elements with their
  // averaged gradients as fp32 (16-bit gradients are widened chunk by chunk; fn may overwrite g);
  // fn updates p, and in bf16/fp16 training the updated masters are rounded to this rank's 16-bit
  // parameters. whole_tensors (stage 0 only): one call per tensor (Lamb's trust ratio).
  using OwnedFn = std::function<void(float* p, float* g, size_t state_off, size_t n, bool decay)>;
  void for_each_owned(const OwnedFn& fn, bool whole_tensors = false);
  float* state(int slot) { return states_[static_cast<size_t>(slot)].data(); }
  // Stage 0: the fp32 parameters the optimizer updates, in the model's flat layout.
  float* stage0_params();
  void after_optimizer();            // gathers the updated parameters where needed
  void masters_loaded();             // after writing the owned p (a checkpoint): rounds and gathers
  void skip_step();                  // an overflow step: drop the accumulated gradients
  ZeroMemory memory() const;
  size_t owned_numel() const { return owned_numel_; }
  int stage() const { return stage_; }
  bool sixteen_bit() const { return half_; }  // bf16/fp16 training: 16-bit params, fp32 masters

 private:
  struct Unit {
    size_t off = 0, numel = 0, chunk = 0, part_off = 0;  // in the model buffer / in the partition
    float* work = nullptr;      // the unit's fp32 parameters while it runs (stage 3 fp32: the gather)
    float* g16 = nullptr;       // stage 3, bf16/fp16: the gathered 16-bit parameters (pool buffer; the
                                // GEMMs read them while the unit is in use)
    comm::WorkPtr gather_work;  // stage 3: prefetch in flight (into work, or g16)
    bool persistent = false, keep = false;
    int64_t reuse_distance = 0;
    // bf16: the runs (offset in the unit, count) that are widened to fp32 for the working copy;
    // the rest (tensors read only through the bf16 copy) is left unwritten
    std::vector<std::pair<size_t, size_t>> widen;
  };
  // A typed buffer (fp32, or 16-bit values in float-sized storage).
  struct Typed {
    comm::DType t = comm::DType::F32;
    size_t n = 0;
    std::vector<float> raw;
    void assign(comm::DType type, size_t count);
    void* at(size_t i) { return reinterpret_cast<char*>(raw.data()) + i * comm::dtype_size(t); }
    size_t bytes() const { return raw.capacity() * sizeof(float); }
  };
  struct PendingReduce {
    comm::WorkPtr work;
    float* buf;  // what was sent (pooled: the unit's gradients, or their 16-bit packing)
    float* recv;
    int unit;
  };
  void hook(model::HookPoint p, int unit);
  void ensure_gathered(int u);
  void prefetch(int u);
  void release_gathered(int u, bool keep_16bit = false);
  void accumulate_grads(int u);
  void round_to_params(const OwnedSlice& s, size_t off, size_t n);
  void start_grad_reduce(int u);
  void* full_grads();  // stages 0-1
  void finish_reduce(PendingReduce& r);
  void wait_all_reduces();
  float* acquire(size_t n) { return pool_.acquire(n); }
  float* acquire16(size_t n) { return pool_.acquire((n + 1) / 2); }
  void release(float* p) { pool_.release(p); }

  model::GPT<float>& model_;
  comm::Communicator& dp_;
  int stage_, W_, rank_;
  bool overlap_;
  int64_t reduce_bucket_, prefetch_bucket_, max_live_, allgather_bucket_;
  double pre_scale_ = 1.0, post_scale_ = 1.0;
  bool half_ = false;                          // bf16/fp16 training
  comm::DType pdt_ = comm::DType::F32;         // the parameters' dtype at rest
  comm::DType gdt_ = comm::DType::F32;         // gradient storage (data_types.grad_accum_dtype)
  comm::DType comm_dtype_ = comm::DType::F32;  // communication_data_type of the gradients
  Typed wire_;                                 // stages 0-1: gradients on the wire when not gdt_
  std::vector<Unit> units_;
  Typed gfull_;                // stages 0-1, bf16/fp16: the full gradient buffer
  Typed gpart_;                // stages 1-3: this rank's partition of the averaged gradients
  std::vector<float> ppart_;   // stage 3: this rank's partition of the parameters (fp32 masters)
  std::vector<float> master_;  // stages 0-2, bf16/fp16: fp32 masters of the owned elements
  Typed p16_;                  // stages 0-2, bf16/fp16: the full 16-bit parameters
  Typed p16part_;              // stage 3, bf16/fp16: this rank's partition of the 16-bit parameters
  std::map<int, std::vector<float>> persist_;  // stage 3, fp32: persistent units, kept gathered
  std::map<int, Typed> persist16_;             // stage 3, bf16/fp16: persistent units (16-bit)
  std::vector<std::vector<float>> states_;
  std::vector<OwnedSlice> owned_;
  size_t owned_numel_ = 0;
  std::vector<PendingReduce> pending_;
  int64_t live_gathered_ = 0;
  bool in_backward_ = false;
  // Buffer pools: free buffers by size; every buffer ever allocated is kept for reuse. The
  // parameters' working copies have their own pool: in bf16 the parts the kernels read through
  // the 16-bit copy are never written, so those pages are never touched (not resident).
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
