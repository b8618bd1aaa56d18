// The LLaMA kernels and the causal attention: (1) each reference backward against central finite
// differences in double; (2) each fast kernel against its reference in float (odd sizes, every
// GEMM backend for the attention, both of its thread layouts); (3) closed forms: the layernorm's
// default eps bit for bit, RoPE's rotation, the KV-cache attention against the whole prompt.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
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

using Vec = std::vector<double>;

GemmBackend& default_backend() {
  static std::unique_ptr<GemmBackend> b = make_gemm_backend(default_gemm_backend_name());
  return *b;
}
Context ctx(Precision p = Precision::F32) { return host_context(default_backend(), p); }

// max over x of |fd - analytic| / max(1, |fd|) for d(objective)/dx by central differences.
void fd_check(Vec& x, const Vec& analytic, const std::function<double()>& objective, double tol, const char* what) {
  ASSERT_EQ(x.size(), analytic.size());
  const double h = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = objective();
    x[i] = keep - h;
    const double dn = objective();
    x[i] = keep;
    const double fd = (up - dn) / (2 * h);
    worst = std::max(worst, std::fabs(fd - analytic[i]) / std::max(1.0, std::fabs(fd)));
  }
  EXPECT_LT(worst, tol) << what;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

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

// --- RMSNorm ---

TEST(LlamaRefFD, RmsNorm) {
  const int N = 3, C = 7;
  Vec x = randn<double>(N * C, 1), w = randn<double>(C, 2), R = randn<double>(N * C, 4);
  Vec out(N * C), rstd(N), dx(N * C, 0), dw(C, 0);
  auto obj = [&] {
    ref::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5);
    return dot(out, R);
  };
  obj();
  ref::rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  fd_check(x, dx, obj, 1e-6, "dinp");
  fd_check(w, dw, obj, 1e-6, "dw");
}

TEST(LlamaKernels, RmsNormMatchesReference) {
  const int N = 53, C = 197;
  const float eps = 1e-6f;
  auto x = randn<float>(N * C, 1), w = randn<float>(C, 2), d = randn<float>(N * C, 3);
  std::vector<float> o1(N * C), r1(N), o2(N * C), r2(N);
  rmsnorm_forward(ctx(), o1.data(), r1.data(), x.data(), w.data(), N, C, eps);
  ref::rmsnorm_forward(o2.data(), r2.data(), x.data(), w.data(), N, C, eps);
  EXPECT_LT(rel_err(o1, o2), 1e-6);
  EXPECT_LT(rel_err(r1, r2), 1e-6);
  // closed form: rstd = 1 / sqrt(mean(x^2) + eps)
  for (int n = 0; n < N; ++n) {
    double ss = 0;
    for (int c = 0; c < C; ++c) ss += double(x[n * C + c]) * x[n * C + c];
    EXPECT_NEAR(r1[n], 1.0 / std::sqrt(ss / C + eps), 1e-6 * r1[n]);
  }
  std::vector<float> dx1(N * C, 0.5f), dx2(N * C, 0.5f), dw1(C, 0.25f), dw2(C, 0.25f);
  rmsnorm_backward(ctx(), dx1.data(), dw1.data(), d.data(), x.data(), w.data(), r1.data(), N, C);
  ref::rmsnorm_backward(dx2.data(), dw2.data(), d.data(), x.data(), w.data(), r2.data(), N, C);
  EXPECT_LT(rel_err(dx1, dx2), 1e-5);
  EXPECT_LT(rel_err(dw1, dw2), 1e-5);
  // deterministic dw for a fixed thread count
  std::vector<float> dx3(N * C, 0.5f), dw3(C, 0.25f);
  rmsnorm_backward(ctx(), dx3.data(), dw3.data(), d.data(), x.data(), w.data(), r1.data(), N, C);
  EXPECT_EQ(dw1, dw3);
}

// --- RoPE ---

TEST(LlamaRefFD, RopeBackwardIsTheTranspose) {
  // rope is linear in x: d(sum R * rope(x))/dx = rope_backward(R)
  const int B = 2, T = 3, H = 2, hs = 6, stride = 15;  // stride > H*hs: the other channels are not touched
  Vec x = randn<double>(B * T * stride, 1), R = randn<double>(B * T * stride, 2);
  auto obj = [&] {
    Vec y = x;
    ref::rope_forward(y.data(), B, T, H, hs, stride, 100.0, 5);
    return dot(y, R);
  };
  Vec g = R;
  ref::rope_backward(g.data(), B, T, H, hs, stride, 100.0, 5);
  fd_check(x, g, obj, 1e-7, "dx");
}

