#include "kernels/ops.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/fastmath.hpp"
#include "base/error.hpp"
#include "kernels/gemm.hpp"

namespace dmpi::kernels {

void encoder_forward(const Context& ctx, float* out, const int32_t* tokens, ConstView wte, ConstView wpe, int B, int T,
                     int C) {
  // 16-bit tables (bf16/fp16 training) are read as they are stored: their rows widened here.
  const size_t n = static_cast<size_t>(C);
  auto row = [n](ConstView t, size_t r, float* buf) -> const float* {
    switch (t.dtype) {
      case DType::F32: return static_cast<const float*>(t.data) + r * n;
      case DType::BF16: {
        const bf16* h = static_cast<const bf16*>(t.data) + r * n;
        for (size_t c = 0; c < n; ++c) buf[c] = to_float(h[c]);
        return buf;
      }
      case DType::F16: {
        const _Float16* h = static_cast<const _Float16*>(t.data) + r * n;
        for (size_t c = 0; c < n; ++c) buf[c] = static_cast<float>(h[c]);
        return buf;
      }
      default: return nullptr;
    }
  };
  auto floating = [](DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; };
  DMPI_REQUIRE(floating(wte.dtype) && (!wpe.data || floating(wpe.dtype)),
               "encoder_forward: a " << dtype_name(wte.dtype) << " embedding table");
  const bool positions = wpe.data != nullptr;
#pragma omp parallel num_threads(ctx.threads)
  {
    std::vector<float> ebuf(n), pbuf(n);
#pragma omp for schedule(static)
    for (int bt = 0; bt < B * T; ++bt) {
      float* o = out + static_cast<size_t>(bt) * n;
      if (tokens[bt] < 0 && !positions) {  // not in this rank's vocabulary slice (tensor parallelism)
        std::memset(o, 0, n * sizeof(float));
        continue;
      }
      const float* e = row(wte, static_cast<size_t>(tokens[bt]), ebuf.data());
      if (!positions) {
        std::memcpy(o, e, n * sizeof(float));
        continue;
      }
      const float* p = row(wpe, static_cast<size_t>(bt % T), pbuf.data());
#pragma omp simd
      for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
    }
  }
}

void encoder_backward(const Context& ctx, float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                      int C) {
  // dwpe null: no learned positions
  // Several positions may hold the same token: split the channels over threads instead of rows.
#pragma omp parallel num_threads(ctx.threads)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int chunk = (C + nt - 1) / nt, c0 = std::min(C, id * chunk), c1 = std::min(C, c0 + chunk);
    for (int bt = 0; bt < B * T; ++bt) {
      const float* d = dout + static_cast<size_t>(bt) * C;
      float* dp = dwpe ? dwpe + static_cast<size_t>(bt % T) * C : nullptr;
      if (tokens[bt] >= 0) {  // negative: another tensor-parallel rank's token
        float* de = dwte + static_cast<size_t>(tokens[bt]) * C;
#pragma omp simd
        for (int c = c0; c < c1; ++c) de[c] += d[c];
      }
      if (!dwpe) continue;
#pragma omp simd
      for (int c = c0; c < c1; ++c) dp[c] += d[c];
    }
  }
}

void layernorm_forward(const Context& ctx, float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                       int N, int C, float eps) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<size_t>(n) * C;
    float m = 0.f;
#pragma omp simd reduction(+ : m)
    for (int c = 0; c < C; ++c) m += x[c];
    m /= C;
    float v = 0.f;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= C;
    float s = 1.0f / std::sqrt(v + eps);
    float* o = out + static_cast<size_t>(n) * C;
#pragma omp simd
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * w[c] + b[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward(const Context& ctx, float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C) {
  int nt = ctx.threads;
  // Per-thread partial dw/db, combined in thread order: deterministic for a fixed thread count.
  std::vector<float> part(static_cast<size_t>(nt) * 2 * C, 0.f);
#pragma omp parallel num_threads(nt)
  {
    int id = omp_get_thread_num();
    float* pdw = part.data() + static_cast<size_t>(id) * 2 * C;
    float* pdb = pdw + C;
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      const float* d = dout + static_cast<size_t>(n) * C;
      float* dx = dinp + static_cast<size_t>(n) * C;
      float m = mean[n], s = rstd[n];
      float sum_d = 0.f, sum_dx = 0.f;
#pragma omp simd reduction(+ : sum_d, sum_dx)
      for (int c = 0; c < C; ++c) {
        float xhat = (x[c] - m) * s;
        float dxhat = d[c] * w[c];
        sum_d += dxhat;
        sum_dx += dxhat * xhat;
        pdw[c] += d[c] * xhat;
        pdb[c] += d[c];
      }
      sum_d /= C;
      sum_dx /= C;
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        float xhat = (x[c] - m) * s;
        dx[c] += (d[c] * w[c] - sum_d - xhat * sum_dx) * s;
      }
    }
  }
  for (int t = 0; t < nt; ++t) {
    const float* pdw = part.data() + static_cast<size_t>(t) * 2 * C;
    for (int c = 0; c < C; ++c) {
      dw[c] += pdw[c];
      db[c] += pdw[C + c];
    }
  }
}

