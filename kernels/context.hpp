// The execution context every kernel and every model unit is handed: where it runs (device,
// compute stream), with what (the GEMM handle, the precision policy, the thread budget) and where
// its scratch memory comes from (the allocator). No kernel reads a process global.
//
// The host context: Device::Host, no stream, a GemmBackend (oneDNN or OpenBLAS), the OpenMP
// thread count. A CUDA context is a second instance of the same struct: Device::Cuda, the
// cudaStream_t as `stream`, a cuBLAS-backed GemmBackend, and a device Allocator; the kernels then
// dispatch on ctx.device (docs/architecture.md, "CUDA").
#pragma once
#include "base/tensor.hpp"

namespace dmpi::kernels {

class GemmBackend;

// What the GEMMs multiply (torch.autocast's role, as an explicit policy): F32; BF16 multiplies
// bf16 operands with fp32 accumulation (fp32 operands are rounded to bf16, bf16 operands are used
// as they are); F16 multiplies fp16 values in fp32 (fp32 operands rounded to fp16, fp16 operands
// widened). Everything outside the GEMMs stays fp32.
enum class Precision { F32, BF16, F16 };
const char* precision_name(Precision p);

struct Context {
  Device device = Device::Host;
  void* stream = nullptr;            // the compute stream (cudaStream_t); none on the host
  GemmBackend* gemm = nullptr;       // the GEMM handle (not owned)
  Precision precision = Precision::F32;
  int threads = 1;                   // OpenMP threads of the element-wise and row-wise kernels
  Allocator* alloc = nullptr;        // scratch and activation memory (not owned)

  // The same context with another GEMM precision (a unit that must run its GEMMs in fp32).
  Context with_precision(Precision p) const {
    Context c = *this;
    c.precision = p;
    return c;
  }
};

// The host context over `gemm` with this process's OpenMP thread count.
Context host_context(GemmBackend& gemm, Precision p = Precision::F32);

}  // namespace dmpi::kernels
