// AdamW against its closed form; LR schedules against DeepSpeed's formulas (§1.7).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/optim.hpp"
#include "src/engine/lr_schedule.hpp"
#include "tests/unit/test_util.hpp"

using namespace dmpi;

TEST(AdamW, ConstantGradientClosedForm) {
  // With a constant gradient g and zero initial moments, bias-corrected m_hat = g and
  // v_hat = g^2 at every step, so each step moves p by lr * (g / (|g| + eps') + wd * p)
  // where eps' = eps * sqrt(1 - b2^t) ... (eps is added after dividing sqrt(v) by sqrt(bc2)).
  kernels::AdamParams hp;
  hp.lr = 0.01f, hp.beta1 = 0.9f, hp.beta2 = 0.99f, hp.eps = 1e-3f, hp.weight_decay = 0.1f;
  const int n = 5;
  std::vector<float> p = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f}, g = {0.3f, -0.7f, 2.0f, -0.01f, 1.0f}, m(n, 0), v(n, 0);
  std::vector<double> pd(p.begin(), p.end());
  for (int t = 1; t <= 6; ++t) {
    kernels::adam_step(p.data(), g.data(), m.data(), v.data(), n, hp, t, 1.0f);
    for (int i = 0; i < n; ++i) {
      double gi = g[i];
      double update = gi / (std::fabs(gi) + hp.eps) + hp.weight_decay * pd[i];
      pd[i] -= hp.lr * update;
    }
  }
  for (int i = 0; i < n; ++i) EXPECT_NEAR(p[i], pd[i], 2e-6) << i;
}

TEST(AdamW, VaryingGradientsAgainstFormula) {
  // Adam (L2 mode), AdamW mode, and no bias correction, against a double-precision
  // transcription of the update rule, with a gradient scale folded in.
  for (int mode = 0; mode < 3; ++mode) {
    kernels::AdamParams hp;
    hp.lr = 0.002f, hp.beta1 = 0.8f, hp.beta2 = 0.95f, hp.eps = 1e-6f, hp.weight_decay = 0.05f;
    hp.adam_w_mode = mode != 0;
    hp.bias_correction = mode != 2;
    const int n = 64;
    auto p = test::randn<float>(n, 1);
    std::vector<float> m(n, 0), v(n, 0);
    std::vector<double> P(p.begin(), p.end()), M(n, 0), V(n, 0);
    for (int t = 1; t <= 5; ++t) {
      auto g = test::randn<float>(n, 10 + t);
      const float scale = 0.5f;
      kernels::adam_step(p.data(), g.data(), m.data(), v.data(), n, hp, t, scale);
      double bc1 = hp.bias_correction ? 1 - std::pow(double(hp.beta1), t) : 1;
      double bc2 = hp.bias_correction ? 1 - std::pow(double(hp.beta2), t) : 1;
      for (int i = 0; i < n; ++i) {
        double gi = double(g[i]) * scale;
        if (!hp.adam_w_mode) gi += hp.weight_decay * P[i];
        M[i] = hp.beta1 * M[i] + (1 - hp.beta1) * gi;
        V[i] = hp.beta2 * V[i] + (1 - hp.beta2) * gi * gi;
        double upd = (M[i] / bc1) / (std::sqrt(V[i]) / std::sqrt(bc2) + hp.eps);
        if (hp.adam_w_mode) upd += hp.weight_decay * P[i];
        P[i] -= hp.lr * upd;
      }
    }
    EXPECT_LT(test::rel_err(p, P), 1e-5) << "mode " << mode;
    EXPECT_LT(test::rel_err(m, M), 1e-5) << "mode " << mode;
    EXPECT_LT(test::rel_err(v, V), 1e-5) << "mode " << mode;
  }
}

TEST(AdamW, ZeroGradsAfterUseGivesTheSameUpdate) {
  kernels::AdamParams hp;
  hp.weight_decay = 0.1f;
  auto p1 = test::randn<float>(1000, 1), g1 = test::randn<float>(1000, 2);
  auto p2 = p1, g2 = g1;
  std::vector<float> m1(1000, 0), v1(1000, 0), m2(1000, 0), v2(1000, 0);
  kernels::adam_step(p1.data(), g1.data(), m1.data(), v1.data(), 1000, hp, 1, 0.7f, false);
  kernels::adam_step(p2.data(), g2.data(), m2.data(), v2.data(), 1000, hp, 1, 0.7f, true);
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(v1, v2);
  EXPECT_EQ(g2, std::vector<float>(1000, 0.0f));
  EXPECT_NE(g1, std::vector<float>(1000, 0.0f));
}

