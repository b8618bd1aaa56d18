// Training on one rank: determinism, accumulation semantics, clipping, and learning.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "io/token_dataset.hpp"
#include "kernels/gemm.hpp"
#include "io/tokenizer.hpp"
#include "src/engine/trainer.hpp"
#include "tests/unit/test_util.hpp"

using namespace dmpi;
namespace fs = std::filesystem;

namespace {

// every tensor's fp32 parameters, flattened in model order
std::vector<float> flat_params(engine::Trainer& t) {
  std::vector<float> out;
  for (const auto& v : t.full_params()) out.insert(out.end(), v.begin(), v.end());
  return out;
}

engine::TrainOptions tiny_options(int64_t mbs, int64_t gas, int64_t iters) {
  engine::TrainOptions o;
  o.model = model::preset("tiny");
  o.model.seq_len = 32;
  o.model.max_pos = 32;
  nlohmann::json j = config::default_ds_config_json();
  j["train_micro_batch_size_per_gpu"] = mbs;
  j["gradient_accumulation_steps"] = gas;
  o.ds = config::parse_ds_config(j, 1);
  o.train_iters = iters;
  o.seed = 99;
  o.print = false;
  o.peak_gflops = 100;  // skip the probe
  return o;
}

}  // namespace

TEST(Training, SameSeedIsBitIdentical) {
  auto& env = test::mpi_env();
  for (const auto& backend : kernels::gemm_backend_names()) {
  SCOPED_TRACE(backend);
  auto opts = tiny_options(2, 2, 6);
  opts.gemm_backend = backend;
  engine::Trainer a(env, opts), b(env, opts);
  auto sa = a.run(), sb = b.run();
  ASSERT_EQ(sa.steps.size(), 6u);
  for (size_t i = 0; i < sa.steps.size(); ++i) {
    EXPECT_EQ(std::memcmp(&sa.steps[i].loss, &sb.steps[i].loss, sizeof(double)), 0) << i;
    EXPECT_EQ(std::memcmp(&sa.steps[i].grad_norm, &sb.steps[i].grad_norm, sizeof(double)), 0) << i;
  }
  const auto pa = flat_params(a), pb = flat_params(b);
  EXPECT_EQ(0, std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)));
  auto o = opts;
  o.seed = 100;
  engine::Trainer c(env, o);
  EXPECT_NE(c.run().steps[0].loss, sa.steps[0].loss);
  }
}

TEST(Training, AccumulationMatchesOneLargeMicroBatch) {
  // MBS 2 x GAS 2 sees the same 4 samples per step as MBS 4 x GAS 1; with the loss of each
  // micro-batch divided by GAS the gradients, and so the trajectories, agree.
  auto& env = test::mpi_env();
  engine::Trainer acc(env, tiny_options(2, 2, 5)), big(env, tiny_options(4, 1, 5));
  auto sa = acc.run(), sb = big.run();
  for (size_t i = 0; i < sa.steps.size(); ++i) {
    EXPECT_NEAR(sa.steps[i].loss, sb.steps[i].loss, 1e-5 * sb.steps[i].loss) << i;
    EXPECT_NEAR(sa.steps[i].grad_norm, sb.steps[i].grad_norm, 1e-4 * sb.steps[i].grad_norm) << i;
  }
  std::vector<float> pa = flat_params(acc), pb = flat_params(big);
  EXPECT_LT(test::rel_err(pa, pb), 1e-5);
}

TEST(Training, ClippingBoundsTheAppliedNorm) {
  auto& env = test::mpi_env();
  auto o = tiny_options(2, 1, 3);
  o.ds.gradient_clipping = 0.05;
  engine::Trainer t(env, o);
  auto s = t.run();
  for (auto& m : s.steps) {
    EXPECT_GT(m.grad_norm, 0.05);  // pre-clip norm is reported, as DeepSpeed does
    EXPECT_NEAR(m.grad_norm_clipped, 0.05, 1e-6);
  }
  // the lr of the first steps follows WarmupLR (linear, 10 steps, min 0): 0, 0, 1e-4
  EXPECT_DOUBLE_EQ(s.steps[0].lr, 0.0);
  EXPECT_DOUBLE_EQ(s.steps[1].lr, 0.0);
  EXPECT_NEAR(s.steps[2].lr, 1e-4, 1e-15);
}

