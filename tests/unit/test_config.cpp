// ds_config: the batch triangle truth table, validation errors with paths and suggestions.
#include <gtest/gtest.h>

#include "src/config/ds_config.hpp"
#include "base/error.hpp"

using namespace dmpi;
using namespace dmpi::config;
using nlohmann::json;

namespace {
std::string error_of(const json& j, int dp = 1) {
  try {
    parse_ds_config(j, dp);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }
}  // namespace

TEST(BatchTriangle, DerivesLikeDeepSpeed) {
  struct Case {
    int64_t tbs, mbs, gas;
    int W;
    int64_t e_tbs, e_mbs, e_gas;
  };
  // the six input combinations with W = 4 (data-parallel size)
  const Case cases[] = {
      {64, 4, 4, 4, 64, 4, 4},  // all three
      {64, 4, 0, 4, 64, 4, 4},  // TBS + MBS -> GAS = TBS // MBS // W
      {64, 0, 4, 4, 64, 4, 4},  // TBS + GAS -> MBS = TBS // W // GAS
      {0, 4, 4, 4, 64, 4, 4},   // MBS + GAS -> TBS = MBS * GAS * W
      {64, 0, 0, 4, 64, 16, 1}, // TBS only -> GAS = 1, MBS = TBS // W
      {0, 4, 0, 4, 16, 4, 1},   // MBS only -> GAS = 1, TBS = MBS * W
  };
  for (const auto& c : cases) {
    int64_t t = c.tbs, m = c.mbs, g = c.gas;
    resolve_batch_triangle(t, m, g, c.W);
    EXPECT_EQ(t, c.e_tbs);
    EXPECT_EQ(m, c.e_mbs);
    EXPECT_EQ(g, c.e_gas);
  }
}

TEST(BatchTriangle, InconsistentInputsFailNamingAllFour) {
  // the same six combinations, inconsistent (floor division never silently rounds)
  const int64_t cases[][3] = {{65, 4, 4}, {66, 4, 0}, {66, 0, 4}, {0, 0, 4}, {3, 0, 0}, {0, 0, 0}};
  for (const auto& c : cases) {
    int64_t t = c[0], m = c[1], g = c[2];
    try {
      resolve_batch_triangle(t, m, g, 4);
      FAIL() << c[0] << " " << c[1] << " " << c[2];
    } catch (const Error& e) {
      std::string w = e.what();
      if (c[0] == 0 && c[1] == 0) {
        EXPECT_TRUE(has(w, "Either train_batch_size or train_micro_batch_size_per_gpu")) << w;
      } else {
        EXPECT_TRUE(has(w, "TBS") && has(w, "MBS") && has(w, "GAS") && has(w, "(W) = 4")) << w;
        EXPECT_TRUE(has(w, "Consistent choices")) << w;
      }
    }
  }
  // DeepSpeed's own regression case (2, 33, 17, 2): TBS=2 MBS=33 GAS=17 W=2
  int64_t t = 2, m = 33, g = 17;
  EXPECT_THROW(resolve_batch_triangle(t, m, g, 2), Error);
  // suggestion arithmetic: TBS 64, MBS 4, GAS 3, W 4 -> GAS = 4 keeps TBS and MBS
  t = 64, m = 4, g = 3;
  try {
    resolve_batch_triangle(t, m, g, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "GAS = 4 (keeping TBS and MBS)")) << e.what();
    EXPECT_TRUE(has(e.what(), "TBS = 48 (keeping MBS and GAS)")) << e.what();
  }
}

TEST(DsConfig, DefaultsAndValues) {
  auto c = parse_ds_config(json{{"train_micro_batch_size_per_gpu", 2}}, 1);
  EXPECT_EQ(c.train_batch_size, 2);
  EXPECT_EQ(c.grad_accum, 1);
  EXPECT_DOUBLE_EQ(c.gradient_clipping, 1.0);  // DeepSpeed >= 0.19.3
  EXPECT_EQ(c.optimizer.type, "AdamW");
  EXPECT_TRUE(c.optimizer.adam_w_mode);
  auto d = parse_ds_config(json::parse(R"({"train_batch_size": 1e1, "gradient_accumulation_steps": 5,
      "optimizer": {"type": "adam", "params": {"lr": 3e-4, "betas": [0.8, 0.9], "weight_decay": 0.01}},
      "scheduler": {"type": "WarmupDecayLR", "params": {"total_num_steps": 1e3, "warmup_num_steps": 10}}})"), 1);
  EXPECT_EQ(d.train_batch_size, 10);
  EXPECT_EQ(d.micro_batch, 2);
  EXPECT_EQ(d.optimizer.type, "Adam");
  EXPECT_TRUE(d.optimizer.adam_w_mode);  // "Adam" is AdamW unless adam_w_mode: false
  EXPECT_DOUBLE_EQ(d.optimizer.beta1, 0.8);
  EXPECT_EQ(d.scheduler.total_num_steps, 1000);
  auto e = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": "auto", "train_batch_size": 8})"), 2);
  EXPECT_EQ(e.micro_batch, 4);
}

TEST(DsConfig, UnknownKeysNamePathAndClosestKey) {
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1,
      "optimzer": {"type": "AdamW"},
      "zero_optimization": {"stage": 0, "stage3_prefetch_bucket_sise": 5e8},
      "scheduler": {"type": "WarmupLR", "params": {"warmup_num_step": 10}}})"));
  EXPECT_TRUE(has(w, "3 errors")) << w;
  EXPECT_TRUE(has(w, "optimzer: unknown key; did you mean 'optimizer'?")) << w;
  EXPECT_TRUE(has(w, "zero_optimization.stage3_prefetch_bucket_sise: unknown key; did you mean "
                     "'zero_optimization.stage3_prefetch_bucket_size'?")) << w;
  EXPECT_TRUE(has(w, "scheduler.params.warmup_num_step: unknown key; did you mean 'scheduler.params.warmup_num_steps'?")) << w;
}

