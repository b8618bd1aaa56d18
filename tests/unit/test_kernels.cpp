// Kernels: (1) every reference backward against central finite differences in double;
// (2) every fast kernel against the reference in float; (3) GEMM backends, fast math, norms.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/fastmath.hpp"
#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "kernels/ref/ops_ref.hpp"
#include "base/error.hpp"
#include "tests/unit/test_util.hpp"

using namespace dmpi;
using namespace dmpi::kernels;
using dmpi::test::randn;
using dmpi::test::rel_err;

namespace {

using Vec = std::vector<double>;

// The host context over the default GEMM backend, fp32 unless a test says otherwise.
GemmBackend& default_backend() {
  static std::unique_ptr<GemmBackend> b = make_gemm_backend(default_gemm_backend_name());
  return *b;
}
Context ctx(Precision p = Precision::F32) { return host_context(default_backend(), p); }
ConstView f32(const std::vector<float>& v) { return ConstView(v.data(), DType::F32, Shape{static_cast<int64_t>(v.size())}); }

// Checks d(sum(R * f(x)))/dx computed analytically against central differences, for every
// element of x. `forward` writes f(x) into out; the analytic gradient is given.
void fd_check(Vec& x, const Vec& analytic, const std::function<double()>& objective, double tol,
              const char* what) {
  ASSERT_EQ(x.size(), analytic.size());
  const double h = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double keep = x[i];
    x[i] = keep + h;
    double up = objective();
    x[i] = keep - h;
    double dn = objective();
    x[i] = keep;
    double fd = (up - dn) / (2 * h);
    double err = std::fabs(fd - analytic[i]) / std::max(1.0, std::fabs(fd));
    worst = std::max(worst, err);
  }
  EXPECT_LT(worst, tol) << what;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

TEST(RefKernelsFD, Encoder) {
  const int B = 2, T = 3, C = 4, V = 5;
  std::vector<int32_t> tok = {0, 3, 3, 4, 1, 3};
  Vec wte = randn<double>(V * C, 1), wpe = randn<double>(T * C, 2), R = randn<double>(B * T * C, 3);
  Vec out(B * T * C), dwte(V * C, 0), dwpe(T * C, 0);
  auto obj = [&] {
    ref::encoder_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, R);
  };
  ref::encoder_backward(dwte.data(), dwpe.data(), R.data(), tok.data(), B, T, C);
  fd_check(wte, dwte, obj, 1e-7, "dwte");
  fd_check(wpe, dwpe, obj, 1e-7, "dwpe");
}

TEST(RefKernelsFD, LayerNorm) {
  const int N = 3, C = 7;
  Vec x = randn<double>(N * C, 1), w = randn<double>(C, 2), b = randn<double>(C, 3), R = randn<double>(N * C, 4);
  Vec out(N * C), mean(N), rstd(N), dx(N * C, 0), dw(C, 0), db(C, 0);
  auto obj = [&] {
    ref::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    return dot(out, R);
  };
  obj();
  ref::layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  fd_check(x, dx, obj, 1e-6, "dinp");
  fd_check(w, dw, obj, 1e-6, "dw");
  fd_check(b, db, obj, 1e-6, "db");
}

TEST(RefKernelsFD, Matmul) {
  const int N = 4, C = 5, OC = 3;
  Vec x = randn<double>(N * C, 1), w = randn<double>(OC * C, 2), b = randn<double>(OC, 3), R = randn<double>(N * OC, 4);
  Vec out(N * OC), dx(N * C, 0), dw(OC * C, 0), db(OC, 0);
  auto obj = [&] {
    ref::matmul_forward(out.data(), x.data(), w.data(), b.data(), N, C, OC);
    return dot(out, R);
  };
  ref::matmul_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), N, C, OC);
  fd_check(x, dx, obj, 1e-7, "dinp");
  fd_check(w, dw, obj, 1e-7, "dw");
  fd_check(b, db, obj, 1e-7, "dbias");
}

