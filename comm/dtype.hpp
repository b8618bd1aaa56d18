// Payload types (the project's DType, base/dtype.hpp) and reduction operators of the communicators.
#pragma once
#include "base/dtype.hpp"

namespace dmpi::comm {

using dmpi::DType;
using dmpi::dtype_name;
using dmpi::dtype_size;
using dmpi::float_to_half;
using dmpi::half_to_float;
enum class ReduceOp { Sum, Avg, Max };
const char* op_name(ReduceOp op);

}  // namespace dmpi::comm
