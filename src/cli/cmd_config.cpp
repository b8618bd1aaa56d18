#include <algorithm>
#include <cstdio>

#include "base/args.hpp"
#include "base/error.hpp"
#include "src/cli/commands.hpp"
#include "src/config/ds_config.hpp"
#include "src/model/config.hpp"

namespace dmpi::cli {

// deepmpi config check FILE [flags]: validates a ds_config as `deepmpi train` would for the
// given data-parallel size and flags, in one pass, and prints the resolved config (every
// default filled in) as JSON. Exit 0: valid and trainable by this build; 1: errors (all of
// them listed, and the not-implemented list with them); 3: a valid DeepSpeed config asking for
// what this build does not implement yet (each listed). 2: a usage error.
// deepmpi config defaults [--markdown]: the default of every key, with older-release notes.
int cmd_config(const std::vector<std::string>& argl) {
  const char* usage =
      "usage: deepmpi config check FILE [--data-parallel-size N] [--strict] [--model NAME | --hidden-size H]\n"
      "                                 [Megatron flags: --lr, --lr-decay-style, --micro-batch-size, ...]\n"
      "       deepmpi config defaults [--markdown]\n"
      "check exits 0 when `deepmpi train` can run the config, 1 on errors, 3 when the config is valid\n"
      "but asks for something this build does not implement yet (listed on stderr).\n";
  if (argl.empty() || (argl[0] != "check" && argl[0] != "defaults")) throw Error(usage);
  std::vector<std::string> rest(argl.begin() + 1, argl.end());
  std::vector<FlagSpec> flags = {
      {"data-parallel-size", true, "data-parallel size W of the batch triangle (default 1)"},
      {"model", true, "preset whose width resolves the ZeRO bucket sizes' \"auto\" (tiny | small | gpt2-124m)"},
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
  if (a.positional().size() != 1) throw Error(std::string("deepmpi config check: give exactly one FILE\n") + usage);
  const int64_t dp = a.integer("data-parallel-size", 1);
  if (dp < 1 || dp > (1 << 24)) throw Error("--data-parallel-size must be in [1, 2^24] (got " + std::to_string(dp) + ")");
  config::AutoContext ctx = auto_context(a);
  ctx.default_train_iters = kDefaultTrainIters;  // as `deepmpi train` runs without --train-iters
  if (a.has("model")) ctx.hidden = model_preset(a.str("model")).hidden;
  if (a.has("hidden-size")) {
    ctx.hidden = a.integer("hidden-size", 0);
    if (*ctx.hidden < 1) throw Error("--hidden-size must be >= 1");
  }
  const std::string file = a.positional()[0];
  const config::ConfigCheck c = config::check_ds_config_file(file, static_cast<int>(dp), ctx);
  for (const auto& w : c.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  for (const auto& n : c.notes) std::fprintf(stderr, "note: %s\n", n.c_str());
  if (c.errors.empty()) {
    std::printf("%s\n", c.config.resolved().dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    std::fprintf(stderr, "optimizer and schedule: %s\n", c.config.optimizer_source.c_str());
  } else {
    std::fprintf(stderr, "deepmpi: error: '%s': %zu error%s in the ds_config:\n", file.c_str(), c.errors.size(),
                 c.errors.size() == 1 ? "" : "s");
    for (const auto& e : c.errors) std::fprintf(stderr, "  - %s\n", e.c_str());
  }
  if (!c.unimplemented.empty()) {
    std::fprintf(stderr, "%s DeepSpeed setting%s `deepmpi train` refuses in this build (not implemented yet):\n",
                 c.errors.empty() ? "valid config; these are" : "also, these are valid",
                 c.unimplemented.size() == 1 ? "" : "s");
    for (const auto& m : c.unimplemented) std::fprintf(stderr, "  - %s\n", m.c_str());
  }
  if (!c.errors.empty()) return kExitErrors;
  return c.unimplemented.empty() ? 0 : kExitNotImplemented;
}

model::ModelConfig model_preset(const std::string& name) {
  const auto names = model::preset_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string hint = closest_match(name, names), list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw Error("unknown --model '" + name + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") + " (presets: " +
                list + ")");
  }
  return model::preset(name);
}

std::vector<FlagSpec> auto_flags() {
  return {{"micro-batch-size", true, "train_micro_batch_size_per_gpu (\"auto\", or left out)"},
          {"global-batch-size", true, "train_batch_size (\"auto\", or left out)"},
          {"lr", true, "learning rate: optimizer.params.lr and warmup_max_lr (\"auto\" or left out); without an "
                       "optimizer block, Megatron's --lr (required)"},
          {"clip-grad", true, "gradient_clipping (\"auto\", or left out; Megatron's default 1.0 = DeepSpeed's)"},
          {"adam-beta1", true, "optimizer.params.betas[0] (Megatron default 0.9)"},
          {"adam-beta2", true, "optimizer.params.betas[1] (Megatron default 0.999)"},
          {"adam-eps", true, "optimizer.params.eps (Megatron default 1e-8)"},
          {"weight-decay", true, "optimizer.params.weight_decay (Megatron default 0.01 without an optimizer block)"},
          {"lr-warmup-iters", true, "scheduler.params.warmup_num_steps, or Megatron's linear warmup (default 0)"},
          {"optimizer", true, "without an optimizer block: adam (default; AdamW) | sgd"},
          {"sgd-momentum", true, "SGD momentum (Megatron default 0.9)"},
          {"min-lr", true, "Megatron schedule: the lr floor (default 0)"},
          {"lr-decay-style", true, "Megatron schedule: constant | linear (default) | cosine | inverse-square-root | WSD"},
          {"lr-decay-iters", true, "Megatron schedule: decay length in steps (default --train-iters)"},
          {"lr-warmup-fraction", true, "Megatron schedule: warmup as a fraction of --lr-decay-iters"},
          {"lr-warmup-init", true, "Megatron schedule: the lr warmup starts from (default 0)"},
          {"lr-wsd-decay-style", true, "WSD's final decay: exponential (default) | linear | cosine | minus_sqrt"},
          {"lr-wsd-decay-iters", true, "WSD: length of the final decay in steps (required by WSD)"},
          {"weight-decay-incr-style", true, "Megatron: weight decay constant (default) | linear | cosine over --train-iters"},
          {"start-weight-decay", true, "Megatron: the weight decay at step 0 (linear/cosine increment)"},
          {"end-weight-decay", true, "Megatron: the weight decay at the last step (linear/cosine increment)"},
          {"train-iters", true, "optimizer steps: scheduler.params.total_num_steps, Megatron's decay length (default 20)"},
          {"strict", false, "every unknown ds_config key is an error (the top level's are warnings otherwise, as DeepSpeed ignores them)"},
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
  if (a.has("optimizer")) c.optimizer = a.str("optimizer");
  if (a.has("sgd-momentum")) c.sgd_momentum = a.real("sgd-momentum", 0);
  if (a.has("min-lr")) c.min_lr = a.real("min-lr", 0);
  if (a.has("lr-decay-style")) c.lr_decay_style = a.str("lr-decay-style");
  if (a.has("lr-decay-iters")) c.lr_decay_iters = a.integer("lr-decay-iters", 0);
  if (a.has("lr-warmup-fraction")) c.lr_warmup_fraction = a.real("lr-warmup-fraction", 0);
  if (a.has("lr-warmup-init")) c.lr_warmup_init = a.real("lr-warmup-init", 0);
  if (a.has("lr-wsd-decay-style")) c.lr_wsd_decay_style = a.str("lr-wsd-decay-style");
  if (a.has("lr-wsd-decay-iters")) c.lr_wsd_decay_iters = a.integer("lr-wsd-decay-iters", 0);
  if (a.has("weight-decay-incr-style")) c.weight_decay_incr_style = a.str("weight-decay-incr-style");
  if (a.has("start-weight-decay")) c.start_weight_decay = a.real("start-weight-decay", 0);
  if (a.has("end-weight-decay")) c.end_weight_decay = a.real("end-weight-decay", 0);
  if (c.train_iters && *c.train_iters < 0) throw Error("--train-iters must be >= 0");
  if (c.warmup_iters && *c.warmup_iters < 0) throw Error("--lr-warmup-iters must be >= 0");
  c.strict = a.has("strict");
  c.fp16 = a.has("fp16");
  c.bf16 = a.has("bf16");
  if (c.fp16 && c.bf16) throw Error("give at most one of --fp16 and --bf16");
  return c;
}

}  // namespace dmpi::cli