void matmul_forward(const Context& ctx, float* out, const float* inp, ConstView w, const float* bias, int N, int C,
                    int OC) {
  if (bias) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
    for (int n = 0; n < N; ++n) std::memcpy(out + static_cast<size_t>(n) * OC, bias, sizeof(float) * OC);
  }
  gemm(ctx, Op::N, Op::T, N, OC, C, 1.0f, operand(inp, C), operand(w, C), bias ? 1.0f : 0.0f, out, OC);
}

void matmul_backward(const Context& ctx, float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
                     ConstView w, int N, int C, int OC) {
  if (dinp) gemm(ctx, Op::N, Op::N, N, C, OC, 1.0f, operand(dout, OC), operand(w, C), 1.0f, dinp, C);
  if (dw) gemm(ctx, Op::T, Op::N, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
  if (dbias) {
    // Column sums of dout: each thread owns a block of columns and walks all rows.
    constexpr int kBlock = 64;
    int nblocks = (OC + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
    for (int blk = 0; blk < nblocks; ++blk) {
      int o0 = blk * kBlock, o1 = std::min(OC, o0 + kBlock);
      float acc[kBlock] = {0};
      for (int n = 0; n < N; ++n) {
        const float* d = dout + static_cast<size_t>(n) * OC;
#pragma omp simd
        for (int o = o0; o < o1; ++o) acc[o - o0] += d[o];
      }
      for (int o = o0; o < o1; ++o) dbias[o] += acc[o - o0];
    }
  }
}

void attention_forward(const Context& ctx, float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  const int hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // 1) scores S = scale * Q K^T per (b, h), straight from the strided qkv rows.
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const float* q = qkv + static_cast<size_t>(b) * T * C3 + h * hs;
      float* s = att + (static_cast<size_t>(b) * NH + h) * T * T;
      gemm(ctx, Op::N, Op::T, T, T, hs, scale, q, C3, q + C, C3, 0.0f, s, T);
    }
  // 2) causal softmax, row by row; entries above the diagonal become 0.
  const int rows = B * NH * T;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int r = 0; r < rows; ++r) {
    int i = r % T;
    float* a = att + static_cast<size_t>(r) * T;
    float mx = a[0];
    for (int j = 1; j <= i; ++j) mx = std::max(mx, a[j]);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= i; ++j) {
      a[j] = fast_exp(a[j] - mx);
      sum += a[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j <= i; ++j) a[j] *= inv;
    std::memset(a + i + 1, 0, sizeof(float) * static_cast<size_t>(T - i - 1));
  }
  // 3) out_h = P V
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const float* v = qkv + static_cast<size_t>(b) * T * C3 + 2 * C + h * hs;
      const float* p = att + (static_cast<size_t>(b) * NH + h) * T * T;
      float* o = out + static_cast<size_t>(b) * T * C + h * hs;
      gemm(ctx, Op::N, Op::N, T, hs, T, 1.0f, p, T, v, C3, 0.0f, o, C);
    }
}

void attention_backward(const Context& ctx, float* dqkv, float* datt, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH) {
  const int hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // dP = dO V^T ; dV += P^T dO
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      size_t base = static_cast<size_t>(b) * T * C3 + h * hs;
      const float* d = dout + static_cast<size_t>(b) * T * C + h * hs;
      const float* p = att + (static_cast<size_t>(b) * NH + h) * T * T;
      float* dp = datt + (static_cast<size_t>(b) * NH + h) * T * T;
      gemm(ctx, Op::N, Op::T, T, T, hs, 1.0f, d, C, qkv + base + 2 * C, C3, 0.0f, dp, T);
      gemm(ctx, Op::T, Op::N, T, hs, T, 1.0f, p, T, d, C, 1.0f, dqkv + base + 2 * C, C3);
    }
  // dS = P * (dP - rowsum(P * dP)), causal part only
  const int rows = B * NH * T;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int r = 0; r < rows; ++r) {
    int i = r % T;
    const float* p = att + static_cast<size_t>(r) * T;
    float* ds = datt + static_cast<size_t>(r) * T;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j <= i; ++j) dot += p[j] * ds[j];
