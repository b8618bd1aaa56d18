// The GEMM interface every layer uses. Row-major: C[M x N] = alpha * op(A) * op(B) + beta * C,
// op(A) is M x K, op(B) is K x N. A backend (OpenBLAS today; oneDNN for bf16 on AMX) plugs in
// behind GemmBackend without touching the layers.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "base/dtype.hpp"

namespace dmpi::kernels {

enum class Op { N, T };

class GemmBackend {
 public:
  virtual ~GemmBackend() = default;
  virtual const char* name() const = 0;
  virtual void sgemm(Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda,
                     const float* B, int ldb, float beta, float* C, int ldc) = 0;
  // bf16 inputs, fp32 accumulation and output.
  virtual void gemm_bf16(Op ta, Op tb, int M, int N, int K, float alpha, const bf16* A, int lda,
                         const bf16* B, int ldb, float beta, float* C, int ldc) = 0;
};

GemmBackend& gemm_backend();  // default: the best built in (oneDNN, else OpenBLAS)
void set_gemm_backend(std::unique_ptr<GemmBackend> backend);
std::unique_ptr<GemmBackend> make_blas_backend();
#ifdef DEEPMPI_HAVE_DNNL
std::unique_ptr<GemmBackend> make_dnnl_backend();
#endif
// Backend by name: "openblas" or "onednn" (when built with oneDNN); throws naming the choices.
std::unique_ptr<GemmBackend> make_gemm_backend(const std::string& name);
std::vector<std::string> gemm_backend_names();
// The backend a run uses unless a flag says otherwise: DEEPMPI_GEMM, else the best built in.
std::string default_gemm_backend_name();

// Precision of the GEMMs the layers run (an autocast, as torch.autocast): F32; BF16 rounds both
// operands to bf16 and runs the backend's bf16 GEMM (fp32 accumulation and output); F16 rounds
// both operands to fp16 (range and precision of fp16: values beyond 65504 become inf) and
// multiplies them in fp32. Everything outside the GEMMs stays fp32.
enum class GemmPrecision { F32, BF16, F16 };
void set_gemm_precision(GemmPrecision p);
GemmPrecision gemm_precision();
const char* gemm_precision_name(GemmPrecision p);
// Ranges of fp32 memory whose values are exactly 16-bit numbers of the current precision, with
// their bf16 copy (same layout; null for fp16): the autocast multiplies the copy (bf16), or the
// values as they are (fp16), instead of rounding the operand again. The ZeRO engine registers a
// unit's working parameters while they live (widened from the 16-bit parameters, except the
// tensors every reader of which takes the copy: model::TensorSpec::read_16bit). Registered and
// unregistered on the main thread, between kernels.
void register_lowp_copy(const float* x, size_t n, const bf16* copy);
void unregister_lowp_copy(const float* x);
// The registered bf16 copy of [x, x + n), or null (not registered whole, or registered without a
// copy). Kernels other than the GEMMs that can read bf16 use it too (the embedding lookup).
const bf16* lowp_copy(const float* x, size_t n);
// The GEMM in the current precision (fp32 operands, converted as above).
void gemm_lowp(Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc);

inline void gemm(Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                 int ldb, float beta, float* C, int ldc) {
  if (gemm_precision() != GemmPrecision::F32) {
    gemm_lowp(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  gemm_backend().sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// OpenBLAS's own thread pool (GEMMs); never called inside an OpenMP region.
void set_blas_threads(int n);
int blas_threads();
std::string blas_config();  // openblas_get_config()

// Measured peak of sgemm on this process's threads (GFLOP/s): best of `reps` n^3 products.
double measure_sgemm_gflops(int n = 1536, int reps = 5);

}  // namespace dmpi::kernels