TEST(RefKernelsFD, Attention) {
  const int B = 2, T = 4, C = 6, NH = 2;
  Vec qkv = randn<double>(B * T * 3 * C, 1), R = randn<double>(B * T * C, 2);
  Vec out(B * T * C), att(B * NH * T * T), datt(B * NH * T * T), dqkv(B * T * 3 * C, 0);
  auto obj = [&] {
    ref::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, R);
  };
  obj();
  // causal: probabilities above the diagonal are exactly zero and rows sum to one
  for (int r = 0; r < B * NH * T; ++r) {
    double s = 0;
    for (int j = 0; j < T; ++j) {
      if (j > r % T) {
        EXPECT_EQ(att[r * T + j], 0.0);
      }
      s += att[r * T + j];
    }
    EXPECT_NEAR(s, 1.0, 1e-12);
  }
  ref::attention_backward(dqkv.data(), datt.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  fd_check(qkv, dqkv, obj, 1e-6, "dqkv");
}

TEST(RefKernelsFD, Gelu) {
  const size_t N = 41;
  Vec x = randn<double>(N, 1, 2.0), R = randn<double>(N, 2), out(N), dx(N, 0);
  auto obj = [&] {
    ref::gelu_forward(out.data(), x.data(), N);
    return dot(out, R);
  };
  ref::gelu_backward(dx.data(), x.data(), R.data(), N);
  fd_check(x, dx, obj, 1e-7, "dinp");
}

TEST(RefKernelsFD, Residual) {
  const size_t N = 9;
  Vec a = randn<double>(N, 1), b = randn<double>(N, 2), R = randn<double>(N, 3), out(N), da(N, 0), db(N, 0);
  auto obj = [&] {
    ref::residual_forward(out.data(), a.data(), b.data(), N);
    return dot(out, R);
  };
  ref::residual_backward(da.data(), db.data(), R.data(), N);
  fd_check(a, da, obj, 1e-8, "da");
  fd_check(b, db, obj, 1e-8, "db");
}

TEST(RefKernelsFD, CrossEntropyWithIgnoreIndex) {
  const int N = 5, V = 7;
  std::vector<int32_t> tgt = {3, -100, 0, 6, 2};
  Vec logits = randn<double>(N * V, 1, 3.0), probs(N * V), losses(N), dlogits(N * V);
  int64_t valid = 0;
  auto obj = [&] {
    valid = ref::crossentropy_forward(losses.data(), probs.data(), logits.data(), tgt.data(), N, V, -100);
    double s = 0;
    for (double l : losses) s += l;
    return s / static_cast<double>(valid);
  };
  obj();
  EXPECT_EQ(valid, 4);
  EXPECT_EQ(losses[1], 0.0);
  // closed form for one row: -log softmax
  double mx = -1e300, sum = 0;
  for (int v = 0; v < V; ++v) mx = std::max(mx, logits[v]);
  for (int v = 0; v < V; ++v) sum += std::exp(logits[v] - mx);
  EXPECT_NEAR(losses[0], -(logits[3] - mx - std::log(sum)), 1e-12);
  ref::crossentropy_backward(dlogits.data(), probs.data(), tgt.data(), 1.0 / valid, N, V, -100);
  fd_check(logits, dlogits, obj, 1e-7, "dlogits");
}

// ---- fast (float) against reference (float) ----

