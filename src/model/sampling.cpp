#include "src/model/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/error.hpp"

namespace dmpi::model {

std::vector<double> sampling_distribution(const float* logits, int V, const SamplingConfig& s) {
  DMPI_REQUIRE(V >= 1, "an empty vocabulary");
  DMPI_REQUIRE(s.temperature >= 0, "--temperature must be >= 0 (got " << s.temperature << ")");
  DMPI_REQUIRE(s.top_k >= 0, "--top-k must be >= 0 (got " << s.top_k << ")");
  DMPI_REQUIRE(s.top_p > 0 && s.top_p <= 1, "--top-p must be in (0, 1] (got " << s.top_p << ")");
  std::vector<double> p(static_cast<size_t>(V), 0.0);
  if (s.temperature == 0) {  // greedy: the first largest logit
    p[static_cast<size_t>(std::max_element(logits, logits + V) - logits)] = 1.0;
    return p;
  }
  // tokens by decreasing logit (ties: lower id first)
  std::vector<int> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const double mx = logits[order[0]];
  std::vector<double> e(static_cast<size_t>(V));
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += e[static_cast<size_t>(i)] = std::exp((logits[order[static_cast<size_t>(i)]] - mx) / s.temperature);
  size_t keep = s.top_k > 0 ? std::min<size_t>(static_cast<size_t>(s.top_k), e.size()) : e.size();
  if (s.top_p < 1) {  // the smallest prefix whose probability reaches top_p
    double acc = 0;
    size_t n = 0;
    while (n < keep) {
      acc += e[n++] / sum;
      if (acc >= s.top_p) break;
    }
    keep = n;
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += e[i];
  for (size_t i = 0; i < keep; ++i) p[static_cast<size_t>(order[i])] = e[i] / kept;
  return p;
}

int32_t sample_token(const float* logits, int V, const SamplingConfig& s, double u) {
  const std::vector<double> p = sampling_distribution(logits, V, s);
  double acc = 0;
  int32_t last = 0;
  for (int v = 0; v < V; ++v) {
    if (p[static_cast<size_t>(v)] <= 0) continue;
    last = v;
    acc += p[static_cast<size_t>(v)];
    if (u < acc) return v;
  }
  return last;  // u at the top end of the rounding
}

}  // namespace dmpi::model