// Values that size the work or the memory are bounded, with the bound in the message (issue 19:
// gradient_accumulation_steps 2^40 passed `config check` and step 1 never ended).
TEST(DsConfig, SizesOfWorkAreBounded) {
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1,
      "gradient_accumulation_steps": 1099511627776})"));
  EXPECT_TRUE(has(w, "gradient_accumulation_steps: value 1099511627776 out of range [1, 65536]")) << w;
  w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 100000, "gradient_accumulation_steps": 1})"));
  EXPECT_TRUE(has(w, "train_micro_batch_size_per_gpu: value 100000 out of range [1, 65536]")) << w;
  w = error_of(json::parse(R"({"train_batch_size": 4294967296})"));
  EXPECT_TRUE(has(w, "train_batch_size: value 4294967296 out of range [1, 2147483648]")) << w;
  EXPECT_EQ(parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 65536, "gradient_accumulation_steps": 65536})"),
                            1).grad_accum, 65536);
}

TEST(DsConfig, TypesRangesAndNotSupported) {
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 2.5, "gradient_clipping": "big",
      "fp16": {"enabled": true}, "zero_optimization": {"stage": 2}, "pipeline": {},
      "optimizer": {"type": "OneBitAdam"}, "steps_per_print": -3})"));
  EXPECT_TRUE(has(w, "train_micro_batch_size_per_gpu: expected an integer, got 2.5")) << w;
  EXPECT_TRUE(has(w, "gradient_clipping: expected a number, got \"big\"")) << w;
  EXPECT_FALSE(has(w, "fp16")) << w;  // valid: refused by `deepmpi train`, not the parser
  EXPECT_FALSE(has(w, "zero_optimization.stage")) << w;
  EXPECT_FALSE(has(w, "pipeline")) << w;
  // a 1-bit optimizer is valid, not implemented: listed with the errors, not counted as one
  EXPECT_TRUE(has(w, "\n  * not supported yet: optimizer.type = \"OneBitAdam\"")) << w;
  EXPECT_TRUE(has(w, "steps_per_print: value -3 out of range")) << w;
  EXPECT_TRUE(has(w, "3 errors")) << w;
  auto c = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 2, "fp16": {"enabled": true},
      "zero_optimization": {"stage": 2}, "pipeline": {"stages": 2, "activation_checkpoint_interval": 1}})"), 1);
  auto refused = unimplemented_for_training(c);
  ASSERT_EQ(refused.size(), 1u);  // ZeRO stage 2, fp16 and pipeline stages are implemented
  EXPECT_TRUE(has(refused[0], "not supported yet: pipeline.activation_checkpoint_interval > 0")) << refused[0];
  // data_types.grad_accum_dtype: fp32, or the parameters' dtype (null = that dtype)
  auto gad = [](const char* prec, const char* dtype) {
    json j = {{"train_micro_batch_size_per_gpu", 1}, {"data_types", {{"grad_accum_dtype", dtype}}}};
    if (std::string(prec) != "fp32") j[prec] = {{"enabled", true}};
    return unimplemented_for_training(parse_ds_config(j, 1));
  };
  for (const char* ok : {"fp32", "bf16"}) EXPECT_TRUE(gad("bf16", ok).empty()) << ok;
  for (const char* ok : {"fp32", "fp16"}) EXPECT_TRUE(gad("fp16", ok).empty()) << ok;
  EXPECT_TRUE(gad("fp32", "fp32").empty());
  auto bad = gad("bf16", "fp16");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_TRUE(has(bad[0], "data_types.grad_accum_dtype = \"fp16\" with bf16 parameters (write \"fp32\" or \"bf16\"")) << bad[0];
  bad = gad("fp32", "bf16");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_TRUE(has(bad[0], "with fp32 parameters")) << bad[0];
  std::string w2 = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 4}})"));
  EXPECT_TRUE(has(w2, "zero_optimization.stage: value 4 out of range [0, 3]")) << w2;
  std::string w3 = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "AdamW",
      "params": {"lr": "auto", "betas": [0.9]}}})"));
  EXPECT_TRUE(has(w3, "optimizer.params.lr: \"auto\" cannot be resolved: pass --lr")) << w3;
  EXPECT_TRUE(has(w3, "optimizer.params.betas: expected [beta1, beta2]")) << w3;
  std::string w4 = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 2,
      "train_batch_size": 3})"));
  EXPECT_TRUE(has(w4, "TBS == MBS * GAS * W")) << w4;
}

TEST(DsConfig, ResolvedContainsEveryValueInForce) {
  auto c = parse_ds_config(default_ds_config_json(), 1);
  json r = c.resolved();
  EXPECT_EQ(r["train_batch_size"], 4);
  EXPECT_EQ(r["optimizer"]["params"]["weight_decay"], 0.1);
  EXPECT_EQ(r["scheduler"]["params"]["warmup_max_lr"], 1e-3);
  EXPECT_EQ(r["zero_optimization"]["stage"], 0);
}

TEST(DsConfig, CommsLogger) {
  auto c = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 1,
      "comms_logger": {"enabled": true, "verbose": false, "prof_all": false, "prof_ops": ["all_reduce"], "debug": true}})"), 1);
  EXPECT_TRUE(c.comms_logger.enabled);
  EXPECT_FALSE(c.comms_logger.prof_all);
  EXPECT_EQ(c.comms_logger.prof_ops, std::vector<std::string>{"all_reduce"});
  auto d = parse_ds_config(json{{"train_micro_batch_size_per_gpu", 1}}, 1);
  EXPECT_FALSE(d.comms_logger.enabled);  // DeepSpeed's defaults
  EXPECT_TRUE(d.comms_logger.prof_all);
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1,
      "comms_logger": {"enabled": "yes", "prof_ops": ["allreduce"], "verbos": true}})"));
  EXPECT_TRUE(has(w, "comms_logger.enabled: expected true or false")) << w;
  EXPECT_TRUE(has(w, "comms_logger.prof_ops: unknown op \"allreduce\"; did you mean \"all_reduce\"?")) << w;
  EXPECT_TRUE(has(w, "comms_logger.verbos: unknown key; did you mean 'comms_logger.verbose'?")) << w;
}

