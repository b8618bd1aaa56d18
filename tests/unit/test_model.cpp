// The whole model: reference gradients (double) against finite differences of the loss,
// and the fast float path against the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "src/model/gpt.hpp"
#include "base/error.hpp"
#include "tests/unit/test_util.hpp"

using namespace dmpi;
using namespace dmpi::model;

namespace {

GPTConfig micro_config() {
  GPTConfig c;
  c.name = "micro";
  c.num_layers = 2;
  c.hidden = 8;
  c.heads = 2;
  c.vocab = 11;
  c.seq_len = 5;
  c.max_pos = 6;
  return c;
}

void make_batch(const GPTConfig& c, int B, int T, std::vector<int32_t>& tok, std::vector<int32_t>& tgt, bool ignore) {
  tok.resize(B * T);
  tgt.resize(B * T);
  for (int i = 0; i < B * T; ++i) {
    tok[i] = (i * 5 + 3) % c.vocab;
    tgt[i] = (i * 3 + 1) % c.vocab;
  }
  if (ignore) tgt[2] = GPT<float>::kIgnoreIndex;
}

}  // namespace

TEST(ParamTable, LayoutAndCount) {
  GPTConfig c = preset("gpt2-124m");
  auto t = gpt_param_table(c);
  size_t off = 0;
  for (auto& s : t) {
    EXPECT_EQ(s.offset, off) << s.name;
    off += s.numel;
  }
  const size_t L = 12, C = 768, V = 50257, P = 1024;
  EXPECT_EQ(off, V * C + P * C + L * (12 * C * C + 13 * C) + 2 * C);
  EXPECT_EQ(off, 124439808u);  // GPT-2 small: 124.44 M parameters with tied embeddings
  EXPECT_EQ(num_matmul_params(c), off - P * C);
  // each layer's parameters are contiguous (one flat group per layer)
  for (int l = 0; l < 12; ++l) {
    size_t lo = SIZE_MAX, hi = 0, n = 0;
    for (auto& s : t)
      if (s.layer == l) {
        lo = std::min(lo, s.offset);
        hi = std::max(hi, s.offset + s.numel);
        n += s.numel;
      }
    EXPECT_EQ(hi - lo, n);
  }
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
  GPTConfig bad = t;
  bad.heads = 3;
  EXPECT_THROW(bad.validate(), Error);
}

TEST(ModelGradCheck, ReferenceDoubleMatchesFiniteDifferences) {
  GPTConfig c = micro_config();
  const int B = 2, T = 5;
  GPT<double> m(c, B, T, KernelPath::Reference);
  m.init_weights(42);
  // Larger weights than GPT-2's init so that every path carries signal.
  for (size_t i = 0; i < m.num_params(); ++i) m.params()[i] *= 10.0;
  std::vector<int32_t> tok, tgt;
  make_batch(c, B, T, tok, tgt, true);
  m.zero_grad();
  m.forward(tok.data(), tgt.data());
  m.backward(1.0);
  std::vector<double> g(m.grads(), m.grads() + m.num_params());
  const double h = 1e-6;
  double worst = 0;
  std::string worst_name;
  for (const auto& t : m.param_table()) {
    for (size_t j = 0; j < t.numel; ++j) {
      double* p = m.params() + t.offset + j;
      double keep = *p;
      *p = keep + h;
      double up = m.forward(tok.data(), tgt.data());
      *p = keep - h;
      double dn = m.forward(tok.data(), tgt.data());
      *p = keep;
      double fd = (up - dn) / (2 * h);
      double err = std::fabs(fd - g[t.offset + j]) / std::max(1e-3, std::fabs(fd) + std::fabs(g[t.offset + j]));
      if (err > worst) {
        worst = err;
        worst_name = t.name;
      }
    }
  }
  // Central differences in double: truncation O(h^2) and roundoff ~1e-9 absolute; a wrong
  // gradient term shows up at 1e-2 or more.
  EXPECT_LT(worst, 1e-5) << "worst at " << worst_name;
}

TEST(ModelGradCheck, FastFloatMatchesReferenceDouble) {
  GPTConfig c;
  c.num_layers = 2, c.hidden = 64, c.heads = 4, c.vocab = 97, c.seq_len = 16, c.max_pos = 16;
  const int B = 3, T = 16;
  GPT<float> fast(c, B, T, KernelPath::Fast);
  GPT<double> ref(c, B, T, KernelPath::Reference);
  fast.init_weights(7);
  ref.init_weights(7);
  for (size_t i = 0; i < ref.num_params(); ++i) ASSERT_EQ(static_cast<float>(ref.params()[i]), fast.params()[i]);
  std::vector<int32_t> tok, tgt;
  make_batch(c, B, T, tok, tgt, true);
  for (int micro = 0; micro < 2; ++micro) {  // two accumulated micro-batches
    double lf = fast.forward(tok.data(), tgt.data());
    double lr = ref.forward(tok.data(), tgt.data());
    EXPECT_NEAR(lf, lr, 1e-5 * std::fabs(lr));
    fast.backward(0.5);
    ref.backward(0.5);
  }
  std::vector<double> gf(fast.grads(), fast.grads() + fast.num_params());
  std::vector<double> gr(ref.grads(), ref.grads() + ref.num_params());
  // per tensor, relative to the tensor's largest gradient
  for (const auto& t : fast.param_table()) {
    std::vector<double> a(gf.begin() + t.offset, gf.begin() + t.offset + t.numel);
    std::vector<double> b(gr.begin() + t.offset, gr.begin() + t.offset + t.numel);
    EXPECT_LT(test::rel_err(a, b, 1e-8), 2e-4) << t.name;
  }
}