#pragma omp simd
    for (int j = 0; j <= i; ++j) ds[j] = p[j] * (ds[j] - dot);
    std::memset(ds + i + 1, 0, sizeof(float) * static_cast<size_t>(T - i - 1));
  }
  // dQ += scale dS K ; dK += scale dS^T Q
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      size_t base = static_cast<size_t>(b) * T * C3 + h * hs;
      const float* ds = datt + (static_cast<size_t>(b) * NH + h) * T * T;
      gemm(ctx, Op::N, Op::N, T, hs, T, scale, ds, T, qkv + base + C, C3, 1.0f, dqkv + base, C3);
      gemm(ctx, Op::T, Op::N, T, hs, T, scale, ds, T, qkv + base, C3, 1.0f, dqkv + base + C, C3);
    }
}

namespace {
constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;
}  // namespace

void gelu_forward(const Context& ctx, float* out, const float* inp, size_t N) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
  for (size_t i = 0; i < N; ++i) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + fast_tanh(kGeluK * (x + kGeluA * x * x * x)));
  }
}

void gelu_backward(const Context& ctx, float* dinp, const float* inp, const float* dout, size_t N) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
  for (size_t i = 0; i < N; ++i) {
    float x = inp[i];
    float th = fast_tanh(kGeluK * (x + kGeluA * x * x * x));
    float du = kGeluK * (1.0f + 3.0f * kGeluA * x * x);
    float g = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
    dinp[i] += g * dout[i];
  }
}

void residual_forward(const Context& ctx, float* out, const float* a, const float* b, size_t N) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
  for (size_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

void residual_backward(const Context& ctx, float* da, float* db, const float* dout, size_t N) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
  for (size_t i = 0; i < N; ++i) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

int64_t crossentropy_forward(const Context& ctx, float* losses, float* probs, const int32_t* targets, int N, int V,
                             int32_t ignore_index) {
  int64_t valid = 0;
#pragma omp parallel for schedule(static) num_threads(ctx.threads) reduction(+ : valid)
  for (int n = 0; n < N; ++n) {
    float* p = probs + static_cast<size_t>(n) * V;
    float mx = p[0];
#pragma omp simd reduction(max : mx)
    for (int v = 0; v < V; ++v) mx = std::max(mx, p[v]);
    int32_t tgt = targets[n];
    float lt = tgt == ignore_index ? 0.f : p[tgt] - mx;
    // 50k terms: float sums over chunks (vectorized), chunks accumulated in double.
    double sum = 0.0;
    for (int v0 = 0; v0 < V; v0 += 2048) {
      const int v1 = std::min(V, v0 + 2048);
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int v = v0; v < v1; ++v) {
        float e = fast_exp(p[v] - mx);
        p[v] = e;
        s += e;
      }
      sum += s;
    }
    float inv = static_cast<float>(1.0 / sum);
#pragma omp simd
    for (int v = 0; v < V; ++v) p[v] *= inv;
    if (tgt == ignore_index) {
      losses[n] = 0.f;
    } else {
      losses[n] = static_cast<float>(std::log(sum)) - lt;
      ++valid;
    }
  }
  return valid;
}

void crossentropy_backward(const Context& ctx, float* probs, const int32_t* targets, float dloss, int N, int V, int32_t ignore_index) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int n = 0; n < N; ++n) {
    float* p = probs + static_cast<size_t>(n) * V;
    if (targets[n] == ignore_index) {
      std::memset(p, 0, sizeof(float) * static_cast<size_t>(V));
      continue;
    }
#pragma omp simd
    for (int v = 0; v < V; ++v) p[v] *= dloss;
    p[targets[n]] -= dloss;
  }
}

double sum_squares(const Context& ctx, const float* x, size_t n) {
  int nt = ctx.threads;
  std::vector<double> part(static_cast<size_t>(nt) * 8, 0.0);  // padded against false sharing
#pragma omp parallel num_threads(nt)
  {
    double s = 0.0;
#pragma omp for simd schedule(static)
    for (size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
    part[static_cast<size_t>(omp_get_thread_num()) * 8] = s;
  }
  double total = 0.0;
  for (int t = 0; t < nt; ++t) total += part[static_cast<size_t>(t) * 8];
  return total;
}

void scale_inplace(const Context& ctx, float* x, size_t n, float s) {
#pragma omp parallel for simd schedule(static) num_threads(ctx.threads)
  for (size_t i = 0; i < n; ++i) x[i] *= s;
}

void fill_zero(const Context& ctx, float* x, size_t n) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (size_t i = 0; i < n; i += 1 << 16) std::memset(x + i, 0, sizeof(float) * std::min<size_t>(1 << 16, n - i));
}