TEST(FastKernels, EncoderMatchesReference) {
  const int B = 3, T = 17, C = 40, V = 11;
  std::vector<int32_t> tok(B * T);
  for (int i = 0; i < B * T; ++i) tok[i] = (i * 7) % V;
  auto wte = randn<float>(V * C, 1), wpe = randn<float>(T * C, 2), d = randn<float>(B * T * C, 3);
  std::vector<float> o1(B * T * C), o2(B * T * C), dw1(V * C, 0.5f), dw2(V * C, 0.5f), dp1(T * C, 0.25f), dp2(T * C, 0.25f);
  encoder_forward(ctx(), o1.data(), tok.data(), f32(wte), f32(wpe), B, T, C);
  ref::encoder_forward(o2.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
  EXPECT_LT(rel_err(o1, o2), 1e-7);
  encoder_backward(ctx(), dw1.data(), dp1.data(), d.data(), tok.data(), B, T, C);
  ref::encoder_backward(dw2.data(), dp2.data(), d.data(), tok.data(), B, T, C);
  EXPECT_LT(rel_err(dw1, dw2), 1e-6);
  EXPECT_LT(rel_err(dp1, dp2), 1e-6);
}

TEST(FastKernels, LayerNormMatchesReference) {
  const int N = 37, C = 96;
  auto x = randn<float>(N * C, 1, 3.0), w = randn<float>(C, 2), b = randn<float>(C, 3), d = randn<float>(N * C, 4);
  std::vector<float> o1(N * C), o2(N * C), m1(N), m2(N), r1(N), r2(N);
  layernorm_forward(ctx(), o1.data(), m1.data(), r1.data(), x.data(), w.data(), b.data(), N, C);
  ref::layernorm_forward(o2.data(), m2.data(), r2.data(), x.data(), w.data(), b.data(), N, C);
  EXPECT_LT(rel_err(o1, o2), 1e-5);
  std::vector<float> dx1(N * C, 1.0f), dx2(N * C, 1.0f), dw1(C, 0), dw2(C, 0), db1(C, 0), db2(C, 0);
  layernorm_backward(ctx(), dx1.data(), dw1.data(), db1.data(), d.data(), x.data(), w.data(), m1.data(), r1.data(), N, C);
  ref::layernorm_backward(dx2.data(), dw2.data(), db2.data(), d.data(), x.data(), w.data(), m2.data(), r2.data(), N, C);
  EXPECT_LT(rel_err(dx1, dx2), 1e-5);
  EXPECT_LT(rel_err(dw1, dw2), 1e-5);
  EXPECT_LT(rel_err(db1, db2), 1e-5);
}

TEST(FastKernels, MatmulMatchesReference) {
  const int N = 33, C = 48, OC = 70;
  auto x = randn<float>(N * C, 1), w = randn<float>(OC * C, 2), b = randn<float>(OC, 3), d = randn<float>(N * OC, 4);
  for (bool with_bias : {true, false}) {
    std::vector<float> o1(N * OC), o2(N * OC);
    matmul_forward(ctx(), o1.data(), x.data(), f32(w), with_bias ? b.data() : nullptr, N, C, OC);
    ref::matmul_forward(o2.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, C, OC);
    EXPECT_LT(rel_err(o1, o2), 1e-5);
    std::vector<float> dx1(N * C, 0.5f), dx2(N * C, 0.5f), dw1(OC * C, 0.5f), dw2(OC * C, 0.5f), db1(OC, 1), db2(OC, 1);
    matmul_backward(ctx(), dx1.data(), dw1.data(), with_bias ? db1.data() : nullptr, d.data(), x.data(), f32(w), N, C, OC);
    ref::matmul_backward(dx2.data(), dw2.data(), with_bias ? db2.data() : nullptr, d.data(), x.data(), w.data(), N, C, OC);
    EXPECT_LT(rel_err(dx1, dx2), 1e-5);
    EXPECT_LT(rel_err(dw1, dw2), 1e-5);
    EXPECT_LT(rel_err(db1, db2), 1e-5);
  }
}

TEST(FastKernels, AttentionMatchesReference) {
  const int B = 2, T = 19, C = 24, NH = 3;
  auto qkv = randn<float>(B * T * 3 * C, 1), d = randn<float>(B * T * C, 2);
  std::vector<float> o1(B * T * C), o2(B * T * C), a1(B * NH * T * T, 9.f), a2(B * NH * T * T, 9.f);
  attention_forward(ctx(), o1.data(), a1.data(), qkv.data(), B, T, C, NH);
  ref::attention_forward(o2.data(), a2.data(), qkv.data(), B, T, C, NH);
  EXPECT_LT(rel_err(o1, o2), 1e-5);
  EXPECT_LT(rel_err(a1, a2), 1e-5);
  std::vector<float> dq1(B * T * 3 * C, 0.5f), dq2(B * T * 3 * C, 0.5f), s1(B * NH * T * T), s2(B * NH * T * T);
  attention_backward(ctx(), dq1.data(), s1.data(), d.data(), qkv.data(), a1.data(), B, T, C, NH);
  ref::attention_backward(dq2.data(), s2.data(), d.data(), qkv.data(), a2.data(), B, T, C, NH);
  EXPECT_LT(rel_err(dq1, dq2), 1e-5);
}

TEST(FastKernels, GeluMatchesReference) {
  const size_t N = 10007;
  auto x = randn<float>(N, 1, 3.0), d = randn<float>(N, 2);
  std::vector<float> o1(N), o2(N), dx1(N, 1.f), dx2(N, 1.f);
  gelu_forward(ctx(), o1.data(), x.data(), N);
  ref::gelu_forward(o2.data(), x.data(), N);
  EXPECT_LT(rel_err(o1, o2), 1e-6);
  gelu_backward(ctx(), dx1.data(), x.data(), d.data(), N);
  ref::gelu_backward(dx2.data(), x.data(), d.data(), N);
  EXPECT_LT(rel_err(dx1, dx2), 1e-6);
}

TEST(FastKernels, ResidualMatchesReference) {
  const size_t N = 1001;
  auto a = randn<float>(N, 1), b = randn<float>(N, 2), d = randn<float>(N, 3);
  std::vector<float> o1(N), o2(N), da1(N, 1), da2(N, 1), db1(N, 2), db2(N, 2);
  residual_forward(ctx(), o1.data(), a.data(), b.data(), N);
  ref::residual_forward(o2.data(), a.data(), b.data(), N);
  EXPECT_EQ(rel_err(o1, o2), 0.0);
  residual_backward(ctx(), da1.data(), db1.data(), d.data(), N);
  ref::residual_backward(da2.data(), db2.data(), d.data(), N);
  EXPECT_EQ(rel_err(da1, da2), 0.0);
  EXPECT_EQ(rel_err(db1, db2), 0.0);
}

TEST(FastKernels, CrossEntropyMatchesReference) {
  const int N = 23, V = 1031;
  auto logits = randn<float>(N * V, 1, 4.0);
  std::vector<int32_t> tgt(N);
  for (int i = 0; i < N; ++i) tgt[i] = i == 5 ? -100 : (i * 131) % V;
  std::vector<float> p1 = logits, p2(N * V), l1(N), l2(N), d2(N * V);
  int64_t v1 = crossentropy_forward(ctx(), l1.data(), p1.data(), tgt.data(), N, V, -100);
  int64_t v2 = ref::crossentropy_forward(l2.data(), p2.data(), logits.data(), tgt.data(), N, V, -100);
  EXPECT_EQ(v1, v2);
  EXPECT_EQ(v1, N - 1);
  EXPECT_LT(rel_err(l1, l2), 1e-5);
  EXPECT_LT(rel_err(p1, p2), 1e-5);
  crossentropy_backward(ctx(), p1.data(), tgt.data(), 0.125f, N, V, -100);
  ref::crossentropy_backward(d2.data(), p2.data(), tgt.data(), 0.125f, N, V, -100);
  EXPECT_LT(rel_err(p1, d2), 1e-5);
}

TEST(FastMath, ExpAndTanhAccuracy) {
  double worst_exp = 0, worst_tanh = 0;
  for (double x = -80.0; x <= 80.0; x += 0.0137) {
    float fx = static_cast<float>(x);
    worst_exp = std::max(worst_exp, std::fabs(fast_exp(fx) - std::exp(double(fx))) / std::exp(double(fx)));
    worst_tanh = std::max(worst_tanh, std::fabs(fast_tanh(fx) - std::tanh(double(fx))));
  }
  EXPECT_LT(worst_exp, 5e-7);
  EXPECT_LT(worst_tanh, 5e-7);
  EXPECT_EQ(fast_tanh(0.0f), 0.0f);
  EXPECT_GT(fast_exp(-200.0f), 0.0f);  // clamped, never NaN
}

// Runs `body` once with the context of every GEMM backend built in.
static void for_each_backend(const std::function<void(const std::string&, const Context&)>& body) {
  for (const auto& name : gemm_backend_names()) {
    auto backend = make_gemm_backend(name);
    body(name, host_context(*backend));
  }
}

TEST(Gemm, AllTransposesAgainstNaive) {
  for_each_backend([](const std::string& backend, const Context& bctx) {
  SCOPED_TRACE(backend);
  const int M = 13, N = 9, K = 21;
  for (Op ta : {Op::N, Op::T})
    for (Op tb : {Op::N, Op::T}) {
      int lda = (ta == Op::N ? K : M) + 3, ldb = (tb == Op::N ? N : K) + 2, ldc = N + 1;
      auto A = randn<float>(static_cast<size_t>(ta == Op::N ? M : K) * lda, 1);
      auto B = randn<float>(static_cast<size_t>(tb == Op::N ? K : N) * ldb, 2);
      auto C = randn<float>(static_cast<size_t>(M) * ldc, 3);
      std::vector<double> ref(C.begin(), C.end());
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          double s = 0;
          for (int k = 0; k < K; ++k) {
            double a = ta == Op::N ? A[i * lda + k] : A[k * lda + i];
            double b = tb == Op::N ? B[k * ldb + j] : B[j * ldb + k];
            s += a * b;
          }
          ref[i * ldc + j] = 0.5 * s + 2.0 * ref[i * ldc + j];
        }
      gemm(bctx, ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, C.data(), ldc);
      EXPECT_LT(rel_err(C, ref), 1e-5);
    }
  });
}

