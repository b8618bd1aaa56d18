#include "src/config/ds_config.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "base/error.hpp"
#include "src/config/json_text.hpp"
#include "src/config/reader.hpp"

namespace dmpi::config {

using nlohmann::json;

using detail::Field;
using detail::join_path;
using detail::Known;
using detail::Problem;
using detail::Reader;
using detail::show;

namespace {

// Top-level keys read by this file; the other blocks are read by blocks.cpp.
const std::vector<std::string> kCoreTopLevel = {
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping",
    "steps_per_print", "seed", "optimizer", "scheduler", "zero_optimization", "comms_logger"};

// Keys seen in real configs that are not DeepSpeed's: DeepSpeed drops them silently, deepmpi
// ignores them with a warning naming what the writer probably meant.
const std::pair<const char*, const char*> kNotDeepSpeed[] = {
    {"comms_config", "the comms log is \"comms_logger\": {\"enabled\": true}"},
    {"monitor_config", "monitors are the top-level blocks \"tensorboard\", \"csv_monitor\", \"wandb\" and \"comet\""},
    {"monitor", "monitors are the top-level blocks \"tensorboard\", \"csv_monitor\", \"wandb\" and \"comet\""},
    {"fp8", "deepmpi trains in fp32, \"bf16\" or \"fp16\""},
    {"cuda_visible_devices", "select devices with the CUDA_VISIBLE_DEVICES environment variable or Slurm's --gpus-per-task"},
    {"max_grad_norm", "clipping is the top-level \"gradient_clipping\""}};

// zero_optimization keys DeepSpeed has that deepmpi does not model: accepted at values that ask
// for nothing deepmpi lacks (a note), "not implemented" otherwise (semantics doc §1.5 defaults).
const std::vector<Known>& zero_known() {
  static const std::vector<Known> k = {
      {"module_granularity_threshold", {json(0)}, 'i', false, "fetching small modules as one unit"},
      {"use_all_reduce_for_fetch_params", {json(false)}, 'b', false, "fetching parameters with an all-reduce"},
      {"allgather_sequential", {json(false)}, 'b', false, "one all-gather per parameter"},
      {"zero_hpz_partition_size", {json(1)}, 'i', false, "ZeRO++ hierarchical partitioning (hpZ)"},
      {"zero_quantized_weights", {json(false)}, 'b', false, "ZeRO++ quantized weights (qwZ)"},
      {"zero_quantized_nontrainable_weights", {json(false)}, 'b', false, "quantized frozen weights"},
      {"zero_quantized_gradients", {json(false)}, 'b', false, "ZeRO++ quantized gradients (qgZ)"},
      {"zeropp_loco_param", {json(nullptr)}, '*', false, "ZeRO++ LoCo error feedback"},
      {"mics_shard_size", {json(-1), json(0)}, 'i', false, "MiCS sharding"},
      {"mics_hierarchical_params_gather", {json(false)}, 'b', false, "MiCS hierarchical all-gather"},
      {"memory_efficient_linear", {}, 'b', true, "DeepSpeed's memory-saving linear op; deepmpi's kernels have no such switch"},
      {"pipeline_loading_checkpoint", {}, 'b', true, "the order in which ranks load checkpoints"},
      {"override_module_apply", {}, 'b', true, "a patch of PyTorch's nn.Module.apply"},
      {"log_trace_cache_warnings", {}, 'b', true, "prefetch-trace log messages"},
      {"enable_sanity_checks", {}, 'b', true, "DeepSpeed's debug checks"},
      {"save_muon_momentum_buffer_in_memory", {}, 'b', true, "the Muon optimizer's NVMe buffer"},
      {"leaf_module", {}, '*', true, "which PyTorch modules are fetched as one unit"},
      {"zenflow", {json(nullptr)}, '*', false, "ZenFlow (asynchronous offloaded optimizer steps)"}};
  return k;
}

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
    r.unimplemented("optimizer.type", json(type),
                    "this build implements Adam, AdamW, Lamb, SGD, Adagrad and Lion; write one of those");
    return;
  } else {
    std::string hint = detail::suggest(lower, {"adam", "adamw", "lamb", "adagrad", "lion", "sgd"});
    r.err(path + ".type", "unknown optimizer " + show(json(type)) + (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
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
  if (r.get_bool(p, "amsgrad", pp, flag) && flag)
    r.unimplemented(pp + ".amsgrad", json(true), "AMSGrad is not implemented; write false");
  r.get_bool(p, "torch_adam", pp, flag);  // an implementation choice in DeepSpeed: the same math here
  bool fp32_states = true;
  if (r.get_bool(p, "fp32_optimizer_states", pp, fp32_states) && !fp32_states)
    r.unimplemented(pp + ".fp32_optimizer_states", json(false), "the optimizer states are fp32; write true");
  if (p.contains("betas")) {
    const json& b = p.at("betas");
    if (!b.is_array() || b.size() != 2 || !b[0].is_number() || !b[1].is_number()) {
      r.err(pp + ".betas", "expected [beta1, beta2], got " + show(b));
    } else {
      o.beta1 = b[0].get<double>();
      o.beta2 = b[1].get<double>();
      if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1))
        r.err(pp + ".betas", "each beta must be in [0, 1), got " + show(b));
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
    std::string hint = detail::suggest(type, types);
    r.err(path + ".type", "unknown scheduler " + show(json(type)) + (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
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
    r.err(pp + ".warmup_type", "expected \"log\" or \"linear\", got " + show(json(s.warmup_type)));
  int64_t lbi = -1;
  if (r.get_int(p, "last_batch_iteration", pp, lbi, -1, INT64_MAX / 4) && lbi != -1)
    r.unimplemented(pp + ".last_batch_iteration", json(lbi), "resuming comes from checkpoints; write -1 or drop the key");
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
        r.unimplemented(pp + "." + k, json(n), "stair-stepped cycles are not implemented (DeepSpeed ignored them "
                                                 "before 0.19.4); write 0");
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
    r.err(path, "expected an object {\"device\": \"cpu\", ...}, got " + show(j) + " (write {\"device\": \"cpu\"})");
    return;
  }
  std::vector<std::string> keys = {"device", "nvme_path", "buffer_count", "pin_memory"};
  if (param) keys.insert(keys.end(), {"buffer_size", "max_in_cpu"});
  else keys.insert(keys.end(), {"pipeline_read", "pipeline_write", "fast_init", "ratio"});
  std::vector<Known> known;
  if (!param)
    known = {Known{"super_offload", {json(false)}, 'b', false, "SuperOffload"},
             Known{"cpuadam_cores_perc", {}, '*', true, "the share of cores CPU Adam uses"}};
  r.check_keys(j, path, keys, known);
  if (r.get_string(j, "device", path, o.device) && o.device != "none" && o.device != "cpu" && o.device != "nvme")
    r.err(path + ".device", "expected \"none\", \"cpu\" or \"nvme\", got " + show(json(o.device)));
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
      {"stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save"},
      {"stage3_module_granularity_threshold", "module_granularity_threshold"},
      {"stage3_use_all_reduce_for_fetch_params", "use_all_reduce_for_fetch_params"},
      {"stage3_allgather_sequential", "allgather_sequential"}};
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
  std::vector<std::string> accepted = typed;  // the aliases too, so a typo of either spelling gets its suggestion
  for (auto [alias, field] : aliases) accepted.push_back(alias);
  for (const char* k : {"cpu_offload", "cpu_offload_param", "cpu_offload_use_pin_memory", "stage3_gather_fp16_weights_on_model_save"})
    accepted.push_back(k);  // moved above; listed for the suggestions
  if (z.contains("aio")) {  // DeepSpeed #2721: a common misplacement
    r.err(P + ".aio", "aio is a top-level block, not part of zero_optimization; move it to the top level");
    z.erase("aio");
  }
  r.check_keys(z, P, accepted, zero_known());
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
  if (W < 1) throw Error("the data-parallel size must be >= 1 (got " + std::to_string(W) + ")");
  const bool t_given = tbs > 0, m_given = mbs > 0, g_given = gas > 0;
  std::string t_how, m_how, g_how;  // how a derived value came about
  if (t_given && m_given && g_given) {
    // nothing derived
  } else if (t_given && m_given) {
    gas = tbs / mbs / W, g_how = "TBS // MBS // W";
  } else if (t_given && g_given) {
    mbs = tbs / W / gas, m_how = "TBS // W // GAS";
  } else if (m_given && g_given) {
    tbs = mbs * gas * W, t_how = "MBS * GAS * W";
  } else if (t_given) {
    gas = 1, g_how = "1, the default";
    mbs = tbs / W, m_how = "TBS // W";
  } else if (m_given) {
    gas = 1, g_how = "1, the default";
    tbs = mbs * W, t_how = "MBS * W";
  } else {
    throw Error("Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided in the ds_config "
                "(DeepSpeed's rule): write \"train_micro_batch_size_per_gpu\": N, or pass --micro-batch-size N");
  }
  if (tbs > 0 && mbs > 0 && gas > 0 && tbs == mbs * gas * W) return;
  std::ostringstream os;
  auto item = [&](const char* name, const char* abbr, int64_t v, bool given, const std::string& how) {
    os << name << " (" << abbr << ")";
    if (given) os << " = " << v;
    else if (v >= 1) os << " = " << v << " (derived: " << how << ")";
    else os << " derived as " << how << ", which is below 1";
  };
  os << "batch sizes are inconsistent: ";
  item("train_batch_size", "TBS", tbs, t_given, t_how);
  os << ", ";
  item("train_micro_batch_size_per_gpu", "MBS", mbs, m_given, m_how);
  os << ", ";
  item("gradient_accumulation_steps", "GAS", gas, g_given, g_how);
  os << ", data-parallel size (W) = " << W << "; DeepSpeed requires TBS == MBS * GAS * W.";
  // Consistent choices, each with every value >= 1 (never GAS = 0 or MBS = 0).
  const int64_t m = std::max<int64_t>(1, mbs), g = std::max<int64_t>(1, gas), w = W;
  os << " Consistent choices: TBS = " << m * g * w;
  if (m_given && g_given) os << " (keeping MBS and GAS)";
  else os << " (MBS = " << m << ", GAS = " << g << ")";
  if (t_given && m_given && tbs % (w * m) == 0 && tbs / (w * m) >= 1)
    os << ", or GAS = " << tbs / (w * m) << " (keeping TBS and MBS)";
  if (t_given && g_given && tbs % (w * g) == 0 && tbs / (w * g) >= 1)
    os << ", or MBS = " << tbs / (w * g) << " (keeping TBS and GAS)";
  else if (t_given && !g_given && tbs % w == 0 && tbs / w >= 1 && tbs / w != mbs)
    os << ", or MBS = " << tbs / w << " with GAS = 1 (keeping TBS)";
  if (m_given) os << ", or omit train_batch_size and let it be derived.";
  else os << ", or give train_micro_batch_size_per_gpu (or --micro-batch-size).";
  throw Error(os.str());
}

namespace {

bool is_auto(const json& v) { return v.is_string() && v.get<std::string>() == "auto"; }

// Drops "auto" at every depth of a DeepSpeed pydantic block: the field's default applies.
void drop_auto(json& obj) {
  if (!obj.is_object()) return;
  for (auto it = obj.begin(); it != obj.end();) {
    if (is_auto(it.value())) {
      it = obj.erase(it);
    } else {
      drop_auto(it.value());
      ++it;
    }
  }
}

const std::vector<std::string> kKnownOptimizers = {"adam", "adamw", "lamb", "sgd", "adagrad", "lion"};

// resolve_auto with the problems in a Reader (errors by path, warnings, notes).
json resolve_flags(const json& in, const AutoContext& ctx, Reader& r) {
  json j = in;
  // key path -> (value from the flags, flag name); a missing value means "cannot resolve".
  // check_mismatch: an explicit value that differs from the flag is an error (HF's rule for
  // values that come from TrainingArguments; not for values derived from the model size).
  // fill_absent: a given flag also sets the key when the file leaves it out.
  auto fill = [&](json& obj, const std::string& key, const std::string& path, const std::optional<json>& value,
                  const std::string& flag, bool check_mismatch = true, bool fill_absent = false) {
    if (!obj.is_object()) return;
    if (!obj.contains(key)) {
      if (fill_absent && value) {
        obj[key] = *value;
        r.notes.push_back(path + " = " + show(*value) + ": from " + flag + " (the file leaves it out)");
      }
      return;
    }
    json& v = obj[key];
    if (is_auto(v)) {
      if (value) {
        v = *value;
      } else {
        r.err(path, "\"auto\" cannot be resolved: pass " + flag + " or write a value");
        obj.erase(key);  // reported once, here
      }
    } else if (!check_mismatch || !value) {
      return;
    } else if ((v.is_number() && value->is_number() && v.get<double>() != value->get<double>()) ||
               (v.is_array() && value->is_array() && v != *value)) {
      r.err_text(path, path + " = " + show(v) + " disagrees with " + flag + " " + show(*value) +
                           "; set it to \"auto\" or drop the flag");
    } else if (v.is_boolean() && value->is_boolean() && v != *value) {
      r.err_text(path, path + " = " + show(v) + " disagrees with " + flag + "; set it to \"auto\" or drop the flag");
    }
  };
  auto opt = [](auto o) -> std::optional<json> { return o ? std::optional<json>(json(*o)) : std::nullopt; };
  // Batch keys: "auto" without a flag means "derive it from the triangle" (removed here).
  for (auto [key, val, flag] : {std::tuple{"train_micro_batch_size_per_gpu", opt(ctx.micro_batch), "--micro-batch-size"},
                                std::tuple{"train_batch_size", opt(ctx.global_batch), "--global-batch-size"}}) {
    if (j.contains(key) && is_auto(j[key]) && !val) j.erase(key);
    else fill(j, key, key, val, flag, true, true);
  }
  if (j.contains("gradient_accumulation_steps") && is_auto(j["gradient_accumulation_steps"]))
    j.erase("gradient_accumulation_steps");  // derived by the batch triangle
  fill(j, "gradient_clipping", "gradient_clipping", opt(ctx.clip_grad), "--clip-grad", true, true);
  if (j.contains("optimizer") && j["optimizer"].is_object()) {
    json& o = j["optimizer"];
    const std::string t = o.contains("type") && o["type"].is_string() ? detail::lower(o["type"].get<std::string>()) : "";
    const bool known = std::find(kKnownOptimizers.begin(), kKnownOptimizers.end(), t) != kKnownOptimizers.end();
    const bool has_betas = t == "adam" || t == "adamw" || t == "lamb" || t == "lion";
    const bool has_eps = t == "adam" || t == "adamw" || t == "lamb" || t == "adagrad";
    std::optional<json> betas;
    if (ctx.beta1 && ctx.beta2) betas = json::array({*ctx.beta1, *ctx.beta2});
    const bool any_flag = ctx.lr || ctx.weight_decay || (has_betas && betas) || (has_eps && ctx.eps) ||
                          (t == "sgd" && ctx.sgd_momentum);
    if (known && any_flag && !o.contains("params")) o["params"] = json::object();
    if (o.contains("params") && o["params"].is_object()) {
      json& p = o["params"];
      fill(p, "lr", "optimizer.params.lr", opt(ctx.lr), "--lr", true, known);
      fill(p, "betas", "optimizer.params.betas", betas, "--adam-beta1 and --adam-beta2", true, known && has_betas);
      fill(p, "eps", "optimizer.params.eps", opt(ctx.eps), "--adam-eps", true, known && has_eps);
      fill(p, "weight_decay", "optimizer.params.weight_decay", opt(ctx.weight_decay), "--weight-decay", true, known);
      if (t == "sgd") fill(p, "momentum", "optimizer.params.momentum", opt(ctx.sgd_momentum), "--sgd-momentum", true, true);
    }
  }
  if (j.contains("scheduler") && j["scheduler"].is_object()) {
    json& sc = j["scheduler"];
    const std::string t = sc.contains("type") && sc["type"].is_string() ? sc["type"].get<std::string>() : "";
    const bool has_warmup = t == "WarmupLR" || t == "WarmupDecayLR" || t == "WarmupCosineLR";
    const bool has_total = t == "WarmupDecayLR" || t == "WarmupCosineLR";
    if (ctx.warmup_iters && (t == "OneCycle" || t == "LRRangeTest"))
      r.err("scheduler.type", "\"" + t + "\" has no warmup, so --lr-warmup-iters cannot set one; drop the flag");
    if (((has_warmup && ctx.warmup_iters) || (has_total && ctx.train_iters)) && !sc.contains("params"))
      sc["params"] = json::object();
    if (sc.contains("params") && sc["params"].is_object()) {
      json& p = sc["params"];
      if (p.contains("warmup_min_lr") && is_auto(p["warmup_min_lr"])) p["warmup_min_lr"] = 0.0;  // HF
      fill(p, "warmup_max_lr", "scheduler.params.warmup_max_lr", opt(ctx.lr), "--lr");
      fill(p, "warmup_num_steps", "scheduler.params.warmup_num_steps", opt(ctx.warmup_iters), "--lr-warmup-iters", true,
           has_warmup);
      fill(p, "total_num_steps", "scheduler.params.total_num_steps", opt(ctx.train_iters), "--train-iters", true,
           has_total);
    }
  }
  if (j.contains("zero_optimization") && j["zero_optimization"].is_object()) {
    json& z = j["zero_optimization"];
    std::optional<json> h2, h09, h10;
    if (ctx.hidden) {
      const int64_t h = *ctx.hidden;
      h2 = json(h * h), h09 = json(static_cast<int64_t>(0.9 * static_cast<double>(h * h))), h10 = json(10 * h);
    }
    // HF's rule for three bucket sizes, from the model width. Where the width is not known
    // (config check without --hidden-size or --model) DeepSpeed alone drops "auto" and uses
    // the default: so does deepmpi, saying so.
    const std::tuple<const char*, std::optional<json>*, const char*> hf[] = {
        {"reduce_bucket_size", &h2, "h^2"},
        {"stage3_prefetch_bucket_size", &h09, "0.9 h^2"},
        {"prefetch_bucket_size", &h09, "0.9 h^2"},
        {"stage3_param_persistence_threshold", &h10, "10 h"},
        {"param_persistence_threshold", &h10, "10 h"}};
    for (auto [k, val, rule] : hf) {
      if (!z.contains(k) || !is_auto(z[k])) continue;
      if (*val) {
        z[k] = **val;
      } else {
        r.warnings.push_back(std::string("zero_optimization.") + k + " = \"auto\": the model width is not known here, "
                             "so DeepSpeed's default applies, as DeepSpeed alone does (pass --hidden-size or --model "
                             "for the HF Trainer's " + rule + ")");
        z.erase(k);
      }
    }
    drop_auto(z);  // any other "auto" in the block and its sub-blocks (offload_param.buffer_size, ...)
  }
  for (auto [block, on] : {std::pair{"fp16", ctx.fp16}, std::pair{"bf16", ctx.bf16}, std::pair{"bfloat16", ctx.bf16}}) {
    if (j.contains(block) && j[block].is_object() && j[block].contains("enabled") && is_auto(j[block]["enabled"]))
      j[block]["enabled"] = on;  // HF: from --fp16 / --bf16
  }
  // In DeepSpeed's pydantic blocks any other "auto" means "the default" (semantics §3.4).
  for (const char* block : {"fp16", "bf16", "bfloat16", "comms_logger", "tensorboard", "csv_monitor", "wandb", "comet",
                            "tensor_parallel", "timers", "hybrid_engine", "compile", "weight_quantization"}) {
    if (j.contains(block) && j[block].is_object()) drop_auto(j[block]);
  }
  return j;
}

void finish(Reader& r, ConfigCheck& out) {
  // ordered by JSON path; one message per path (the first found: an "auto" that cannot be
  // resolved is not reported again as "required")
  std::stable_sort(r.errors.begin(), r.errors.end(), [](const Problem& a, const Problem& b) { return a.path < b.path; });
  std::set<std::string> seen_path, seen_text;
  for (const auto& e : r.errors) {
    if (!e.path.empty() && !seen_path.insert(e.path).second) continue;
    if (!seen_text.insert(e.text).second) continue;
    out.errors.push_back(e.text);
  }
  auto unique = [](const std::vector<std::string>& v) {
    std::vector<std::string> o;
    std::set<std::string> seen;
    for (const auto& s : v)
      if (seen.insert(s).second) o.push_back(s);
    return o;
  };
  out.warnings = unique(r.warnings);
  out.notes = unique(r.notes);
  out.config.warnings = out.warnings;
  out.config.notes = out.notes;
}

// The key of a not-implemented entry, for ordering: "not supported yet: <path> = ..." -> path.
std::string entry_path(const std::string& s) {
  static const std::string prefix = "not supported yet: ";
  size_t b = s.rfind(prefix, 0) == 0 ? prefix.size() : 0;
  size_t e = s.find_first_of(" (", b);
  return s.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

void read_top_level_keys(Reader& r, const json& j, bool strict) {
  std::vector<std::string> known = kCoreTopLevel;
  for (const auto& k : detail::block_top_level_keys()) known.push_back(k);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (std::find(known.begin(), known.end(), k) != known.end()) continue;
    const std::string kt = detail::key_text(k);
    const char* why = nullptr;
    for (auto [key, hint] : kNotDeepSpeed)
      if (k == key) why = hint;
    if (why) {
      if (strict) r.err(kt, std::string("not a DeepSpeed key (--strict makes unknown keys errors); ") + why);
      else r.warnings.push_back(kt + ": not a DeepSpeed key; ignored, as DeepSpeed does (" + why + ")");
      continue;
    }
    const std::string near = detail::near_miss(k, known);
    if (!near.empty()) {
      r.err(kt, "unknown key; did you mean '" + near + "'?");
    } else if (strict) {
      r.err(kt, "unknown key (--strict makes unknown top-level keys errors); remove it");
    } else {
      r.warnings.push_back(kt + ": unknown top-level key; ignored, as DeepSpeed does (--strict makes it an error)");
    }
  }
}

void read_comms_logger(Reader& r, const json& j, CommsLoggerConfig& out) {
  const json& cl = j.at("comms_logger");
  const std::string p = "comms_logger";
  r.check_keys(cl, p, {"enabled", "verbose", "prof_all", "prof_ops", "debug"});
  r.get_bool(cl, "enabled", p, out.enabled);
  r.get_bool(cl, "verbose", p, out.verbose);
  r.get_bool(cl, "prof_all", p, out.prof_all);
  r.get_bool(cl, "debug", p, out.debug);
  if (!cl.contains("prof_ops")) return;
  static const std::vector<std::string> ops = {"all_reduce", "reduce_scatter", "all_gather", "all_gatherv",
                                               "broadcast", "all_to_all", "all_to_allv", "send", "recv", "barrier"};
  const json& po = cl.at("prof_ops");
  if (!po.is_array()) {
    r.err(p + ".prof_ops", "expected a list of op names, got " + show(po));
    return;
  }
  for (const auto& o : po) {
    if (!o.is_string()) {
      r.err(p + ".prof_ops", "expected op names (strings), got " + show(o));
      continue;
    }
    std::string name = o.get<std::string>();
    if (std::find(ops.begin(), ops.end(), name) == ops.end()) {
      std::string hint = detail::suggest(name, ops);
      r.err(p + ".prof_ops", "unknown op " + show(o) + (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
    } else {
      out.prof_ops.push_back(name);
    }
  }
}

ConfigCheck check_impl(const json& in, int dp_size, const AutoContext& ctx, std::vector<Problem> pre) {
  ConfigCheck out;
  Reader r;
  r.errors = std::move(pre);
  DsConfig& c = out.config;
  if (!in.is_object()) {
    r.err_text("", "the top level must be a JSON object {...}, got " + show(in));
    finish(r, out);
    return out;
  }
  c.raw = in;
  const json j = resolve_flags(in, ctx, r);
  read_top_level_keys(r, j, ctx.strict);
  detail::read_blocks(r, j, c);

  const std::set<std::string> batch_keys = {"train_batch_size", "train_micro_batch_size_per_gpu",
                                            "gradient_accumulation_steps"};
  // Bounds on what sizes work or memory (issue 19: gradient_accumulation_steps 2^40 passed and step 1
  // never ended): 2^16 micro-batches per step, 2^16 samples per micro-batch, 2^31 per global batch.
  for (const char* key : {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"}) {
    const bool tbs = std::string(key) == "train_batch_size";
    int64_t& out_v = tbs ? c.train_batch_size
                     : std::string(key) == "gradient_accumulation_steps" ? c.grad_accum
                                                                          : c.micro_batch;
    r.get_int(j, key, "", out_v, 1, tbs ? int64_t{1} << 31 : int64_t{1} << 16);
  }
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
      r.err("zero_optimization", "expected an object {\"stage\": 0, ...}, got " + show(z));
    }
    c.zero_stage = c.zero.stage;
  }
  if (r.object(j, "comms_logger", "")) read_comms_logger(r, j, c.comms_logger);
  if (r.object(j, "optimizer", "")) read_optimizer(r, j.at("optimizer"), c.optimizer);
  if (r.object(j, "scheduler", "")) read_scheduler(r, j.at("scheduler"), c.scheduler, c.optimizer);

  // The batch triangle, in the same pass as everything else: skipped only when a batch key
  // itself could not be read.
  bool batch_readable = true;
  for (const auto& e : r.errors)
    if (batch_keys.count(e.path)) batch_readable = false;
  if (batch_readable) {
    if (c.train_batch_size <= 0 && c.micro_batch <= 0) {
      const bool was_auto = (in.contains("train_batch_size") && is_auto(in.at("train_batch_size"))) ||
                            (in.contains("train_micro_batch_size_per_gpu") && is_auto(in.at("train_micro_batch_size_per_gpu")));
      if (was_auto)
        r.err("train_micro_batch_size_per_gpu",
              "\"auto\" and no flag sets the batch: pass --micro-batch-size N (and --global-batch-size N for "
              "train_batch_size), or write a value");
      else
        r.err("train_micro_batch_size_per_gpu",
              "missing, and so is train_batch_size (DeepSpeed: \"Either train_batch_size or "
              "train_micro_batch_size_per_gpu needs to be provided\"): write \"train_micro_batch_size_per_gpu\": N, or "
              "pass --micro-batch-size N");
    } else {
      try {
        resolve_batch_triangle(c.train_batch_size, c.micro_batch, c.grad_accum, dp_size);
      } catch (const Error& e) {
        r.err("train_batch_size", e.what());
      }
    }
  }
  detail::apply_megatron_flags(r, j, c, ctx);

  for (const auto& t : r.todo) c.unimplemented_keys.push_back(t.text);
  finish(r, out);
  out.unimplemented = unimplemented_for_training(c);
  return out;
}

}  // namespace

json resolve_auto(const json& in, const AutoContext& ctx, std::vector<std::string>& errors) {
  Reader r;
  json j = resolve_flags(in, ctx, r);
  for (const auto& e : r.errors) errors.push_back(e.text);
  return j;
}

ConfigCheck check_ds_config(const json& j, int dp_size, const AutoContext& ctx) { return check_impl(j, dp_size, ctx, {}); }

ConfigCheck check_ds_config_file(const std::string& path, int dp_size, const AutoContext& ctx) {
  namespace fs = std::filesystem;
  const std::string name = "'" + path + "'";
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st)) throw Error("ds_config " + name + " does not exist");
  if (fs::is_directory(st)) throw Error("ds_config " + name + " is a directory, not a file; give the JSON file itself");
  std::ifstream f(path, std::ios::binary);
  if (!f.good()) throw Error("cannot read ds_config " + name + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error("cannot read ds_config " + name + ": " + std::strerror(errno));
  std::vector<TextProblem> dups;
  const json j = parse_config_text(ss.str(), name, dups);
  std::vector<Problem> pre;
  for (auto& d : dups) pre.push_back({d.path, d.message});
  return check_impl(j, dp_size, ctx, std::move(pre));
}

std::string problems_text(const ConfigCheck& c) {
  std::ostringstream os;
  const size_t n = c.errors.size(), m = c.unimplemented.size();
  os << n << " error" << (n == 1 ? "" : "s") << " in the ds_config:";
  for (const auto& e : c.errors) os << "\n  - " << e;
  if (m > 0) {
    os << "\nand " << m << " valid DeepSpeed setting" << (m == 1 ? "" : "s")
       << " this build does not implement (listed now so that nothing waits for another run):";
    for (const auto& u : c.unimplemented) os << "\n  * " << u;
  }
  return os.str();
}

DsConfig parse_ds_config(const json& in, int dp_size, const AutoContext& ctx) {
  ConfigCheck c = check_ds_config(in, dp_size, ctx);
  if (!c.errors.empty()) throw Error(problems_text(c));
  return std::move(c.config);
}

DsConfig load_ds_config(const std::string& path, int dp_size, const AutoContext& ctx) {
  ConfigCheck c = check_ds_config_file(path, dp_size, ctx);
  if (!c.errors.empty()) throw Error("'" + path + "': " + problems_text(c));
  return std::move(c.config);
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
  std::vector<std::string> out = c.unimplemented_keys;  // found while reading the file
  // offload_optimizer: "nvme" spills the optimizer states (and fp32 masters) at stages 1-3; "cpu"
  // is where a host-only build keeps them already (the banner says so). offload_param: "cpu" the
  // same; "nvme" at stage 3 reads each unit's partition from the spilled fp32 masters ahead of its
  // gather, so it goes with offload_optimizer "nvme".
  if (c.zero.offload_param.device == "nvme" && c.zero.stage == 3 && c.zero.offload_optimizer.device != "nvme")
    out.push_back("not supported yet: zero_optimization.offload_param.device = \"nvme\" with offload_optimizer.device "
                  "= \"" + c.zero.offload_optimizer.device + "\" (the parameter partitions are read from the spilled "
                  "fp32 masters): set offload_optimizer.device to \"nvme\" as well, or offload_param.device to \"cpu\"");
  if (c.zero.offload_optimizer.device == "nvme" && c.zero.stage == 0)
    out.push_back("not supported: zero_optimization.offload_optimizer.device = \"nvme\" at stage 0 (the spilled "
                  "states are ZeRO's partitions): set zero_optimization.stage to 1, 2 or 3");
  if (c.zero.offload_optimizer.device == "nvme" && c.zero.offload_optimizer.ratio < 1.0)
    out.push_back("not supported yet: zero_optimization.offload_optimizer.ratio < 1 (partial offload): every "
                  "optimizer state is spilled; write 1.0 or remove it");
  detail::blocks_unimplemented(c, out);
  // one list, ordered by JSON path, each entry once
  std::stable_sort(out.begin(), out.end(),
                   [](const std::string& a, const std::string& b) { return entry_path(a) < entry_path(b); });
  out.erase(std::unique(out.begin(), out.end()), out.end());
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
    } else if (sc.type == "Megatron") {
      p = {{"lr_decay_style", sc.lr_decay_style}, {"max_lr", sc.max_lr}, {"min_lr", sc.min_lr},
           {"lr_warmup_init", sc.lr_warmup_init}, {"lr_warmup_iters", sc.lr_warmup_iters},
           {"lr_decay_iters", sc.lr_decay_iters}, {"samples_per_iteration", sc.samples_per_iteration},
           {"weight_decay_incr_style", sc.weight_decay_incr_style}, {"start_weight_decay", sc.start_weight_decay},
           {"end_weight_decay", sc.end_weight_decay}, {"wd_incr_iters", sc.wd_incr_iters}};
      if (sc.lr_decay_style == "WSD")
        p["lr_wsd_decay_style"] = sc.lr_wsd_decay_style, p["lr_wsd_decay_iters"] = sc.lr_wsd_decay_iters;
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
