// The optimizer and LR schedule from Megatron-LM's flags, where the ds_config has no block for
// them: Megatron-DeepSpeed and fine-tuning templates leave the optimizer to the framework, and
// the framework is Megatron. Defaults are Megatron's (megatron/training/arguments.py:
// --optimizer adam, --weight-decay 0.01, --adam-beta1 0.9, --adam-beta2 0.999, --adam-eps 1e-8,
// --sgd-momentum 0.9; SchedulerConfig: --lr-decay-style linear, --lr-wsd-decay-style
// exponential, --lr-warmup-iters 0, --lr-warmup-init 0, --min-lr 0, --lr-decay-iters =
// --train-iters, --weight-decay-incr-style constant) and so are the checks (its argument
// validation and OptimizerParamScheduler's asserts), each turned into an error naming the flag.
// --lr has no default in Megatron, so it is required here too.
//
// Which blocks come from where:
//   optimizer block  -> the block (flags resolve "auto", fill keys it leaves out, must agree)
//   no block + flags -> Megatron's optimizer (adam is AdamW: Megatron's Adam decouples weight decay)
//   neither          -> AdamW at DeepSpeed's defaults, with a warning saying so
//   scheduler block  -> the block; Megatron-only schedule flags are an error
//   no block         -> Megatron's schedule when the optimizer came from flags or a schedule flag
//                       is given, else a constant lr (DeepSpeed without a scheduler)
#include <cmath>
#include <sstream>

#include "src/config/ds_config.hpp"
#include "src/config/reader.hpp"

namespace dmpi::config::detail {

namespace {

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

void apply_megatron_flags(Reader& r, const json& j, DsConfig& c, const AutoContext& ctx) {
  OptimizerConfig& o = c.optimizer;
  SchedulerConfig& s = c.scheduler;
  const bool has_opt = j.contains("optimizer"), has_sched = j.contains("scheduler");

  // Flags that set the optimizer, and those only Megatron's schedule reads.
  std::vector<std::string> opt_flags, sched_flags;
  auto note_flag = [](std::vector<std::string>& v, bool given, const std::string& text) {
    if (given) v.push_back(text);
  };
  note_flag(opt_flags, ctx.optimizer.has_value(), "--optimizer " + ctx.optimizer.value_or(""));
  note_flag(opt_flags, ctx.lr.has_value(), "--lr " + num(ctx.lr.value_or(0)));
  note_flag(opt_flags, ctx.weight_decay.has_value(), "--weight-decay " + num(ctx.weight_decay.value_or(0)));
  note_flag(opt_flags, ctx.beta1.has_value(), "--adam-beta1 " + num(ctx.beta1.value_or(0)));
  note_flag(opt_flags, ctx.beta2.has_value(), "--adam-beta2 " + num(ctx.beta2.value_or(0)));
  note_flag(opt_flags, ctx.eps.has_value(), "--adam-eps " + num(ctx.eps.value_or(0)));
  note_flag(opt_flags, ctx.sgd_momentum.has_value(), "--sgd-momentum " + num(ctx.sgd_momentum.value_or(0)));
  note_flag(sched_flags, ctx.lr_decay_style.has_value(), "--lr-decay-style " + ctx.lr_decay_style.value_or(""));
  note_flag(sched_flags, ctx.min_lr.has_value(), "--min-lr " + num(ctx.min_lr.value_or(0)));
  note_flag(sched_flags, ctx.lr_warmup_fraction.has_value(), "--lr-warmup-fraction " + num(ctx.lr_warmup_fraction.value_or(0)));
  note_flag(sched_flags, ctx.lr_warmup_init.has_value(), "--lr-warmup-init " + num(ctx.lr_warmup_init.value_or(0)));
  note_flag(sched_flags, ctx.lr_decay_iters.has_value(), "--lr-decay-iters " + std::to_string(ctx.lr_decay_iters.value_or(0)));
  note_flag(sched_flags, ctx.lr_wsd_decay_style.has_value(), "--lr-wsd-decay-style " + ctx.lr_wsd_decay_style.value_or(""));
  note_flag(sched_flags, ctx.lr_wsd_decay_iters.has_value(),
            "--lr-wsd-decay-iters " + std::to_string(ctx.lr_wsd_decay_iters.value_or(0)));
  note_flag(sched_flags, ctx.start_weight_decay.has_value(), "--start-weight-decay " + num(ctx.start_weight_decay.value_or(0)));
  note_flag(sched_flags, ctx.end_weight_decay.has_value(), "--end-weight-decay " + num(ctx.end_weight_decay.value_or(0)));
  note_flag(sched_flags, ctx.weight_decay_incr_style.has_value(),
            "--weight-decay-incr-style " + ctx.weight_decay_incr_style.value_or(""));
  auto joined = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
    return out;
  };

