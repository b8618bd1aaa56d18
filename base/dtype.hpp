// Element types of the whole project: the tensors' dtype, the communicators' payload type, and
// the 16-bit storage types with their round-to-nearest-even conversions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dmpi {

enum class DType { F32, F16, BF16, I32, I64, F64 };

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::F64: return 8;
  }
  return 0;
}
const char* dtype_name(DType t);  // "float", "half", "bfloat16", ...
// "fp32" | "bf16" | "fp16" (the ds_config's spelling) for the floating storage types
const char* dtype_short_name(DType t);

struct bf16 {
  uint16_t bits = 0;
};

inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return bf16{static_cast<uint16_t>((u >> 16) | 0x40)};  // NaN stays NaN
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>((u + rounding) >> 16)};
}

inline float to_float(bf16 h) {
  uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half <-> float (round to nearest even), without the compiler's _Float16.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

// The C++ type of a floating storage dtype.
template <DType T> struct dtype_traits;
template <> struct dtype_traits<DType::F32> { using type = float; };
template <> struct dtype_traits<DType::BF16> { using type = bf16; };
template <> struct dtype_traits<DType::F16> { using type = _Float16; };
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }
template <> constexpr DType dtype_of<_Float16>() { return DType::F16; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }

}  // namespace dmpi
