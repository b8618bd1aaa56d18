// The unit kinds. Shapes in comments: B batch, T sequence, C hidden, NH heads, KVH kv heads,
// hs head size, V vocabulary, Fw the MLP activation width (4C for GELU, ffn for SwiGLU), W1 the
// first MLP matmul's width (Fw, or 2 ffn for SwiGLU's gate|up).
#include <algorithm>
#include <cmath>

#include "base/error.hpp"
#include "src/model/unit.hpp"

namespace dmpi::model {

template <class F>
int Unit<F>::add_param(int self, ParamSpec s) {
  s.numel = 1;
  for (auto d : s.shape) s.numel *= static_cast<size_t>(d);
  params_.push_back(std::move(s));
  uses_.push_back({self, static_cast<int>(params_.size()) - 1});
  return static_cast<int>(uses_.size()) - 1;
}

namespace {

ParamSpec weight(std::string name, std::vector<int64_t> shape, double std_dev, int tp_dim,
                 std::vector<int64_t> segments = {}) {
  ParamSpec s;
  s.name = std::move(name);
  s.shape = std::move(shape);
  s.weight_decay = true;
  s.dtype = DTypePolicy::AsStored;  // read by GEMMs (or the embedding lookup) only
  s.tp_split_dim = tp_dim;
  s.tp_segments = std::move(segments);
  s.init = InitKind::Normal;
  s.init_std = std_dev;
  return s;
}
ParamSpec vector_param(std::string name, int64_t n, InitKind init, int tp_dim = -1, std::vector<int64_t> segments = {}) {
  ParamSpec s;
  s.name = std::move(name);
  s.shape = {n};
  s.weight_decay = false;
  s.dtype = DTypePolicy::Widened;  // element-wise kernels read fp32
  s.tp_split_dim = tp_dim;
  s.tp_segments = std::move(segments);
  s.init = init;
  return s;
}

// ---- Embedding: tokens -> x[B,T,C] = wte[tokens] (+ wpe[t])
template <class F>
class Embedding final : public Unit<F> {
 public:
  Embedding(const ModelConfig& c, int self) : C_(c.hidden) {
    wte_ = this->add_param(self, weight("wte", {c.vocab, c.hidden}, 0.02, 0));
    if (c.positions == Positions::Learned) wpe_ = this->add_param(self, weight("wpe", {c.max_pos, c.hidden}, 0.02, -1));
  }
  const char* kind() const override { return "embedding"; }
  SavedSizes saved(int B, int T) const override { return {static_cast<size_t>(B) * T * C_, 0, 0}; }
  size_t scratch(int, int) const override { return 0; }
  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    ops.encoder_forward(c.out, c.batch.tokens, c.p[wte_], wpe_ >= 0 ? c.p[wpe_] : ConstView(), c.batch.B, c.batch.T, C_);
  }
  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    ops.encoder_backward(c.g[wte_], wpe_ >= 0 ? c.g[wpe_] : nullptr, c.dout, c.batch.tokens, c.batch.B, c.batch.T, C_);
  }
  void infer(const Ops<F>& ops, InferCall<F>& c) const override {
    // positions pos0 .. pos0 + Tq - 1: the rows of the table from pos0
    const ConstView wpe = wpe_ >= 0 ? c.p[wpe_].rows(c.pos0, c.Tq) : ConstView();
    DMPI_REQUIRE(wpe_ < 0 || c.pos0 + c.Tq <= c.p[wpe_].shape[0],
                 "position " << c.pos0 + c.Tq - 1 << " is beyond the " << c.p[wpe_].shape[0] << " learned positions");
    ops.encoder_forward(c.out, c.tokens, c.p[wte_], wpe, c.B, c.Tq, C_);
  }

 private:
  int C_, wte_ = -1, wpe_ = -1;
};

