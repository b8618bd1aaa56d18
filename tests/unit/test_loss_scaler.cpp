// DeepSpeed's dynamic loss scaler replayed on scripted overflow sequences; the expected
// trajectories are worked out by hand from the algorithm in deepspeed-semantics.md §1.3.
#include <gtest/gtest.h>

#include <vector>

#include "src/engine/loss_scaler.hpp"
#include "base/error.hpp"

using dmpi::config::Fp16Config;
using dmpi::engine::LossScaler;

namespace {
Fp16Config fp16(int power, int window, int hysteresis, double min_scale, bool consecutive = false) {
  Fp16Config c;
  c.enabled = true;
  c.initial_scale_power = power, c.loss_scale_window = window, c.hysteresis = hysteresis;
  c.min_loss_scale = min_scale, c.consecutive_hysteresis = consecutive;
  return c;
}
std::vector<double> replay(LossScaler& s, const std::vector<int>& overflows, std::vector<int>* skipped = nullptr) {
  std::vector<double> scales;
  for (int o : overflows) {
    bool skip = s.update(o != 0);
    if (skipped) skipped->push_back(skip ? 1 : 0);
    scales.push_back(s.scale());
  }
  return scales;
}
}  // namespace

TEST(LossScaler, HysteresisDelaysTheFirstHalvingAndWindowGrowth) {
  // 16, window 2, hysteresis 2, min 1. it2: stable 2 -> x2; it3: hysteresis 2 -> 1, scale kept;
  // it5, it6: halve; it9: stable 2 since the overflow at it6 -> x2.
  LossScaler s(fp16(4, 2, 2, 1.0));
  EXPECT_EQ(s.scale(), 16.0);
  std::vector<int> skipped;
  auto scales = replay(s, {0, 0, 0, 1, 0, 1, 1, 0, 0, 0}, &skipped);
  EXPECT_EQ(scales, (std::vector<double>{16, 16, 32, 32, 32, 16, 8, 8, 8, 16}));
  EXPECT_EQ(skipped, (std::vector<int>{0, 0, 0, 1, 0, 1, 1, 0, 0, 0}));
  EXPECT_EQ(s.state().last_overflow_iter, 6);
  EXPECT_EQ(s.state().cur_iter, 10);
  EXPECT_EQ(s.state().cur_hysteresis, 2);  // refilled by the growth at it9
}

TEST(LossScaler, ConsecutiveHysteresisRefillsOnEveryCleanStep) {
  LossScaler consecutive(fp16(4, 1000, 2, 1.0, true)), plain(fp16(4, 1000, 2, 1.0, false));
  // overflow, clean, overflow: the clean step refills only in consecutive mode
  EXPECT_EQ(replay(consecutive, {1, 0, 1}), (std::vector<double>{16, 16, 16}));
  EXPECT_EQ(replay(plain, {1, 0, 1}), (std::vector<double>{16, 16, 8}));
}

TEST(LossScaler, HysteresisOneHalvesEveryOverflowDownToTheMinimum) {
  LossScaler s(fp16(3, 1000, 1, 2.0));
  EXPECT_EQ(replay(s, {1, 1}), (std::vector<double>{4, 2}));
  EXPECT_THROW(s.update(true), dmpi::Error);  // at the minimum: DeepSpeed's "Exiting run."
  try {
    s.update(true);
  } catch (const dmpi::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Current loss scale already at minimum"), std::string::npos) << e.what();
  }
  // keep going at the minimum instead
  Fp16Config c = fp16(3, 1000, 1, 2.0);
  c.raise_error_at_min_scale = false;
  LossScaler k(c);
  std::vector<int> skipped;
  EXPECT_EQ(replay(k, {1, 1, 1, 1}, &skipped), (std::vector<double>{4, 2, 2, 2}));
  EXPECT_EQ(skipped, (std::vector<int>{1, 1, 1, 1}));
}

TEST(LossScaler, HalvingStopsAtANonPowerOfTwoMinimum) {
  LossScaler s(fp16(2, 1000, 1, 3.0));  // 4 -> max(2, 3) = 3
  EXPECT_EQ(replay(s, {1}), (std::vector<double>{3}));
}

TEST(LossScaler, GrowthEveryWindowAfterTheLastOverflow) {
  // window 3 from the start: stable = it + 1 - 1 = it; grows at it 3, 6, 9.
  LossScaler s(fp16(0, 3, 2, 1.0));
  EXPECT_EQ(replay(s, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), (std::vector<double>{1, 1, 1, 2, 2, 2, 4, 4, 4, 8}));
}

TEST(LossScaler, StaticScaleNeverChangesButSkipsOverflows) {
  Fp16Config c = fp16(16, 1000, 2, 1.0);
  c.loss_scale = 128;
  LossScaler s(c);
  EXPECT_FALSE(s.dynamic());
  std::vector<int> skipped;
  EXPECT_EQ(replay(s, {0, 1, 0}, &skipped), (std::vector<double>{128, 128, 128}));
  EXPECT_EQ(skipped, (std::vector<int>{0, 1, 0}));
}

TEST(LossScaler, StateRoundTripsByValue) {
  LossScaler a(fp16(4, 2, 2, 1.0)), b(fp16(4, 2, 2, 1.0));
  replay(a, {0, 1, 0, 0, 1});
  b.set_state(a.state());
  EXPECT_EQ(replay(a, {0, 0, 0, 1}), replay(b, {0, 0, 0, 1}));
}