namespace {
config::SchedulerConfig sched(const std::string& type, const std::string& warm, int64_t N, double lo, double hi,
                              int64_t total = 0) {
  config::SchedulerConfig s;
  s.type = type;
  s.warmup_type = warm;
  s.warmup_num_steps = N;
  s.warmup_min_lr = lo;
  s.warmup_max_lr = hi;
  s.total_num_steps = total;
  return s;
}
}  // namespace

TEST(LRSchedule, WarmupLRLogAndLinear) {
  const double lo = 1e-5, hi = 3e-3;
  const int64_t N = 50;
  for (std::string warm : {"log", "linear"}) {
    engine::LRScheduler s(sched("WarmupLR", warm, N, lo, hi), 1.0);
    // before the first scheduler step: warmup_min_lr (DeepSpeed sets it at construction)
    EXPECT_DOUBLE_EQ(s.current_lr(), lo);
    for (int64_t it = 0; it < 200; ++it) {
      s.step();
      ASSERT_EQ(s.last_batch_iteration(), it);
      double gamma = it < N ? (warm == "log" ? std::log(double(it + 1)) / std::log(double(N)) : double(it) / N) : 1.0;
      EXPECT_NEAR(s.current_lr(), lo + (hi - lo) * gamma, 1e-15) << warm << " it=" << it;
    }
    EXPECT_DOUBLE_EQ(s.lr_at(0), warm == "log" ? lo : lo);        // log(1) = 0 and 0/N = 0
    EXPECT_DOUBLE_EQ(s.lr_at(N), hi);                               // end of warmup
    EXPECT_DOUBLE_EQ(s.lr_at(N - 1), warm == "log" ? hi : lo + (hi - lo) * (N - 1.0) / N);
  }
}

TEST(LRSchedule, WarmupMaxDefaultsToOptimizerLr) {
  auto c = sched("WarmupLR", "linear", 10, 0.0, -1);
  engine::LRScheduler s(c, 0.25);
  EXPECT_DOUBLE_EQ(s.lr_at(100), 0.25);
  EXPECT_DOUBLE_EQ(s.lr_at(5), 0.125);
}

