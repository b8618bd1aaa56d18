// The step as data: the instruction lists of train_schedule, golden-tested without MPI, and the
// Layout's offset arithmetic against closed forms.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "src/engine/layout.hpp"
#include "src/engine/schedule.hpp"

using namespace dmpi;
using namespace dmpi::engine;

namespace {

// A GPT-like unit list: embedding (param unit 0), blocks (1..L), final norm (L+1), the tied head
// reading the embedding's table (param unit 0).
ScheduleSpec gpt_like(int L, int gas, std::vector<int64_t> numel) {
  ScheduleSpec s;
  s.micro_batches = gas;
  s.uses.push_back({0});
  for (int l = 1; l <= L; ++l) s.uses.push_back({l});
  s.uses.push_back({L + 1});
  s.uses.push_back({0});
  s.param_numel = std::move(numel);
  return s;
}

std::string listing(const Schedule& s) {
  std::string out;
  for (const auto& i : s.instrs) out += to_string(i) + " ";
  return out;
}

}  // namespace

TEST(Schedule, Stage0AccumulatesEveryMicroBatchThenSteps) {
  const Schedule s = train_schedule(gpt_like(1, 2, {100, 300, 10}));
  EXPECT_EQ(listing(s),
            "BeginStep() "
            "Load(mb0, slot 0) Forward(m0, mb0) Forward(m1, mb0) Forward(m2, mb0) Forward(m3, mb0) "
            "Backward(m3, mb0) Backward(m2, mb0) Backward(m1, mb0) Backward(m0, mb0) EndMicro(mb0) "
            "Load(mb1, slot 0) Forward(m0, mb1) Forward(m1, mb1) Forward(m2, mb1) Forward(m3, mb1) "
            "Backward(m3, mb1) Backward(m2, mb1) Backward(m1, mb1) Backward(m0, mb1) EndMicro(mb1) "
            "Step() ");
  EXPECT_EQ(s.slots, 1);
}

TEST(Schedule, UnitGradientsAreAcquiredAtTheFirstAndReducedAfterTheLastBackwardUse) {
  ScheduleSpec sp = gpt_like(1, 1, {100, 300, 10});
  sp.unit_grads = true;  // ZeRO-2
  EXPECT_EQ(listing(train_schedule(sp)),
            "BeginStep() Load(mb0, slot 0) Forward(m0, mb0) Forward(m1, mb0) Forward(m2, mb0) Forward(m3, mb0) "
            "AcquireGrads(u0) Backward(m3, mb0) AcquireGrads(u2) Backward(m2, mb0) ReduceGrads(u2) "
            "AcquireGrads(u1) Backward(m1, mb0) ReduceGrads(u1) Backward(m0, mb0) ReduceGrads(u0) EndMicro(mb0) Step() ");
}

// 16-bit parameters at rest without ZeRO-3: widened before each use, dropped after the last one of
// each phase; no all-gathers, so no prefetch and no keeping.
TEST(Schedule, SixteenBitWorkingCopiesLiveFromFirstToLastUseOfEachPhase) {
  ScheduleSpec sp = gpt_like(1, 1, {100, 300, 10});
  sp.materialize = sp.unit_grads = sp.widen = true;
  EXPECT_EQ(listing(train_schedule(sp)),
            "BeginStep() Load(mb0, slot 0) Gather(u0) Forward(m0, mb0) Gather(u1) Forward(m1, mb0) Release(u1) "
            "Gather(u2) Forward(m2, mb0) Release(u2) Forward(m3, mb0) Release(u0) "
            "AcquireGrads(u0) Gather(u0) Backward(m3, mb0) AcquireGrads(u2) Gather(u2) Backward(m2, mb0) Release(u2) "
            "ReduceGrads(u2) AcquireGrads(u1) Gather(u1) Backward(m1, mb0) Release(u1) ReduceGrads(u1) "
            "Backward(m0, mb0) Release(u0) ReduceGrads(u0) EndMicro(mb0) Step() ");
}

