// Element-wise work on typed buffers (fp32, bf16, fp16): conversions with round-to-nearest-even,
// scaled accumulation in fp32, scaling, and sums of squares. The parameter stores use these for
// every move between storage dtypes.
#pragma once
#include <cstddef>

#include "base/dtype.hpp"
#include "kernels/context.hpp"

namespace dmpi::kernels {

// dst = src, rounded to dst's dtype (a copy when the dtypes agree)
void convert(const Context& ctx, const void* src, DType ts, void* dst, DType td, size_t n);
// dst += a * src, in fp32, rounded to dst's dtype
void accumulate(const Context& ctx, void* dst, DType td, const void* src, DType ts, size_t n, float a);
// x *= a (nothing when a is 1)
void scale(const Context& ctx, void* x, DType t, size_t n, double a);
// sum of x^2 in double
double sum_squares(const Context& ctx, const void* x, DType t, size_t n);

// every byte of [p, p + bytes) set to 0, in parallel
void zero_bytes(const Context& ctx, void* p, size_t bytes);

// pointer to element i of a typed buffer
inline void* element(void* base, DType t, size_t i) { return static_cast<char*>(base) + i * dtype_size(t); }
inline const void* element(const void* base, DType t, size_t i) { return static_cast<const char*>(base) + i * dtype_size(t); }

}  // namespace dmpi::kernels
