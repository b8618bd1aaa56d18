#include "kernels/cast.hpp"

#include <algorithm>
#include <cstring>

#include "base/error.hpp"
#include "kernels/ops.hpp"

namespace dmpi::kernels {

namespace {
// Element access for the three floating storage types: load widens to fp32, store rounds to
// nearest even.
inline float ld(float x) { return x; }
inline float ld(bf16 x) { return to_float(x); }
inline float ld(_Float16 x) { return static_cast<float>(x); }
inline void st(float& d, float x) { d = x; }
inline void st(bf16& d, float x) { d = to_bf16(x); }
inline void st(_Float16& d, float x) { d = static_cast<_Float16>(x); }

template <class Fn>
void typed(DType t, const void* p, Fn&& fn) {
  void* q = const_cast<void*>(p);
  switch (t) {
    case DType::F32: fn(static_cast<float*>(q)); return;
    case DType::BF16: fn(static_cast<bf16*>(q)); return;
    case DType::F16: fn(static_cast<_Float16*>(q)); return;
    default: DMPI_FAIL("a typed buffer of " << dtype_name(t) << ": fp32, bf16 or fp16 only");
  }
}
}  // namespace

void convert(const Context& ctx, const void* src, DType ts, void* dst, DType td, size_t n) {
  if (ts == td) {
    std::memcpy(dst, src, n * dtype_size(td));
    return;
  }
  typed(td, dst, [&](auto* d) {
    typed(ts, src, [&](auto* s) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
      for (size_t i = 0; i < n; ++i) st(d[i], ld(s[i]));
    });
  });
}

void accumulate(const Context& ctx, void* dst, DType td, const void* src, DType ts, size_t n, float a) {
  typed(td, dst, [&](auto* d) {
    typed(ts, src, [&](auto* s) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
      for (size_t i = 0; i < n; ++i) st(d[i], ld(d[i]) + a * ld(s[i]));
    });
  });
}

void scale(const Context& ctx, void* p, DType t, size_t n, double a) {
  if (a == 1.0) return;
  if (t == DType::F32) return scale_inplace(ctx, static_cast<float*>(p), n, static_cast<float>(a));
  const float fa = static_cast<float>(a);
  typed(t, p, [&](auto* x) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
    for (size_t i = 0; i < n; ++i) st(x[i], fa * ld(x[i]));
  });
}

double sum_squares(const Context& ctx, const void* p, DType t, size_t n) {
  if (t == DType::F32) return sum_squares(ctx, static_cast<const float*>(p), n);
  double sq = 0;
  typed(t, p, [&](auto* x) {
#pragma omp parallel for simd reduction(+ : sq) schedule(static) num_threads(ctx.threads)
    for (size_t i = 0; i < n; ++i) {
      const double v = ld(x[i]);
      sq += v * v;
    }
  });
  return sq;
}

void zero_bytes(const Context& ctx, void* p, size_t bytes) {
  char* c = static_cast<char*>(p);
  constexpr size_t kBlock = size_t{1} << 18;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (size_t i = 0; i < bytes; i += kBlock) std::memset(c + i, 0, std::min(kBlock, bytes - i));
}

}  // namespace dmpi::kernels
