// The unit kinds. Shapes in comments: B batch, T sequence, C hidden, NH heads, KVH kv heads,
// hs head size, V vocabulary, Fw the MLP activation width (4C for GELU, ffn for SwiGLU), W1 the
// first MLP matmul's width (Fw, or 2 ffn for SwiGLU's gate|up).
#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.hpp"
#include "src/model/unit.hpp"

namespace dmpi::model {

std::vector<int64_t> tp_local_shape(const ParamSpec& s, int rank) {
  std::vector<int64_t> sh = s.logical.empty() ? s.shape : s.logical;
  if (s.tp_split_dim < 0 || s.tp_size == 1) return sh;
  const auto d = static_cast<size_t>(s.tp_split_dim);
  std::vector<int64_t> segs = s.tp_segments;
  if (segs.empty()) segs = {sh[d]};
  int64_t n = 0;
  for (int64_t S : segs) n += split_len(S, s.tp_size, rank);
  sh[d] = n;
  return sh;
}

template <class F>
int Unit<F>::add_param(int self, ParamSpec s) {
  // s.shape is the logical shape here; the unit's tensor-parallel rank holds its split of it
  if (s.tp_split_dim >= 0) s.tp_size = tp_size_, s.tp_rank = tp_rank_;
  s.logical = s.shape;
  s.logical_numel = 1;
  for (auto d : s.logical) s.logical_numel *= static_cast<size_t>(d);
  s.shape = tp_local_shape(s, s.tp_rank);
  s.numel = 1;
  for (auto d : s.shape) s.numel *= static_cast<size_t>(d);
  params_.push_back(std::move(s));
  uses_.push_back({self, static_cast<int>(params_.size()) - 1});
  return static_cast<int>(uses_.size()) - 1;
}

template <class F>
void Unit<F>::renumber_uses(const std::vector<int>& local_of) {
  for (auto& u : uses_) {
    DMPI_REQUIRE(u.unit >= 0 && u.unit < static_cast<int>(local_of.size()) && local_of[static_cast<size_t>(u.unit)] >= 0,
                 kind() << " reads a parameter of unit " << u.unit << ", which is on another pipeline stage");
    u.unit = local_of[static_cast<size_t>(u.unit)];
  }
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

// The tensor-parallel collectives as a unit calls them (tp null or of size 1: nothing to do).
template <class F>
void tp_sum(const UnitCall<F>& c, F* x, size_t n) {
  if (c.tp && c.tp->size() > 1) c.tp->sum(x, n, dtype_of<F>());
}
template <class F>
std::unique_ptr<TpComm::Pending> tp_start_sum(const UnitCall<F>& c, F* x, size_t n) {
  return c.tp && c.tp->size() > 1 ? c.tp->start_sum(x, n, dtype_of<F>()) : nullptr;
}
inline void tp_wait(std::unique_ptr<TpComm::Pending>& p) {
  if (p) p->wait(), p.reset();
}
// Sequence parallelism: this rank's rows of the residual stream gathered into all B T rows, and
// all rows' partial sums reduced and scattered back to this rank's rows (n: elements per rank).
template <class F>
void sp_gather(const UnitCall<F>& c, const F* local, F* full, size_t n) {
  c.tp->all_gather(local, n, full, dtype_of<F>());
}
template <class F>
std::unique_ptr<TpComm::Pending> sp_start_scatter(const UnitCall<F>& c, const F* full, F* local, size_t n) {
  return c.tp->start_reduce_scatter(full, local, n, dtype_of<F>());
}
// The rows of the residual stream this rank holds: all B T, or with sequence parallelism its 1/tp.
inline int stream_rows(const ModelConfig& c, int B, int T) { return c.sp() ? B * T / c.tp_size : B * T; }

// ---- Embedding: tokens -> x[B,T,C] = wte[tokens] (+ wpe[t]). Vocab-parallel (tp > 1): each rank
// holds rows [v0, v0 + Vl) of wte; tokens outside contribute zero rows, the sum over the group
// is the lookup; the positions (replicated) are added after it.
template <class F>
class Embedding final : public Unit<F> {
 public:
  Embedding(const ModelConfig& c, int self) : C_(c.hidden), tp_(c.tp_size), sp_(c.sp()), cfg_(c) {
    this->tp_size_ = c.tp_size, this->tp_rank_ = c.tp_rank;
    v0_ = static_cast<int>(split_begin(c.vocab, c.tp_size, c.tp_rank));
    vl_ = static_cast<int>(split_len(c.vocab, c.tp_size, c.tp_rank));
    ParamSpec wte = weight("wte", {c.vocab, c.hidden}, 0.02, 0);
    wte.tied = c.tie_embeddings;
    wte_ = this->add_param(self, wte);
    if (c.positions == Positions::Learned) {
      ParamSpec wpe = weight("wpe", {c.max_pos, c.hidden}, 0.02, -1);
      if (tp_ > 1) wpe.dtype = DTypePolicy::Widened;  // added to the summed lookup in fp32
      wpe_ = this->add_param(self, wpe);
    }
  }
  const char* kind() const override { return "embedding"; }
  SavedSizes saved(int B, int T) const override { return {static_cast<size_t>(stream_rows(cfg_, B, T)) * C_, 0, 0}; }
  size_t scratch(int B, int T) const override { return sp_ ? static_cast<size_t>(B) * T * C_ : 0; }
  // this rank's token ids: tok - v0 inside its slice, -1 outside
  std::vector<int32_t> local_tokens(const int32_t* tokens, int n) const {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = tokens[i] >= v0_ && tokens[i] < v0_ + vl_ ? tokens[i] - v0_ : -1;
    return t;
  }
  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int B = c.batch.B, T = c.batch.T;
    if (tp_ == 1) {
      ops.encoder_forward(c.out, c.batch.tokens, c.p[wte_], wpe_ >= 0 ? c.p[wpe_] : ConstView(), B, T, C_);
      return;
    }
    // the lookup's sum over the group: all rows, or with sequence parallelism scattered to this
    // rank's N rows from r0; then the positions of those rows
    const auto tl = local_tokens(c.batch.tokens, B * T);
    const int N = stream_rows(cfg_, B, T), r0 = sp_ ? N * c.tp->rank() : 0;
    ops.encoder_forward(sp_ ? c.scratch : c.out, tl.data(), c.p[wte_], ConstView(), B, T, C_);
    if (sp_) {
      auto pending = sp_start_scatter(c, c.scratch, c.out, static_cast<size_t>(N) * C_);
      tp_wait(pending);
    } else {
      tp_sum(c, c.out, static_cast<size_t>(B) * T * C_);
    }
    if (wpe_ >= 0) add_positions(ops, c.out, c.p[wpe_].template as<const F>(), N, r0, T);
  }
  // rows i < N of x (stream rows r0 + i) += wpe[(r0 + i) % T]
  void add_positions(const Ops<F>& ops, F* x, const F* wpe, int N, int r0, int T) const {
#pragma omp parallel for schedule(static) num_threads(ops.ctx.threads)
    for (int i = 0; i < N; ++i) {
      F* o = x + static_cast<size_t>(i) * C_;
      const F* p = wpe + static_cast<size_t>((r0 + i) % T) * C_;
      for (int k = 0; k < C_; ++k) o[k] += p[k];
    }
  }
  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int B = c.batch.B, T = c.batch.T;
    if (tp_ == 1) {
      ops.encoder_backward(c.g[wte_], wpe_ >= 0 ? c.g[wpe_] : nullptr, c.dout, c.batch.tokens, B, T, C_);
      return;
    }
    const auto tl = local_tokens(c.batch.tokens, B * T);
    if (sp_) {  // every row's gradient for this rank's vocabulary; this rank's rows for the positions
      const int N = stream_rows(cfg_, B, T), r0 = N * c.tp->rank();
      sp_gather(c, c.dout, c.scratch, static_cast<size_t>(N) * C_);
      ops.encoder_backward(c.g[wte_], nullptr, c.scratch, tl.data(), B, T, C_);
      if (wpe_ >= 0)  // a partial sum: the trainer adds the tp ranks' (a replicated parameter)
        for (int i = 0; i < N; ++i) {
          F* g = c.g[wpe_] + static_cast<size_t>((r0 + i) % T) * C_;
          const F* d = c.dout + static_cast<size_t>(i) * C_;
          for (int k = 0; k < C_; ++k) g[k] += d[k];
        }
      return;
    }
    ops.encoder_backward(c.g[wte_], wpe_ >= 0 ? c.g[wpe_] : nullptr, c.dout, tl.data(), B, T, C_);
  }
  void infer(const Ops<F>& ops, InferCall<F>& c) const override {
    DMPI_REQUIRE(tp_ == 1, "inference runs on one tensor-parallel rank");
    // positions pos0 .. pos0 + Tq - 1: the rows of the table from pos0
    const ConstView wpe = wpe_ >= 0 ? c.p[wpe_].rows(c.pos0, c.Tq) : ConstView();
    DMPI_REQUIRE(wpe_ < 0 || c.pos0 + c.Tq <= c.p[wpe_].shape[0],
                 "position " << c.pos0 + c.Tq - 1 << " is beyond the " << c.p[wpe_].shape[0] << " learned positions");
    ops.encoder_forward(c.out, c.tokens, c.p[wte_], wpe, c.B, c.Tq, C_);
  }

