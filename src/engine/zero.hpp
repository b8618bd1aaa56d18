// ZeRO stages 0-3 over the data-parallel group, on the model's flat buffers.
//
// Layout. The model's parameters are grouped in units (embeddings, each transformer block,
// the final LayerNorm: model::UnitSpec). For stages 1-3 every unit is padded to a multiple of
// unit_align(W) = 16 W elements, so it splits into W equal chunks of 16-element (64-byte)
// multiples; rank r owns chunk r of every unit. Its partition is those chunks back to back
// (partition offset of unit u = sum of the chunks of the units before it). Padding is zero
// and never updated. Stage 0 uses the unpadded layout and owns everything.
//
// Per step (gradient accumulation over GAS micro-batches, DeepSpeed's averaging: gradients are
// summed over the group and scaled by 1/W; gradient_predivide_factor f divides by f before the
// sum and multiplies by f/W after; prescale_gradients divides by W before; with
// communication_data_type bf16/fp16 the gradients travel and are summed in 16 bits, the
// parameters' all-gathers stay fp32):
//   stage 0: the model holds full params and grads; at the boundary the grads are all-reduced in
//            buckets of reduce_bucket_size elements; the optimizer updates everything.
//   stage 1: full params and grads; at the boundary each unit's grads are reduce-scattered into
//            this rank's partition gradient; the optimizer updates the owned chunks of the
//            params (in place) with optimizer states for the partition only; every unit is then
//            all-gathered in place, at most allgather_bucket_size elements in flight.
//   stage 2: full params; no full gradient buffer: a unit's gradients live in a pooled buffer
//            from the start to the end of its backward, are reduce-scattered into the partition
//            gradient right after (non-blocking with overlap_comm, at most two in flight), and
//            the buffer is reused. Optimizer and all-gather as stage 1.
//   stage 3: as stage 2, and the parameters at rest are only this rank's partition (the fp32
//            master itself). A unit is all-gathered into a pooled buffer before its forward and
//            backward and freed after; the next unit is prefetched when it is at most
//            stage3_prefetch_bucket_size elements and the gathered total stays within
//            stage3_max_live_parameters; at the forward/backward turn a unit whose reuse distance
//            (elements gathered before its backward) is at most stage3_max_reuse_distance is
//            kept; units of at most stage3_param_persistence_threshold elements stay gathered
//            (refreshed by an all-gather after each step). Granularity is the unit, not the
//            tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "comm/communicator.hpp"
#include "src/config/ds_config.hpp"
#include "src/model/gpt.hpp"

namespace dmpi::engine {

// A run of elements the optimizer updates on this rank: parameter and gradient pointers,
// the offset into the optimizer-state arrays, and whether weight decay applies.
struct OwnedSlice {
  float* p;
  float* g;
  size_t state_off, n;
  bool decay;
  size_t flat;  // offset of the first element in the model's (padded) flat layout
};

// Bytes this rank holds, by category (the sizes of the live allocations).
struct ZeroMemory {
  size_t params = 0;            // model-dtype parameters at rest (stage 3: partition + persistent units)
  size_t grads = 0;             // gradient buffers at rest (full and/or partition)
  size_t masters = 0;           // separate fp32 master copies (none in fp32 training)
  size_t optimizer_states = 0;  // optimizer states (owned elements x slots x 4 bytes)
  size_t comm_buffers = 0;      // pooled gather / gradient-bucket / receive buffers
  size_t total() const { return params + grads + masters + optimizer_states + comm_buffers; }
};

class ZeroEngine {
 public:
  // The model must be built with unit_align(stage, W) and have its weights initialised (or, at
  // stage 3, be built without a parameter buffer and come with `init`).
  // state_slots: optimizer-state arrays per owned element (Adam 2, SGD-momentum/Lion/Adagrad 1).
  // Stage 3 with a model built without its flat parameter buffer (allocate_params false): `init`
  // gives the initial values of flat elements [begin, begin + n) (model::GPT::init_values), and
  // only this rank's partition and the persistent units are ever materialised.
  using Init = std::function<void(size_t begin, size_t n, float* out)>;
  ZeroEngine(model::GPT<float>& model, comm::Communicator& dp, const config::DsConfig& ds, int state_slots,
             const Init& init = {});
  ~ZeroEngine();
  static size_t unit_align(int stage, int dp_size) { return stage == 0 ? 1 : 16 * static_cast<size_t>(dp_size); }

  void begin_step();                 // before the first micro-batch of a step
  void end_micro();                  // after each backward
  void reduce_gradients();           // at the boundary: the owned gradients are now averaged
  double grad_norm();                // L2 norm of the averaged gradients, every element once
  const std::vector<OwnedSlice>& owned() const { return owned_; }
  float* state(int slot) { return states_[static_cast<size_t>(slot)].data(); }
  void after_optimizer();            // gathers the updated parameters where needed
  ZeroMemory memory() const;
  size_t owned_numel() const { return owned_numel_; }
  int stage() const { return stage_; }

 private:
  struct Unit {
    size_t off = 0, numel = 0, chunk = 0, part_off = 0;  // in the model buffer / in the partition
    float* gathered = nullptr;                            // stage 3: gathered parameters (pool buffer)
    comm::WorkPtr gather_work;                            // stage 3: prefetch in flight
    bool persistent = false, keep = false;
    int64_t reuse_distance = 0;
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
  void release_gathered(int u);
  void start_grad_reduce(int u);
  void finish_reduce(PendingReduce& r);
  void wait_all_reduces();
  float* acquire(size_t n);
  void release(float* p);

  model::GPT<float>& model_;
  comm::Communicator& dp_;
  int stage_, W_, rank_;
  bool overlap_;
  int64_t reduce_bucket_, prefetch_bucket_, max_live_, allgather_bucket_;
  double pre_scale_ = 1.0, post_scale_ = 1.0;
  comm::DType comm_dtype_ = comm::DType::F32;  // communication_data_type of the gradients
  std::vector<uint16_t> wire16_;               // stages 0-1: 16-bit gradients on the wire
  std::vector<Unit> units_;
  std::vector<float> gpart_;   // stages 1-3: this rank's partition of the averaged gradients
  std::vector<float> ppart_;   // stage 3: this rank's partition of the parameters
  std::map<int, std::vector<float>> persist_;  // stage 3: persistent units, kept gathered
  std::vector<std::vector<float>> states_;
  std::vector<OwnedSlice> owned_;
  size_t owned_numel_ = 0;
  std::vector<PendingReduce> pending_;
  int64_t live_gathered_ = 0;
  bool in_backward_ = false;
  // buffer pool: free buffers by size; every buffer ever allocated is kept for reuse
  std::map<size_t, std::vector<float*>> free_;
  std::map<float*, size_t> size_of_;
  std::vector<std::unique_ptr<float[]>> storage_;
  size_t pool_bytes_ = 0;
};

}  // namespace dmpi::engine
