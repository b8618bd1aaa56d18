#include "src/model/gpt.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "kernels/ref/ops_ref.hpp"
#include "base/error.hpp"
#include "base/rng.hpp"

namespace dmpi::model {

namespace k = dmpi::kernels;
namespace kr = dmpi::kernels::ref;

// Dispatch: the fast kernels exist for float only; double always runs the reference.
#define DMPI_DISPATCH(fast_call, ref_call)                               \
  do {                                                                   \
    if constexpr (std::is_same_v<F, float>) {                            \
      if (path_ == KernelPath::Fast) {                                   \
        fast_call;                                                       \
        break;                                                           \
      }                                                                  \
    }                                                                    \
    ref_call;                                                            \
  } while (0)

template <class F>
GPT<F>::GPT(const GPTConfig& cfg, int B, int T, KernelPath path, size_t unit_align, bool allocate_params,
            bool allocate_grads)
    : cfg_(cfg), B_(B), T_(T), path_(path) {
  cfg_.validate();
  DMPI_REQUIRE(B >= 1, "micro-batch size must be >= 1 (got " << B << ")");
  DMPI_REQUIRE(T >= 1 && T <= cfg.max_pos,
               "sequence length " << T << " must be in [1, --max-position-embeddings=" << cfg.max_pos << "]");
  DMPI_REQUIRE(!(std::is_same_v<F, double> && path == KernelPath::Fast),
               "the fast kernel path is float only; use KernelPath::Reference for double");
  ptable_ = gpt_param_table(cfg_, unit_align);
  units_ = gpt_units(ptable_, unit_align);
  for (size_t i = 0; i < ptable_.size(); ++i) pindex_[ptable_[i].name] = i, real_numel_ += ptable_[i].numel;
  numel_ = units_.back().offset + units_.back().numel;
  if (allocate_params) params_.assign(numel_, F(0));
  if (allocate_grads) grads_.assign(numel_, F(0));
  for (const auto& u : units_) {
    unit_p_.push_back(allocate_params ? params_.data() + u.offset : nullptr);
    unit_g_.push_back(allocate_grads ? grads_.data() + u.offset : nullptr);
  }

  const size_t BT = static_cast<size_t>(B) * T, C = cfg_.hidden, NH = cfg_.heads, V = cfg_.vocab;
  size_t off = 0;
  auto add = [&](const std::string& name, size_t n) {
    atable_.push_back({name, off, n});
    off += n;
  };
  add("encoded", BT * C);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    add(p + "ln1", BT * C);
    add(p + "ln1_mean", BT);
    add(p + "ln1_rstd", BT);
    add(p + "qkv", BT * 3 * C);
    add(p + "att", static_cast<size_t>(B) * NH * T * T);
    add(p + "atty", BT * C);
    add(p + "res2", BT * C);
    add(p + "ln2", BT * C);
    add(p + "ln2_mean", BT);
    add(p + "ln2_rstd", BT);
    add(p + "fch", BT * 4 * C);
    add(p + "fch_gelu", BT * 4 * C);
    add(p + "res3", BT * C);
  }
  add("lnf", BT * C);
  add("lnf_mean", BT);
  add("lnf_rstd", BT);
  add("logits", BT * V);  // holds probabilities after forward, dlogits during backward
  add("losses", BT);
  add("tmp", BT * C);     // attention/MLP projection output before the residual add
  acts_.assign(off, F(0));

  encoded_ = act("encoded");
  for (int l = 0; l < cfg_.num_layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    layers_.push_back({act(p + "ln1"), act(p + "ln1_mean"), act(p + "ln1_rstd"), act(p + "qkv"), act(p + "att"),
                       act(p + "atty"), act(p + "res2"), act(p + "ln2"), act(p + "ln2_mean"), act(p + "ln2_rstd"),
                       act(p + "fch"), act(p + "fch_gelu"), act(p + "res3")});
  }
  lnf_ = act("lnf");
  lnf_mean_ = act("lnf_mean");
  lnf_rstd_ = act("lnf_rstd");
  logits_ = act("logits");
  losses_ = act("losses");
  tmp_ = act("tmp");

  // Backward scratch: gradients of activations, one set shared by all layers.
  size_t s = 0;
  size_t o_res = s; s += BT * C;
  size_t o_btc = s; s += BT * C;
  size_t o_atty = s; s += BT * C;
  size_t o_qkv = s; s += BT * 3 * C;
  size_t o_att = s; s += static_cast<size_t>(B) * NH * T * T;
  size_t o_fg = s; s += BT * 4 * C;
  size_t o_f = s; s += BT * 4 * C;
  scratch_.assign(s, F(0));
  d_res_ = scratch_.data() + o_res;
  d_btc_ = scratch_.data() + o_btc;
  d_atty_ = scratch_.data() + o_atty;
  d_qkv_ = scratch_.data() + o_qkv;
  d_att_ = scratch_.data() + o_att;
  d_fch_gelu_ = scratch_.data() + o_fg;
  d_fch_ = scratch_.data() + o_f;
  tokens_.resize(BT);
  targets_.resize(BT);
}