// ---- Block: x -> x + attn(norm1(x)) -> ... + mlp(norm2(.)), pre-norm.
template <class F>
class Block final : public Unit<F> {
 public:
  Block(const ModelConfig& c, int self, int layer)
      : C_(c.hidden), NH_(c.heads), KVH_(c.kv_heads()), hs_(c.head_size()), QKV_(c.qkv_width()), A_(c.heads * c.head_size()),
        Fw_(c.swiglu ? c.ffn() : c.ffn()), W1_(c.swiglu ? 2 * c.ffn() : c.ffn()), rms_(c.norm == Norm::RMSNorm),
        rope_(c.positions == Positions::Rope), swiglu_(c.swiglu), eps_(c.norm_eps), base_(c.rotary_base) {
    const std::string p = "layers." + std::to_string(layer) + ".";
    const double resid_std = 0.02 / std::sqrt(2.0 * c.num_layers);  // GPT-2's scaled residual projections
    const int64_t q = static_cast<int64_t>(NH_) * hs_, kv = static_cast<int64_t>(KVH_) * hs_;
    ln1w_ = this->add_param(self, vector_param(p + "ln1.weight", C_, InitKind::Ones));
    if (!rms_) ln1b_ = this->add_param(self, vector_param(p + "ln1.bias", C_, InitKind::Zeros));
    qkvw_ = this->add_param(self, weight(p + "attn.qkv.weight", {QKV_, C_}, 0.02, 0, {q, kv, kv}));
    if (c.bias) qkvb_ = this->add_param(self, vector_param(p + "attn.qkv.bias", QKV_, InitKind::Zeros, 0, {q, kv, kv}));
    projw_ = this->add_param(self, weight(p + "attn.proj.weight", {C_, A_}, resid_std, 1));
    if (c.bias) projb_ = this->add_param(self, vector_param(p + "attn.proj.bias", C_, InitKind::Zeros));
    ln2w_ = this->add_param(self, vector_param(p + "ln2.weight", C_, InitKind::Ones));
    if (!rms_) ln2b_ = this->add_param(self, vector_param(p + "ln2.bias", C_, InitKind::Zeros));
    std::vector<int64_t> fc_segments;
    if (swiglu_) fc_segments = {Fw_, Fw_};
    fcw_ = this->add_param(self, weight(p + "mlp.fc.weight", {W1_, C_}, 0.02, 0, fc_segments));
    if (c.bias) fcb_ = this->add_param(self, vector_param(p + "mlp.fc.bias", W1_, InitKind::Zeros, 0, fc_segments));
    fcpw_ = this->add_param(self, weight(p + "mlp.proj.weight", {C_, Fw_}, resid_std, 1));
    if (c.bias) fcpb_ = this->add_param(self, vector_param(p + "mlp.proj.bias", C_, InitKind::Zeros));
  }
  const char* kind() const override { return "block"; }
  bool in_place() const override { return true; }

  // internals: ln1, [ln1_mean], ln1_rstd, qkv, atty, res2, ln2, [ln2_mean], ln2_rstd, fc, act
  struct Layout {
    size_t ln1, mean1, rstd1, qkv, atty, res2, ln2, mean2, rstd2, fc, act, total;
  };
  Layout layout(int B, int T) const {
    const size_t BT = static_cast<size_t>(B) * T;
    Layout l{};
    size_t o = 0;
    auto take = [&](size_t n) {
      size_t at = o;
      o += n;
      return at;
    };
    l.ln1 = take(BT * C_);
    l.mean1 = rms_ ? 0 : take(BT);
    l.rstd1 = take(BT);
    l.qkv = take(BT * QKV_);
    l.atty = take(BT * A_);
    l.res2 = take(BT * C_);
    l.ln2 = take(BT * C_);
    l.mean2 = rms_ ? 0 : take(BT);
    l.rstd2 = take(BT);
    l.fc = take(BT * W1_);
    l.act = take(BT * Fw_);
    l.total = o;
    return l;
  }
  SavedSizes saved(int B, int T) const override {
    return {static_cast<size_t>(B) * T * C_, layout(B, T).total, Ops<F>::attention_saved(B, T, NH_)};
  }
  // forward: the projection output before the residual add (BT C); backward: d_btc (BT C),
  // d_atty (BT A), d_qkv (BT QKV), d_att (the probabilities' size), d_act (BT Fw), d_fc (BT W1)
  size_t scratch(int B, int T) const override {
    const size_t BT = static_cast<size_t>(B) * T;
    return BT * C_ + BT * A_ + BT * QKV_ + Ops<F>::attention_saved(B, T, NH_) + BT * Fw_ + BT * W1_;
  }

