// The default of every ds_config key, taken from the parser itself (the values a config that
// leaves the key out gets), with notes where older DeepSpeed releases differed. Printed by
// `deepmpi config defaults`; docs/ds-config-defaults.md is its --markdown output, kept in sync
// by a unit test.
#include <map>
#include <sstream>

#include "src/config/ds_config.hpp"

namespace dmpi::config {

using nlohmann::json;

namespace {

// Older releases, and deepmpi's own choices (semantics doc §1, §3). Keyed by "path" or
// "path [context]".
const std::map<std::string, std::string>& notes() {
  static const std::map<std::string, std::string> n = {
      {"gradient_clipping", "0.0 (off) before DeepSpeed 0.19.3; 0 disables"},
      {"steps_per_print", "DeepSpeed's STEPS_PER_PRINT_DEFAULT; deepmpi logs every step unless the file gives it (--log-interval overrides)"},
      {"zero_optimization.overlap_comm", "DeepSpeed's None: true for stage 3, false otherwise (printed for the stage in force)"},
      {"zero_optimization.offload_optimizer.pin_memory", "false before 0.19.5"},
      {"zero_optimization.offload_param.pin_memory", "false before 0.19.5"},
      {"zero_optimization.reduce_bucket_size", "\"auto\": h^2 with --hidden-size (the HF Trainer's rule)"},
      {"zero_optimization.stage3_prefetch_bucket_size", "also spelled prefetch_bucket_size; \"auto\": 0.9 h^2"},
      {"zero_optimization.stage3_param_persistence_threshold", "also spelled param_persistence_threshold; \"auto\": 10 h"},
      {"zero_optimization.stage3_gather_16bit_weights_on_model_save",
       "also gather_16bit_weights_on_model_save; stage3_gather_fp16_weights_on_model_save is deprecated"},
      {"fp16.initial_scale_power", "HEAD's FUSED profile starts at 2^32 when no dynamic key is given; deepmpi uses 16"},
      {"fp16.min_loss_scale", "HEAD's UNFUSED profile uses 0.25 when no dynamic key is given"},
      {"fp16.raise_error_at_min_scale", "deepmpi's key: false keeps training at min_loss_scale (skipping overflowing steps)"},
      {"fp16.fp16_master_weights_and_grads", "ZeRO-2 only in 0.16; ZeRO 1-3 in HEAD"},
      {"bf16.check_grad_overflow", "since 0.17.1 (no bf16 overflow check before)"},
      {"bf16.bf16_master_weights_and_grads", "since 0.18.3 (ignored before)"},
      {"bf16.bf16_optimizer_states", "since 0.18.3 (ignored before); needs bf16_master_weights_and_grads"},
      {"bf16.enabled", "legacy spelling of the block: bfloat16"},
      {"aio.intra_op_parallelism", "the DeepSpeed docs' old name thread_count is read as this key (DeepSpeed ignores it)"},
      {"seq_parallel_communication_data_type", "spelled seq_parallel_comm_data_type before 0.16.5"},
      {"managed_gradient_accumulation", "since 0.19.4"},
      {"checkpoint.checkpoint_serialization", "HEAD only"},
      {"pipeline.partition", "\"best\" is DeepSpeed's config default; PipelineModule's own default is \"parameters\""},
      {"moe.enabled", "deepmpi's block for the arguments of DeepSpeed's MoE layer (deepspeed.moe.layer.MoE)"},
      {"scheduler.params.warmup_max_lr [scheduler.type = WarmupLR]", "the optimizer's lr since 0.17.2; 0.001 before"},
      {"scheduler.params.warmup_max_lr [scheduler.type = WarmupDecayLR]", "the optimizer's lr since 0.17.2; 0.001 before"},
      {"optimizer.params.adam_w_mode", "true: \"Adam\" runs AdamW unless adam_w_mode: false"},
      {"communication_data_type", "null: the gradients' own dtype"},
      {"seed", "null: --seed, else 1234 (deepmpi's key; DeepSpeed seeds in the user's script)"},
      {"data_types.grad_accum_dtype", "null: the model's dtype"}};
  return n;
}

void flatten(const json& j, const std::string& prefix, std::vector<std::pair<std::string, json>>& out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it) flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else {
    out.emplace_back(prefix, j);
  }
}

}  // namespace

