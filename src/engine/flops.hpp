// Training FLOPs per token (documented in README "Throughput and MFU"):
//   6 * N  +  6 * L * T * C
// N counts every parameter that takes part in a matmul (all parameters except the position
// embeddings; the tied embedding counts once, as the LM head). 6N is forward (2N) plus
// backward (4N). The attention term counts the score (QK^T) and value (PV) products for the
// causal half that is computed: per layer and token, forward 2*T*C, times 3 for fwd+bwd.
// (PaLM's 12*L*T*C counts the full T x T square.)
#pragma once
#include "src/model/model.hpp"

namespace dmpi::engine {

double flops_per_token(const model::ModelConfig& c, int seq_len);

}  // namespace dmpi::engine
