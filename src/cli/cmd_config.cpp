#include <cstdio>

#include "src/cli/commands.hpp"
#include "src/config/ds_config.hpp"
#include "base/args.hpp"
#include "base/error.hpp"

namespace dmpi::cli {

// deepmpi config check FILE [flags]: validates a ds_config as `deepmpi train` would for the
// given data-parallel size and flags; prints the resolved config (every default filled in) as
// JSON. Exit 0: valid and trainable by this build; 1: errors (all of them listed); 3: a valid
// DeepSpeed config asking for what this build does not implement yet (each listed).
// deepmpi config defaults [--markdown]: the default of every key, with older-release notes.
int cmd_config(const std::vector<std::string>& argl) {
  const char* usage =
      "usage: deepmpi config check FILE [--data-parallel-size N] [auto-resolving flags]\n"
      "       deepmpi config defaults [--markdown]\n"
      "check exits 0 when `deepmpi train` can run the config, 1 on errors, 3 when the config is valid\n"
      "but asks for something this build does not implement yet (listed on stderr).\n";
  DMPI_REQUIRE(!argl.empty() && (argl[0] == "check" || argl[0] == "defaults"), usage);
  std::vector<std::string> rest(argl.begin() + 1, argl.end());
  std::vector<FlagSpec> flags = {{"data-parallel-size", true, "data-parallel size W of the batch triangle (default 1)"},
                                 {"train-iters", true, "resolves scheduler.params.total_num_steps: \"auto\""},
                                 {"hidden-size", true, "model width: resolves the ZeRO bucket sizes' \"auto\" (h^2, 0.9 h^2, 10 h)"},
                                 {"markdown", false, "defaults: print the table as Markdown"},
                                 {"help", false, "show this help"}};
  for (auto& f : auto_flags()) flags.push_back(f);
  Args a(flags, rest);
  if (a.has("help")) {
    std::printf("%s\n%s", usage, a.usage().c_str());
    return 0;
  }
  if (argl[0] == "defaults") {
    std::printf("%s", config::default_table_text(a.has("markdown")).c_str());
    return 0;
  }
  DMPI_REQUIRE(a.positional().size() == 1, "deepmpi config check: give exactly one FILE\n" << usage);
  const int64_t dp = a.integer("data-parallel-size", 1);
  DMPI_REQUIRE(dp >= 1 && dp <= (1 << 24), "--data-parallel-size must be >= 1 (got " << dp << ")");
  config::AutoContext ctx = auto_context(a);
  if (a.has("hidden-size")) ctx.hidden = a.integer("hidden-size", 0);
  auto c = config::load_ds_config(a.positional()[0], static_cast<int>(dp), ctx);
  for (const auto& w : c.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::printf("%s\n", c.resolved().dump(2).c_str());
  auto missing = config::unimplemented_for_training(c);
  if (missing.empty()) return 0;
  std::fprintf(stderr, "valid DeepSpeed config, but `deepmpi train` refuses it in this build:\n");
  for (const auto& m : missing) std::fprintf(stderr, "  - %s\n", m.c_str());
  return 3;
}

}  // namespace dmpi::cli

namespace dmpi::cli {

std::vector<FlagSpec> auto_flags() {
  return {{"micro-batch-size", true, "train_micro_batch_size_per_gpu when \"auto\""},
          {"global-batch-size", true, "train_batch_size when \"auto\""},
          {"lr", true, "optimizer.params.lr and scheduler warmup_max_lr when \"auto\""},
          {"clip-grad", true, "gradient_clipping when \"auto\""},
          {"adam-beta1", true, "optimizer.params.betas[0] when \"auto\""},
          {"adam-beta2", true, "optimizer.params.betas[1] when \"auto\""},
          {"adam-eps", true, "optimizer.params.eps when \"auto\""},
          {"weight-decay", true, "optimizer.params.weight_decay when \"auto\""},
          {"lr-warmup-iters", true, "scheduler.params.warmup_num_steps when \"auto\""},
          {"fp16", false, "fp16.enabled when \"auto\""},
          {"bf16", false, "bf16.enabled when \"auto\""}};
}

config::AutoContext auto_context(const Args& a) {
  config::AutoContext c;
  if (a.has("micro-batch-size")) c.micro_batch = a.integer("micro-batch-size", 0);
  if (a.has("global-batch-size")) c.global_batch = a.integer("global-batch-size", 0);
  if (a.has("lr")) c.lr = a.real("lr", 0);
  if (a.has("clip-grad")) c.clip_grad = a.real("clip-grad", 0);
  if (a.has("adam-beta1")) c.beta1 = a.real("adam-beta1", 0);
  if (a.has("adam-beta2")) c.beta2 = a.real("adam-beta2", 0);
  if (a.has("adam-eps")) c.eps = a.real("adam-eps", 0);
  if (a.has("weight-decay")) c.weight_decay = a.real("weight-decay", 0);
  if (a.has("lr-warmup-iters")) c.warmup_iters = a.integer("lr-warmup-iters", 0);
  if (a.has("train-iters")) c.train_iters = a.integer("train-iters", 0);
  c.fp16 = a.has("fp16");
  c.bf16 = a.has("bf16");
  DMPI_REQUIRE(!(c.fp16 && c.bf16), "give at most one of --fp16 and --bf16");
  return c;
}

}  // namespace dmpi::cli