TEST(Gemm, BackendsByName) {
  EXPECT_STREQ(make_gemm_backend("openblas")->name(), "openblas");
  try {
    make_gemm_backend("openblass");
    FAIL();
  } catch (const dmpi::Error& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'openblas'"), std::string::npos) << e.what();
  }
}

TEST(FastKernels, MatmulAndAttentionOnEveryBackend) {
  for_each_backend([](const std::string& backend, const Context& bctx) {
    SCOPED_TRACE(backend);
    const int N = 40, C = 48, OC = 72, B = 2, T = 20, NH = 4;
    auto x = randn<float>(N * C, 1), w = randn<float>(OC * C, 2), b = randn<float>(OC, 3), d = randn<float>(N * OC, 4);
    std::vector<float> o1(N * OC), o2(N * OC), dx1(N * C, 0), dx2(N * C, 0), dw1(OC * C, 0), dw2(OC * C, 0),
        db1(OC, 0), db2(OC, 0);
    matmul_forward(bctx, o1.data(), x.data(), f32(w), b.data(), N, C, OC);
    ref::matmul_forward(o2.data(), x.data(), w.data(), b.data(), N, C, OC);
    EXPECT_LT(rel_err(o1, o2), 1e-5);
    matmul_backward(bctx, dx1.data(), dw1.data(), db1.data(), d.data(), x.data(), f32(w), N, C, OC);
    ref::matmul_backward(dx2.data(), dw2.data(), db2.data(), d.data(), x.data(), w.data(), N, C, OC);
    EXPECT_LT(rel_err(dx1, dx2), 1e-5);
    EXPECT_LT(rel_err(dw1, dw2), 1e-5);
    auto qkv = randn<float>(B * T * 3 * C, 5), dy = randn<float>(B * T * C, 6);
    std::vector<float> y1(B * T * C), y2(B * T * C), a1(B * NH * T * T), a2(B * NH * T * T), s1(a1.size()),
        s2(a2.size()), dq1(qkv.size(), 0), dq2(qkv.size(), 0);
    attention_forward(bctx, y1.data(), a1.data(), qkv.data(), B, T, C, NH);
    ref::attention_forward(y2.data(), a2.data(), qkv.data(), B, T, C, NH);
    EXPECT_LT(rel_err(y1, y2), 1e-5);
    attention_backward(bctx, dq1.data(), s1.data(), dy.data(), qkv.data(), a1.data(), B, T, C, NH);
    ref::attention_backward(dq2.data(), s2.data(), dy.data(), qkv.data(), a2.data(), B, T, C, NH);
    EXPECT_LT(rel_err(dq1, dq2), 1e-5);
  });
}

