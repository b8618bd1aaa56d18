// Pipeline parallelism without MPI (src/engine/pipeline.hpp): the partition methods, DeepSpeed's
// 1F1B table, the interleaved and zero-bubble orders (golden lists, and the properties every
// order must have), the bubbles they allow against the closed forms, and the lowered instruction
// lists: every send has its receive, slots, gradients acquired and reduced once per step.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "src/engine/layout.hpp"
#include "src/engine/pipeline.hpp"
#include "src/engine/schedule.hpp"
#include "src/model/model.hpp"

using namespace dmpi;
using namespace dmpi::engine;

namespace {

std::string joined(const std::vector<PipeCmd>& v) {
  std::string s;
  for (const auto& c : v) s += (s.empty() ? "" : " ") + to_string(c);
  return s;
}

model::ModelConfig small_model(int layers, bool tied = true) {
  model::ModelConfig c = model::preset("tiny");
  c.num_layers = layers;
  c.tie_embeddings = tied;
  return c;
}

// The 1F1B order written independently of DeepSpeed's step formulas: S - s - 1 warm-up
// forwards, then one forward and one backward, then the remaining backwards.
std::vector<PipeCmd> warmup_steady_cooldown(int S, int s, int M) {
  std::vector<PipeCmd> v;
  const int w = std::min(S - s - 1, M);
  for (int i = 0; i < w; ++i) v.push_back({PipeCmd::F, 0, i});
  for (int i = 0; i < M - w; ++i) v.push_back({PipeCmd::F, 0, w + i}), v.push_back({PipeCmd::B, 0, i});
  for (int i = M - w; i < M; ++i) v.push_back({PipeCmd::B, 0, i});
  return v;
}

}  // namespace

TEST(PipelineSchedule, OneFOneBGolden) {
  // hand-evaluated from DeepSpeed's TrainSchedule formulas
  EXPECT_EQ(joined(pipeline_order(PipeSchedule::OneFOneB, 2, 0, 4)), "F0 F1 B0 F2 B1 F3 B2 B3");
  EXPECT_EQ(joined(pipeline_order(PipeSchedule::OneFOneB, 2, 1, 4)), "F0 B0 F1 B1 F2 B2 F3 B3");
  EXPECT_EQ(joined(pipeline_order(PipeSchedule::OneFOneB, 4, 0, 4)), "F0 F1 F2 F3 B0 B1 B2 B3");
  const auto t = one_f_one_b_steps(2, 1, 4);
  ASSERT_EQ(t.size(), 10u);  // 2 (M + S - 1)
  EXPECT_EQ(t[0].forward, -1);
  EXPECT_EQ(t[0].backward, -1);  // stage 1 waits at step 0
  EXPECT_EQ(t[1].forward, 0);
  EXPECT_EQ(t[2].backward, 0);
  EXPECT_EQ(t[9].forward, -1);  // micro-batch 4 does not exist
  EXPECT_EQ(one_f_one_b_buffers(4, 0, 8), 4);
  EXPECT_EQ(one_f_one_b_buffers(4, 3, 8), 2);
  EXPECT_EQ(one_f_one_b_buffers(4, 0, 1), 2);
}

TEST(PipelineSchedule, OneFOneBEqualsWarmupSteadyCooldown) {
  for (int S = 1; S <= 5; ++S)
    for (int M = 1; M <= 9; ++M)
      for (int s = 0; s < S; ++s) {
        ASSERT_EQ(one_f_one_b_steps(S, s, M).size(), static_cast<size_t>(2 * (M + S - 1)));
        EXPECT_EQ(joined(pipeline_order(PipeSchedule::OneFOneB, S, s, M)), joined(warmup_steady_cooldown(S, s, M)))
            << "S " << S << " s " << s << " M " << M;
        // in flight: min(S - s, M) (DeepSpeed's buffer count without its floor of two)
        EXPECT_EQ(pipeline_in_flight(PipeSchedule::OneFOneB, S, s, M), std::min(S - s, M));
        EXPECT_EQ(pipeline_slots(PipeSchedule::OneFOneB, S, s, M), std::max(2, std::min(S - s, M)));
      }
}

