#include "src/engine/pipeline.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "base/error.hpp"
#include "src/model/model.hpp"

namespace dmpi::engine {

std::vector<int> Partition::units_of(int stage) const {
  std::vector<int> u;
  for (int k = 0; k < virtual_stages; ++k) {
    const auto [a, b] = chunks[static_cast<size_t>(global_chunk(stage, k))];
    for (int x = a; x < b; ++x) u.push_back(x);
  }
  return u;
}

std::vector<int> Partition::chunk_begin(int stage) const {
  std::vector<int> out;
  int at = 0;
  for (int k = 0; k < virtual_stages; ++k) {
    out.push_back(at);
    const auto [a, b] = chunks[static_cast<size_t>(global_chunk(stage, k))];
    at += b - a;
  }
  return out;
}

Partition partition_model(const model::ModelConfig& c0, const PartitionOptions& o) {
  model::ModelConfig c = c0;
  c.tp_size = 1, c.tp_rank = 0;
  const int S = o.stages, v = o.virtual_stages, K = S * v, L = c.num_layers;
  DMPI_REQUIRE(S >= 1, "--pipeline-model-parallel-size must be >= 1 (got " << S << ")");
  DMPI_REQUIRE(v >= 1, "the virtual pipeline stages per stage must be >= 1 (got " << v << ")");
  DMPI_REQUIRE(L >= K, "--num-layers " << L << " cannot be split into " << K << " pipeline chunks (" << S << " stages x "
                                       << v << " virtual stages): each needs at least one layer; use fewer stages or a "
                                          "model with more layers");
  const model::Model<float> m(c);
  auto params_of = [&](int u) {
    int64_t n = 0;
    for (const auto& p : m.unit(u).params()) n += static_cast<int64_t>(p.logical_numel);
    return n;
  };
  std::vector<int64_t> w(static_cast<size_t>(L));
  int64_t e0 = 0, eL = 0;
  Partition P;
  P.stages = S, P.virtual_stages = v;
  std::vector<int> counts(static_cast<size_t>(K), 0);
  const bool uneven = o.first_layers >= 0 || o.last_layers >= 0;
  if (uneven) {
    DMPI_REQUIRE(v == 1, "--decoder-first/last-pipeline-num-layers with virtual pipeline stages: use one or the other");
    DMPI_REQUIRE(S >= 2, "--decoder-first/last-pipeline-num-layers need --pipeline-model-parallel-size >= 2");
    int left = L, first = 0, n_mid = S;
    if (o.first_layers >= 0) counts[0] = o.first_layers, left -= o.first_layers, --n_mid, first = 1;
    if (o.last_layers >= 0) counts[static_cast<size_t>(S - 1)] = o.last_layers, left -= o.last_layers, --n_mid;
    DMPI_REQUIRE(o.first_layers != 0 && o.last_layers != 0,
                 "--decoder-first/last-pipeline-num-layers must be >= 1 (every stage holds a layer)");
    DMPI_REQUIRE(left >= n_mid && (n_mid > 0 || left == 0),
                 "--decoder-first-pipeline-num-layers " << o.first_layers << " and --decoder-last-pipeline-num-layers "
                                                        << o.last_layers << " leave " << left << " of --num-layers " << L
                                                        << " for the " << n_mid << " other stage(s): "
                                                        << (n_mid > 0 ? "each needs at least one" : "they must add up to it"));
    for (int i = 0; i < n_mid; ++i)
      counts[static_cast<size_t>(first + i)] = static_cast<int>(model::split_len(left, n_mid, i));
  } else if (o.method == "uniform") {
    for (int k = 0; k < K; ++k) counts[static_cast<size_t>(k)] = static_cast<int>(model::split_len(L, K, k));
  } else {
    if (o.method == "parameters") {
      for (int l = 0; l < L; ++l) w[static_cast<size_t>(l)] = params_of(1 + l);
      e0 = params_of(0);
      eL = params_of(L + 1) + params_of(L + 2) + (c.tie_embeddings && K > 1 ? m.spec(0).logical_numel : 0);
    } else if (o.method.rfind("type:", 0) == 0) {
      std::regex re;
      try {
        re = std::regex(o.method.substr(5), std::regex::icase | std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        throw Error("partition method '" + o.method + "': the regular expression does not parse (" + e.what() + ")");
      }
      auto match = [&](int u) { return std::regex_search(m.unit(u).kind(), re) ? int64_t{1} : int64_t{0}; };
      int64_t blocks = 0;
      for (int l = 0; l < L; ++l) blocks += w[static_cast<size_t>(l)] = match(1 + l);
      DMPI_REQUIRE(blocks > 0, "partition method '" << o.method << "' matches no layer (the unit kinds are embedding, "
                                                       "block, final_norm, lm_head): write type:block, or uniform");
      e0 = match(0), eL = match(L + 1) + match(L + 2);
    } else {
      throw Error("partition method '" + o.method + "': write parameters (balanced parameter counts, the default), "
                  "uniform (balanced layer counts) or type:<regex> (balanced counts of matching units)");
    }
    // min-max contiguous split, every chunk at least one block: best[k][i] = the least largest
    // weight of the first i blocks in k chunks (chunk 0 carries e0, chunk K-1 carries eL)
    std::vector<int64_t> pre(static_cast<size_t>(L) + 1, 0);
    for (int l = 0; l < L; ++l) pre[static_cast<size_t>(l) + 1] = pre[static_cast<size_t>(l)] + w[static_cast<size_t>(l)];
    constexpr int64_t inf = std::numeric_limits<int64_t>::max();
    std::vector<std::vector<int64_t>> best(static_cast<size_t>(K) + 1, std::vector<int64_t>(static_cast<size_t>(L) + 1, inf));
    std::vector<std::vector<int>> from(static_cast<size_t>(K) + 1, std::vector<int>(static_cast<size_t>(L) + 1, -1));
    for (int i = 1; i <= L; ++i) best[1][static_cast<size_t>(i)] = pre[static_cast<size_t>(i)] + e0 + (K == 1 ? eL : 0);
    for (int k = 2; k <= K; ++k)
      for (int i = k; i <= L; ++i)
        for (int j = k - 1; j < i; ++j) {
          const int64_t prev = best[static_cast<size_t>(k) - 1][static_cast<size_t>(j)];
          if (prev == inf) continue;
          const int64_t here = pre[static_cast<size_t>(i)] - pre[static_cast<size_t>(j)] + (k == K ? eL : 0);
          const int64_t v2 = std::max(prev, here);
          if (v2 < best[static_cast<size_t>(k)][static_cast<size_t>(i)]) best[static_cast<size_t>(k)][static_cast<size_t>(i)] = v2, from[static_cast<size_t>(k)][static_cast<size_t>(i)] = j;
        }
    for (int k = K, i = L; k >= 1; --k) {
      const int j = k == 1 ? 0 : from[static_cast<size_t>(k)][static_cast<size_t>(i)];
      counts[static_cast<size_t>(k) - 1] = i - j;
      i = j;
    }
  }
  if (o.method == "uniform" || uneven)
    for (int l = 0; l < L; ++l) w[static_cast<size_t>(l)] = 1;
  int at = 1;  // blocks start after the embedding
  for (int k = 0; k < K; ++k) {
    const int n = counts[static_cast<size_t>(k)];
    const int a = k == 0 ? 0 : at, b = at + n + (k == K - 1 ? 2 : 0);
    int64_t wt = 0;
    for (int l = at - 1; l < at - 1 + n; ++l) wt += w[static_cast<size_t>(l)];
    P.chunks.emplace_back(a, b);
    P.weights.push_back(wt + (k == 0 ? e0 : 0) + (k == K - 1 ? eL : 0));
    at += n;
  }
  DMPI_REQUIRE(at == L + 1, "the partition covers " << at - 1 << " of " << L << " layers");
  return P;
}

PipeSchedule pipe_schedule_named(const std::string& s) {
  if (s == "1f1b") return PipeSchedule::OneFOneB;
  if (s == "interleaved") return PipeSchedule::Interleaved;
  if (s == "zero-bubble" || s == "zb-h1") return PipeSchedule::ZeroBubble;
  throw Error("--pipeline-schedule '" + s + "': write 1f1b, interleaved (with --num-layers-per-virtual-pipeline-stage) or zero-bubble");
}

const char* pipe_schedule_name(PipeSchedule s) {
  switch (s) {
    case PipeSchedule::OneFOneB: return "1f1b";
    case PipeSchedule::Interleaved: return "interleaved";
    case PipeSchedule::ZeroBubble: return "zero-bubble";
  }
  return "?";
}

std::string to_string(const PipeCmd& c) {
  std::ostringstream os;
  os << (c.kind == PipeCmd::F ? "F" : c.kind == PipeCmd::B ? "B" : "W");
  if (c.chunk) os << c.chunk << ".";
  os << c.micro;
  return os.str();
}

std::vector<PipeStep> one_f_one_b_steps(int S, int s, int M) {
  std::vector<PipeStep> steps;
  for (int t = 0; t < 2 * (M + S - 1); ++t) {
    PipeStep st;
    const bool even_t = t % 2 == 0, even_s = s % 2 == 0;
    int id;
    if (even_t == even_s) {  // a forward step
      id = even_t ? t / 2 - s / 2 : (t - 1) / 2 - s / 2;
      if (id >= 0 && id < M) st.forward = id;
    } else {
      id = even_t ? t / 2 - S + (s + 1) / 2 : (t - 1) / 2 - S + 1 + s / 2;
      if (id >= 0 && id < M) st.backward = id;
    }
    steps.push_back(st);
  }
  return steps;
}

int one_f_one_b_buffers(int S, int s, int M) { return std::max(2, std::min(S - s, M)); }

std::vector<PipeCmd> pipeline_order(PipeSchedule kind, int S, int s, int M, int v) {
  DMPI_REQUIRE(S >= 1 && s >= 0 && s < S && M >= 1 && v >= 1, "pipeline order of stage " << s << " of " << S);
  std::vector<PipeCmd> out;
  if (kind == PipeSchedule::OneFOneB) {
    DMPI_REQUIRE(v == 1, "1F1B runs one chunk per stage");
    for (const PipeStep& st : one_f_one_b_steps(S, s, M)) {
      if (st.forward >= 0) out.push_back({PipeCmd::F, 0, st.forward});
      if (st.backward >= 0) out.push_back({PipeCmd::B, 0, st.backward});
    }
    return out;
  }
  if (kind == PipeSchedule::ZeroBubble) {
    DMPI_REQUIRE(v == 1, "the zero-bubble schedule runs one chunk per stage");
    const int w = std::min(S - s - 1, M), d = s;  // warm-up forwards; W deferred by d micro-batches
    int next_w = 0;
    for (int i = 0; i < w; ++i) out.push_back({PipeCmd::F, 0, i});
    for (int i = 0; i < M; ++i) {
      if (i < M - w) out.push_back({PipeCmd::F, 0, w + i});
      out.push_back({PipeCmd::B, 0, i});
      if (i - d >= 0) out.push_back({PipeCmd::W, 0, next_w++});
    }
    while (next_w < M) out.push_back({PipeCmd::W, 0, next_w++});
    return out;
  }
  DMPI_REQUIRE(M % S == 0, "the interleaved schedule needs the micro-batches per step (" << M
                               << ") to be a multiple of --pipeline-model-parallel-size " << S
                               << " (Megatron's rule): change gradient_accumulation_steps");
  const int N = M * v;
  auto chunk_of = [&](int k) { return (k % (S * v)) / S; };
  auto micro_of = [&](int k) { return (k / (S * v)) * S + k % S; };
  const int warm = std::min((S - s - 1) * 2 + (v - 1) * S, N);
  int fk = 0, bk = 0;
  for (; fk < warm; ++fk) out.push_back({PipeCmd::F, chunk_of(fk), micro_of(fk)});
  while (fk < N) {
    out.push_back({PipeCmd::F, chunk_of(fk), micro_of(fk)});
    ++fk;
    out.push_back({PipeCmd::B, v - 1 - chunk_of(bk), micro_of(bk)});
    ++bk;
  }
  for (; bk < N; ++bk) out.push_back({PipeCmd::B, v - 1 - chunk_of(bk), micro_of(bk)});
  return out;
}

double analytic_bubble(PipeSchedule kind, int S, int M, int v) {
  switch (kind) {
    case PipeSchedule::OneFOneB: return static_cast<double>(S - 1) / (M + S - 1);
    case PipeSchedule::Interleaved: return static_cast<double>(S - 1) / (static_cast<double>(v) * M + S - 1);
    case PipeSchedule::ZeroBubble: return static_cast<double>(S - 1) / (3.0 * M + S - 1);
  }
  return 0;
}

double simulate_pipeline(const std::vector<std::vector<PipeCmd>>& orders, int S, int v, double f, double b, double w,
                         bool split) {
  const int K = S * v;
  std::map<std::tuple<int, int, int>, double> done;  // (kind, global chunk, micro) -> end time
  std::vector<size_t> pos(static_cast<size_t>(S), 0);
  std::vector<double> free(static_cast<size_t>(S), 0.0);
  size_t total = 0, n = 0;
  for (const auto& o : orders) total += o.size();
  while (n < total) {
    bool progressed = false;
    for (int s = 0; s < S; ++s) {
      const auto& o = orders[static_cast<size_t>(s)];
      if (pos[static_cast<size_t>(s)] >= o.size()) continue;
      const PipeCmd& c = o[pos[static_cast<size_t>(s)]];
      const int g = c.chunk * S + s;
      std::vector<std::tuple<int, int, int>> deps;
      if (c.kind == PipeCmd::F && g > 0) deps.emplace_back(PipeCmd::F, g - 1, c.micro);
      if (c.kind == PipeCmd::B) {
        deps.emplace_back(PipeCmd::F, g, c.micro);
        if (g < K - 1) deps.emplace_back(PipeCmd::B, g + 1, c.micro);
      }
      if (c.kind == PipeCmd::W) deps.emplace_back(PipeCmd::B, g, c.micro);
      double start = free[static_cast<size_t>(s)];
      bool ready = true;
      for (const auto& d : deps) {
        auto it = done.find(d);
        if (it == done.end()) {
          ready = false;
          break;
        }
        start = std::max(start, it->second);
      }
      if (!ready) continue;
      const double dur = c.kind == PipeCmd::F ? f : c.kind == PipeCmd::W ? w : split ? b : b + w;
      done[{c.kind, g, c.micro}] = start + dur;
      free[static_cast<size_t>(s)] = start + dur;
      ++pos[static_cast<size_t>(s)], ++n, progressed = true;
    }
    DMPI_REQUIRE(progressed, "the pipeline orders deadlock");
  }
  return *std::max_element(free.begin(), free.end());
}

namespace {

// The activation slot of each command's (chunk, micro-batch): allocated at its forward, freed
// after its backward (zero-bubble: after its weight gradients). 1F1B: DeepSpeed's buffer
// micro mod buffers (checked free); otherwise the lowest free slot. Returns the slots needed:
// max(2, the most micro-batches in flight per chunk) (two at least: the next receive is posted
// while a micro-batch computes).
int plan_slots(const std::vector<PipeCmd>& order, PipeSchedule kind, int S, int s, int M, int v, std::vector<int>& slot_of,
               std::vector<int>& frees_at) {
  const bool zb = kind == PipeSchedule::ZeroBubble;
  const size_t n = order.size();
  slot_of.assign(n, -1), frees_at.assign(n, -1);
  std::map<std::pair<int, int>, size_t> fwd_at;  // (chunk, micro) -> its forward command
  std::vector<std::set<int>> busy(static_cast<size_t>(v));
  int peak = 0;
  for (size_t i = 0; i < n; ++i) {
    const PipeCmd& c = order[i];
    auto& bs = busy[static_cast<size_t>(c.chunk)];
    if (c.kind == PipeCmd::F) {
      int sl = 0;
      if (kind == PipeSchedule::OneFOneB) {
        sl = c.micro % one_f_one_b_buffers(S, s, M);
        DMPI_REQUIRE(!bs.count(sl), "1F1B buffer " << sl << " of stage " << s << " is still in use at micro-batch " << c.micro);
      } else {
        while (bs.count(sl)) ++sl;
      }
      bs.insert(sl);
      slot_of[i] = sl;
      fwd_at[{c.chunk, c.micro}] = i;
      peak = std::max(peak, static_cast<int>(bs.size()));
    } else {
      const size_t f = fwd_at.at({c.chunk, c.micro});
      slot_of[i] = slot_of[f];
      if (c.kind == PipeCmd::W || !zb) {
        frees_at[f] = static_cast<int>(i);
        bs.erase(slot_of[i]);
      }
    }
  }
  return kind == PipeSchedule::OneFOneB ? one_f_one_b_buffers(S, s, M) : std::max(2, peak);
}

}  // namespace

int pipe_tag(bool grad, int boundary) { return 2 * boundary + (grad ? 1 : 0); }

int pipeline_slots(PipeSchedule kind, int S, int s, int M, int v) {
  std::vector<int> slot_of, frees_at;
  return plan_slots(pipeline_order(kind, S, s, M, v), kind, S, s, M, v, slot_of, frees_at);
}

int pipeline_in_flight(PipeSchedule kind, int S, int s, int M, int v) {
  const auto order = pipeline_order(kind, S, s, M, v);
  const bool zb = kind == PipeSchedule::ZeroBubble;
  std::vector<int> live(static_cast<size_t>(v), 0);
  int peak = 0;
  for (const PipeCmd& c : order) {
    if (c.kind == PipeCmd::F) peak = std::max(peak, ++live[static_cast<size_t>(c.chunk)]);
    else if (c.kind == PipeCmd::W || !zb) --live[static_cast<size_t>(c.chunk)];
  }
  return peak;
}

Schedule pipeline_schedule(const PipelineSpec& p) {
  const ScheduleSpec& b = p.base;
  const int S = p.stages, s = p.stage, v = p.virtual_stages, M = b.micro_batches, K = S * v;
  const int L = static_cast<int>(b.uses.size());
  DMPI_REQUIRE(static_cast<int>(p.chunk_begin.size()) == v, "one chunk start per virtual stage");
  const auto order = pipeline_order(p.kind, S, s, M, v);
  const bool zb = p.kind == PipeSchedule::ZeroBubble;
  auto chunk_end = [&](int k) { return k + 1 < v ? p.chunk_begin[static_cast<size_t>(k) + 1] : L; };
  auto global = [&](int k) { return k * S + s; };
  auto splits = [&](int u) { return zb && !p.splits.empty() && p.splits[static_cast<size_t>(u)]; };
  const size_t n = order.size();
  std::vector<int> slot_of, frees_at;  // per command: its slot; per forward: the command freeing it
  Schedule out;
  out.slots = plan_slots(order, p.kind, S, s, M, v, slot_of, frees_at);
  out.reuse_distance.assign(b.param_numel.size(), -1);
  out.kept.assign(b.param_numel.size(), false);
  std::vector<Instr>& I = out.instrs;
  auto emit = [&](OpKind op, int unit, int micro, int slot = 0) { I.push_back({op, unit, micro, slot, false}); };

  // the receives: an activation for a forward of a chunk that has an input, a gradient for a
  // backward of a chunk that has an output; gradient buffers alternate per chunk
  std::vector<int> grad_recvs(static_cast<size_t>(v), 0), grad_sends(static_cast<size_t>(v), 0);
  std::vector<bool> posted(n, false);
  auto post = [&](size_t i) {
    if (posted[i]) return;
    const PipeCmd& c = order[i];
    const int g = global(c.chunk);
    if (c.kind == PipeCmd::F && g > 0) emit(OpKind::RecvAct, c.chunk, c.micro, slot_of[i]);
    if (c.kind == PipeCmd::B && g < K - 1) emit(OpKind::RecvGrad, c.chunk, c.micro, grad_recvs[static_cast<size_t>(c.chunk)]++ % 2);
    posted[i] = true;
  };
  // can command i's receive be posted before command j runs? (its slot must be free by then)
  auto can_post_before = [&](size_t i, size_t j) {
    const PipeCmd& c = order[i];
    if (c.kind != PipeCmd::F) return c.kind == PipeCmd::B;
    // the slot's previous occupant must have been freed by a command before j
    for (size_t f = 0; f < i; ++f)
      if (order[f].kind == PipeCmd::F && order[f].chunk == c.chunk && slot_of[f] == slot_of[i] && frees_at[f] >= static_cast<int>(j))
        return false;
    return true;
  };
  auto compute_ops = [&](const std::vector<Compute>& seq, int micro, int slot, bool weight_half) {
    std::set<int> live;
    for (size_t k = 0; k < seq.size(); ++k) {
      const Compute& c = seq[k];
      const auto& uses = b.uses[static_cast<size_t>(c.unit)];
      if (b.materialize)
        for (int u : uses)
          if (!live.count(u)) emit(OpKind::Gather, u, micro), live.insert(u);
      OpKind op = c.op;
      if (weight_half) op = OpKind::BackwardWeight;
      else if (op == OpKind::Backward && splits(c.unit)) op = OpKind::BackwardInput;
      emit(op, c.unit, micro, slot);
      if (b.materialize)
        for (int u : uses) {
          bool later = false;
          for (size_t j = k + 1; j < seq.size() && !later; ++j)
            later = std::find(b.uses[static_cast<size_t>(seq[j].unit)].begin(), b.uses[static_cast<size_t>(seq[j].unit)].end(), u) !=
                    b.uses[static_cast<size_t>(seq[j].unit)].end();
          if (!later && live.count(u)) emit(OpKind::Release, u, micro), live.erase(u);
        }
    }
  };

  emit(OpKind::BeginStep, -1, -1);
  for (size_t i = 0; i < n; ++i) {
    const PipeCmd& c = order[i];
    const int a = p.chunk_begin[static_cast<size_t>(c.chunk)], e = chunk_end(c.chunk), g = global(c.chunk);
    post(i);
    if (i + 1 < n && can_post_before(i + 1, i)) post(i + 1);  // one command ahead: double buffering
    int nf = 0;
    const std::vector<Compute> seq = compute_sequence(b, nf, a, e);
    if (c.kind == PipeCmd::F) {
      const bool needs_batch = (p.embedding_unit >= a && p.embedding_unit < e) || (p.head_unit >= a && p.head_unit < e);
      if (needs_batch) emit(OpKind::Load, c.chunk, c.micro, slot_of[i]);
      compute_ops(std::vector<Compute>(seq.begin(), seq.begin() + nf), c.micro, slot_of[i], false);
      if (g < K - 1) emit(OpKind::SendAct, c.chunk, c.micro, slot_of[i]);
    } else if (c.kind == PipeCmd::B) {
      compute_ops(std::vector<Compute>(seq.begin() + nf, seq.end()), c.micro, slot_of[i], false);
      if (g > 0) emit(OpKind::SendGrad, c.chunk, c.micro, grad_sends[static_cast<size_t>(c.chunk)]++ % 2);
      if (!zb) emit(OpKind::EndMicro, c.chunk, c.micro, slot_of[i]);
    } else {
      std::vector<Compute> w;
      for (int u = e - 1; u >= a; --u)
        if (splits(u)) w.push_back({OpKind::BackwardWeight, u});
      compute_ops(w, c.micro, slot_of[i], true);
      emit(OpKind::EndMicro, c.chunk, c.micro, slot_of[i]);
    }
  }
  // gradients: acquired before a param unit's first backward op of the step, reduced after its last
  if (b.unit_grads) {
    const int P = static_cast<int>(b.param_numel.size());
    std::vector<int> first(static_cast<size_t>(P), -1), last(static_cast<size_t>(P), -1);
    for (int k = 0; k < static_cast<int>(I.size()); ++k) {
      const OpKind op = I[static_cast<size_t>(k)].op;
      if (op != OpKind::Backward && op != OpKind::BackwardInput && op != OpKind::BackwardWeight) continue;
      for (int u : b.uses[static_cast<size_t>(I[static_cast<size_t>(k)].unit)]) {
        if (first[static_cast<size_t>(u)] < 0) first[static_cast<size_t>(u)] = k;
        last[static_cast<size_t>(u)] = k;
      }
    }
    std::vector<Instr> with;
    for (int k = 0; k < static_cast<int>(I.size()); ++k) {
      for (int u = 0; u < P; ++u)
        if (first[static_cast<size_t>(u)] == k) with.push_back({OpKind::AcquireGrads, u, -1, 0, false});
      with.push_back(I[static_cast<size_t>(k)]);
      for (int u = 0; u < P; ++u)
        if (last[static_cast<size_t>(u)] == k) with.push_back({OpKind::ReduceGrads, u, -1, 0, false});
    }
    I = std::move(with);
  }
  emit(OpKind::Step, -1, -1);
  return out;
}

std::string check_pipeline_messages(const std::vector<Schedule>& stages, int S, int v) {
  const int K = S * v;
  // (src stage, dst stage, tag) -> micro-batches in order
  std::map<std::tuple<int, int, int>, std::vector<int>> sent, received;
  for (int s = 0; s < S; ++s)
    for (const Instr& in : stages[static_cast<size_t>(s)].instrs) {
      const int g = in.unit * S + s;
      switch (in.op) {
        case OpKind::SendAct:
          if (g >= K - 1) return "stage " + std::to_string(s) + " sends the last chunk's output";
          sent[{s, (g + 1) % S, pipe_tag(false, g)}].push_back(in.micro);
          break;
        case OpKind::RecvAct:
          if (g == 0) return "stage 0 receives the first chunk's input";
          received[{(g - 1) % S, s, pipe_tag(false, g - 1)}].push_back(in.micro);
          break;
        case OpKind::SendGrad:
          if (g == 0) return "stage 0 sends the gradient of the first chunk's input";
          sent[{s, (g - 1) % S, pipe_tag(true, g - 1)}].push_back(in.micro);
          break;
        case OpKind::RecvGrad:
          if (g >= K - 1) return "stage " + std::to_string(s) + " receives a gradient for the last chunk";
          received[{(g + 1) % S, s, pipe_tag(true, g)}].push_back(in.micro);
          break;
        default: break;
      }
    }
  for (const auto& [key, micros] : sent) {
    auto it = received.find(key);
    const auto [src, dst, tag] = key;
    const std::string what = "stage " + std::to_string(src) + " -> " + std::to_string(dst) + " tag " + std::to_string(tag);
    if (it == received.end()) return what + ": sent, never received";
    if (it->second != micros) return what + ": the receives do not match the sends in order";
  }
  for (const auto& [key, micros] : received)
    if (!sent.count(key)) return "stage " + std::to_string(std::get<1>(key)) + " receives what no stage sends";
  return "";
}

}  // namespace dmpi::engine