// --- RMSNorm ---

void rmsnorm_forward(const Context& ctx, float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<size_t>(n) * C;
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; ++c) ss += x[c] * x[c];
    const float s = 1.0f / std::sqrt(ss / C + eps);
    float* o = out + static_cast<size_t>(n) * C;
#pragma omp simd
    for (int c = 0; c < C; ++c) o[c] = x[c] * s * w[c];
    rstd[n] = s;
  }
}

void rmsnorm_backward(const Context& ctx, float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C) {
  // out_c = x_c r w_c with r = (mean(x^2) + eps)^(-1/2), dr/dx_c = -r^3 x_c / C:
  // dx_c = r (d_c w_c - x_c r^2 sum_k(d_k w_k x_k) / C), dw_c = sum_n d_c x_c r.
  const int nt = ctx.threads;
  std::vector<float> part(static_cast<size_t>(nt) * C, 0.f);  // per-thread dw, combined in thread order
#pragma omp parallel num_threads(nt)
  {
    float* pdw = part.data() + static_cast<size_t>(omp_get_thread_num()) * C;
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      const float* d = dout + static_cast<size_t>(n) * C;
      float* dx = dinp + static_cast<size_t>(n) * C;
      const float r = rstd[n];
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int c = 0; c < C; ++c) {
        dot += d[c] * w[c] * x[c];
        pdw[c] += d[c] * x[c] * r;
      }
      const float k = r * r * dot / C;
#pragma omp simd
      for (int c = 0; c < C; ++c) dx[c] += r * (d[c] * w[c] - x[c] * k);
    }
  }
  for (int t = 0; t < nt; ++t) {
    const float* pdw = part.data() + static_cast<size_t>(t) * C;
    for (int c = 0; c < C; ++c) dw[c] += pdw[c];
  }
}

// --- RoPE ---

namespace {
// cos/sin of (pos0 + t) * base^(-2i/hs) for t < T, i < hs/2: angles in double, rounded to float.
// Layout [T][hs/2] of cos, then the same of sin.
void rope_table(const Context& ctx, std::vector<float>& tab, int T, int hs, float base, int pos0) {
  const int half = hs / 2;
  tab.resize(2 * static_cast<size_t>(T) * half);
  float* cs = tab.data();
  float* sn = cs + static_cast<size_t>(T) * half;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(static_cast<double>(base), -2.0 * i / hs);
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos0 + t) * inv_freq[i];
      cs[static_cast<size_t>(t) * half + i] = static_cast<float>(std::cos(a));
      sn[static_cast<size_t>(t) * half + i] = static_cast<float>(std::sin(a));
    }
}

// sign = +1: the rotation; -1: its inverse (transpose).
void rope_apply(const Context& ctx, float* x, int B, int T, int H, int hs, int row_stride, float base, int pos0,
                float sign) {
  DMPI_REQUIRE(hs % 2 == 0, "rope: odd head size " << hs);
  DMPI_REQUIRE(row_stride >= H * hs, "rope: row stride " << row_stride << " < " << H << " heads of " << hs);
  thread_local std::vector<float> tab;
  rope_table(ctx, tab, T, hs, base, pos0);
  const int half = hs / 2;
  const float* cs = tab.data();
  const float* sn = cs + static_cast<size_t>(T) * half;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int bt = 0; bt < B * T; ++bt) {
    const int t = bt % T;
    const float* c = cs + static_cast<size_t>(t) * half;
    const float* s = sn + static_cast<size_t>(t) * half;
    float* row = x + static_cast<size_t>(bt) * row_stride;
    for (int h = 0; h < H; ++h) {
      float* x1 = row + static_cast<size_t>(h) * hs;
      float* x2 = x1 + half;
#pragma omp simd
      for (int i = 0; i < half; ++i) {
        const float a = x1[i], b = x2[i], si = sign * s[i];
        x1[i] = a * c[i] - b * si;
        x2[i] = b * c[i] + a * si;
      }
    }
  }
}
}  // namespace

void rope_forward(const Context& ctx, float* x, int B, int T, int H, int hs, int row_stride, float base, int pos0) {
  rope_apply(ctx, x, B, T, H, hs, row_stride, base, pos0, 1.0f);
}
void rope_backward(const Context& ctx, float* dx, int B, int T, int H, int hs, int row_stride, float base, int pos0) {
  rope_apply(ctx, dx, B, T, H, hs, row_stride, base, pos0, -1.0f);
}

