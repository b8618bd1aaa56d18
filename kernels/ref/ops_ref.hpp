// The readable reference: every op of the model as plain loops, templated on the scalar type
// so tests run it in double against central finite differences, and the fast kernels
// (kernels/ops.hpp) are compared against it in float. No BLAS, no threads, no tricks.
//
// Conventions (same as the fast path): row-major; B = batch, T = sequence, C = channels,
// NH = heads, hs = C / NH, V = vocabulary, N = number of rows (B*T).
// Backward functions ACCUMULATE (+=) into parameter and input gradients, except
// crossentropy_backward, which WRITES dlogits (it starts the backward chain and may alias probs).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace dmpi::kernels::ref {

// out[B,T,C] = wte[tokens[b,t], :] + wpe[t, :]
template <class F>
void encoder_forward(F* out, const int32_t* tokens, const F* wte, const F* wpe, int B, int T, int C) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const F* e = wte + static_cast<size_t>(tokens[b * T + t]) * C;
      const F* p = wpe + static_cast<size_t>(t) * C;
      F* o = out + (static_cast<size_t>(b) * T + t) * C;
      for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
    }
}

template <class F>
void encoder_backward(F* dwte, F* dwpe, const F* dout, const int32_t* tokens, int B, int T, int C) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const F* d = dout + (static_cast<size_t>(b) * T + t) * C;
      F* de = dwte + static_cast<size_t>(tokens[b * T + t]) * C;
      F* dp = dwpe + static_cast<size_t>(t) * C;
      for (int c = 0; c < C; ++c) {
        de[c] += d[c];
        dp[c] += d[c];
      }
    }
}

// out[N,C] = (inp - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps); mean[N], rstd[N] saved for
// backward. eps is an F (not deduced): the default is 1e-5 in F's precision.
template <class F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* w, const F* bias, int N, int C,
                       std::type_identity_t<F> eps = F(1e-5)) {
  for (int n = 0; n < N; ++n) {
    const F* x = inp + static_cast<size_t>(n) * C;
    F m = 0;
    for (int c = 0; c < C; ++c) m += x[c];
    m /= C;
    F v = 0;
    for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= C;
    F s = F(1) / std::sqrt(v + eps);
    F* o = out + static_cast<size_t>(n) * C;
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * w[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

template <class F>
void layernorm_backward(F* dinp, F* dw, F* db, const F* dout, const F* inp, const F* w, const F* mean, const F* rstd,
                        int N, int C) {
  for (int n = 0; n < N; ++n) {
    const F* x = inp + static_cast<size_t>(n) * C;
    const F* d = dout + static_cast<size_t>(n) * C;
    F* dx = dinp + static_cast<size_t>(n) * C;
    // xhat = (x - mean) * rstd; dxhat = d * w
    F sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (int c = 0; c < C; ++c) {
      F xhat = (x[c] - mean[n]) * rstd[n];
      F dxhat = d[c] * w[c];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * xhat;
      dw[c] += d[c] * xhat;
      db[c] += d[c];
    }
    sum_dxhat /= C;
    sum_dxhat_xhat /= C;
    for (int c = 0; c < C; ++c) {
      F xhat = (x[c] - mean[n]) * rstd[n];
      dx[c] += (d[c] * w[c] - sum_dxhat - xhat * sum_dxhat_xhat) * rstd[n];
    }
  }
}

// out[N,OC] = inp[N,C] @ w[OC,C]^T + bias[OC] (bias may be null)
template <class F>
void matmul_forward(F* out, const F* inp, const F* w, const F* bias, int N, int C, int OC) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      F s = bias ? bias[o] : F(0);
      for (int c = 0; c < C; ++c) s += inp[static_cast<size_t>(n) * C + c] * w[static_cast<size_t>(o) * C + c];
      out[static_cast<size_t>(n) * OC + o] = s;
    }
}

template <class F>
void matmul_backward(F* dinp, F* dw, F* dbias, const F* dout, const F* inp, const F* w, int N, int C, int OC) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      F d = dout[static_cast<size_t>(n) * OC + o];
      if (dbias) dbias[o] += d;
      for (int c = 0; c < C; ++c) {
        if (dinp) dinp[static_cast<size_t>(n) * C + c] += d * w[static_cast<size_t>(o) * C + c];
        if (dw) dw[static_cast<size_t>(o) * C + c] += d * inp[static_cast<size_t>(n) * C + c];
      }
    }
}

