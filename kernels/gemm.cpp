#include "kernels/gemm.hpp"

#include <cblas.h>

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

struct LowpCopy {
  const float* x;
  size_t n;
  const bf16* copy;
};
std::vector<LowpCopy> g_copies;

// The registered range holding the stored operand (rows x cols, leading dimension ld) whole.
const LowpCopy* find_copy(const float* X, int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return nullptr;
  const size_t extent = static_cast<size_t>(rows - 1) * ld + cols;
  for (const auto& c : g_copies)
    if (X >= c.x && X + extent <= c.x + c.n) return &c;
  return nullptr;
}
}  // namespace

void register_lowp_copy(const float* x, size_t n, const bf16* copy) { g_copies.push_back({x, n, copy}); }
void unregister_lowp_copy(const float* x) {
  std::erase_if(g_copies, [&](const LowpCopy& c) { return c.x == x; });
}
const bf16* lowp_copy(const float* x, size_t n) {
  if (n == 0) return nullptr;
  const LowpCopy* c = find_copy(x, 1, static_cast<int>(n), static_cast<int>(n));
  return c && c->copy ? c->copy + (x - c->x) : nullptr;
}

namespace {
// The operand as bf16 with its leading dimension: the registered copy, or packed into `buf`.
const bf16* as_bf16(const float* X, int rows, int cols, int ld, std::vector<bf16>& buf, int& ld_out) {
  if (const LowpCopy* c = find_copy(X, rows, cols, ld); c && c->copy) {
    ld_out = ld;
    return c->copy + (X - c->x);
  }
  pack_bf16(X, rows, cols, ld, buf);
  ld_out = cols;
  return buf.data();
}
// The operand with its values rounded to fp16: as it is when registered, or packed into `buf`.
const float* as_f16(const float* X, int rows, int cols, int ld, std::vector<float>& buf, int& ld_out) {
  if (find_copy(X, rows, cols, ld)) {
    ld_out = ld;
    return X;
  }
  pack_f16(X, rows, cols, ld, buf);
  ld_out = cols;
  return buf.data();
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
  int la = 0, lb = 0;
  if (g_precision == GemmPrecision::BF16) {
    thread_local std::vector<bf16> a, b;
    const bf16* pa = as_bf16(A, ar, ac, lda, a, la);
    const bf16* pb = as_bf16(B, br, bc, ldb, b, lb);
    gemm_backend().gemm_bf16(ta, tb, M, N, K, alpha, pa, la, pb, lb, beta, C, ldc);
  } else {
    thread_local std::vector<float> a, b;
    const float* pa = as_f16(A, ar, ac, lda, a, la);
    const float* pb = as_f16(B, br, bc, ldb, b, lb);
    gemm_backend().sgemm(ta, tb, M, N, K, alpha, pa, la, pb, lb, beta, C, ldc);
  }
}

}  // namespace dmpi::kernels
