// The whole model (the unit list of a composition): reference gradients (double) against finite
// differences of the loss, and the fast float path against the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/gemm.hpp"
#include "src/model/model.hpp"
#include "src/model/sampling.hpp"
#include "base/error.hpp"
#include "base/rng.hpp"
#include "tests/unit/test_util.hpp"

using namespace dmpi;
using namespace dmpi::model;

namespace {

// The host context of the default backend (fp32).
const kernels::Context& ctx() {
  static auto backend = kernels::make_gemm_backend(kernels::default_gemm_backend_name());
  static const kernels::Context c = kernels::host_context(*backend);
  return c;
}

ModelConfig micro_config() {
  ModelConfig c;
  c.name = "micro";
  c.num_layers = 2;
  c.hidden = 8;
  c.heads = 2;
  c.vocab = 11;
  c.seq_len = 5;
  c.max_pos = 6;
  return c;
}

void make_batch(const ModelConfig& c, int B, int T, std::vector<int32_t>& tok, std::vector<int32_t>& tgt, bool ignore) {
  tok.resize(B * T);
  tgt.resize(B * T);
  for (int i = 0; i < B * T; ++i) {
    tok[i] = (i * 5 + 3) % c.vocab;
    tgt[i] = (i * 3 + 1) % c.vocab;
  }
  if (ignore) tgt[2] = kIgnoreIndex;
}

}  // namespace

TEST(ParamTable, LayoutAndCount) {
  ModelConfig c = preset("gpt2-124m");
  Model<float> m(c);
  size_t n = 0;
  for (int t = 0; t < m.num_tensors(); ++t) n += m.spec(t).numel;
  const size_t L = 12, C = 768, V = 50257, P = 1024;
  EXPECT_EQ(n, V * C + P * C + L * (12 * C * C + 13 * C) + 2 * C);
  EXPECT_EQ(n, 124439808u);  // GPT-2 small: 124.44 M parameters with tied embeddings
  EXPECT_EQ(m.real_params(), n);
  EXPECT_EQ(num_matmul_params(c), n - P * C);
  // GPT-2's tensor order (the checkpoint's datasets and the initialiser's streams)
  EXPECT_EQ(m.spec(0).name, "wte");
  EXPECT_EQ(m.spec(1).name, "wpe");
  EXPECT_EQ(m.spec(2).name, "layers.0.ln1.weight");
  EXPECT_EQ(m.spec(4).name, "layers.0.attn.qkv.weight");
  EXPECT_EQ(m.spec(m.num_tensors() - 1).name, "lnf.bias");
  // units: embedding, 12 blocks, final norm, the tied head (reading the embedding's wte)
  ASSERT_EQ(m.num_units(), 15);
  EXPECT_STREQ(m.unit(14).kind(), "lm_head");
  EXPECT_TRUE(m.unit(14).params().empty());
  ASSERT_EQ(m.unit(14).uses().size(), 1u);
  EXPECT_EQ(m.unit(14).uses()[0].unit, 0);
  EXPECT_EQ(m.unit(1).params().size(), 12u);
}

TEST(Presets, ValuesAndErrors) {
  auto t = preset("tiny");
  EXPECT_EQ(t.num_layers, 2);
  EXPECT_EQ(t.hidden, 128);
  EXPECT_EQ(t.heads, 4);
  EXPECT_EQ(t.vocab, 512);
  EXPECT_EQ(t.seq_len, 64);
  auto s = preset("small");
  EXPECT_EQ(s.num_layers * 1000000 + s.hidden * 1000 + s.heads, 6 * 1000000 + 384 * 1000 + 6);
  EXPECT_EQ(s.vocab, 8192);
  EXPECT_EQ(s.seq_len, 256);
  try {
    preset("gpt2-124");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'gpt2-124m'"), std::string::npos) << e.what();
  }
  ModelConfig bad = t;
  bad.heads = 3;
  EXPECT_THROW(bad.validate(), Error);
}

