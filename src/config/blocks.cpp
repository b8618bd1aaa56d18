// Readers for the blocks of blocks.hpp: one field list per block, shared by reading and printing.
#include "src/config/blocks.hpp"

#include <limits>

#include "src/config/ds_config.hpp"
#include "src/config/reader.hpp"

namespace dmpi::config::detail {

namespace {

constexpr int64_t kBig = INT64_MAX / 4;
constexpr double kHuge = 1e30;

std::vector<Field> fields(Fp16Config& f) {
  return {fbool("enabled", f.enabled),
          fbool("auto_cast", f.auto_cast),
          freal("loss_scale", f.loss_scale, 0.0, 3e38),
          fint("initial_scale_power", f.initial_scale_power, 0, 126),
          fint("loss_scale_window", f.loss_scale_window, 1, kBig),
          fint("hysteresis", f.hysteresis, 1, kBig),
          fbool("consecutive_hysteresis", f.consecutive_hysteresis),
          freal("min_loss_scale", f.min_loss_scale, 0.0, 3e38),
          fbool("fp16_master_weights_and_grads", f.fp16_master_weights_and_grads),
          fbool("raise_error_at_min_scale", f.raise_error_at_min_scale)};
}
std::vector<Field> fields(Bf16Config& b) {
  return {fbool("enabled", b.enabled), fbool("immediate_grad_update", b.immediate_grad_update),
          fbool("check_grad_overflow", b.check_grad_overflow),
          fbool("bf16_master_weights_and_grads", b.bf16_master_weights_and_grads),
          fbool("bf16_optimizer_states", b.bf16_optimizer_states)};
}
std::vector<Field> fields(AioConfig& a) {
  return {fint("block_size", a.block_size, 1, kBig),        fint("queue_depth", a.queue_depth, 1, 1 << 20),
          fint("intra_op_parallelism", a.intra_op_parallelism, 1, 4096), fbool("single_submit", a.single_submit),
          fbool("overlap_events", a.overlap_events),           fbool("use_gds", a.use_gds)};
}
std::vector<Field> fields(ActivationCheckpointingConfig& a) {
  return {fbool("partition_activations", a.partition_activations), fbool("cpu_checkpointing", a.cpu_checkpointing),
          fbool("contiguous_memory_optimization", a.contiguous_memory_optimization),
          fint("number_checkpoints", a.number_checkpoints, 1, kBig, true),
          fbool("synchronize_checkpoint_boundary", a.synchronize_checkpoint_boundary), fbool("profile", a.profile)};
}
std::vector<Field> fields(PipelineConfig& p) {
  return {fint("stages", p.stages, 1, 1 << 20),  // "auto" handled by the reader
          fstr("partition", p.partition),
          fbool("seed_layers", p.seed_layers),
          fint("activation_checkpoint_interval", p.activation_checkpoint_interval, 0, kBig),
          fbool("pipe_partitioned", p.pipe_partitioned),
          fbool("grad_partitioned", p.grad_partitioned),
          fbool("use_reentrant", p.use_reentrant)};
}
std::vector<Field> fields(TensorParallelConfig& t) {
  return {fint("autotp_size", t.autotp_size, 0, 1 << 20), fbool("tp_overlap_comm", t.tp_overlap_comm),
          fbool("keep_module_on_host", t.keep_module_on_host)};
}
std::vector<Field> tp_fields(TensorParallelConfig& t) {
  return {fint("tp_size", t.tp_size, 1, 1 << 20), fint("tp_grain_size", t.tp_grain_size, 1, kBig)};
}
std::vector<Field> fields(MoeConfig& m) {
  return {fbool("enabled", m.enabled),
          fint("num_experts", m.num_experts, 1, 1 << 20),
          fint("ep_size", m.ep_size, 1, 1 << 20),
          fint("top_k", m.top_k, 1, 1 << 20),
          freal("capacity_factor", m.capacity_factor, 0.0, 1e6),
          freal("eval_capacity_factor", m.eval_capacity_factor, 0.0, 1e6),
          fint("min_capacity", m.min_capacity, 0, kBig),
          fchoice("noisy_gate_policy", m.noisy_gate_policy, {"Jitter", "RSample"}, true),
          fbool("drop_tokens", m.drop_tokens),
          fbool("use_rts", m.use_rts),
          fbool("use_residual", m.use_residual)};
}
std::vector<Field> fields(FlopsProfilerConfig& f) {
  return {fbool("enabled", f.enabled),
          freal("recompute_fwd_factor", f.recompute_fwd_factor, 0.0, 1e6),
          fint("profile_step", f.profile_step, 1, kBig),
          fint("module_depth", f.module_depth, -1, 1 << 20),
          fint("top_modules", f.top_modules, 1, 1 << 20),
          fbool("detailed", f.detailed),
          fstr("output_file", f.output_file, true)};
}
std::vector<Field> fields(MonitorFileConfig& m) {
  return {fbool("enabled", m.enabled), fstr("output_path", m.output_path), fstr("job_name", m.job_name)};
}
std::vector<Field> fields(WandbConfig& w) {
  return {fbool("enabled", w.enabled), fstr("group", w.group, true), fstr("team", w.team, true),
          fstr("project", w.project)};
}
std::vector<Field> fields(CometConfig& c) {
  return {fbool("enabled", c.enabled),
          fint("samples_log_interval", c.samples_log_interval, 1, kBig),
          fstr("project", c.project, true),
          fstr("workspace", c.workspace, true),
          fstr("api_key", c.api_key, true),
          fstr("experiment_name", c.experiment_name, true),
          fstr("experiment_key", c.experiment_key, true),
          fint("online", c.online, 0, 1, true),
          fstr("mode", c.mode, true)};
}
std::vector<Field> fields(CheckpointConfig& c) {
  return {fchoice("tag_validation", c.tag_validation, {"Ignore", "Warn", "Fail"}),
          fbool("load_universal", c.load_universal), fbool("use_node_local_storage", c.use_node_local_storage),
          fbool("checkpoint_serialization", c.checkpoint_serialization)};
}
const std::vector<std::string> kDtypes = {"fp32", "bf16", "fp16"};
std::vector<Field> top_fields(MiscConfig& m) {
  return {fchoice("communication_data_type", m.communication_data_type, kDtypes, true),
          fchoice("seq_parallel_communication_data_type", m.seq_parallel_communication_data_type, kDtypes),
          fbool("prescale_gradients", m.prescale_gradients),
          freal("gradient_predivide_factor", m.gradient_predivide_factor, 1e-30, kHuge),
          fbool("wall_clock_breakdown", m.wall_clock_breakdown),
          fbool("memory_breakdown", m.memory_breakdown),
          fbool("dump_state", m.dump_state),
          fbool("sparse_gradients", m.sparse_gradients),
          fbool("zero_allow_untested_optimizer", m.zero_allow_untested_optimizer),
          fbool("zero_force_ds_cpu_optimizer", m.zero_force_ds_cpu_optimizer),
          fbool("dataloader_drop_last", m.dataloader_drop_last),
          fbool("disable_allgather", m.disable_allgather),
          fbool("managed_gradient_accumulation", m.managed_gradient_accumulation),
          fbool("use_data_before_expert_parallelism", m.use_data_before_expert_parallelism),
          fbool("graph_harvesting", m.graph_harvesting),
          fint("sequence_parallel_size", m.sequence_parallel_size, 1, 1 << 20),
          fint("vocabulary_size", m.vocabulary_size, 1, kBig, true)};
}

// fp16 settings that have no meaning for bf16 (DeepSpeed >= 0.17.1 rejects them inside bf16).
const std::vector<std::string> kFp16Only = {"loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
                                            "consecutive_hysteresis", "min_loss_scale", "auto_cast",
                                            "fp16_master_weights_and_grads", "raise_error_at_min_scale"};

// Training add-ons DeepSpeed knows that deepmpi does not implement. A block that asks for
// nothing (its switch off, or empty) is accepted; one that asks for its feature is "valid, not
// implemented" (exit 3), with the way to turn that block off, which differs per block.
struct AddOn {
  const char* key;
  const char* what;  // the feature
  enum Switch { Enabled, Compile, Compression, Presence } kind;
};
const AddOn kAddOns[] = {
    {"amp", "NVIDIA Apex AMP", AddOn::Enabled},
    {"autotuning", "the DeepSpeed autotuner", AddOn::Enabled},
    {"elasticity", "elastic training", AddOn::Enabled},
    {"compression_training", "compression training (quantization, pruning, layer reduction)", AddOn::Compression},
    {"data_efficiency", "data efficiency (curriculum sampling, random-LTD)", AddOn::Enabled},
    {"curriculum_learning", "curriculum learning", AddOn::Enabled},
    {"progressive_layer_drop", "progressive layer drop", AddOn::Enabled},
    {"sparse_attention", "sparse attention", AddOn::Presence},
    {"hybrid_engine", "the hybrid (RLHF) engine", AddOn::Enabled},
    {"nebula", "Nebula checkpointing", AddOn::Enabled},
    {"compile", "DeepCompile", AddOn::Compile},
    {"torch_autocast", "torch autocast", AddOn::Enabled},
    {"weight_quantization", "weight quantization", AddOn::Presence},
    {"quantize_training", "quantize training (MoQ)", AddOn::Enabled},
    {"eigenvalue", "eigenvalue computation", AddOn::Enabled},
    {"datastates", "the DataStates checkpoint engine", AddOn::Enabled},
    {"expert_parallel", "expert parallelism", AddOn::Enabled}};

// DeepSpeed's CompileConfig fields (deepspeed/compile/config.py).
const std::vector<std::string> kCompileKeys = {
    "deepcompile", "free_activation", "free_activation_threshold", "offload_activation", "offload_opt_states",
    "double_buffer", "symmetric_memory", "debug_log", "offload_parameters", "sync_before_reduce", "sync_after_reduce",
    "sync_before_allgather", "sync_after_allgather", "keep_int_input_tensors", "keep_all_input_tensors", "passes"};
// compression_training's techniques; each has shared_parameters.enabled (layer_reduction: enabled).
const std::vector<std::string> kCompressionTechniques = {"weight_quantization", "activation_quantization",
                                                         "sparse_pruning", "row_pruning", "head_pruning",
                                                         "channel_pruning", "layer_reduction"};

bool is_false_or_absent(const json& obj, const char* key) {
  return !obj.contains(key) || (obj.at(key).is_boolean() && !obj.at(key).get<bool>());
}

void read_addon(Reader& r, const json& j, const AddOn& a) {
  const std::string key = a.key;
  const json& v = j.at(key);
  if (!v.is_object()) {
    r.err(key, "expected an object {...}, got " + show(v) + (a.kind == AddOn::Enabled ? " (write {\"enabled\": false})" : ""));
    return;
  }
  switch (a.kind) {
    case AddOn::Enabled:
      if (v.contains("enabled") && !v.at("enabled").is_boolean() && !Reader::is_auto(v.at("enabled"))) {
        r.err(key + ".enabled", "expected true or false, got " + show(v.at("enabled")));
      } else if (is_false_or_absent(v, "enabled") || Reader::is_auto(v.at("enabled"))) {
        r.warnings.push_back(key + " is disabled; deepmpi does not implement it and ignores the block");
      } else {
        r.unimplemented(key + ".enabled", json(true),
                        std::string(a.what) + " is not implemented; set \"enabled\": false or remove the block");
      }
      return;
    case AddOn::Compile:
      r.check_keys(v, key, kCompileKeys);
      if (v.contains("deepcompile") && !v.at("deepcompile").is_boolean()) {
        r.err(key + ".deepcompile", "expected true or false, got " + show(v.at("deepcompile")));
      } else if (is_false_or_absent(v, "deepcompile")) {
        r.notes.push_back(key + ": DeepCompile is off (\"deepcompile\": false or absent); the block asks for nothing");
      } else {
        r.unimplemented(key + ".deepcompile", json(true),
                        "DeepCompile is not implemented; set \"deepcompile\": false or remove the block (compile has "
                        "no \"enabled\" key)");
      }
      return;
    case AddOn::Compression: {
      std::vector<std::string> on;
      for (auto it = v.begin(); it != v.end(); ++it) {
        const std::string& t = it.key();
        if (std::find(kCompressionTechniques.begin(), kCompressionTechniques.end(), t) == kCompressionTechniques.end()) {
          std::string hint = suggest(t, kCompressionTechniques);
          r.warnings.push_back(key + "." + key_text(t) + ": not a compression technique DeepSpeed knows; ignored, as "
                               "DeepSpeed does" + (hint.empty() ? "" : " (did you mean '" + key + "." + hint + "'?)"));
          continue;
        }
        if (!it.value().is_object()) {
          r.err(key + "." + t, "expected an object {...}, got " + show(it.value()));
          continue;
        }
        const json& tech = it.value();
        if (t == "layer_reduction") {
          if (!is_false_or_absent(tech, "enabled")) on.push_back(key + ".layer_reduction.enabled");
        } else if (tech.contains("shared_parameters") && tech.at("shared_parameters").is_object() &&
                   !is_false_or_absent(tech.at("shared_parameters"), "enabled")) {
          on.push_back(key + "." + t + ".shared_parameters.enabled");
        }
      }
      for (const auto& p : on)
        r.unimplemented(p, json(true),
                        "compression training is not implemented; set it to false or remove the block (compression_training "
                        "has no top-level \"enabled\": each technique has shared_parameters.enabled, layer_reduction "
                        "has enabled)");
      if (on.empty()) r.notes.push_back(key + ": every technique is off; the block asks for nothing");
      return;
    }
    case AddOn::Presence:
      if (v.empty()) {
        r.notes.push_back(key + ": {} asks for nothing");
      } else {
        r.unimplemented(key, v, std::string(a.what) + " is not implemented; remove the block (DeepSpeed has no "
                                "\"enabled\" switch for " + key + ": the block's presence turns it on)");
      }
      return;
  }
}

}  // namespace

const std::vector<std::string>& block_top_level_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k = {"fp16", "bf16", "bfloat16", "aio", "activation_checkpointing", "pipeline",
                                  "tensor_parallel", "moe", "flops_profiler", "tensorboard", "csv_monitor",
                                  "wandb", "comet", "checkpoint", "data_types", "timers",
                                  "seq_parallel_comm_data_type"};
    MiscConfig m;
    for (const auto& f : top_fields(m)) k.push_back(f.key);
    for (const auto& a : kAddOns) k.push_back(a.key);
    return k;
  }();
  return keys;
}