template <class F>
F* GPT<F>::act(const std::string& name) {
  for (auto& a : atable_)
    if (a.name == name) return acts_.data() + a.offset;
  DMPI_FAIL("no activation named '" << name << "'");
}

template <class F>
const TensorSpec& GPT<F>::tensor(const std::string& name) const {
  auto it = pindex_.find(name);
  DMPI_REQUIRE(it != pindex_.end(), "no parameter named '" << name << "'");
  return ptable_[it->second];
}

template <class F>
F* GPT<F>::param(const std::string& name) {
  const TensorSpec& t = tensor(name);
  F* base = unit_p_[static_cast<size_t>(t.unit)];
  DMPI_REQUIRE(base, "parameters of unit " << t.unit << " (" << name << ") are not resident");
  return base + (t.offset - units_[static_cast<size_t>(t.unit)].offset);
}

template <class F>
F* GPT<F>::grad(const std::string& name) {
  const TensorSpec& t = tensor(name);
  F* base = unit_g_[static_cast<size_t>(t.unit)];
  DMPI_REQUIRE(base, "gradients of unit " << t.unit << " (" << name << ") have no storage");
  return base + (t.offset - units_[static_cast<size_t>(t.unit)].offset);
}

template <class F>
void GPT<F>::release_params() {
  std::vector<F>().swap(params_);
  std::fill(unit_p_.begin(), unit_p_.end(), nullptr);
}

template <class F>
void GPT<F>::release_grads() {
  std::vector<F>().swap(grads_);
  std::fill(unit_g_.begin(), unit_g_.end(), nullptr);
}

template <class F>
const F* GPT<F>::losses() const {
  return losses_;
}

template <class F>
void GPT<F>::init_weights(uint64_t seed) {
  DMPI_REQUIRE(!params_.empty(), "init_weights needs the flat parameter buffer (call it before release_params)");
  init_values(seed, 0, numel_, params_.data());
}

template <class F>
void GPT<F>::init_values(uint64_t seed, size_t begin, size_t n, F* out) const {
  const double residual_std = 0.02 / std::sqrt(2.0 * cfg_.num_layers);
  std::fill(out, out + n, F(0));  // padding
  const size_t end = begin + n;
  for (size_t i = 0; i < ptable_.size(); ++i) {
    const auto& t = ptable_[i];
    const size_t a = std::max(begin, t.offset), b = std::min(end, t.offset + t.numel);
    if (a >= b) continue;
    F* p = out + (a - begin);
    const size_t j0 = a - t.offset, j1 = b - t.offset;  // elements of the tensor
    bool is_ln_weight = t.name.find("ln") != std::string::npos && t.name.ends_with(".weight");
    if (t.shape.size() == 1) {
      std::fill(p, p + (j1 - j0), is_ln_weight ? F(1) : F(0));
      continue;
    }
    bool residual_proj = t.name.ends_with("attn.proj.weight") || t.name.ends_with("mlp.proj.weight");
    double std_dev = residual_proj ? residual_std : 0.02;
    // One stream per tensor: a tensor's values do not depend on the tensors before it, and
    // element j is reached by skipping the draws before it.
    Rng rng(seed, 1000 + i);
    rng.skip(2 * (j0 / 2));
    if (j0 % 2) rng.normal();
    for (size_t j = j0; j < j1; ++j) p[j - j0] = static_cast<F>(rng.normal() * std_dev);
  }
}

template <class F>
void GPT<F>::zero_grad() {
  DMPI_REQUIRE(!grads_.empty(), "zero_grad needs the flat gradient buffer (released to the ZeRO engine)");
  if constexpr (std::is_same_v<F, float>) {
    k::fill_zero(kernels::global_context(), grads_.data(), grads_.size());
  } else {
    std::fill(grads_.begin(), grads_.end(), F(0));
  }
}