// Finite differences of the loss against the reference backward in double, every parameter.
void grad_check(const ModelConfig& c, const RecomputeConfig& rc = {}) {
  const int B = 2, T = 5;
  LocalModel<double> m(c, B, T, false, rc);
  m.init_weights(42);
  // Larger weights than GPT-2's init so that every path carries signal.
  for (size_t i = 0; i < m.num_params(); ++i) m.params()[i] *= 10.0;
  std::vector<int32_t> tok, tgt;
  make_batch(c, B, T, tok, tgt, true);
  m.zero_grad();
  m.forward(ctx(), tok.data(), tgt.data());
  m.backward(ctx(), 1.0);
  std::vector<double> g(m.grads(), m.grads() + m.num_params());
  const double h = 1e-6;
  double worst = 0;
  std::string worst_name;
  for (int t = 0; t < m.model().num_tensors(); ++t) {
    const ParamSpec& s = m.model().spec(t);
    for (size_t j = 0; j < s.numel; ++j) {
      double* p = m.params() + m.offset(t) + j;
      double keep = *p;
      *p = keep + h;
      double up = m.forward(ctx(), tok.data(), tgt.data());
      *p = keep - h;
      double dn = m.forward(ctx(), tok.data(), tgt.data());
      *p = keep;
      double fd = (up - dn) / (2 * h);
      const double an = g[m.offset(t) + j];
      double err = std::fabs(fd - an) / std::max(1e-3, std::fabs(fd) + std::fabs(an));
      if (err > worst) {
        worst = err;
        worst_name = s.name;
      }
    }
  }
  // Central differences in double: truncation O(h^2) and roundoff ~1e-9 absolute; a wrong
  // gradient term shows up at 1e-2 or more.
  EXPECT_LT(worst, 1e-5) << "worst at " << worst_name;
}

TEST(ModelGradCheck, ReferenceDoubleMatchesFiniteDifferences) { grad_check(micro_config()); }

// The fast float path against the double reference: losses and every tensor's gradients.
void fast_vs_reference(const ModelConfig& c, int B, int T) {
  LocalModel<float> fast(c, B, T, true);
  LocalModel<double> ref(c, B, T, false);
  fast.init_weights(7);
  ref.init_weights(7);
  for (size_t i = 0; i < ref.num_params(); ++i) ASSERT_EQ(static_cast<float>(ref.params()[i]), fast.params()[i]);
  std::vector<int32_t> tok, tgt;
  make_batch(c, B, T, tok, tgt, true);
  for (int micro = 0; micro < 2; ++micro) {  // two accumulated micro-batches
    double lf = fast.forward(ctx(), tok.data(), tgt.data());
    double lr = ref.forward(ctx(), tok.data(), tgt.data());
    EXPECT_NEAR(lf, lr, 1e-5 * std::fabs(lr));
    fast.backward(ctx(), 0.5);
    ref.backward(ctx(), 0.5);
  }
  // per tensor, relative to the tensor's largest gradient
  for (int t = 0; t < fast.model().num_tensors(); ++t) {
    const size_t o = fast.offset(t), n = fast.model().spec(t).numel;
    std::vector<double> a(fast.grads() + o, fast.grads() + o + n), b(ref.grads() + o, ref.grads() + o + n);
    EXPECT_LT(test::rel_err(a, b, 1e-8), 2e-4) << fast.model().spec(t).name;
  }
}

TEST(ModelGradCheck, FastFloatMatchesReferenceDouble) {
  ModelConfig c;
  c.num_layers = 2, c.hidden = 64, c.heads = 4, c.vocab = 97, c.seq_len = 16, c.max_pos = 16;
  fast_vs_reference(c, 3, 16);
}

TEST(Model, ReferenceFloatMatchesFastFloat) {
  ModelConfig c = preset("tiny");
  const int B = 2, T = 32;
  LocalModel<float> fast(c, B, T, true), ref(c, B, T, false);
  fast.init_weights(3);
  ref.init_weights(3);
  std::vector<int32_t> tok, tgt;
  make_batch(c, B, T, tok, tgt, false);
  double lf = fast.forward(ctx(), tok.data(), tgt.data()), lr = ref.forward(ctx(), tok.data(), tgt.data());
  EXPECT_NEAR(lf, lr, 1e-5 * lr);
  EXPECT_NEAR(lf, std::log(512.0), 0.1);  // near-uniform predictions at GPT-2 init
  fast.backward(ctx(), 1.0);
  ref.backward(ctx(), 1.0);
  std::vector<float> gf(fast.grads(), fast.grads() + fast.num_params()), gr(ref.grads(), ref.grads() + ref.num_params());
  EXPECT_LT(test::rel_err(gf, gr, 1e-8), 1e-3);
}

