#include "kernels/gemm.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "base/error.hpp"
#include "base/system.hpp"

extern "C" {
// OpenBLAS extensions (declared in its cblas.h on most builds; declared here to be sure).
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
}

namespace dmpi::kernels {

void set_blas_threads(int n) { openblas_set_num_threads(n); }
int blas_threads() { return openblas_get_num_threads(); }
std::string blas_config() {
  const char* c = openblas_get_config();
  return c ? c : "unknown";
}

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

}  // namespace

void gemm_bf16_via_sgemm(GemmBackend& be, Op ta, Op tb, int M, int N, int K, float alpha, const bf16* A, int lda,
                         const bf16* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  // Tiles over K bound the extra memory to (M + N) * kTile floats.
  constexpr int kTile = 256;
  std::vector<float> a(static_cast<size_t>(M) * kTile), b(static_cast<size_t>(kTile) * N);
  if (K == 0) {
    be.sgemm(Op::N, Op::N, M, N, 0, alpha, a.data(), kTile, b.data(), N, beta, C, ldc);
    return;
  }
  for (int k0 = 0; k0 < K; k0 += kTile) {
    const int kt = std::min(kTile, K - k0);
#pragma omp parallel for schedule(static) if (static_cast<size_t>(M) * kt > (size_t{1} << 16))
    for (int i = 0; i < M; ++i)
      for (int k = 0; k < kt; ++k)
        a[static_cast<size_t>(i) * kTile + k] =
            to_float(ta == Op::N ? A[static_cast<size_t>(i) * lda + k0 + k] : A[static_cast<size_t>(k0 + k) * lda + i]);
#pragma omp parallel for schedule(static) if (static_cast<size_t>(N) * kt > (size_t{1} << 16))
    for (int k = 0; k < kt; ++k)
      for (int j = 0; j < N; ++j)
        b[static_cast<size_t>(k) * N + j] =
            to_float(tb == Op::N ? B[static_cast<size_t>(k0 + k) * ldb + j] : B[static_cast<size_t>(j) * ldb + k0 + k]);
    be.sgemm(Op::N, Op::N, M, N, kt, alpha, a.data(), kTile, b.data(), N, k0 == 0 ? beta : 1.0f, C, ldc);
  }
}

namespace {

class BlasBackend final : public GemmBackend {
 public:
  const char* name() const override { return "openblas"; }
  void sgemm(Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
             float beta, float* C, int ldc) override {
    check_dims(ta, tb, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  // No bf16 GEMM in OpenBLAS's generic build: converted tiles through sgemm.
  void gemm_bf16(Op ta, Op tb, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
                 float beta, float* C, int ldc) override {
    check_dims(ta, tb, M, N, K, lda, ldb, ldc);
    gemm_bf16_via_sgemm(*this, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
};

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
const char* precision_name(Precision p) {
  return p == Precision::BF16 ? "bf16" : p == Precision::F16 ? "fp16" : "fp32";
}

Context host_context(GemmBackend& gemm, Precision p) {
  Context c;
  c.device = Device::Host;
  c.gemm = &gemm;
  c.precision = p;
  c.threads = std::max(1, omp_get_max_threads());
  c.alloc = &host_allocator();
  return c;
}

double measure_gemm_gflops(const Context& ctx, int n, int reps) {
  std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.01f;
    b[i] = static_cast<float>((i * 5) % 11) * 0.01f;
  }
  gemm(ctx, Op::N, Op::N, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);  // warm-up
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = now_seconds();
    gemm(ctx, Op::N, Op::N, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, now_seconds() - t0);
  }
  return 2.0 * n * n * static_cast<double>(n) / best / 1e9;
}

namespace {
// The stored rows x cols operand (leading dimension ld), packed contiguously as bf16: rounded
// from fp32.
void pack_bf16(const float* X, int rows, int cols, int ld, std::vector<bf16>& out) {
  out.resize(static_cast<size_t>(rows) * cols);
  bf16* o = out.data();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) o[static_cast<size_t>(r) * cols + c] = to_bf16(X[static_cast<size_t>(r) * ld + c]);
}
// Packed contiguously as fp32 values: rounded to fp16 (from fp32) or widened (from fp16, bf16).
void pack_f32(Operand X, int rows, int cols, bool round_f16, std::vector<float>& out) {
  out.resize(static_cast<size_t>(rows) * cols);
  float* o = out.data();
  const size_t ld = static_cast<size_t>(X.ld);
  switch (X.dtype) {
    case DType::F32: {
      const float* x = static_cast<const float*>(X.data);
#pragma omp parallel for schedule(static)
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
          const float v = x[r * ld + c];
          o[static_cast<size_t>(r) * cols + c] = round_f16 ? static_cast<float>(static_cast<_Float16>(v)) : v;
        }
      return;
    }
    case DType::F16: {
      const _Float16* x = static_cast<const _Float16*>(X.data);
#pragma omp parallel for schedule(static)
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) o[static_cast<size_t>(r) * cols + c] = static_cast<float>(x[r * ld + c]);
      return;
    }
    case DType::BF16: {
      const bf16* x = static_cast<const bf16*>(X.data);
#pragma omp parallel for schedule(static)
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) o[static_cast<size_t>(r) * cols + c] = to_float(x[r * ld + c]);
      return;
    }
    default: DMPI_FAIL("gemm: a " << dtype_name(X.dtype) << " operand");
  }
}
}  // namespace