void read_blocks(Reader& r, const json& j0, DsConfig& c) {
  json j = j0;
  // Legacy spellings first (warning, value moved; old + new together is an error).
  auto legacy = [&](const char* old_key, const char* new_key) {
    if (!j.contains(old_key)) return;
    if (j.contains(new_key))
      r.err(old_key, std::string("legacy spelling of '") + new_key + "', given together with it; keep only '" + new_key + "'");
    else
      r.warnings.push_back(std::string(old_key) + " is the legacy spelling of " + new_key), j[new_key] = j[old_key];
    j.erase(old_key);
  };
  legacy("bfloat16", "bf16");
  legacy("seq_parallel_comm_data_type", "seq_parallel_communication_data_type");

  // Top-level scalars. communication_data_type: DeepSpeed raises on anything else ("bfp16" is
  // a real typo in the wild: the choice error suggests "bf16").
  {
    const auto fl = top_fields(c.misc);
    json top = json::object();  // the top-level scalars alone (the blocks are read below)
    for (const auto& f : fl)
      if (j.contains(f.key)) top[f.key] = j.at(f.key);
    read_fields(r, top, "", fl);
  }
  if (r.object(j, "fp16", "")) read_fields(r, j.at("fp16"), "fp16", fields(c.fp16));
  if (r.object(j, "bf16", "")) {
    json b = j.at("bf16");
    for (const auto& k : kFp16Only)
      if (b.contains(k)) {
        r.err("bf16." + k, "an fp16 setting: bf16 needs no loss scaling; remove it (DeepSpeed >= 0.17.1 rejects it too)");
        b.erase(k);
      }
    read_fields(r, b, "bf16", fields(c.bf16));
  }
  if (c.fp16.enabled && c.bf16.enabled) r.err("bf16.enabled", "fp16 and bf16 are both enabled; enable at most one");
  if (c.fp16.loss_scale == 0.0 && j.contains("fp16") && j["fp16"].is_object() && j["fp16"].contains("min_loss_scale") &&
      c.fp16.min_loss_scale <= 0.0)
    r.err("fp16.min_loss_scale", "must be > 0 with a dynamic loss scale (loss_scale 0)");
  if (c.bf16.bf16_optimizer_states && !c.bf16.bf16_master_weights_and_grads)
    r.err("bf16.bf16_optimizer_states", "needs bf16.bf16_master_weights_and_grads: true");

  if (r.object(j, "aio", "")) {
    json a = j.at("aio");
    if (a.contains("thread_count")) {  // the docs' name; DeepSpeed ignores it silently
      if (a.contains("intra_op_parallelism"))
        r.err("aio.thread_count", "old name of aio.intra_op_parallelism, given together with it; keep only intra_op_parallelism");
      else
        r.warnings.push_back("aio.thread_count is the documentation's old name: read as aio.intra_op_parallelism"),
            a["intra_op_parallelism"] = a["thread_count"];
      a.erase("thread_count");
    }
    read_fields(r, a, "aio", fields(c.aio));
  }
  if (r.object(j, "activation_checkpointing", "")) {
    read_fields(r, j.at("activation_checkpointing"), "activation_checkpointing", fields(c.activation_checkpointing));
    if (c.activation_checkpointing.contiguous_memory_optimization && c.activation_checkpointing.number_checkpoints < 0)
      r.err("activation_checkpointing.number_checkpoints", "required by contiguous_memory_optimization: true");
  }
  if (r.object(j, "pipeline", "")) {
    json p = j.at("pipeline");
    if (p.contains("stages") && Reader::is_auto(p["stages"])) p.erase("stages");
    read_fields(r, p, "pipeline", fields(c.pipeline));
    const std::string& part = c.pipeline.partition;
    if (part != "best" && part != "parameters" && part != "uniform" && part.rfind("type:", 0) != 0)
      r.err("pipeline.partition", "got \"" + part + "\"; allowed: \"parameters\", \"uniform\", \"type:<regex>\" (or \"best\")");
  }
  if (r.object(j, "tensor_parallel", "")) {
    json t = j.at("tensor_parallel");
    json tp = t.contains("tp") ? t["tp"] : json();
    t.erase("tp");
    read_fields(r, t, "tensor_parallel", fields(c.tensor_parallel),
                {"partition_config", "preset_model", "injection_policy_tuple", "dtype", "mpu", "tp_group"});
    if (!tp.is_null()) {
      if (!tp.is_object()) r.err("tensor_parallel.tp", "expected an object {\"tp_size\": N}, got " + show(tp));
      else read_fields(r, tp, "tensor_parallel.tp", tp_fields(c.tensor_parallel), {"mpu", "tp_group"});
    }
  }
  if (r.object(j, "moe", "")) {
    read_fields(r, j.at("moe"), "moe", fields(c.moe));
    const auto& m = c.moe;
    if (m.num_experts % m.ep_size != 0)
      r.err("moe.ep_size", "num_experts (" + std::to_string(m.num_experts) + ") must be a multiple of ep_size (" +
                               std::to_string(m.ep_size) + ")");
    if (m.top_k > m.num_experts)
      r.err("moe.top_k", "top_k (" + std::to_string(m.top_k) + ") exceeds num_experts (" + std::to_string(m.num_experts) + ")");
  }
  if (r.object(j, "flops_profiler", "")) read_fields(r, j.at("flops_profiler"), "flops_profiler", fields(c.flops_profiler));
  if (r.object(j, "tensorboard", "")) read_fields(r, j.at("tensorboard"), "tensorboard", fields(c.tensorboard));
  if (r.object(j, "csv_monitor", "")) read_fields(r, j.at("csv_monitor"), "csv_monitor", fields(c.csv_monitor));
  if (r.object(j, "wandb", "")) read_fields(r, j.at("wandb"), "wandb", fields(c.wandb));
  if (r.object(j, "comet", "")) read_fields(r, j.at("comet"), "comet", fields(c.comet));
  if (r.object(j, "checkpoint", "")) {
    json k = j.at("checkpoint");
    json pw = k.contains("parallel_write") ? k["parallel_write"] : json();
    k.erase("parallel_write");
    read_fields(r, k, "checkpoint", fields(c.checkpoint), {"writer"});
    if (!pw.is_null()) {
      if (!pw.is_object()) r.err("checkpoint.parallel_write", "expected an object {\"pipeline_stage\": false}, got " + show(pw));
      else read_fields(r, pw, "checkpoint.parallel_write", {fbool("pipeline_stage", c.checkpoint.pipeline_stage_parallel_write)});
    }
  }
  if (r.object(j, "data_types", ""))
    read_fields(r, j.at("data_types"), "data_types", {fchoice("grad_accum_dtype", c.misc.grad_accum_dtype, kDtypes, true)},
                {"param_dtype", "buffer_dtype"});
  if (r.object(j, "timers", "")) {
    const json& t = j.at("timers");
    r.check_keys(t, "timers", {"throughput"});
    if (r.object(t, "throughput", "timers"))
      read_fields(r, t.at("throughput"), "timers.throughput",
                  {fbool("enabled", c.misc.throughput_timer), fbool("synchronized", c.misc.throughput_timer_synchronized)});
  }
  for (const auto& a : kAddOns)
    if (j.contains(a.key)) read_addon(r, j, a);
}