TEST(LlamaKernels, RopeMatchesReferenceAndClosedForm) {
  const int B = 3, T = 29, H = 5, hs = 18, stride = H * hs + 7, pos0 = 11;
  const float base = 10000.0f;
  auto x = randn<float>(B * T * stride, 1);
  std::vector<float> y1 = x, y2 = x;
  rope_forward(ctx(), y1.data(), B, T, H, hs, stride, base, pos0);
  ref::rope_forward(y2.data(), B, T, H, hs, stride, base, pos0);
  EXPECT_LT(rel_err(y1, y2), 1e-6);
  const int half = hs / 2;
  for (int bt = 0; bt < B * T; ++bt) {
    const int t = bt % T;
    for (int c = H * hs; c < stride; ++c) ASSERT_EQ(y1[bt * stride + c], x[bt * stride + c]) << "outside the heads";
    for (int h = 0; h < H; ++h) {
      const size_t o = static_cast<size_t>(bt) * stride + h * hs;
      // channel pair 0 turns by the position itself (base^0 = 1); the last pair by pos * base^(-(hs-2)/hs)
      for (int i : {0, half - 1}) {
        const double a = (pos0 + t) * std::pow(10000.0, -2.0 * i / hs);
        const double x1 = x[o + i], x2 = x[o + i + half];
        EXPECT_NEAR(y1[o + i], x1 * std::cos(a) - x2 * std::sin(a), 1e-5);
        EXPECT_NEAR(y1[o + i + half], x2 * std::cos(a) + x1 * std::sin(a), 1e-5);
      }
    }
  }
  // backward: the inverse rotation (reference), and backward(forward(x)) = x
  std::vector<float> d1 = y1, d2 = y1;
  rope_backward(ctx(), d1.data(), B, T, H, hs, stride, base, pos0);
  ref::rope_backward(d2.data(), B, T, H, hs, stride, base, pos0);
  EXPECT_LT(rel_err(d1, d2), 1e-6);
  EXPECT_LT(rel_err(d1, x), 2e-6);
  // one row at position p0 + t rotated alone equals that row of the sequence (the KV cache's use)
  std::vector<float> one(x.begin() + 4 * stride, x.begin() + 5 * stride);  // (b 0, t 4)
  rope_forward(ctx(), one.data(), 1, 1, H, hs, stride, base, pos0 + 4);
  for (int c = 0; c < stride; ++c) ASSERT_EQ(one[c], y1[4 * stride + c]);
}

// --- SwiGLU ---

TEST(LlamaRefFD, SwiGlu) {
  const int N = 3, F = 5;
  Vec x = randn<double>(N * 2 * F, 1, 2.0), R = randn<double>(N * F, 2), out(N * F), dx(N * 2 * F, 0);
  auto obj = [&] {
    ref::swiglu_forward(out.data(), x.data(), N, F);
    return dot(out, R);
  };
  ref::swiglu_backward(dx.data(), x.data(), R.data(), N, F);
  fd_check(x, dx, obj, 1e-7, "dinp");
}

TEST(LlamaKernels, SwiGluMatchesReference) {
  const int N = 41, F = 301;
  auto x = randn<float>(N * 2 * F, 1, 4.0), d = randn<float>(N * F, 2);
  std::vector<float> o1(N * F), o2(N * F), dx1(N * 2 * F, 1.f), dx2(N * 2 * F, 1.f);
  swiglu_forward(ctx(), o1.data(), x.data(), N, F);
  ref::swiglu_forward(o2.data(), x.data(), N, F);
  EXPECT_LT(rel_err(o1, o2), 1e-6);
  // closed form at one point: silu(gate) * up
  const double g = x[7], u = x[F + 7];
  EXPECT_NEAR(o1[7], g / (1 + std::exp(-g)) * u, 1e-5 * (1 + std::fabs(o1[7])));
  swiglu_backward(ctx(), dx1.data(), x.data(), d.data(), N, F);
  ref::swiglu_backward(dx2.data(), x.data(), d.data(), N, F);
  EXPECT_LT(rel_err(dx1, dx2), 1e-6);
}

