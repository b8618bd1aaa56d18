// oneDNN GEMM backend: dnnl_sgemm (row-major, JIT-compiled for the CPU's widest vector ISA,
// threaded with the same OpenMP pool as the element-wise kernels, so no second thread pool
// competes for the cores). bf16 inputs run oneDNN's matmul primitive (avx512_core_bf16 or AMX
// where the CPU has them; measured about 2.1x sgemm on an AVX-512-bf16 machine; on CPUs without bf16
// instructions, AVX2 only, oneDNN has none and the operands are widened for dnnl_sgemm), with the
// strides and transposes of the call, alpha as the output scale and beta as a sum post-op.
// Primitives are cached by shape. Both GEMMs may be called from several threads at once (the
// causal attention runs one-thread GEMMs inside an OpenMP region): the matmul then runs on a
// stream of the calling thread with a scratchpad of the calling thread (user scratchpad mode;
// oneDNN's library-managed scratchpad is shared between primitives and is not safe to use from two
// threads at once).
#include <oneapi/dnnl/dnnl.h>

#include <atomic>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <vector>

#include "kernels/gemm.hpp"
#include "base/error.hpp"

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
    if (M == 0 || N == 0) return;
    if (K == 0) {  // C = beta * C
      fallback_->gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    // a CPU without bf16 instructions (AVX2 only): oneDNN has no bf16 matmul there, so the
    // operands are widened (exactly) and multiplied with dnnl_sgemm
    if (no_bf16_.load()) return gemm_bf16_via_sgemm(*this, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    using dnnl::memory;
    const Key key{ta == Op::T, tb == Op::T, M, N, K, lda, ldb, ldc, alpha, beta};
    Entry* e = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        try {
          memory::desc a({M, K}, memory::data_type::bf16,
                         ta == Op::N ? memory::dims{lda, 1} : memory::dims{1, lda});
          memory::desc b({K, N}, memory::data_type::bf16,
                         tb == Op::N ? memory::dims{ldb, 1} : memory::dims{1, ldb});
          memory::desc c({M, N}, memory::data_type::f32, memory::dims{ldc, 1});
          dnnl::primitive_attr attr;
          attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
          if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
          if (beta != 0.0f) {
            dnnl::post_ops po;
            po.append_sum(beta);
            attr.set_post_ops(po);
          }
          dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine_);
          it = cache_.emplace(key, Entry{a, b, c, pd.scratchpad_desc(), dnnl::matmul(pd)}).first;
        } catch (const dnnl::error& err) {
          DMPI_REQUIRE(err.status == dnnl_unimplemented, "oneDNN bf16 matmul " << M << "x" << N << "x" << K << " (lda "
                                                                               << lda << ", ldb " << ldb << ", ldc " << ldc
                                                                               << "): " << err.what());
          no_bf16_.store(true);  // no bf16 matmul on this CPU: every bf16 GEMM goes through sgemm
        }
      }
      if (no_bf16_.load()) e = nullptr;
      else e = &it->second;
    }
    if (!e) return gemm_bf16_via_sgemm(*this, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    try {
      // this thread's stream on the process's one CPU engine, and its scratchpad. (A stream
      // keyed by the backend's address went stale when a backend was destroyed and another one
      // was built at the same address: its primitives then ran on the old engine's stream and
      // failed with "could not execute a primitive".)
      thread_local dnnl::stream stream(engine_);
      thread_local std::vector<unsigned char> scratch;
      if (scratch.size() < e->scratch.get_size()) scratch.resize(e->scratch.get_size());
      memory ma(e->a, engine_, const_cast<bf16*>(A)), mb(e->b, engine_, const_cast<bf16*>(B)), mc(e->c, engine_, C),
          ms(e->scratch, engine_, scratch.data());
      e->mm.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_SCRATCHPAD, ms}});
      stream.wait();
    } catch (const dnnl::error& err) {
      DMPI_FAIL("oneDNN bf16 matmul " << M << "x" << N << "x" << K << " failed: " << err.what());
    }
  }

 private:
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, float, float>;
  struct Entry {
    dnnl::memory::desc a, b, c, scratch;
    dnnl::matmul mm;
  };
  std::unique_ptr<GemmBackend> fallback_;
  std::atomic<bool> no_bf16_{false};
  static inline dnnl::engine engine_{dnnl::engine::kind::cpu, 0};  // one per process, shared by every backend
  std::mutex mu_;
  std::map<Key, Entry> cache_;
};

}  // namespace

std::unique_ptr<GemmBackend> make_dnnl_backend() { return std::make_unique<DnnlBackend>(); }

}  // namespace dmpi::kernels
