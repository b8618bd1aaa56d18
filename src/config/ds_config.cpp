#include "src/config/ds_config.hpp"

#include <cmath>
#include <fstream>
#include <set>
#include <tuple>
#include <sstream>

#include "src/config/reader.hpp"
#include "base/error.hpp"

namespace dmpi::config {

using nlohmann::json;

using detail::Field;
using detail::Reader;

namespace {

// Top-level keys read by this file; the other blocks are read by blocks.cpp.
const std::vector<std::string> kCoreTopLevel = {
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping",
    "steps_per_print", "seed", "optimizer", "scheduler", "zero_optimization", "comms_logger"};

// Keys seen in real configs that are not DeepSpeed's (DeepSpeed drops them silently).
const std::pair<const char*, const char*> kNotDeepSpeed[] = {
    {"comms_config", "not a DeepSpeed key (DeepSpeed ignores it); the comms log is \"comms_logger\": {\"enabled\": true}"},
    {"monitor_config", "not a DeepSpeed key (DeepSpeed ignores it); monitors are the top-level blocks \"tensorboard\", "
                       "\"csv_monitor\", \"wandb\" and \"comet\""},
    {"monitor", "not a DeepSpeed key; monitors are the top-level blocks \"tensorboard\", \"csv_monitor\", \"wandb\" "
                "and \"comet\""},
    {"fp8", "not a DeepSpeed key (DeepSpeed ignores it); deepmpi trains in fp32, \"bf16\" or \"fp16\""},
    {"cuda_visible_devices", "not a DeepSpeed key (DeepSpeed ignores it); select devices with the CUDA_VISIBLE_DEVICES "
                             "environment variable or Slurm's --gpus-per-task"},
    {"max_grad_norm", "not a DeepSpeed key; write \"gradient_clipping\""}};

const std::vector<std::string> kZeroKeys = {
    "stage", "contiguous_gradients", "reduce_scatter", "reduce_bucket_size", "use_multi_rank_bucket_allreduce",
    "allgather_partitions", "allgather_bucket_size", "overlap_comm", "load_from_fp32_weights",
    "elastic_checkpoint", "offload_param", "offload_optimizer", "sub_group_size", "prefetch_bucket_size",
    "stage3_prefetch_bucket_size", "param_persistence_threshold", "stage3_param_persistence_threshold",
    "model_persistence_threshold", "stage3_model_persistence_threshold", "max_live_parameters",
    "stage3_max_live_parameters", "max_reuse_distance", "stage3_max_reuse_distance",
    "gather_16bit_weights_on_model_save", "stage3_gather_16bit_weights_on_model_save",
    "stage3_gather_fp16_weights_on_model_save", "module_granularity_threshold",
    "stage3_module_granularity_threshold", "use_all_reduce_for_fetch_params",
    "stage3_use_all_reduce_for_fetch_params", "allgather_sequential", "stage3_allgather_sequential",
    "ignore_unused_parameters", "legacy_stage1", "round_robin_gradients", "zero_hpz_partition_size",
    "zero_quantized_weights", "zero_quantized_nontrainable_weights", "zero_quantized_gradients",
    "zeropp_loco_param", "mics_shard_size", "mics_hierarchical_params_gather", "memory_efficient_linear",
    "pipeline_loading_checkpoint", "override_module_apply", "log_trace_cache_warnings", "enable_sanity_checks",
    "save_muon_momentum_buffer_in_memory", "leaf_module", "zenflow", "cpu_offload", "cpu_offload_param",
    "cpu_offload_use_pin_memory"};

void read_optimizer(Reader& r, const json& j, OptimizerConfig& o) {
  const std::string path = "optimizer";
  r.check_keys(j, path, {"type", "params"});
  std::string type = "AdamW";
  if (!r.get_string(j, "type", path, type)) {
    if (!j.contains("type")) r.err(path + ".type", "missing; write \"type\": \"AdamW\"");
    return;
  }
  const std::string lower = detail::lower(type);
  static const std::vector<std::string> known_unsupported = {"onebitadam", "zerooneadam", "onebitlamb", "muadam",
                                                              "muadamw", "musgd", "muon", "rmsprop"};
  std::vector<std::string> keys;
  if (lower == "adam" || lower == "adamw") {
    o.type = lower == "adam" ? "Adam" : "AdamW";
    keys = {"lr", "betas", "eps", "weight_decay", "bias_correction", "adam_w_mode", "amsgrad", "torch_adam",
            "fp32_optimizer_states"};
  } else if (lower == "lamb") {
    o.type = "Lamb";
    keys = {"lr", "betas", "eps", "weight_decay", "bias_correction", "eps_inside_sqrt", "max_coeff", "min_coeff",
            "amsgrad"};
  } else if (lower == "sgd") {
    o.type = "SGD";
    o.lr = -1;  // torch.optim.SGD has no default lr
    keys = {"lr", "momentum", "dampening", "weight_decay", "nesterov"};
  } else if (lower == "adagrad") {
    o.type = "Adagrad";
    o.lr = 1e-2, o.eps = 1e-10;
    keys = {"lr", "lr_decay", "weight_decay", "eps", "initial_accumulator_value"};
  } else if (lower == "lion") {
    o.type = "Lion";
    keys = {"lr", "betas", "weight_decay"};
  } else if (std::find(known_unsupported.begin(), known_unsupported.end(), lower) != known_unsupported.end()) {
    r.errors.push_back("not supported yet: optimizer.type \"" + type +
                       "\" (this build implements Adam, AdamW, Lamb, SGD, Adagrad and Lion)");
    return;
  } else {
    std::string hint = closest_match(lower, {"adam", "adamw", "lamb", "adagrad", "lion", "sgd"});
    r.err(path + ".type", "unknown optimizer \"" + type + "\"" + (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
    return;
  }
  if (!j.contains("params")) {
    if (o.type == "SGD") r.err(path + ".params.lr", "required by SGD (torch.optim.SGD has no default lr)");
    return;
  }
  if (!r.object(j, "params", path)) return;
  const json& p = j.at("params");
  const std::string pp = path + ".params";
  r.reject_auto(p, pp);
  if (p.contains("max_grad_norm"))
    r.err(pp + ".max_grad_norm", "not an optimizer parameter in DeepSpeed; use the top-level \"gradient_clipping\"");
  std::vector<std::string> keys_plus = keys;
  keys_plus.push_back("max_grad_norm");  // reported above, not as unknown
  r.check_keys(p, pp, keys_plus);
  r.get_real(p, "lr", pp, o.lr, 0.0, 1e6);
  if (o.type == "SGD" && !p.contains("lr")) r.err(pp + ".lr", "required by SGD (torch.optim.SGD has no default lr)");
  r.get_real(p, "eps", pp, o.eps, 0.0, 1.0);
  r.get_real(p, "weight_decay", pp, o.weight_decay, 0.0, 1e6);
  r.get_bool(p, "bias_correction", pp, o.bias_correction);
  r.get_bool(p, "adam_w_mode", pp, o.adam_w_mode);
  r.get_bool(p, "eps_inside_sqrt", pp, o.eps_inside_sqrt);
  r.get_real(p, "max_coeff", pp, o.max_coeff, 0.0, 1e6);
  r.get_real(p, "min_coeff", pp, o.min_coeff, 0.0, 1e6);
  if (o.min_coeff > o.max_coeff) r.err(pp + ".min_coeff", "must be <= max_coeff");
  r.get_real(p, "momentum", pp, o.momentum, 0.0, 1.0);
  r.get_real(p, "dampening", pp, o.dampening, 0.0, 1.0);
  r.get_bool(p, "nesterov", pp, o.nesterov);
  if (o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0))
    r.err(pp + ".nesterov", "Nesterov momentum requires momentum > 0 and dampening = 0 (as torch.optim.SGD)");
  r.get_real(p, "lr_decay", pp, o.lr_decay, 0.0, 1e6);
  r.get_real(p, "initial_accumulator_value", pp, o.initial_accumulator_value, 0.0, 1e6);
  bool flag = false;
  if (r.get_bool(p, "amsgrad", pp, flag) && flag) r.errors.push_back("not supported yet: optimizer.params.amsgrad = true");
  r.get_bool(p, "torch_adam", pp, flag);  // an implementation choice in DeepSpeed: the same math here
  bool fp32_states = true;
  if (r.get_bool(p, "fp32_optimizer_states", pp, fp32_states) && !fp32_states)
    r.errors.push_back("not supported yet: optimizer.params.fp32_optimizer_states = false (states are fp32)");
  if (p.contains("betas")) {
    const json& b = p.at("betas");
    if (!b.is_array() || b.size() != 2 || !b[0].is_number() || !b[1].is_number()) {
      r.err(pp + ".betas", "expected [beta1, beta2], got " + b.dump());
    } else {
      o.beta1 = b[0].get<double>();
      o.beta2 = b[1].get<double>();
      if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1))
        r.err(pp + ".betas", "each beta must be in [0, 1), got " + b.dump());
    }
  }
  if (o.type == "AdamW" && p.contains("adam_w_mode") && !o.adam_w_mode)
    r.warnings.push_back("optimizer.params.adam_w_mode=false with type AdamW: running Adam with L2 weight decay");
}

void read_scheduler(Reader& r, const json& j, SchedulerConfig& s, const OptimizerConfig& opt) {
  const std::string path = "scheduler";
  r.check_keys(j, path, {"type", "params"});
  std::string type;
  if (!r.get_string(j, "type", path, type)) {
    if (!j.contains("type")) r.err(path + ".type", "missing; write \"type\": \"WarmupLR\"");
    return;
  }
  static const std::vector<std::string> types = {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR", "OneCycle", "LRRangeTest"};
  if (std::find(types.begin(), types.end(), type) == types.end()) {
    std::string hint = closest_match(type, types);
    r.err(path + ".type", "unknown scheduler \"" + type + "\"" + (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
    return;
  }
  s.type = type;
  const bool needs_total = type == "WarmupDecayLR" || type == "WarmupCosineLR";
  if (!j.contains("params")) {
    if (needs_total) r.err(path + ".params.total_num_steps", "required by " + type);
    if (type == "OneCycle") r.err(path + ".params.cycle_min_lr", "OneCycle needs cycle_min_lr and cycle_max_lr");
    return;
  }
  if (!r.object(j, "params", path)) return;
  const json& p = j.at("params");
  const std::string pp = path + ".params";
  r.reject_auto(p, pp);
  std::vector<std::string> keys = {"last_batch_iteration"};
  if (type == "WarmupLR" || type == "WarmupDecayLR")
    keys.insert(keys.end(), {"warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type"});
  if (needs_total) keys.push_back("total_num_steps");
  if (type == "WarmupCosineLR") keys.insert(keys.end(), {"warmup_min_ratio", "warmup_num_steps", "cos_min_ratio", "warmup_type"});
  if (type == "OneCycle")
    keys.insert(keys.end(), {"cycle_min_lr", "cycle_max_lr", "decay_lr_rate", "cycle_first_step_size", "cycle_second_step_size",
                             "cycle_first_stair_count", "cycle_second_stair_count", "decay_step_size", "cycle_momentum",
                             "cycle_min_mom", "cycle_max_mom", "decay_mom_rate"});
  if (type == "LRRangeTest")
    keys.insert(keys.end(), {"lr_range_test_min_lr", "lr_range_test_step_size", "lr_range_test_step_rate", "lr_range_test_staircase"});
  r.check_keys(p, pp, keys);
  r.get_real(p, "warmup_min_lr", pp, s.warmup_min_lr, 0.0, 1e6);
  r.get_real(p, "warmup_max_lr", pp, s.warmup_max_lr, 0.0, 1e6);
  r.get_int(p, "warmup_num_steps", pp, s.warmup_num_steps, 1, INT64_MAX / 4);
  if (r.get_string(p, "warmup_type", pp, s.warmup_type) && s.warmup_type != "log" && s.warmup_type != "linear")
    r.err(pp + ".warmup_type", "expected \"log\" or \"linear\", got \"" + s.warmup_type + "\"");
  int64_t lbi = -1;
  if (r.get_int(p, "last_batch_iteration", pp, lbi, -1, INT64_MAX / 4) && lbi != -1)
    r.errors.push_back("not supported yet: scheduler.params.last_batch_iteration != -1 (resume comes from checkpoints)");
  if (needs_total) {
    if (!r.get_int(p, "total_num_steps", pp, s.total_num_steps, 1, INT64_MAX / 4) && !p.contains("total_num_steps"))
      r.err(pp + ".total_num_steps", "required by " + type + "; write the total number of optimizer steps");
    if (s.total_num_steps > 0 && s.total_num_steps < s.warmup_num_steps)
      r.warnings.push_back("scheduler.params.total_num_steps < warmup_num_steps");
  }
  r.get_real(p, "warmup_min_ratio", pp, s.warmup_min_ratio, 0.0, 1.0);
  r.get_real(p, "cos_min_ratio", pp, s.cos_min_ratio, 0.0, 1.0);
  if (type == "OneCycle") {
    if (!r.get_real(p, "cycle_min_lr", pp, s.cycle_min_lr, 0.0, 1e6) && !p.contains("cycle_min_lr"))
      r.err(pp + ".cycle_min_lr", "required by OneCycle");
    if (!r.get_real(p, "cycle_max_lr", pp, s.cycle_max_lr, 0.0, 1e6) && !p.contains("cycle_max_lr"))
      r.err(pp + ".cycle_max_lr", "required by OneCycle");
    r.get_real(p, "decay_lr_rate", pp, s.decay_lr_rate, 0.0, 1e6);
    r.get_real(p, "cycle_first_step_size", pp, s.cycle_first_step_size, 1.0, 1e15);
    r.get_real(p, "cycle_second_step_size", pp, s.cycle_second_step_size, 1.0, 1e15);
    r.get_real(p, "decay_step_size", pp, s.decay_step_size, 0.0, 1e15);
    r.get_bool(p, "cycle_momentum", pp, s.cycle_momentum);
    r.get_real(p, "cycle_min_mom", pp, s.cycle_min_mom, 0.0, 1.0);
    r.get_real(p, "cycle_max_mom", pp, s.cycle_max_mom, 0.0, 1.0);
    r.get_real(p, "decay_mom_rate", pp, s.decay_mom_rate, 0.0, 1e6);
    for (const char* k : {"cycle_first_stair_count", "cycle_second_stair_count"}) {
      int64_t n = 0;
      if (r.get_int(p, k, pp, n, 0, INT64_MAX / 4) && n != 0)
        r.errors.push_back(std::string("not supported yet: scheduler.params.") + k +
                           " != 0 (stair-stepped cycles; DeepSpeed ignored them before 0.19.4)");
    }
  }
  r.get_real(p, "lr_range_test_min_lr", pp, s.lr_range_test_min_lr, 0.0, 1e6);
  r.get_real(p, "lr_range_test_step_size", pp, s.lr_range_test_step_size, 1e-12, 1e15);
  r.get_real(p, "lr_range_test_step_rate", pp, s.lr_range_test_step_rate, 0.0, 1e6);
  r.get_bool(p, "lr_range_test_staircase", pp, s.lr_range_test_staircase);
  (void)opt;
}

void read_offload(Reader& r, const json& j, const std::string& path, OffloadConfig& o, bool param) {
  if (!j.is_object()) {
    r.err(path, "expected an object {\"device\": \"cpu\", ...}, got " + j.dump() + " (write {\"device\": \"cpu\"})");
    return;
  }
  std::vector<std::string> keys = {"device", "nvme_path", "buffer_count", "pin_memory"};
  if (param) keys.insert(keys.end(), {"buffer_size", "max_in_cpu"});
  else keys.insert(keys.end(), {"pipeline_read", "pipeline_write", "fast_init", "ratio", "super_offload", "cpuadam_cores_perc"});
  r.check_keys(j, path, keys);
  if (r.get_string(j, "device", path, o.device) && o.device != "none" && o.device != "cpu" && o.device != "nvme")
    r.err(path + ".device", "expected \"none\", \"cpu\" or \"nvme\", got \"" + o.device + "\"");
  r.get_string(j, "nvme_path", path, o.nvme_path);
  if (o.device == "nvme" && o.nvme_path.empty()) r.err(path + ".nvme_path", "required with device \"nvme\"");
  r.get_int(j, "buffer_count", path, o.buffer_count, 1, 1 << 20);
  r.get_int(j, "buffer_size", path, o.buffer_size, 1, INT64_MAX / 4);
  r.get_int(j, "max_in_cpu", path, o.max_in_cpu, 0, INT64_MAX / 4);
  r.get_bool(j, "pin_memory", path, o.pin_memory);
  r.get_bool(j, "pipeline_read", path, o.pipeline_read);
  r.get_bool(j, "pipeline_write", path, o.pipeline_write);
  r.get_bool(j, "fast_init", path, o.fast_init);
  r.get_real(j, "ratio", path, o.ratio, 0.0, 1.0);
  for (const char* k : {"super_offload", "cpuadam_cores_perc"})
    if (j.contains(k)) r.errors.push_back(std::string("not supported yet: ") + path + "." + k);
}

void read_zero(Reader& r, const json& z0, ZeroConfig& zc) {
  const std::string P = "zero_optimization";
  json z = z0;
  // Deprecated keys (DeepSpeed: a warning and the value moves; both old and new is an error).
  auto deprecate = [&](const char* old_key, const char* new_key, const json& new_value) {
    if (!z.contains(old_key)) return;
    if (z.contains(new_key)) {
      r.err(P + "." + old_key, std::string("deprecated, and given together with its replacement '") + new_key + "'; keep only '" + new_key + "'");
    } else {
      r.warnings.push_back(P + "." + old_key + " is deprecated: use " + P + "." + new_key + " (" + new_value.dump() + ")");
      if (!z[old_key].is_boolean() || z[old_key].get<bool>()) z[new_key] = new_value;
    }
    z.erase(old_key);
  };
  if (z.contains("stage3_gather_fp16_weights_on_model_save")) {
    json v = z["stage3_gather_fp16_weights_on_model_save"];
    deprecate("stage3_gather_fp16_weights_on_model_save", "gather_16bit_weights_on_model_save", v);
  }
  deprecate("cpu_offload", "offload_optimizer", json{{"device", "cpu"}});
  deprecate("cpu_offload_param", "offload_param", json{{"device", "cpu"}});
  if (z.contains("cpu_offload_use_pin_memory")) {
    r.warnings.push_back(P + ".cpu_offload_use_pin_memory is deprecated and has no effect (offload pin_memory defaults to true)");
    z.erase("cpu_offload_use_pin_memory");
  }
  // stage3_* aliases name the same fields (DeepSpeed: populate_by_name).
  const std::pair<const char*, const char*> aliases[] = {
      {"stage3_prefetch_bucket_size", "prefetch_bucket_size"},
      {"stage3_param_persistence_threshold", "param_persistence_threshold"},
      {"stage3_model_persistence_threshold", "model_persistence_threshold"},
      {"stage3_max_live_parameters", "max_live_parameters"},
      {"stage3_max_reuse_distance", "max_reuse_distance"},
      {"stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save"}};
  for (auto [alias, field] : aliases) {
    if (!z.contains(alias)) continue;
    if (z.contains(field)) r.err(P + "." + alias, std::string("given together with '") + field + "', the same setting; keep one");
    else z[field] = z[alias];
    z.erase(alias);
  }
  static const std::vector<std::string> typed = {
      "stage", "contiguous_gradients", "reduce_scatter", "reduce_bucket_size", "use_multi_rank_bucket_allreduce",
      "allgather_partitions", "allgather_bucket_size", "overlap_comm", "load_from_fp32_weights", "elastic_checkpoint",
      "offload_param", "offload_optimizer", "sub_group_size", "prefetch_bucket_size", "param_persistence_threshold",
      "model_persistence_threshold", "max_live_parameters", "max_reuse_distance", "gather_16bit_weights_on_model_save",
      "ignore_unused_parameters", "round_robin_gradients", "legacy_stage1"};
  std::vector<std::string> known_untyped;
  for (const auto& k : kZeroKeys)
    if (std::find(typed.begin(), typed.end(), k) == typed.end() && k.rfind("stage3_", 0) != 0 && k.rfind("cpu_offload", 0) != 0)
      known_untyped.push_back(k);
  std::vector<std::string> accepted = typed;  // the aliases too, so a typo of either spelling gets its suggestion
  for (auto [alias, field] : aliases) accepted.push_back(alias);
  if (z.contains("aio")) {  // DeepSpeed #2721: a common misplacement
    r.err(P + ".aio", "aio is a top-level block, not part of zero_optimization; move it to the top level");
    z.erase("aio");
  }
  r.check_keys(z, P, accepted, known_untyped);
  int64_t v = 0;
  if (r.get_int(z, "stage", P, v, 0, 3)) zc.stage = static_cast<int>(v);
  r.get_bool(z, "contiguous_gradients", P, zc.contiguous_gradients);
  r.get_bool(z, "reduce_scatter", P, zc.reduce_scatter);
  r.get_bool(z, "use_multi_rank_bucket_allreduce", P, zc.use_multi_rank_bucket_allreduce);
  r.get_int(z, "reduce_bucket_size", P, zc.reduce_bucket_size, 0, INT64_MAX / 4);
  r.get_bool(z, "allgather_partitions", P, zc.allgather_partitions);
  r.get_int(z, "allgather_bucket_size", P, zc.allgather_bucket_size, 0, INT64_MAX / 4);
  bool b = false;
  if (r.get_bool(z, "overlap_comm", P, b)) zc.overlap_comm = b ? 1 : 0;
  r.get_bool(z, "load_from_fp32_weights", P, zc.load_from_fp32_weights);
  r.get_bool(z, "elastic_checkpoint", P, zc.elastic_checkpoint);
  r.get_bool(z, "round_robin_gradients", P, zc.round_robin_gradients);
  r.get_bool(z, "ignore_unused_parameters", P, zc.ignore_unused_parameters);
  r.get_int(z, "sub_group_size", P, zc.sub_group_size, 0, INT64_MAX / 4);
  r.get_int(z, "prefetch_bucket_size", P, zc.prefetch_bucket_size, 0, INT64_MAX / 4);
  r.get_int(z, "param_persistence_threshold", P, zc.param_persistence_threshold, 0, INT64_MAX / 4);
  r.get_int(z, "model_persistence_threshold", P, zc.model_persistence_threshold, 0, INT64_MAX);
  r.get_int(z, "max_live_parameters", P, zc.max_live_parameters, 0, INT64_MAX / 4);
  r.get_int(z, "max_reuse_distance", P, zc.max_reuse_distance, 0, INT64_MAX / 4);
  r.get_bool(z, "gather_16bit_weights_on_model_save", P, zc.gather_16bit_weights_on_model_save);
  if (r.get_bool(z, "legacy_stage1", P, b) && b) r.err(P + ".legacy_stage1", "removed in DeepSpeed 0.5.9; delete it");
  if (z.contains("offload_optimizer")) read_offload(r, z["offload_optimizer"], P + ".offload_optimizer", zc.offload_optimizer, false);
  if (z.contains("offload_param")) {
    read_offload(r, z["offload_param"], P + ".offload_param", zc.offload_param, true);
    if (zc.stage < 3 && zc.offload_param.device != "none")
      r.warnings.push_back(P + ".offload_param has no effect below stage 3 (DeepSpeed ignores it silently)");
  }
  if (zc.offload_optimizer.ratio < 1.0 && zc.stage != 3)
    r.err(P + ".offload_optimizer.ratio", "partial offload (ratio < 1) needs stage 3");
}

}  // namespace

void resolve_batch_triangle(int64_t& tbs, int64_t& mbs, int64_t& gas, int W) {
  DMPI_REQUIRE(W >= 1, "data-parallel size must be >= 1");
  if (tbs > 0 && mbs > 0 && gas > 0) {
    // nothing derived
  } else if (tbs > 0 && mbs > 0) {
    gas = tbs / mbs / W;
  } else if (tbs > 0 && gas > 0) {
    mbs = tbs / W / gas;
  } else if (mbs > 0 && gas > 0) {
    tbs = mbs * gas * W;
  } else if (tbs > 0) {
    gas = 1;
    mbs = tbs / W;
  } else if (mbs > 0) {
    gas = 1;
    tbs = mbs * W;
  } else {
    DMPI_FAIL("Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided in the ds_config");
  }
  if (tbs > 0 && mbs > 0 && gas > 0 && tbs == mbs * gas * W) return;
  // Nearest consistent choices, keeping the micro batch when possible.
  std::ostringstream os;
  os << "batch sizes are inconsistent: train_batch_size (TBS) = " << tbs << ", train_micro_batch_size_per_gpu (MBS) = "
     << mbs << ", gradient_accumulation_steps (GAS) = " << gas << ", data-parallel size (W) = " << W
     << "; DeepSpeed requires TBS == MBS * GAS * W.";
  int64_t m = std::max<int64_t>(1, mbs), g = std::max<int64_t>(1, gas);
  os << " Consistent choices: TBS = " << m * g * W << " (keeping MBS and GAS)";
  if (tbs > 0 && tbs % (static_cast<int64_t>(W) * m) == 0)
    os << ", or GAS = " << tbs / (static_cast<int64_t>(W) * m) << " (keeping TBS and MBS)";
  if (tbs > 0 && tbs % (static_cast<int64_t>(W) * g) == 0)
    os << ", or MBS = " << tbs / (static_cast<int64_t>(W) * g) << " (keeping TBS and GAS)";
  os << ", or omit train_batch_size and let it be derived.";
  DMPI_FAIL(os.str());
}

json resolve_auto(const json& in, const AutoContext& ctx, std::vector<std::string>& errors) {
  json j = in;
  auto is_auto = [](const json& v) { return v.is_string() && v.get<std::string>() == "auto"; };
  // key path -> (value from the flags, flag name); a missing value means "cannot resolve".
  // check_mismatch: an explicit value that differs from the flag is an error (HF's rule for
  // values that come from TrainingArguments; not for values derived from the model size).
  auto fill = [&](json& obj, const std::string& key, const std::string& path, const std::optional<json>& value,
                  const std::string& flag, bool check_mismatch = true) {
    if (!obj.is_object() || !obj.contains(key)) {
      return;
    }
    json& v = obj[key];
    if (is_auto(v)) {
      if (value) {
        v = *value;
      } else {
        errors.push_back(path + ": \"auto\" cannot be resolved: pass " + flag + " or write a value");
        obj.erase(key);  // reported once, here
      }
    } else if (!check_mismatch) {
      return;
    } else if (value && v.is_number() && value->is_number() && v.get<double>() != value->get<double>()) {
      errors.push_back(path + " = " + v.dump() + " disagrees with " + flag + " " + value->dump() +
                       "; set it to \"auto\" or drop the flag");
    } else if (value && v.is_array() && value->is_array() && v != *value) {
      errors.push_back(path + " = " + v.dump() + " disagrees with " + flag + " " + value->dump() +
                       "; set it to \"auto\" or drop the flag");
    } else if (value && v.is_boolean() && value->is_boolean() && v != *value) {
      errors.push_back(path + " = " + v.dump() + " disagrees with " + flag + "; set it to \"auto\" or drop the flag");
    }
  };
  auto opt = [](auto o) -> std::optional<json> { return o ? std::optional<json>(json(*o)) : std::nullopt; };
  // Batch keys: "auto" without a flag means "derive it from the triangle" (removed here).
  for (auto [key, val, flag] : {std::tuple{"train_micro_batch_size_per_gpu", opt(ctx.micro_batch), "--micro-batch-size"},
                                std::tuple{"train_batch_size", opt(ctx.global_batch), "--global-batch-size"}}) {
    if (j.contains(key) && is_auto(j[key]) && !val) j.erase(key);
    else fill(j, key, key, val, flag);
  }
  if (j.contains("gradient_accumulation_steps") && is_auto(j["gradient_accumulation_steps"]))
    j.erase("gradient_accumulation_steps");  // derived by the batch triangle
  fill(j, "gradient_clipping", "gradient_clipping", opt(ctx.clip_grad), "--clip-grad");
  if (j.contains("optimizer") && j["optimizer"].is_object() && j["optimizer"].contains("params")) {
    json& p = j["optimizer"]["params"];
    fill(p, "lr", "optimizer.params.lr", opt(ctx.lr), "--lr");
    std::optional<json> betas;
    if (ctx.beta1 && ctx.beta2) betas = json::array({*ctx.beta1, *ctx.beta2});
    fill(p, "betas", "optimizer.params.betas", betas, "--adam-beta1 and --adam-beta2");
    fill(p, "eps", "optimizer.params.eps", opt(ctx.eps), "--adam-eps");
    fill(p, "weight_decay", "optimizer.params.weight_decay", opt(ctx.weight_decay), "--weight-decay");
  }
  if (j.contains("scheduler") && j["scheduler"].is_object() && j["scheduler"].contains("params")) {
    json& p = j["scheduler"]["params"];
    if (p.is_object() && p.contains("warmup_min_lr") && is_auto(p["warmup_min_lr"])) p["warmup_min_lr"] = 0.0;  // HF
    fill(p, "warmup_max_lr", "scheduler.params.warmup_max_lr", opt(ctx.lr), "--lr");
    fill(p, "warmup_num_steps", "scheduler.params.warmup_num_steps", opt(ctx.warmup_iters), "--lr-warmup-iters");
    fill(p, "total_num_steps", "scheduler.params.total_num_steps", opt(ctx.train_iters), "--train-iters");
  }
  if (j.contains("zero_optimization") && j["zero_optimization"].is_object()) {
    json& z = j["zero_optimization"];
    std::optional<json> h2, h09, h10;
    if (ctx.hidden) {
      const int64_t h = *ctx.hidden;
      h2 = json(h * h), h09 = json(static_cast<int64_t>(0.9 * static_cast<double>(h * h))), h10 = json(10 * h);
    }
    fill(z, "reduce_bucket_size", "zero_optimization.reduce_bucket_size", h2, "--hidden-size (h^2)", false);
    for (const char* k : {"stage3_prefetch_bucket_size", "prefetch_bucket_size"})
      fill(z, k, std::string("zero_optimization.") + k, h09, "--hidden-size (0.9 h^2)", false);
    for (const char* k : {"stage3_param_persistence_threshold", "param_persistence_threshold"})
      fill(z, k, std::string("zero_optimization.") + k, h10, "--hidden-size (10 h)", false);
    // Other "auto" inside DeepSpeed's pydantic blocks means "use the default" (semantics §3.4).
    for (auto it = z.begin(); it != z.end();) {
      if (is_auto(it.value())) it = z.erase(it);
      else ++it;
    }
  }
  for (auto [block, on] : {std::pair{"fp16", ctx.fp16}, std::pair{"bf16", ctx.bf16}, std::pair{"bfloat16", ctx.bf16}}) {
    if (j.contains(block) && j[block].is_object() && j[block].contains("enabled") && is_auto(j[block]["enabled"]))
      j[block]["enabled"] = on;  // HF: from --fp16 / --bf16
  }
  // In DeepSpeed's pydantic blocks any other "auto" means "the default" (semantics §3.4).
  for (const char* block : {"fp16", "bf16", "bfloat16", "comms_logger", "tensorboard", "csv_monitor", "wandb", "comet",
                            "tensor_parallel"}) {
    if (!j.contains(block) || !j[block].is_object()) continue;
    json& b = j[block];
    for (auto it = b.begin(); it != b.end();) {
      if (is_auto(it.value())) it = b.erase(it);
      else ++it;
    }
  }
  return j;
}

DsConfig parse_ds_config(const json& in, int dp_size, const AutoContext& ctx) {
  DMPI_REQUIRE(in.is_object(), "ds_config: the top level must be a JSON object {...}");
  Reader r;
  const json j = resolve_auto(in, ctx, r.errors);
  DsConfig c;
  c.raw = in;
  {
    json top = j;
    for (auto [key, why] : kNotDeepSpeed)
      if (top.contains(key)) r.err(key, why), top.erase(key);
    std::vector<std::string> supported = kCoreTopLevel;
    for (const auto& k : detail::block_top_level_keys()) supported.push_back(k);
    r.check_keys(top, "", supported);
  }
  detail::read_blocks(r, j, c);

  auto batch_key = [&](const char* key, int64_t& out) {
    if (j.contains(key) && Reader::is_auto(j.at(key))) return;  // "auto": derived by the triangle
    r.get_int(j, key, "", out, 1, INT64_MAX / 4);
  };
  batch_key("train_batch_size", c.train_batch_size);
  batch_key("train_micro_batch_size_per_gpu", c.micro_batch);
  batch_key("gradient_accumulation_steps", c.grad_accum);
  r.get_real(j, "gradient_clipping", "", c.gradient_clipping, 0.0, 1e30);
  c.steps_per_print_given = r.get_int(j, "steps_per_print", "", c.steps_per_print, 1, INT64_MAX / 4);
  r.get_int(j, "seed", "", c.seed, 0, INT64_MAX / 4);

  if (j.contains("zero_optimization")) {
    const json& z = j.at("zero_optimization");
    if (z.is_boolean()) {
      r.warnings.push_back("zero_optimization: true is the legacy form of {\"stage\": 1}");
      c.zero.stage = z.get<bool>() ? 1 : 0;
    } else if (z.is_object()) {
      read_zero(r, z, c.zero);
    } else {
      r.err("zero_optimization", "expected an object {\"stage\": 0, ...}, got " + z.dump());
    }
    c.zero_stage = c.zero.stage;
  }
  if (r.object(j, "comms_logger", "")) {
    const json& cl = j.at("comms_logger");
    const std::string p = "comms_logger";
    r.check_keys(cl, p, {"enabled", "verbose", "prof_all", "prof_ops", "debug"});
    r.get_bool(cl, "enabled", p, c.comms_logger.enabled);
    r.get_bool(cl, "verbose", p, c.comms_logger.verbose);
    r.get_bool(cl, "prof_all", p, c.comms_logger.prof_all);
    r.get_bool(cl, "debug", p, c.comms_logger.debug);
    if (cl.contains("prof_ops")) {
      static const std::vector<std::string> ops = {"all_reduce", "reduce_scatter", "all_gather", "all_gatherv",
                                                   "broadcast", "all_to_all", "all_to_allv", "send", "recv", "barrier"};
      const json& po = cl.at("prof_ops");
      if (!po.is_array()) {
        r.err(p + ".prof_ops", "expected a list of op names, got " + po.dump());
      } else {
        for (const auto& o : po) {
          if (!o.is_string()) {
            r.err(p + ".prof_ops", "expected op names (strings), got " + o.dump());
            continue;
          }
          std::string name = o.get<std::string>();
          if (std::find(ops.begin(), ops.end(), name) == ops.end()) {
            std::string hint = closest_match(name, ops);
            r.err(p + ".prof_ops", "unknown op \"" + name + "\"" + (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
          } else {
            c.comms_logger.prof_ops.push_back(name);
          }
        }
      }
    }
  }
  if (r.object(j, "optimizer", "")) read_optimizer(r, j.at("optimizer"), c.optimizer);
  if (r.object(j, "scheduler", "")) read_scheduler(r, j.at("scheduler"), c.scheduler, c.optimizer);

  if (r.errors.empty()) {
    try {
      resolve_batch_triangle(c.train_batch_size, c.micro_batch, c.grad_accum, dp_size);
    } catch (const Error& e) {
      std::string w = e.what();
      auto pos = w.find(": ");  // drop the file:line prefix: this is about the user's file
      r.errors.push_back(pos == std::string::npos ? w : w.substr(pos + 2));
    }
  }
  if (!r.errors.empty()) {
    std::ostringstream os;
    os << r.errors.size() << " error" << (r.errors.size() > 1 ? "s" : "") << " in the ds_config:";
    for (auto& e : r.errors) os << "\n  - " << e;
    throw Error(os.str());
  }
  c.warnings = r.warnings;
  return c;
}

DsConfig load_ds_config(const std::string& path, int dp_size, const AutoContext& ctx) {
  std::ifstream f(path);
  DMPI_REQUIRE(f.good(), "cannot open --deepspeed_config file '" << path << "'");
  std::stringstream ss;
  ss << f.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::parse_error& e) {
    DMPI_FAIL("--deepspeed_config '" << path << "' is not valid JSON: " << e.what());
  }
  try {
    return parse_ds_config(j, dp_size, ctx);
  } catch (const Error& e) {
    throw Error(std::string("'") + path + "': " + e.what());
  }
}

json default_ds_config_json() {
  return json{{"train_micro_batch_size_per_gpu", 4},
              {"gradient_accumulation_steps", 1},
              {"gradient_clipping", 1.0},
              {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1e-3}, {"betas", {0.9, 0.95}}, {"eps", 1e-8}, {"weight_decay", 0.1}}}}},
              {"scheduler", {{"type", "WarmupLR"}, {"params", {{"warmup_min_lr", 0.0}, {"warmup_max_lr", 1e-3}, {"warmup_num_steps", 10}, {"warmup_type", "linear"}}}}}};
}