TEST(LRSchedule, WarmupNumStepsClampedToTwo) {
  engine::LRScheduler s(sched("WarmupLR", "log", 1, 0.0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.0);  // log(1)/log(2)
  EXPECT_DOUBLE_EQ(s.lr_at(1), 1.0);  // log(2)/log(2)
  EXPECT_TRUE(std::isfinite(s.lr_at(0)));
}

TEST(LRSchedule, WarmupDecayLR) {
  const int64_t N = 10, T = 40;
  const double lo = 0.0, hi = 1e-3;
  engine::LRScheduler s(sched("WarmupDecayLR", "linear", N, lo, hi, T), 1.0);
  for (int64_t it = 0; it < 60; ++it) {
    double gamma = it < N ? double(it) / N : std::max(0.0, double(T - it) / std::max(1.0, double(T - N)));
    EXPECT_NEAR(s.lr_at(it), lo + (hi - lo) * gamma, 1e-15) << it;
  }
  EXPECT_DOUBLE_EQ(s.lr_at(N), hi);   // decay starts from the peak
  EXPECT_DOUBLE_EQ(s.lr_at(T), 0.0);  // reaches zero at total_num_steps
  EXPECT_DOUBLE_EQ(s.lr_at(T + 5), 0.0);
}

TEST(LRSchedule, ConstantAndStateByValue) {
  engine::LRScheduler c(config::SchedulerConfig{}, 0.01);
  for (int i = 0; i < 5; ++i) c.step();
  EXPECT_DOUBLE_EQ(c.current_lr(), 0.01);
  engine::LRScheduler a(sched("WarmupLR", "log", 20, 0.0, 1.0), 1.0), b(sched("WarmupLR", "log", 20, 0.0, 1.0), 1.0);
  for (int i = 0; i < 7; ++i) a.step();
  b.set_last_batch_iteration(a.last_batch_iteration());
  EXPECT_DOUBLE_EQ(a.current_lr(), b.current_lr());
  a.step();
  b.step();
  EXPECT_DOUBLE_EQ(a.current_lr(), b.current_lr());
}

// ---- SGD, Adagrad, Lion, Lamb against closed forms and double transcriptions ----

TEST(Sgd, ConstantGradientAndMomentumForms) {
  // plain SGD with a constant gradient: p_t = p_0 - t * lr * g
  kernels::SgdParams hp;
  hp.lr = 0.1f;
  std::vector<float> p = {1.0f, -2.0f}, buf(2, 0);
  for (int t = 1; t <= 5; ++t) {
    std::vector<float> g = {0.5f, -0.25f};
    kernels::sgd_step(p.data(), g.data(), buf.data(), 2, hp, t, 1.0f);
  }
  EXPECT_NEAR(p[0], 1.0 - 5 * 0.1 * 0.5, 1e-6);
  EXPECT_NEAR(p[1], -2.0 + 5 * 0.1 * 0.25, 1e-6);
  // momentum, dampening, nesterov, weight decay, gradient scale vs torch's rule in double
  for (bool nesterov : {false, true}) {
    kernels::SgdParams h;
    h.lr = 0.05f, h.momentum = 0.9f, h.dampening = nesterov ? 0.0f : 0.1f, h.weight_decay = 0.01f, h.nesterov = nesterov;
    const int n = 32;
    auto P = test::randn<float>(n, 3);
    std::vector<double> Pd(P.begin(), P.end()), Bd(n, 0);
    std::vector<float> B(n, 0);
    for (int t = 1; t <= 4; ++t) {
      auto G = test::randn<float>(n, 20 + t);
      auto Gk = G;
      kernels::sgd_step(P.data(), Gk.data(), B.data(), n, h, t, 0.5f, true);
      for (float x : Gk) ASSERT_EQ(x, 0.0f);
      for (int i = 0; i < n; ++i) {
        double g = 0.5 * G[i] + h.weight_decay * Pd[i];
        Bd[i] = t == 1 ? g : h.momentum * Bd[i] + (1 - h.dampening) * g;
        double d = nesterov ? g + h.momentum * Bd[i] : Bd[i];
        Pd[i] -= h.lr * d;
      }
    }
    EXPECT_LT(test::rel_err(P, Pd), 1e-5) << nesterov;
  }
}

TEST(Adagrad, ConstantGradientClosedForm) {
  kernels::AdagradParams hp;
  hp.lr = 0.1f, hp.lr_decay = 0.05f, hp.eps = 1e-10f;
  std::vector<float> p = {0.3f, -0.7f}, sum(2, 0.0f);
  const float g0[2] = {2.0f, -0.5f};
  double expect[2] = {0.3, -0.7};
  for (int t = 1; t <= 6; ++t) {
    std::vector<float> g(g0, g0 + 2);
    kernels::adagrad_step(p.data(), g.data(), sum.data(), 2, hp, t, 1.0f);
    double clr = 0.1 / (1 + (t - 1) * 0.05);
    for (int i = 0; i < 2; ++i) expect[i] -= clr * g0[i] / (std::sqrt(t * double(g0[i]) * g0[i]) + 1e-10);
  }
  EXPECT_NEAR(p[0], expect[0], 1e-6);
  EXPECT_NEAR(p[1], expect[1], 1e-6);
  EXPECT_NEAR(sum[0], 6 * 4.0, 1e-5);
}

TEST(Lion, ConstantGradientClosedForm) {
  // with m_0 = 0 and a constant g, c always has g's sign: p_t = p_{t-1}(1 - lr*wd) - lr*sign(g)
  kernels::LionParams hp;
  hp.lr = 0.01f, hp.weight_decay = 0.5f;
  std::vector<float> p = {1.0f, -1.0f, 0.25f}, m(3, 0.0f);
  const float g0[3] = {0.3f, -2.0f, 0.0f};
  double e[3] = {1.0, -1.0, 0.25};
  for (int t = 1; t <= 5; ++t) {
    std::vector<float> g(g0, g0 + 3);
    kernels::lion_step(p.data(), g.data(), m.data(), 3, hp, 1.0f);
    for (int i = 0; i < 3; ++i) e[i] = e[i] * (1 - 0.01 * 0.5) - 0.01 * (g0[i] > 0 ? 1 : (g0[i] < 0 ? -1 : 0));
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i], e[i], 1e-6) << i;
  EXPECT_NEAR(m[0], 0.3 * (1 - std::pow(0.999, 5)), 1e-6);
}

