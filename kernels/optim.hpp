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