// Causal multi-head self-attention on a fused qkv[B,T,3C] (q | k | v, each NH heads of hs).
// att[B,NH,T,T] keeps the softmax probabilities (zero above the diagonal); out[B,T,C].
template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH) {
  int hs = C / NH;
  F scale = F(1) / std::sqrt(static_cast<F>(hs));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int i = 0; i < T; ++i) {
        const F* q = qkv + (static_cast<size_t>(b) * T + i) * 3 * C + h * hs;
        F* a = att + ((static_cast<size_t>(b) * NH + h) * T + i) * T;
        F mx = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          const F* k = qkv + (static_cast<size_t>(b) * T + j) * 3 * C + C + h * hs;
          F s = 0;
          for (int e = 0; e < hs; ++e) s += q[e] * k[e];
          a[j] = s * scale;
          if (a[j] > mx) mx = a[j];
        }
        F sum = 0;
        for (int j = 0; j <= i; ++j) {
          a[j] = std::exp(a[j] - mx);
          sum += a[j];
        }
        for (int j = 0; j < T; ++j) a[j] = j <= i ? a[j] / sum : F(0);
        F* o = out + (static_cast<size_t>(b) * T + i) * C + h * hs;
        for (int e = 0; e < hs; ++e) {
          F s = 0;
          for (int j = 0; j <= i; ++j) s += a[j] * qkv[(static_cast<size_t>(b) * T + j) * 3 * C + 2 * C + h * hs + e];
          o[e] = s;
        }
      }
}

// datt[B,NH,T,T] is scratch (overwritten).
template <class F>
void attention_backward(F* dqkv, F* datt, const F* dout, const F* qkv, const F* att, int B, int T, int C, int NH) {
  int hs = C / NH;
  F scale = F(1) / std::sqrt(static_cast<F>(hs));
  auto Q = [&](int b, int t) { return static_cast<size_t>(b * T + t) * 3 * C; };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int i = 0; i < T; ++i) {
        const F* a = att + ((static_cast<size_t>(b) * NH + h) * T + i) * T;
        F* da = datt + ((static_cast<size_t>(b) * NH + h) * T + i) * T;
        const F* d = dout + (static_cast<size_t>(b) * T + i) * C + h * hs;
        // out_i = sum_j a_ij v_j
        for (int j = 0; j <= i; ++j) {
          F s = 0;
          for (int e = 0; e < hs; ++e) {
            s += d[e] * qkv[Q(b, j) + 2 * C + h * hs + e];
            dqkv[Q(b, j) + 2 * C + h * hs + e] += a[j] * d[e];
          }
          da[j] = s;
        }
        // softmax backward: ds_j = a_j (da_j - sum_k a_k da_k)
        F dot = 0;
        for (int j = 0; j <= i; ++j) dot += a[j] * da[j];
        for (int j = 0; j <= i; ++j) {
          F ds = a[j] * (da[j] - dot) * scale;
          for (int e = 0; e < hs; ++e) {
            dqkv[Q(b, i) + h * hs + e] += ds * qkv[Q(b, j) + C + h * hs + e];
            dqkv[Q(b, j) + C + h * hs + e] += ds * qkv[Q(b, i) + h * hs + e];
          }
        }
      }
}

// RMSNorm: out[N,C] = inp * rstd * w, rstd[n] = 1 / sqrt(mean_c(inp^2) + eps) saved for backward.
template <class F>
void rmsnorm_forward(F* out, F* rstd, const F* inp, const F* w, int N, int C, std::type_identity_t<F> eps) {
  for (int n = 0; n < N; ++n) {
    const F* x = inp + static_cast<size_t>(n) * C;
    F ss = 0;
    for (int c = 0; c < C; ++c) ss += x[c] * x[c];
    F r = F(1) / std::sqrt(ss / C + eps);
    F* o = out + static_cast<size_t>(n) * C;
    for (int c = 0; c < C; ++c) o[c] = x[c] * r * w[c];
    rstd[n] = r;
  }
}

template <class F>
void rmsnorm_backward(F* dinp, F* dw, const F* dout, const F* inp, const F* w, const F* rstd, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const F* x = inp + static_cast<size_t>(n) * C;
    const F* d = dout + static_cast<size_t>(n) * C;
    F* dx = dinp + static_cast<size_t>(n) * C;
    F r = rstd[n];
    // d out_c / d x_k = r w_c [c == k] - w_c x_c r^3 x_k / C
    F dot = 0;  // sum_c d_c w_c x_c
    for (int c = 0; c < C; ++c) {
      dot += d[c] * w[c] * x[c];
      dw[c] += d[c] * x[c] * r;
    }
    for (int c = 0; c < C; ++c) dx[c] += d[c] * w[c] * r - x[c] * r * r * r * dot / C;
  }
}