TEST(Gemm, Bf16MatchesFp32OnRoundedInputs) {
  const int M = 17, N = 300, K = 600;  // K spans several conversion tiles
  auto A = randn<float>(M * K, 1), B = randn<float>(N * K, 2);
  std::vector<bf16> a16(A.size()), b16(B.size());
  for (size_t i = 0; i < A.size(); ++i) {
    a16[i] = to_bf16(A[i]);
    A[i] = to_float(a16[i]);
  }
  for (size_t i = 0; i < B.size(); ++i) {
    b16[i] = to_bf16(B[i]);
    B[i] = to_float(b16[i]);
  }
  std::vector<float> c32(M * N, 1.0f), c16(M * N, 1.0f);
  gemm(ctx(), Op::N, Op::T, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.5f, c32.data(), N);
  default_backend().gemm_bf16(Op::N, Op::T, M, N, K, 1.0f, a16.data(), K, b16.data(), K, 0.5f, c16.data(), N);
  EXPECT_LT(rel_err(c16, c32), 1e-5);
}

// A backend built after another was destroyed (often at the same address: every Trainer of a
// test builds one) multiplies correctly on every thread that used the first. The oneDNN backend
// once kept each thread's stream keyed by the backend's address and failed here with "could not
// execute a primitive".
TEST(Gemm, BackendBuiltAfterAnotherWasDestroyed) {
  const int M = 8, N = 12, K = 16;
  std::vector<bf16> a16(M * K), b16(N * K);
  std::vector<float> want(M * N, 0.0f);
  for (int i = 0; i < M * K; ++i) a16[i] = to_bf16(float(i % 7) - 3.0f);
  for (int i = 0; i < N * K; ++i) b16[i] = to_bf16(float(i % 5) - 2.0f);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k) want[m * N + n] += to_float(a16[m * K + k]) * to_float(b16[n * K + k]);
  for (const std::string& name : gemm_backend_names())
    for (int round = 0; round < 4; ++round) {
      auto backend = make_gemm_backend(name);
      std::vector<float> c(M * N, 0.0f);
      backend->gemm_bf16(Op::N, Op::T, M, N, K, 1.0f, a16.data(), K, b16.data(), K, 0.0f, c.data(), N);
      EXPECT_EQ(c, want) << name << " round " << round;  // small integers: exact in fp32
    }
}