TEST(Lamb, TrustRatioAgainstFormula) {
  for (int variant = 0; variant < 3; ++variant) {
    kernels::LambParams hp;
    hp.lr = 0.01f, hp.weight_decay = 0.01f;
    if (variant == 1) hp.max_coeff = 0.5f;        // clamp from above
    if (variant == 2) hp.eps_inside_sqrt = true, hp.bias_correction = false;
    const int n = 50;
    auto P = test::randn<float>(n, 9, 3.0);
    std::vector<float> M(n, 0), V(n, 0);
    std::vector<double> Pd(P.begin(), P.end()), Md(n, 0), Vd(n, 0);
    for (int t = 1; t <= 4; ++t) {
      auto G = test::randn<float>(n, 40 + t, 0.1);
      auto Gk = G;
      kernels::lamb_step(P.data(), Gk.data(), M.data(), V.data(), n, hp, t, 1.0f, true);
      double bc1 = hp.bias_correction ? 1 - std::pow(0.9, t) : 1, bc2 = hp.bias_correction ? 1 - std::pow(0.999, t) : 1;
      std::vector<double> u(n);
      double w2 = 0, u2 = 0;
      for (int i = 0; i < n; ++i) {
        Md[i] = 0.9 * Md[i] + 0.1 * G[i];
        Vd[i] = 0.999 * Vd[i] + 0.001 * double(G[i]) * G[i];
        double denom = hp.eps_inside_sqrt ? std::sqrt(Vd[i] / bc2 + 1e-8) : std::sqrt(Vd[i] / bc2) + 1e-8;
        u[i] = (Md[i] / bc1) / denom + 0.01 * Pd[i];
        w2 += Pd[i] * Pd[i];
        u2 += u[i] * u[i];
      }
      double trust = std::min<double>(hp.max_coeff, std::max<double>(hp.min_coeff, std::sqrt(w2) / std::sqrt(u2)));
      if (variant == 1) {
        EXPECT_DOUBLE_EQ(trust, 0.5);  // the clamp is exercised
      }
      for (int i = 0; i < n; ++i) Pd[i] -= 0.01 * trust * u[i];
    }
    EXPECT_LT(test::rel_err(P, Pd), 2e-5) << "variant " << variant;
  }
}

// ---- WarmupCosineLR, OneCycle, LRRangeTest against DeepSpeed's formulas (semantics §1.7) ----

TEST(LRSchedule, WarmupCosineLR) {
  config::SchedulerConfig c;
  c.type = "WarmupCosineLR", c.total_num_steps = 100, c.warmup_num_steps = 10, c.warmup_min_ratio = 0.1,
  c.cos_min_ratio = 0.01, c.warmup_type = "linear";
  const double base = 2e-3;
  engine::LRScheduler s(c, base);
  EXPECT_DOUBLE_EQ(s.current_lr(), 0.0);  // before the first scheduler step
  for (int64_t it = 0; it < 130; ++it) {
    double r;
    if (it < 10) {
      r = 0.1 + 0.9 * (it / 10.0);
    } else {
      double p = std::min(1.0, (it - 10 + 1) / 90.0);
      r = std::max(0.0, 0.01 + 0.99 * (1 + std::cos(M_PI * p)) / 2);
    }
    EXPECT_NEAR(s.lr_at(it), base * r, 1e-15) << it;
  }
  EXPECT_DOUBLE_EQ(s.lr_at(0), base * 0.1);             // step 0: the warmup floor
  EXPECT_NEAR(s.lr_at(9), base * (0.1 + 0.9 * 0.9), 1e-15);  // last warmup step
  EXPECT_NEAR(s.lr_at(99), base * 0.01, 1e-15);          // p reaches 1 at the total: cos_min_ratio
  EXPECT_NEAR(s.lr_at(500), base * 0.01, 1e-15);         // past the total: clamped
  c.warmup_type = "log";
  engine::LRScheduler l(c, base);
  EXPECT_NEAR(l.lr_at(4), base * (0.1 + 0.9 * std::log(5.0) / std::log(10.0)), 1e-15);
}