TEST(DsConfig, OptimizersWithDeepSpeedDefaults) {
  auto opt = [](const char* body) { return parse_ds_config(json::parse(std::string(R"({"train_micro_batch_size_per_gpu": 1, "optimizer": )") + body + "}"), 1).optimizer; };
  auto sgd = opt(R"({"type": "sgd", "params": {"lr": 0.1, "momentum": 0.9, "nesterov": true}})");
  EXPECT_EQ(sgd.type, "SGD");
  EXPECT_DOUBLE_EQ(sgd.momentum, 0.9);
  auto ada = opt(R"({"type": "Adagrad"})");
  EXPECT_DOUBLE_EQ(ada.lr, 1e-2);   // torch's Adagrad defaults
  EXPECT_DOUBLE_EQ(ada.eps, 1e-10);
  auto lion = opt(R"({"type": "Lion", "params": {"betas": [0.95, 0.98]}})");
  EXPECT_DOUBLE_EQ(lion.lr, 1e-3);
  EXPECT_DOUBLE_EQ(lion.beta2, 0.98);
  auto lamb = opt(R"({"type": "LAMB", "params": {"max_coeff": 0.3, "min_coeff": 0.01}})");
  EXPECT_EQ(lamb.type, "Lamb");
  EXPECT_DOUBLE_EQ(lamb.max_coeff, 0.3);
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "SGD",
      "params": {"momentum": 0.9, "nesterov": true, "dampening": 0.1, "max_grad_norm": 1.0, "betas": [0.9, 0.99]}}})"));
  EXPECT_TRUE(has(w, "optimizer.params.lr: required by SGD")) << w;
  EXPECT_TRUE(has(w, "optimizer.params.nesterov: Nesterov momentum requires momentum > 0 and dampening = 0")) << w;
  EXPECT_TRUE(has(w, "optimizer.params.max_grad_norm: not an optimizer parameter in DeepSpeed; use the top-level \"gradient_clipping\"")) << w;
  EXPECT_TRUE(has(w, "optimizer.params.betas: unknown key")) << w;  // SGD has no betas
}

TEST(DsConfig, SchedulersWithDeepSpeedDefaults) {
  auto sch = [](const char* body) { return parse_ds_config(json::parse(std::string(R"({"train_micro_batch_size_per_gpu": 1, "scheduler": )") + body + "}"), 1).scheduler; };
  auto cos = sch(R"({"type": "WarmupCosineLR", "params": {"total_num_steps": 1e4}})");
  EXPECT_EQ(cos.total_num_steps, 10000);
  EXPECT_EQ(cos.warmup_num_steps, 1000);
  EXPECT_DOUBLE_EQ(cos.cos_min_ratio, 1e-4);
  EXPECT_EQ(cos.warmup_type, "log");
  auto oc = sch(R"({"type": "OneCycle", "params": {"cycle_min_lr": 1e-5, "cycle_max_lr": 1e-3}})");
  EXPECT_DOUBLE_EQ(oc.cycle_first_step_size, 2000);
  EXPECT_DOUBLE_EQ(oc.cycle_min_mom, 0.8);
  EXPECT_DOUBLE_EQ(oc.cycle_max_mom, 0.9);
  EXPECT_TRUE(oc.cycle_momentum);
  auto rt = sch(R"({"type": "LRRangeTest"})");
  EXPECT_DOUBLE_EQ(rt.lr_range_test_min_lr, 1e-3);
  EXPECT_DOUBLE_EQ(rt.lr_range_test_step_size, 2000);
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "scheduler": {"type": "OneCycle",
      "params": {"cycle_max_lr": 1e-3, "cycle_first_stair_count": 2, "warmup_num_steps": 5}}})"));
  EXPECT_TRUE(has(w, "scheduler.params.cycle_min_lr: required by OneCycle")) << w;
  EXPECT_TRUE(has(w, "not supported yet: scheduler.params.cycle_first_stair_count = 2")) << w;
  EXPECT_TRUE(has(w, "scheduler.params.warmup_num_steps: unknown key")) << w;
  std::string w2 = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "scheduler": {"type": "WarmupCosineLR"}})"));
  EXPECT_TRUE(has(w2, "scheduler.params.total_num_steps: required by WarmupCosineLR")) << w2;
  std::string w3 = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "scheduler": {"type": "OneCylce"}})"));
  EXPECT_TRUE(has(w3, "did you mean \"OneCycle\"")) << w3;
}

TEST(DsConfig, AutoResolvedFromFlagsLikeTheHfTrainer) {
  const char* hf = R"({
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "fp16": {"enabled": "auto"}, "bf16": {"enabled": "auto"},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                       "warmup_num_steps": "auto", "total_num_steps": "auto"}}})";
  AutoContext ctx;
  ctx.micro_batch = 4, ctx.global_batch = 64, ctx.clip_grad = 0.5, ctx.lr = 3e-4, ctx.beta1 = 0.9, ctx.beta2 = 0.95;
  ctx.eps = 1e-6, ctx.weight_decay = 0.1, ctx.warmup_iters = 100, ctx.train_iters = 5000;
  auto c = parse_ds_config(json::parse(hf), 4, ctx);
  EXPECT_EQ(c.micro_batch, 4);
  EXPECT_EQ(c.train_batch_size, 64);
  EXPECT_EQ(c.grad_accum, 4);  // derived: 64 / (4 x 4)
  EXPECT_DOUBLE_EQ(c.gradient_clipping, 0.5);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(c.scheduler.warmup_min_lr, 0.0);  // HF writes 0
  EXPECT_DOUBLE_EQ(c.scheduler.warmup_max_lr, 3e-4);
  EXPECT_EQ(c.scheduler.warmup_num_steps, 100);
  EXPECT_EQ(c.scheduler.total_num_steps, 5000);
  // batch "auto" without flags: derived by the triangle
  auto d = parse_ds_config(json::parse(R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": "auto",
      "gradient_accumulation_steps": "auto"})"), 2);
  EXPECT_EQ(d.micro_batch, 16);
  EXPECT_EQ(d.grad_accum, 1);
  // unresolvable: every error names its flag, each reported once
  std::string w = error_of(json::parse(hf), 4);
  EXPECT_TRUE(has(w, "gradient_clipping: \"auto\" cannot be resolved: pass --clip-grad")) << w;
  EXPECT_TRUE(has(w, "optimizer.params.lr: \"auto\" cannot be resolved: pass --lr")) << w;
  EXPECT_TRUE(has(w, "optimizer.params.betas: \"auto\" cannot be resolved: pass --adam-beta1 and --adam-beta2")) << w;
  EXPECT_TRUE(has(w, "scheduler.params.total_num_steps: \"auto\" cannot be resolved: pass --train-iters")) << w;
  EXPECT_EQ(w.find("gradient_clipping", w.find("gradient_clipping") + 1), std::string::npos) << w;
  // explicit values that contradict a flag (HF: "mismatch TrainingArguments")
  AutoContext lr_only;
  lr_only.lr = 1e-3;
  std::string m = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 2,
      "optimizer": {"type": "AdamW", "params": {"lr": 2e-4}}})"), 1);
  EXPECT_EQ(m, "");  // no flag: no conflict
  try {
    parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 2e-4}}})"), 1, lr_only);
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "optimizer.params.lr = 0.0002 disagrees with --lr 0.001")) << e.what();
  }
}

