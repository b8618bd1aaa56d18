#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "comm/mpi_env.hpp"
#include "base/rng.hpp"

namespace dmpi::test {

template <class F>
std::vector<F> randn(size_t n, uint64_t seed, double scale = 1.0) {
  Rng r(seed, 7);
  std::vector<F> v(n);
  for (auto& x : v) x = static_cast<F>(r.normal() * scale);
  return v;
}

// max |a - b| / max(max |b|, floor): a relative error that tolerates tiny entries.
template <class A, class B>
double rel_err(const A& a, const B& b, double floor = 1e-6) {
  double num = 0, den = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / den;
}

// MPI for tests that need it (singleton init, finalized at exit).
comm::MpiEnv& mpi_env();

}  // namespace dmpi::test