 private:
  int C_, tp_;
  bool sp_;
  ModelConfig cfg_;
  int v0_ = 0, vl_ = 0, wte_ = -1, wpe_ = -1;
};

// ---- Block: x -> x + attn(norm1(x)) -> ... + mlp(norm2(.)), pre-norm.
template <class F>
class Block final : public Unit<F> {
 public:
  // Megatron's tensor-parallel block (tp > 1): the qkv and fc weights are column-parallel (this
  // rank's heads and kv heads, its MLP columns; each fused segment split separately), the two
  // projections row-parallel (their input columns); the norms and the projections' biases are
  // replicated. All widths below are this rank's (the logical ones at tp 1).
  Block(const ModelConfig& c, int self, int layer)
      : C_(c.hidden), NH_(c.heads / c.tp_size), KVH_(c.kv_heads() / c.tp_size), hs_(c.head_size()),
        QKV_((NH_ + 2 * KVH_) * hs_), A_(NH_ * hs_), Fw_(c.ffn() / c.tp_size), W1_(c.swiglu ? 2 * Fw_ : Fw_),
        tp_(c.tp_size), sp_(c.sp()), rms_(c.norm == Norm::RMSNorm), rope_(c.positions == Positions::Rope),
        swiglu_(c.swiglu), eps_(c.norm_eps), base_(c.rotary_base) {
    this->tp_size_ = c.tp_size, this->tp_rank_ = c.tp_rank;
    const std::string p = "layers." + std::to_string(layer) + ".";
    const double resid_std = 0.02 / std::sqrt(2.0 * c.num_layers);  // GPT-2's scaled residual projections
    const int64_t q = static_cast<int64_t>(c.heads) * hs_, kv = static_cast<int64_t>(c.kv_heads()) * hs_;
    const int64_t qkv = c.qkv_width(), a = static_cast<int64_t>(c.heads) * hs_, fw = c.ffn(), w1 = c.swiglu ? 2 * fw : fw;
    ln1w_ = this->add_param(self, vector_param(p + "ln1.weight", C_, InitKind::Ones));
    if (!rms_) ln1b_ = this->add_param(self, vector_param(p + "ln1.bias", C_, InitKind::Zeros));
    qkvw_ = this->add_param(self, weight(p + "attn.qkv.weight", {qkv, C_}, 0.02, 0, {q, kv, kv}));
    if (c.bias) qkvb_ = this->add_param(self, vector_param(p + "attn.qkv.bias", qkv, InitKind::Zeros, 0, {q, kv, kv}));
    projw_ = this->add_param(self, weight(p + "attn.proj.weight", {C_, a}, resid_std, 1));
    if (c.bias) projb_ = this->add_param(self, vector_param(p + "attn.proj.bias", C_, InitKind::Zeros));
    ln2w_ = this->add_param(self, vector_param(p + "ln2.weight", C_, InitKind::Ones));
    if (!rms_) ln2b_ = this->add_param(self, vector_param(p + "ln2.bias", C_, InitKind::Zeros));
    std::vector<int64_t> fc_segments;
    if (swiglu_) fc_segments = {fw, fw};
    fcw_ = this->add_param(self, weight(p + "mlp.fc.weight", {w1, C_}, 0.02, 0, fc_segments));
    if (c.bias) fcb_ = this->add_param(self, vector_param(p + "mlp.fc.bias", w1, InitKind::Zeros, 0, fc_segments));
    fcpw_ = this->add_param(self, weight(p + "mlp.proj.weight", {C_, fw}, resid_std, 1));
    if (c.bias) fcpb_ = this->add_param(self, vector_param(p + "mlp.proj.bias", C_, InitKind::Zeros));
  }
  // Row-parallel: out = x W^T over this rank's input columns, summed over the group, + bias after.
  void row_parallel_forward(const Ops<F>& ops, UnitCall<F>& c, F* out, const F* x, int w, int b, int K) const {
    const int BT = c.batch.B * c.batch.T;
    if (tp_ == 1) return ops.matmul_forward(out, x, c.p[w], bias(c, b), BT, K, C_);
    ops.matmul_forward(out, x, c.p[w], nullptr, BT, K, C_);
    tp_sum(c, out, static_cast<size_t>(BT) * C_);
    if (b >= 0) ops.add_bias(out, bias(c, b), BT, C_);
  }
  // Column-parallel backward: dx (zeroed here) = dy W over this rank's output columns, summed
  // over the group; the sum runs during the dW GEMM.
  void column_parallel_backward(const Ops<F>& ops, UnitCall<F>& c, F* dx, const F* dy, const F* x, int w, int b, int OC) const {
    const int BT = c.batch.B * c.batch.T;
    const size_t n = static_cast<size_t>(BT) * C_;
    ops.fill_zero(dx, n);
    if (tp_ == 1) return ops.matmul_backward(dx, c.g[w], dbias(c, b), dy, x, c.p[w], BT, C_, OC);
    ops.matmul_backward_input(dx, dy, c.p[w], BT, C_, OC);
    auto pending = tp_start_sum(c, dx, n);
    ops.matmul_backward_weight(c.g[w], dbias(c, b), dy, x, BT, C_, OC);
    tp_wait(pending);
  }
  const char* kind() const override { return "block"; }
  bool in_place() const override { return true; }

