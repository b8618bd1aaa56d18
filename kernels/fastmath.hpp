// Vectorizable exp/tanh for float: plain arithmetic and bit tricks only, so GCC vectorizes
// them inside `#pragma omp simd` loops without -ffast-math. Relative error of fast_exp is
// below 2e-7 on [-87, 88]; fast_tanh has absolute error below 2e-7.
#pragma once
#include <cstdint>

namespace dmpi::kernels {

inline float fast_exp(float x) {
  // Clamp to the range where 2^n stays a normal float.
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float log2e = 1.44269504088896341f;
  const float ln2_hi = 0.693145751953125f;     // high bits of ln 2 (exact in float)
  const float ln2_lo = 1.428606765330187e-06f; // ln 2 - ln2_hi
  // n = round(x * log2e) by the 1.5 * 2^23 trick (floorf would block GCC's vectorizer
  // without -ffast-math); |x * log2e| < 2^22 after the clamp.
  const float magic = 12582912.0f;
  float n = (x * log2e + magic) - magic;
  float r = x - n * ln2_hi - n * ln2_lo;       // |r| <= ln2/2
  // e^r by its Taylor series to degree 7, Horner form.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);  // 2^n (memcpy here blocks GCC's vectorizer)
}

inline float fast_tanh(float x) {
  float ax = x < 0.0f ? -x : x;
  float e = fast_exp(-2.0f * ax);              // in (0, 1]: no overflow
  float t = (1.0f - e) / (1.0f + e);
  return x < 0.0f ? -t : t;
}

}  // namespace dmpi::kernels