  void norm_forward(const Ops<F>& ops, const UnitCall<F>& c, F* out, F* mean, F* rstd, const F* x, int w, int b) const {
    const int BT = c.batch.B * c.batch.T;
    if (rms_) ops.rmsnorm_forward(out, rstd, x, c.p[w].template as<const F>(), BT, C_, eps_);
    else ops.layernorm_forward(out, mean, rstd, x, c.p[w].template as<const F>(), c.p[b].template as<const F>(), BT, C_, eps_);
  }
  void norm_backward(const Ops<F>& ops, const UnitCall<F>& c, F* dx, const F* dy, const F* x, const F* mean, const F* rstd,
                     int w, int b) const {
    const int BT = c.batch.B * c.batch.T;
    if (rms_) ops.rmsnorm_backward(dx, c.g[w], dy, x, c.p[w].template as<const F>(), rstd, BT, C_);
    else ops.layernorm_backward(dx, c.g[w], c.g[b], dy, x, c.p[w].template as<const F>(), mean, rstd, BT, C_);
  }
  const F* bias(const UnitCall<F>& c, int i) const { return i >= 0 ? c.p[i].template as<const F>() : nullptr; }
  F* dbias(const UnitCall<F>& c, int i) const { return i >= 0 ? c.g[i] : nullptr; }

  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int B = c.batch.B, T = c.batch.T, BT = B * T;
    const size_t n = static_cast<size_t>(BT) * C_;
    const Layout l = layout(B, T);
    F* s = c.internals;
    F* tmp = c.scratch;
    norm_forward(ops, c, s + l.ln1, s + l.mean1, s + l.rstd1, c.in, ln1w_, ln1b_);
    ops.matmul_forward(s + l.qkv, s + l.ln1, c.p[qkvw_], bias(c, qkvb_), BT, C_, QKV_);
    if (rope_) ops.rope_forward(s + l.qkv, B, T, NH_ + KVH_, hs_, QKV_, base_);
    ops.attention_forward(s + l.atty, c.probs, s + l.qkv, B, T, NH_, KVH_, hs_);
    ops.matmul_forward(tmp, s + l.atty, c.p[projw_], bias(c, projb_), BT, A_, C_);
    ops.residual_forward(s + l.res2, c.in, tmp, n);
    norm_forward(ops, c, s + l.ln2, s + l.mean2, s + l.rstd2, s + l.res2, ln2w_, ln2b_);
    ops.matmul_forward(s + l.fc, s + l.ln2, c.p[fcw_], bias(c, fcb_), BT, C_, W1_);
    if (swiglu_) ops.swiglu_forward(s + l.act, s + l.fc, BT, Fw_);
    else ops.gelu_forward(s + l.act, s + l.fc, static_cast<size_t>(BT) * Fw_);
    ops.matmul_forward(tmp, s + l.act, c.p[fcpw_], bias(c, fcpb_), BT, Fw_, C_);
    ops.residual_forward(c.out, s + l.res2, tmp, n);
  }

  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    DMPI_REQUIRE(c.din == c.dout, "a block's backward runs in place on the residual-stream gradient");
    const int B = c.batch.B, T = c.batch.T, BT = B * T;
    const size_t bt = static_cast<size_t>(BT);
    const Layout l = layout(B, T);
    F* s = c.internals;
    F* dres = c.din;  // the residual add passes the gradient through to both branches
    F* d_btc = c.scratch;
    F* d_atty = d_btc + bt * C_;
    F* d_qkv = d_atty + bt * A_;
    F* d_att = d_qkv + bt * QKV_;
    F* d_act = d_att + Ops<F>::attention_saved(B, T, NH_);
    F* d_fc = d_act + bt * Fw_;
    ops.fill_zero(d_act, bt * Fw_);
    ops.matmul_backward(d_act, c.g[fcpw_], dbias(c, fcpb_), dres, s + l.act, c.p[fcpw_], BT, Fw_, C_);
    ops.fill_zero(d_fc, bt * W1_);
    if (swiglu_) ops.swiglu_backward(d_fc, s + l.fc, d_act, BT, Fw_);
    else ops.gelu_backward(d_fc, s + l.fc, d_act, bt * Fw_);
    ops.fill_zero(d_btc, bt * C_);
    ops.matmul_backward(d_btc, c.g[fcw_], dbias(c, fcb_), d_fc, s + l.ln2, c.p[fcw_], BT, C_, W1_);
    norm_backward(ops, c, dres, d_btc, s + l.res2, s + l.mean2, s + l.rstd2, ln2w_, ln2b_);
    ops.fill_zero(d_atty, bt * A_);
    ops.matmul_backward(d_atty, c.g[projw_], dbias(c, projb_), dres, s + l.atty, c.p[projw_], BT, A_, C_);
    if (!c.probs_valid) ops.attention_probs(c.probs, s + l.qkv, B, T, NH_, KVH_, hs_);  // selective recompute
    ops.fill_zero(d_qkv, bt * QKV_);
    ops.attention_backward(d_qkv, d_att, d_atty, s + l.qkv, c.probs, B, T, NH_, KVH_, hs_);
    if (rope_) ops.rope_backward(d_qkv, B, T, NH_ + KVH_, hs_, QKV_, base_);
    ops.fill_zero(d_btc, bt * C_);
    ops.matmul_backward(d_btc, c.g[qkvw_], dbias(c, qkvb_), d_qkv, s + l.ln1, c.p[qkvw_], BT, C_, QKV_);
    norm_backward(ops, c, dres, d_btc, c.in, s + l.mean1, s + l.rstd1, ln1w_, ln1b_);
  }

  size_t kv_width() const override { return static_cast<size_t>(KVH_) * hs_; }
  size_t infer_scratch(int B, int Tq) const override {
    const size_t BT = static_cast<size_t>(B) * Tq;
    return BT * (3 * static_cast<size_t>(C_) + 2 + QKV_ + A_ + W1_ + Fw_);
  }
  // The forward of Tq new rows: the same maths, the keys and values of the new rows appended to
  // the cache, attention over the cache.
  void infer(const Ops<F>& ops, InferCall<F>& c) const override {
    const int B = c.B, T = c.Tq, BT = B * T;
    const size_t bt = static_cast<size_t>(BT), n = bt * C_, kvw = kv_width();
    DMPI_REQUIRE(c.pos0 + T <= c.Tmax, "the key/value cache holds " << c.Tmax << " positions");
    F* ln = c.scratch;
    F* tmp = ln + n;
    F* res2 = tmp + n;
    F* stats = res2 + n;  // mean, rstd
    F* qkv = stats + 2 * bt;
    F* atty = qkv + bt * QKV_;
    F* fc = atty + bt * A_;
    F* act = fc + bt * W1_;
    UnitCall<F> uc;  // the norms read the parameters through a UnitCall
    uc.p = c.p;
    uc.batch.B = B, uc.batch.T = T;
    norm_forward(ops, uc, ln, stats, stats + bt, c.in, ln1w_, ln1b_);
    ops.matmul_forward(qkv, ln, c.p[qkvw_], bias(uc, qkvb_), BT, C_, QKV_);
    if (rope_) ops.rope_forward(qkv, B, T, NH_ + KVH_, hs_, QKV_, base_, c.pos0);
    const size_t qoff = static_cast<size_t>(NH_) * hs_;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const F* row = qkv + (static_cast<size_t>(b) * T + t) * QKV_;
        const size_t at = (static_cast<size_t>(b) * c.Tmax + c.pos0 + t) * kvw;
        std::copy(row + qoff, row + qoff + kvw, c.kcache + at);
        std::copy(row + qoff + kvw, row + qoff + 2 * kvw, c.vcache + at);
      }
    ops.attention_prefix(atty, A_, qkv, QKV_, c.kcache, c.vcache, static_cast<int>(kvw), c.Tmax, B, T, c.pos0, NH_, KVH_, hs_);
    ops.matmul_forward(tmp, atty, c.p[projw_], bias(uc, projb_), BT, A_, C_);
    ops.residual_forward(res2, c.in, tmp, n);
    norm_forward(ops, uc, ln, stats, stats + bt, res2, ln2w_, ln2b_);
    ops.matmul_forward(fc, ln, c.p[fcw_], bias(uc, fcb_), BT, C_, W1_);
    if (swiglu_) ops.swiglu_forward(act, fc, BT, Fw_);
    else ops.gelu_forward(act, fc, bt * Fw_);
    ops.matmul_forward(tmp, act, c.p[fcpw_], bias(uc, fcpb_), BT, Fw_, C_);
    ops.residual_forward(c.out, res2, tmp, n);
  }

 private:
  int C_, NH_, KVH_, hs_, QKV_, A_, Fw_, W1_;
  bool rms_, rope_, swiglu_;
  double eps_, base_;
  int ln1w_ = -1, ln1b_ = -1, qkvw_ = -1, qkvb_ = -1, projw_ = -1, projb_ = -1, ln2w_ = -1, ln2b_ = -1, fcw_ = -1, fcb_ = -1,
      fcpw_ = -1, fcpb_ = -1;
};