  // internals: ln1, [ln1_mean], ln1_rstd, qkv, atty, res2, ln2, [ln2_mean], ln2_rstd, fc, act
  struct Layout {
    size_t ln1, mean1, rstd1, qkv, atty, res2, ln2, mean2, rstd2, fc, act, total;
  };
  // With sequence parallelism the residual-stream regions (the norms' statistics, res2) hold this
  // rank's N = B T / tp rows; the norms' outputs are kept gathered (the column-parallel inputs).
  Layout layout(int B, int T) const {
    const size_t BT = static_cast<size_t>(B) * T, N = sp_ ? BT / static_cast<size_t>(tp_) : BT;
    Layout l{};
    size_t o = 0;
    auto take = [&](size_t n) {
      size_t at = o;
      o += n;
      return at;
    };
    l.ln1 = take(BT * C_);
    l.mean1 = rms_ ? 0 : take(N);
    l.rstd1 = take(N);
    l.qkv = take(BT * QKV_);
    l.atty = take(BT * A_);
    l.res2 = take(N * C_);
    l.ln2 = take(BT * C_);
    l.mean2 = rms_ ? 0 : take(N);
    l.rstd2 = take(N);
    l.fc = take(BT * W1_);
    l.act = take(BT * Fw_);
    l.total = o;
    return l;
  }
  SavedSizes saved(int B, int T) const override {
    const size_t rows = static_cast<size_t>(B) * T / static_cast<size_t>(sp_ ? tp_ : 1);
    return {rows * C_, layout(B, T).total, Ops<F>::attention_saved(B, T, NH_)};
  }
  // forward: the projection output before the residual add (BT C); backward: d_btc (BT C),
  // d_atty (BT A), d_qkv (BT QKV), d_att (the probabilities' size), d_act (BT Fw), d_fc (BT W1)
  size_t scratch(int B, int T) const override {
    const size_t BT = static_cast<size_t>(B) * T;
    // sequence parallelism: the gathered output gradient and this rank's rows of an input gradient
    return BT * C_ + BT * A_ + BT * QKV_ + Ops<F>::attention_saved(B, T, NH_) + BT * Fw_ + BT * W1_ +
           (sp_ ? 2 * BT * C_ : 0);
  }