json blocks_json(const DsConfig& c0) {
  DsConfig c = c0;  // the field lists bind mutable members
  json j;
  j["fp16"] = fields_json(fields(c.fp16));
  j["bf16"] = fields_json(fields(c.bf16));
  j["aio"] = fields_json(fields(c.aio));
  j["activation_checkpointing"] = fields_json(fields(c.activation_checkpointing));
  j["pipeline"] = fields_json(fields(c.pipeline));
  if (c.pipeline.stages < 0) j["pipeline"]["stages"] = "auto";
  j["tensor_parallel"] = fields_json(fields(c.tensor_parallel));
  j["tensor_parallel"]["tp"] = fields_json(tp_fields(c.tensor_parallel));
  j["moe"] = fields_json(fields(c.moe));
  j["flops_profiler"] = fields_json(fields(c.flops_profiler));
  j["tensorboard"] = fields_json(fields(c.tensorboard));
  j["csv_monitor"] = fields_json(fields(c.csv_monitor));
  j["wandb"] = fields_json(fields(c.wandb));
  j["comet"] = fields_json(fields(c.comet));
  j["checkpoint"] = fields_json(fields(c.checkpoint));
  j["checkpoint"]["parallel_write"] = {{"pipeline_stage", c.checkpoint.pipeline_stage_parallel_write}};
  j["data_types"] = {{"grad_accum_dtype", c.misc.grad_accum_dtype.empty() ? json(nullptr) : json(c.misc.grad_accum_dtype)}};
  j["timers"] = {{"throughput", {{"enabled", c.misc.throughput_timer}, {"synchronized", c.misc.throughput_timer_synchronized}}}};
  const json top = fields_json(top_fields(c.misc));
  for (auto& [k, v] : top.items()) j[k] = v;
  return j;
}