namespace {
// Transitional (until the units replace this class): the weight operand of fp32 memory is its
// registered bf16 copy when there is one (kernels::register_lowp_copy).
ConstView weight_view(const float* p, int64_t rows, int64_t cols) {
  const kernels::Operand o = kernels::registered_operand(p, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(cols));
  return ConstView(o.data, o.dtype, Shape{rows, cols});
}
ConstView table_view(const float* p, int64_t rows, int64_t cols) {
  if (const bf16* h = kernels::lowp_copy(p, static_cast<size_t>(rows * cols))) return ConstView(h, DType::BF16, Shape{rows, cols});
  return ConstView(p, DType::F32, Shape{rows, cols});
}
}  // namespace

template <class F>
double GPT<F>::forward(const int32_t* tokens, const int32_t* targets) {
  const kernels::Context kctx = kernels::global_context();
  const int B = B_, T = T_, C = cfg_.hidden, NH = cfg_.heads, V = cfg_.vocab;
  const int BT = B * T;
  for (int i = 0; i < BT; ++i) {
    DMPI_REQUIRE(tokens[i] >= 0 && tokens[i] < V,
                 "token " << tokens[i] << " at position " << i << " is outside the vocabulary [0, " << V << ")");
    DMPI_REQUIRE(targets[i] == kIgnoreIndex || (targets[i] >= 0 && targets[i] < V),
                 "target " << targets[i] << " at position " << i << " is outside the vocabulary [0, " << V << ")");
  }
  std::memcpy(tokens_.data(), tokens, sizeof(int32_t) * BT);
  std::memcpy(targets_.data(), targets, sizeof(int32_t) * BT);

  hook(HookPoint::BeforeForward, 0);
  F* wte = param("wte");
  F* wpe = param("wpe");
  DMPI_DISPATCH(k::encoder_forward(kctx, encoded_, tokens, table_view(wte, V, C), table_view(wpe, cfg_.max_pos, C), B, T, C),
                kr::encoder_forward(encoded_, tokens, wte, wpe, B, T, C));
  const F* x = encoded_;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    hook(HookPoint::BeforeForward, l + 1);
    LayerActs& a = layers_[l];
    std::string p = "layers." + std::to_string(l) + ".";
    F *ln1w = param(p + "ln1.weight"), *ln1b = param(p + "ln1.bias");
    F *qkvw = param(p + "attn.qkv.weight"), *qkvb = param(p + "attn.qkv.bias");
    F *projw = param(p + "attn.proj.weight"), *projb = param(p + "attn.proj.bias");
    F *ln2w = param(p + "ln2.weight"), *ln2b = param(p + "ln2.bias");
    F *fcw = param(p + "mlp.fc.weight"), *fcb = param(p + "mlp.fc.bias");
    F *fcpw = param(p + "mlp.proj.weight"), *fcpb = param(p + "mlp.proj.bias");
    const size_t n_btc = static_cast<size_t>(BT) * C;

    DMPI_DISPATCH(k::layernorm_forward(kctx, a.ln1, a.ln1_mean, a.ln1_rstd, x, ln1w, ln1b, BT, C),
                  kr::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, ln1w, ln1b, BT, C));
    DMPI_DISPATCH(k::matmul_forward(kctx, a.qkv, a.ln1, weight_view(qkvw, 3 * C, C), qkvb, BT, C, 3 * C),
                  kr::matmul_forward(a.qkv, a.ln1, qkvw, qkvb, BT, C, 3 * C));
    DMPI_DISPATCH(k::attention_forward(kctx, a.atty, a.att, a.qkv, B, T, C, NH),
                  kr::attention_forward(a.atty, a.att, a.qkv, B, T, C, NH));
    DMPI_DISPATCH(k::matmul_forward(kctx, tmp_, a.atty, weight_view(projw, C, C), projb, BT, C, C),
                  kr::matmul_forward(tmp_, a.atty, projw, projb, BT, C, C));
    DMPI_DISPATCH(k::residual_forward(kctx, a.res2, x, tmp_, n_btc), kr::residual_forward(a.res2, x, tmp_, n_btc));
    DMPI_DISPATCH(k::layernorm_forward(kctx, a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, ln2w, ln2b, BT, C),
                  kr::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, ln2w, ln2b, BT, C));
    DMPI_DISPATCH(k::matmul_forward(kctx, a.fch, a.ln2, weight_view(fcw, 4 * C, C), fcb, BT, C, 4 * C),
                  kr::matmul_forward(a.fch, a.ln2, fcw, fcb, BT, C, 4 * C));
    DMPI_DISPATCH(k::gelu_forward(kctx, a.fch_gelu, a.fch, n_btc * 4), kr::gelu_forward(a.fch_gelu, a.fch, n_btc * 4));
    DMPI_DISPATCH(k::matmul_forward(kctx, tmp_, a.fch_gelu, weight_view(fcpw, C, 4 * C), fcpb, BT, 4 * C, C),
                  kr::matmul_forward(tmp_, a.fch_gelu, fcpw, fcpb, BT, 4 * C, C));
    DMPI_DISPATCH(k::residual_forward(kctx, a.res3, a.res2, tmp_, n_btc),
                  kr::residual_forward(a.res3, a.res2, tmp_, n_btc));
    x = a.res3;
    hook(HookPoint::AfterForward, l + 1);
  }
  const int last = cfg_.num_layers + 1;
  hook(HookPoint::BeforeForward, last);
  F *lnfw = param("lnf.weight"), *lnfb = param("lnf.bias");
  DMPI_DISPATCH(k::layernorm_forward(kctx, lnf_, lnf_mean_, lnf_rstd_, x, lnfw, lnfb, BT, C),
                kr::layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, x, lnfw, lnfb, BT, C));
  hook(HookPoint::AfterForward, last);
  // Tied LM head: logits = lnf @ wte^T
  DMPI_DISPATCH(k::matmul_forward(kctx, logits_, lnf_, weight_view(wte, V, C), nullptr, BT, C, V),
                kr::matmul_forward<F>(logits_, lnf_, wte, nullptr, BT, C, V));
  DMPI_DISPATCH(valid_ = k::crossentropy_forward(kctx, losses_, logits_, targets, BT, V, kIgnoreIndex),
                valid_ = kr::crossentropy_forward(losses_, logits_, logits_, targets, BT, V, kIgnoreIndex));
  hook(HookPoint::AfterForward, 0);
  double sum = 0.0;
  for (int i = 0; i < BT; ++i) sum += static_cast<double>(losses_[i]);
  have_forward_ = true;
  return valid_ > 0 ? sum / static_cast<double>(valid_) : 0.0;
}

