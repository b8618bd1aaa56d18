// Choosing the next token from a row of logits: greedy (temperature 0), or sampling at a
// temperature from the top-k tokens and/or the smallest set whose probability reaches top-p
// (nucleus), with a seeded generator (the same seed, the same text).
#pragma once
#include <cstdint>
#include <vector>

#include "base/rng.hpp"

namespace dmpi::model {

struct SamplingConfig {
  double temperature = 1.0;  // 0: greedy
  int top_k = 0;             // 0: every token
  double top_p = 1.0;        // 1: no nucleus cut
};

// The token drawn from logits[V]; u in [0, 1) is the uniform draw used (greedy ignores it).
int32_t sample_token(const float* logits, int V, const SamplingConfig& s, double u);
inline int32_t sample_token(const float* logits, int V, const SamplingConfig& s, Rng& rng) {
  return sample_token(logits, V, s, rng.uniform());
}
// The probabilities sample_token draws from (tests): softmax at the temperature, renormalised over
// the tokens top-k and top-p keep, zero elsewhere.
std::vector<double> sampling_distribution(const float* logits, int V, const SamplingConfig& s);

}  // namespace dmpi::model
