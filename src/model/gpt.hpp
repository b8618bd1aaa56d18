// GPT-2 (pre-LayerNorm blocks, learned positions, tied embeddings) with explicit forward and
// backward, no autograd. Parameters and their gradients are each one flat buffer described by
// gpt_param_table(); activations are one flat buffer described by an activation table.
// Backward runs in the exact reverse order of forward; parameter gradients accumulate (+=).
//
// Two kernel paths: Fast (kernels/ops.hpp: BLAS + OpenMP, float only) and Reference
// (kernels/ref/ops_ref.hpp: plain loops, float or double). Tests hold Fast to Reference and
// Reference (double) to finite differences.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/model/config.hpp"

namespace dmpi::model {

enum class KernelPath { Fast, Reference };

// Where forward/backward stand, for the ZeRO engine's per-unit hook: it gathers a unit's
// parameters before the unit runs and frees them after (stage 3), and reduces a unit's
// gradients once its backward is done (stage 2). Order: forward BeforeForward(0), then per
// block u = 1..L Before/AfterForward(u), Before/AfterForward(L+1), AfterForward(0) after the
// tied LM head; backward BeforeBackward(0), Before/AfterBackward(L+1), blocks L..1, and
// AfterBackward(0) after the embeddings (the tied wte is used at both ends).
enum class HookPoint { BeforeForward, AfterForward, BeforeBackward, AfterBackward };

struct ActSpec {
  std::string name;
  size_t offset = 0, numel = 0;
};

template <class F>
class GPT {
 public:
  // B = micro-batch size, T = sequence length used for the activation buffers (<= max_pos).
  // unit_align: each unit starts at, and is padded to, a multiple of it (ZeRO partitions).
  // allocate_params / allocate_grads false: no flat buffer (ZeRO stage 3 / stage 2-3 keep
  // partitions instead; the engine sets each unit's storage).
  GPT(const GPTConfig& cfg, int B, int T, KernelPath path = KernelPath::Fast, size_t unit_align = 1,
      bool allocate_params = true, bool allocate_grads = true);

  const GPTConfig& config() const { return cfg_; }
  int batch() const { return B_; }
  int seq() const { return T_; }
  const std::vector<TensorSpec>& param_table() const { return ptable_; }
  const std::vector<ActSpec>& act_table() const { return atable_; }
  const std::vector<UnitSpec>& units() const { return units_; }

  // The flat buffers (nullptr once released to the ZeRO engine).
  F* params() { return params_.data(); }
  const F* params() const { return params_.data(); }
  F* grads() { return grads_.data(); }
  const F* grads() const { return grads_.data(); }
  size_t num_params() const { return numel_; }        // flat buffer length, padding included
  size_t real_params() const { return real_numel_; }  // parameters, padding excluded

  // Storage of one unit: its parameters/gradients are read/written at ptr + (tensor offset -
  // unit offset). By default they point into the flat buffers. release_params/grads free the
  // flat buffers: from then on the engine must set every unit's storage before it runs.
  void set_unit_params(int unit, F* ptr) { unit_p_[static_cast<size_t>(unit)] = ptr; }
  void set_unit_grads(int unit, F* ptr) { unit_g_[static_cast<size_t>(unit)] = ptr; }
  F* unit_params(int unit) const { return unit_p_[static_cast<size_t>(unit)]; }
  F* unit_grads(int unit) const { return unit_g_[static_cast<size_t>(unit)]; }
  void release_params();
  void release_grads();
  using Hook = std::function<void(HookPoint, int unit)>;
  void set_hook(Hook h) { hook_ = std::move(h); }
  F* param(const std::string& name);   // pointer into the flat buffer; throws if unknown
  F* grad(const std::string& name);

  // GPT-2 initialisation from `seed` (independent of the standard library): weights
  // N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases 0, LayerNorm weight 1.
  void init_weights(uint64_t seed);
  // The initial values of flat elements [begin, begin + n) (padding 0), the same numbers
  // init_weights writes there, computed without the rest of the model: ZeRO stage 3 initialises
  // only each rank's partition (DeepSpeed's zero.Init).
  void init_values(uint64_t seed, size_t begin, size_t n, F* out) const;

  // tokens, targets: [B*T] int32. Returns the mean loss over rows whose target is not
  // ignore_index (-100, as in PyTorch). Every token must be in [0, vocab).
  double forward(const int32_t* tokens, const int32_t* targets);
  // Accumulates gradients of (loss_scale * mean loss) into grads().
  void backward(double loss_scale);
  void zero_grad();

  // Bytes the model holds, by category (for the memory report).
  size_t param_bytes() const { return params_.capacity() * sizeof(F); }
  size_t grad_bytes() const { return grads_.capacity() * sizeof(F); }
  size_t activation_bytes() const { return (acts_.size() + scratch_.size()) * sizeof(F); }
  int64_t last_valid_rows() const { return valid_; }
  const F* losses() const;  // [B*T] per-row losses of the last forward

  static constexpr int32_t kIgnoreIndex = -100;

 private:
  struct LayerActs {
    F *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *res2, *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *res3;
  };
  F* act(const std::string& name);
  const TensorSpec& tensor(const std::string& name) const;
  void hook(HookPoint p, int unit) {
    if (hook_) hook_(p, unit);
  }

  GPTConfig cfg_;
  int B_, T_;
  KernelPath path_;
  std::vector<TensorSpec> ptable_;
  std::unordered_map<std::string, size_t> pindex_;
  std::vector<UnitSpec> units_;
  std::vector<F*> unit_p_, unit_g_;
  size_t numel_ = 0, real_numel_ = 0;
  Hook hook_;
  std::vector<ActSpec> atable_;
  std::vector<F> params_, grads_, acts_, scratch_;
  std::vector<LayerActs> layers_;
  F *encoded_ = nullptr, *lnf_ = nullptr, *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *logits_ = nullptr,
    *losses_ = nullptr, *tmp_ = nullptr;
  // backward scratch (one set, reused by every layer)
  F *d_res_ = nullptr, *d_btc_ = nullptr, *d_atty_ = nullptr, *d_qkv_ = nullptr, *d_att_ = nullptr,
    *d_fch_gelu_ = nullptr, *d_fch_ = nullptr;
  std::vector<int32_t> tokens_, targets_;
  int64_t valid_ = 0;
  bool have_forward_ = false;
};

extern template class GPT<float>;
extern template class GPT<double>;

}  // namespace dmpi::model