// ---- FinalNorm: x -> y = norm(x)
template <class F>
class FinalNorm final : public Unit<F> {
 public:
  FinalNorm(const ModelConfig& c, int self) : C_(c.hidden), rms_(c.norm == Norm::RMSNorm), eps_(c.norm_eps) {
    w_ = this->add_param(self, vector_param("lnf.weight", C_, InitKind::Ones));
    if (!rms_) b_ = this->add_param(self, vector_param("lnf.bias", C_, InitKind::Zeros));
  }
  const char* kind() const override { return "final_norm"; }
  SavedSizes saved(int B, int T) const override {
    const size_t BT = static_cast<size_t>(B) * T;
    return {BT * C_, rms_ ? BT : 2 * BT, 0};  // internals: [mean], rstd
  }
  size_t scratch(int, int) const override { return 0; }
  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = c.batch.B * c.batch.T;
    const F* w = c.p[w_].template as<const F>();
    if (rms_) ops.rmsnorm_forward(c.out, c.internals, c.in, w, BT, C_, eps_);
    else ops.layernorm_forward(c.out, c.internals, c.internals + BT, c.in, w, c.p[b_].template as<const F>(), BT, C_, eps_);
  }
  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = c.batch.B * c.batch.T;
    const F* w = c.p[w_].template as<const F>();
    if (rms_) ops.rmsnorm_backward(c.din, c.g[w_], c.dout, c.in, w, c.internals, BT, C_);
    else ops.layernorm_backward(c.din, c.g[w_], c.g[b_], c.dout, c.in, w, c.internals, c.internals + BT, BT, C_);
  }
  size_t infer_scratch(int B, int Tq) const override { return 2 * static_cast<size_t>(B) * Tq; }
  void infer(const Ops<F>& ops, InferCall<F>& c) const override {
    const int BT = c.B * c.Tq;
    const F* w = c.p[w_].template as<const F>();
    if (rms_) ops.rmsnorm_forward(c.out, c.scratch, c.in, w, BT, C_, eps_);
    else ops.layernorm_forward(c.out, c.scratch, c.scratch + BT, c.in, w, c.p[b_].template as<const F>(), BT, C_, eps_);
  }

 private:
  int C_;
  bool rms_;
  double eps_;
  int w_ = -1, b_ = -1;
};

