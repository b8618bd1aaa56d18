#include "kernels/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "src/util/error.hpp"
#include "src/util/system.hpp"

namespace dmpi::kernels {

namespace {

CBLAS_TRANSPOSE to_cblas(Op o) { return o == Op::N ? CblasNoTrans : CblasTrans; }

void check_dims(Op ta, Op tb, int M, int N, int K, int lda, int ldb, int ldc) {
  // Leading dimensions of row-major operands: A is M x K (or K x M when transposed).
  int a_cols = ta == Op::N ? K : M, b_cols = tb == Op::N ? N : K;
  DMPI_REQUIRE(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=" << M << " N=" << N << " K=" << K);
  DMPI_REQUIRE(lda >= std::max(1, a_cols) && ldb >= std::max(1, b_cols) && ldc >= std::max(1, N),
               "gemm: leading dimension too small (M=" << M << " N=" << N << " K=" << K << " lda=" << lda
                                                       << " ldb=" << ldb << " ldc=" << ldc << ")");
}

class BlasBackend final : public GemmBackend {
 public:
  const char* name() const override { return "openblas"; }
  void sgemm(Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
             float beta, float* C, int ldc) override {
    check_dims(ta, tb, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  // No bf16 GEMM in OpenBLAS's generic build: convert operand tiles to fp32 and use sgemm.
  // Tiles over K bound the extra memory to (M + N) * kTile floats.
  void gemm_bf16(Op ta, Op tb, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
                 float beta, float* C, int ldc) override {
    check_dims(ta, tb, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    constexpr int kTile = 256;
    std::vector<float> a(static_cast<size_t>(M) * kTile), b(static_cast<size_t>(kTile) * N);
    if (K == 0) {
      sgemm(Op::N, Op::N, M, N, 0, alpha, a.data(), kTile, b.data(), N, beta, C, ldc);
      return;
    }
    for (int k0 = 0; k0 < K; k0 += kTile) {
      int kt = std::min(kTile, K - k0);
      for (int i = 0; i < M; ++i)
        for (int k = 0; k < kt; ++k)
          a[static_cast<size_t>(i) * kTile + k] =
              to_float(ta == Op::N ? A[static_cast<size_t>(i) * lda + k0 + k] : A[static_cast<size_t>(k0 + k) * lda + i]);
      for (int k = 0; k < kt; ++k)
        for (int j = 0; j < N; ++j)
          b[static_cast<size_t>(k) * N + j] =
              to_float(tb == Op::N ? B[static_cast<size_t>(k0 + k) * ldb + j] : B[static_cast<size_t>(j) * ldb + k0 + k]);
      sgemm(Op::N, Op::N, M, N, kt, alpha, a.data(), kTile, b.data(), N, k0 == 0 ? beta : 1.0f, C, ldc);
    }
  }
};

std::unique_ptr<GemmBackend>& slot() {
  // The best backend built in (oneDNN when found at configure time).
  static std::unique_ptr<GemmBackend> b = make_gemm_backend(default_gemm_backend_name());
  return b;
}

}  // namespace

std::unique_ptr<GemmBackend> make_blas_backend() { return std::make_unique<BlasBackend>(); }

std::vector<std::string> gemm_backend_names() {
#ifdef DEEPMPI_HAVE_DNNL
  return {"openblas", "onednn"};
#else
  return {"openblas"};
#endif
}

std::string default_gemm_backend_name() { return env("DEEPMPI_GEMM").value_or(gemm_backend_names().back()); }

std::unique_ptr<GemmBackend> make_gemm_backend(const std::string& name) {
  if (name == "openblas") return make_blas_backend();
#ifdef DEEPMPI_HAVE_DNNL
  if (name == "onednn") return make_dnnl_backend();
#else
  DMPI_REQUIRE(name != "onednn", "GEMM backend 'onednn' is not built in (oneDNN was not found at configure time; "
                                 "install libdnnl-dev and rebuild) — use 'openblas'");
#endif
  std::string hint = closest_match(name, gemm_backend_names());
  DMPI_FAIL("unknown GEMM backend '" << name << "'" << (hint.empty() ? "" : "; did you mean '" + hint + "'?")
                                     << " (choices: openblas, onednn)");
}
GemmBackend& gemm_backend() { return *slot(); }
void set_gemm_backend(std::unique_ptr<GemmBackend> backend) {
  DMPI_REQUIRE(backend != nullptr, "set_gemm_backend: null backend");
  slot() = std::move(backend);
}

double measure_sgemm_gflops(int n, int reps) {
  std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.01f;
    b[i] = static_cast<float>((i * 5) % 11) * 0.01f;
  }
  gemm(Op::N, Op::N, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);  // warm-up
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = now_seconds();
    gemm(Op::N, Op::N, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, now_seconds() - t0);
  }
  return 2.0 * n * n * static_cast<double>(n) / best / 1e9;
}

namespace {
GemmPrecision g_precision = GemmPrecision::F32;

// Packs the stored rows x cols operand (leading dimension ld) contiguously as bf16.
void pack_bf16(const float* X, int rows, int cols, int ld, std::vector<bf16>& out) {
  out.resize(static_cast<size_t>(rows) * cols);
  bf16* o = out.data();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) o[static_cast<size_t>(r) * cols + c] = to_bf16(X[static_cast<size_t>(r) * ld + c]);
}
// Packs it contiguously as fp32 values rounded to fp16.
void pack_f16(const float* X, int rows, int cols, int ld, std::vector<float>& out) {
  out.resize(static_cast<size_t>(rows) * cols);
  float* o = out.data();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      o[static_cast<size_t>(r) * cols + c] = static_cast<float>(static_cast<_Float16>(X[static_cast<size_t>(r) * ld + c]));
}
}  // namespace

void set_gemm_precision(GemmPrecision p) { g_precision = p; }
GemmPrecision gemm_precision() { return g_precision; }
const char* gemm_precision_name(GemmPrecision p) {
  return p == GemmPrecision::BF16 ? "bf16" : p == GemmPrecision::F16 ? "fp16" : "fp32";
}

void gemm_lowp(Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  // the stored shapes: op(A) is M x K, so A is M x K (N) or K x M (T); likewise B
  const int ar = ta == Op::N ? M : K, ac = ta == Op::N ? K : M;
  const int br = tb == Op::N ? K : N, bc = tb == Op::N ? N : K;
  if (g_precision == GemmPrecision::BF16) {
    thread_local std::vector<bf16> a, b;
    pack_bf16(A, ar, ac, lda, a);
    pack_bf16(B, br, bc, ldb, b);
    gemm_backend().gemm_bf16(ta, tb, M, N, K, alpha, a.data(), ac, b.data(), bc, beta, C, ldc);
  } else {
    thread_local std::vector<float> a, b;
    pack_f16(A, ar, ac, lda, a);
    pack_f16(B, br, bc, ldb, b);
    gemm_backend().sgemm(ta, tb, M, N, K, alpha, a.data(), ac, b.data(), bc, beta, C, ldc);
  }
}

}  // namespace dmpi::kernels