TEST(DsConfig, ZeroBlockTypedWithAliasesDeprecationsAndAuto) {
  auto z = [](const char* body, AutoContext ctx = {}) {
    return parse_ds_config(json::parse(std::string(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": )") + body + "}"), 1, ctx);
  };
  // defaults (DeepSpeed's newest release)
  auto d = z(R"({"stage": 2})").zero;
  EXPECT_EQ(d.reduce_bucket_size, 500000000);
  EXPECT_FALSE(d.overlap());             // None -> false below stage 3
  EXPECT_TRUE(z(R"({"stage": 3})").zero.overlap());  // ... and true at stage 3
  EXPECT_EQ(d.prefetch_bucket_size, 50000000);
  EXPECT_EQ(d.param_persistence_threshold, 100000);
  EXPECT_TRUE(d.offload_optimizer.pin_memory);  // true since 0.19.5
  // stage3_* aliases and field names are the same setting; 5e8-style integers
  auto a = z(R"({"stage": 3, "stage3_prefetch_bucket_size": 5e7, "param_persistence_threshold": 1e4,
                 "stage3_gather_16bit_weights_on_model_save": true, "overlap_comm": false,
                 "offload_optimizer": {"device": "nvme", "nvme_path": "/local"}})").zero;
  EXPECT_EQ(a.prefetch_bucket_size, 50000000);
  EXPECT_EQ(a.param_persistence_threshold, 10000);
  EXPECT_TRUE(a.gather_16bit_weights_on_model_save);
  EXPECT_FALSE(a.overlap());
  EXPECT_EQ(a.offload_optimizer.buffer_count, 4);
  // deprecations map to the current key with a warning
  auto dep = z(R"({"stage": 2, "cpu_offload": true, "stage3_gather_fp16_weights_on_model_save": true})");
  EXPECT_EQ(dep.zero.offload_optimizer.device, "cpu");
  EXPECT_TRUE(dep.zero.gather_16bit_weights_on_model_save);
  ASSERT_GE(dep.warnings.size(), 2u);
  EXPECT_TRUE(has(dep.warnings[0] + dep.warnings[1], "cpu_offload is deprecated: use zero_optimization.offload_optimizer"));
  // HF's "auto" for bucket sizes from the hidden size; other "auto" in the block -> default
  AutoContext ctx;
  ctx.hidden = 768;
  auto h = z(R"({"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                 "stage3_param_persistence_threshold": "auto", "sub_group_size": "auto"})", ctx).zero;
  EXPECT_EQ(h.reduce_bucket_size, 768 * 768);
  EXPECT_EQ(h.prefetch_bucket_size, static_cast<int64_t>(0.9 * 768 * 768));
  EXPECT_EQ(h.param_persistence_threshold, 7680);
  EXPECT_EQ(h.sub_group_size, 1000000000);
  // errors: alias + field, deprecated + replacement, bad offload, typo with suggestion, zero++ not yet
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3,
      "stage3_max_live_parameters": 1e9, "max_live_parameters": 1e8, "cpu_offload": true,
      "offload_optimizer": {"device": "gpu"}, "offload_param": true, "reduce_bucket_sise": 5,
      "zero_quantized_weights": true}})"));
  EXPECT_TRUE(has(w, "zero_optimization.stage3_max_live_parameters: given together with 'max_live_parameters'")) << w;
  EXPECT_TRUE(has(w, "zero_optimization.cpu_offload: deprecated, and given together with its replacement 'offload_optimizer'")) << w;
  EXPECT_TRUE(has(w, "zero_optimization.offload_optimizer.device: expected \"none\", \"cpu\" or \"nvme\", got \"gpu\"")) << w;
  EXPECT_TRUE(has(w, "zero_optimization.offload_param: expected an object {\"device\": \"cpu\", ...}, got true")) << w;
  EXPECT_TRUE(has(w, "zero_optimization.reduce_bucket_sise: unknown key; did you mean 'zero_optimization.reduce_bucket_size'?")) << w;
  EXPECT_TRUE(has(w, "not supported yet: zero_optimization.zero_quantized_weights")) << w;
  // valid for the parser; `deepmpi train` refuses what it does not implement
  // offload: "cpu" is where a host-only build keeps the states (accepted); "nvme" spills the
  // optimizer states at stages 1-3; parameter offload to NVMe at stage 3 goes with it
  EXPECT_TRUE(unimplemented_for_training(z(R"({"stage": 2, "offload_optimizer": {"device": "cpu"}})")).empty());
  for (int st : {1, 2, 3})
    EXPECT_TRUE(unimplemented_for_training(z((R"({"stage": )" + std::to_string(st) +
                                              R"(, "offload_optimizer": {"device": "nvme", "nvme_path": "/local"}})")
                                                 .c_str()))
                    .empty())
        << st;
  auto u0 = unimplemented_for_training(z(R"({"stage": 0, "offload_optimizer": {"device": "nvme", "nvme_path": "/l"}})"));
  ASSERT_EQ(u0.size(), 1u);
  EXPECT_TRUE(has(u0[0], "offload_optimizer.device = \"nvme\" at stage 0 (the spilled states are ZeRO's partitions): "
                         "set zero_optimization.stage to 1, 2 or 3")) << u0[0];
  auto s2 = z(R"({"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/local"}})");
  auto u = unimplemented_for_training(s2);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_TRUE(has(u[0], "not supported yet: zero_optimization.offload_param.device = \"nvme\" with "
                        "offload_optimizer.device = \"none\" (the parameter partitions are read from the spilled fp32 "
                        "masters): set offload_optimizer.device to \"nvme\" as well")) << u[0];
  EXPECT_TRUE(unimplemented_for_training(z(R"({"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/l"},
                                               "offload_optimizer": {"device": "nvme", "nvme_path": "/l"}})"))
                  .empty());
  for (const char* st : {R"({"stage": 0})", R"({"stage": 1})", R"({"stage": 2})", R"({"stage": 3})"})
    EXPECT_TRUE(unimplemented_for_training(z(st)).empty()) << st;
}

