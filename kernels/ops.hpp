// The fast fp32 kernels of the model: the same ops, shapes and conventions as the reference
// (kernels/ref/ops_ref.hpp), tested against it. GEMMs go through kernels/gemm.hpp (OpenBLAS
// threads); element-wise and row-wise work is threaded with OpenMP; the two never nest.
// Backward functions ACCUMULATE (+=) except crossentropy_backward, which WRITES dlogits in place.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dmpi::kernels {

// out[B,T,C] = wte[tokens] + wpe[t]
void encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T, int C);
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T, int C);

// out[N,C], mean[N], rstd[N] <- inp[N,C], w[C], b[C]
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                       int N, int C);
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C);

// out[N,OC] = inp[N,C] @ w[OC,C]^T + bias[OC]; bias / dbias / dinp may be null.
void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC);
void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w,
                     int N, int C, int OC);

// Causal self-attention. qkv[B,T,3C] -> out[B,T,C]; att[B,NH,T,T] probabilities.
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
// datt[B,NH,T,T] is scratch (overwritten).
void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH);

void gelu_forward(float* out, const float* inp, size_t N);
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N);

void residual_forward(float* out, const float* a, const float* b, size_t N);
void residual_backward(float* da, float* db, const float* dout, size_t N);

// logits[N,V] -> probabilities in place; losses[N]; returns counted rows.
int64_t crossentropy_forward(float* losses, float* probs_inout, const int32_t* targets, int N, int V,
                             int32_t ignore_index);
// probs[N,V] -> dlogits in place: (probs - onehot) * dloss; ignored rows -> 0.
void crossentropy_backward(float* probs_inout, const int32_t* targets, float dloss, int N, int V,
                           int32_t ignore_index);

// Sum of squares in double, deterministic for a fixed thread count.
double sum_squares(const float* x, size_t n);
void scale_inplace(float* x, size_t n, float s);
void fill_zero(float* x, size_t n);

}  // namespace dmpi::kernels