  void norm_forward(const Ops<F>& ops, const UnitCall<F>& c, F* out, F* mean, F* rstd, const F* x, int w, int b,
                    int rows = -1) const {
    const int BT = rows >= 0 ? rows : c.batch.B * c.batch.T;
    if (rms_) ops.rmsnorm_forward(out, rstd, x, c.p[w].template as<const F>(), BT, C_, eps_);
    else ops.layernorm_forward(out, mean, rstd, x, c.p[w].template as<const F>(), c.p[b].template as<const F>(), BT, C_, eps_);
  }
  void norm_backward(const Ops<F>& ops, const UnitCall<F>& c, F* dx, const F* dy, const F* x, const F* mean, const F* rstd,
                     int w, int b, int rows = -1) const {
    const int BT = rows >= 0 ? rows : c.batch.B * c.batch.T;
    if (rms_) ops.rmsnorm_backward(dx, c.g[w], dy, x, c.p[w].template as<const F>(), rstd, BT, C_);
    else ops.layernorm_backward(dx, c.g[w], c.g[b], dy, x, c.p[w].template as<const F>(), mean, rstd, BT, C_);
  }
  const F* bias(const UnitCall<F>& c, int i) const { return i >= 0 ? c.p[i].template as<const F>() : nullptr; }
  F* dbias(const UnitCall<F>& c, int i) const { return i >= 0 ? c.g[i] : nullptr; }

