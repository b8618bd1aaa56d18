#include "src/engine/flops.hpp"

namespace dmpi::engine {

double flops_per_token(const model::ModelConfig& c, int seq_len) {
  double N = static_cast<double>(model::num_matmul_params(c));
  return 6.0 * N + 6.0 * c.num_layers * static_cast<double>(seq_len) * c.hidden;
}

}  // namespace dmpi::engine