TEST(DsConfig, BlockRulesBeyondTheCorpus) {
  // "auto" inside DeepSpeed's pydantic blocks means the default; fp16.enabled "auto" follows --fp16.
  AutoContext ctx;
  ctx.fp16 = true;
  auto c = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 1,
      "fp16": {"enabled": "auto", "loss_scale_window": "auto", "hysteresis": 4},
      "tensorboard": {"enabled": false, "job_name": "auto"}})"), 1, ctx);
  EXPECT_TRUE(c.fp16.enabled);
  EXPECT_EQ(c.fp16.loss_scale_window, 1000);
  EXPECT_EQ(c.fp16.hysteresis, 4);
  EXPECT_EQ(c.tensorboard.job_name, "DeepSpeedJobName");
  // the docs' aio.thread_count is read as intra_op_parallelism, with a warning
  auto a = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "aio": {"thread_count": 4}})"), 1);
  EXPECT_EQ(a.aio.intra_op_parallelism, 4);
  ASSERT_FALSE(a.warnings.empty());
  EXPECT_TRUE(has(a.warnings[0], "aio.thread_count")) << a.warnings[0];
  // dynamic scaling needs min_loss_scale > 0; a static scale does not
  std::string w = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": true, "min_loss_scale": 0}})"));
  EXPECT_TRUE(has(w, "fp16.min_loss_scale: must be > 0 with a dynamic loss scale")) << w;
  EXPECT_EQ(error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "fp16": {"enabled": true, "loss_scale": 128, "min_loss_scale": 0}})")), "");
  std::string w2 = error_of(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true, "bf16_optimizer_states": true}})"));
  EXPECT_TRUE(has(w2, "bf16.bf16_optimizer_states: needs bf16.bf16_master_weights_and_grads: true")) << w2;
  // a choice is matched case-insensitively and stored in DeepSpeed's spelling
  auto k = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "checkpoint": {"tag_validation": "IGNORE"}})"), 1);
  EXPECT_EQ(k.checkpoint.tag_validation, "Ignore");
  // nullable fields: null is accepted and printed as null
  auto n = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 1, "communication_data_type": null,
      "flops_profiler": {"output_file": null}})"), 1);
  EXPECT_TRUE(n.resolved()["communication_data_type"].is_null());
  EXPECT_TRUE(n.resolved()["flops_profiler"]["output_file"].is_null());
  // add-ons: accepted disabled, valid but not implemented otherwise
  auto el = unimplemented_for_training(parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 1,
      "elasticity": {"enabled": true}})"), 1));
  ASSERT_EQ(el.size(), 1u);
  EXPECT_TRUE(has(el[0], "not supported yet: elasticity.enabled = true")) << el[0];
}

// ---- issue 18: what real users' ds_config files need --------------------------------------

namespace {
ConfigCheck check(const char* text, int dp = 1, AutoContext ctx = {}) { return check_ds_config(json::parse(text), dp, ctx); }
std::string lines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}
}  // namespace

TEST(DsConfigLenient, UnknownTopLevelKeysAreIgnoredAsDeepSpeedDoes) {
  const char* text = R"({"train_micro_batch_size_per_gpu": 2, "_comment": "x", "log": {"level": "info"},
                         "cuda_visible_devices": 0, "fp8": {"enabled": false}})";
  auto c = check(text);
  EXPECT_TRUE(c.errors.empty()) << lines(c.errors);
  const std::string w = lines(c.warnings);
  EXPECT_TRUE(has(w, "_comment: unknown top-level key; ignored, as DeepSpeed does (--strict makes it an error)")) << w;
  EXPECT_TRUE(has(w, "log: unknown top-level key; ignored, as DeepSpeed does")) << w;
  EXPECT_TRUE(has(w, "cuda_visible_devices: not a DeepSpeed key; ignored, as DeepSpeed does (select devices with")) << w;
  EXPECT_TRUE(has(w, "fp8: not a DeepSpeed key; ignored, as DeepSpeed does")) << w;
  EXPECT_FALSE(has(w, "moe")) << w;  // "log" is no near-miss of "moe"
  // --strict: every unknown key is an error, still never suggesting "moe" for "log"
  AutoContext strict;
  strict.strict = true;
  auto s = check(text, 1, strict);
  const std::string e = lines(s.errors);
  EXPECT_EQ(s.errors.size(), 4u) << e;
  EXPECT_TRUE(has(e, "_comment: unknown key (--strict makes unknown top-level keys errors)")) << e;
  EXPECT_TRUE(has(e, "log: unknown key (--strict")) << e;
  EXPECT_TRUE(has(e, "cuda_visible_devices: not a DeepSpeed key (--strict")) << e;
  EXPECT_FALSE(has(e, "moe")) << e;
  // inside a block unknown keys stay errors (DeepSpeed's pydantic blocks forbid them)
  EXPECT_TRUE(has(lines(check(R"({"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stge": 1}})").errors),
                  "zero_optimization.stge: unknown key; did you mean 'zero_optimization.stage'?"));
}

TEST(DsConfigLenient, NearMissesOfRealKeysStayErrors) {
  for (auto [key, real] : {std::pair{"gradient_acumulation_steps", "gradient_accumulation_steps"},
                           std::pair{"optimzer", "optimizer"}, std::pair{"Train_Batch_Size", "train_batch_size"},
                           std::pair{"zero-optimization", "zero_optimization"}, std::pair{"fp61", "fp16"},
                           std::pair{"gradient_clipping ", "gradient_clipping"}}) {
    json j = {{"train_micro_batch_size_per_gpu", 2}, {key, 1}};
    auto c = check_ds_config(j, 1);
    ASSERT_EQ(c.errors.size(), 1u) << key << ": " << lines(c.errors) << lines(c.warnings);
    EXPECT_TRUE(has(c.errors[0], std::string(key) + ": unknown key; did you mean '" + real + "'?")) << c.errors[0];
  }
}