// --- SwiGLU ---

void swiglu_forward(const Context& ctx, float* out, const float* inp, int N, int F) {
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int n = 0; n < N; ++n) {
    const float* g = inp + static_cast<size_t>(n) * 2 * F;
    const float* u = g + F;
    float* o = out + static_cast<size_t>(n) * F;
#pragma omp simd
    for (int f = 0; f < F; ++f) {
      const float sig = 1.0f / (1.0f + fast_exp(-g[f]));
      o[f] = g[f] * sig * u[f];
    }
  }
}

void swiglu_backward(const Context& ctx, float* dinp, const float* inp, const float* dout, int N, int F) {
  // d silu(a) / da = s (1 + a (1 - s)), s = sigmoid(a)
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int n = 0; n < N; ++n) {
    const float* g = inp + static_cast<size_t>(n) * 2 * F;
    const float* u = g + F;
    const float* d = dout + static_cast<size_t>(n) * F;
    float* dg = dinp + static_cast<size_t>(n) * 2 * F;
    float* du = dg + F;
#pragma omp simd
    for (int f = 0; f < F; ++f) {
      const float a = g[f], sig = 1.0f / (1.0f + fast_exp(-a));
      dg[f] += d[f] * u[f] * sig * (1.0f + a * (1.0f - sig));
      du[f] += d[f] * a * sig;
    }
  }
}

// --- Causal attention (lower triangle, GQA) and prefix attention over a KV cache ---
//
// Work is cut into row blocks of kCausalBlock query rows: block r of a head multiplies its rows'
// queries by the keys 0 .. (block end) only, so the products cover the lower triangle plus half
// of the diagonal tiles ((nb + 1) / (2 nb) of the square for nb blocks). Per block:
//   forward  S = scale Q_r K^T, softmax rows (j <= i; the tail of the diagonal tile set to 0),
//            O_r = P_r V
//   backward dP = dO_r V^T, dV += P_r^T dO_r, dS = P (dP - rowsum(P dP)),
//            dQ_r += scale dS K, dK += scale dS^T Q_r
// Block size: 128 rows (measured at T = 1024, gpt2-124m's heads, 2 threads: forward + backward
// 41 ms with 64-row blocks, 36 ms with 128, 40 ms with 256; perf/results/bench_kernels-attention.txt).
// Threads: the blocks' GEMMs are small (128 x up-to-T x hs), which a backend threads poorly, so each OpenMP thread takes whole
// (b, head) tasks and runs its GEMMs single-threaded (OpenBLAS's pool is set to 1 thread around the
// region; oneDNN runs sequentially inside an OpenMP region), with each block's softmax done while
// the block is in cache. The backward's task is a (b, kv head) with its group of q heads, so dK/dV
// have one writer. When there are fewer tasks than threads, the phased order is used instead:
// every block's GEMMs in turn, threaded by the backend, and the softmax rows in an OpenMP loop
// between them (never both at once). Both run the same GEMMs, threaded differently: their results
// agree to the GEMMs' rounding. The tasks are split statically (deterministic for a fixed thread
// count); a task count that is not a multiple of the threads leaves some threads idle at the end.

namespace {

inline size_t head_saved_numel(int T) {
  // full blocks 0..nb-2 hold kB * (r+1) kB floats; the last holds (T - i0) * T
  const size_t kB = kCausalBlock, nb = (static_cast<size_t>(T) + kB - 1) / kB;
  if (nb == 0) return 0;
  return kB * kB * (nb - 1) * nb / 2 + (static_cast<size_t>(T) - (nb - 1) * kB) * static_cast<size_t>(T);
}
// offset of block r inside its head (every earlier block is full)
inline size_t block_offset(int r) {
  const size_t kB = kCausalBlock;
  return kB * kB * static_cast<size_t>(r) * (r + 1) / 2;
}

// One softmax row: a[0..n-1] are the scores of the keys this row sees; a[n..ncols-1] become 0.
inline void softmax_row(float* a, int n, int ncols) {
  float mx = a[0];
  for (int j = 1; j < n; ++j) mx = std::max(mx, a[j]);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; ++j) {
    a[j] = fast_exp(a[j] - mx);
    sum += a[j];
  }
  float inv = 1.0f / sum;
#pragma omp simd
  for (int j = 0; j < n; ++j) a[j] *= inv;
  if (ncols > n) std::memset(a + n, 0, sizeof(float) * static_cast<size_t>(ncols - n));
}
// ds <- p (ds - sum(p ds)) over the n keys of the row; the tail of the row becomes 0.
inline void softmax_backward_row(const float* p, float* ds, int n, int ncols) {
  float dot = 0.f;
#pragma omp simd reduction(+ : dot)
  for (int j = 0; j < n; ++j) dot += p[j] * ds[j];
#pragma omp simd
  for (int j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - dot);
  if (ncols > n) std::memset(ds + n, 0, sizeof(float) * static_cast<size_t>(ncols - n));
}

