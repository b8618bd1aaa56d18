// The model as data: an ordered list of units (unit.hpp) built from a ModelConfig, the table of
// every parameter in model order, the initialisation, the activation plan (what each unit keeps
// per micro-batch, what is recomputed), and the Runner that runs one unit's forward or backward
// for one micro-batch slot. The engine (src/engine) drives the Runner from its instruction list
// and hands it the parameters wherever they live; LocalModel is the same Runner over one flat
// fp32/fp64 buffer (tests, reference path, inference).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/tensor.hpp"
#include "src/model/config.hpp"
#include "src/model/unit.hpp"

namespace dmpi::model {

// A parameter of the model: its unit, its index in that unit's params(), and its index in model
// order (the checkpoint's tensor list, the initialiser's stream).
struct TensorRef {
  int unit = 0, index = 0;
};

template <class F>
class Model {
 public:
  explicit Model(const ModelConfig& c);
  // A pipeline stage's part: the units `units` of the whole list (their indices, increasing).
  // Uses are renumbered to the part's units; a tied head whose embedding is elsewhere owns a copy
  // of the table (ParamSpec::tied_copy) initialised as the table.
  Model(const ModelConfig& c, const std::vector<int>& units);
  const ModelConfig& config() const { return cfg_; }
  int global_unit(int u) const { return global_unit_[static_cast<size_t>(u)]; }
  int global_tensor(int t) const { return global_tensor_[static_cast<size_t>(t)]; }  // in the whole model's order
  int num_units() const { return static_cast<int>(units_.size()); }
  const Unit<F>& unit(int u) const { return *units_[static_cast<size_t>(u)]; }
  // every parameter in model order
  int num_tensors() const { return static_cast<int>(tensors_.size()); }
  const TensorRef& tensor(int t) const { return tensors_[static_cast<size_t>(t)]; }
  const ParamSpec& spec(int t) const;
  int tensor_index(int unit, int index) const;  // model order of a unit's parameter
  int find_tensor(const std::string& name) const;  // -1 when there is none
  size_t real_params() const;                   // every parameter
  // GPT-2/Megatron initialisation from `seed`, independent of the standard library: the values of
  // elements [j0, j1) of tensor t (each tensor its own stream, element j reached by skipping the
  // draws before it: a rank initialises its partition alone, DeepSpeed's zero.Init).
  void init_tensor(uint64_t seed, int t, size_t j0, size_t j1, F* out) const;

