#include "src/engine/schedule.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "base/error.hpp"

namespace dmpi::engine {

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::BeginStep: return "BeginStep";
    case OpKind::Load: return "Load";
    case OpKind::Gather: return "Gather";
    case OpKind::Prefetch: return "Prefetch";
    case OpKind::Release: return "Release";
    case OpKind::AcquireGrads: return "AcquireGrads";
    case OpKind::Forward: return "Forward";
    case OpKind::Recompute: return "Recompute";
    case OpKind::Backward: return "Backward";
    case OpKind::ReduceGrads: return "ReduceGrads";
    case OpKind::EndMicro: return "EndMicro";
    case OpKind::Step: return "Step";
    case OpKind::BackwardInput: return "BackwardInput";
    case OpKind::BackwardWeight: return "BackwardWeight";
    case OpKind::RecvAct: return "RecvAct";
    case OpKind::SendAct: return "SendAct";
    case OpKind::RecvGrad: return "RecvGrad";
    case OpKind::SendGrad: return "SendGrad";
  }
  return "?";
}

std::string to_string(const Instr& i) {
  std::ostringstream os;
  os << op_name(i.op) << "(";
  switch (i.op) {
    case OpKind::BeginStep:
    case OpKind::Step: break;
    case OpKind::Load: os << "mb" << i.micro << ", slot " << i.slot; break;
    case OpKind::EndMicro: os << "mb" << i.micro; break;
    case OpKind::Forward:
    case OpKind::Recompute:
    case OpKind::Backward:
    case OpKind::BackwardInput:
    case OpKind::BackwardWeight: os << "m" << i.unit << ", mb" << i.micro; break;
    case OpKind::RecvAct:
    case OpKind::SendAct:
    case OpKind::RecvGrad:
    case OpKind::SendGrad: os << "c" << i.unit << ", mb" << i.micro << ", slot " << i.slot; break;
    case OpKind::Release: os << "u" << i.unit << (i.keep ? ", keep" : ""); break;
    default: os << "u" << i.unit; break;
  }
  os << ")";
  return os.str();
}

std::vector<Compute> compute_sequence(const ScheduleSpec& s, int& forward_count, int begin, int end) {
  const int n = end < 0 ? static_cast<int>(s.uses.size()) : end;
  std::vector<Compute> seq;
  for (int m = begin; m < n; ++m) seq.push_back({OpKind::Forward, m});
  forward_count = n - begin;
  auto chunk = [&](int m) { return s.recompute.empty() ? -1 : s.recompute[static_cast<size_t>(m)].chunk; };
  for (int m = n - 1; m >= begin; --m) {
    const int c = chunk(m);
    if (c >= 0 && (m + 1 >= n || chunk(m + 1) != c)) {
      int first = m;
      while (first > begin && chunk(first - 1) == c) --first;
      for (int r = first; r <= m; ++r) seq.push_back({OpKind::Recompute, r});
    }
    seq.push_back({OpKind::Backward, m});
  }
  return seq;
}