// One (b, q head) of an attention call: its query, key, value and output rows (row 0 of each,
// leading dimensions), Tq query rows at positions p0.., keys 0 .. p0 + Tq - 1.
struct Head {
  const float* q;
  const float* k;
  const float* v;
  float* o;
  int ldq, ldk, ldv, ldo;
  int Tq, p0, hs;
  float scale;
};

// Rows i0..i1 of block r, and its key count.
struct Block {
  int i0, rows, keys;
};
inline Block block_of(const Head& H, int r) {
  const int i0 = r * kCausalBlock, i1 = std::min(H.Tq, i0 + kCausalBlock);
  return {i0, i1 - i0, H.p0 + i1};
}
inline int num_blocks(int Tq) { return (Tq + kCausalBlock - 1) / kCausalBlock; }

void block_scores(const Context& ctx, const Head& H, const Block& k, float* s) {
  gemm(ctx, Op::N, Op::T, k.rows, k.keys, H.hs, H.scale, H.q + static_cast<size_t>(k.i0) * H.ldq, H.ldq, H.k, H.ldk, 0.0f,
       s, k.keys);
}
void block_softmax(const Head& H, const Block& k, float* s) {
  for (int t = 0; t < k.rows; ++t) softmax_row(s + static_cast<size_t>(t) * k.keys, H.p0 + k.i0 + t + 1, k.keys);
}
void block_pv(const Context& ctx, const Head& H, const Block& k, const float* p) {
  gemm(ctx, Op::N, Op::N, k.rows, H.hs, k.keys, 1.0f, p, k.keys, H.v, H.ldv, 0.0f, H.o + static_cast<size_t>(k.i0) * H.ldo,
       H.ldo);
}

// The head's forward, block after block (single thread): the probabilities of block r go to
// p + (r's offset) when `saved`, else to a scratch block.
void head_forward(const Context& ctx, const Head& H, float* p, bool saved, bool with_out) {
  thread_local std::vector<float> scratch;
  for (int r = 0; r < num_blocks(H.Tq); ++r) {
    const Block k = block_of(H, r);
    float* s;
    if (saved) {
      s = p + block_offset(r);
    } else {
      scratch.resize(static_cast<size_t>(k.rows) * k.keys);
      s = scratch.data();
    }
    block_scores(ctx, H, k, s);
    block_softmax(H, k, s);
    if (with_out) block_pv(ctx, H, k, s);
  }
}

// The GEMMs of an OpenMP region run on one thread each: OpenBLAS's own pool is set to one thread
// for the region and restored after it (oneDNN runs sequentially inside an OpenMP region).
class SerialBlas {
 public:
  SerialBlas() : n_(blas_threads()) {
    if (n_ != 1) set_blas_threads(1);
  }
  ~SerialBlas() {
    if (n_ != 1) set_blas_threads(n_);
  }
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  int n_;
};

void check_attention(int NH, int KVH, int hs) {
  DMPI_REQUIRE(NH > 0 && KVH > 0 && NH % KVH == 0, "attention: " << NH << " query heads over " << KVH << " kv heads");
  DMPI_REQUIRE(hs > 0, "attention: head size " << hs);
}