std::vector<DefaultRow> default_table() {
  std::vector<DefaultRow> rows;
  auto add = [&](const json& cfg, const std::string& context, const std::string& only_prefix,
                 const std::vector<std::string>& required) {
    json r = parse_ds_config(cfg, 1).resolved();
    std::vector<std::pair<std::string, json>> leaves;
    flatten(r, "", leaves);
    for (auto& [path, v] : leaves) {
      if (!only_prefix.empty() && path.rfind(only_prefix, 0) != 0) continue;
      if (path == "optimizer.type" || path == "scheduler.type") continue;
      DefaultRow row{path, v.dump(), context, ""};
      for (const auto& req : required)
        if (path == req) row.value = "required";
      auto key = context.empty() ? path : path + " [" + context + "]";
      if (auto it = notes().find(key); it != notes().end()) row.note = it->second;
      rows.push_back(row);
    }
  };
  const json base = {{"train_micro_batch_size_per_gpu", 1}};
  add(base, "", "", {"train_micro_batch_size_per_gpu"});
  for (auto& row : rows)
    if (row.path == "train_batch_size" || row.path == "gradient_accumulation_steps") {
      row.value = row.path == "train_batch_size" ? "derived" : "1 (or derived)";
      row.note = "the batch triangle: TBS = MBS * GAS * data-parallel size (give TBS or MBS)";
    }
  for (const char* t : {"Adam", "Lamb", "SGD", "Adagrad", "Lion"}) {
    json c = base;
    c["optimizer"] = {{"type", t}};
    if (std::string(t) == "SGD") c["optimizer"]["params"] = {{"lr", 0.1}};
    add(c, std::string("optimizer.type = ") + t, "optimizer.params", std::string(t) == "SGD" ? std::vector<std::string>{"optimizer.params.lr"} : std::vector<std::string>{});
  }
  struct Sched {
    const char* type;
    json params;
    std::vector<std::string> required;
  };
  const Sched scheds[] = {
      {"WarmupLR", json::object(), {}},
      {"WarmupDecayLR", {{"total_num_steps", 100}}, {"scheduler.params.total_num_steps"}},
      {"WarmupCosineLR", {{"total_num_steps", 100}}, {"scheduler.params.total_num_steps"}},
      {"OneCycle", {{"cycle_min_lr", 0.0}, {"cycle_max_lr", 0.1}}, {"scheduler.params.cycle_min_lr", "scheduler.params.cycle_max_lr"}},
      {"LRRangeTest", json::object(), {}}};
  for (const auto& s : scheds) {
    json c = base;
    c["scheduler"] = {{"type", s.type}, {"params", s.params}};
    add(c, std::string("scheduler.type = ") + s.type, "scheduler.params", s.required);
  }
  return rows;
}

std::string default_table_text(bool markdown) {
  std::ostringstream os;
  auto rows = default_table();
  if (markdown) {
    os << "# ds_config defaults\n\n"
          "The value deepmpi uses for every ds_config key a file leaves out: DeepSpeed's newest release's, with the\n"
          "notes saying where older releases differed. Made by `deepmpi config defaults --markdown` (a unit test\n"
          "checks this file is current). A key whose context is given applies to that optimizer or scheduler type.\n\n"
          "| Key | Default | Context | Notes |\n|---|---|---|---|\n";
    for (const auto& r : rows) os << "| `" << r.path << "` | `" << r.value << "` | " << r.context << " | " << r.note << " |\n";
    return os.str();
  }
  size_t w = 0;
  for (const auto& r : rows) w = std::max(w, r.path.size());
  for (const auto& r : rows) {
    os << r.path << std::string(w + 2 - r.path.size(), ' ') << r.value;
    if (!r.context.empty()) os << "   [" << r.context << "]";
    if (!r.note.empty()) os << "   # " << r.note;
    os << "\n";
  }
  return os.str();
}

std::vector<std::string> stale_default_notes() {
  std::vector<std::string> stale;
  auto rows = default_table();
  for (const auto& [key, note] : notes()) {
    bool found = false;
    for (const auto& r : rows)
      if ((r.context.empty() ? r.path : r.path + " [" + r.context + "]") == key) found = true;
    if (!found) stale.push_back(key);
  }
  return stale;
}

}  // namespace dmpi::config