  // Sequence parallelism (Megatron's): this rank's N rows of the stream; the norm output is
  // all-gathered into the column-parallel layer's input, the row-parallel layer's partial output
  // reduce-scattered back to N rows (the bias added to those). Backward: the output gradient's rows
  // all-gathered for the row-parallel layer, the column-parallel input gradient reduce-scattered
  // (during the dW GEMM). The norms' and biases' gradients are this rank's rows' parts: the
  // trainer sums them over the tp group (replicated parameters).
  void forward_sp(const Ops<F>& ops, UnitCall<F>& c) const {
    const int B = c.batch.B, T = c.batch.T, BT = B * T, N = BT / tp_;
    const size_t nl = static_cast<size_t>(N) * C_;
    const Layout l = layout(B, T);
    F* s = c.internals;
    F* full = c.scratch;                               // [BT, C]: a partial output
    F* loc = c.scratch + static_cast<size_t>(BT) * C_;  // [N, C]
    norm_forward(ops, c, loc, s + l.mean1, s + l.rstd1, c.in, ln1w_, ln1b_, N);
    sp_gather(c, loc, s + l.ln1, nl);
    ops.matmul_forward(s + l.qkv, s + l.ln1, c.p[qkvw_], bias(c, qkvb_), BT, C_, QKV_);
    if (rope_) ops.rope_forward(s + l.qkv, B, T, NH_ + KVH_, hs_, QKV_, base_);
    ops.attention_forward(s + l.atty, c.probs, s + l.qkv, B, T, NH_, KVH_, hs_);
    ops.matmul_forward(full, s + l.atty, c.p[projw_], nullptr, BT, A_, C_);
    auto p1 = sp_start_scatter(c, full, loc, nl);
    tp_wait(p1);
    if (projb_ >= 0) ops.add_bias(loc, bias(c, projb_), N, C_);
    ops.residual_forward(s + l.res2, c.in, loc, nl);
    norm_forward(ops, c, loc, s + l.mean2, s + l.rstd2, s + l.res2, ln2w_, ln2b_, N);
    sp_gather(c, loc, s + l.ln2, nl);
    ops.matmul_forward(s + l.fc, s + l.ln2, c.p[fcw_], bias(c, fcb_), BT, C_, W1_);
    if (swiglu_) ops.swiglu_forward(s + l.act, s + l.fc, BT, Fw_);
    else ops.gelu_forward(s + l.act, s + l.fc, static_cast<size_t>(BT) * Fw_);
    ops.matmul_forward(full, s + l.act, c.p[fcpw_], nullptr, BT, Fw_, C_);
    auto p2 = sp_start_scatter(c, full, loc, nl);
    tp_wait(p2);
    if (fcpb_ >= 0) ops.add_bias(loc, bias(c, fcpb_), N, C_);
    ops.residual_forward(c.out, s + l.res2, loc, nl);
  }
  void backward_sp(const Ops<F>& ops, UnitCall<F>& c) const {
    const int B = c.batch.B, T = c.batch.T, BT = B * T, N = BT / tp_;
    const size_t bt = static_cast<size_t>(BT), nl = static_cast<size_t>(N) * C_;
    const Layout l = layout(B, T);
    F* s = c.internals;
    F* dres = c.din;  // [N, C]
    auto [d_btc, d_atty, d_qkv, d_att, d_act, d_fc, dy, dloc] = backward_scratch(c);
    // row-parallel fc.proj: the rows of dres gathered; its bias from this rank's rows
    sp_gather(c, dres, dy, nl);
    ops.fill_zero(d_act, bt * Fw_);
    ops.matmul_backward(d_act, c.g[fcpw_], nullptr, dy, s + l.act, c.p[fcpw_], BT, Fw_, C_);
    if (fcpb_ >= 0) ops.matmul_backward_weight(nullptr, c.g[fcpb_], dres, nullptr, N, Fw_, C_);
    ops.fill_zero(d_fc, bt * W1_);
    if (swiglu_) ops.swiglu_backward(d_fc, s + l.fc, d_act, BT, Fw_);
    else ops.gelu_backward(d_fc, s + l.fc, d_act, bt * Fw_);
    column_parallel_backward_sp(ops, c, dloc, d_btc, d_fc, s + l.ln2, fcw_, fcb_, W1_);
    norm_backward(ops, c, dres, dloc, s + l.res2, s + l.mean2, s + l.rstd2, ln2w_, ln2b_, N);
    sp_gather(c, dres, dy, nl);
    ops.fill_zero(d_atty, bt * A_);
    ops.matmul_backward(d_atty, c.g[projw_], nullptr, dy, s + l.atty, c.p[projw_], BT, A_, C_);
    if (projb_ >= 0) ops.matmul_backward_weight(nullptr, c.g[projb_], dres, nullptr, N, A_, C_);
    if (!c.probs_valid) ops.attention_probs(c.probs, s + l.qkv, B, T, NH_, KVH_, hs_);  // selective recompute
    ops.fill_zero(d_qkv, bt * QKV_);
    ops.attention_backward(d_qkv, d_att, d_atty, s + l.qkv, c.probs, B, T, NH_, KVH_, hs_);
    if (rope_) ops.rope_backward(d_qkv, B, T, NH_ + KVH_, hs_, QKV_, base_);
    column_parallel_backward_sp(ops, c, dloc, d_btc, d_qkv, s + l.ln1, qkvw_, qkvb_, QKV_);
    norm_backward(ops, c, dres, dloc, c.in, s + l.mean1, s + l.rstd1, ln1w_, ln1b_, N);
  }
  // The backward's scratch: d_btc (BT C), d_atty (BT A), d_qkv (BT QKV), d_att (the
  // probabilities' size), d_act (BT Fw), d_fc (BT W1); sequence parallelism: dy (BT C, the gathered
  // output gradient) and dloc (N C, this rank's rows of an input gradient).
  struct BackwardScratch {
    F *d_btc, *d_atty, *d_qkv, *d_att, *d_act, *d_fc, *dy, *dloc;
  };
  BackwardScratch backward_scratch(const UnitCall<F>& c) const {
    const size_t bt = static_cast<size_t>(c.batch.B) * c.batch.T;
    BackwardScratch g{};
    g.d_btc = c.scratch;
    g.d_atty = g.d_btc + bt * C_;
    g.d_qkv = g.d_atty + bt * A_;
    g.d_att = g.d_qkv + bt * QKV_;
    g.d_act = g.d_att + Ops<F>::attention_saved(c.batch.B, c.batch.T, NH_);
    g.d_fc = g.d_act + bt * Fw_;
    g.dy = g.d_fc + bt * W1_;
    g.dloc = g.dy + bt * C_;
    return g;
  }
  // dx (this rank's N rows) = the reduce-scatter of dy W (all rows, this rank's columns), started
  // before the dW GEMM
  void column_parallel_backward_sp(const Ops<F>& ops, UnitCall<F>& c, F* dx, F* full, const F* dy, const F* x, int w, int b,
                                   int OC) const {
    const int BT = c.batch.B * c.batch.T;
    ops.fill_zero(full, static_cast<size_t>(BT) * C_);
    ops.matmul_backward_input(full, dy, c.p[w], BT, C_, OC);
    auto pending = sp_start_scatter(c, full, dx, static_cast<size_t>(BT / tp_) * C_);
    ops.matmul_backward_weight(c.g[w], dbias(c, b), dy, x, BT, C_, OC);
    tp_wait(pending);
  }

  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    if (sp_) return forward_sp(ops, c);
    const int B = c.batch.B, T = c.batch.T, BT = B * T;
    const size_t n = static_cast<size_t>(BT) * C_;
    const Layout l = layout(B, T);
    F* s = c.internals;
    F* tmp = c.scratch;
    norm_forward(ops, c, s + l.ln1, s + l.mean1, s + l.rstd1, c.in, ln1w_, ln1b_);
    ops.matmul_forward(s + l.qkv, s + l.ln1, c.p[qkvw_], bias(c, qkvb_), BT, C_, QKV_);
    if (rope_) ops.rope_forward(s + l.qkv, B, T, NH_ + KVH_, hs_, QKV_, base_);
    ops.attention_forward(s + l.atty, c.probs, s + l.qkv, B, T, NH_, KVH_, hs_);
    row_parallel_forward(ops, c, tmp, s + l.atty, projw_, projb_, A_);
    ops.residual_forward(s + l.res2, c.in, tmp, n);
    norm_forward(ops, c, s + l.ln2, s + l.mean2, s + l.rstd2, s + l.res2, ln2w_, ln2b_);
    ops.matmul_forward(s + l.fc, s + l.ln2, c.p[fcw_], bias(c, fcb_), BT, C_, W1_);
    if (swiglu_) ops.swiglu_forward(s + l.act, s + l.fc, BT, Fw_);
    else ops.gelu_forward(s + l.act, s + l.fc, static_cast<size_t>(BT) * Fw_);
    row_parallel_forward(ops, c, tmp, s + l.act, fcpw_, fcpb_, Fw_);
    ops.residual_forward(c.out, s + l.res2, tmp, n);
  }

  // Zero-bubble split (not with sequence parallelism): the input-gradient half keeps the output
  // gradients of the four GEMMs (fc.proj, fc, attn.proj, qkv) for the weight half.
  bool splits_backward() const override { return !sp_; }
  size_t deferred(int B, int T) const override {
    return sp_ ? 0 : static_cast<size_t>(B) * T * (2 * static_cast<size_t>(C_) + W1_ + QKV_);
  }
  struct Deferred {
    F *dfcp, *dfc, *dproj, *dqkv;
  };
  Deferred deferred_parts(const UnitCall<F>& c) const {
    const size_t bt = static_cast<size_t>(c.batch.B) * c.batch.T;
    Deferred d{};
    d.dfcp = c.deferred;
    d.dfc = d.dfcp + bt * C_;
    d.dproj = d.dfc + bt * W1_;
    d.dqkv = d.dproj + bt * C_;
    return d;
  }
  void backward_weight(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = c.batch.B * c.batch.T;
    const Layout l = layout(c.batch.B, c.batch.T);
    F* s = c.internals;
    const Deferred d = deferred_parts(c);
    ops.matmul_backward_weight(c.g[fcpw_], dbias(c, fcpb_), d.dfcp, s + l.act, BT, Fw_, C_);
    ops.matmul_backward_weight(c.g[fcw_], dbias(c, fcb_), d.dfc, s + l.ln2, BT, C_, W1_);
    ops.matmul_backward_weight(c.g[projw_], dbias(c, projb_), d.dproj, s + l.atty, BT, A_, C_);
    ops.matmul_backward_weight(c.g[qkvw_], dbias(c, qkvb_), d.dqkv, s + l.ln1, BT, C_, QKV_);
  }
  // The input-gradient half: dx (zeroed here) = dy W summed over the tp group; dy kept in `keep`
  void input_half(const Ops<F>& ops, UnitCall<F>& c, F* dx, const F* dy, int w, int K, int OC, F* keep) const {
    const int BT = c.batch.B * c.batch.T;
    ops.fill_zero(dx, static_cast<size_t>(BT) * K);
    ops.matmul_backward_input(dx, dy, c.p[w], BT, K, OC);
    std::copy(dy, dy + static_cast<size_t>(BT) * OC, keep);
  }
  void backward_input(const Ops<F>& ops, UnitCall<F>& c) const {
    const int B = c.batch.B, T = c.batch.T, BT = B * T;
    const size_t bt = static_cast<size_t>(BT);
    const Layout l = layout(B, T);
    F* s = c.internals;
    F* dres = c.din;
    auto [d_btc, d_atty, d_qkv, d_att, d_act, d_fc, dy, dloc] = backward_scratch(c);
    (void)dy, (void)dloc;
    const Deferred d = deferred_parts(c);
    input_half(ops, c, d_act, dres, fcpw_, Fw_, C_, d.dfcp);
    ops.fill_zero(d_fc, bt * W1_);
    if (swiglu_) ops.swiglu_backward(d_fc, s + l.fc, d_act, BT, Fw_);
    else ops.gelu_backward(d_fc, s + l.fc, d_act, bt * Fw_);
    input_half(ops, c, d_btc, d_fc, fcw_, C_, W1_, d.dfc);
    tp_sum(c, d_btc, bt * C_);
    norm_backward(ops, c, dres, d_btc, s + l.res2, s + l.mean2, s + l.rstd2, ln2w_, ln2b_);
    input_half(ops, c, d_atty, dres, projw_, A_, C_, d.dproj);
    if (!c.probs_valid) ops.attention_probs(c.probs, s + l.qkv, B, T, NH_, KVH_, hs_);  // selective recompute
    ops.fill_zero(d_qkv, bt * QKV_);
    ops.attention_backward(d_qkv, d_att, d_atty, s + l.qkv, c.probs, B, T, NH_, KVH_, hs_);
    if (rope_) ops.rope_backward(d_qkv, B, T, NH_ + KVH_, hs_, QKV_, base_);
    input_half(ops, c, d_btc, d_qkv, qkvw_, C_, QKV_, d.dqkv);
    tp_sum(c, d_btc, bt * C_);
    norm_backward(ops, c, dres, d_btc, c.in, s + l.mean1, s + l.rstd1, ln1w_, ln1b_);
  }

  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    DMPI_REQUIRE(c.din == c.dout, "a block's backward runs in place on the residual-stream gradient");
    if (sp_) return backward_sp(ops, c);
    if (c.weight_later) return backward_input(ops, c);
    const int B = c.batch.B, T = c.batch.T, BT = B * T;
    const size_t bt = static_cast<size_t>(BT);
    const Layout l = layout(B, T);
    F* s = c.internals;
    F* dres = c.din;  // the residual add passes the gradient through to both branches
    auto [d_btc, d_atty, d_qkv, d_att, d_act, d_fc, dy, dloc] = backward_scratch(c);
    (void)dy, (void)dloc;
    ops.fill_zero(d_act, bt * Fw_);
    ops.matmul_backward(d_act, c.g[fcpw_], dbias(c, fcpb_), dres, s + l.act, c.p[fcpw_], BT, Fw_, C_);
    ops.fill_zero(d_fc, bt * W1_);
    if (swiglu_) ops.swiglu_backward(d_fc, s + l.fc, d_act, BT, Fw_);
    else ops.gelu_backward(d_fc, s + l.fc, d_act, bt * Fw_);
    column_parallel_backward(ops, c, d_btc, d_fc, s + l.ln2, fcw_, fcb_, W1_);
    norm_backward(ops, c, dres, d_btc, s + l.res2, s + l.mean2, s + l.rstd2, ln2w_, ln2b_);
    ops.fill_zero(d_atty, bt * A_);
    ops.matmul_backward(d_atty, c.g[projw_], dbias(c, projb_), dres, s + l.atty, c.p[projw_], BT, A_, C_);
    if (!c.probs_valid) ops.attention_probs(c.probs, s + l.qkv, B, T, NH_, KVH_, hs_);  // selective recompute
    ops.fill_zero(d_qkv, bt * QKV_);
    ops.attention_backward(d_qkv, d_att, d_atty, s + l.qkv, c.probs, B, T, NH_, KVH_, hs_);
    if (rope_) ops.rope_backward(d_qkv, B, T, NH_ + KVH_, hs_, QKV_, base_);
    column_parallel_backward(ops, c, d_btc, d_qkv, s + l.ln1, qkvw_, qkvb_, QKV_);
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
    DMPI_REQUIRE(tp_ == 1, "inference runs on one tensor-parallel rank");
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
  int C_, NH_, KVH_, hs_, QKV_, A_, Fw_, W1_, tp_;
  bool sp_, rms_, rope_, swiglu_;
  double eps_, base_;
  int ln1w_ = -1, ln1b_ = -1, qkvw_ = -1, qkvb_ = -1, projw_ = -1, projb_ = -1, ln2w_ = -1, ln2b_ = -1, fcw_ = -1, fcb_ = -1,
      fcpw_ = -1, fcpb_ = -1;
};