// Forward (with_out) or probabilities only, over (b, h) tasks or in phases.
void causal_forward_impl(const Context& ctx, float* out, float* att, const float* qkv, int B, int T, int NH, int KVH,
                         int hs, bool with_out) {
  check_attention(NH, KVH, hs);
  const int G = NH / KVH, R = (NH + 2 * KVH) * hs, OC = NH * hs;
  const size_t hn = head_saved_numel(T);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  auto head = [&](int b, int h) {
    const float* row0 = qkv + static_cast<size_t>(b) * T * R;
    const int g = h / G;
    return Head{row0 + static_cast<size_t>(h) * hs,
                row0 + static_cast<size_t>(NH + g) * hs,
                row0 + static_cast<size_t>(NH + KVH + g) * hs,
                with_out ? out + static_cast<size_t>(b) * T * OC + static_cast<size_t>(h) * hs : nullptr,
                R, R, R, OC, T, 0, hs, scale};
  };
  const int tasks = B * NH;
  if (tasks >= ctx.threads) {
    SerialBlas serial;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
    for (int bh = 0; bh < tasks; ++bh)
      head_forward(ctx, head(bh / NH, bh % NH), att + static_cast<size_t>(bh) * hn, true, with_out);
    return;
  }
  // phased: GEMMs threaded by the backend, softmax rows on OpenMP threads
  const int nb = num_blocks(T);
  for (int bh = 0; bh < tasks; ++bh)
    for (int r = 0; r < nb; ++r) {
      const Head H = head(bh / NH, bh % NH);
      block_scores(ctx, H, block_of(H, r), att + static_cast<size_t>(bh) * hn + block_offset(r));
    }
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int row = 0; row < tasks * T; ++row) {
    const int bh = row / T, i = row % T, r = i / kCausalBlock;
    const Head H = head(bh / NH, bh % NH);
    const Block k = block_of(H, r);
    softmax_row(att + static_cast<size_t>(bh) * hn + block_offset(r) + static_cast<size_t>(i - k.i0) * k.keys, i + 1, k.keys);
  }
  if (!with_out) return;
  for (int bh = 0; bh < tasks; ++bh)
    for (int r = 0; r < nb; ++r) {
      const Head H = head(bh / NH, bh % NH);
      block_pv(ctx, H, block_of(H, r), att + static_cast<size_t>(bh) * hn + block_offset(r));
    }
}

// Backward of one (b, q head) block: dP into dp (datt's block), dV += P^T dO.
void block_backward_pv(const Context& ctx, const Head& H, const Block& k, const float* dout, int ldd, const float* p,
                       float* dp, float* dv, int ldv) {
  const float* d = dout + static_cast<size_t>(k.i0) * ldd;
  gemm(ctx, Op::N, Op::T, k.rows, k.keys, H.hs, 1.0f, d, ldd, H.v, H.ldv, 0.0f, dp, k.keys);
  gemm(ctx, Op::T, Op::N, k.keys, H.hs, k.rows, 1.0f, p, k.keys, d, ldd, 1.0f, dv, ldv);
}
void block_backward_softmax(const Head& H, const Block& k, const float* p, float* ds) {
  for (int t = 0; t < k.rows; ++t) {
    const size_t o = static_cast<size_t>(t) * k.keys;
    softmax_backward_row(p + o, ds + o, H.p0 + k.i0 + t + 1, k.keys);
  }
}
// dQ_r += scale dS K, dK += scale dS^T Q_r
void block_backward_qk(const Context& ctx, const Head& H, const Block& k, const float* ds, float* dq, int ldq, float* dk,
                       int ldk) {
  gemm(ctx, Op::N, Op::N, k.rows, H.hs, k.keys, H.scale, ds, k.keys, H.k, H.ldk, 1.0f, dq + static_cast<size_t>(k.i0) * ldq,
       ldq);
  gemm(ctx, Op::T, Op::N, k.keys, H.hs, k.rows, H.scale, ds, k.keys, H.q + static_cast<size_t>(k.i0) * H.ldq, H.ldq, 1.0f,
       dk, ldk);
}

}  // namespace

size_t causal_attention_saved_numel(int B, int T, int NH) {
  return static_cast<size_t>(B) * NH * head_saved_numel(T);
}

size_t causal_attention_index(int T, int NH, int b, int h, int i, int j) {
  const int r = i / kCausalBlock, i0 = r * kCausalBlock, i1 = std::min(T, i0 + kCausalBlock);
  return (static_cast<size_t>(b) * NH + h) * head_saved_numel(T) + block_offset(r) + static_cast<size_t>(i - i0) * i1 + j;
}

void causal_attention_forward(const Context& ctx, float* out, float* att, const float* qkv, int B, int T, int NH, int KVH,
                              int hs) {
  causal_forward_impl(ctx, out, att, qkv, B, T, NH, KVH, hs, true);
}

void causal_attention_probs(const Context& ctx, float* att, const float* qkv, int B, int T, int NH, int KVH, int hs) {
  causal_forward_impl(ctx, nullptr, att, qkv, B, T, NH, KVH, hs, false);
}