// --- Causal attention with grouped-query heads ---

TEST(LlamaRefFD, CausalAttentionGqa) {
  for (int KVH : {1, 2, 4}) {
    SCOPED_TRACE(KVH);
    const int B = 2, T = 4, NH = 4, hs = 3, R = (NH + 2 * KVH) * hs;
    Vec qkv = randn<double>(B * T * R, 1), D = randn<double>(B * T * NH * hs, 2);
    Vec out(B * T * NH * hs), att(B * NH * T * T), datt(att.size()), dqkv(qkv.size(), 0);
    auto obj = [&] {
      ref::causal_attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, KVH, hs);
      return dot(out, D);
    };
    obj();
    ref::causal_attention_backward(dqkv.data(), datt.data(), D.data(), qkv.data(), att.data(), B, T, NH, KVH, hs);
    fd_check(qkv, dqkv, obj, 1e-6, "dqkv");
  }
}

// With KVH == NH the GQA reference is the multi-head reference.
TEST(LlamaRefFD, CausalAttentionMhaIsTheOldReference) {
  const int B = 2, T = 5, NH = 3, hs = 4, C = NH * hs;
  Vec qkv = randn<double>(B * T * 3 * C, 1), D = randn<double>(B * T * C, 2);
  Vec o1(B * T * C), o2(o1.size()), a1(B * NH * T * T), a2(a1.size()), s1(a1.size()), s2(a1.size()),
      g1(qkv.size(), 0), g2(qkv.size(), 0);
  ref::causal_attention_forward(o1.data(), a1.data(), qkv.data(), B, T, NH, NH, hs);
  ref::attention_forward(o2.data(), a2.data(), qkv.data(), B, T, C, NH);
  EXPECT_LT(rel_err(o1, o2), 1e-14);
  ref::causal_attention_backward(g1.data(), s1.data(), D.data(), qkv.data(), a1.data(), B, T, NH, NH, hs);
  ref::attention_backward(g2.data(), s2.data(), D.data(), qkv.data(), a2.data(), B, T, C, NH);
  EXPECT_LT(rel_err(g1, g2), 1e-14);
}

namespace {

// The fast kernel (forward, probabilities only, backward) against the reference for one shape.
void check_causal(const Context& c, int B, int T, int NH, int KVH, int hs, double tol = 1e-5) {
  SCOPED_TRACE(::testing::Message() << "B=" << B << " T=" << T << " NH=" << NH << " KVH=" << KVH << " hs=" << hs
                                    << " threads=" << c.threads << " " << c.gemm->name());
  const int R = (NH + 2 * KVH) * hs, OC = NH * hs;
  auto qkv = randn<float>(static_cast<size_t>(B) * T * R, 1), d = randn<float>(static_cast<size_t>(B) * T * OC, 2);
  const size_t n = causal_attention_saved_numel(B, T, NH);
  std::vector<float> o1(static_cast<size_t>(B) * T * OC, 7.f), o2(o1.size()), a1(n, 9.f), a2(static_cast<size_t>(B) * NH * T * T);
  causal_attention_forward(c, o1.data(), a1.data(), qkv.data(), B, T, NH, KVH, hs);
  ref::causal_attention_forward(o2.data(), a2.data(), qkv.data(), B, T, NH, KVH, hs);
  EXPECT_LT(rel_err(o1, o2), tol);
  // the saved layout: P[b,h,i,j] for j <= i at causal_attention_index; the rest of the diagonal tile 0
  double worst = 0;
  size_t seen = 0;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int i = 0; i < T; ++i) {
        const int i1 = std::min(T, (i / kCausalBlock + 1) * kCausalBlock);
        for (int j = 0; j < i1; ++j) {
          const float got = a1[causal_attention_index(T, NH, b, h, i, j)];
          ++seen;
          if (j > i) {
            ASSERT_EQ(got, 0.0f) << b << " " << h << " " << i << " " << j;
          } else {
            worst = std::max(worst, std::fabs(double(got) - a2[((static_cast<size_t>(b) * NH + h) * T + i) * T + j]));
          }
        }
      }
  EXPECT_EQ(seen, n) << "the layout covers the saved buffer once";
  EXPECT_LT(worst, tol);
  std::vector<float> p(n, 5.f);
  causal_attention_probs(c, p.data(), qkv.data(), B, T, NH, KVH, hs);
  EXPECT_EQ(p, a1) << "the recompute gives the forward's probabilities";
  std::vector<float> g1(qkv.size(), 0.5f), g2(qkv.size(), 0.5f), s1(n, 3.f), s2(a2.size());
  causal_attention_backward(c, g1.data(), s1.data(), d.data(), qkv.data(), a1.data(), B, T, NH, KVH, hs);
  ref::causal_attention_backward(g2.data(), s2.data(), d.data(), qkv.data(), a2.data(), B, T, NH, KVH, hs);
  EXPECT_LT(rel_err(g1, g2), tol);
}

}  // namespace

