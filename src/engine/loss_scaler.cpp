#include "src/engine/loss_scaler.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "base/error.hpp"

namespace dmpi::engine {

LossScaler::LossScaler(const config::Fp16Config& c) : c_(c), dynamic_(c.loss_scale == 0.0) {
  DMPI_REQUIRE(c.loss_scale >= 0.0 && std::isfinite(c.loss_scale), "fp16.loss_scale must be >= 0 (0 = dynamic)");
  DMPI_REQUIRE(!dynamic_ || (c.loss_scale_window > 0 && c.min_loss_scale > 0 && c.hysteresis >= 1),
               "dynamic loss scaling needs loss_scale_window > 0, min_loss_scale > 0 and hysteresis >= 1");
  s_.cur_scale = dynamic_ ? std::ldexp(1.0, static_cast<int>(c.initial_scale_power)) : c.loss_scale;
  s_.cur_hysteresis = c.hysteresis;
}

bool LossScaler::update(bool overflow, std::string* message) {
  std::ostringstream os;
  if (!dynamic_) {
    if (overflow) os << "OVERFLOW! Skipping step (static loss scale " << s_.cur_scale << ")";
    if (message) *message = os.str();
    return overflow;
  }
  if (overflow) {
    if (c_.hysteresis == 1 || s_.cur_hysteresis == 1) {
      if (s_.cur_scale <= c_.min_loss_scale) {
        DMPI_REQUIRE(!c_.raise_error_at_min_scale,
                     "Current loss scale already at minimum (" << c_.min_loss_scale
                         << ") - cannot decrease scale anymore. Exiting run. (fp16.raise_error_at_min_scale: false keeps "
                            "training at the minimum, skipping overflowing steps)");
        os << "OVERFLOW! Skipping step. Loss scale stays at the minimum " << s_.cur_scale;
      } else {
        const double next = std::max(s_.cur_scale / 2.0, c_.min_loss_scale);
        os << "OVERFLOW! Skipping step. Attempted loss scale: " << s_.cur_scale << ", reducing to " << next;
        s_.cur_scale = next;
      }
    } else {
      os << "OVERFLOW! Skipping step. Attempted loss scale: " << s_.cur_scale << ", but hysteresis is "
         << s_.cur_hysteresis << ". Reducing hysteresis to " << s_.cur_hysteresis - 1;
      s_.cur_hysteresis -= 1;
    }
    s_.last_overflow_iter = s_.cur_iter;
  } else {
    if (c_.consecutive_hysteresis) s_.cur_hysteresis = c_.hysteresis;
    const int64_t stable = s_.cur_iter - s_.last_overflow_iter - 1;
    if (stable > 0 && stable % c_.loss_scale_window == 0) {
      s_.cur_scale *= 2.0;
      if (!c_.consecutive_hysteresis) s_.cur_hysteresis = c_.hysteresis;
    }
  }
  s_.cur_iter += 1;
  if (message) *message = os.str();
  return overflow;
}

}  // namespace dmpi::engine
