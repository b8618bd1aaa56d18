// A model is an ordered list of units (src/model/model.hpp). A unit declares its parameters
// (logical name and shape, dtype policy, tensor-parallel split, parameter group, weight decay,
// initialisation) and implements an explicit forward and backward: no autograd, gradients
// accumulate (+=), backward runs in the exact reverse order of forward. The unit kinds:
//   Embedding    tokens -> x (learned positions or none)
//   Block        x -> x: LayerNorm|RMSNorm, MHA|GQA attention with or without RoPE, GELU|SwiGLU
//                MLP, biases on or off (a pre-norm residual block)
//   FinalNorm    x -> y
//   LmHead       y -> loss (cross-entropy), tied to the embedding's table or with its own
// A unit never sees where its parameters live or how they are sharded: the caller hands it a view
// per parameter it reads (fp32, or the 16-bit values as stored where every reader takes them) and a
// pointer per gradient (fp32). Adding a kind touches no engine code.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/tensor.hpp"
#include "src/model/config.hpp"
#include "src/model/ops.hpp"

namespace dmpi::model {

enum class ParamGroup { Dense, Expert };
enum class InitKind { Normal, Zeros, Ones };
// How the parameter is read while its unit runs, in bf16/fp16 training: Widened (an fp32 working
// copy: the element-wise kernels read fp32) or AsStored (every reader takes the 16-bit values as
// they are: GEMM weights and embedding tables, never widened).
enum class DTypePolicy { Widened, AsStored };

struct ParamSpec {
  std::string name;            // logical name, e.g. "layers.3.attn.qkv.weight" (checkpoint dataset names)
  std::vector<int64_t> shape;  // logical shape
  size_t numel = 0;
  bool weight_decay = false;   // 2-D weights and embeddings decay; biases and norms do not
  DTypePolicy dtype = DTypePolicy::Widened;
  // Tensor parallelism: the dimension split over the tp group (-1: replicated), and the sizes of
  // the segments along it that are each split separately (a fused q|k|v or gate|up weight);
  // empty: one segment.
  int tp_split_dim = -1;
  std::vector<int64_t> tp_segments;
  ParamGroup group = ParamGroup::Dense;
  InitKind init = InitKind::Normal;
  double init_std = 0.02;
};

// A parameter a unit reads: (model unit that owns it, index among that unit's parameters).
struct ParamUse {
  int unit = 0, index = 0;
};

// The sizes (elements of F) of what a unit keeps from its forward for its backward, per
// micro-batch: its output (the next unit's input), its internals, and the attention
// probabilities. Under recompute the internals and probabilities are transient (recomputed in
// the backward); the output of a unit that ends a recompute chunk is its checkpoint.
struct SavedSizes {
  size_t output = 0, internals = 0, probs = 0;
};

struct Batch {
  const int32_t* tokens = nullptr;   // [B*T]
  const int32_t* targets = nullptr;  // [B*T], kIgnoreIndex for rows without a target
  int B = 0, T = 0;
};
constexpr int32_t kIgnoreIndex = -100;  // as PyTorch

// One call of a unit's forward or backward.
template <class F>
struct UnitCall {
  const ConstView* p = nullptr;  // views of uses(), in order
  F* const* g = nullptr;         // gradients of uses(), in order (backward)
  Batch batch;
  const F* in = nullptr;         // the previous unit's output (null for the embedding)
  F* out = nullptr;              // this unit's output
  F* internals = nullptr;
  F* probs = nullptr;
  bool probs_valid = true;       // backward: false when the probabilities were not kept (recompute them)
  F* scratch = nullptr;          // scratch(B, T) elements, dead between calls
  const F* dout = nullptr;       // backward: gradient of the output (null for the head)
  F* din = nullptr;              // backward: gradient of the input, accumulated (null for the embedding)
  double loss_scale = 1.0;       // backward of the head: d(loss_scale * mean loss)
  double loss = 0.0;             // forward of the head: the mean loss over counted rows
  int64_t valid_rows = 0;        // forward of the head: the counted rows
};

// One call of a unit's inference step (no backward): Tq new rows per sequence at positions
// pos0 .. pos0 + Tq - 1, attending to what the key/value cache holds before them.
template <class F>
struct InferCall {
  const ConstView* p = nullptr;       // views of uses(), in order
  const int32_t* tokens = nullptr;    // [B*Tq] (the embedding)
  int B = 0, Tq = 0, pos0 = 0;
  const F* in = nullptr;              // [B*Tq, C]
  F* out = nullptr;                   // [B*Tq, C] (the head: logits [B*Tq, V])
  F *kcache = nullptr, *vcache = nullptr;  // a block's cache: [B, Tmax, kv_width()] each
  int Tmax = 0;
  F* scratch = nullptr;               // infer_scratch(B, Tq) elements
};

template <class F>
class Unit {
 public:
  virtual ~Unit() = default;
  virtual const char* kind() const = 0;
  const std::vector<ParamSpec>& params() const { return params_; }
  const std::vector<ParamUse>& uses() const { return uses_; }
  virtual SavedSizes saved(int B, int T) const = 0;
  virtual size_t scratch(int B, int T) const = 0;
  // backward: din may be the same buffer as dout (the residual blocks add into it)
  virtual bool in_place() const { return false; }
  virtual void forward(const Ops<F>& ops, UnitCall<F>& c) const = 0;
  virtual void backward(const Ops<F>& ops, UnitCall<F>& c) const = 0;
  // Inference with a key/value cache (deepmpi generate). kv_width: floats per position of the
  // unit's key cache (and of its value cache); 0 for units without one.
  virtual size_t kv_width() const { return 0; }
  virtual size_t infer_scratch(int B, int Tq) const { return 0; }
  virtual void infer(const Ops<F>& ops, InferCall<F>& c) const = 0;

 protected:
  std::vector<ParamSpec> params_;
  std::vector<ParamUse> uses_;
  // registers an own parameter (and its use) and returns its index in uses()
  int add_param(int self, ParamSpec s);
};

// The unit list of a composition (GPT-2, LLaMA, or any mix the config names).
template <class F>
std::vector<std::unique_ptr<Unit<F>>> build_units(const ModelConfig& c);

}  // namespace dmpi::model