TEST(LRSchedule, OneCycleLrAndMomentum) {
  config::SchedulerConfig c;
  c.type = "OneCycle", c.cycle_min_lr = 1e-4, c.cycle_max_lr = 1e-3, c.cycle_first_step_size = 10,
  c.cycle_second_step_size = 30, c.decay_lr_rate = 0.5, c.decay_step_size = 4, c.cycle_min_mom = 0.85,
  c.cycle_max_mom = 0.95, c.decay_mom_rate = 0.01;
  engine::LRScheduler s(c, 1.0);
  // before the first step: the minimum lr and the minimum momentum, beta2 0.99
  EXPECT_DOUBLE_EQ(s.current_lr(), 1e-4);
  double b1 = 0, b2 = 0;
  ASSERT_TRUE(s.momentum(b1, b2));
  EXPECT_DOUBLE_EQ(b1, 0.85);
  EXPECT_DOUBLE_EQ(b2, 0.99);
  const double total = 40, ratio = 10.0 / 40.0;
  for (int64_t it = 0; it < 80; ++it) {
    double lr, mom;
    if (it < total) {
      double bi = it + 1, x = 1 + bi / total - std::floor(1 + bi / total);
      double scale = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
      lr = 1e-4 + (1e-3 - 1e-4) * scale;
      mom = 0.95 - (0.95 - 0.85) * scale;
    } else {
      double interval = (it - total + 1) / 4.0;
      lr = 1e-4 / (1 + 0.5 * interval);
      mom = 0.95 * (1 + 0.01 * interval);
    }
    EXPECT_NEAR(s.lr_at(it), lr, 1e-15) << it;
    EXPECT_NEAR(s.momentum_at(it), mom, 1e-15) << it;
  }
  EXPECT_NEAR(s.lr_at(9), 1e-3, 1e-15);   // the peak at the end of the first step size
  EXPECT_NEAR(s.momentum_at(9), 0.85, 1e-15);  // momentum runs inversely
  c.decay_step_size = 0;                   // no decay after the cycle
  engine::LRScheduler n(c, 1.0);
  EXPECT_DOUBLE_EQ(n.lr_at(100), 1e-4);
  EXPECT_DOUBLE_EQ(n.momentum_at(100), 0.95);
  c.cycle_momentum = false;
  engine::LRScheduler m(c, 1.0);
  EXPECT_FALSE(m.momentum(b1, b2));
}

TEST(LRSchedule, LRRangeTest) {
  config::SchedulerConfig c;
  c.type = "LRRangeTest", c.lr_range_test_min_lr = 1e-4, c.lr_range_test_step_size = 5, c.lr_range_test_step_rate = 2.0;
  engine::LRScheduler cont(c, 1.0);
  c.lr_range_test_staircase = true;
  engine::LRScheduler stair(c, 1.0);
  for (int64_t it = -1; it < 30; ++it) {
    EXPECT_NEAR(cont.lr_at(it), 1e-4 * (1 + 2.0 * (it + 1) / 5.0), 1e-15) << it;
    EXPECT_NEAR(stair.lr_at(it), 1e-4 * (1 + 2.0 * std::floor((it + 1) / 5.0)), 1e-15) << it;
  }
  EXPECT_DOUBLE_EQ(cont.current_lr(), 1e-4);  // it = -1: the minimum
}

// ---- Megatron-LM's OptimizerParamScheduler (optimizer_param_scheduler.py), closed forms --------
// Stepping: Megatron evaluates its formula at num_steps samples and steps by the global batch
// after each applied iteration, so after n applied iterations the lr is f(n x samples); here
// that is lr_at(n - 1), and current_lr() before any step is f(0).

namespace {
config::SchedulerConfig megatron(const std::string& style, double warmup, int64_t decay, int64_t spi = 8) {
  config::SchedulerConfig s;
  s.type = "Megatron";
  s.lr_decay_style = style;
  s.max_lr = 1e-3;
  s.min_lr = 1e-4;
  s.lr_warmup_iters = warmup;
  s.lr_decay_iters = decay;
  s.samples_per_iteration = spi;
  return s;
}
// the lr after n applied iterations
double after(const engine::LRScheduler& s, int64_t n) { return s.lr_at(n - 1); }
constexpr double kMax = 1e-3, kMin = 1e-4, kTol = 1e-15;
}  // namespace