 private:
  ModelConfig cfg_;
  std::vector<std::unique_ptr<Unit<F>>> units_;
  std::vector<TensorRef> tensors_;
  std::vector<int> first_tensor_;  // per unit
  std::vector<int> global_unit_, global_tensor_;
  void index_tensors(const std::vector<int>& whole_first_tensor);
};

// Activation checkpointing (Megatron's flags; DeepSpeed's block adds nothing on one tensor-parallel
// rank): none; selective (the attention probabilities are recomputed in the backward); full
// (whole blocks are recomputed from their inputs, in chunks of `num_layers` (uniform) or the first
// `num_layers` blocks one at a time (block); the LM head's logits are recomputed too).
struct RecomputeConfig {
  enum class Granularity { None, Selective, Full } granularity = Granularity::None;
  enum class Method { Uniform, Block } method = Method::Uniform;
  int num_layers = 1;
  std::string describe() const;
};

// What a unit keeps for its backward, and the recompute chunk it belongs to (-1: none). Units of
// a chunk are recomputed together, in order, before the backward of its last unit.
struct UnitPlan {
  bool keep_output = true, keep_internals = true, keep_probs = true;
  int chunk = -1;
};
// chunk_begin (pipeline parallelism): the units that start a pipeline chunk; recompute groups
// (Megatron's, per stage) never cross one.
template <class F>
std::vector<UnitPlan> plan_recompute(const Model<F>& m, const RecomputeConfig& rc, const std::vector<int>& chunk_begin = {});

// Runs units' forwards and backwards for micro-batches of B x T tokens, with `slots` micro-batches'
// activations alive at once (1 for plain gradient accumulation; a pipeline schedule keeps more).
// Memory: per slot, every unit's kept output, internals and probabilities; shared by all slots,
// one work buffer holding the kernels' scratch and the transient (recomputed) parts, and the
// gradient of the residual stream. The work buffer starts with the scratch; a recompute chunk's
// transient parts follow it, except for units without scratch (the LM head), whose transient
// logits start right after the head's input gradient (the scratch's first B T C elements, the
// only scratch alive while they are): the head's logits and a block's recompute share the space.
// Pipeline parallelism: a stage's units come in chunks (one per virtual stage); a chunk that does
// not start with the embedding reads its input from a per-slot buffer the trainer receives into
// (input()), and the gradient of its input is left in stream_grad() after its first unit's
// backward. A chunk that does not end with the head takes its output gradient from stream_grad().
// split_backward (zero-bubble): each slot also keeps every splitting unit's deferred() elements
// between backward(..., weight_later) and backward_weight.
struct RunnerShape {
  std::vector<int> chunk_begin = {0};
  bool split_backward = false;
};

template <class F>
class Runner {
 public:
  Runner(const Model<F>& m, int B, int T, std::vector<UnitPlan> plan, int slots = 1, RunnerShape shape = {});
  const Model<F>& model() const { return m_; }
  int batch() const { return B_; }
  int seq() const { return T_; }
  int slots() const { return slots_; }
  const std::vector<UnitPlan>& plan() const { return plan_; }
  // the tensor-parallel group every unit call gets (null: one rank)
  void set_tp(TpComm* tp) { tp_ = tp; }
  // copies one micro-batch into a slot
  void load(int slot, const int32_t* tokens, const int32_t* targets);
  // params: views of the unit's uses(), in order. The head's forward returns the micro-batch's mean
  // loss (others 0). A unit of a recompute chunk writes its internals into the transient buffer:
  // the same call recomputes it before its chunk's backward.
  double forward(const Ops<F>& ops, int unit, int slot, const ConstView* params);
  // grads: the unit's uses()' gradients, accumulated. loss_scale: d(loss_scale * mean loss).
  // weight_later (zero-bubble): the input gradient only; backward_weight computes the weight gradients
  void backward(const Ops<F>& ops, int unit, int slot, const ConstView* params, F* const* grads, double loss_scale,
                bool weight_later = false);
  void backward_weight(const Ops<F>& ops, int unit, int slot, const ConstView* params, F* const* grads);
  // pipeline chunks: the chunk's input in a slot (received), a unit's kept output in a slot (sent),
  // the residual-stream gradient (received before a chunk's last backward, sent after its first)
  int num_chunks() const { return static_cast<int>(shape_.chunk_begin.size()); }
  int chunk_first(int c) const { return shape_.chunk_begin[static_cast<size_t>(c)]; }
  int chunk_last(int c) const { return c + 1 < num_chunks() ? chunk_first(c + 1) - 1 : m_.num_units() - 1; }
  F* input(int chunk, int slot);
  const F* output(int unit, int slot);
  F* stream_grad() { return dres_.data(); }
  size_t stream_numel() const;  // elements of the residual stream this rank holds (B T C, or its 1/tp with SP)
  const F* losses(int slot) const;  // per-row losses of the slot's last forward
  const int32_t* tokens(int slot) const { return tokens_.data() + static_cast<size_t>(slot) * B_ * T_; }
  int64_t valid_rows(int slot) const { return valid_[static_cast<size_t>(slot)]; }
  // bytes of every buffer above, and the parts
  size_t activation_bytes() const;
  // what a Runner of these arguments would allocate (nothing is allocated)
  static size_t planned_bytes(const Model<F>& m, int B, int T, const std::vector<UnitPlan>& plan, int slots = 1,
                              const RunnerShape& shape = {});
  size_t kept_bytes_per_slot() const { return slot_numel_ * sizeof(F); }
  size_t work_bytes() const { return work_.size() * sizeof(F); }
  size_t stream_grad_bytes() const { return dres_.size() * sizeof(F); }

