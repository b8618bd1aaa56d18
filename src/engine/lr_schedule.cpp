#include "src/engine/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace dmpi::engine {

LRScheduler::LRScheduler(const config::SchedulerConfig& s, double optimizer_lr)
    : s_(s), base_lr_(optimizer_lr), max_lr_(s.warmup_max_lr < 0 ? optimizer_lr : s.warmup_max_lr) {
  lr_ = s_.type.empty() ? base_lr_ : s_.warmup_min_lr;
}

double LRScheduler::lr_at(int64_t it) const {
  if (s_.type.empty()) return base_lr_;
  if (it < 0) return s_.warmup_min_lr;
  // DeepSpeed clamps warmup_num_steps to at least 2 (log(1) = 0 would divide by zero).
  const int64_t N = std::max<int64_t>(2, s_.warmup_num_steps);
  const double delta = max_lr_ - s_.warmup_min_lr;
  double gamma = 1.0;
  if (it < N) {
    gamma = s_.warmup_type == "linear" ? static_cast<double>(it) / static_cast<double>(N)
                                       : std::log(static_cast<double>(it + 1)) / std::log(static_cast<double>(N));
  } else if (s_.type == "WarmupDecayLR") {
    const double T = static_cast<double>(s_.total_num_steps);
    gamma = std::max(0.0, (T - static_cast<double>(it)) / std::max(1.0, T - static_cast<double>(N)));
  }
  return s_.warmup_min_lr + delta * gamma;
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
  } else {
    os << s_.type << " (" << s_.warmup_type << " warmup " << s_.warmup_min_lr << " -> " << max_lr_ << " over "
       << s_.warmup_num_steps << " steps";
    if (s_.type == "WarmupDecayLR") os << ", linear decay to 0 at step " << s_.total_num_steps;
    os << ")";
  }
  return os.str();
}

}  // namespace dmpi::engine