TEST(DsConfigLenient, KeysAtValuesThatAskForNothingAreAccepted) {
  auto c = check(R"({"train_micro_batch_size_per_gpu": 2,
      "zero_optimization": {"stage": 3, "memory_efficient_linear": false, "zero_hpz_partition_size": 1,
                            "zero_quantized_weights": false, "zero_quantized_gradients": false,
                            "zero_quantized_nontrainable_weights": false, "mics_shard_size": -1,
                            "stage3_use_all_reduce_for_fetch_params": false, "leaf_module": {"classes": ["X"]}},
      "compile": {"deepcompile": false, "offload_activation": true},
      "compression_training": {"sparse_pruning": {"shared_parameters": {"enabled": false}}, "layer_reduction": {"enabled": false}},
      "curriculum_learning": {"enabled": false}})");
  EXPECT_TRUE(c.errors.empty()) << lines(c.errors);
  EXPECT_TRUE(c.unimplemented.empty()) << lines(c.unimplemented);
  const std::string n = lines(c.notes);
  for (const char* k : {"memory_efficient_linear = false", "zero_hpz_partition_size = 1", "zero_quantized_weights = false",
                        "zero_quantized_gradients = false", "mics_shard_size = -1", "use_all_reduce_for_fetch_params = false",
                        "compile: DeepCompile is off", "compression_training: every technique is off"})
    EXPECT_TRUE(has(n, k)) << k << " in\n" << n;
  EXPECT_TRUE(check(R"({"train_micro_batch_size_per_gpu": 2, "compile": {}})").unimplemented.empty());
  // the same keys asking for something: valid, not implemented (one list), never an error
  auto u = check(R"({"train_micro_batch_size_per_gpu": 2,
      "zero_optimization": {"stage": 3, "zero_hpz_partition_size": 8, "zero_quantized_weights": true}})");
  EXPECT_TRUE(u.errors.empty()) << lines(u.errors);
  ASSERT_EQ(u.unimplemented.size(), 2u) << lines(u.unimplemented);
  EXPECT_TRUE(has(u.unimplemented[0], "not supported yet: zero_optimization.zero_hpz_partition_size = 8 (ZeRO++ hierarchical "
                                      "partitioning (hpZ) is not implemented; remove the key or write 1)")) << u.unimplemented[0];
  EXPECT_TRUE(has(u.unimplemented[1], "zero_optimization.zero_quantized_weights = true")) << u.unimplemented[1];
  // a wrong type is still an error
  EXPECT_TRUE(has(lines(check(R"({"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"memory_efficient_linear": "no"}})").errors),
                  "zero_optimization.memory_efficient_linear: expected true or false"));
}

TEST(DsConfigLenient, NotImplementedIsOneListWithAdvicePerBlock) {
  auto c = check(R"({"train_micro_batch_size_per_gpu": 2,
      "zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/local"}},
      "tensor_parallel": {"autotp_size": 4},
      "optimizer": {"type": "OneBitAdam", "params": {"lr": 1e-4}},
      "curriculum_learning": {"enabled": true},
      "compile": {"deepcompile": true},
      "compression_training": {"weight_quantization": {"shared_parameters": {"enabled": true}}},
      "sparse_attention": {"mode": "fixed"}})");
  EXPECT_TRUE(c.errors.empty()) << lines(c.errors);
  const std::vector<std::string> want = {
      "not supported yet: compile.deepcompile = true (DeepCompile is not implemented; set \"deepcompile\": false or remove "
      "the block (compile has no \"enabled\" key))",
      "not supported yet: compression_training.weight_quantization.shared_parameters.enabled = true (compression training is "
      "not implemented; set it to false or remove the block (compression_training has no top-level \"enabled\"",
      "not supported yet: curriculum_learning.enabled = true (curriculum learning is not implemented; set \"enabled\": false "
      "or remove the block)",
      "not supported yet: optimizer.type = \"OneBitAdam\"",
      "not supported yet: sparse_attention = {\"mode\":\"fixed\"} (sparse attention is not implemented; remove the block",
      "not supported yet: zero_optimization.offload_param.device = \"nvme\" with offload_optimizer.device = \"none\""};
  ASSERT_EQ(c.unimplemented.size(), want.size()) << lines(c.unimplemented);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(has(c.unimplemented[i], want[i])) << i << ": " << c.unimplemented[i];
  EXPECT_EQ(c.unimplemented, unimplemented_for_training(c.config));  // what `deepmpi train` refuses
  // no "set enabled: false" advice for the blocks without a top-level switch
  EXPECT_FALSE(has(c.unimplemented[0] + c.unimplemented[1] + c.unimplemented[4], "set \"enabled\": false")) << lines(c.unimplemented);
}

TEST(DsConfigLenient, AutoWhereDeepSpeedUsesTheDefault) {
  const char* text = R"({"train_micro_batch_size_per_gpu": 2,
      "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                            "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": "auto",
                            "offload_param": {"device": "none", "buffer_size": "auto", "max_in_cpu": "auto"},
                            "offload_optimizer": {"device": "none", "buffer_count": "auto"}}})";
  auto c = check(text);  // the model width is unknown: DeepSpeed's defaults, with a warning each
  EXPECT_TRUE(c.errors.empty()) << lines(c.errors);
  EXPECT_EQ(c.config.zero.offload_param.buffer_size, 100000000);
  EXPECT_EQ(c.config.zero.offload_param.max_in_cpu, 1000000000);
  EXPECT_EQ(c.config.zero.offload_optimizer.buffer_count, 4);
  EXPECT_EQ(c.config.zero.reduce_bucket_size, 500000000);
  EXPECT_EQ(c.config.zero.prefetch_bucket_size, 50000000);
  EXPECT_EQ(c.config.zero.param_persistence_threshold, 100000);
  EXPECT_EQ(c.config.zero.max_live_parameters, 1000000000);
  EXPECT_TRUE(has(lines(c.warnings), "zero_optimization.reduce_bucket_size = \"auto\": the model width is not known here, so "
                                     "DeepSpeed's default applies")) << lines(c.warnings);
  AutoContext ctx;
  ctx.hidden = 512;  // the model known (deepmpi train: the preset's width): HF's rule
  auto h = check(text, 1, ctx);
  EXPECT_EQ(h.config.zero.reduce_bucket_size, 512 * 512);
  EXPECT_EQ(h.config.zero.prefetch_bucket_size, static_cast<int64_t>(0.9 * 512 * 512));
  EXPECT_EQ(h.config.zero.param_persistence_threshold, 5120);
  EXPECT_FALSE(has(lines(h.warnings), "model width")) << lines(h.warnings);
}