void blocks_unimplemented(const DsConfig& c, std::vector<std::string>& out) {
  auto no = [&](bool cond, const std::string& what) {
    if (cond) out.push_back("not supported yet: " + what);
  };
  // fp16/bf16: 16-bit parameters and gradients, fp32 masters and optimizer states; 16-bit masters
  // or optimizer states are not done
  no(c.fp16.enabled && c.fp16.fp16_master_weights_and_grads, "fp16.fp16_master_weights_and_grads = true");
  no(c.bf16.enabled && c.bf16.bf16_master_weights_and_grads, "bf16.bf16_master_weights_and_grads = true");
  no(c.bf16.enabled && c.bf16.bf16_optimizer_states, "bf16.bf16_optimizer_states = true");
  no(c.bf16.enabled && c.bf16.immediate_grad_update, "bf16.immediate_grad_update = true");
  // activation_checkpointing: every key applies or is moot on one tensor-parallel rank (the
  // trainer notes which, src/engine/trainer.cpp); recompute itself is --recompute-granularity
  no(c.pipeline.activation_checkpoint_interval > 0, "pipeline.activation_checkpoint_interval > 0");
  // tensor_parallel.autotp_size is --tensor-model-parallel-size (the CLI reads it); the "tp"
  // sub-block configures DeepSpeed's inference-time AutoTP
  no(c.tensor_parallel.tp_size > 1, "tensor_parallel.tp.tp_size = " + std::to_string(c.tensor_parallel.tp_size) +
                                        " (the inference AutoTP block; to train with tensor parallelism write "
                                        "tensor_parallel.autotp_size or pass --tensor-model-parallel-size)");
  no(c.moe.enabled, "moe.enabled = true (mixture of experts)");
  no(c.flops_profiler.enabled, "flops_profiler.enabled = true (the log prints FLOP/s and MFU every step)");
  no(c.tensorboard.enabled, "tensorboard.enabled = true (use --metrics-file for a JSON-lines log)");
  no(c.csv_monitor.enabled, "csv_monitor.enabled = true (use --metrics-file for a JSON-lines log)");
  no(c.wandb.enabled, "wandb.enabled = true (use --metrics-file for a JSON-lines log)");
  no(c.comet.enabled, "comet.enabled = true (use --metrics-file for a JSON-lines log)");
  no(c.checkpoint.use_node_local_storage, "checkpoint.use_node_local_storage = true");
  {  // gradients accumulate in fp32 or in the parameters' 16-bit dtype
    const std::string& g = c.misc.grad_accum_dtype;
    const std::string model = c.model_dtype();
    no(!g.empty() && g != "fp32" && g != model,
       "data_types.grad_accum_dtype = \"" + g + "\" with " + model + " parameters (write \"fp32\" or \"" + model +
           "\", or leave it null: the parameters' dtype)");
  }
  no(c.misc.sequence_parallel_size > 1, "sequence_parallel_size = " + std::to_string(c.misc.sequence_parallel_size));
  no(c.misc.sparse_gradients, "sparse_gradients = true");
  no(c.misc.disable_allgather, "disable_allgather = true");
  no(!c.misc.managed_gradient_accumulation, "managed_gradient_accumulation = false");
  no(c.misc.use_data_before_expert_parallelism, "use_data_before_expert_parallelism = true");
  no(c.misc.graph_harvesting, "graph_harvesting = true");
}

}  // namespace dmpi::config::detail
