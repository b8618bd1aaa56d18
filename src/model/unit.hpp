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
#include <algorithm>
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
  std::vector<int64_t> shape;  // this tensor-parallel rank's shape (the logical shape at tp 1)
  size_t numel = 0;            // of shape
  std::vector<int64_t> logical;  // the logical shape (checkpoints hold it), and its element count
  size_t logical_numel = 0;
  bool weight_decay = false;   // 2-D weights and embeddings decay; biases and norms do not
  DTypePolicy dtype = DTypePolicy::Widened;
  // Tensor parallelism: the dimension split over the tp group (-1: replicated), and the sizes of
  // the segments along it that are each split separately (a fused q|k|v or gate|up weight);
  // empty: one segment.
  int tp_split_dim = -1;
  std::vector<int64_t> tp_segments;
  int tp_size = 1, tp_rank = 0;  // the split this rank holds: segment s's rows [S r / tp, S (r + 1) / tp)
  bool tp_split() const { return tp_split_dim >= 0 && tp_size > 1; }
  ParamGroup group = ParamGroup::Dense;
  // Pipeline parallelism with a tied embedding/head: `tied` marks the table on both ends (its
  // gradients are summed over the two stages); `tied_copy` the last stage's copy of it (the
  // checkpoint holds the first stage's, and the gradient norm counts it once).
  bool tied = false, tied_copy = false;
  InitKind init = InitKind::Normal;
  double init_std = 0.02;
};

// Elements [n r / size, n (r + 1) / size) of a dimension of n split over `size` ranks: the begin.
inline int64_t split_begin(int64_t n, int size, int rank) { return n * rank / size; }
inline int64_t split_len(int64_t n, int size, int rank) {
  return split_begin(n, size, rank + 1) - split_begin(n, size, rank);
}
// The shape tensor-parallel rank `rank` holds of a spec's logical shape.
std::vector<int64_t> tp_local_shape(const ParamSpec& s, int rank);
// The contiguous runs of the logical tensor (row-major) that elements [begin, begin + n) of
// rank `rank`'s local tensor cover, in local order: fn(logical_begin, local_offset, len), where
// local_offset counts from `begin`. Unsplit tensors: one run, the identity. A row split (dim 0)
// gives one run per segment touched; a column split (dim 1) one run per row.
template <class Fn>
void for_each_logical_run(const ParamSpec& s, int rank, size_t begin, size_t n, Fn&& fn);

// The tensor-parallel group as the units see it: this rank's place and the collectives of the
// tensor-parallel maths (the engine implements them over its tp communicator; the model layer
// never sees MPI). Sums and maxima are in place over the group.
class TpComm {
 public:
  virtual ~TpComm() = default;
  virtual int size() const = 0;
  virtual int rank() const = 0;
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  virtual std::unique_ptr<Pending> start_sum(void* x, size_t n, DType t) = 0;  // non-blocking
  virtual void sum(void* x, size_t n, DType t) = 0;
  virtual void max(void* x, size_t n, DType t) = 0;
  // Sequence parallelism: n elements per rank gathered in rank order into recv (n x size); the
  // sum of send (n x size) scattered, rank r receiving the r-th n (non-blocking)
  virtual void all_gather(const void* send, size_t n, void* recv, DType t) = 0;
  virtual std::unique_ptr<Pending> start_reduce_scatter(const void* send, void* recv, size_t n, DType t) = 0;
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
  TpComm* tp = nullptr;          // the tensor-parallel group (null: one rank)
  // Zero-bubble pipelines: weight_later makes backward compute the input gradient only, stashing
  // what the weight gradients need into `deferred` (deferred(B, T) elements, kept until then);
  // backward_weight then computes them
  bool weight_later = false;
  F* deferred = nullptr;
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
  // Zero-bubble split of the backward: whether the unit can leave its weight gradients for a
  // later backward_weight call, and the elements it keeps for them in between (UnitCall::deferred).
  // Units that cannot split compute everything in backward and nothing in backward_weight.
  virtual bool splits_backward() const { return false; }
  virtual size_t deferred(int B, int T) const { return 0; }
  virtual void backward_weight(const Ops<F>& ops, UnitCall<F>& c) const {}
  // A pipeline stage's part of the unit list: use (global unit g, i) becomes (local_of[g], i)
  void renumber_uses(const std::vector<int>& local_of);
  // Inference with a key/value cache (deepmpi generate). kv_width: floats per position of the
  // unit's key cache (and of its value cache); 0 for units without one.
  virtual size_t kv_width() const { return 0; }
  virtual size_t infer_scratch(int B, int Tq) const { return 0; }
  virtual void infer(const Ops<F>& ops, InferCall<F>& c) const = 0;

 protected:
  std::vector<ParamSpec> params_;
  std::vector<ParamUse> uses_;
  int tp_size_ = 1, tp_rank_ = 0;  // set before add_param: split parameters take this rank's part
  // registers an own parameter (and its use) and returns its index in uses()
  int add_param(int self, ParamSpec s);
};

// The unit list of a composition (GPT-2, LLaMA, or any mix the config names). head_tied_copy
// (pipeline parallelism, the embedding on another stage): a tied head owns a copy of the table.
template <class F>
std::vector<std::unique_ptr<Unit<F>>> build_units(const ModelConfig& c, bool head_tied_copy = false);

template <class Fn>
void for_each_logical_run(const ParamSpec& s, int rank, size_t begin, size_t n, Fn&& fn) {
  if (n == 0) return;
  if (!s.tp_split()) {
    fn(begin, size_t{0}, n);
    return;
  }
  const int d = s.tp_split_dim;
  // as a [R, K] matrix (1-D: K = 1), split along d
  const size_t R = static_cast<size_t>(s.logical[0]), K = s.logical.size() > 1 ? static_cast<size_t>(s.logical[1]) : 1;
  const size_t split_n = d == 0 ? R : K;
  std::vector<int64_t> segs = s.tp_segments;
  if (segs.empty()) segs = {static_cast<int64_t>(split_n)};
  // local index along d -> logical index along d, by segment: (local start, logical start, length)
  struct Seg {
    size_t local, logical, len;
  };
  std::vector<Seg> map;
  size_t lo = 0, go = 0;
  for (int64_t S : segs) {
    const size_t len = static_cast<size_t>(split_len(S, s.tp_size, rank));
    map.push_back({lo, go + static_cast<size_t>(split_begin(S, s.tp_size, rank)), len});
    lo += len, go += static_cast<size_t>(S);
  }
  const size_t Kl = d == 0 ? K : lo;  // local row width
  size_t pos = begin, left = n, off = 0;
  if (d == 0) {
    // local rows -> logical rows, contiguous within a segment
    for (const Seg& g : map) {
      const size_t a = g.local * Kl, b = (g.local + g.len) * Kl;  // the segment's local elements
      const size_t x = std::max(pos, a), y = std::min(pos + left, b);
      if (x >= y) continue;
      fn((g.logical + (x - a) / Kl) * K + (x - a) % Kl, off + (x - pos), y - x);
    }
    return;
  }
  // column split: per local row, per segment of columns
  while (left > 0) {
    const size_t row = pos / Kl, col = pos % Kl;
    const size_t take = std::min(left, Kl - col);
    for (const Seg& g : map) {
      const size_t x = std::max(col, g.local), y = std::min(col + take, g.local + g.len);
      if (x < y) fn(row * K + g.logical + (x - g.local), off + (x - col), y - x);
    }
    pos += take, left -= take, off += take;
  }
}

}  // namespace dmpi::model
