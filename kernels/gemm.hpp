// The GEMM interface every layer uses. Row-major: C[M x N] = alpha * op(A) * op(B) + beta * C,
// op(A) is M x K, op(B) is K x N. A backend (OpenBLAS; oneDNN for bf16 on AVX512-BF16/AMX) plugs in
// behind GemmBackend; the context (kernels/context.hpp) says which one and in what precision.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "base/dtype.hpp"
#include "kernels/context.hpp"

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

// A bf16 GEMM as be.sgemm over fp32 tiles of K (exact: bf16 widens to fp32 without rounding;
// (M + N) x 256 floats of scratch): OpenBLAS's generic build, and CPUs without bf16 instructions
// (oneDNN has no bf16 matmul on AVX2).
void gemm_bf16_via_sgemm(GemmBackend& be, Op ta, Op tb, int M, int N, int K, float alpha, const bf16* A, int lda,
                         const bf16* B, int ldb, float beta, float* C, int ldc);

// Backend by name: "openblas" or "onednn" (when built with oneDNN); throws naming the choices.
std::unique_ptr<GemmBackend> make_blas_backend();
#ifdef DEEPMPI_HAVE_DNNL
std::unique_ptr<GemmBackend> make_dnnl_backend();
#endif
std::unique_ptr<GemmBackend> make_gemm_backend(const std::string& name);
std::vector<std::string> gemm_backend_names();
// The backend a run uses unless a flag says otherwise: DEEPMPI_GEMM, else the best built in.
std::string default_gemm_backend_name();

// A GEMM operand as stored: row-major with leading dimension ld, of dtype F32, BF16 or F16.
struct Operand {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int ld = 0;
};
inline Operand operand(const float* p, int ld) { return {p, DType::F32, ld}; }
inline Operand operand(ConstView v, int ld) { return {v.data, v.dtype, ld}; }

// C[M x N] = alpha * op(A) * op(B) + beta * C in ctx.precision (kernels/context.hpp): F32
// multiplies fp32 (16-bit operands widened); BF16 takes bf16 operands as they are and rounds fp32
// ones to bf16; F16 widens fp16 operands and rounds fp32 ones to fp16 values. C is fp32.
void gemm(const Context& ctx, Op ta, Op tb, int M, int N, int K, float alpha, Operand A, Operand B, float beta,
          float* C, int ldc);
inline void gemm(const Context& ctx, Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  gemm(ctx, ta, tb, M, N, K, alpha, operand(A, lda), operand(B, ldb), beta, C, ldc);
}

// OpenBLAS's own thread pool (GEMMs); never called inside an OpenMP region.
void set_blas_threads(int n);
int blas_threads();
std::string blas_config();  // openblas_get_config()

// Measured peak of the GEMM in ctx.precision on this process's threads (GFLOP/s): best of
// `reps` n^3 products of fp32 operands.
double measure_gemm_gflops(const Context& ctx, int n = 1536, int reps = 5);

}  // namespace dmpi::kernels