// ZeRO-3: every Gather is followed by a prefetch of the next unit the list needs that is not
// gathered yet; at max_reuse_distance 0 only the units with nothing gathered between their
// forward release and their backward are kept at the turn (the embedding, used last by the head
// and first by its backward; the final norm).
TEST(Schedule, Stage3PrefetchesTheNextUnitAndKeepsUnitsByReuseDistance) {
  ScheduleSpec sp = gpt_like(2, 1, {100, 300, 300, 10});
  sp.materialize = sp.gathered = sp.unit_grads = true;
  sp.max_reuse_distance = 0;
  const Schedule s = train_schedule(sp);
  EXPECT_EQ(listing(s),
            "BeginStep() Load(mb0, slot 0) Gather(u0) Prefetch(u1) Forward(m0, mb0) Gather(u1) Prefetch(u2) "
            "Forward(m1, mb0) Release(u1) Gather(u2) Prefetch(u3) Forward(m2, mb0) Release(u2) Gather(u3) "
            "Forward(m3, mb0) Release(u3, keep) Forward(m4, mb0) Release(u0, keep) "
            "AcquireGrads(u0) Gather(u0) Prefetch(u3) Backward(m4, mb0) AcquireGrads(u3) Gather(u3) Prefetch(u2) "
            "Backward(m3, mb0) Release(u3) ReduceGrads(u3) AcquireGrads(u2) Gather(u2) Prefetch(u1) Backward(m2, mb0) "
            "Release(u2) ReduceGrads(u2) AcquireGrads(u1) Gather(u1) Backward(m1, mb0) Release(u1) ReduceGrads(u1) "
            "Backward(m0, mb0) Release(u0) ReduceGrads(u0) EndMicro(mb0) Step() ");
  // the closed form of a block's distance when nothing else is kept: the blocks after it twice
  // (forward and backward) plus the final norm once
  EXPECT_EQ(s.reuse_distance[0], 0);
  EXPECT_EQ(s.reuse_distance[3], 0);
  EXPECT_EQ(s.reuse_distance[2], 10);
  EXPECT_EQ(s.reuse_distance[1], 2 * 300 + 10);
  EXPECT_EQ(s.kept, (std::vector<bool>{true, false, false, true}));
  // a larger bound keeps the last block too, and then the first block's distance drops its re-gather
  sp.max_reuse_distance = 10;
  const Schedule t = train_schedule(sp);
  EXPECT_EQ(t.kept, (std::vector<bool>{true, false, true, true}));
  EXPECT_EQ(t.reuse_distance[1], 300 + 10);
}

TEST(Schedule, PersistentUnitsAreNeverGathered) {
  ScheduleSpec sp = gpt_like(1, 1, {100, 300, 10});
  sp.materialize = sp.gathered = sp.unit_grads = true;
  sp.max_reuse_distance = 1 << 30;
  sp.persistent = {false, false, true};
  const std::string l = listing(train_schedule(sp));
  EXPECT_EQ(l.find("Gather(u2)"), std::string::npos) << l;
  EXPECT_EQ(l.find("Release(u2"), std::string::npos) << l;
  EXPECT_EQ(l.find("Prefetch(u2)"), std::string::npos) << l;
  EXPECT_NE(l.find("AcquireGrads(u2)"), std::string::npos) << l;  // its gradients are still reduced
  sp.widen = true;  // 16-bit: a persistent unit still needs its fp32 working copy
  EXPECT_NE(listing(train_schedule(sp)).find("Gather(u2)"), std::string::npos);
}

// Full recompute in chunks: a chunk's forwards run again, in order, just before the backward of its
// last unit; the head (its own chunk) right before its backward.
TEST(Schedule, RecomputeChunksRunBeforeTheirLastUnitsBackward) {
  ScheduleSpec sp = gpt_like(3, 1, {100, 300, 300, 300, 10});
  sp.recompute.assign(6, model::UnitPlan{});
  sp.recompute[1].chunk = sp.recompute[2].chunk = 0;  // blocks 1-2
  sp.recompute[3].chunk = 1;                          // block 3
  sp.recompute[5].chunk = 2;                          // the head
  EXPECT_EQ(listing(train_schedule(sp)),
            "BeginStep() Load(mb0, slot 0) Forward(m0, mb0) Forward(m1, mb0) Forward(m2, mb0) Forward(m3, mb0) "
            "Forward(m4, mb0) Forward(m5, mb0) Recompute(m5, mb0) Backward(m5, mb0) Backward(m4, mb0) "
            "Recompute(m3, mb0) Backward(m3, mb0) Recompute(m1, mb0) Recompute(m2, mb0) Backward(m2, mb0) "
            "Backward(m1, mb0) Backward(m0, mb0) EndMicro(mb0) Step() ");
  // under ZeRO-3 a chunk's units are gathered for its recompute and stay until their backward
  sp.materialize = sp.gathered = sp.unit_grads = true;
  sp.max_reuse_distance = 0;
  const std::string l = listing(train_schedule(sp));
  const auto rc1 = l.find("Recompute(m1"), g1 = l.find("Gather(u1)", l.find("Recompute(m3")),
             b2 = l.find("Backward(m2"), r1 = l.rfind("Release(u1)");
  EXPECT_LT(g1, rc1) << l;
  EXPECT_LT(rc1, b2);
  EXPECT_GT(r1, b2) << "block 1 stays gathered from its recompute through block 2's backward to its own";
}