TEST(MegatronSchedule, LinearWarmupThenLinearDecay) {
  engine::LRScheduler s(megatron("linear", 10, 110), 1.0);
  EXPECT_DOUBLE_EQ(s.current_lr(), 0.0);                 // iteration 1 runs at lr_warmup_init (0)
  EXPECT_NEAR(after(s, 5), kMax * 5 / 10, kTol);         // linear warmup
  EXPECT_NEAR(after(s, 10), kMax, kTol);                 // the end of the warmup: max
  EXPECT_NEAR(after(s, 60), kMin + 0.5 * (kMax - kMin), kTol);  // halfway through the decay
  EXPECT_NEAR(after(s, 85), kMin + 0.25 * (kMax - kMin), kTol);
  EXPECT_NEAR(after(s, 110), kMin, kTol);                // the end of the decay: min
  EXPECT_NEAR(after(s, 111), kMin, kTol);                // beyond: min
  EXPECT_NEAR(after(s, 10000), kMin, kTol);
  // the scheduler's own stepping walks the same values
  engine::LRScheduler t(megatron("linear", 10, 110), 1.0);
  for (int k = 0; k < 60; ++k) t.step();
  EXPECT_NEAR(t.current_lr(), kMin + 0.5 * (kMax - kMin), kTol);
  // the warmup starts from lr_warmup_init
  auto c = megatron("linear", 10, 110);
  c.lr_warmup_init = 2e-4;
  engine::LRScheduler w(c, 1.0);
  EXPECT_DOUBLE_EQ(w.current_lr(), 2e-4);
  EXPECT_NEAR(after(w, 5), 2e-4 + (kMax - 2e-4) * 0.5, kTol);
}

TEST(MegatronSchedule, CosineDecay) {
  engine::LRScheduler s(megatron("cosine", 10, 110), 1.0);
  EXPECT_NEAR(after(s, 10), kMax, kTol);
  EXPECT_NEAR(after(s, 35), kMin + (kMax - kMin) * 0.5 * (1.0 + std::sqrt(0.5)), kTol);  // a quarter: cos(pi/4)
  EXPECT_NEAR(after(s, 60), kMin + (kMax - kMin) * 0.5, kTol);                          // half: cos(pi/2) = 0
  EXPECT_NEAR(after(s, 85), kMin + (kMax - kMin) * 0.5 * (1.0 - std::sqrt(0.5)), kTol);  // three quarters
  EXPECT_NEAR(after(s, 110), kMin, kTol);
}

TEST(MegatronSchedule, ConstantIgnoresTheDecayLength) {
  engine::LRScheduler s(megatron("constant", 4, 20), 1.0);
  EXPECT_NEAR(after(s, 2), kMax * 0.5, kTol);
  EXPECT_NEAR(after(s, 4), kMax, kTol);
  EXPECT_NEAR(after(s, 15), kMax, kTol);
  EXPECT_NEAR(after(s, 500), kMax, kTol);  // Megatron returns max_lr before looking at the decay length
  engine::LRScheduler n(megatron("constant", 0, 20), 1.0);
  EXPECT_DOUBLE_EQ(n.current_lr(), kMax);  // no warmup: max from the first iteration
}

TEST(MegatronSchedule, InverseSquareRoot) {
  engine::LRScheduler s(megatron("inverse-square-root", 10, 110), 1.0);
  EXPECT_NEAR(after(s, 10), kMax, kTol);
  EXPECT_NEAR(after(s, 40), kMax * 0.5, kTol);                     // sqrt(10 / 40)
  EXPECT_NEAR(after(s, 100), kMax * std::sqrt(0.1), kTol);
  EXPECT_NEAR(after(s, 111), kMin, kTol);                          // beyond the decay length: min
  auto f = megatron("inverse-square-root", 10, 110);
  f.min_lr = 4e-4;
  engine::LRScheduler floor(f, 1.0);
  EXPECT_NEAR(after(floor, 90), 4e-4, kTol);  // sqrt(10/90) x 1e-3 = 3.33e-4 is floored at min_lr
  // without warmup Megatron's formula counts samples: max / sqrt(iterations x global batch)
  engine::LRScheduler z(megatron("inverse-square-root", 0, 110, 8), 1.0);
  EXPECT_NEAR(z.current_lr(), kMax, kTol);         // num_steps 0 -> max(0, 1) = 1
  EXPECT_NEAR(after(z, 2), kMax / 4.0, kTol);      // 1 / sqrt(16 samples)
  EXPECT_NEAR(after(z, 8), kMax / 8.0, kTol);      // 1 / sqrt(64)
}