// ---- LmHead: y -> logits = y W^T -> cross-entropy. W is the embedding's table (tied) or its own.
template <class F>
class LmHead final : public Unit<F> {
 public:
  LmHead(const ModelConfig& c, int self, bool tied) : C_(c.hidden), V_(c.vocab) {
    if (tied) {
      this->uses_.push_back({0, 0});  // the embedding unit's wte
      w_ = 0;
    } else {
      w_ = this->add_param(self, weight("lm_head.weight", {c.vocab, c.hidden}, 0.02, 0));
    }
  }
  const char* kind() const override { return "lm_head"; }
  // output: the per-row losses; internals: the logits (probabilities after the forward)
  SavedSizes saved(int B, int T) const override {
    const size_t BT = static_cast<size_t>(B) * T;
    return {BT, BT * V_, 0};
  }
  size_t scratch(int, int) const override { return 0; }
  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = c.batch.B * c.batch.T;
    for (int i = 0; i < BT; ++i) {
      DMPI_REQUIRE(c.batch.targets[i] == kIgnoreIndex || (c.batch.targets[i] >= 0 && c.batch.targets[i] < V_),
                   "target " << c.batch.targets[i] << " at position " << i << " is outside the vocabulary [0, " << V_ << ")");
    }
    ops.matmul_forward(c.internals, c.in, c.p[w_], nullptr, BT, C_, V_);
    c.valid_rows = ops.crossentropy_forward(c.out, c.internals, c.batch.targets, BT, V_, kIgnoreIndex);
    double sum = 0.0;
    for (int i = 0; i < BT; ++i) sum += static_cast<double>(c.out[i]);
    c.loss = c.valid_rows > 0 ? sum / static_cast<double>(c.valid_rows) : 0.0;
  }
  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = c.batch.B * c.batch.T;
    // d(loss_scale * mean loss)/dlogit, in place over the probabilities
    const F dloss = c.valid_rows > 0 ? static_cast<F>(c.loss_scale / static_cast<double>(c.valid_rows)) : F(0);
    ops.crossentropy_backward(c.internals, c.batch.targets, dloss, BT, V_, kIgnoreIndex);
    ops.matmul_backward(c.din, c.g[w_], nullptr, c.internals, c.in, c.p[w_], BT, C_, V_);
  }
  void infer(const Ops<F>& ops, InferCall<F>& c) const override {  // the logits
    ops.matmul_forward(c.out, c.in, c.p[w_], nullptr, c.B * c.Tq, C_, V_);
  }

 private:
  int C_, V_, w_ = -1;
};

}  // namespace

template <class F>
std::vector<std::unique_ptr<Unit<F>>> build_units(const ModelConfig& c) {
  c.validate();
  std::vector<std::unique_ptr<Unit<F>>> u;
  u.push_back(std::make_unique<Embedding<F>>(c, 0));
  for (int l = 0; l < c.num_layers; ++l) u.push_back(std::make_unique<Block<F>>(c, static_cast<int>(u.size()), l));
  u.push_back(std::make_unique<FinalNorm<F>>(c, static_cast<int>(u.size())));
  u.push_back(std::make_unique<LmHead<F>>(c, static_cast<int>(u.size()), c.tie_embeddings));
  return u;
}

template class Unit<float>;
template class Unit<double>;
template std::vector<std::unique_ptr<Unit<float>>> build_units<float>(const ModelConfig&);
template std::vector<std::unique_ptr<Unit<double>>> build_units<double>(const ModelConfig&);

}  // namespace dmpi::model