TEST(Training, LearnsAStructuredCorpus) {
  // A corpus of short sentences from a small grammar. A model that ignores context can do no
  // better than the unigram entropy of the bytes; the trained model must go well below it.
  std::string text;
  const char* subj[] = {"the cat", "a dog", "my bird", "the fox"};
  const char* verb[] = {" sees ", " eats ", " likes "};
  const char* obj[] = {"the fish.\n", "a bone.\n", "some seeds.\n", "the moon.\n"};
  uint64_t x = 12345;
  for (int i = 0; i < 3000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    text += subj[(x >> 33) % 4];
    text += verb[(x >> 40) % 3];
    text += obj[(x >> 50) % 4];
  }
  std::map<int, double> freq;
  for (unsigned char c : text) freq[c] += 1.0 / text.size();
  double unigram = 0;
  for (auto& [c, p] : freq) unigram -= p * std::log(p);

  fs::path dir = fs::temp_directory_path() / ("deepmpi-corpus-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  io::write_token_file((dir / "corpus.tokens").string(), io::ByteTokenizer::encode(text), io::ByteTokenizer::kVocab);

  auto o = tiny_options(8, 1, 150);
  o.data_path = (dir / "corpus").string();
  o.ds.optimizer.lr = 3e-3;
  o.ds.scheduler.warmup_max_lr = 3e-3;
  o.ds.optimizer.weight_decay = 0.0;
  engine::Trainer t(test::mpi_env(), o);
  auto s = t.run();
  fs::remove_all(dir);
  double first = s.steps.front().loss;
  double last = 0;
  for (size_t i = s.steps.size() - 10; i < s.steps.size(); ++i) last += s.steps[i].loss / 10;
  EXPECT_NEAR(first, std::log(512.0), 0.2);
  EXPECT_LT(last, 0.6 * unigram) << "first " << first << " unigram entropy " << unigram;
}

TEST(Memory, ReportMatchesBufferSizes) {
  auto o = tiny_options(2, 1, 0);
  engine::Trainer t(test::mpi_env(), o);
  auto m = t.memory();
  size_t n = model::num_params(o.model);
  EXPECT_EQ(m.params, n * 4);
  EXPECT_EQ(m.grads, n * 4);
  EXPECT_EQ(m.optimizer_states, 2 * n * 4);
  EXPECT_GT(m.activations, 0u);
}

TEST(Training, EveryOptimizerFitsARepeatingSequence) {
  // A period-5 token sequence: after a few dozen steps every optimizer must predict it far
  // better than chance (ln 512 = 6.2 at the start).
  fs::path dir = fs::temp_directory_path() / ("deepmpi-opt-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<uint32_t> toks;
  for (int i = 0; i < 5000; ++i) toks.push_back(static_cast<uint32_t>((i % 5) * 37 + 11));
  io::write_token_file((dir / "rep.tokens").string(), toks, 512);
  struct Case {
    const char* type;
    double lr;
  };
  for (Case c : {Case{"AdamW", 3e-3}, Case{"Lamb", 1e-2}, Case{"SGD", 0.3}, Case{"Adagrad", 3e-2}, Case{"Lion", 1e-3}}) {
    SCOPED_TRACE(c.type);
    nlohmann::json j{{"train_micro_batch_size_per_gpu", 4},
                     {"optimizer", {{"type", c.type}, {"params", {{"lr", c.lr}}}}}};
    if (std::string(c.type) == "SGD") j["optimizer"]["params"]["momentum"] = 0.9;
    auto o = tiny_options(4, 1, 80);
    o.ds = config::parse_ds_config(j, 1);
    o.data_path = (dir / "rep").string();
    engine::Trainer t(test::mpi_env(), o);
    auto s = t.run();
    EXPECT_GT(s.steps.front().loss, 5.5);
    EXPECT_LT(s.steps.back().loss, 0.5) << c.type;
  }
  fs::remove_all(dir);
}