  // ---- the optimizer
  std::string opt_source;
  bool from_flags = false;
  if (has_opt) {
    opt_source = "optimizer " + o.type + " from the ds_config's \"optimizer\" block";
    if (ctx.optimizer) {
      const std::string f = lower(*ctx.optimizer);
      const bool agree = (f == "adam" && (o.type == "Adam" || o.type == "AdamW")) || (f == "sgd" && o.type == "SGD");
      if (!agree)
        r.err("optimizer.type", "\"" + o.type + "\" in the file disagrees with --optimizer " + *ctx.optimizer +
                                    "; drop the flag or change the block");
    }
    if (ctx.sgd_momentum && o.type != "SGD")
      r.err("optimizer.type", "--sgd-momentum applies to SGD, and the file's optimizer is " + o.type + "; drop the flag");
  } else if (!opt_flags.empty() || !sched_flags.empty() || ctx.warmup_iters) {
    from_flags = true;
    const std::string f = lower(ctx.optimizer.value_or("adam"));
    std::vector<std::string> defaults;  // Megatron defaults in force, named in the source
    if (f == "adam") {
      o = OptimizerConfig{};
      o.type = "AdamW";  // Megatron's Adam applies decoupled weight decay (AdamW)
      o.beta1 = ctx.beta1.value_or(0.9), o.beta2 = ctx.beta2.value_or(0.999), o.eps = ctx.eps.value_or(1e-8);
      if (!ctx.beta1) defaults.push_back("--adam-beta1 0.9");
      if (!ctx.beta2) defaults.push_back("--adam-beta2 0.999");
      if (!ctx.eps) defaults.push_back("--adam-eps 1e-08");
      if (ctx.sgd_momentum) r.err("optimizer", "--sgd-momentum applies to --optimizer sgd, not adam; drop it");
      if (!(o.beta1 >= 0 && o.beta1 < 1)) r.err("optimizer", "--adam-beta1 " + num(o.beta1) + " must be in [0, 1)");
      if (!(o.beta2 >= 0 && o.beta2 < 1)) r.err("optimizer", "--adam-beta2 " + num(o.beta2) + " must be in [0, 1)");
      if (!(o.eps > 0)) r.err("optimizer", "--adam-eps " + num(o.eps) + " must be > 0");
    } else if (f == "sgd") {
      o = OptimizerConfig{};
      o.type = "SGD";
      o.momentum = ctx.sgd_momentum.value_or(0.9);
      if (!ctx.sgd_momentum) defaults.push_back("--sgd-momentum 0.9");
      for (auto [given, flag] : {std::pair{ctx.beta1.has_value(), "--adam-beta1"}, std::pair{ctx.beta2.has_value(), "--adam-beta2"},
                                 std::pair{ctx.eps.has_value(), "--adam-eps"}})
        if (given) r.err("optimizer", std::string(flag) + " applies to --optimizer adam, not sgd; drop it");
      if (!(o.momentum >= 0 && o.momentum <= 1)) r.err("optimizer", "--sgd-momentum " + num(o.momentum) + " must be in [0, 1]");
    } else {
      r.err("optimizer", "--optimizer " + shorten(*ctx.optimizer) + ": without an \"optimizer\" block deepmpi builds "
                         "Megatron's adam or sgd; write one of those, or add an \"optimizer\" block");
    }
    o.weight_decay = ctx.weight_decay.value_or(0.01);
    if (!ctx.weight_decay) defaults.push_back("--weight-decay 0.01");
    if (!(o.weight_decay >= 0)) r.err("optimizer", "--weight-decay " + num(o.weight_decay) + " must be >= 0");
    if (ctx.lr) {
      o.lr = *ctx.lr;
      if (!(o.lr >= 0)) r.err("optimizer", "--lr " + num(o.lr) + " must be >= 0");
    } else {
      r.err("optimizer", "the file has no \"optimizer\" block, so the optimizer comes from the Megatron flags (" +
                             joined(opt_flags.empty() ? sched_flags : opt_flags) +
                             "), and Megatron has no default learning rate: pass --lr, or add an \"optimizer\" block");
    }
    opt_source = "optimizer " + o.type + " from Megatron flags (the ds_config has no \"optimizer\" block): " +
                 (opt_flags.empty() ? std::string("no optimizer flag") : joined(opt_flags)) +
                 (defaults.empty() ? std::string() : "; Megatron's defaults " + joined(defaults));
  } else {
    opt_source = "optimizer AdamW at DeepSpeed's defaults (lr 0.001, betas [0.9, 0.999], eps 1e-08, weight_decay 0): "
                 "the ds_config has no \"optimizer\" block and no optimizer flag was given";
    r.warnings.push_back("no \"optimizer\" block and no optimizer flag: training uses AdamW at DeepSpeed's defaults "
                         "(lr 0.001, betas [0.9, 0.999], eps 1e-08, weight_decay 0) with a constant lr; pass --lr "
                         "(and --lr-decay-style, --lr-warmup-iters, --weight-decay: Megatron's flags) or add an "
                         "\"optimizer\" block");
  }

