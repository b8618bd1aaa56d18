// The kernels as the units call them: one call per op, whatever the path. Ops<float> with
// fast = true runs kernels/ops.hpp (BLAS + OpenMP, views in any storage dtype); otherwise the
// plain-loop reference of kernels/ref/ops_ref.hpp runs on F (float or double; tests hold the fast
// path to it, and the double reference to finite differences). The choice is made here, once per
// op, not at every call site.
#pragma once
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "base/error.hpp"
#include "base/tensor.hpp"
#include "kernels/context.hpp"
#include "kernels/ops.hpp"
#include "kernels/ref/ops_ref.hpp"

namespace dmpi::model {

template <class F>
struct Ops {
  const kernels::Context& ctx;
  bool fast = true;  // float only

  bool use_fast() const {
    if constexpr (std::is_same_v<F, float>) return fast;
    return false;
  }
  // the reference path reads parameters of its own scalar type only
  static const F* ref(ConstView v) { return v.data ? v.as<const F>() : nullptr; }

  void fill_zero(F* x, size_t n) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::fill_zero(ctx, x, n);
    }
    std::fill(x, x + n, F(0));
  }
  // out[B,T,C] = wte[tokens] (+ wpe[t] when wpe is given)
  void encoder_forward(F* out, const int32_t* tokens, ConstView wte, ConstView wpe, int B, int T, int C) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::encoder_forward(ctx, out, tokens, wte, wpe, B, T, C);
    }
    if (wpe.data) return kernels::ref::encoder_forward(out, tokens, ref(wte), ref(wpe), B, T, C);
    const F* e = ref(wte);
    for (int bt = 0; bt < B * T; ++bt) {
      F* o = out + static_cast<size_t>(bt) * C;
      if (tokens[bt] < 0) std::fill(o, o + C, F(0));  // not in this rank's vocabulary slice
      else std::memcpy(o, e + static_cast<size_t>(tokens[bt]) * C, sizeof(F) * C);
    }
  }
  void encoder_backward(F* dwte, F* dwpe, const F* dout, const int32_t* tokens, int B, int T, int C) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::encoder_backward(ctx, dwte, dwpe, dout, tokens, B, T, C);
    }
    if (dwpe) return kernels::ref::encoder_backward(dwte, dwpe, dout, tokens, B, T, C);
    for (int bt = 0; bt < B * T; ++bt)
      if (tokens[bt] >= 0)
        for (int c = 0; c < C; ++c) dwte[static_cast<size_t>(tokens[bt]) * C + c] += dout[static_cast<size_t>(bt) * C + c];
  }
  void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* w, const F* b, int N, int C, double eps) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::layernorm_forward(ctx, out, mean, rstd, inp, w, b, N, C, static_cast<float>(eps));
    }
    kernels::ref::layernorm_forward(out, mean, rstd, inp, w, b, N, C, static_cast<F>(eps));
  }
  void layernorm_backward(F* dinp, F* dw, F* db, const F* dout, const F* inp, const F* w, const F* mean, const F* rstd,
                          int N, int C) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::layernorm_backward(ctx, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    }
    kernels::ref::layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  }
  void rmsnorm_forward(F* out, F* rstd, const F* inp, const F* w, int N, int C, double eps) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::rmsnorm_forward(ctx, out, rstd, inp, w, N, C, static_cast<float>(eps));
    }
    kernels::ref::rmsnorm_forward(out, rstd, inp, w, N, C, static_cast<F>(eps));
  }
  void rmsnorm_backward(F* dinp, F* dw, const F* dout, const F* inp, const F* w, const F* rstd, int N, int C) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::rmsnorm_backward(ctx, dinp, dw, dout, inp, w, rstd, N, C);
    }
    kernels::ref::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
  }
  // out[N,OC] = inp[N,C] @ w[OC,C]^T + bias
  void matmul_forward(F* out, const F* inp, ConstView w, const F* bias, int N, int C, int OC) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::matmul_forward(ctx, out, inp, w, bias, N, C, OC);
    }
    kernels::ref::matmul_forward(out, inp, ref(w), bias, N, C, OC);
  }
  // the two halves of matmul_backward, so that a collective on dinp can run during the dW GEMM
  void matmul_backward_input(F* dinp, const F* dout, ConstView w, int N, int C, int OC) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::matmul_backward(ctx, dinp, nullptr, nullptr, dout, nullptr, w, N, C, OC);
    }
    kernels::ref::matmul_backward<F>(dinp, nullptr, nullptr, dout, nullptr, ref(w), N, C, OC);
  }
  void matmul_backward_weight(F* dw, F* dbias, const F* dout, const F* inp, int N, int C, int OC) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::matmul_backward(ctx, nullptr, dw, dbias, dout, inp, ConstView(), N, C, OC);
    }
    kernels::ref::matmul_backward<F>(nullptr, dw, dbias, dout, inp, nullptr, N, C, OC);
  }
  // x[N,C] += b (row-parallel layers add their bias after the reduction)
  void add_bias(F* x, const F* b, int N, int C) const {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
    for (int n = 0; n < N; ++n)
      for (int c = 0; c < C; ++c) x[static_cast<size_t>(n) * C + c] += b[c];
  }
  void matmul_backward(F* dinp, F* dw, F* dbias, const F* dout, const F* inp, ConstView w, int N, int C, int OC) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::matmul_backward(ctx, dinp, dw, dbias, dout, inp, w, N, C, OC);
    }
    kernels::ref::matmul_backward(dinp, dw, dbias, dout, inp, ref(w), N, C, OC);
  }
  // Causal attention over qkv [B, T, (NH + 2 KVH) hs]; att: the saved probabilities, in the fast
  // kernel's lower-triangle layout on both paths (the reference works on a full [B, NH, T, T] copy).
  static size_t attention_saved(int B, int T, int NH) { return kernels::causal_attention_saved_numel(B, T, NH); }
  static void pack_probs(const std::vector<F>& full, F* att, int B, int T, int NH) {
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (int i = 0; i < T; ++i)
          for (int j = 0; j <= i; ++j)
            att[kernels::causal_attention_index(T, NH, b, h, i, j)] = full[((static_cast<size_t>(b) * NH + h) * T + i) * T + j];
  }
  static std::vector<F> unpack_probs(const F* att, int B, int T, int NH) {
    std::vector<F> full(static_cast<size_t>(B) * NH * T * T, F(0));
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (int i = 0; i < T; ++i)
          for (int j = 0; j <= i; ++j)
            full[((static_cast<size_t>(b) * NH + h) * T + i) * T + j] = att[kernels::causal_attention_index(T, NH, b, h, i, j)];
    return full;
  }
  void attention_forward(F* out, F* att, const F* qkv, int B, int T, int NH, int KVH, int hs) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::causal_attention_forward(ctx, out, att, qkv, B, T, NH, KVH, hs);
    }
    std::vector<F> full(static_cast<size_t>(B) * NH * T * T);
    kernels::ref::causal_attention_forward(out, full.data(), qkv, B, T, NH, KVH, hs);
    pack_probs(full, att, B, T, NH);
  }
  void attention_probs(F* att, const F* qkv, int B, int T, int NH, int KVH, int hs) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::causal_attention_probs(ctx, att, qkv, B, T, NH, KVH, hs);
    }
    std::vector<F> out(static_cast<size_t>(B) * T * NH * hs);
    attention_forward(out.data(), att, qkv, B, T, NH, KVH, hs);
  }
  void attention_backward(F* dqkv, F* datt, const F* dout, const F* qkv, const F* att, int B, int T, int NH, int KVH,
                          int hs) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::causal_attention_backward(ctx, dqkv, datt, dout, qkv, att, B, T, NH, KVH, hs);
    }
    const std::vector<F> full = unpack_probs(att, B, T, NH);
    std::vector<F> dfull(full.size());
    kernels::ref::causal_attention_backward(dqkv, dfull.data(), dout, qkv, full.data(), B, T, NH, KVH, hs);
  }
  void rope_forward(F* x, int B, int T, int H, int hs, int row_stride, double base, int pos0 = 0) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::rope_forward(ctx, x, B, T, H, hs, row_stride, static_cast<float>(base), pos0);
    }
    kernels::ref::rope_forward(x, B, T, H, hs, row_stride, base, pos0);
  }
  // inference: Tq query rows over a key/value cache (fast path only)
  void attention_prefix(F* out, int out_stride, const F* q, int q_stride, const F* k, const F* v, int kv_stride, int Tmax,
                        int B, int Tq, int p0, int NH, int KVH, int hs) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast())
        return kernels::attention_prefix_forward(ctx, out, out_stride, q, q_stride, k, v, kv_stride, Tmax, B, Tq, p0, NH, KVH, hs);
    }
    DMPI_FAIL("inference runs on the fast float kernels");
  }
  void rope_backward(F* dx, int B, int T, int H, int hs, int row_stride, double base) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::rope_backward(ctx, dx, B, T, H, hs, row_stride, static_cast<float>(base));
    }
    kernels::ref::rope_backward(dx, B, T, H, hs, row_stride, base);
  }
  void gelu_forward(F* out, const F* inp, size_t N) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::gelu_forward(ctx, out, inp, N);
    }
    kernels::ref::gelu_forward(out, inp, N);
  }
  void gelu_backward(F* dinp, const F* inp, const F* dout, size_t N) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::gelu_backward(ctx, dinp, inp, dout, N);
    }
    kernels::ref::gelu_backward(dinp, inp, dout, N);
  }
  void swiglu_forward(F* out, const F* inp, int N, int Fw) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::swiglu_forward(ctx, out, inp, N, Fw);
    }
    kernels::ref::swiglu_forward(out, inp, N, Fw);
  }
  void swiglu_backward(F* dinp, const F* inp, const F* dout, int N, int Fw) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::swiglu_backward(ctx, dinp, inp, dout, N, Fw);
    }
    kernels::ref::swiglu_backward(dinp, inp, dout, N, Fw);
  }
  void residual_forward(F* out, const F* a, const F* b, size_t N) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::residual_forward(ctx, out, a, b, N);
    }
    kernels::ref::residual_forward(out, a, b, N);
  }
  // logits[N,V] -> probabilities in place, losses[N]; returns the counted rows
  int64_t crossentropy_forward(F* losses, F* logits, const int32_t* targets, int N, int V, int32_t ignore) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::crossentropy_forward(ctx, losses, logits, targets, N, V, ignore);
    }
    return kernels::ref::crossentropy_forward(losses, logits, logits, targets, N, V, ignore);
  }
  void crossentropy_backward(F* probs, const int32_t* targets, F dloss, int N, int V, int32_t ignore) const {
    if constexpr (std::is_same_v<F, float>) {
      if (use_fast()) return kernels::crossentropy_backward(ctx, probs, targets, dloss, N, V, ignore);
    }
    kernels::ref::crossentropy_backward(probs, probs, targets, dloss, N, V, ignore);
  }
};

}  // namespace dmpi::model