template <class F>
void GPT<F>::backward(double loss_scale) {
  DMPI_REQUIRE(have_forward_, "GPT::backward called without a forward since the last backward");
  const kernels::Context kctx = kernels::global_context();
  have_forward_ = false;
  const int B = B_, T = T_, C = cfg_.hidden, NH = cfg_.heads, V = cfg_.vocab;
  const int BT = B * T;
  const size_t n_btc = static_cast<size_t>(BT) * C;
  const int32_t* tokens = tokens_.data();
  const int32_t* targets = targets_.data();
  auto zero = [&](F* p, size_t n) {
    if constexpr (std::is_same_v<F, float>) k::fill_zero(kctx, p, n);
    else std::fill(p, p + n, F(0));
  };
  hook(HookPoint::BeforeBackward, 0);
  F* wte = param("wte");
  F* dwte = grad("wte");

  // d(mean loss)/dlogit, in place over the probabilities
  const F dloss = valid_ > 0 ? static_cast<F>(loss_scale / static_cast<double>(valid_)) : F(0);
  DMPI_DISPATCH(k::crossentropy_backward(kctx, logits_, targets, dloss, BT, V, kIgnoreIndex),
                kr::crossentropy_backward(logits_, logits_, targets, dloss, BT, V, kIgnoreIndex));
  // LM head: dlnf = dlogits @ wte ; dwte += dlogits^T @ lnf
  zero(d_btc_, n_btc);
  DMPI_DISPATCH(k::matmul_backward(kctx, d_btc_, dwte, nullptr, logits_, lnf_, weight_view(wte, V, C), BT, C, V),
                kr::matmul_backward<F>(d_btc_, dwte, nullptr, logits_, lnf_, wte, BT, C, V));
  // Final LayerNorm: d_res_ = gradient of the residual stream
  const F* x_last = cfg_.num_layers > 0 ? layers_.back().res3 : encoded_;
  const int last = cfg_.num_layers + 1;
  hook(HookPoint::BeforeBackward, last);
  zero(d_res_, n_btc);
  DMPI_DISPATCH(k::layernorm_backward(kctx, d_res_, grad("lnf.weight"), grad("lnf.bias"), d_btc_, x_last,
                                      param("lnf.weight"), lnf_mean_, lnf_rstd_, BT, C),
                kr::layernorm_backward(d_res_, grad("lnf.weight"), grad("lnf.bias"), d_btc_, x_last,
                                       param("lnf.weight"), lnf_mean_, lnf_rstd_, BT, C));
  hook(HookPoint::AfterBackward, last);

  for (int l = cfg_.num_layers - 1; l >= 0; --l) {
    hook(HookPoint::BeforeBackward, l + 1);
    LayerActs& a = layers_[l];
    const F* x_in = l == 0 ? encoded_ : layers_[l - 1].res3;
    std::string p = "layers." + std::to_string(l) + ".";
    // res3 = res2 + mlp(...): the residual add passes d_res_ through unchanged to res2 and
    // to the MLP output, so d_res_ is used directly as both (residual_backward's identity).
    zero(d_fch_gelu_, n_btc * 4);
    DMPI_DISPATCH(k::matmul_backward(kctx, d_fch_gelu_, grad(p + "mlp.proj.weight"), grad(p + "mlp.proj.bias"), d_res_, a.fch_gelu, weight_view(param(p + "mlp.proj.weight"), C, 4 * C), BT, 4 * C, C),
                  kr::matmul_backward(d_fch_gelu_, grad(p + "mlp.proj.weight"), grad(p + "mlp.proj.bias"), d_res_,
                                      a.fch_gelu, param(p + "mlp.proj.weight"), BT, 4 * C, C));
    zero(d_fch_, n_btc * 4);
    DMPI_DISPATCH(k::gelu_backward(kctx, d_fch_, a.fch, d_fch_gelu_, n_btc * 4),
                  kr::gelu_backward(d_fch_, a.fch, d_fch_gelu_, n_btc * 4));
    zero(d_btc_, n_btc);
    DMPI_DISPATCH(k::matmul_backward(kctx, d_btc_, grad(p + "mlp.fc.weight"), grad(p + "mlp.fc.bias"), d_fch_, a.ln2, weight_view(param(p + "mlp.fc.weight"), 4 * C, C), BT, C, 4 * C),
                  kr::matmul_backward(d_btc_, grad(p + "mlp.fc.weight"), grad(p + "mlp.fc.bias"), d_fch_, a.ln2,
                                      param(p + "mlp.fc.weight"), BT, C, 4 * C));
    DMPI_DISPATCH(k::layernorm_backward(kctx, d_res_, grad(p + "ln2.weight"), grad(p + "ln2.bias"), d_btc_, a.res2,
                                        param(p + "ln2.weight"), a.ln2_mean, a.ln2_rstd, BT, C),
                  kr::layernorm_backward(d_res_, grad(p + "ln2.weight"), grad(p + "ln2.bias"), d_btc_, a.res2,
                                         param(p + "ln2.weight"), a.ln2_mean, a.ln2_rstd, BT, C));
    // res2 = x_in + attn(...): same pass-through.
    zero(d_atty_, n_btc);
    DMPI_DISPATCH(k::matmul_backward(kctx, d_atty_, grad(p + "attn.proj.weight"), grad(p + "attn.proj.bias"), d_res_, a.atty, weight_view(param(p + "attn.proj.weight"), C, C), BT, C, C),
                  kr::matmul_backward(d_atty_, grad(p + "attn.proj.weight"), grad(p + "attn.proj.bias"), d_res_,
                                      a.atty, param(p + "attn.proj.weight"), BT, C, C));
    zero(d_qkv_, n_btc * 3);
    DMPI_DISPATCH(k::attention_backward(kctx, d_qkv_, d_att_, d_atty_, a.qkv, a.att, B, T, C, NH),
                  kr::attention_backward(d_qkv_, d_att_, d_atty_, a.qkv, a.att, B, T, C, NH));
    zero(d_btc_, n_btc);
    DMPI_DISPATCH(k::matmul_backward(kctx, d_btc_, grad(p + "attn.qkv.weight"), grad(p + "attn.qkv.bias"), d_qkv_, a.ln1, weight_view(param(p + "attn.qkv.weight"), 3 * C, C), BT, C, 3 * C),
                  kr::matmul_backward(d_btc_, grad(p + "attn.qkv.weight"), grad(p + "attn.qkv.bias"), d_qkv_, a.ln1,
                                      param(p + "attn.qkv.weight"), BT, C, 3 * C));
    DMPI_DISPATCH(k::layernorm_backward(kctx, d_res_, grad(p + "ln1.weight"), grad(p + "ln1.bias"), d_btc_, x_in,
                                        param(p + "ln1.weight"), a.ln1_mean, a.ln1_rstd, BT, C),
                  kr::layernorm_backward(d_res_, grad(p + "ln1.weight"), grad(p + "ln1.bias"), d_btc_, x_in,
                                         param(p + "ln1.weight"), a.ln1_mean, a.ln1_rstd, BT, C));
    hook(HookPoint::AfterBackward, l + 1);
  }
  DMPI_DISPATCH(k::encoder_backward(kctx, dwte, grad("wpe"), d_res_, tokens, B, T, C),
                kr::encoder_backward(dwte, grad("wpe"), d_res_, tokens, B, T, C));
  hook(HookPoint::AfterBackward, 0);
}

template class GPT<float>;
template class GPT<double>;

}  // namespace dmpi::model