TEST(PipelineSchedule, InterleavedGolden) {
  // Megatron's order, S = 2, v = 2, M = 4, stage 0: warm-up (2 - 0 - 1) 2 + (2 - 1) 2 = 4 chunk forwards
  EXPECT_EQ(joined(pipeline_order(PipeSchedule::Interleaved, 2, 0, 4, 2)),
            "F0 F1 F1.0 F1.1 F2 B1.0 F3 B1.1 F1.2 B0 F1.3 B1 B1.2 B1.3 B2 B3");
  EXPECT_THROW(pipeline_order(PipeSchedule::Interleaved, 4, 0, 6, 2), Error);  // M not a multiple of S
}

TEST(PipelineSchedule, ZeroBubbleGolden) {
  // ZB-H1, S = 2: stage s defers its W by s micro-batches (stage 1 by one)
  EXPECT_EQ(joined(pipeline_order(PipeSchedule::ZeroBubble, 2, 0, 3)), "F0 F1 B0 W0 F2 B1 W1 B2 W2");
  EXPECT_EQ(joined(pipeline_order(PipeSchedule::ZeroBubble, 2, 1, 3)), "F0 B0 F1 B1 W0 F2 B2 W1 W2");
}

// Every order: each (chunk, micro) forward once, its backward once after it (and W after B),
// chunk forwards in micro-batch order, and no deadlock.
TEST(PipelineSchedule, EveryOrderIsComplete) {
  for (auto kind : {PipeSchedule::OneFOneB, PipeSchedule::Interleaved, PipeSchedule::ZeroBubble})
    for (int S : {1, 2, 3, 4})
      for (int M : {1, 2, 4, 8, 12}) {
        const int v = kind == PipeSchedule::Interleaved ? 2 : 1;
        if (kind == PipeSchedule::Interleaved && M % S) continue;
        std::vector<std::vector<PipeCmd>> orders;
        for (int s = 0; s < S; ++s) {
          const auto o = pipeline_order(kind, S, s, M, v);
          std::map<std::tuple<int, int, int>, int> at;
          for (int i = 0; i < static_cast<int>(o.size()); ++i) {
            EXPECT_TRUE(at.emplace(std::make_tuple(int(o[static_cast<size_t>(i)].kind), o[static_cast<size_t>(i)].chunk, o[static_cast<size_t>(i)].micro), i).second);
          }
          const size_t per = kind == PipeSchedule::ZeroBubble ? 3 : 2;
          EXPECT_EQ(o.size(), per * static_cast<size_t>(M) * v);
          auto pos = [&](int kd, int k, int m) {
            auto it = at.find(std::make_tuple(kd, k, m));
            return it == at.end() ? -1 : it->second;
          };
          for (int k = 0; k < v; ++k)
            for (int m = 0; m < M; ++m) {
              ASSERT_GE(pos(PipeCmd::F, k, m), 0);
              EXPECT_LT(pos(PipeCmd::F, k, m), pos(PipeCmd::B, k, m));
              if (m > 0) {
                EXPECT_LT(pos(PipeCmd::F, k, m - 1), pos(PipeCmd::F, k, m));
              }
              if (kind == PipeSchedule::ZeroBubble) {
                EXPECT_LT(pos(PipeCmd::B, k, m), pos(PipeCmd::W, k, m));
              }
            }
          orders.push_back(o);
        }
        EXPECT_NO_THROW(simulate_pipeline(orders, S, v, 1, 1, 1, kind == PipeSchedule::ZeroBubble));
      }
}

