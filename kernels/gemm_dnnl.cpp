// oneDNN GEMM backend: dnnl_sgemm (row-major, JIT-compiled for the CPU's widest vector ISA,
// threaded with the same OpenMP pool as the element-wise kernels, so no second thread pool
// competes for the cores). bf16 inputs go through the per-tile conversion of the BLAS backend
// until the matmul-primitive path lands (mixed precision issue).
#include <oneapi/dnnl/dnnl.h>

#include "kernels/gemm.hpp"
#include "src/util/error.hpp"

namespace dmpi::kernels {

namespace {

const char* status_name(dnnl_status_t s) {
  switch (s) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_runtime_error: return "runtime error";
    default: return "error";
  }
}

class DnnlBackend final : public GemmBackend {
 public:
  DnnlBackend() : fallback_(make_blas_backend()) {}
  const char* name() const override { return "onednn"; }
  void sgemm(Op ta, Op tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
             float beta, float* C, int ldc) override {
    if (M == 0 || N == 0) return;
    dnnl_status_t s = dnnl_sgemm(ta == Op::N ? 'N' : 'T', tb == Op::N ? 'N' : 'T', M, N, K, alpha, A, lda, B, ldb,
                                 beta, C, ldc);
    DMPI_REQUIRE(s == dnnl_success, "dnnl_sgemm(" << M << "x" << N << "x" << K << ", lda=" << lda << " ldb=" << ldb
                                                  << " ldc=" << ldc << ") failed: " << status_name(s));
  }
  void gemm_bf16(Op ta, Op tb, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
                 float beta, float* C, int ldc) override {
    fallback_->gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

 private:
  std::unique_ptr<GemmBackend> fallback_;
};

}  // namespace

std::unique_ptr<GemmBackend> make_dnnl_backend() { return std::make_unique<DnnlBackend>(); }

}  // namespace dmpi::kernels