TEST(Model, RejectsOutOfVocabularyTokens) {
  ModelConfig c = micro_config();
  LocalModel<float> m(c, 1, 5);
  std::vector<int32_t> tok = {1, 2, 11, 3, 4}, tgt = {1, 1, 1, 1, 1};
  EXPECT_THROW(m.forward(ctx(), tok.data(), tgt.data()), Error);
  tok[2] = 3, tgt[4] = 11;
  EXPECT_THROW(m.forward(ctx(), tok.data(), tgt.data()), Error);
}

TEST(Model, InitIsDeterministicAndSeedDependent) {
  ModelConfig c = micro_config();
  LocalModel<float> a(c, 1, 5), b(c, 1, 5), d(c, 1, 5);
  a.init_weights(1);
  b.init_weights(1);
  d.init_weights(2);
  EXPECT_EQ(0, std::memcmp(a.params(), b.params(), a.num_params() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(a.params(), d.params(), a.num_params() * sizeof(float)));
  EXPECT_EQ(a.param("layers.0.ln1.weight")[0], 1.0f);
  EXPECT_EQ(a.param("layers.0.attn.qkv.bias")[0], 0.0f);
}

// ZeRO stage 3 initialises each rank's partition alone: init_tensor over any element range equals
// the whole model's initialisation there, which equals per-tensor sequential draws (a reference
// written out here: one splitmix stream per tensor, Box-Muller pairs, std 0.02 or 0.02/sqrt(2L)).
TEST(Model, InitValuesOfAnyRangeMatchTheWholeInit) {
  ModelConfig c = micro_config();
  LocalModel<float> m(c, 1, 5);
  m.init_weights(9);
  const size_t n = m.num_params();
  std::vector<float> ref(n, 0.0f);
  const Model<float>& model = m.model();
  for (int i = 0; i < model.num_tensors(); ++i) {
    const ParamSpec& t = model.spec(i);
    if (t.shape.size() == 1) continue;
    const bool resid = t.name.ends_with("attn.proj.weight") || t.name.ends_with("mlp.proj.weight");
    const double sd = resid ? 0.02 / std::sqrt(2.0 * c.num_layers) : 0.02;
    dmpi::Rng rng(9, 1000 + static_cast<uint64_t>(i));
    for (size_t j = 0; j < t.numel; ++j) ref[m.offset(i) + j] = static_cast<float>(rng.normal() * sd);
  }
  for (int i = 0; i < model.num_tensors(); ++i) {
    const ParamSpec& t = model.spec(i);
    if (t.shape.size() == 1 && t.name.find("ln") != std::string::npos && t.name.ends_with(".weight"))
      std::fill(ref.begin() + static_cast<long>(m.offset(i)), ref.begin() + static_cast<long>(m.offset(i) + t.numel), 1.0f);
  }
  EXPECT_EQ(0, std::memcmp(m.params(), ref.data(), n * sizeof(float)));
  dmpi::Rng pick(3, 3);
  for (int trial = 0; trial < 200; ++trial) {
    const int t = static_cast<int>(pick.next_u64() % static_cast<uint64_t>(model.num_tensors()));
    const size_t numel = model.spec(t).numel;
    const size_t a = pick.next_u64() % numel, len = 1 + pick.next_u64() % (numel - a);
    std::vector<float> out(len, -7.0f);
    model.init_tensor(9, t, a, a + len, out.data());
    ASSERT_EQ(0, std::memcmp(out.data(), ref.data() + m.offset(t) + a, len * sizeof(float)))
        << model.spec(t).name << " [" << a << ", " << a + len << ")";
  }
}

// ---- Activation recompute: the same numbers, fewer bytes.

namespace {
RecomputeConfig recompute(RecomputeConfig::Granularity g, RecomputeConfig::Method m = RecomputeConfig::Method::Uniform,
                          int n = 1) {
  RecomputeConfig rc;
  rc.granularity = g, rc.method = m, rc.num_layers = n;
  return rc;
}
const RecomputeConfig kRecomputeVariants[] = {
    recompute(RecomputeConfig::Granularity::Selective),
    recompute(RecomputeConfig::Granularity::Full),
    recompute(RecomputeConfig::Granularity::Full, RecomputeConfig::Method::Uniform, 2),
    recompute(RecomputeConfig::Granularity::Full, RecomputeConfig::Method::Uniform, 3),
    recompute(RecomputeConfig::Granularity::Full, RecomputeConfig::Method::Block, 2),
};

// Losses and every gradient bit for bit equal without and with each recompute variant, over two
// accumulated micro-batches.
void recompute_is_bit_identical(const ModelConfig& c) {
  const int B = 2, T = c.seq_len;
  std::vector<int32_t> tok, tgt;
  make_batch(c, B, T, tok, tgt, true);
  auto run = [&](const RecomputeConfig& rc, std::vector<double>& losses) {
    LocalModel<float> m(c, B, T, true, rc);
    m.init_weights(5);
    for (int micro = 0; micro < 2; ++micro) {
      losses.push_back(m.forward(ctx(), tok.data(), tgt.data()));
      m.backward(ctx(), 0.5);
      tok[static_cast<size_t>(micro)] = (tok[static_cast<size_t>(micro)] + 1) % c.vocab;
    }
    make_batch(c, B, T, tok, tgt, true);
    return std::vector<float>(m.grads(), m.grads() + m.num_params());
  };
  std::vector<double> base_losses;
  const auto base = run({}, base_losses);
  for (const auto& rc : kRecomputeVariants) {
    SCOPED_TRACE(rc.describe());
    std::vector<double> losses;
    const auto g = run(rc, losses);
    ASSERT_EQ(losses.size(), base_losses.size());
    for (size_t i = 0; i < losses.size(); ++i) EXPECT_EQ(std::memcmp(&losses[i], &base_losses[i], sizeof(double)), 0) << i;
    EXPECT_EQ(std::memcmp(g.data(), base.data(), g.size() * sizeof(float)), 0);
  }
}
}  // namespace

TEST(Recompute, GptLossesAndGradientsAreBitIdentical) {
  ModelConfig c = preset("tiny");
  c.num_layers = 4, c.seq_len = c.max_pos = 16;
  recompute_is_bit_identical(c);
}

// Activation bytes against a closed form of what each unit keeps, GPT-2's composition:
//   per slot  embedding out BTC; block out BTC + internals (ln1, qkv 3, atty, res2, ln2, fc 4,
//             act 4 = 15 BTC, means and rstds 4 BT) + probabilities P; final norm BTC + 2 BT;
//             head losses BT + logits BTV
//   work      scratch max(BTC, a block's 13 BTC + P) and, under recompute, the transient parts
//   dres      BTC
TEST(Recompute, ActivationBytesMatchTheFormula) {
  ModelConfig c = preset("tiny");
  c.num_layers = 4;
  const size_t B = 2, T = static_cast<size_t>(c.seq_len), C = static_cast<size_t>(c.hidden), V = static_cast<size_t>(c.vocab),
               L = static_cast<size_t>(c.num_layers), BT = B * T, BTC = BT * C;
  const size_t P = kernels::causal_attention_saved_numel(static_cast<int>(B), static_cast<int>(T), c.heads);
  const size_t block_internals = 15 * BTC + 4 * BT, scratch = std::max(BTC, 13 * BTC + P);
  const size_t head_kept = BT, logits = BT * V, edges = BTC + (BTC + 2 * BT);
  auto bytes = [&](const RecomputeConfig& rc) {
    LocalModel<float> m(c, static_cast<int>(B), static_cast<int>(T), true, rc);
    return m.runner().activation_bytes();
  };
  using G = RecomputeConfig::Granularity;
  using M = RecomputeConfig::Method;
  // none: everything kept
  EXPECT_EQ(bytes({}), 4 * (edges + L * (BTC + block_internals + P) + head_kept + logits + scratch + BTC));
  // selective: the probabilities are transient (after the scratch)
  EXPECT_EQ(bytes(recompute(G::Selective)), 4 * (edges + L * (BTC + block_internals) + head_kept + logits + scratch + P + BTC));
  // full, one block per chunk: the block outputs stay (checkpoints); one block's internals and
  // probabilities after the scratch, or the head's logits after its input gradient
  const size_t one = block_internals + P;
  EXPECT_EQ(bytes(recompute(G::Full)),
            4 * (edges + L * BTC + head_kept + std::max(scratch + one, BTC + logits) + BTC));
  // full, chunks of 2: the first block of a chunk keeps nothing (its output is transient too)
  EXPECT_EQ(bytes(recompute(G::Full, M::Uniform, 2)),
            4 * (edges + (L / 2) * BTC + head_kept + std::max(scratch + 2 * one + BTC, BTC + logits) + BTC));
  // block method, the first 3 of 4 blocks: the last block keeps everything
  EXPECT_EQ(bytes(recompute(G::Full, M::Block, 3)),
            4 * (edges + 3 * BTC + (BTC + one) + head_kept + std::max(scratch + one, BTC + logits) + BTC));
}

// ---- The LLaMA composition: RMSNorm, RoPE, SwiGLU, grouped-query attention, untied head, no biases.

namespace {
ModelConfig llama_micro() {
  ModelConfig c = micro_config();
  c.name = "llama-micro";
  c.heads = 4, c.hidden = 16, c.query_groups = 2;  // 4 query heads of 4, 2 kv heads
  c.norm = Norm::RMSNorm;
  c.positions = Positions::Rope;
  c.swiglu = true;
  c.ffn_hidden = 24;
  c.tie_embeddings = false;
  c.bias = false;
  return c;
}
}  // namespace

TEST(Llama, ParameterTableFollowsTheComposition) {
  const ModelConfig c = preset("llama-tiny");
  const Model<float> m(c);
  const int C = c.hidden, hs = c.head_size(), F = c.ffn();
  EXPECT_EQ(m.find_tensor("wpe"), -1);  // rotary: no learned positions
  EXPECT_EQ(m.find_tensor("layers.0.ln1.bias"), -1);
  EXPECT_EQ(m.find_tensor("layers.0.attn.qkv.bias"), -1);
  const ParamSpec& qkv = m.spec(m.find_tensor("layers.0.attn.qkv.weight"));
  EXPECT_EQ(qkv.shape, (std::vector<int64_t>{(c.heads + 2 * c.kv_heads()) * hs, C}));
  EXPECT_EQ(qkv.tp_segments, (std::vector<int64_t>{c.heads * hs, c.kv_heads() * hs, c.kv_heads() * hs}));
  EXPECT_EQ(m.spec(m.find_tensor("layers.1.mlp.fc.weight")).shape, (std::vector<int64_t>{2 * F, C}));
  EXPECT_EQ(m.spec(m.find_tensor("layers.1.mlp.proj.weight")).shape, (std::vector<int64_t>{C, F}));
  EXPECT_EQ(m.spec(m.find_tensor("lm_head.weight")).shape, (std::vector<int64_t>{c.vocab, C}));
  // per block: q, k, v, o projections + gate/up/down + two norms
  const size_t per_block = static_cast<size_t>((c.heads + 2 * c.kv_heads()) * hs * C + C * c.heads * hs + 3 * F * C + 2 * C);
  EXPECT_EQ(m.real_params(), 2 * static_cast<size_t>(c.vocab) * C + c.num_layers * per_block + C);
  EXPECT_EQ(num_matmul_params(c), m.real_params());  // nothing is a learned position
  // real geometries: LLaMA-2 7B and LLaMA-3 8B have their published parameter counts
  EXPECT_EQ(num_params(preset("llama2-7b")), 6738415616u);
  EXPECT_EQ(num_params(preset("llama3-8b")), 8030261248u);
}

TEST(Llama, ReferenceDoubleMatchesFiniteDifferences) { grad_check(llama_micro()); }

TEST(Llama, FastFloatMatchesReferenceDouble) {
  ModelConfig c = preset("llama-tiny");
  c.seq_len = c.max_pos = 16;
  fast_vs_reference(c, 3, 16);
}

TEST(Llama, RecomputeIsBitIdentical) {
  ModelConfig c = preset("llama-tiny");
  c.num_layers = 4, c.seq_len = c.max_pos = 16;
  recompute_is_bit_identical(c);
}

TEST(Llama, LearnedPositionsOffAndGptKnobsCompose) {
  // a GPT-2 with RoPE and no biases, and a LLaMA with LayerNorm: every mix of the knobs is one
  // composition of the same units, checked against finite differences
  ModelConfig a = micro_config();
  a.positions = Positions::Rope, a.bias = false;
  grad_check(a);
  ModelConfig b = llama_micro();
  b.norm = Norm::LayerNorm, b.swiglu = false, b.tie_embeddings = true;
  grad_check(b);
}

// ---- Inference with a key/value cache (deepmpi generate)

namespace {
// Cached decoding (one token at a time), uncached decoding (the whole prefix re-run for every new
// token) and the training forward (its loss, from the fast causal attention) agree.
void decoding_agrees(const ModelConfig& c) {
  const int L = 12;
  LocalModel<float> m(c, 1, L);
  m.init_weights(21);
  std::vector<int32_t> tok(L), tgt(L);
  for (int i = 0; i < L; ++i) tok[static_cast<size_t>(i)] = (i * 7 + 2) % c.vocab, tgt[static_cast<size_t>(i)] = (i * 5 + 1) % c.vocab;
  const int V = c.vocab;
  Decoder<float> cached(m, 1, L), uncached(m, 1, L);
  double worst = 0, ce = 0;
  for (int t = 0; t < L; ++t) {
    const float* a = cached.feed(ctx(), &tok[static_cast<size_t>(t)], 1);
    std::vector<float> one(a, a + V);
    uncached.reset();
    const float* b = uncached.feed(ctx(), tok.data(), t + 1) + static_cast<size_t>(t) * V;  // the last row
    double scale = 0;
    for (int v = 0; v < V; ++v) scale = std::max(scale, std::fabs(static_cast<double>(b[v])));
    for (int v = 0; v < V; ++v) worst = std::max(worst, std::fabs(static_cast<double>(one[static_cast<size_t>(v)]) - b[v]) / scale);
    // cross-entropy of this row from the logits, in double
    double mx = -1e300, sum = 0;
    for (int v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(one[static_cast<size_t>(v)]));
    for (int v = 0; v < V; ++v) sum += std::exp(one[static_cast<size_t>(v)] - mx);
    ce += (std::log(sum) + mx - one[static_cast<size_t>(tgt[static_cast<size_t>(t)])]) / L;
  }
  EXPECT_LT(worst, 1e-5) << "cached and uncached logits";
  const double loss = m.forward(ctx(), tok.data(), tgt.data());
  EXPECT_NEAR(ce, loss, 1e-5 * loss) << "the decoder's logits against the training forward";
  EXPECT_THROW(cached.feed(ctx(), tok.data(), 1), Error) << "the cache is full";
}
}  // namespace

TEST(Decode, GptCachedAndUncachedAgree) {
  ModelConfig c = micro_config();
  c.seq_len = c.max_pos = 12;
  decoding_agrees(c);
}

TEST(Decode, LlamaCachedAndUncachedAgree) {
  ModelConfig c = preset("llama-tiny");
  c.seq_len = c.max_pos = 12;
  decoding_agrees(c);
}

TEST(Sampling, GreedyTopKTopPAndTemperature) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  SamplingConfig greedy;
  greedy.temperature = 0;
  EXPECT_EQ(sample_token(logits.data(), 5, greedy, 0.99), 1) << "the first largest logit";
  // temperature 1, everything: the softmax
  SamplingConfig s;
  const auto p = sampling_distribution(logits.data(), 5, s);
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  for (int v = 0; v < 5; ++v)
    EXPECT_NEAR(p[static_cast<size_t>(v)], std::exp(static_cast<double>(logits[static_cast<size_t>(v)])) / z, 1e-12);
  // top-k 2: the two 3.0s, half each
  s.top_k = 2;
  const auto pk = sampling_distribution(logits.data(), 5, s);
  EXPECT_NEAR(pk[1], 0.5, 1e-12);
  EXPECT_NEAR(pk[3], 0.5, 1e-12);
  EXPECT_EQ(pk[0] + pk[2] + pk[4], 0.0);
  // top-p: the smallest prefix reaching p (0.5 of a distribution whose largest two hold ~0.34 each)
  s.top_k = 0, s.top_p = 0.5;
  const auto pp = sampling_distribution(logits.data(), 5, s);
  EXPECT_GT(pp[1], 0);
  EXPECT_GT(pp[3], 0);
  EXPECT_EQ(pp[2], 0.0);
  // a low temperature concentrates the mass, a high one spreads it
  s.top_p = 1, s.temperature = 0.1;
  EXPECT_GT(sampling_distribution(logits.data(), 5, s)[1], 0.49);
  s.temperature = 100;
  EXPECT_NEAR(sampling_distribution(logits.data(), 5, s)[4], 0.2, 0.01);
  // drawing: the empirical frequencies follow the distribution
  s.temperature = 1;
  dmpi::Rng rng(3, 4);
  std::vector<int> count(5, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(sample_token(logits.data(), 5, s, rng))];
  for (int v = 0; v < 5; ++v) EXPECT_NEAR(count[static_cast<size_t>(v)] / double(n), p[static_cast<size_t>(v)], 0.015) << v;
  s.top_p = 0;
  EXPECT_THROW(sampling_distribution(logits.data(), 5, s), Error);
}
