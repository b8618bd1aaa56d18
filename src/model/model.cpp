#include "src/model/model.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "base/error.hpp"
#include "base/rng.hpp"

namespace dmpi::model {

template <class F>
Model<F>::Model(const ModelConfig& c) : cfg_(c), units_(build_units<F>(c)) {
  for (int u = 0; u < num_units(); ++u) global_unit_.push_back(u);
  index_tensors({});
}

template <class F>
Model<F>::Model(const ModelConfig& c, const std::vector<int>& units) : cfg_(c) {
  auto whole = build_units<F>(c);
  const int n = static_cast<int>(whole.size());
  std::vector<int> whole_first;
  for (int u = 0, t = 0; u < n; ++u) whole_first.push_back(t), t += static_cast<int>(whole[static_cast<size_t>(u)]->params().size());
  DMPI_REQUIRE(!units.empty(), "a pipeline stage without units");
  std::vector<int> local_of(static_cast<size_t>(n), -1);
  for (size_t i = 0; i < units.size(); ++i) {
    DMPI_REQUIRE(units[i] >= 0 && units[i] < n && (i == 0 || units[i] > units[i - 1]), "pipeline stage units out of order");
    local_of[static_cast<size_t>(units[i])] = static_cast<int>(i);
  }
  const bool copy = c.tie_embeddings && local_of[0] < 0 && local_of[static_cast<size_t>(n - 1)] >= 0;
  auto built = copy ? build_units<F>(c, true) : std::move(whole);
  for (int g : units) {
    units_.push_back(std::move(built[static_cast<size_t>(g)]));
    units_.back()->renumber_uses(local_of);
    global_unit_.push_back(g);
  }
  index_tensors(whole_first);
}

template <class F>
void Model<F>::index_tensors(const std::vector<int>& whole_first) {
  for (int u = 0; u < num_units(); ++u) {
    first_tensor_.push_back(static_cast<int>(tensors_.size()));
    const auto& ps = units_[static_cast<size_t>(u)]->params();
    for (int i = 0; i < static_cast<int>(ps.size()); ++i) {
      global_tensor_.push_back(ps[static_cast<size_t>(i)].tied_copy ? 0  // the embedding's table: tensor 0
                               : whole_first.empty() ? static_cast<int>(tensors_.size())
                                                     : whole_first[static_cast<size_t>(global_unit(u))] + i);
      tensors_.push_back({u, i});
    }
  }
}

template <class F>
const ParamSpec& Model<F>::spec(int t) const {
  const TensorRef& r = tensor(t);
  return unit(r.unit).params()[static_cast<size_t>(r.index)];
}

template <class F>
int Model<F>::tensor_index(int u, int index) const {
  return first_tensor_[static_cast<size_t>(u)] + index;
}

template <class F>
int Model<F>::find_tensor(const std::string& name) const {
  for (int t = 0; t < num_tensors(); ++t)
    if (spec(t).name == name) return t;
  return -1;
}

template <class F>
size_t Model<F>::real_params() const {
  size_t n = 0;
  for (int t = 0; t < num_tensors(); ++t) n += spec(t).numel;
  return n;
}

template <class F>
void Model<F>::init_tensor(uint64_t seed, int t, size_t j0, size_t j1, F* out) const {
  const ParamSpec& s = spec(t);
  DMPI_REQUIRE(j0 <= j1 && j1 <= s.logical_numel, "init_tensor: elements [" << j0 << ", " << j1 << ") of " << s.name);
  switch (s.init) {
    case InitKind::Zeros: std::fill(out, out + (j1 - j0), F(0)); return;
    case InitKind::Ones: std::fill(out, out + (j1 - j0), F(1)); return;
    case InitKind::Normal: {
      // one stream per tensor (its index in the whole model's order: a pipeline stage draws
      // what one rank would)
      Rng rng(seed, 1000 + static_cast<uint64_t>(global_tensor(t)));
      rng.skip(2 * (j0 / 2));
      if (j0 % 2) rng.normal();
      for (size_t j = j0; j < j1; ++j) out[j - j0] = static_cast<F>(rng.normal() * s.init_std);
      return;
    }
  }
}

std::string RecomputeConfig::describe() const {
  switch (granularity) {
    case Granularity::None: return "none";
    case Granularity::Selective: return "selective (attention probabilities recomputed)";
    case Granularity::Full:
      return std::string("full, ") + (method == Method::Uniform ? "uniform chunks of " : "the first ") +
             std::to_string(num_layers) + (method == Method::Uniform ? " block(s)" : " block(s) one at a time") +
             "; the LM head's logits recomputed";
  }
  return "?";
}

template <class F>
std::vector<UnitPlan> plan_recompute(const Model<F>& m, const RecomputeConfig& rc, const std::vector<int>& chunk_begin) {
  using G = RecomputeConfig::Granularity;
  std::vector<UnitPlan> plan(static_cast<size_t>(m.num_units()));
  if (rc.granularity == G::None) return plan;
  DMPI_REQUIRE(rc.num_layers >= 1, "--recompute-num-layers must be >= 1 (got " << rc.num_layers << ")");
  std::vector<int> blocks;
  for (int u = 0; u < m.num_units(); ++u)
    if (std::string(m.unit(u).kind()) == "block") blocks.push_back(u);
  if (rc.granularity == G::Selective) {
    for (int u : blocks) plan[static_cast<size_t>(u)].keep_probs = false;
    return plan;
  }
  int chunk = 0;
  // the blocks of each pipeline chunk (one group without pipelining), grouped within it
  std::vector<std::vector<int>> groups(1);
  for (int u : blocks) {
    if (!groups.back().empty() && std::find(chunk_begin.begin(), chunk_begin.end(), u) != chunk_begin.end()) groups.emplace_back();
    groups.back().push_back(u);
  }
  for (const auto& g : groups) {
    const int n = static_cast<int>(g.size());
    if (rc.method == RecomputeConfig::Method::Uniform) {
      for (int i = 0; i < n; i += rc.num_layers, ++chunk)
        for (int j = i; j < std::min(n, i + rc.num_layers); ++j) plan[static_cast<size_t>(g[static_cast<size_t>(j)])].chunk = chunk;
    } else {
      for (int i = 0; i < std::min(n, rc.num_layers); ++i, ++chunk) plan[static_cast<size_t>(g[static_cast<size_t>(i)])].chunk = chunk;
    }
  }
  // the LM head's logits: recomputed on their own
  for (int u = 0; u < m.num_units(); ++u)
    if (std::string(m.unit(u).kind()) == "lm_head") plan[static_cast<size_t>(u)].chunk = chunk++;
  for (int u = 0; u < m.num_units(); ++u) {
    UnitPlan& p = plan[static_cast<size_t>(u)];
    if (p.chunk < 0) continue;
    p.keep_internals = p.keep_probs = false;
    // only the last unit of a chunk keeps its output (the checkpoint the next chunk starts from)
    p.keep_output = u + 1 >= m.num_units() || plan[static_cast<size_t>(u + 1)].chunk != p.chunk;
  }
  return plan;
}

template <class F>
Runner<F>::Runner(const Model<F>& m, int B, int T, std::vector<UnitPlan> plan, int slots, RunnerShape shape)
    : m_(m), B_(B), T_(T), slots_(slots), plan_(std::move(plan)), shape_(std::move(shape)) {
  DMPI_REQUIRE(!shape_.chunk_begin.empty() && shape_.chunk_begin[0] == 0, "the first chunk starts at unit 0");
  DMPI_REQUIRE(B >= 1, "micro-batch size must be >= 1 (got " << B << ")");
  DMPI_REQUIRE(T >= 1 && T <= m.config().max_pos,
               "sequence length " << T << " must be in [1, --max-position-embeddings=" << m.config().max_pos << "]");
  DMPI_REQUIRE(slots >= 1, "at least one micro-batch slot");
  DMPI_REQUIRE(plan_.size() == static_cast<size_t>(m.num_units()), "one plan entry per unit");
  Sizes z = plan_sizes(m, B, T, plan_, shape_);
  place_ = std::move(z.place);
  slot_numel_ = z.slot_numel;
  const size_t BT = static_cast<size_t>(B) * T;
  kept_.assign(slot_numel_ * static_cast<size_t>(slots), F(0));
  work_.assign(z.work, F(0));
  dres_.assign(z.dres, F(0));
  tokens_.assign(BT * static_cast<size_t>(slots), 0);
  targets_.assign(BT * static_cast<size_t>(slots), 0);
  valid_.assign(static_cast<size_t>(slots), 0);
}

template <class F>
bool Runner<F>::starts_chunk(int u) const {
  return std::find(shape_.chunk_begin.begin(), shape_.chunk_begin.end(), u) != shape_.chunk_begin.end();
}

template <class F>
typename Runner<F>::Sizes Runner<F>::plan_sizes(const Model<F>& m, int B, int T, const std::vector<UnitPlan>& plan,
                                                const RunnerShape& shape) {
  // Kept regions are laid out unit by unit in a slot's block; a chunk's transient regions unit by
  // unit from the chunk's base in the work buffer; a unit outside a chunk with a transient part
  // (the selective probabilities) at the base of its own.
  const size_t BT = static_cast<size_t>(B) * T, BTC = BT * static_cast<size_t>(m.config().hidden);
  size_t scratch = BTC;  // at least the head's input gradient
  for (int u = 0; u < m.num_units(); ++u) scratch = std::max(scratch, m.unit(u).scratch(B, T));
  Sizes z;
  z.place.resize(plan.size());
  std::map<int, size_t> chunk_size;  // chunk -> transient elements
  std::map<int, bool> chunk_scratch;  // chunk -> some unit of it uses scratch
  size_t work = scratch;
  for (int u = 0; u < m.num_units(); ++u) {
    const SavedSizes s = m.unit(u).saved(B, T);
    const UnitPlan& p = plan[static_cast<size_t>(u)];
    Place& pl = z.place[static_cast<size_t>(u)];
    const bool uses_scratch = m.unit(u).scratch(B, T) > 0;
    size_t lone = 0;
    size_t* ct = p.chunk >= 0 ? &chunk_size[p.chunk] : &lone;
    if (p.chunk >= 0) chunk_scratch[p.chunk] = chunk_scratch[p.chunk] || uses_scratch;
    auto put = [&](Region& r, size_t n, bool keep) {
      if (keep) {
        r = {false, z.slot_numel, p.chunk};
        z.slot_numel += n;
      } else {
        r = {true, *ct, p.chunk};
        *ct += n;
      }
    };
    // a chunk that does not start with the embedding: its received input, kept per slot
    const bool external = std::string(m.unit(u).kind()) != "embedding" &&
                          std::find(shape.chunk_begin.begin(), shape.chunk_begin.end(), u) != shape.chunk_begin.end();
    if (external) put(pl.input, s.output, true);  // a block's input is the size of its output
    put(pl.out, s.output, p.keep_output);
    put(pl.internals, s.internals, p.keep_internals);
    put(pl.probs, s.probs, p.keep_probs);
    if (shape.split_backward && m.unit(u).splits_backward()) put(pl.deferred, m.unit(u).deferred(B, T), true);
    if (p.chunk < 0 && lone > 0) {  // its own base
      const size_t base = uses_scratch ? scratch : BTC;
      for (Region* r : {&pl.out, &pl.internals, &pl.probs})
        if (r->transient) r->off += base;
      work = std::max(work, base + lone);
    }
  }
  // the chunks' bases: after the scratch, or after the head's input gradient for chunks whose units
  // use no scratch
  for (int u = 0; u < m.num_units(); ++u) {
    const int c = plan[static_cast<size_t>(u)].chunk;
    if (c < 0) continue;
    const size_t base = chunk_scratch[c] ? scratch : BTC;
    Place& pl = z.place[static_cast<size_t>(u)];
    for (Region* r : {&pl.out, &pl.internals, &pl.probs})
      if (r->transient) r->off += base;
    work = std::max(work, base + chunk_size[c]);
  }
  z.work = work;
  z.dres = BTC;
  return z;
}

template <class F>
size_t Runner<F>::planned_bytes(const Model<F>& m, int B, int T, const std::vector<UnitPlan>& plan, int slots,
                                const RunnerShape& shape) {
  const Sizes z = plan_sizes(m, B, T, plan, shape);
  return (z.slot_numel * static_cast<size_t>(slots) + z.work + z.dres) * sizeof(F);
}

template <class F>
F* Runner<F>::at(const Region& r, int slot) {
  return r.transient ? work_.data() + r.off : kept_.data() + static_cast<size_t>(slot) * slot_numel_ + r.off;
}

template <class F>
void Runner<F>::load(int slot, const int32_t* tokens, const int32_t* targets) {
  const size_t BT = static_cast<size_t>(B_) * T_;
  const int V = m_.config().vocab;
  for (size_t i = 0; i < BT; ++i)
    DMPI_REQUIRE(tokens[i] >= 0 && tokens[i] < V,
                 "token " << tokens[i] << " at position " << i << " is outside the vocabulary [0, " << V << ")");
  std::memcpy(tokens_.data() + static_cast<size_t>(slot) * BT, tokens, BT * sizeof(int32_t));
  std::memcpy(targets_.data() + static_cast<size_t>(slot) * BT, targets, BT * sizeof(int32_t));
}

template <class F>
UnitCall<F> Runner<F>::call(int u, int slot, const ConstView* params) {
  DMPI_REQUIRE(slot >= 0 && slot < slots_, "micro-batch slot " << slot << " of " << slots_);
  const size_t BT = static_cast<size_t>(B_) * T_;
  UnitCall<F> c;
  c.p = params;
  c.batch = {tokens_.data() + static_cast<size_t>(slot) * BT, targets_.data() + static_cast<size_t>(slot) * BT, B_, T_};
  const Place& pl = place_[static_cast<size_t>(u)];
  c.in = std::string(m_.unit(u).kind()) == "embedding" ? nullptr
         : at(starts_chunk(u) ? pl.input : place_[static_cast<size_t>(u - 1)].out, slot);
  c.out = at(pl.out, slot);
  c.internals = at(pl.internals, slot);
  c.probs = at(pl.probs, slot);
  c.scratch = work_.data();
  c.tp = tp_;
  return c;
}

template <class F>
double Runner<F>::forward(const Ops<F>& ops, int u, int slot, const ConstView* params) {
  UnitCall<F> c = call(u, slot, params);
  m_.unit(u).forward(ops, c);
  if (std::string(m_.unit(u).kind()) == "lm_head") valid_[static_cast<size_t>(slot)] = c.valid_rows;
  return c.loss;
}

template <class F>
F* Runner<F>::input(int chunk, int slot) {
  const int u = chunk_first(chunk);
  DMPI_REQUIRE(std::string(m_.unit(u).kind()) != "embedding", "chunk " << chunk << " starts with the embedding: it has no received input");
  return at(place_[static_cast<size_t>(u)].input, slot);
}

template <class F>
const F* Runner<F>::output(int u, int slot) {
  const Place& pl = place_[static_cast<size_t>(u)];
  DMPI_REQUIRE(!pl.out.transient, "unit " << u << " (" << m_.unit(u).kind() << ") does not keep its output");
  return at(pl.out, slot);
}

template <class F>
size_t Runner<F>::stream_numel() const {
  return m_.unit(0).saved(B_, T_).output;  // the embedding's output or a block's: the stream this rank holds
}

template <class F>
void Runner<F>::backward_weight(const Ops<F>& ops, int u, int slot, const ConstView* params, F* const* grads) {
  UnitCall<F> c = call(u, slot, params);
  c.g = grads;
  c.deferred = at(place_[static_cast<size_t>(u)].deferred, slot);
  m_.unit(u).backward_weight(ops, c);
}

template <class F>
void Runner<F>::backward(const Ops<F>& ops, int u, int slot, const ConstView* params, F* const* grads, double loss_scale,
                         bool weight_later) {
  UnitCall<F> c = call(u, slot, params);
  c.g = grads;
  c.loss_scale = loss_scale;
  c.weight_later = weight_later && shape_.split_backward && m_.unit(u).splits_backward();
  if (c.weight_later) c.deferred = at(place_[static_cast<size_t>(u)].deferred, slot);
  c.valid_rows = valid_[static_cast<size_t>(slot)];
  const UnitPlan& p = plan_[static_cast<size_t>(u)];
  // probabilities not kept and not recomputed with a chunk: the unit recomputes them (selective)
  c.probs_valid = p.keep_probs || p.chunk >= 0;
  const Unit<F>& unit = m_.unit(u);
  const size_t BTC = static_cast<size_t>(B_) * T_ * static_cast<size_t>(m_.config().hidden);
  // The gradient flowing down the unit list: the head writes its input gradient at the start of
  // the scratch buffer; a unit that is not in place reads it there (or from the residual-stream
  // buffer) and writes into the other one; the residual blocks work in place on the residual-stream
  // buffer.
  // the head ends the list; a unit before another chunk's (or stage's) unit takes its output
  // gradient from the residual-stream buffer (received there)
  const bool last = std::string(unit.kind()) == "lm_head";
  const bool next_in_scratch = !last && u + 1 < m_.num_units() && !starts_chunk(u + 1) &&
                               std::string(m_.unit(u + 1).kind()) == "lm_head";
  c.dout = last ? nullptr : next_in_scratch ? work_.data() : dres_.data();
  if (std::string(unit.kind()) == "embedding") {
    c.din = nullptr;
  } else if (unit.in_place()) {
    DMPI_REQUIRE(c.dout == dres_.data(), "unit " << u << " (" << unit.kind() << ") works in place but its output gradient is not the residual stream's");
    c.din = dres_.data();
  } else {
    c.din = last ? work_.data() : next_in_scratch ? dres_.data() : work_.data();
    DMPI_REQUIRE(c.din != c.dout, "unit " << u << " (" << unit.kind() << "): input and output gradients would share a buffer");
    ops.fill_zero(c.din, BTC);
  }
  unit.backward(ops, c);
}

template <class F>
const F* Runner<F>::losses(int slot) const {
  const int head = m_.num_units() - 1;
  const Place& pl = place_[static_cast<size_t>(head)];
  DMPI_REQUIRE(!pl.out.transient, "the head's losses are kept");
  return kept_.data() + static_cast<size_t>(slot) * slot_numel_ + pl.out.off;
}

template <class F>
size_t Runner<F>::activation_bytes() const {
  return (kept_.size() + work_.size() + dres_.size()) * sizeof(F);
}

template <class F>
LocalModel<F>::LocalModel(const ModelConfig& c, int B, int T, bool fast, const RecomputeConfig& rc)
    : model_(c), fast_(fast) {
  DMPI_REQUIRE(!(std::is_same_v<F, double> && fast), "the fast kernel path is float only; use the reference for double");
  size_t off = 0;
  for (int t = 0; t < model_.num_tensors(); ++t) {
    offsets_.push_back(off);
    off += model_.spec(t).numel;
  }
  params_.assign(off, F(0));
  grads_.assign(off, F(0));
  runner_ = std::make_unique<Runner<F>>(model_, B, T, plan_recompute(model_, rc), 1);
}

template <class F>
F* LocalModel<F>::param(const std::string& name) {
  const int t = model_.find_tensor(name);
  DMPI_REQUIRE(t >= 0, "no parameter named '" << name << "'");
  return params_.data() + offsets_[static_cast<size_t>(t)];
}

template <class F>
F* LocalModel<F>::grad(const std::string& name) {
  const int t = model_.find_tensor(name);
  DMPI_REQUIRE(t >= 0, "no parameter named '" << name << "'");
  return grads_.data() + offsets_[static_cast<size_t>(t)];
}

template <class F>
void LocalModel<F>::init_weights(uint64_t seed) {
  for (int t = 0; t < model_.num_tensors(); ++t)
    model_.init_tensor(seed, t, 0, model_.spec(t).numel, params_.data() + offsets_[static_cast<size_t>(t)]);
}

template <class F>
std::vector<ConstView> LocalModel<F>::views(int u) {
  std::vector<ConstView> v;
  for (const ParamUse& pu : model_.unit(u).uses()) {
    const int t = model_.tensor_index(pu.unit, pu.index);
    const ParamSpec& s = model_.spec(t);
    Shape sh;
    for (auto d : s.shape) sh.d[sh.ndim++] = d;
    v.emplace_back(params_.data() + offsets_[static_cast<size_t>(t)], dtype_of<F>(), sh);
  }
  return v;
}

template <class F>
std::vector<F*> LocalModel<F>::grad_ptrs(int u) {
  std::vector<F*> g;
  for (const ParamUse& pu : model_.unit(u).uses())
    g.push_back(grads_.data() + offsets_[static_cast<size_t>(model_.tensor_index(pu.unit, pu.index))]);
  return g;
}

template <class F>
double LocalModel<F>::forward(const kernels::Context& ctx, const int32_t* tokens, const int32_t* targets) {
  const Ops<F> ops{ctx, fast_};
  runner_->load(0, tokens, targets);
  double loss = 0;
  for (int u = 0; u < model_.num_units(); ++u) {
    const auto v = views(u);
    loss = runner_->forward(ops, u, 0, v.data());
  }
  have_forward_ = true;
  return loss;
}

template <class F>
void LocalModel<F>::backward(const kernels::Context& ctx, double loss_scale) {
  DMPI_REQUIRE(have_forward_, "backward called without a forward since the last backward");
  have_forward_ = false;
  const Ops<F> ops{ctx, fast_};
  const auto& plan = runner_->plan();
  for (int u = model_.num_units() - 1; u >= 0; --u) {
    // a recompute chunk is recomputed, in order, before the backward of its last unit
    const int ch = plan[static_cast<size_t>(u)].chunk;
    if (ch >= 0 && (u + 1 >= model_.num_units() || plan[static_cast<size_t>(u + 1)].chunk != ch)) {
      int first = u;
      while (first > 0 && plan[static_cast<size_t>(first - 1)].chunk == ch) --first;
      for (int r = first; r <= u; ++r) {
        const auto v = views(r);
        runner_->forward(ops, r, 0, v.data());
      }
    }
    const auto v = views(u);
    const auto g = grad_ptrs(u);
    runner_->backward(ops, u, 0, v.data(), g.data(), loss_scale);
  }
}

template <class F>
Decoder<F>::Decoder(LocalModel<F>& m, int B, int Tmax) : m_(m), B_(B), Tmax_(Tmax) {
  const Model<F>& model = m.model();
  DMPI_REQUIRE(B >= 1 && Tmax >= 1, "a decoder for " << B << " sequences of " << Tmax << " positions");
  const size_t rows = static_cast<size_t>(B) * Tmax, C = static_cast<size_t>(model.config().hidden);
  size_t scratch = 0;
  for (int u = 0; u < model.num_units(); ++u) {
    const size_t w = model.unit(u).kv_width();
    k_.emplace_back(rows * w, F(0));
    v_.emplace_back(rows * w, F(0));
    scratch = std::max(scratch, model.unit(u).infer_scratch(B, Tmax));
  }
  x_.assign(rows * C, F(0));
  y_.assign(rows * C, F(0));
  logits_.assign(rows * static_cast<size_t>(model.config().vocab), F(0));
  scratch_.assign(scratch, F(0));
}

template <class F>
const F* Decoder<F>::feed(const kernels::Context& ctx, const int32_t* tokens, int Tq) {
  const Model<F>& model = m_.model();
  DMPI_REQUIRE(Tq >= 1 && pos_ + Tq <= Tmax_,
               "the decoder holds " << Tmax_ << " positions; " << pos_ << " are used and " << Tq << " more were given");
  const int V = model.config().vocab;
  for (int i = 0; i < B_ * Tq; ++i)
    DMPI_REQUIRE(tokens[i] >= 0 && tokens[i] < V, "token " << tokens[i] << " is outside the vocabulary [0, " << V << ")");
  const Ops<F> ops{ctx, true};
  F* in = x_.data();
  F* out = y_.data();
  for (int u = 0; u < model.num_units(); ++u) {
    const auto v = m_.views(u);
    InferCall<F> c;
    c.p = v.data();
    c.tokens = tokens;
    c.B = B_, c.Tq = Tq, c.pos0 = pos_;
    c.in = in;
    const bool head = u + 1 == model.num_units();
    c.out = head ? logits_.data() : out;
    c.kcache = k_[static_cast<size_t>(u)].data();
    c.vcache = v_[static_cast<size_t>(u)].data();
    c.Tmax = Tmax_;
    c.scratch = scratch_.data();
    model.unit(u).infer(ops, c);
    std::swap(in, out);
  }
  pos_ += Tq;
  return logits_.data();
}

size_t num_params(const ModelConfig& c) { return Model<float>(c).real_params(); }

size_t num_matmul_params(const ModelConfig& c) {
  const Model<float> m(c);
  size_t n = m.real_params();
  const int wpe = m.find_tensor("wpe");
  if (wpe >= 0) n -= m.spec(wpe).numel;
  return n;
}

template class Model<float>;
template class Model<double>;
template class Runner<float>;
template class Runner<double>;
template class LocalModel<float>;
template class LocalModel<double>;
template class Decoder<float>;
template std::vector<UnitPlan> plan_recompute<float>(const Model<float>&, const RecomputeConfig&, const std::vector<int>&);
template std::vector<UnitPlan> plan_recompute<double>(const Model<double>&, const RecomputeConfig&, const std::vector<int>&);

}  // namespace dmpi::model
