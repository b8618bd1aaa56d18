// Payload types and reduction operators of the communicators.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dmpi::comm {

enum class DType { F32, F16, BF16, I32, I64, F64 };
enum class ReduceOp { Sum, Avg, Max };

inline size_t dtype_size(DType t) {
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
const char* dtype_name(DType t);
const char* op_name(ReduceOp op);

// IEEE half <-> float (round to nearest even), for the fp16 reductions.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

}  // namespace dmpi::comm