TEST(Model, ReferenceFloatMatchesFastFloat) {
  GPTConfig c = preset("tiny");
  const int B = 2, T = 32;
  GPT<float> fast(c, B, T, KernelPath::Fast), ref(c, B, T, KernelPath::Reference);
  fast.init_weights(3);
  ref.init_weights(3);
  std::vector<int32_t> tok, tgt;
  make_batch(c, B, T, tok, tgt, false);
  double lf = fast.forward(tok.data(), tgt.data()), lr = ref.forward(tok.data(), tgt.data());
  EXPECT_NEAR(lf, lr, 1e-5 * lr);
  EXPECT_NEAR(lf, std::log(512.0), 0.1);  // near-uniform predictions at GPT-2 init
  fast.backward(1.0);
  ref.backward(1.0);
  std::vector<float> gf(fast.grads(), fast.grads() + fast.num_params()), gr(ref.grads(), ref.grads() + ref.num_params());
  EXPECT_LT(test::rel_err(gf, gr, 1e-8), 1e-3);
}

TEST(Model, RejectsOutOfVocabularyTokens) {
  GPTConfig c = micro_config();
  GPT<float> m(c, 1, 5);
  std::vector<int32_t> tok = {1, 2, 11, 3, 4}, tgt = {1, 1, 1, 1, 1};
  EXPECT_THROW(m.forward(tok.data(), tgt.data()), Error);
}

TEST(Model, InitIsDeterministicAndSeedDependent) {
  GPTConfig c = micro_config();
  GPT<float> a(c, 1, 5), b(c, 1, 5), d(c, 1, 5);
  a.init_weights(1);
  b.init_weights(1);
  d.init_weights(2);
  EXPECT_EQ(0, std::memcmp(a.params(), b.params(), a.num_params() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(a.params(), d.params(), a.num_params() * sizeof(float)));
  EXPECT_EQ(a.param("layers.0.ln1.weight")[0], 1.0f);
  EXPECT_EQ(a.param("layers.0.attn.qkv.bias")[0], 0.0f);
}

// ZeRO stage 3 initialises each rank's partition alone: init_values over any range equals the
// whole model's initialisation there, which equals per-tensor sequential draws (a reference
// written out here: one splitmix stream per tensor, Box-Muller pairs, std 0.02 or 0.02/sqrt(2L)).
TEST(Model, InitValuesOfAnyRangeMatchTheWholeInit) {
  GPTConfig c = micro_config();
  GPT<float> m(c, 1, 5, KernelPath::Fast, 16);  // padded units, as ZeRO builds them
  m.init_weights(9);
  const size_t n = m.num_params();
  std::vector<float> ref(n, 0.0f);
  const auto& table = m.param_table();
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& t = table[i];
    if (t.shape.size() == 1) continue;
    const bool resid = t.name.ends_with("attn.proj.weight") || t.name.ends_with("mlp.proj.weight");
    const double sd = resid ? 0.02 / std::sqrt(2.0 * c.num_layers) : 0.02;
    dmpi::Rng rng(9, 1000 + i);
    for (size_t j = 0; j < t.numel; ++j) ref[t.offset + j] = static_cast<float>(rng.normal() * sd);
  }
  for (const auto& t : table)
    if (t.shape.size() == 1 && t.name.find("ln") != std::string::npos && t.name.ends_with(".weight"))
      std::fill(ref.begin() + static_cast<long>(t.offset), ref.begin() + static_cast<long>(t.offset + t.numel), 1.0f);
  EXPECT_EQ(0, std::memcmp(m.params(), ref.data(), n * sizeof(float)));
  dmpi::Rng pick(3, 3);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t a = pick.next_u64() % n, len = 1 + pick.next_u64() % std::min<size_t>(n - a, 700);
    std::vector<float> out(len, -7.0f);
    m.init_values(9, a, len, out.data());
    ASSERT_EQ(0, std::memcmp(out.data(), ref.data() + a, len * sizeof(float))) << "range [" << a << ", " << a + len << ")";
  }
}