// Every Gather has its Release in the same phase (or the unit is kept at the turn and released
// after its backward), every AcquireGrads its ReduceGrads, over random unit lists.
TEST(Schedule, GathersAndGradientsAreBalanced) {
  for (int L = 1; L <= 5; ++L)
    for (int64_t reuse : {int64_t{0}, int64_t{700}, int64_t{1} << 40}) {
      ScheduleSpec sp = gpt_like(L, 3, std::vector<int64_t>(static_cast<size_t>(L + 2), 100));
      sp.materialize = sp.gathered = sp.unit_grads = true;
      sp.max_reuse_distance = reuse;
      const Schedule s = train_schedule(sp);
      std::vector<int> live(static_cast<size_t>(L + 2), 0), grads(static_cast<size_t>(L + 2), 0);
      for (const auto& i : s.instrs) {
        if (i.op == OpKind::Gather) ++live[static_cast<size_t>(i.unit)];
        if (i.op == OpKind::Release) --live[static_cast<size_t>(i.unit)];
        if (i.op == OpKind::AcquireGrads) ++grads[static_cast<size_t>(i.unit)];
        if (i.op == OpKind::ReduceGrads) --grads[static_cast<size_t>(i.unit)];
        if (i.op == OpKind::Forward || i.op == OpKind::Backward)
          for (int u : sp.uses[static_cast<size_t>(i.unit)]) ASSERT_EQ(live[static_cast<size_t>(u)], 1) << to_string(i);
        if (i.op == OpKind::Backward)
          for (int u : sp.uses[static_cast<size_t>(i.unit)]) ASSERT_EQ(grads[static_cast<size_t>(u)], 1) << to_string(i);
        if (i.op == OpKind::EndMicro) {
          EXPECT_EQ(std::accumulate(live.begin(), live.end(), 0), 0);
          EXPECT_EQ(std::accumulate(grads.begin(), grads.end(), 0), 0);
        }
      }
    }
}

TEST(Schedule, SpecOfAModelFollowsItsUses) {
  const model::Model<float> m(model::preset("tiny"));
  const Layout lay(m, 2, 0, true);
  std::vector<int> pu;
  for (int u = 0; u < m.num_units(); ++u) pu.push_back(lay.unit_of(u));
  const ScheduleSpec s = schedule_spec(m, pu, {}, 1);
  ASSERT_EQ(s.uses.size(), 5u);  // embedding, 2 blocks, final norm, head
  EXPECT_EQ(s.uses.back(), std::vector<int>{0});  // the tied head reads the embedding's unit
  EXPECT_EQ(s.uses[3], std::vector<int>{3});
}

// ---- Layout

TEST(Layout, UnitsChunksAndOwnedRunsFollowTheClosedForms) {
  const model::Model<float> m(model::preset("tiny"));
  const int W = 3;
  size_t covered = 0;
  for (int r = 0; r < W; ++r) {
    const Layout L(m, W, r, true);
    const size_t align = 16 * W;
    size_t off = 0, part = 0;
    for (int u = 0; u < L.num_units(); ++u) {
      const UnitInfo& ui = L.unit(u);
      EXPECT_EQ(ui.offset, off);
      EXPECT_EQ(ui.offset % align, 0u);
      EXPECT_EQ(ui.numel % align, 0u);
      EXPECT_GE(ui.numel, ui.real);
      EXPECT_LT(ui.numel - ui.real, align);
      EXPECT_EQ(ui.chunk * W, ui.numel);
      EXPECT_EQ(ui.part_off, part);
      EXPECT_EQ(L.chunk_offset(u, r), ui.offset + static_cast<size_t>(r) * ui.chunk);
      off += ui.numel, part += ui.chunk;
    }
    EXPECT_EQ(L.numel(), off);
    EXPECT_EQ(L.partition_numel(), part);
    // the owned runs: inside this rank's chunks, inside their tensors, partition offsets consistent
    for (const engine::Run& run : L.owned()) {
      const TensorInfo& t = L.tensor(run.tensor);
      const UnitInfo& ui = L.unit(t.unit);
      EXPECT_EQ(run.flat, t.offset + run.begin);
      EXPECT_LE(run.begin + run.n, t.numel);
      EXPECT_GE(run.flat, L.chunk_offset(t.unit, r));
      EXPECT_LE(run.flat + run.n, L.chunk_offset(t.unit, r) + ui.chunk);
      EXPECT_EQ(run.part, ui.part_off + (run.flat - L.chunk_offset(t.unit, r)));
      covered += run.n;
    }
  }
  EXPECT_EQ(covered, m.real_params()) << "the ranks' runs cover every parameter once";
  // unpartitioned: one run per tensor, no padding
  const Layout whole(m, W, 1, false);
  EXPECT_EQ(whole.numel(), m.real_params());
  EXPECT_EQ(whole.owned().size(), static_cast<size_t>(m.num_tensors()));
  size_t balanced = 0;
  for (int r = 0; r < W; ++r)
    for (const engine::Run& run : Layout(m, W, r, false).balanced()) balanced += run.n;
  EXPECT_EQ(balanced, m.real_params());
}