namespace {
json offload_json(const OffloadConfig& o, bool param) {
  json j{{"device", o.device}, {"nvme_path", o.nvme_path}, {"buffer_count", o.buffer_count}, {"pin_memory", o.pin_memory}};
  if (param) {
    j["buffer_size"] = o.buffer_size;
    j["max_in_cpu"] = o.max_in_cpu;
  } else {
    j["pipeline_read"] = o.pipeline_read, j["pipeline_write"] = o.pipeline_write, j["fast_init"] = o.fast_init;
    j["ratio"] = o.ratio;
  }
  return j;
}
json zero_json(const ZeroConfig& z) {
  return {{"stage", z.stage}, {"contiguous_gradients", z.contiguous_gradients}, {"reduce_scatter", z.reduce_scatter},
          {"reduce_bucket_size", z.reduce_bucket_size}, {"use_multi_rank_bucket_allreduce", z.use_multi_rank_bucket_allreduce},
          {"allgather_partitions", z.allgather_partitions}, {"allgather_bucket_size", z.allgather_bucket_size},
          {"overlap_comm", z.overlap()}, {"load_from_fp32_weights", z.load_from_fp32_weights},
          {"elastic_checkpoint", z.elastic_checkpoint}, {"round_robin_gradients", z.round_robin_gradients},
          {"ignore_unused_parameters", z.ignore_unused_parameters}, {"sub_group_size", z.sub_group_size},
          {"stage3_prefetch_bucket_size", z.prefetch_bucket_size},
          {"stage3_param_persistence_threshold", z.param_persistence_threshold},
          {"stage3_model_persistence_threshold", z.model_persistence_threshold},
          {"stage3_max_live_parameters", z.max_live_parameters}, {"stage3_max_reuse_distance", z.max_reuse_distance},
          {"stage3_gather_16bit_weights_on_model_save", z.gather_16bit_weights_on_model_save},
          {"offload_optimizer", offload_json(z.offload_optimizer, false)}, {"offload_param", offload_json(z.offload_param, true)}};
}
}  // namespace

