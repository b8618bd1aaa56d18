// The LLaMA kernels. LayerNorm's eps: the default gives the constant-eps kernel bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "kernels/ref/ops_ref.hpp"
#include "tests/unit/test_util.hpp"

using namespace dmpi;
using namespace dmpi::kernels;
using dmpi::test::randn;
using dmpi::test::rel_err;

namespace {

GemmBackend& default_backend() {
  static std::unique_ptr<GemmBackend> b = make_gemm_backend(default_gemm_backend_name());
  return *b;
}
Context ctx(Precision p = Precision::F32) { return host_context(default_backend(), p); }

}  // namespace

// --- LayerNorm epsilon ---

// The layernorm kernel as it was with the constant eps (a copy): the default eps must give its
// results bit for bit.
static void layernorm_constant_eps(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                                   int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<size_t>(n) * C;
    float m = 0.f;
#pragma omp simd reduction(+ : m)
    for (int c = 0; c < C; ++c) m += x[c];
    m /= C;
    float v = 0.f;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= C;
    float s = 1.0f / std::sqrt(v + 1e-5f);
    float* o = out + static_cast<size_t>(n) * C;
#pragma omp simd
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * w[c] + b[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

TEST(LlamaKernels, LayerNormDefaultEpsIsBitIdentical) {
  const int N = 37, C = 771;
  // small variances, where eps matters
  auto x = randn<float>(N * C, 1, 1e-2), w = randn<float>(C, 2), b = randn<float>(C, 3);
  std::vector<float> o1(N * C), m1(N), r1(N), o2(N * C), m2(N), r2(N);
  layernorm_forward(ctx(), o1.data(), m1.data(), r1.data(), x.data(), w.data(), b.data(), N, C);
  layernorm_constant_eps(o2.data(), m2.data(), r2.data(), x.data(), w.data(), b.data(), N, C);
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(r1, r2);
  // the reference's default is unchanged too (its old constant, in float)
  std::vector<float> o3(N * C), m3(N), r3(N), o4(N * C), m4(N), r4(N);
  ref::layernorm_forward(o3.data(), m3.data(), r3.data(), x.data(), w.data(), b.data(), N, C);
  ref::layernorm_forward(o4.data(), m4.data(), r4.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
  EXPECT_EQ(r3, r4);
}

TEST(LlamaKernels, LayerNormEpsIsUsed) {
  const int N = 9, C = 33;
  auto x = randn<float>(N * C, 1, 0.1), w = randn<float>(C, 2), b = randn<float>(C, 3);
  std::vector<float> o1(N * C), m1(N), r1(N), o2(N * C), m2(N), r2(N);
  layernorm_forward(ctx(), o1.data(), m1.data(), r1.data(), x.data(), w.data(), b.data(), N, C, 0.02f);
  ref::layernorm_forward(o2.data(), m2.data(), r2.data(), x.data(), w.data(), b.data(), N, C, 0.02f);
  EXPECT_LT(rel_err(o1, o2), 1e-5);
  // closed form of rstd from the row's own variance
  for (int n = 0; n < N; ++n) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[n * C + c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[n * C + c] - m) * (x[n * C + c] - m);
    v /= C;
    EXPECT_NEAR(r1[n], 1.0 / std::sqrt(v + 0.02), 1e-5 / std::sqrt(v + 0.02));
  }
}
