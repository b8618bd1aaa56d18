// Fused optimizer kernels over a flat fp32 range (a whole parameter buffer or a ZeRO shard).
#pragma once
#include <cstddef>
#include <cstdint>

namespace dmpi::kernels {

struct AdamParams {
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool adam_w_mode = true;       // DeepSpeed's default: decoupled weight decay (AdamW)
  bool bias_correction = true;
};

// One Adam/AdamW step at 1-based step count `step`, DeepSpeed FusedAdam semantics:
//   adam_w_mode=false: g += wd * p   (L2, before the moments)
//   m = b1 m + (1-b1) g ;  v = b2 v + (1-b2) g^2
//   denom = sqrt(v) / sqrt(1 - b2^step) + eps        (bias corrections when enabled)
//   update = (m / (1 - b1^step)) / denom ; adam_w_mode=true: update += wd * p
//   p -= lr * update
// `grad_scale` multiplies every gradient first (clipping / unscaling folded in). With
// `zero_grads` the gradient is set to 0 once used (saves the next step's zeroing pass).
void adam_step(float* p, float* g, float* m, float* v, size_t n, const AdamParams& hp, int64_t step,
               float grad_scale, bool zero_grads = false);

}  // namespace dmpi::kernels

namespace dmpi::kernels {

// torch.optim.SGD: g += wd*p; with momentum: buf = mu*buf + (1-dampening)*g (buf = g at the
// first step); nesterov: g += mu*buf, else g = buf; p -= lr*g.
struct SgdParams {
  float lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};
void sgd_step(float* p, float* g, float* buf, size_t n, const SgdParams& hp, int64_t step, float grad_scale,
              bool zero_grads = false);

// torch.optim.Adagrad: g += wd*p; clr = lr / (1 + (step-1)*lr_decay); sum += g^2;
// p -= clr * g / (sqrt(sum) + eps). `sum` starts at initial_accumulator_value.
struct AdagradParams {
  float lr = 1e-2f, lr_decay = 0, weight_decay = 0, eps = 1e-10f;
};
void adagrad_step(float* p, float* g, float* sum, size_t n, const AdagradParams& hp, int64_t step, float grad_scale,
                  bool zero_grads = false);

// Lion (DeepSpeed FusedLion): p *= 1 - lr*wd; c = b1*m + (1-b1)*g; p -= lr*sign(c);
// m = b2*m + (1-b2)*g.
struct LionParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, weight_decay = 0;
};
void lion_step(float* p, float* g, float* m, size_t n, const LionParams& hp, float grad_scale, bool zero_grads = false);

// LAMB (DeepSpeed FusedLamb) over ONE tensor: Adam moments with bias correction, update
// u = m_hat / (sqrt(v_hat) + eps) + wd*p (eps inside the sqrt when eps_inside_sqrt);
// trust ratio = ||p|| / ||u|| clamped to [min_coeff, max_coeff] (1 when either norm is 0);
// p -= lr * trust * u. The gradient buffer is used as scratch: afterwards it holds u, or 0
// with zero_grads.
struct LambParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0;
  float max_coeff = 10.0f, min_coeff = 0.01f;
  bool bias_correction = true, eps_inside_sqrt = false;
};
void lamb_step(float* p, float* g, float* m, float* v, size_t n, const LambParams& hp, int64_t step, float grad_scale,
               bool zero_grads = false);

}  // namespace dmpi::kernels