// Rotary embeddings, non-interleaved ("rotate_half"): in each head channel i < hs/2 pairs with
// i + hs/2; the pair of row (b, t) is rotated by angle (pos0 + t) * base^(-2i/hs). The angle, its
// cos and its sin are computed in double (then rounded to F). In place, heads 0..H-1 of each row
// at x + (b*T + t) * row_stride + h*hs. inverse = true applies the transposed rotation (backward).
template <class F>
void rope_forward(F* x, int B, int T, int H, int hs, int row_stride, double base, int pos0 = 0, bool inverse = false) {
  const int half = hs / 2;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        F* v = x + (static_cast<size_t>(b) * T + t) * row_stride + static_cast<size_t>(h) * hs;
        for (int i = 0; i < half; ++i) {
          double angle = static_cast<double>(pos0 + t) * std::pow(base, -2.0 * i / hs);
          F c = static_cast<F>(std::cos(angle)), s = static_cast<F>(std::sin(angle));
          if (inverse) s = -s;
          F a = v[i], bb = v[i + half];
          v[i] = a * c - bb * s;
          v[i + half] = bb * c + a * s;
        }
      }
}
template <class F>
void rope_backward(F* dx, int B, int T, int H, int hs, int row_stride, double base, int pos0 = 0) {
  rope_forward(dx, B, T, H, hs, row_stride, base, pos0, true);
}

// SwiGLU: inp[N, 2F] rows [gate | up]; out[N, F] = gate * sigmoid(gate) * up.
template <class F>
void swiglu_forward(F* out, const F* inp, int N, int Fd) {
  for (int n = 0; n < N; ++n)
    for (int f = 0; f < Fd; ++f) {
      F g = inp[static_cast<size_t>(n) * 2 * Fd + f], u = inp[static_cast<size_t>(n) * 2 * Fd + Fd + f];
      out[static_cast<size_t>(n) * Fd + f] = g / (F(1) + std::exp(-g)) * u;
    }
}

template <class F>
void swiglu_backward(F* dinp, const F* inp, const F* dout, int N, int Fd) {
  for (int n = 0; n < N; ++n)
    for (int f = 0; f < Fd; ++f) {
      size_t gi = static_cast<size_t>(n) * 2 * Fd + f, ui = gi + Fd;
      F g = inp[gi], u = inp[ui], d = dout[static_cast<size_t>(n) * Fd + f];
      F s = F(1) / (F(1) + std::exp(-g));
      dinp[gi] += d * u * (s + g * s * (F(1) - s));
      dinp[ui] += d * g * s;
    }
}

// Causal self-attention with grouped-query heads on qkv[B,T,(NH+2*KVH)*hs]: each row is
// [Q: NH heads | K: KVH heads | V: KVH heads]; q head h uses kv head h / (NH / KVH).
// att[B,NH,T,T] keeps the probabilities (zero above the diagonal); out[B,T,NH*hs].
template <class F>
void causal_attention_forward(F* out, F* att, const F* qkv, int B, int T, int NH, int KVH, int hs) {
  const int R = (NH + 2 * KVH) * hs, G = NH / KVH;
  const F scale = F(1) / std::sqrt(static_cast<F>(hs));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const int g = h / G;
      for (int i = 0; i < T; ++i) {
        const F* q = qkv + (static_cast<size_t>(b) * T + i) * R + h * hs;
        F* a = att + ((static_cast<size_t>(b) * NH + h) * T + i) * T;
        F mx = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          const F* k = qkv + (static_cast<size_t>(b) * T + j) * R + (NH + g) * hs;
          F s = 0;
          for (int e = 0; e < hs; ++e) s += q[e] * k[e];
          a[j] = s * scale;
          if (a[j] > mx) mx = a[j];
        }
        F sum = 0;
        for (int j = 0; j <= i; ++j) {
          a[j] = std::exp(a[j] - mx);
          sum += a[j];
        }
        for (int j = 0; j < T; ++j) a[j] = j <= i ? a[j] / sum : F(0);
        F* o = out + (static_cast<size_t>(b) * T + i) * NH * hs + h * hs;
        for (int e = 0; e < hs; ++e) {
          F s = 0;
          for (int j = 0; j <= i; ++j) s += a[j] * qkv[(static_cast<size_t>(b) * T + j) * R + (NH + KVH + g) * hs + e];
          o[e] = s;
        }
      }
    }
}

