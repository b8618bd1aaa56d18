#include "comm/dtype.hpp"

namespace dmpi::comm {

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

}  // namespace dmpi::comm
