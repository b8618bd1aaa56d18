// SHIM until the kernels branch lands (see kernels/ops.hpp).
#include <algorithm>
#include <cmath>
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

void attention_prefix_forward(const Context&, float* out, int out_stride, const float* q, int q_stride,
                              const float* kcache, const float* vcache, int kv_stride, int Tmax, int B, int Tq, int p0,
                              int NH, int KVH, int hs) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  std::vector<float> a(static_cast<size_t>(p0 + Tq));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < Tq; ++t)
      for (int h = 0; h < NH; ++h) {
        const int kvh = h / (NH / KVH), i = p0 + t;
        const float* qr = q + static_cast<size_t>(b * Tq + t) * q_stride + h * hs;
        float mx = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          const float* k = kcache + static_cast<size_t>(b * Tmax + j) * kv_stride + kvh * hs;
          float s = 0;
          for (int e = 0; e < hs; ++e) s += qr[e] * k[e];
          a[static_cast<size_t>(j)] = s * scale;
          mx = std::max(mx, a[static_cast<size_t>(j)]);
        }
        float sum = 0;
        for (int j = 0; j <= i; ++j) sum += (a[static_cast<size_t>(j)] = std::exp(a[static_cast<size_t>(j)] - mx));
        float* o = out + static_cast<size_t>(b * Tq + t) * out_stride + h * hs;
        for (int e = 0; e < hs; ++e) {
          float acc = 0;
          for (int j = 0; j <= i; ++j) acc += a[static_cast<size_t>(j)] * vcache[static_cast<size_t>(b * Tmax + j) * kv_stride + kvh * hs + e];
          o[e] = acc / sum;
        }
      }
}

}  // namespace dmpi::kernels