// dqkv += gradients (a kv head's dK, dV sum over its q heads); datt[B,NH,T,T] is scratch.
template <class F>
void causal_attention_backward(F* dqkv, F* datt, const F* dout, const F* qkv, const F* att, int B, int T, int NH,
                               int KVH, int hs) {
  const int R = (NH + 2 * KVH) * hs, G = NH / KVH;
  const F scale = F(1) / std::sqrt(static_cast<F>(hs));
  auto row = [&](int b, int t) { return (static_cast<size_t>(b) * T + t) * R; };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const int qo = h * hs, ko = (NH + h / G) * hs, vo = (NH + KVH + h / G) * hs;
      for (int i = 0; i < T; ++i) {
        const F* a = att + ((static_cast<size_t>(b) * NH + h) * T + i) * T;
        F* da = datt + ((static_cast<size_t>(b) * NH + h) * T + i) * T;
        const F* d = dout + (static_cast<size_t>(b) * T + i) * NH * hs + h * hs;
        for (int j = 0; j <= i; ++j) {
          F s = 0;
          for (int e = 0; e < hs; ++e) {
            s += d[e] * qkv[row(b, j) + vo + e];
            dqkv[row(b, j) + vo + e] += a[j] * d[e];
          }
          da[j] = s;
        }
        F dot = 0;
        for (int j = 0; j <= i; ++j) dot += a[j] * da[j];
        for (int j = 0; j <= i; ++j) {
          F ds = a[j] * (da[j] - dot) * scale;
          for (int e = 0; e < hs; ++e) {
            dqkv[row(b, i) + qo + e] += ds * qkv[row(b, j) + ko + e];
            dqkv[row(b, j) + ko + e] += ds * qkv[row(b, i) + qo + e];
          }
        }
      }
    }
}

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
template <class F>
void gelu_forward(F* out, const F* inp, size_t N) {
  const F k = std::sqrt(F(2) / F(M_PI));
  for (size_t i = 0; i < N; ++i) {
    F x = inp[i];
    out[i] = F(0.5) * x * (F(1) + std::tanh(k * (x + F(0.044715) * x * x * x)));
  }
}

template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, size_t N) {
  const F k = std::sqrt(F(2) / F(M_PI));
  for (size_t i = 0; i < N; ++i) {
    F x = inp[i];
    F u = k * (x + F(0.044715) * x * x * x);
    F th = std::tanh(u);
    F du = k * (F(1) + F(3) * F(0.044715) * x * x);
    F g = F(0.5) * (F(1) + th) + F(0.5) * x * (F(1) - th * th) * du;
    dinp[i] += g * dout[i];
  }
}

template <class F>
void residual_forward(F* out, const F* a, const F* b, size_t N) {
  for (size_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

template <class F>
void residual_backward(F* da, F* db, const F* dout, size_t N) {
  for (size_t i = 0; i < N; ++i) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

// probs[N,V] = softmax(logits) (may alias logits); losses[n] = -log probs[n, target] or 0 when
// targets[n] == ignore_index. Returns the number of counted (non-ignored) rows.
template <class F>
int64_t crossentropy_forward(F* losses, F* probs, const F* logits, const int32_t* targets, int N, int V,
                             int32_t ignore_index) {
  int64_t valid = 0;
  for (int n = 0; n < N; ++n) {
    const F* l = logits + static_cast<size_t>(n) * V;
    F* p = probs + static_cast<size_t>(n) * V;
    F mx = l[0];
    for (int v = 1; v < V; ++v) mx = l[v] > mx ? l[v] : mx;
    F sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(l[v] - mx);
    F log_sum = std::log(sum);
    int32_t tgt = targets[n];
    F lt = tgt == ignore_index ? F(0) : l[tgt];
    for (int v = 0; v < V; ++v) p[v] = std::exp(l[v] - mx) / sum;
    if (tgt == ignore_index) {
      losses[n] = 0;
    } else {
      losses[n] = log_sum - (lt - mx);
      ++valid;
    }
  }
  return valid;
}

// dlogits = (probs - onehot(target)) * dloss for counted rows, 0 for ignored rows (WRITES).
template <class F>
void crossentropy_backward(F* dlogits, const F* probs, const int32_t* targets, F dloss, int N, int V,
                           int32_t ignore_index) {
  for (int n = 0; n < N; ++n) {
    const F* p = probs + static_cast<size_t>(n) * V;
    F* d = dlogits + static_cast<size_t>(n) * V;
    if (targets[n] == ignore_index) {
      for (int v = 0; v < V; ++v) d[v] = 0;
      continue;
    }
    for (int v = 0; v < V; ++v) d[v] = (p[v] - (v == targets[n] ? F(1) : F(0))) * dloss;
  }
}

}  // namespace dmpi::kernels::ref