void gemm(const Context& ctx, Op ta, Op tb, int M, int N, int K, float alpha, Operand A, Operand B, float beta,
          float* C, int ldc) {
  DMPI_REQUIRE(ctx.gemm, "gemm: the context has no GEMM backend");
  GemmBackend& be = *ctx.gemm;
  if (M == 0 || N == 0) return;
  // the stored shapes: op(A) is M x K, so A is M x K (N) or K x M (T); likewise B
  const int ar = ta == Op::N ? M : K, ac = ta == Op::N ? K : M;
  const int br = tb == Op::N ? K : N, bc = tb == Op::N ? N : K;
  switch (ctx.precision) {
    case Precision::F32: {
      thread_local std::vector<float> a, b;
      const float* pa = static_cast<const float*>(A.data);
      const float* pb = static_cast<const float*>(B.data);
      int la = A.ld, lb = B.ld;
      if (A.dtype != DType::F32) pack_f32(A, ar, ac, false, a), pa = a.data(), la = ac;
      if (B.dtype != DType::F32) pack_f32(B, br, bc, false, b), pb = b.data(), lb = bc;
      be.sgemm(ta, tb, M, N, K, alpha, pa, la, pb, lb, beta, C, ldc);
      return;
    }
    case Precision::BF16: {
      thread_local std::vector<bf16> a, b;
      auto as_bf16 = [](Operand X, int rows, int cols, std::vector<bf16>& buf, int& ld) -> const bf16* {
        if (X.dtype == DType::BF16) {
          ld = X.ld;
          return static_cast<const bf16*>(X.data);
        }
        DMPI_REQUIRE(X.dtype == DType::F32, "a bf16 GEMM of a " << dtype_name(X.dtype) << " operand");
        pack_bf16(static_cast<const float*>(X.data), rows, cols, X.ld, buf);
        ld = cols;
        return buf.data();
      };
      int la = 0, lb = 0;
      const bf16* pa = as_bf16(A, ar, ac, a, la);
      const bf16* pb = as_bf16(B, br, bc, b, lb);
      be.gemm_bf16(ta, tb, M, N, K, alpha, pa, la, pb, lb, beta, C, ldc);
      return;
    }
    case Precision::F16: {
      thread_local std::vector<float> a, b;
      DMPI_REQUIRE(A.dtype != DType::BF16 && B.dtype != DType::BF16, "an fp16 GEMM of a bf16 operand");
      pack_f32(A, ar, ac, true, a);
      pack_f32(B, br, bc, true, b);
      be.sgemm(ta, tb, M, N, K, alpha, a.data(), ac, b.data(), bc, beta, C, ldc);
      return;
    }
  }
}

}  // namespace dmpi::kernels
