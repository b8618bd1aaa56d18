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

namespace {
// Megatron's get_lr at num_steps samples (warmup and decay lengths in samples too).
double megatron_lr(const config::SchedulerConfig& s, double max_lr, double n) {
  const double spi = static_cast<double>(std::max<int64_t>(1, s.samples_per_iteration));
  const double warm = s.lr_warmup_iters * spi, decay = static_cast<double>(s.lr_decay_iters) * spi;
  const double min_lr = s.min_lr;
  if (warm > 0 && n <= warm) return s.lr_warmup_init + (max_lr - s.lr_warmup_init) * n / warm;
  if (s.lr_decay_style == "constant") return max_lr;
  if (n > decay) return min_lr;
  if (s.lr_decay_style == "inverse-square-root") {
    const double w = std::max(warm, 1.0), m = std::max(n, 1.0);
    return std::max(min_lr, max_lr * std::sqrt(w) / std::sqrt(m));
  }
  const double ratio = (n - warm) / (decay - warm);
  double coeff = 1.0;
  if (s.lr_decay_style == "linear") {
    coeff = 1.0 - ratio;
  } else if (s.lr_decay_style == "cosine") {
    coeff = 0.5 * (std::cos(M_PI * ratio) + 1.0);
  } else if (s.lr_decay_style == "WSD") {
    const double wsd = static_cast<double>(s.lr_wsd_decay_iters) * spi, anneal_start = decay - wsd;
    if (n > anneal_start) {
      const double r = (n - anneal_start) / wsd;
      const auto& w = s.lr_wsd_decay_style;
      coeff = w == "linear" ? 1.0 - r
              : w == "cosine" ? 0.5 * (std::cos(M_PI * r) + 1.0)
              : w == "minus_sqrt" ? 1.0 - std::sqrt(r)
                                  : 2.0 * std::pow(0.5, r) - 1.0;  // exponential
    }
  }
  return min_lr + coeff * (max_lr - min_lr);
}
}  // namespace

double LRScheduler::weight_decay_at(int64_t it, double configured) const {
  const auto& st = s_.weight_decay_incr_style;
  if (st.empty() || st == "constant") return configured;
  const double spi = static_cast<double>(std::max<int64_t>(1, s_.samples_per_iteration));
  const double n = static_cast<double>(it + 1) * spi, incr = static_cast<double>(s_.wd_incr_iters) * spi;
  if (n > incr || incr <= 0) return s_.end_weight_decay;
  const double ratio = n / incr;
  const double coeff = st == "linear" ? ratio : 0.5 * (std::cos(M_PI * (1.0 - ratio)) + 1.0);  // cosine
  return s_.start_weight_decay + coeff * (s_.end_weight_decay - s_.start_weight_decay);
}

double LRScheduler::weight_decay(double configured) const { return weight_decay_at(it_, configured); }

double LRScheduler::lr_at(int64_t it) const {
  const auto& t = s_.type;
  if (t.empty()) return base_lr_;
  if (t == "Megatron")
    return megatron_lr(s_, s_.max_lr > 0 ? s_.max_lr : base_lr_,
                       static_cast<double>(it + 1) * static_cast<double>(std::max<int64_t>(1, s_.samples_per_iteration)));
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
  } else if (s_.type == "Megatron") {
    const double max_lr = s_.max_lr > 0 ? s_.max_lr : base_lr_;
    os << "Megatron " << s_.lr_decay_style << " (";
    if (s_.lr_warmup_iters > 0) os << "linear warmup " << s_.lr_warmup_init << " -> " << max_lr << " over " << s_.lr_warmup_iters << " steps, ";
    if (s_.lr_decay_style == "constant") os << "then constant " << max_lr;
    else if (s_.lr_decay_style == "WSD")
      os << "stable at " << max_lr << ", then " << s_.lr_wsd_decay_style << " decay to " << s_.min_lr << " over the last "
         << s_.lr_wsd_decay_iters << " of " << s_.lr_decay_iters << " steps";
    else os << s_.lr_decay_style << " decay " << max_lr << " -> " << s_.min_lr << " at step " << s_.lr_decay_iters;
    os << "; weight decay ";
    if (s_.weight_decay_incr_style == "constant") os << s_.end_weight_decay << " constant";
    else os << s_.weight_decay_incr_style << " " << s_.start_weight_decay << " -> " << s_.end_weight_decay << " over " << s_.wd_incr_iters << " steps";
    os << ")";
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