TEST(LlamaKernels, CausalAttentionMatchesReference) {
  const Context c = ctx();
  constexpr int kB = kCausalBlock;
  check_causal(c, 2, kB / 2 + 6, 4, 4, 16);  // MHA, T not a multiple of the block
  check_causal(c, 1, 2 * kB + 2, 8, 2, 8);   // GQA 8/2, three blocks (the last of 2 rows)
  check_causal(c, 2, 1, 8, 2, 8);            // T = 1
  check_causal(c, 1, kB, 3, 1, 5);           // MQA, exactly one block, odd head size
}

// Both thread layouts: (b, head) tasks with one-thread GEMMs (one thread, or at least as many
// tasks as threads) and the phased order (fewer tasks than threads).
TEST(LlamaKernels, CausalAttentionBothThreadLayouts) {
  const int blas = blas_threads();
  for (int threads : {1, 17}) {
    Context c = ctx();
    c.threads = threads;
    check_causal(c, 1, kCausalBlock + 36, 4, 1, 16);  // two blocks; backward: 1 task (< 17 threads)
    check_causal(c, 2, kCausalBlock + 3, 8, 2, 8);    // 4 kv tasks, 16 q tasks (< 17)
  }
  EXPECT_EQ(blas_threads(), blas) << "OpenBLAS's thread count is restored";
}

TEST(LlamaKernels, CausalAttentionOnEveryBackend) {
  for (const auto& name : gemm_backend_names()) {
    auto backend = make_gemm_backend(name);
    const Context c = host_context(*backend);
    check_causal(c, 2, kCausalBlock + 26, 8, 2, 16);
    check_causal(c, 2, kCausalBlock - 51, 4, 4, 8);
  }
}

// In bf16 the products round their operands to bf16 (as every GEMM does): close to fp32, not equal.
TEST(LlamaKernels, CausalAttentionBf16IsCloseToFp32) {
  const int B = 1, T = 80, NH = 4, KVH = 2, hs = 16, R = (NH + 2 * KVH) * hs;
  auto qkv = randn<float>(static_cast<size_t>(B) * T * R, 1);
  const size_t n = causal_attention_saved_numel(B, T, NH);
  std::vector<float> o1(static_cast<size_t>(B) * T * NH * hs), o2(o1.size()), a1(n), a2(n);
  causal_attention_forward(ctx(), o1.data(), a1.data(), qkv.data(), B, T, NH, KVH, hs);
  causal_attention_forward(ctx(Precision::BF16), o2.data(), a2.data(), qkv.data(), B, T, NH, KVH, hs);
  const double e = rel_err(o2, o1);
  EXPECT_LT(e, 3e-2);
  EXPECT_GT(e, 0.0);
}

