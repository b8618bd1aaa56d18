// Kernel benchmarks: GEMM shapes of the presets (GFLOP/s), attention (GFLOP/s of the executed
// products), layernorm and AdamW (GB/s of the bytes they must move).
// Run: build/release/perf/bench_kernels --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "kernels/optim.hpp"
#include "base/system.hpp"

using namespace dmpi::kernels;

namespace {
std::vector<float> filled(size_t n, float v) { return std::vector<float>(n, v); }
// DEEPMPI_GEMM=openblas|onednn picks the backend (default: the best built in), as for `deepmpi train`.
GemmBackend& backend() {
  static std::unique_ptr<GemmBackend> b = make_gemm_backend(default_gemm_backend_name());
  return *b;
}
const Context& ctx() {
  static const Context c = host_context(backend());
  return c;
}
dmpi::ConstView weights(const std::vector<float>& w, int rows, int cols) {
  return dmpi::ConstView(w.data(), dmpi::DType::F32, dmpi::Shape{rows, cols});
}

// Linear layer shapes (rows N = micro-batch x seq, in C, out OC) of the presets' forward pass.
void BM_LinearForward(benchmark::State& st) {
  const int N = static_cast<int>(st.range(0)), C = static_cast<int>(st.range(1)), OC = static_cast<int>(st.range(2));
  auto x = filled(static_cast<size_t>(N) * C, 0.01f), w = filled(static_cast<size_t>(OC) * C, 0.02f),
       b = filled(OC, 0.f), y = filled(static_cast<size_t>(N) * OC, 0.f);
  for (auto _ : st) {
    matmul_forward(ctx(), y.data(), x.data(), weights(w, OC, C), b.data(), N, C, OC);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FOM:GFLOP/s"] = benchmark::Counter(2.0 * N * C * OC * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_LinearBackward(benchmark::State& st) {
  const int N = static_cast<int>(st.range(0)), C = static_cast<int>(st.range(1)), OC = static_cast<int>(st.range(2));
  auto x = filled(static_cast<size_t>(N) * C, 0.01f), w = filled(static_cast<size_t>(OC) * C, 0.02f),
       dy = filled(static_cast<size_t>(N) * OC, 0.01f), dx = filled(static_cast<size_t>(N) * C, 0.f),
       dw = filled(static_cast<size_t>(OC) * C, 0.f), db = filled(OC, 0.f);
  for (auto _ : st) {
    matmul_backward(ctx(), dx.data(), dw.data(), db.data(), dy.data(), x.data(), weights(w, OC, C), N, C, OC);
    benchmark::DoNotOptimize(dw.data());
  }
  st.counters["FOM:GFLOP/s"] = benchmark::Counter(4.0 * N * C * OC * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_Attention(benchmark::State& st) {
  const int B = static_cast<int>(st.range(0)), T = static_cast<int>(st.range(1)), C = static_cast<int>(st.range(2)),
            NH = static_cast<int>(st.range(3));
  const bool backward = st.range(4) != 0;
  auto qkv = filled(static_cast<size_t>(B) * T * 3 * C, 0.01f), out = filled(static_cast<size_t>(B) * T * C, 0.f),
       att = filled(static_cast<size_t>(B) * NH * T * T, 0.f), datt = att, dqkv = qkv;
  attention_forward(ctx(), out.data(), att.data(), qkv.data(), B, T, C, NH);
  for (auto _ : st) {
    if (backward)
      attention_backward(ctx(), dqkv.data(), datt.data(), out.data(), qkv.data(), att.data(), B, T, C, NH);
    else
      attention_forward(ctx(), out.data(), att.data(), qkv.data(), B, T, C, NH);
    benchmark::DoNotOptimize(out.data());
  }
  // executed GEMM flops: forward 2 products, backward 4, each 2*B*T*T*C
  double flops = (backward ? 4.0 : 2.0) * 2.0 * B * T * static_cast<double>(T) * C;
  st.counters["FOM:GFLOP/s"] = benchmark::Counter(flops * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// The causal kernel (lower triangle only, row blocks of kCausalBlock) on the same shapes as
// BM_Attention (the previous full-square kernel, which is also what kernels/ref checks against).
// The counter is the same full-square flop count as BM_Attention's, so the two GFLOP/s figures
// compare as speeds of the same work (the causal kernel executes about half of it).
void BM_CausalAttention(benchmark::State& st) {
  const int B = static_cast<int>(st.range(0)), T = static_cast<int>(st.range(1)), C = static_cast<int>(st.range(2)),
            NH = static_cast<int>(st.range(3));
  const bool backward = st.range(4) != 0;
  const size_t saved = causal_attention_saved_numel(B, T, NH);
  auto qkv = filled(static_cast<size_t>(B) * T * 3 * C, 0.01f), out = filled(static_cast<size_t>(B) * T * C, 0.f),
       att = filled(saved, 0.f), datt = att, dqkv = qkv;
  causal_attention_forward(ctx(), out.data(), att.data(), qkv.data(), B, T, NH, NH, C / NH);
  for (auto _ : st) {
    if (backward)
      causal_attention_backward(ctx(), dqkv.data(), datt.data(), out.data(), qkv.data(), att.data(), B, T, NH, NH, C / NH);
    else
      causal_attention_forward(ctx(), out.data(), att.data(), qkv.data(), B, T, NH, NH, C / NH);
    benchmark::DoNotOptimize(out.data());
  }
  double flops = (backward ? 4.0 : 2.0) * 2.0 * B * T * static_cast<double>(T) * C;
  st.counters["FOM:GFLOP/s"] = benchmark::Counter(flops * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.counters["saved_MiB"] = static_cast<double>(saved) * 4 / (1 << 20);
}

void BM_LayerNormForward(benchmark::State& st) {
  const int N = static_cast<int>(st.range(0)), C = static_cast<int>(st.range(1));
  auto x = filled(static_cast<size_t>(N) * C, 0.5f), y = x, w = filled(C, 1.f), b = filled(C, 0.f), m = filled(N, 0.f),
       r = m;
  for (auto _ : st) {
    layernorm_forward(ctx(), y.data(), m.data(), r.data(), x.data(), w.data(), b.data(), N, C);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FOM:GB/s"] = benchmark::Counter(2.0 * N * C * 4 * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_Gelu(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0));
  const bool backward = st.range(1) != 0;
  auto x = filled(n, 0.3f), y = filled(n, 0.f), d = filled(n, 0.1f);
  for (auto _ : st) {
    if (backward) gelu_backward(ctx(), y.data(), x.data(), d.data(), n);
    else gelu_forward(ctx(), y.data(), x.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FOM:GB/s"] = benchmark::Counter((backward ? 4.0 : 2.0) * 4 * n * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_CrossEntropy(benchmark::State& st) {
  const int N = static_cast<int>(st.range(0)), V = static_cast<int>(st.range(1));
  auto logits = filled(static_cast<size_t>(N) * V, 0.f), losses = filled(N, 0.f);
  std::vector<int32_t> tgt(N, 1);
  for (auto _ : st) {
    st.PauseTiming();
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i % 97) * 0.01f;
    st.ResumeTiming();
    crossentropy_forward(ctx(), losses.data(), logits.data(), tgt.data(), N, V, -100);
    crossentropy_backward(ctx(), logits.data(), tgt.data(), 0.5f, N, V, -100);
    benchmark::DoNotOptimize(logits.data());
  }
  st.counters["FOM:GB/s"] = benchmark::Counter(6.0 * 4 * N * V * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_AdamW(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0));
  auto p = filled(n, 0.1f), g = filled(n, 0.01f), m = filled(n, 0.f), v = filled(n, 0.f);
  AdamParams hp;
  hp.weight_decay = 0.1f;
  int64_t step = 0;
  for (auto _ : st) {
    adam_step(p.data(), g.data(), m.data(), v.data(), n, hp, ++step, 1.0f);
    benchmark::DoNotOptimize(p.data());
  }
  // reads p, g, m, v; writes p, m, v
  st.counters["FOM:GB/s"] = benchmark::Counter(7.0 * 4 * n * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
}  // namespace

// {rows, in, out}: tiny (B=8,T=64,C=128), small (B=4,T=256,C=384), gpt2-124m (B=2,T=256,C=768)
BENCHMARK(BM_LinearForward)->Args({512, 128, 384})->Args({512, 128, 512})->Args({1024, 384, 1152})
    ->Args({1024, 384, 1536})->Args({1024, 1536, 384})->Args({1024, 384, 8192})->Args({512, 768, 2304})
    ->Args({512, 768, 3072})->Args({512, 3072, 768})->Args({512, 768, 50257})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LinearBackward)->Args({1024, 384, 1536})->Args({512, 768, 3072})->Args({512, 768, 50257})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Attention)->Args({4, 256, 384, 6, 0})->Args({4, 256, 384, 6, 1})->Args({2, 256, 768, 12, 0})
    ->Args({2, 256, 768, 12, 1})->Args({1, 1024, 768, 12, 0})->Args({1, 1024, 768, 12, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CausalAttention)->Args({4, 256, 384, 6, 0})->Args({4, 256, 384, 6, 1})->Args({2, 256, 768, 12, 0})
    ->Args({2, 256, 768, 12, 1})->Args({1, 1024, 768, 12, 0})->Args({1, 1024, 768, 12, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LayerNormForward)->Args({1024, 384})->Args({512, 768})->UseRealTime();
BENCHMARK(BM_Gelu)->Args({1 << 20, 0})->Args({1 << 20, 1})->Args({512 * 3072, 0})->Args({512 * 3072, 1})->UseRealTime();
BENCHMARK(BM_CrossEntropy)->Args({512, 50257})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AdamW)->Arg(1 << 20)->Arg(124439808)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  if (default_gemm_backend_name() == "openblas") dmpi::ensure_passive_omp_wait(argv);
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("gemm_backend", backend().name());
  benchmark::AddCustomContext("openblas", dmpi::kernels::blas_config());
  benchmark::AddCustomContext("threads", std::to_string(dmpi::compute_threads()));
  benchmark::AddCustomContext("sgemm_peak_gflops", std::to_string(measure_gemm_gflops(ctx())));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