  // ---- the schedule
  std::string sched_source;
  if (has_sched) {
    sched_source = "schedule from the ds_config's \"scheduler\" block";
    for (const auto& f : sched_flags)
      r.err("scheduler", "the file's \"scheduler\" block sets the schedule, so " + f.substr(0, f.find(' ')) +
                             " cannot: drop the flag, or remove the block to get Megatron's schedule from the flags");
  } else if (from_flags || !sched_flags.empty() || ctx.warmup_iters) {
    s = SchedulerConfig{};
    s.type = "Megatron";
    s.max_lr = o.lr;
    const int64_t train_iters = ctx.train_iters.value_or(ctx.default_train_iters);
    std::vector<std::string> used = sched_flags, defaults;
    if (ctx.warmup_iters) used.push_back("--lr-warmup-iters " + std::to_string(*ctx.warmup_iters));
    s.lr_decay_style = ctx.lr_decay_style.value_or("linear");
    if (!ctx.lr_decay_style) defaults.push_back("--lr-decay-style linear");
    static const std::vector<std::string> styles = {"constant", "linear", "cosine", "inverse-square-root", "WSD"};
    if (std::find(styles.begin(), styles.end(), s.lr_decay_style) == styles.end()) {
      std::string hint = suggest(s.lr_decay_style, styles);
      r.err("scheduler", "--lr-decay-style " + shorten(s.lr_decay_style) +
                             ": Megatron's styles are constant, linear, cosine, inverse-square-root and WSD" +
                             (hint.empty() ? std::string() : "; did you mean " + hint + "?"));
    }
    s.min_lr = ctx.min_lr.value_or(0.0);
    s.lr_warmup_init = ctx.lr_warmup_init.value_or(0.0);
    s.lr_decay_iters = ctx.lr_decay_iters.value_or(train_iters);
    if (!ctx.lr_decay_iters) defaults.push_back("--lr-decay-iters = --train-iters " + std::to_string(train_iters));
    if (ctx.lr_warmup_fraction && ctx.warmup_iters)
      r.err("scheduler", "give one of --lr-warmup-fraction and --lr-warmup-iters (Megatron accepts only one)");
    if (ctx.lr_warmup_fraction && !(*ctx.lr_warmup_fraction >= 0 && *ctx.lr_warmup_fraction <= 1))
      r.err("scheduler", "--lr-warmup-fraction " + num(*ctx.lr_warmup_fraction) + " must be in [0, 1]");
    s.lr_warmup_iters = ctx.lr_warmup_fraction ? *ctx.lr_warmup_fraction * static_cast<double>(s.lr_decay_iters)
                                               : static_cast<double>(ctx.warmup_iters.value_or(0));
    if (s.lr_decay_iters <= 0)
      r.err("scheduler", "Megatron's schedule needs its length: pass --train-iters or --lr-decay-iters (got " +
                             std::to_string(s.lr_decay_iters) + ")");
    else if (!(s.lr_warmup_iters < static_cast<double>(s.lr_decay_iters)))
      r.err("scheduler", "the warmup (" + num(s.lr_warmup_iters) + " iterations) must be shorter than the decay (" +
                             std::to_string(s.lr_decay_iters) +
                             " iterations, --lr-decay-iters, default --train-iters); lower --lr-warmup-iters");
    if (s.lr_warmup_iters < 0) r.err("scheduler", "--lr-warmup-iters must be >= 0");
    if (!(s.min_lr >= 0)) r.err("scheduler", "--min-lr " + num(s.min_lr) + " must be >= 0");
    if (s.min_lr > s.max_lr) r.err("scheduler", "--min-lr " + num(s.min_lr) + " exceeds the lr " + num(s.max_lr));
    if (s.lr_warmup_init > s.max_lr || s.lr_warmup_init < 0)
      r.err("scheduler", "--lr-warmup-init " + num(s.lr_warmup_init) + " must be in [0, lr " + num(s.max_lr) + "]");
    if (s.lr_decay_style == "WSD") {
      s.lr_wsd_decay_style = ctx.lr_wsd_decay_style.value_or("exponential");
      if (!ctx.lr_wsd_decay_style) defaults.push_back("--lr-wsd-decay-style exponential");
      static const std::vector<std::string> wsd = {"exponential", "linear", "cosine", "minus_sqrt"};
      if (std::find(wsd.begin(), wsd.end(), s.lr_wsd_decay_style) == wsd.end())
        r.err("scheduler", "--lr-wsd-decay-style " + shorten(s.lr_wsd_decay_style) +
                               ": Megatron's are exponential, linear, cosine and minus_sqrt");
      if (!ctx.lr_wsd_decay_iters) {
        r.err("scheduler", "--lr-decay-style WSD needs --lr-wsd-decay-iters (the length of the final decay)");
      } else {
        s.lr_wsd_decay_iters = *ctx.lr_wsd_decay_iters;
        if (s.lr_wsd_decay_iters < 1 || s.lr_wsd_decay_iters > s.lr_decay_iters)
          r.err("scheduler", "--lr-wsd-decay-iters " + std::to_string(s.lr_wsd_decay_iters) + " must be in [1, " +
                                 std::to_string(s.lr_decay_iters) + "] (the decay iterations)");
      }
    } else if (ctx.lr_wsd_decay_style || ctx.lr_wsd_decay_iters) {
      r.err("scheduler", "--lr-wsd-decay-style/--lr-wsd-decay-iters apply to --lr-decay-style WSD only; drop them");
    }
    // Megatron's weight-decay increment (arguments.py: constant takes --weight-decay; linear
    // and cosine need both ends, over the whole run)
    s.weight_decay_incr_style = ctx.weight_decay_incr_style.value_or("constant");
    if (s.weight_decay_incr_style == "constant") {
      if (ctx.start_weight_decay || ctx.end_weight_decay)
        r.err("scheduler", "--start-weight-decay/--end-weight-decay need --weight-decay-incr-style linear or cosine "
                           "(constant uses --weight-decay)");
      s.start_weight_decay = s.end_weight_decay = o.weight_decay;
    } else if (s.weight_decay_incr_style == "linear" || s.weight_decay_incr_style == "cosine") {
      if (!ctx.start_weight_decay || !ctx.end_weight_decay) {
        r.err("scheduler", "--weight-decay-incr-style " + s.weight_decay_incr_style +
                               " needs --start-weight-decay and --end-weight-decay");
      } else {
        s.start_weight_decay = *ctx.start_weight_decay, s.end_weight_decay = *ctx.end_weight_decay;
        if (!(s.start_weight_decay >= 0) || !(s.end_weight_decay >= s.start_weight_decay))
          r.err("scheduler", "Megatron needs 0 <= --start-weight-decay <= --end-weight-decay (got " +
                                 num(s.start_weight_decay) + " and " + num(s.end_weight_decay) + ")");
      }
      s.wd_incr_iters = train_iters;
      if (train_iters <= 0) r.err("scheduler", "--weight-decay-incr-style " + s.weight_decay_incr_style + " needs --train-iters");
      o.weight_decay = s.start_weight_decay;  // the value of the first step
    } else {
      r.err("scheduler", "--weight-decay-incr-style " + shorten(s.weight_decay_incr_style) +
                             ": Megatron's are constant, linear and cosine");
    }
    s.samples_per_iteration = c.train_batch_size > 0 ? c.train_batch_size : 1;
    sched_source = "Megatron's schedule (no \"scheduler\" block): " +
                   (used.empty() ? std::string("no schedule flag") : joined(used)) +
                   (defaults.empty() ? std::string() : "; defaults " + joined(defaults));
  } else {
    s.type.clear();
    sched_source = "a constant lr: no \"scheduler\" block and no schedule flag (as DeepSpeed without one)";
  }
  c.optimizer_source = opt_source + "; " + sched_source;
}

}  // namespace dmpi::config::detail
