#include "kernels/optim.hpp"

#include <cmath>

namespace dmpi::kernels {

void adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamParams& hp, int64_t step,
               float grad_scale, bool zero_grads) {
  const float b1 = hp.beta1, b2 = hp.beta2;
  float bc1 = 1.0f, bc2_sqrt = 1.0f;
  if (hp.bias_correction) {
    bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(b1), static_cast<double>(step)));
    bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(b2), static_cast<double>(step))));
  }
  const float step_size = hp.lr / bc1;
  const float wd = hp.weight_decay, lr = hp.lr, eps = hp.eps;
  const bool decoupled = hp.adam_w_mode;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) {
    float gi = g[i] * grad_scale;
    if (zero_grads) g[i] = 0.0f;
    if (!decoupled) gi += wd * p[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = std::sqrt(vi) / bc2_sqrt + eps;
    float upd = step_size * mi / denom;
    if (decoupled) upd += lr * wd * p[i];
    p[i] -= upd;
  }
}

}  // namespace dmpi::kernels