TEST(Gemm, RejectsBadLeadingDimension) {
  std::vector<float> a(16), b(16), c(16);
  EXPECT_THROW(gemm(ctx(), Op::N, Op::N, 4, 4, 4, 1.f, a.data(), 3, b.data(), 4, 0.f, c.data(), 4), dmpi::Error);
}

TEST(Bf16, RoundToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties to even (down to 1.0)
  EXPECT_EQ(to_bf16(1.00390625f).bits, 0x3f80);
  // 1 + 3*2^-8 is halfway: ties to even (up)
  EXPECT_EQ(to_bf16(1.01171875f).bits, 0x3f82);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(NAN))));
}

TEST(Norm, SumSquaresMatchesDouble) {
  auto x = randn<float>(100003, 5);
  double s = 0;
  for (float v : x) s += double(v) * v;
  EXPECT_NEAR(sum_squares(ctx(), x.data(), x.size()), s, 1e-9 * s);
  EXPECT_EQ(sum_squares(ctx(), x.data(), 0), 0.0);
}

// The GEMM autocast: bf16 and fp16 round both operands, then multiply with fp32 accumulation;
// the reference does the same rounding and sums in double.
TEST(GemmPrecision, Bf16AndFp16MatchRoundedOperandsInDouble) {
  using namespace dmpi::kernels;
  const int M = 37, N = 29, K = 70;
  for (Precision prec : {Precision::BF16, Precision::F16}) {
    for (int t = 0; t < 4; ++t) {
      const Op ta = t & 1 ? Op::T : Op::N, tb = t & 2 ? Op::T : Op::N;
      const int ar = ta == Op::N ? M : K, ac = ta == Op::N ? K : M, br = tb == Op::N ? K : N, bc = tb == Op::N ? N : K;
      const int lda = ac + 3, ldb = bc + 5, ldc = N + 2;
      dmpi::Rng rng(11, static_cast<uint64_t>(t));
      std::vector<float> A(static_cast<size_t>(ar) * lda), B(static_cast<size_t>(br) * ldb), C(static_cast<size_t>(M) * ldc);
      for (auto& x : A) x = static_cast<float>(rng.normal());
      for (auto& x : B) x = static_cast<float>(rng.normal());
      for (auto& x : C) x = static_cast<float>(rng.normal());
      auto round = [&](float x) {
        return prec == Precision::BF16 ? dmpi::to_float(dmpi::to_bf16(x)) : static_cast<float>(static_cast<_Float16>(x));
      };
      const float alpha = 0.75f, beta = 0.5f;
      std::vector<double> ref(C.begin(), C.end());
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          double acc = 0;
          for (int k = 0; k < K; ++k) {
            float a = ta == Op::N ? A[static_cast<size_t>(i) * lda + k] : A[static_cast<size_t>(k) * lda + i];
            float b = tb == Op::N ? B[static_cast<size_t>(k) * ldb + j] : B[static_cast<size_t>(j) * ldb + k];
            acc += static_cast<double>(round(a)) * round(b);
          }
          ref[static_cast<size_t>(i) * ldc + j] = alpha * acc + beta * C[static_cast<size_t>(i) * ldc + j];
        }
      gemm(ctx(prec), ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
      double worst = 0;
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          const size_t o = static_cast<size_t>(i) * ldc + j;
          worst = std::max(worst, std::fabs(C[o] - ref[o]) / (1.0 + std::fabs(ref[o])));
        }
      EXPECT_LT(worst, 1e-5) << precision_name(prec) << " transposes " << t;
    }
  }
  // fp16 has fp16's range: an operand beyond 65504 becomes inf (what the loss scaler detects)
  std::vector<float> a = {70000.0f}, b = {1.0f}, c = {0.0f};
  gemm(ctx(Precision::F16), Op::N, Op::N, 1, 1, 1, 1.0f, a.data(), 1, b.data(), 1, 0.0f, c.data(), 1);
  EXPECT_TRUE(std::isinf(c[0]));
}