std::vector<std::string> unimplemented_for_training(const DsConfig& c) {
  std::vector<std::string> out;
  if (c.zero.offload_optimizer.device != "none")
    out.push_back("not supported yet: zero_optimization.offload_optimizer.device = \"" + c.zero.offload_optimizer.device + "\"");
  if (c.zero.offload_param.device != "none" && c.zero.stage == 3)
    out.push_back("not supported yet: zero_optimization.offload_param.device = \"" + c.zero.offload_param.device + "\"");
  detail::blocks_unimplemented(c, out);
  return out;
}

json DsConfig::resolved() const {
  const auto& op = optimizer;
  json params;
  if (op.type == "Adam" || op.type == "AdamW")
    params = {{"lr", op.lr}, {"betas", {op.beta1, op.beta2}}, {"eps", op.eps}, {"weight_decay", op.weight_decay},
              {"bias_correction", op.bias_correction}, {"adam_w_mode", op.adam_w_mode}};
  else if (op.type == "Lamb")
    params = {{"lr", op.lr}, {"betas", {op.beta1, op.beta2}}, {"eps", op.eps}, {"weight_decay", op.weight_decay},
              {"bias_correction", op.bias_correction}, {"eps_inside_sqrt", op.eps_inside_sqrt},
              {"max_coeff", op.max_coeff}, {"min_coeff", op.min_coeff}};
  else if (op.type == "SGD")
    params = {{"lr", op.lr}, {"momentum", op.momentum}, {"dampening", op.dampening},
              {"weight_decay", op.weight_decay}, {"nesterov", op.nesterov}};
  else if (op.type == "Adagrad")
    params = {{"lr", op.lr}, {"lr_decay", op.lr_decay}, {"weight_decay", op.weight_decay}, {"eps", op.eps},
              {"initial_accumulator_value", op.initial_accumulator_value}};
  else
    params = {{"lr", op.lr}, {"betas", {op.beta1, op.beta2}}, {"weight_decay", op.weight_decay}};
  json o{{"type", op.type}, {"params", params}};
  json j{{"train_batch_size", train_batch_size},
         {"train_micro_batch_size_per_gpu", micro_batch},
         {"gradient_accumulation_steps", grad_accum},
         {"gradient_clipping", gradient_clipping},
         {"steps_per_print", steps_per_print},
         {"zero_optimization", zero_json(zero)},
         {"optimizer", o}};
  if (!scheduler.type.empty()) {
    const auto& sc = scheduler;
    json p;
    if (sc.type == "WarmupLR" || sc.type == "WarmupDecayLR") {
      p = {{"warmup_min_lr", sc.warmup_min_lr}, {"warmup_max_lr", sc.warmup_max_lr < 0 ? optimizer.lr : sc.warmup_max_lr},
           {"warmup_num_steps", sc.warmup_num_steps}, {"warmup_type", sc.warmup_type}};
      if (sc.type == "WarmupDecayLR") p["total_num_steps"] = sc.total_num_steps;
    } else if (sc.type == "WarmupCosineLR") {
      p = {{"total_num_steps", sc.total_num_steps}, {"warmup_min_ratio", sc.warmup_min_ratio},
           {"warmup_num_steps", sc.warmup_num_steps}, {"cos_min_ratio", sc.cos_min_ratio}, {"warmup_type", sc.warmup_type}};
    } else if (sc.type == "OneCycle") {
      p = {{"cycle_min_lr", sc.cycle_min_lr}, {"cycle_max_lr", sc.cycle_max_lr}, {"decay_lr_rate", sc.decay_lr_rate},
           {"cycle_first_step_size", sc.cycle_first_step_size},
           {"cycle_second_step_size", sc.cycle_second_step_size < 0 ? sc.cycle_first_step_size : sc.cycle_second_step_size},
           {"decay_step_size", sc.decay_step_size}, {"cycle_momentum", sc.cycle_momentum},
           {"cycle_min_mom", sc.cycle_min_mom}, {"cycle_max_mom", sc.cycle_max_mom}, {"decay_mom_rate", sc.decay_mom_rate}};
    } else {
      p = {{"lr_range_test_min_lr", sc.lr_range_test_min_lr}, {"lr_range_test_step_size", sc.lr_range_test_step_size},
           {"lr_range_test_step_rate", sc.lr_range_test_step_rate}, {"lr_range_test_staircase", sc.lr_range_test_staircase}};
    }
    j["scheduler"] = {{"type", sc.type}, {"params", p}};
  }
  j["seed"] = seed >= 0 ? json(seed) : json(nullptr);
  j["comms_logger"] = {{"enabled", comms_logger.enabled}, {"verbose", comms_logger.verbose},
                       {"prof_all", comms_logger.prof_all}, {"prof_ops", comms_logger.prof_ops},
                       {"debug", comms_logger.debug}};
  const json blocks = detail::blocks_json(*this);
  for (auto& [k, v] : blocks.items()) j[k] = v;
  return j;
}

}  // namespace dmpi::config