Schedule train_schedule(const ScheduleSpec& s) {
  DMPI_REQUIRE(s.micro_batches >= 1, "at least one micro-batch");
  const int P = static_cast<int>(s.param_numel.size());
  auto persistent = [&](int u) { return !s.persistent.empty() && s.persistent[static_cast<size_t>(u)]; };
  int nf = 0;
  const std::vector<Compute> seq = compute_sequence(s, nf);
  const int len = static_cast<int>(seq.size());
  auto uses = [&](int k) -> const std::vector<int>& { return s.uses[static_cast<size_t>(seq[static_cast<size_t>(k)].unit)]; };
  auto uses_unit = [&](int k, int u) {
    const auto& v = uses(k);
    return std::find(v.begin(), v.end(), u) != v.end();
  };
  // first and last use of each param unit in the forward phase [0, nf) and the backward phase [nf, len)
  std::vector<int> fwd_first(P, -1), fwd_last(P, -1), bwd_first(P, -1), bwd_last(P, -1);
  for (int k = 0; k < len; ++k)
    for (int u : uses(k)) {
      auto& first = k < nf ? fwd_first : bwd_first;
      auto& last = k < nf ? fwd_last : bwd_last;
      if (first[static_cast<size_t>(u)] < 0) first[static_cast<size_t>(u)] = k;
      last[static_cast<size_t>(u)] = k;
    }

  Schedule out;
  out.reuse_distance.assign(static_cast<size_t>(P), -1);
  out.kept.assign(static_cast<size_t>(P), false);
  if (s.materialize && s.gathered) {
    // Keep at the forward/backward turn: decided from the latest release back, so a unit's
    // distance counts the re-gathers of the units after it that are not kept.
    std::vector<int> order;
    for (int u = 0; u < P; ++u)
      if (!persistent(u) && fwd_last[static_cast<size_t>(u)] >= 0 && bwd_first[static_cast<size_t>(u)] >= 0) order.push_back(u);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return fwd_last[static_cast<size_t>(a)] > fwd_last[static_cast<size_t>(b)]; });
    std::vector<bool> decided(static_cast<size_t>(P), false);
    for (int u : order) {
      int64_t d = 0;
      for (int v = 0; v < P; ++v) {
        if (v == u || persistent(v)) continue;
        const int64_t n = s.param_numel[static_cast<size_t>(v)];
        if (fwd_first[static_cast<size_t>(v)] > fwd_last[static_cast<size_t>(u)]) d += n;  // gathered in the forward after u's release
        if (bwd_first[static_cast<size_t>(v)] >= 0 && bwd_first[static_cast<size_t>(v)] < bwd_first[static_cast<size_t>(u)] &&
            !(decided[static_cast<size_t>(v)] && out.kept[static_cast<size_t>(v)]))
          d += n;  // gathered again in the backward before u is needed
      }
      out.reuse_distance[static_cast<size_t>(u)] = d;
      out.kept[static_cast<size_t>(u)] = d <= s.max_reuse_distance;
      decided[static_cast<size_t>(u)] = true;
    }
  }

  auto emit = [&](OpKind op, int unit, int micro, bool keep = false) { out.instrs.push_back({op, unit, micro, 0, keep}); };
  emit(OpKind::BeginStep, -1, -1);
  for (int mb = 0; mb < s.micro_batches; ++mb) {
    emit(OpKind::Load, -1, mb);
    std::set<int> live;  // param units usable now (materialised)
    for (int k = 0; k < len; ++k) {
      const Compute& c = seq[static_cast<size_t>(k)];
      const bool fwd = k < nf;
      for (int u : uses(k)) {
        if (!fwd && s.unit_grads && bwd_first[static_cast<size_t>(u)] == k) emit(OpKind::AcquireGrads, u, mb);
        if (!s.materialize || live.count(u) || (persistent(u) && s.gathered && !s.widen)) continue;
        emit(OpKind::Gather, u, mb);
        live.insert(u);
        if (!s.gathered) continue;
        // prefetch the next param unit this micro-batch uses that is not usable yet
        int next = -1;
        for (int j = k + 1; j < len && next < 0; ++j)
          for (int v : uses(j))
            if (v != u && !(uses_unit(k, v))) {
              next = v;
              break;
            }
        if (next >= 0 && !live.count(next) && !persistent(next)) emit(OpKind::Prefetch, next, mb);
      }
      emit(c.op, c.unit, mb);
      for (int u : uses(k)) {
        const bool last = fwd ? fwd_last[static_cast<size_t>(u)] == k : bwd_last[static_cast<size_t>(u)] == k;
        if (!last) continue;
        if (s.materialize && live.count(u)) {
          const bool keep = fwd && s.gathered && out.kept[static_cast<size_t>(u)];
          emit(OpKind::Release, u, mb, keep);
          live.erase(u);
        }
        if (!fwd && s.unit_grads) emit(OpKind::ReduceGrads, u, mb);
      }
    }
    emit(OpKind::EndMicro, -1, mb);
  }
  emit(OpKind::Step, -1, -1);
  return out;
}

ScheduleSpec schedule_spec(const model::Model<float>& m, const std::vector<int>& param_unit_of,
                           const std::vector<model::UnitPlan>& recompute, int micro_batches) {
  ScheduleSpec s;
  s.micro_batches = micro_batches;
  s.recompute = recompute;
  for (int mu = 0; mu < m.num_units(); ++mu) {
    std::vector<int> u;
    for (const auto& use : m.unit(mu).uses()) {
      const int pu = param_unit_of[static_cast<size_t>(use.unit)];
      DMPI_REQUIRE(pu >= 0, "unit " << mu << " reads a parameter of unit " << use.unit << ", which owns none");
      if (std::find(u.begin(), u.end(), pu) == u.end()) u.push_back(pu);
    }
    s.uses.push_back(std::move(u));
  }
  return s;
}

}  // namespace dmpi::engine
