// SHIM until the kernels branch lands (see kernels/ops.hpp).
#include <vector>

#include "base/error.hpp"
#include "kernels/ops.hpp"

namespace dmpi::kernels {

size_t causal_attention_saved_numel(int B, int T, int NH) { return static_cast<size_t>(B) * NH * T * T; }
void causal_attention_forward(const Context& ctx, float* out, float* att, const float* qkv, int B, int T, int NH, int KVH,
                              int hs) {
  DMPI_REQUIRE(KVH == NH, "shim: grouped-query attention needs the kernels branch");
  attention_forward(ctx, out, att, qkv, B, T, NH * hs, NH);
}
void causal_attention_probs(const Context& ctx, float* att, const float* qkv, int B, int T, int NH, int KVH, int hs) {
  std::vector<float> out(static_cast<size_t>(B) * T * NH * hs);
  causal_attention_forward(ctx, out.data(), att, qkv, B, T, NH, KVH, hs);
}
void causal_attention_backward(const Context& ctx, float* dqkv, float* datt, const float* dout, const float* qkv,
                               const float* att, int B, int T, int NH, int KVH, int hs) {
  DMPI_REQUIRE(KVH == NH, "shim: grouped-query attention needs the kernels branch");
  attention_backward(ctx, dqkv, datt, dout, qkv, att, B, T, NH * hs, NH);
}
void rmsnorm_forward(const Context&, float*, float*, const float*, const float*, int, int, float) { DMPI_FAIL("shim: rmsnorm"); }
void rmsnorm_backward(const Context&, float*, float*, const float*, const float*, const float*, const float*, int, int) {
  DMPI_FAIL("shim: rmsnorm");
}
void rope_forward(const Context&, float*, int, int, int, int, int, float, int) { DMPI_FAIL("shim: rope"); }
void rope_backward(const Context&, float*, int, int, int, int, int, float, int) { DMPI_FAIL("shim: rope"); }
void swiglu_forward(const Context&, float*, const float*, int, int) { DMPI_FAIL("shim: swiglu"); }
void swiglu_backward(const Context&, float*, const float*, const float*, int, int) { DMPI_FAIL("shim: swiglu"); }

}  // namespace dmpi::kernels