// A 16-bit operand is multiplied as it is stored (the parameter stores hand the GEMMs their
// 16-bit weights): bf16 operands are not rounded again (a doubled bf16 copy doubles the product,
// also for a strided block), fp16 operands are widened exactly (same product as their fp32 values
// rounded), and a bf16 operand in an fp16 GEMM is refused.
TEST(GemmPrecision, SixteenBitOperandsAreMultipliedAsStored) {
  const int M = 23, N = 31, K = 45, ldb = N + 7;  // B is a strided K x N block of a K x ldb buffer
  dmpi::Rng rng(5, 1);
  std::vector<float> A(static_cast<size_t>(M) * K), B(static_cast<size_t>(K) * ldb);
  for (auto& x : A) x = static_cast<float>(rng.normal());
  for (auto& x : B) x = dmpi::to_float(dmpi::to_bf16(static_cast<float>(rng.normal())));  // exactly bf16
  std::vector<dmpi::bf16> copy(B.size()), doubled(B.size());
  for (size_t i = 0; i < B.size(); ++i) copy[i] = dmpi::to_bf16(B[i]), doubled[i] = dmpi::to_bf16(2.0f * B[i]);
  auto run = [&](Precision prec, Operand b) {
    std::vector<float> C(static_cast<size_t>(M) * N, 0.0f);
    gemm(ctx(prec), Op::N, Op::N, M, N, K, 1.0f, operand(A.data(), K), b, 0.0f, C.data(), N);
    return C;
  };
  const auto rounded = run(Precision::BF16, operand(B.data() + 3, ldb));  // columns 3 .. 3 + N - 1 of each row
  EXPECT_EQ(run(Precision::BF16, {copy.data() + 3, DType::BF16, ldb}), rounded) << "the bf16 values are the same";
  const auto twice = run(Precision::BF16, {doubled.data() + 3, DType::BF16, ldb});
  for (size_t i = 0; i < twice.size(); ++i) ASSERT_EQ(twice[i], 2.0f * rounded[i]) << "the bf16 operand must be what is multiplied";
  // fp16: the stored fp16 values give the product of their fp32 values rounded to fp16
  std::vector<_Float16> h(B.size());
  for (size_t i = 0; i < B.size(); ++i) h[i] = static_cast<_Float16>(B[i]);
  EXPECT_EQ(run(Precision::F16, {h.data() + 3, DType::F16, ldb}), run(Precision::F16, operand(B.data() + 3, ldb)));
  EXPECT_THROW(run(Precision::F16, {copy.data(), DType::BF16, ldb}), dmpi::Error);
}