TEST(DsConfigOnePass, EveryProblemAtOnceOrderedByPathEachOnce) {
  // batch errors do not wait for "auto" errors, and the not-implemented list comes with them
  auto c = check(R"({"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4, "gradient_clipping": "auto",
      "zero_optimization": {"stage": 0, "offload_optimizer": {"device": "nvme", "nvme_path": "/local"}},
      "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_num_steps": 5, "total_num_steps": "auto"}},
      "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}})");
  ASSERT_EQ(c.errors.size(), 4u) << lines(c.errors);
  EXPECT_TRUE(has(c.errors[0], "gradient_clipping: \"auto\" cannot be resolved: pass --clip-grad")) << c.errors[0];
  EXPECT_TRUE(has(c.errors[1], "optimizer.params.lr: \"auto\" cannot be resolved: pass --lr")) << c.errors[1];
  EXPECT_TRUE(has(c.errors[2], "scheduler.params.total_num_steps: \"auto\" cannot be resolved: pass --train-iters")) << c.errors[2];
  EXPECT_TRUE(has(c.errors[3], "train_batch_size: batch sizes are inconsistent")) << c.errors[3];
  ASSERT_EQ(c.unimplemented.size(), 1u);
  EXPECT_TRUE(has(c.unimplemented[0], "offload_optimizer.device = \"nvme\" at stage 0"));
  // the unresolved scheduler key is reported once (not again as "required")
  EXPECT_FALSE(has(lines(c.errors), "required by WarmupDecayLR")) << lines(c.errors);
  // the exception's text: errors "  - ", then the not-implemented list "  * "
  const std::string w = problems_text(c);
  EXPECT_TRUE(has(w, "4 errors in the ds_config:\n  - gradient_clipping")) << w;
  EXPECT_TRUE(has(w, "\n  * not supported: zero_optimization.offload_optimizer.device")) << w;
}

TEST(DsConfigOnePass, BatchMessagesNameTheFlagsAndNeverSuggestZero) {
  // "auto" batch sizes with no flag: the flags are named, not DeepSpeed's sentence
  auto a = check(R"({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"})");
  ASSERT_EQ(a.errors.size(), 1u) << lines(a.errors);
  EXPECT_TRUE(has(a.errors[0], "pass --micro-batch-size N (and --global-batch-size N")) << a.errors[0];
  EXPECT_FALSE(has(a.errors[0], "Either train_batch_size")) << a.errors[0];
  // the flags also set keys the file leaves out (Megatron's --micro-batch-size, --global-batch-size)
  AutoContext f;
  f.micro_batch = 2, f.global_batch = 16;
  auto b = check(R"({"zero_optimization": {"stage": 1}})", 2, f);
  EXPECT_TRUE(b.errors.empty()) << lines(b.errors);
  EXPECT_EQ(b.config.grad_accum, 4);
  // a TBS below MBS x W: GAS would be 0; no suggestion holds a 0
  for (auto [tbs, mbs, gas, W] : {std::tuple{2, 4, 0, 1}, std::tuple{3, 0, 0, 4}, std::tuple{6, 4, 0, 2}, std::tuple{5, 0, 2, 4},
                                  std::tuple{7, 2, 3, 1}}) {
    int64_t t = tbs, m = mbs, g = gas;
    try {
      resolve_batch_triangle(t, m, g, W);
      ADD_FAILURE() << tbs << " " << mbs << " " << gas << " " << W;
    } catch (const Error& e) {
      const std::string w = e.what();
      for (const char* zero : {"GAS = 0", "MBS = 0", "TBS = 0"}) EXPECT_FALSE(has(w, zero)) << w;
      EXPECT_TRUE(has(w, "Consistent choices: TBS = ")) << w;
    }
  }
  int64_t t = 2, m = 4, g = 0;
  try {
    resolve_batch_triangle(t, m, g, 1);
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "gradient_accumulation_steps (GAS) derived as TBS // MBS // W, which is below 1")) << e.what();
    EXPECT_TRUE(has(e.what(), "TBS = 4 (MBS = 4, GAS = 1), or MBS = 2 with GAS = 1 (keeping TBS)")) << e.what();
  }
}

TEST(DsConfigMegatron, NoOptimizerBlockBuildsTheOptimizerFromTheFlags) {
  AutoContext ctx;
  ctx.lr = 3e-4, ctx.warmup_iters = 100, ctx.weight_decay = 0.1, ctx.train_iters = 1000;
  auto c = parse_ds_config(json{{"train_micro_batch_size_per_gpu", 4}}, 2, ctx);
  EXPECT_EQ(c.optimizer.type, "AdamW");  // Megatron's adam decouples weight decay
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(c.optimizer.beta1, 0.9);  // Megatron's defaults
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.999);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-8);
  EXPECT_EQ(c.scheduler.type, "Megatron");
  EXPECT_EQ(c.scheduler.lr_decay_style, "linear");  // Megatron's default style
  EXPECT_DOUBLE_EQ(c.scheduler.lr_warmup_iters, 100);
  EXPECT_EQ(c.scheduler.lr_decay_iters, 1000);      // --lr-decay-iters defaults to --train-iters
  EXPECT_DOUBLE_EQ(c.scheduler.min_lr, 0.0);
  EXPECT_EQ(c.scheduler.samples_per_iteration, 8);  // the global batch
  EXPECT_TRUE(has(c.optimizer_source, "optimizer AdamW from Megatron flags (the ds_config has no \"optimizer\" block): "
                                      "--lr 0.0003, --weight-decay 0.1; Megatron's defaults --adam-beta1 0.9")) << c.optimizer_source;
  EXPECT_TRUE(has(c.optimizer_source, "Megatron's schedule (no \"scheduler\" block): --lr-warmup-iters 100; defaults "
                                      "--lr-decay-style linear, --lr-decay-iters = --train-iters 1000")) << c.optimizer_source;
  // sgd, and the weight-decay increment
  AutoContext s;
  s.optimizer = "sgd", s.lr = 0.1, s.train_iters = 50, s.weight_decay_incr_style = "linear", s.start_weight_decay = 0.0,
  s.end_weight_decay = 0.05;
  auto d = parse_ds_config(json{{"train_micro_batch_size_per_gpu", 4}}, 1, s);
  EXPECT_EQ(d.optimizer.type, "SGD");
  EXPECT_DOUBLE_EQ(d.optimizer.momentum, 0.9);  // Megatron's --sgd-momentum default
  EXPECT_EQ(d.scheduler.weight_decay_incr_style, "linear");
  EXPECT_EQ(d.scheduler.wd_incr_iters, 50);
  EXPECT_DOUBLE_EQ(d.scheduler.end_weight_decay, 0.05);
}