// ---- FinalNorm: x -> y = norm(x)
template <class F>
class FinalNorm final : public Unit<F> {
 public:
  FinalNorm(const ModelConfig& c, int self) : C_(c.hidden), rms_(c.norm == Norm::RMSNorm), eps_(c.norm_eps), cfg_(c) {
    w_ = this->add_param(self, vector_param("lnf.weight", C_, InitKind::Ones));
    if (!rms_) b_ = this->add_param(self, vector_param("lnf.bias", C_, InitKind::Zeros));
  }
  const char* kind() const override { return "final_norm"; }
  SavedSizes saved(int B, int T) const override {  // sequence parallelism: this rank's rows
    const size_t BT = static_cast<size_t>(stream_rows(cfg_, B, T));
    return {BT * C_, rms_ ? BT : 2 * BT, 0};  // internals: [mean], rstd
  }
  size_t scratch(int, int) const override { return 0; }
  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = stream_rows(cfg_, c.batch.B, c.batch.T);
    const F* w = c.p[w_].template as<const F>();
    if (rms_) ops.rmsnorm_forward(c.out, c.internals, c.in, w, BT, C_, eps_);
    else ops.layernorm_forward(c.out, c.internals, c.internals + BT, c.in, w, c.p[b_].template as<const F>(), BT, C_, eps_);
  }
  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = stream_rows(cfg_, c.batch.B, c.batch.T);
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
  ModelConfig cfg_;
  int w_ = -1, b_ = -1;
};