 private:
  struct Region {
    bool transient = false;
    size_t off = 0;  // into the slot's block, or the work buffer
    int chunk = -1;
  };
  struct Place {
    Region out, internals, probs, deferred, input;  // input: a chunk start's received input
  };
  struct Sizes {
    std::vector<Place> place;
    size_t slot_numel = 0, work = 0, dres = 0;
  };
  static Sizes plan_sizes(const Model<F>& m, int B, int T, const std::vector<UnitPlan>& plan, const RunnerShape& shape);
  bool starts_chunk(int u) const;
  F* at(const Region& r, int slot);
  UnitCall<F> call(int unit, int slot, const ConstView* params);

  const Model<F>& m_;
  int B_, T_, slots_;
  std::vector<UnitPlan> plan_;
  std::vector<Place> place_;
  size_t slot_numel_ = 0;
  std::vector<F> kept_, work_, dres_;
  std::vector<int32_t> tokens_, targets_;
  std::vector<int64_t> valid_;
  TpComm* tp_ = nullptr;
  RunnerShape shape_;
};

// A model with its own flat parameter and gradient buffers (model order, unpadded): the
// reference path (double), the tests, and single-rank inference.
template <class F>
class LocalModel {
 public:
  LocalModel(const ModelConfig& c, int B, int T, bool fast = true, const RecomputeConfig& rc = {});
  const Model<F>& model() const { return model_; }
  const ModelConfig& config() const { return model_.config(); }
  F* params() { return params_.data(); }
  F* grads() { return grads_.data(); }
  size_t num_params() const { return params_.size(); }
  size_t offset(int tensor) const { return offsets_[static_cast<size_t>(tensor)]; }
  F* param(const std::string& name);
  F* grad(const std::string& name);
  void init_weights(uint64_t seed);
  // tokens, targets [B*T]: the mean loss over rows whose target is not kIgnoreIndex
  double forward(const kernels::Context& ctx, const int32_t* tokens, const int32_t* targets);
  void backward(const kernels::Context& ctx, double loss_scale = 1.0);  // accumulates into grads()
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), F(0)); }
  const F* losses() const { return runner_->losses(0); }
  Runner<F>& runner() { return *runner_; }
  std::vector<ConstView> views(int unit);  // of the unit's uses(), in order

 private:
  std::vector<F*> grad_ptrs(int unit);
  Model<F> model_;
  bool fast_;
  std::vector<F> params_, grads_;
  std::vector<size_t> offsets_;
  std::unique_ptr<Runner<F>> runner_;
  bool have_forward_ = false;
};

// Autoregressive inference over a LocalModel's parameters: each block keeps a key/value cache,
// so each new token costs one position, not a full re-forward (deepmpi generate).
template <class F>
class Decoder {
 public:
  Decoder(LocalModel<F>& m, int B, int Tmax);
  // Feeds Tq tokens per sequence (tokens[B*Tq]) at the next Tq positions; returns the logits of
  // all B*Tq rows ([B*Tq, V]), valid until the next call.
  const F* feed(const kernels::Context& ctx, const int32_t* tokens, int Tq);
  int position() const { return pos_; }
  int capacity() const { return Tmax_; }
  void reset() { pos_ = 0; }

 private:
  LocalModel<F>& m_;
  int B_, Tmax_, pos_ = 0;
  std::vector<std::vector<F>> k_, v_;  // per unit (empty for units without a cache)
  std::vector<F> x_, y_, logits_, scratch_;
};

extern template class Model<float>;
extern template class Model<double>;
extern template class Runner<float>;
extern template class Runner<double>;
extern template class LocalModel<float>;
extern template class LocalModel<double>;

// Parameter counts of a config (the FLOPs formula and the banner).
size_t num_params(const ModelConfig& c);
size_t num_matmul_params(const ModelConfig& c);

}  // namespace dmpi::model