void causal_attention_backward(const Context& ctx, float* dqkv, float* datt, const float* dout, const float* qkv,
                               const float* att, int B, int T, int NH, int KVH, int hs) {
  check_attention(NH, KVH, hs);
  const int G = NH / KVH, R = (NH + 2 * KVH) * hs, OC = NH * hs, nb = num_blocks(T);
  const size_t hn = head_saved_numel(T);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  struct Ptrs {
    Head H;
    const float* d;  // dout rows of the head
    const float* p;  // saved probabilities of the head
    float* ds;       // its datt
    float *dq, *dk, *dv;
  };
  auto ptrs = [&](int b, int h) {
    const size_t row0 = static_cast<size_t>(b) * T * R;
    const int g = h / G;
    const size_t qo = row0 + static_cast<size_t>(h) * hs, ko = row0 + static_cast<size_t>(NH + g) * hs,
                 vo = row0 + static_cast<size_t>(NH + KVH + g) * hs;
    const size_t bh = static_cast<size_t>(b) * NH + h;
    return Ptrs{Head{qkv + qo, qkv + ko, qkv + vo, nullptr, R, R, R, 0, T, 0, hs, scale},
                dout + static_cast<size_t>(b) * T * OC + static_cast<size_t>(h) * hs,
                att + bh * hn, datt + bh * hn, dqkv + qo, dqkv + ko, dqkv + vo};
  };
  const int tasks = B * KVH;
  if (tasks >= ctx.threads) {
    SerialBlas serial;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
    for (int bg = 0; bg < tasks; ++bg) {
      const int b = bg / KVH, g = bg % KVH;
      for (int h = g * G; h < (g + 1) * G; ++h) {
        const Ptrs P = ptrs(b, h);
        for (int r = 0; r < nb; ++r) {
          const Block k = block_of(P.H, r);
          const float* p = P.p + block_offset(r);
          float* ds = P.ds + block_offset(r);
          block_backward_pv(ctx, P.H, k, P.d, OC, p, ds, P.dv, R);
          block_backward_softmax(P.H, k, p, ds);
          block_backward_qk(ctx, P.H, k, ds, P.dq, R, P.dk, R);
        }
      }
    }
    return;
  }
  for (int bh = 0; bh < B * NH; ++bh)
    for (int r = 0; r < nb; ++r) {
      const Ptrs P = ptrs(bh / NH, bh % NH);
      block_backward_pv(ctx, P.H, block_of(P.H, r), P.d, OC, P.p + block_offset(r), P.ds + block_offset(r), P.dv, R);
    }
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int row = 0; row < B * NH * T; ++row) {
    const int bh = row / T, i = row % T, r = i / kCausalBlock;
    const int i0 = r * kCausalBlock, keys = std::min(T, i0 + kCausalBlock);
    const size_t o = static_cast<size_t>(bh) * hn + block_offset(r) + static_cast<size_t>(i - i0) * keys;
    softmax_backward_row(att + o, datt + o, i + 1, keys);
  }
  for (int bh = 0; bh < B * NH; ++bh)
    for (int r = 0; r < nb; ++r) {
      const Ptrs P = ptrs(bh / NH, bh % NH);
      block_backward_qk(ctx, P.H, block_of(P.H, r), P.ds + block_offset(r), P.dq, R, P.dk, R);
    }
}

void attention_prefix_forward(const Context& ctx, float* out, int out_stride, const float* q, int q_stride,
                              const float* kcache, const float* vcache, int kv_stride, int Tmax, int B, int Tq, int p0,
                              int NH, int KVH, int hs) {
  check_attention(NH, KVH, hs);
  DMPI_REQUIRE(p0 >= 0 && Tq >= 0 && p0 + Tq <= Tmax,
               "attention_prefix_forward: positions " << p0 << " .. " << p0 + Tq - 1 << " beyond the cache's " << Tmax);
  const int G = NH / KVH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const int tasks = B * NH;
  // (b, h) tasks, single-threaded GEMMs; the probabilities live in a per-thread block.
  SerialBlas serial;
#pragma omp parallel for schedule(static) num_threads(ctx.threads)
  for (int bh = 0; bh < tasks; ++bh) {
    const int b = bh / NH, h = bh % NH, g = h / G;
    const size_t kv0 = static_cast<size_t>(b) * Tmax * kv_stride + static_cast<size_t>(g) * hs;
    const Head H{q + static_cast<size_t>(b) * Tq * q_stride + static_cast<size_t>(h) * hs,
                 kcache + kv0,
                 vcache + kv0,
                 out + static_cast<size_t>(b) * Tq * out_stride + static_cast<size_t>(h) * hs,
                 q_stride, kv_stride, kv_stride, out_stride, Tq, p0, hs, scale};
    head_forward(ctx, H, nullptr, false, true);
  }
}

}  // namespace dmpi::kernels