// ---- LmHead: y -> logits = y W^T -> cross-entropy. W is the embedding's table (tied) or its own.
// Vocab-parallel (tp > 1, Megatron's): each rank holds the logits of its vocabulary slice
// [v0, v0 + Vl) and they are never gathered: the row maxima are max-reduced over the group, the
// sums of exp(logit - max) sum-reduced, and the target's logit is read by the rank that holds it,
// which alone writes the row's loss (the group's sum of a row's losses is the loss). The tied
// head reads the embedding's slice (the same rows). Backward: dy = dlogits W summed over the
// group (during the dW GEMM).
template <class F>
class LmHead final : public Unit<F> {
 public:
  LmHead(const ModelConfig& c, int self, bool tied, bool tied_copy = false)
      : C_(c.hidden), V_(c.vocab), tp_(c.tp_size), sp_(c.sp()) {
    this->tp_size_ = c.tp_size, this->tp_rank_ = c.tp_rank;
    v0_ = static_cast<int>(split_begin(c.vocab, c.tp_size, c.tp_rank));
    vl_ = static_cast<int>(split_len(c.vocab, c.tp_size, c.tp_rank));
    if (tied && tied_copy) {  // the embedding is on another pipeline stage: a copy of its table
      ParamSpec w = weight("wte", {c.vocab, c.hidden}, 0.02, 0);
      w.tied = w.tied_copy = true;
      w_ = this->add_param(self, w);
    } else if (tied) {
      this->uses_.push_back({0, 0});  // the embedding unit's wte
      w_ = 0;
    } else {
      w_ = this->add_param(self, weight("lm_head.weight", {c.vocab, c.hidden}, 0.02, 0));
    }
  }
  const char* kind() const override { return "lm_head"; }
  // output: the per-row losses; internals: the logits (probabilities after the forward), and with
  // sequence parallelism the gathered input (the dW GEMM's)
  SavedSizes saved(int B, int T) const override {
    const size_t BT = static_cast<size_t>(B) * T;
    return {BT, BT * vl_ + (sp_ ? BT * C_ : 0), 0};
  }
  const F* input(const UnitCall<F>& c) const {
    return sp_ ? c.internals + static_cast<size_t>(c.batch.B) * c.batch.T * vl_ : c.in;
  }
  size_t scratch(int, int) const override { return 0; }
  void forward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = c.batch.B * c.batch.T;
    for (int i = 0; i < BT; ++i) {
      DMPI_REQUIRE(c.batch.targets[i] == kIgnoreIndex || (c.batch.targets[i] >= 0 && c.batch.targets[i] < V_),
                   "target " << c.batch.targets[i] << " at position " << i << " is outside the vocabulary [0, " << V_ << ")");
    }
    if (sp_) sp_gather(c, c.in, c.internals + static_cast<size_t>(BT) * vl_, static_cast<size_t>(BT / tp_) * C_);
    ops.matmul_forward(c.internals, input(c), c.p[w_], nullptr, BT, C_, vl_);
    if (tp_ == 1) {
      c.valid_rows = ops.crossentropy_forward(c.out, c.internals, c.batch.targets, BT, V_, kIgnoreIndex);
    } else {
      c.valid_rows = vocab_parallel_crossentropy(ops, c, BT);
    }
    double sum = 0.0;
    for (int i = 0; i < BT; ++i) sum += static_cast<double>(c.out[i]);
    if (tp_ > 1) c.tp->sum(&sum, 1, DType::F64);  // each row's loss is on the rank that holds its target
    c.loss = c.valid_rows > 0 ? sum / static_cast<double>(c.valid_rows) : 0.0;
  }
  // logits [BT, Vl] -> probabilities in place (over the whole vocabulary), losses [BT] (on the
  // target's rank, 0 elsewhere); returns the counted rows. Communication: 2 BT scalars.
  int64_t vocab_parallel_crossentropy(const Ops<F>& ops, UnitCall<F>& c, int BT) const {
    std::vector<F> mx(static_cast<size_t>(BT)), sum(static_cast<size_t>(BT));
    F* z = c.internals;
    const size_t V = static_cast<size_t>(vl_);
#pragma omp parallel for schedule(static) num_threads(ops.ctx.threads)
    for (int i = 0; i < BT; ++i) {
      const F* r = z + static_cast<size_t>(i) * V;
      F m = -std::numeric_limits<F>::infinity();
      for (size_t v = 0; v < V; ++v) m = std::max(m, r[v]);
      mx[static_cast<size_t>(i)] = m;
    }
    c.tp->max(mx.data(), mx.size(), dtype_of<F>());
#pragma omp parallel for schedule(static) num_threads(ops.ctx.threads)
    for (int i = 0; i < BT; ++i) {
      F* r = z + static_cast<size_t>(i) * V;
      const F m = mx[static_cast<size_t>(i)];
      double acc = 0.0;
      for (size_t v = 0; v < V; ++v) {
        r[v] = std::exp(r[v] - m);
        acc += static_cast<double>(r[v]);
      }
      sum[static_cast<size_t>(i)] = static_cast<F>(acc);
    }
    c.tp->sum(sum.data(), sum.size(), dtype_of<F>());
    int64_t valid = 0;
    for (int i = 0; i < BT; ++i) valid += c.batch.targets[i] != kIgnoreIndex;
#pragma omp parallel for schedule(static) num_threads(ops.ctx.threads)
    for (int i = 0; i < BT; ++i) {
      F* r = z + static_cast<size_t>(i) * V;
      const F inv = F(1) / sum[static_cast<size_t>(i)];
      for (size_t v = 0; v < V; ++v) r[v] *= inv;
      const int32_t t = c.batch.targets[i];
      const bool mine = t != kIgnoreIndex && t >= v0_ && t < v0_ + vl_;
      c.out[i] = mine ? -std::log(std::max(r[static_cast<size_t>(t - v0_)], std::numeric_limits<F>::min())) : F(0);
    }
    return valid;
  }
  // Zero-bubble split: the logit gradients stay in the internals for the dW GEMM (nothing extra)
  bool splits_backward() const override { return true; }
  void backward_weight(const Ops<F>& ops, UnitCall<F>& c) const override {
    ops.matmul_backward_weight(c.g[w_], nullptr, c.internals, input(c), c.batch.B * c.batch.T, C_, vl_);
  }
  void backward(const Ops<F>& ops, UnitCall<F>& c) const override {
    const int BT = c.batch.B * c.batch.T;
    // d(loss_scale * mean loss)/dlogit, in place over the probabilities
    const F dloss = c.valid_rows > 0 ? static_cast<F>(c.loss_scale / static_cast<double>(c.valid_rows)) : F(0);
    if (tp_ == 1) {
      ops.crossentropy_backward(c.internals, c.batch.targets, dloss, BT, V_, kIgnoreIndex);
      if (c.weight_later) return ops.matmul_backward_input(c.din, c.internals, c.p[w_], BT, C_, V_);
      ops.matmul_backward(c.din, c.g[w_], nullptr, c.internals, c.in, c.p[w_], BT, C_, V_);
      return;
    }
    F* z = c.internals;
    const size_t V = static_cast<size_t>(vl_);
#pragma omp parallel for schedule(static) num_threads(ops.ctx.threads)
    for (int i = 0; i < BT; ++i) {
      F* r = z + static_cast<size_t>(i) * V;
      const int32_t t = c.batch.targets[i];
      if (t == kIgnoreIndex) {
        std::fill(r, r + V, F(0));
        continue;
      }
      if (t >= v0_ && t < v0_ + vl_) r[static_cast<size_t>(t - v0_)] -= F(1);
      for (size_t v = 0; v < V; ++v) r[v] *= dloss;
    }
    // din is the head's input gradient (zeroed by the Runner): this rank's part, then the sum
    // (sequence parallelism: every row's part, reduce-scattered to this rank's rows)
    std::unique_ptr<TpComm::Pending> pending;
    std::vector<F> full;
    if (sp_) {
      full.assign(static_cast<size_t>(BT) * C_, F(0));
      ops.matmul_backward_input(full.data(), z, c.p[w_], BT, C_, vl_);
      pending = sp_start_scatter(c, full.data(), c.din, static_cast<size_t>(BT / tp_) * C_);
    } else {
      ops.matmul_backward_input(c.din, z, c.p[w_], BT, C_, vl_);
      pending = tp_start_sum(c, c.din, static_cast<size_t>(BT) * C_);
    }
    if (!c.weight_later) ops.matmul_backward_weight(c.g[w_], nullptr, z, input(c), BT, C_, vl_);
    tp_wait(pending);
  }
  void infer(const Ops<F>& ops, InferCall<F>& c) const override {  // the logits
    DMPI_REQUIRE(tp_ == 1, "inference runs on one tensor-parallel rank");
    ops.matmul_forward(c.out, c.in, c.p[w_], nullptr, c.B * c.Tq, C_, V_);
  }

 private:
  int C_, V_, tp_;
  bool sp_;
  int v0_ = 0, vl_ = 0, w_ = -1;
};

}  // namespace

template <class F>
std::vector<std::unique_ptr<Unit<F>>> build_units(const ModelConfig& c, bool head_tied_copy) {
  c.validate();
  std::vector<std::unique_ptr<Unit<F>>> u;
  u.push_back(std::make_unique<Embedding<F>>(c, 0));
  for (int l = 0; l < c.num_layers; ++l) u.push_back(std::make_unique<Block<F>>(c, static_cast<int>(u.size()), l));
  u.push_back(std::make_unique<FinalNorm<F>>(c, static_cast<int>(u.size())));
  u.push_back(std::make_unique<LmHead<F>>(c, static_cast<int>(u.size()), c.tie_embeddings, head_tied_copy));
  return u;
}

template class Unit<float>;
template class Unit<double>;
template std::vector<std::unique_ptr<Unit<float>>> build_units<float>(const ModelConfig&, bool);
template std::vector<std::unique_ptr<Unit<double>>> build_units<double>(const ModelConfig&, bool);

}  // namespace dmpi::model