TEST(DsConfigMegatron, NeitherBlockNorFlagsIsNeverSilent) {
  auto c = parse_ds_config(json{{"train_micro_batch_size_per_gpu", 4}}, 1);
  EXPECT_EQ(c.optimizer.type, "AdamW");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-3);
  EXPECT_TRUE(c.scheduler.type.empty());
  EXPECT_TRUE(has(lines(c.warnings), "no \"optimizer\" block and no optimizer flag: training uses AdamW at DeepSpeed's "
                                     "defaults (lr 0.001")) << lines(c.warnings);
  EXPECT_TRUE(has(c.optimizer_source, "optimizer AdamW at DeepSpeed's defaults")) << c.optimizer_source;
  EXPECT_TRUE(has(c.optimizer_source, "a constant lr: no \"scheduler\" block and no schedule flag")) << c.optimizer_source;
  // a block: its source says so; a schedule flag with a block and no scheduler: Megatron's schedule at the block's lr
  AutoContext w;
  w.warmup_iters = 10, w.lr_decay_style = "cosine", w.train_iters = 100;
  auto b = parse_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 4, "optimizer": {"type": "Adam", "params": {"lr": 2e-4}}})"), 1, w);
  EXPECT_EQ(b.scheduler.type, "Megatron");
  EXPECT_DOUBLE_EQ(b.scheduler.max_lr, 2e-4);
  EXPECT_TRUE(has(b.optimizer_source, "optimizer Adam from the ds_config's \"optimizer\" block; Megatron's schedule")) << b.optimizer_source;
}

TEST(DsConfigMegatron, FlagMistakesAreErrorsNamingTheFlag) {
  auto err = [](const char* text, AutoContext ctx) { return lines(check_ds_config(json::parse(text), 1, ctx).errors); };
  const char* bare = R"({"train_micro_batch_size_per_gpu": 2})";
  AutoContext a;
  a.weight_decay = 0.1;  // the optimizer from flags, but no --lr: Megatron has no default
  EXPECT_TRUE(has(err(bare, a), "optimizer: the file has no \"optimizer\" block, so the optimizer comes from the Megatron "
                                "flags (--weight-decay 0.1), and Megatron has no default learning rate: pass --lr")) << err(bare, a);
  AutoContext b;
  b.lr = 1e-3, b.lr_warmup_fraction = 0.1, b.warmup_iters = 10, b.train_iters = 100;
  EXPECT_TRUE(has(err(bare, b), "give one of --lr-warmup-fraction and --lr-warmup-iters")) << err(bare, b);
  AutoContext c;
  c.lr = 1e-3, c.lr_decay_style = "WSD", c.train_iters = 100;
  EXPECT_TRUE(has(err(bare, c), "--lr-decay-style WSD needs --lr-wsd-decay-iters")) << err(bare, c);
  AutoContext d;
  d.lr = 1e-3, d.weight_decay_incr_style = "linear", d.train_iters = 100;
  EXPECT_TRUE(has(err(bare, d), "--weight-decay-incr-style linear needs --start-weight-decay and --end-weight-decay")) << err(bare, d);
  AutoContext e;
  e.lr = 1e-3, e.warmup_iters = 100, e.train_iters = 100;
  EXPECT_TRUE(has(err(bare, e), "the warmup (100 iterations) must be shorter than the decay (100 iterations")) << err(bare, e);
  AutoContext f;
  f.lr = 1e-3, f.min_lr = 1e-2, f.train_iters = 100;
  EXPECT_TRUE(has(err(bare, f), "--min-lr 0.01 exceeds the lr 0.001")) << err(bare, f);
  AutoContext g;
  g.lr = 1e-3, g.lr_decay_style = "cosin", g.train_iters = 100;
  EXPECT_TRUE(has(err(bare, g), "did you mean cosine?")) << err(bare, g);
  AutoContext h;
  h.lr = 1e-3;  // the decay needs a length: no --train-iters and no default run length
  EXPECT_TRUE(has(err(bare, h), "pass --train-iters or --lr-decay-iters")) << err(bare, h);
  h.default_train_iters = 20;  // deepmpi train's default
  EXPECT_EQ(err(bare, h), "");
  // with blocks: the blocks set what they set
  AutoContext i;
  i.optimizer = "sgd";
  EXPECT_TRUE(has(err(R"({"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW"}})", i),
                  "optimizer.type: \"AdamW\" in the file disagrees with --optimizer sgd")) << "";
  AutoContext j;
  j.lr_decay_style = "cosine";
  EXPECT_TRUE(has(err(R"({"train_micro_batch_size_per_gpu": 2, "scheduler": {"type": "WarmupLR"}})", j),
                  "scheduler: the file's \"scheduler\" block sets the schedule, so --lr-decay-style cannot")) << "";
  // flags fill what a block leaves out, and must agree with what it gives
  AutoContext k;
  k.weight_decay = 0.1, k.warmup_iters = 7;
  auto c2 = check_ds_config(json::parse(R"({"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
      "scheduler": {"type": "WarmupLR"}})"), 1, k);
  EXPECT_TRUE(c2.errors.empty()) << lines(c2.errors);
  EXPECT_DOUBLE_EQ(c2.config.optimizer.weight_decay, 0.1);
  EXPECT_EQ(c2.config.scheduler.warmup_num_steps, 7);
  EXPECT_TRUE(has(lines(c2.notes), "optimizer.params.weight_decay = 0.1: from --weight-decay (the file leaves it out)")) << lines(c2.notes);
}