// The embedding lookup reads the rows of 16-bit tables as they are stored, and a null wpe means
// no learned positions.
TEST(FastKernels, EmbeddingLookupReadsSixteenBitTables) {
  const int B = 2, T = 5, C = 24, V = 11;
  dmpi::Rng rng(9, 2);
  std::vector<float> wte(static_cast<size_t>(V) * C), wpe(static_cast<size_t>(T) * C);
  for (auto& x : wte) x = dmpi::to_float(dmpi::to_bf16(static_cast<float>(rng.normal())));
  for (auto& x : wpe) x = dmpi::to_float(dmpi::to_bf16(static_cast<float>(rng.normal())));
  std::vector<int32_t> tok(static_cast<size_t>(B) * T);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = static_cast<int32_t>((i * 7 + 3) % V);
  std::vector<float> want(tok.size() * C), got(want.size());
  encoder_forward(ctx(), want.data(), tok.data(), f32(wte), f32(wpe), B, T, C);
  std::vector<dmpi::bf16> wte16(wte.size()), wpe16(wpe.size());
  for (size_t i = 0; i < wte.size(); ++i) wte16[i] = dmpi::to_bf16(wte[i]);
  for (size_t i = 0; i < wpe.size(); ++i) wpe16[i] = dmpi::to_bf16(wpe[i]);
  encoder_forward(ctx(), got.data(), tok.data(), ConstView(wte16.data(), DType::BF16, Shape{V, C}),
                  ConstView(wpe16.data(), DType::BF16, Shape{T, C}), B, T, C);
  EXPECT_EQ(got, want);
  std::vector<_Float16> wte_h(wte.size());
  for (size_t i = 0; i < wte.size(); ++i) wte_h[i] = static_cast<_Float16>(wte[i]);
  encoder_forward(ctx(), got.data(), tok.data(), ConstView(wte_h.data(), DType::F16, Shape{V, C}), ConstView(), B, T, C);
  for (size_t bt = 0; bt < tok.size(); ++bt)
    for (int c = 0; c < C; ++c)
      ASSERT_EQ(got[bt * C + c], static_cast<float>(wte_h[static_cast<size_t>(tok[bt]) * C + c])) << "no positions: the row itself";
}