// The bubble each order allows with fixed costs equals its closed form: 1F1B (S-1)/(M+S-1),
// interleaved (S-1)/(vM+S-1) (chunk costs 1/v of a stage's), ZB-H1 with F = B = W
// (S-1)/(3M+S-1), below 1F1B's; and ZB-H1 keeps stage 0's S micro-batches in flight as 1F1B does.
TEST(PipelineSchedule, BubblesMatchTheClosedForms) {
  for (int S : {2, 4})
    for (int M : {4, 8, 16}) {
      auto orders = [&](PipeSchedule k, int v) {
        std::vector<std::vector<PipeCmd>> o;
        for (int s = 0; s < S; ++s) o.push_back(pipeline_order(k, S, s, M, v));
        return o;
      };
      auto bubble = [&](double makespan, double work) { return (makespan - work) / makespan; };
      const double b1 = bubble(simulate_pipeline(orders(PipeSchedule::OneFOneB, 1), S, 1, 1, 2, 0, false), 3.0 * M);
      EXPECT_NEAR(b1, analytic_bubble(PipeSchedule::OneFOneB, S, M), 1e-12) << S << " " << M;
      const double bi = bubble(simulate_pipeline(orders(PipeSchedule::Interleaved, 2), S, 2, 0.5, 1.0, 0, false), 3.0 * M);
      EXPECT_NEAR(bi, analytic_bubble(PipeSchedule::Interleaved, S, M, 2), 1e-12) << S << " " << M;
      const double bz = bubble(simulate_pipeline(orders(PipeSchedule::ZeroBubble, 1), S, 1, 1, 1, 1, true), 3.0 * M);
      EXPECT_NEAR(bz, analytic_bubble(PipeSchedule::ZeroBubble, S, M), 1e-12) << S << " " << M;
      EXPECT_LT(bz, b1);
      EXPECT_EQ(pipeline_in_flight(PipeSchedule::ZeroBubble, S, 0, M), pipeline_in_flight(PipeSchedule::OneFOneB, S, 0, M));
      for (int s = 0; s < S; ++s) EXPECT_LE(pipeline_in_flight(PipeSchedule::ZeroBubble, S, s, M), S);
    }
}