// The (b, head) tasks run their GEMMs concurrently, one per thread: the backends must allow it
// (oneDNN's bf16 matmul once shared a scratchpad and a stream between threads, which gave wrong
// products now and then). Repeated runs are identical, and equal a one-thread run to rounding (not
// bit for bit: with one thread oneDNN threads each GEMM itself, in another order).
TEST(LlamaKernels, CausalAttentionConcurrentGemmsOnEveryBackend) {
  for (const auto& name : gemm_backend_names()) {
    auto backend = make_gemm_backend(name);
    for (Precision p : {Precision::F32, Precision::BF16}) {
      SCOPED_TRACE(name + " " + precision_name(p));
      const int B = 2, T = 150, NH = 8, KVH = 4, hs = 32, R = (NH + 2 * KVH) * hs;
      auto qkv = randn<float>(static_cast<size_t>(B) * T * R, 1), d = randn<float>(static_cast<size_t>(B) * T * NH * hs, 2);
      const size_t n = causal_attention_saved_numel(B, T, NH);
      Context one = host_context(*backend, p), all = one;
      one.threads = 1;
      all.threads = std::max(2, all.threads);
      auto run = [&](const Context& c, std::vector<float>& o, std::vector<float>& g) {
        std::vector<float> a(n), s(n);
        o.assign(d.size(), 0.f);
        g.assign(qkv.size(), 0.f);
        causal_attention_forward(c, o.data(), a.data(), qkv.data(), B, T, NH, KVH, hs);
        causal_attention_backward(c, g.data(), s.data(), d.data(), qkv.data(), a.data(), B, T, NH, KVH, hs);
      };
      std::vector<float> o1, g1, o2, g2;
      run(one, o1, g1);
      run(all, o2, g2);
      EXPECT_LT(rel_err(o2, o1), 1e-6);
      EXPECT_LT(rel_err(g2, g1), 1e-6);
      for (int rep = 0; rep < 4; ++rep) {
        std::vector<float> o3, g3;
        run(all, o3, g3);
        ASSERT_EQ(o3, o2);
        ASSERT_EQ(g3, g2);
      }
    }
  }
}

// --- Prefix attention over a KV cache ---

TEST(LlamaKernels, PrefixAttentionEqualsTheWholePrompt) {
  const int B = 2, T = 75, NH = 8, KVH = 2, hs = 16, Tmax = 90;
  const int R = (NH + 2 * KVH) * hs, OC = NH * hs, KV = KVH * hs;
  auto qkv = randn<float>(static_cast<size_t>(B) * T * R, 3);
  std::vector<float> want(static_cast<size_t>(B) * T * OC), att(causal_attention_saved_numel(B, T, NH));
  causal_attention_forward(ctx(), want.data(), att.data(), qkv.data(), B, T, NH, KVH, hs);
  // chunk sizes: one position at a time, and uneven chunks crossing the 64-row block boundary
  for (const std::vector<int>& chunks : {std::vector<int>(T, 1), std::vector<int>{5, 17, 50, 3}, std::vector<int>{T}}) {
    std::vector<float> kc(static_cast<size_t>(B) * Tmax * KV, NAN), vc(kc.size(), NAN);
    std::vector<float> got(want.size(), 0.f);
    int p0 = 0;
    for (int tq : chunks) {
      // append this chunk's keys/values to the cache, gather its queries, attend
      std::vector<float> q(static_cast<size_t>(B) * tq * OC), o(q.size());
      for (int b = 0; b < B; ++b)
        for (int t = 0; t < tq; ++t) {
          const float* row = qkv.data() + (static_cast<size_t>(b) * T + p0 + t) * R;
          std::copy(row, row + OC, q.begin() + (static_cast<size_t>(b) * tq + t) * OC);
          std::copy(row + OC, row + OC + KV, kc.begin() + (static_cast<size_t>(b) * Tmax + p0 + t) * KV);
          std::copy(row + OC + KV, row + OC + 2 * KV, vc.begin() + (static_cast<size_t>(b) * Tmax + p0 + t) * KV);
        }
      attention_prefix_forward(ctx(), o.data(), OC, q.data(), OC, kc.data(), vc.data(), KV, Tmax, B, tq, p0, NH, KVH, hs);
      for (int b = 0; b < B; ++b)
        std::copy(o.begin() + static_cast<size_t>(b) * tq * OC, o.begin() + static_cast<size_t>(b + 1) * tq * OC,
                  got.begin() + (static_cast<size_t>(b) * T + p0) * OC);
      p0 += tq;
    }
    ASSERT_EQ(p0, T);
    EXPECT_LT(rel_err(got, want), 1e-6) << chunks.size() << " chunks";
  }
  // (the caches above start as NaN: a row beyond p0 + t read by a query would show.) Positions
  // beyond the cache are refused.
  std::vector<float> kc(static_cast<size_t>(B) * Tmax * KV, 0.f), vc(kc.size(), 0.f), q(static_cast<size_t>(B) * 2 * OC),
      o(q.size());
  EXPECT_THROW(attention_prefix_forward(ctx(), o.data(), OC, q.data(), OC, kc.data(), vc.data(), KV, Tmax, B, 2, Tmax - 1,
                                        NH, KVH, hs),
               dmpi::Error);
}
