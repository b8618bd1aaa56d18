#include "src/engine/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace dmpi::engine {

LRScheduler::LRScheduler(const config::SchedulerConfig& s, double optimizer_lr)
    : s_(s), base_lr_(optimizer_lr), max_lr_(s.warmup_max_lr < 0 ? optimizer_lr : s.warmup_max_lr) {
  lr_ = lr_at(-1);
}

namespace {
double warm_gamma(const std::string& warmup_type, int64_t it, int64_t N) {
  return warmup_type == "linear" ? static_cast<double>(it) / static_cast<double>(N)
                                 : std::log(static_cast<double>(it + 1)) / std::log(static_cast<double>(N));
}

// OneCycle's position in the cycle: x in [0, 1), rising to 1 over the first step size and
// falling back over the second (DeepSpeed's _get_scale_factor).
double one_cycle_scale(const config::SchedulerConfig& s, int64_t it) {
  const double s1 = s.cycle_first_step_size, s2 = s.cycle_second_step_size < 0 ? s1 : s.cycle_second_step_size;
  const double total = s1 + s2, ratio = s1 / total;
  const double bi = static_cast<double>(it + 1);
  const double x = 1.0 + bi / total - std::floor(1.0 + bi / total);
  return x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
}

double one_cycle_total(const config::SchedulerConfig& s) {
  return s.cycle_first_step_size + (s.cycle_second_step_size < 0 ? s.cycle_first_step_size : s.cycle_second_step_size);
}
}  // namespace

double LRScheduler::lr_at(int64_t it) const {
  const auto& t = s_.type;
  if (t.empty()) return base_lr_;
  // DeepSpeed clamps warmup_num_steps to at least 2 (log(1) = 0 would divide by zero).
  const int64_t N = std::max<int64_t>(2, s_.warmup_num_steps);
  if (t == "WarmupLR" || t == "WarmupDecayLR") {
    if (it < 0) return s_.warmup_min_lr;
    const double delta = max_lr_ - s_.warmup_min_lr;
    double gamma = 1.0;
    if (it < N) {
      gamma = warm_gamma(s_.warmup_type, it, N);
    } else if (t == "WarmupDecayLR") {
      const double T = static_cast<double>(s_.total_num_steps);
      gamma = std::max(0.0, (T - static_cast<double>(it)) / std::max(1.0, T - static_cast<double>(N)));
    }
    return s_.warmup_min_lr + delta * gamma;
  }
  if (t == "WarmupCosineLR") {
    if (it < 0) return 0.0;  // DeepSpeed: 0 before the scheduler's first step
    double ratio;
    if (it < N) {
      ratio = s_.warmup_min_ratio + (1.0 - s_.warmup_min_ratio) * warm_gamma(s_.warmup_type, it, N);
    } else {
      // HEAD: denominator clamped to >= 1 and progress to <= 1
      double p = static_cast<double>(it - N + 1) / std::max(1.0, static_cast<double>(s_.total_num_steps - N));
      p = std::min(1.0, p);
      ratio = std::max(0.0, s_.cos_min_ratio + (1.0 - s_.cos_min_ratio) * (1.0 + std::cos(M_PI * p)) / 2.0);
    }
    return base_lr_ * ratio;
  }
  if (t == "OneCycle") {
    if (it < 0) return s_.cycle_min_lr;
    const double total = one_cycle_total(s_);
    if (static_cast<double>(it) < total)
      return s_.cycle_min_lr + (s_.cycle_max_lr - s_.cycle_min_lr) * one_cycle_scale(s_, it);
    if (s_.decay_step_size == 0.0 || s_.decay_lr_rate == 0.0) return s_.cycle_min_lr;
    const double interval = (static_cast<double>(it) - total + 1.0) / s_.decay_step_size;
    return s_.cycle_min_lr / (1.0 + s_.decay_lr_rate * interval);
  }
  // LRRangeTest
  double interval = static_cast<double>(it + 1) / s_.lr_range_test_step_size;
  if (s_.lr_range_test_staircase) interval = std::floor(interval);
  return s_.lr_range_test_min_lr * (1.0 + s_.lr_range_test_step_rate * interval);
}

double LRScheduler::momentum_at(int64_t it) const {
  if (it < 0) return s_.cycle_min_mom;  // DeepSpeed sets the min momentum at construction
  const double total = one_cycle_total(s_);
  if (static_cast<double>(it) < total)
    return s_.cycle_max_mom - (s_.cycle_max_mom - s_.cycle_min_mom) * one_cycle_scale(s_, it);
  if (s_.decay_step_size == 0.0 || s_.decay_mom_rate == 0.0) return s_.cycle_max_mom;
  const double interval = (static_cast<double>(it) - total + 1.0) / s_.decay_step_size;
  return s_.cycle_max_mom * (1.0 + s_.decay_mom_rate * interval);
}

bool LRScheduler::momentum(double& beta1, double& beta2) const {
  if (s_.type != "OneCycle" || !s_.cycle_momentum) return false;
  beta1 = momentum_at(it_);
  beta2 = 0.99;  // DeepSpeed's OneCycle fixes beta2 at 0.99
  return true;
}

void LRScheduler::step() {
  ++it_;
  lr_ = lr_at(it_);
}

void LRScheduler::set_last_batch_iteration(int64_t it) {
  it_ = it;
  lr_ = lr_at(it_);
}

std::string LRScheduler::describe() const {
  std::ostringstream os;
  if (s_.type.empty()) {
    os << "constant lr " << base_lr_;
  } else if (s_.type == "WarmupLR" || s_.type == "WarmupDecayLR") {
    os << s_.type << " (" << s_.warmup_type << " warmup " << s_.warmup_min_lr << " -> " << max_lr_ << " over "
       << s_.warmup_num_steps << " steps";
    if (s_.type == "WarmupDecayLR") os << ", linear decay to 0 at step " << s_.total_num_steps;
    os << ")";
  } else if (s_.type == "WarmupCosineLR") {
    os << "WarmupCosineLR (x lr " << base_lr_ << ": " << s_.warmup_type << " warmup from " << s_.warmup_min_ratio
       << " over " << s_.warmup_num_steps << " steps, cosine to " << s_.cos_min_ratio << " at step " << s_.total_num_steps << ")";
  } else if (s_.type == "OneCycle") {
    os << "OneCycle (" << s_.cycle_min_lr << " -> " << s_.cycle_max_lr << " -> " << s_.cycle_min_lr << " over "
       << one_cycle_total(s_) << " steps" << (s_.cycle_momentum ? ", momentum cycled" : "") << ")";
  } else {
    os << "LRRangeTest (from " << s_.lr_range_test_min_lr << ", rate " << s_.lr_range_test_step_rate << " per "
       << s_.lr_range_test_step_size << " steps" << (s_.lr_range_test_staircase ? ", staircase" : "") << ")";
  }
  return os.str();
}

}  // namespace dmpi::engine