TEST(PipelinePartition, Methods) {
  const model::ModelConfig c = small_model(8);
  PartitionOptions o;
  o.stages = 4;
  o.method = "uniform";
  Partition u = partition_model(c, o);
  ASSERT_EQ(u.num_chunks(), 4);
  EXPECT_EQ(u.chunks[0], std::make_pair(0, 3));   // embedding + 2 blocks
  EXPECT_EQ(u.chunks[1], std::make_pair(3, 5));
  EXPECT_EQ(u.chunks[3], std::make_pair(7, 11));  // 2 blocks + final norm + head
  o.method = "type:BLOCK";  // case-insensitive, counts blocks only: the same as uniform here
  EXPECT_EQ(partition_model(c, o).chunks, u.chunks);
  o.method = "type:nothing";
  EXPECT_THROW(partition_model(c, o), Error);
  o.method = "best";
  EXPECT_THROW(partition_model(c, o), Error);
  o.method = "uniform";
  o.stages = 9;  // 8 layers, 9 stages
  try {
    partition_model(c, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer stages"), std::string::npos) << e.what();
  }
  // Megatron's uneven ends: 1 layer first, 1 last, the other 6 over 2 middle stages
  o.stages = 4, o.first_layers = 1, o.last_layers = 1;
  const Partition un = partition_model(c, o);
  EXPECT_EQ(un.chunks[0], std::make_pair(0, 2));
  EXPECT_EQ(un.chunks[1], std::make_pair(2, 5));
  EXPECT_EQ(un.chunks[3], std::make_pair(8, 11));
  o.first_layers = 7;
  EXPECT_THROW(partition_model(c, o), Error);  // nothing left for the middle stages
}

// partition_method parameters: the largest stage is the least any contiguous split can have
// (checked against every split), the embedding's and head's parameters (with the tied copy)
// counted on their stages.
TEST(PipelinePartition, ParametersIsTheBestSplit) {
  model::ModelConfig c = model::preset("gpt2-124m");
  for (int S : {2, 3}) {
    PartitionOptions o;
    o.stages = S;
    const Partition p = partition_model(c, o);
    const model::Model<float> m(c);
    auto params = [&](int u) {
      int64_t n = 0;
      for (const auto& s : m.unit(u).params()) n += static_cast<int64_t>(s.logical_numel);
      return n;
    };
    const int L = c.num_layers;
    const int64_t e0 = params(0), eL = params(L + 1) + params(L + 2) + m.spec(0).logical_numel;
    int64_t best = -1;
    // every split of L blocks into S non-empty contiguous parts
    std::vector<int> cut(static_cast<size_t>(S) - 1);
    std::function<void(int, int)> rec = [&](int k, int from) {
      if (k == S - 1) {
        int64_t worst = 0;
        int a = 0;
        for (int s = 0; s < S; ++s) {
          const int b = s < S - 1 ? cut[static_cast<size_t>(s)] : L;
          int64_t w = (s == 0 ? e0 : 0) + (s == S - 1 ? eL : 0);
          for (int l = a; l < b; ++l) w += params(1 + l);
          worst = std::max(worst, w);
          a = b;
        }
        if (best < 0 || worst < best) best = worst;
        return;
      }
      for (int x = from; x <= L - (S - 1 - k); ++x) cut[static_cast<size_t>(k)] = x, rec(k + 1, x + 1);
    };
    rec(0, 1);
    EXPECT_EQ(*std::max_element(p.weights.begin(), p.weights.end()), best) << S;
    int64_t total = 0;
    for (auto w : p.weights) total += w;
    EXPECT_EQ(total, static_cast<int64_t>(m.real_params()) + m.spec(0).logical_numel);  // + the tied copy
  }
}

// A stage's part of the model: the last stage of a tied model owns a copy of the table, initialised
// as the whole model's tensor 0; every other tensor keeps its whole-model stream.
TEST(PipelinePartition, StageModelsAndTheTiedCopy) {
  const model::ModelConfig c = small_model(4);
  PartitionOptions o;
  o.stages = 2;
  o.method = "uniform";
  const Partition p = partition_model(c, o);
  const model::Model<float> whole(c), first(c, p.units_of(0)), last(c, p.units_of(1));
  EXPECT_EQ(first.num_units() + last.num_units(), whole.num_units());
  const int copy = last.find_tensor("wte");
  ASSERT_GE(copy, 0);
  EXPECT_TRUE(last.spec(copy).tied_copy);
  EXPECT_EQ(last.global_tensor(copy), 0);
  EXPECT_EQ(std::string(last.unit(last.num_units() - 1).kind()), "lm_head");
  EXPECT_EQ(last.unit(last.num_units() - 1).uses()[0].unit, last.num_units() - 1);  // its own parameter
  const size_t n = whole.spec(0).numel;
  std::vector<float> a(n), b(n);
  whole.init_tensor(7, 0, 0, n, a.data());
  last.init_tensor(7, copy, 0, n, b.data());
  EXPECT_EQ(a, b);
  // every tensor of the stages is the whole model's tensor of the same name, drawn the same
  for (const auto* part : {&first, &last})
    for (int t = 0; t < part->num_tensors(); ++t) {
      const int g = part->global_tensor(t);
      EXPECT_EQ(part->spec(t).name, whole.spec(g).name);
      const size_t k = std::min<size_t>(part->spec(t).numel, 64);
      std::vector<float> x(k), y(k);
      part->init_tensor(3, t, 0, k, x.data());
      whole.init_tensor(3, g, 0, k, y.data());
      EXPECT_EQ(x, y) << part->spec(t).name;
    }
  // untied: no copy
  const model::ModelConfig u = small_model(4, false);
  const model::Model<float> ulast(u, partition_model(u, o).units_of(1));
  EXPECT_EQ(ulast.find_tensor("wte"), -1);
}

namespace {
// Every stage's lowered list for a model, a schedule and a parameter policy.
std::vector<Schedule> lowered(const model::ModelConfig& c, int S, int v, int M, PipeSchedule kind, bool unit_grads,
                              bool materialize) {
  PartitionOptions o;
  o.stages = S, o.virtual_stages = v, o.method = "uniform";
  const Partition p = partition_model(c, o);
  std::vector<Schedule> out;
  for (int s = 0; s < S; ++s) {
    const model::Model<float> m(c, p.units_of(s));
    const Layout L(m, 1, 0, false);
    std::vector<int> pu;
    for (int u = 0; u < m.num_units(); ++u) pu.push_back(L.unit_of(u));
    PipelineSpec ps;
    ps.base = schedule_spec(m, pu, model::plan_recompute(m, {}, p.chunk_begin(s)), M);
    for (int u = 0; u < L.num_units(); ++u) ps.base.param_numel.push_back(static_cast<int64_t>(L.unit(u).numel));
    ps.base.unit_grads = unit_grads, ps.base.materialize = materialize, ps.base.widen = materialize;
    ps.chunk_begin = p.chunk_begin(s);
    for (int u = 0; u < m.num_units(); ++u) {
      ps.splits.push_back(m.unit(u).splits_backward());
      if (m.global_unit(u) == 0) ps.embedding_unit = u;
      if (std::string(m.unit(u).kind()) == "lm_head") ps.head_unit = u;
    }
    ps.stages = S, ps.stage = s, ps.virtual_stages = v, ps.kind = kind;
    out.push_back(pipeline_schedule(ps));
  }
  return out;
}
}  // namespace

TEST(PipelineSchedule, LoweredListsMatchSendsAndReceives) {
  const model::ModelConfig c = small_model(8);
  for (auto kind : {PipeSchedule::OneFOneB, PipeSchedule::Interleaved, PipeSchedule::ZeroBubble})
    for (int S : {2, 4})
      for (bool unit_grads : {false, true}) {
        const int v = kind == PipeSchedule::Interleaved ? 2 : 1, M = 8;
        const auto lists = lowered(c, S, v, M, kind, unit_grads, unit_grads);
        const std::string what = std::string(pipe_schedule_name(kind)) + " S " + std::to_string(S);
        EXPECT_EQ(check_pipeline_messages(lists, S, v), "") << what;
        for (int s = 0; s < S; ++s) {
          const Schedule& sc = lists[static_cast<size_t>(s)];
          EXPECT_EQ(sc.slots, pipeline_slots(kind, S, s, M, v)) << what;
          std::map<int, int> acquired, reduced;
          std::set<std::pair<int, int>> recv_posted;  // (chunk, slot) with a receive in flight
          int loads = 0, weight = 0;
          for (const Instr& in : sc.instrs) {
            if (in.op == OpKind::AcquireGrads) ++acquired[in.unit];
            if (in.op == OpKind::ReduceGrads) ++reduced[in.unit];
            if (in.op == OpKind::Load) ++loads;
            if (in.op == OpKind::BackwardWeight) ++weight;
            if (in.op == OpKind::RecvAct) EXPECT_TRUE(recv_posted.insert({in.unit, in.slot}).second) << what << " slot reused";
            if (in.op == OpKind::Forward) recv_posted.erase({0, in.slot}), recv_posted.erase({1, in.slot});
            EXPECT_LT(in.slot, sc.slots);
          }
          EXPECT_EQ(sc.instrs.front().op, OpKind::BeginStep);
          EXPECT_EQ(sc.instrs.back().op, OpKind::Step);
          // the stages holding the embedding or the head load each micro-batch once per such chunk
          const bool ends = s == 0 || s == S - 1;
          EXPECT_EQ(loads, ends ? M : 0) << what << " stage " << s;
          if (kind == PipeSchedule::ZeroBubble) EXPECT_GT(weight, 0) << what;
          else EXPECT_EQ(weight, 0) << what;
          for (const auto& [u, n] : acquired) EXPECT_EQ(n, 1) << what << " unit " << u;
          for (const auto& [u, n] : reduced) EXPECT_EQ(n, 1) << what << " unit " << u;
          EXPECT_EQ(acquired.size(), unit_grads ? reduced.size() : 0u);
        }
        // a dropped send is found
        auto broken = lists;
        auto& ins = broken[0].instrs;
        ins.erase(std::find_if(ins.begin(), ins.end(), [](const Instr& i) { return i.op == OpKind::SendAct; }));
        EXPECT_NE(check_pipeline_messages(broken, S, v), "") << what;
      }
}
