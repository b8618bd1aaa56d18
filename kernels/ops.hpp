// The fast fp32 kernels of the model: the same ops, shapes and conventions as the reference
// (kernels/ref/ops_ref.hpp), tested against it. Each takes the execution context first
// (kernels/context.hpp): GEMMs go through its backend in its precision; element-wise and row-wise
// work runs on its ctx.threads OpenMP threads; the two never nest. Weights are views: fp32, or the
// 16-bit parameters as they are stored (the GEMMs and the embedding lookup read them directly).
// Activations are fp32. Backward functions ACCUMULATE (+=) except crossentropy_backward, which
// WRITES dlogits in place.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/context.hpp"

namespace dmpi::kernels {

// out[B,T,C] = wte[tokens] + wpe[t]
// wte [V, C], wpe [T_max, C] (wpe.data null: no learned positions), any floating dtype. Without
// positions a negative token gives a zero row (forward) and no dwte update (backward): another
// tensor-parallel rank's vocabulary slice.
void encoder_forward(const Context& ctx, float* out, const int32_t* tokens, ConstView wte, ConstView wpe, int B, int T,
                     int C);
void encoder_backward(const Context& ctx, float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T, int C);

// out[N,C], mean[N], rstd[N] <- inp[N,C], w[C], b[C]; rstd = 1 / sqrt(var + eps). The default eps
// is the arithmetic of the constant-eps kernel bit for bit.
void layernorm_forward(const Context& ctx, float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                       int N, int C, float eps = 1e-5f);
void layernorm_backward(const Context& ctx, float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C);

// out[N,OC] = inp[N,C] @ w[OC,C]^T + bias[OC]; bias / dbias / dinp / dw may be null (the
// backward's halves run apart, so that a collective on dinp overlaps the dW GEMM).
// w [OC, C] in any floating dtype.
void matmul_forward(const Context& ctx, float* out, const float* inp, ConstView w, const float* bias, int N, int C,
                    int OC);
void matmul_backward(const Context& ctx, float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
                     ConstView w, int N, int C, int OC);

// Causal self-attention. qkv[B,T,3C] -> out[B,T,C]; att[B,NH,T,T] probabilities.
void attention_forward(const Context& ctx, float* out, float* att, const float* qkv, int B, int T, int C, int NH);
// datt[B,NH,T,T] is scratch (overwritten).
void attention_backward(const Context& ctx, float* dqkv, float* datt, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH);

// RMSNorm (LLaMA): out[N,C] = inp * rstd * w, rstd[N] = 1 / sqrt(mean(inp^2) + eps) saved for the
// backward. dw is deterministic for a fixed thread count (per-thread partials in thread order).
void rmsnorm_forward(const Context& ctx, float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps);
void rmsnorm_backward(const Context& ctx, float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C);

// Rotary position embeddings, the non-interleaved ("rotate_half") convention of HF LLaMA and
// Megatron: within a head of hs (even) channels, channel i pairs with i + hs/2 (i < hs/2) and the
// pair is rotated by the angle (pos0 + t) * base^(-2i/hs):
//   x[i] <- x[i] cos - x[i + hs/2] sin,   x[i + hs/2] <- x[i + hs/2] cos + x[i] sin.
// In place, heads 0..H-1 of every row: row (b, t) starts at x + (b*T + t) * row_stride, head h at
// + h*hs. A fused qkv row [Q: NH heads | K: KVH heads | V: KVH heads] has Q and K contiguous: one
// call with H = NH + KVH rotates both. cos/sin: each angle is computed in double and its cos/sin
// rounded to float, in a [T, hs/2] table built per call and shared by all B*H heads.
// rope_backward applies the inverse rotation (the transpose) in place: what the backward applies
// to dq/dk.
void rope_forward(const Context& ctx, float* x, int B, int T, int H, int hs, int row_stride, float base, int pos0 = 0);
void rope_backward(const Context& ctx, float* dx, int B, int T, int H, int hs, int row_stride, float base, int pos0 = 0);

// SwiGLU on Megatron's fused fc1 output: inp[N, 2F] rows [gate (F) | up (F)];
// out[N,F] = silu(gate) * up, silu(a) = a * sigmoid(a). dinp[N, 2F] += (both halves).
void swiglu_forward(const Context& ctx, float* out, const float* inp, int N, int F);
void swiglu_backward(const Context& ctx, float* dinp, const float* inp, const float* dout, int N, int F);

// --- Causal attention over the lower triangle only, with grouped-query attention ---
// qkv[B,T,(NH+2*KVH)*hs]: each row is [Q: NH heads | K: KVH heads | V: KVH heads] of hs channels;
// q head h attends to kv head h / (NH / KVH) (NH % KVH == 0; KVH == NH is multi-head attention);
// scale 1/sqrt(hs); softmax over j <= i; out[B,T,NH*hs] = P V.
//
// The saved probabilities (att), per (b, h) in that order, are row blocks of kCausalBlock query
// rows: block r holds rows i0 = r*kCausalBlock .. i1-1 (i1 = min(T, i0 + kCausalBlock)), each row
// the columns 0..i1-1 (row-major, leading dimension i1; the entries j > i of the diagonal tile are
// 0). causal_attention_index gives the offset of P[b, h, i, j] (j < i1 of i's block).
inline constexpr int kCausalBlock = 128;
size_t causal_attention_saved_numel(int B, int T, int NH);
size_t causal_attention_index(int T, int NH, int b, int h, int i, int j);
void causal_attention_forward(const Context& ctx, float* out, float* att, const float* qkv, int B, int T, int NH, int KVH,
                              int hs);
// Only the saved probabilities (what a selective recompute re-runs before the backward).
void causal_attention_probs(const Context& ctx, float* att, const float* qkv, int B, int T, int NH, int KVH, int hs);
// dqkv += (dQ, dK, dV); a kv head's dK/dV sum over its group of q heads. datt is scratch of
// causal_attention_saved_numel(B, T, NH) floats (overwritten).
void causal_attention_backward(const Context& ctx, float* dqkv, float* datt, const float* dout, const float* qkv,
                               const float* att, int B, int T, int NH, int KVH, int hs);

// Attention of Tq new query rows over a KV cache (inference). Query row (b, t), at position
// p0 + t, attends to the cached keys/values 0 .. p0 + t (causal), which must already hold the
// rows p0 .. p0 + Tq - 1 of this step. Rows: q + (b*Tq + t) * q_stride (NH heads of hs),
// out + (b*Tq + t) * out_stride (NH heads), kcache/vcache + (b*Tmax + j) * kv_stride (KVH heads).
// No saved state; the same products, softmax and GEMM precision as causal_attention_forward.
void attention_prefix_forward(const Context& ctx, float* out, int out_stride, const float* q, int q_stride,
                              const float* kcache, const float* vcache, int kv_stride, int Tmax, int B, int Tq, int p0,
                              int NH, int KVH, int hs);

void gelu_forward(const Context& ctx, float* out, const float* inp, size_t N);
void gelu_backward(const Context& ctx, float* dinp, const float* inp, const float* dout, size_t N);

void residual_forward(const Context& ctx, float* out, const float* a, const float* b, size_t N);
void residual_backward(const Context& ctx, float* da, float* db, const float* dout, size_t N);

// logits[N,V] -> probabilities in place; losses[N]; returns counted rows.
int64_t crossentropy_forward(const Context& ctx, float* losses, float* probs_inout, const int32_t* targets, int N, int V,
                             int32_t ignore_index);
// probs[N,V] -> dlogits in place: (probs - onehot) * dloss; ignored rows -> 0.
void crossentropy_backward(const Context& ctx, float* probs_inout, const int32_t* targets, float dloss, int N, int V,
                           int32_t ignore_index);

// Sum of squares in double, deterministic for a fixed thread count.
double sum_squares(const Context& ctx, const float* x, size_t n);
void scale_inplace(const Context& ctx, float* x, size_t n, float s);
void fill_zero(const Context& ctx, float* x, size_t n);

}  // namespace dmpi::kernels