TEST(MegatronSchedule, WsdStableThenEachDecayStyle) {
  // decay 110 iterations of which the last 20 anneal: stable at max until 90
  struct Case {
    const char* style;
    double at95, at100;  // the coefficient at 1/4 and 1/2 of the annealing
  };
  const Case cases[] = {{"linear", 0.75, 0.5},
                        {"cosine", 0.5 * (1.0 + std::sqrt(0.5)), 0.5},
                        {"exponential", 2.0 * std::pow(0.5, 0.25) - 1.0, std::sqrt(2.0) - 1.0},
                        {"minus_sqrt", 0.5, 1.0 - std::sqrt(0.5)}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.style);
    auto cfg = megatron("WSD", 10, 110);
    cfg.lr_wsd_decay_iters = 20;
    cfg.lr_wsd_decay_style = c.style;
    engine::LRScheduler s(cfg, 1.0);
    EXPECT_NEAR(after(s, 5), kMax * 0.5, kTol);  // the warmup
    EXPECT_NEAR(after(s, 50), kMax, kTol);       // stable
    EXPECT_NEAR(after(s, 90), kMax, kTol);       // the last stable iteration
    EXPECT_NEAR(after(s, 95), kMin + c.at95 * (kMax - kMin), kTol);
    EXPECT_NEAR(after(s, 100), kMin + c.at100 * (kMax - kMin), kTol);
    EXPECT_NEAR(after(s, 110), kMin, kTol);      // every style reaches min at the end
    EXPECT_NEAR(after(s, 200), kMin, kTol);
  }
}

TEST(MegatronSchedule, FractionalWarmup) {
  // --lr-warmup-fraction 0.05 of 110 decay iterations: 5.5 iterations (Megatron keeps the fraction)
  engine::LRScheduler s(megatron("linear", 0.05 * 110, 110), 1.0);
  EXPECT_NEAR(after(s, 5), kMax * 5.0 / 5.5, kTol);
  EXPECT_NEAR(after(s, 6), kMin + (kMax - kMin) * (1.0 - (6.0 - 5.5) / (110.0 - 5.5)), kTol);
}

TEST(MegatronSchedule, WeightDecayIncrement) {
  auto cfg = megatron("constant", 0, 200);
  cfg.start_weight_decay = 0.0, cfg.end_weight_decay = 0.1, cfg.wd_incr_iters = 100;
  for (std::string style : {"linear", "cosine"}) {
    SCOPED_TRACE(style);
    cfg.weight_decay_incr_style = style;
    engine::LRScheduler s(cfg, 1.0);
    EXPECT_DOUBLE_EQ(s.weight_decay(0.5), 0.0);  // the first iteration: start (the optimizer's value is not used)
    const double q = style == "linear" ? 0.25 : 0.5 * (1.0 - std::sqrt(0.5));  // a quarter of the way
    EXPECT_NEAR(s.weight_decay_at(24, 0.5), 0.1 * q, 1e-15);
    EXPECT_NEAR(s.weight_decay_at(49, 0.5), 0.05, 1e-15);  // halfway: both styles
    EXPECT_NEAR(s.weight_decay_at(99, 0.5), 0.1, 1e-15);   // the end
    EXPECT_NEAR(s.weight_decay_at(500, 0.5), 0.1, 1e-15);  // beyond: end
    for (int k = 0; k < 50; ++k) s.step();
    EXPECT_NEAR(s.weight_decay(0.5), 0.05, 1e-15);
  }
  // constant (every DeepSpeed schedule too): the optimizer's weight decay
  cfg.weight_decay_incr_style = "constant";
  EXPECT_DOUBLE_EQ(engine::LRScheduler(cfg, 1.0).weight_decay_at(30, 0.02), 0.02);
  EXPECT_DOUBLE_EQ(engine::LRScheduler(config::SchedulerConfig{}, 1.0).weight_decay(0.07), 0.07);
  EXPECT_DOUBLE_EQ(engine::LRScheduler(sched("WarmupLR", "linear", 10, 0, 1), 1.0).weight_decay(0.3), 0.3);
}

TEST(MegatronSchedule, DescribeSaysWhatRuns) {
  auto cfg = megatron("cosine", 10, 110);
  const std::string d = engine::LRScheduler(cfg, 1.0).describe();
  EXPECT_NE(d.find("Megatron cosine (linear warmup 0 -> 0.001 over 10 steps, cosine decay 0.001 -> 0.0001 at step 110"),
            std::string::npos) << d;
}
