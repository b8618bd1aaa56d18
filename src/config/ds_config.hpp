// ds_config.json, typed: every block DeepSpeed documents, read with DeepSpeed's meaning and
// defaults (../shared/reference/deepspeed-semantics.md). The file is read as DeepSpeed reads it
// (hjson: comments, trailing commas; duplicate keys refused; json_text.hpp). Types, ranges and
// choices are checked; an unknown key inside a block fails naming the JSON path and the closest
// valid key; an unknown top-level key is ignored with a warning, as DeepSpeed ignores it, unless
// it is a near-miss of a real key (then an error) or AutoContext::strict is set. Every problem
// of a file is found in one pass, once per JSON path, ordered by path. What a valid config asks
// for that this build does not implement is one list, unimplemented_for_training()
// ("not supported yet: <path> = <value> (...)"), whatever block it comes from. Without an
// "optimizer" block the optimizer and its schedule come from Megatron-LM's flags, with
// Megatron's defaults and formulas (megatron_flags.cpp); DsConfig::optimizer_source says where
// they came from.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/config/blocks.hpp"

namespace dmpi::config {

struct OptimizerConfig {
  // Adam | AdamW | Lamb | SGD | Adagrad | Lion (case-insensitive in the file; "Adam" runs
  // AdamW unless adam_w_mode: false). Defaults are DeepSpeed's / torch's per type.
  std::string type = "AdamW";
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool bias_correction = true;
  bool adam_w_mode = true;
  // Lamb
  double max_coeff = 10.0, min_coeff = 0.01;
  bool eps_inside_sqrt = false;
  // SGD
  double momentum = 0.0, dampening = 0.0;
  bool nesterov = false;
  // Adagrad
  double lr_decay = 0.0, initial_accumulator_value = 0.0;
};

struct SchedulerConfig {
  // "" = constant lr | WarmupLR | WarmupDecayLR | WarmupCosineLR | OneCycle | LRRangeTest |
  // Megatron (Megatron-LM's OptimizerParamScheduler, built from --lr-decay-style & co. when the
  // file has no scheduler block; never read from a file)
  std::string type;
  double warmup_min_lr = 0.0;
  double warmup_max_lr = -1;   // < 0: the optimizer's lr (DeepSpeed >= 0.17.2)
  int64_t warmup_num_steps = 1000;
  std::string warmup_type = "log";  // log | linear
  int64_t total_num_steps = 0;      // WarmupDecayLR, WarmupCosineLR
  // WarmupCosineLR (ratios of the optimizer's lr)
  double warmup_min_ratio = 0.0, cos_min_ratio = 1e-4;
  // OneCycle
  double cycle_min_lr = -1, cycle_max_lr = -1, decay_lr_rate = 0.0;
  double cycle_first_step_size = 2000, cycle_second_step_size = -1;  // -1: = first
  double decay_step_size = 0;
  bool cycle_momentum = true;
  double cycle_min_mom = 0.8, cycle_max_mom = 0.9, decay_mom_rate = 0.0;
  // LRRangeTest
  double lr_range_test_min_lr = 1e-3, lr_range_test_step_size = 2000, lr_range_test_step_rate = 1.0;
  bool lr_range_test_staircase = false;
  // Megatron: lengths in iterations (optimizer steps); Megatron counts them in samples, i.e.
  // times samples_per_iteration (the global batch), which only inverse-square-root without
  // warmup can tell apart.
  std::string lr_decay_style = "linear";         // constant | linear | cosine | inverse-square-root | WSD
  std::string lr_wsd_decay_style = "exponential";  // WSD's annealing: exponential | linear | cosine | minus_sqrt
  double max_lr = 0.0, min_lr = 0.0, lr_warmup_init = 0.0;
  double lr_warmup_iters = 0.0;   // --lr-warmup-iters, or --lr-warmup-fraction x lr_decay_iters
  int64_t lr_decay_iters = 0;     // --lr-decay-iters, default --train-iters
  int64_t lr_wsd_decay_iters = 0; // --lr-wsd-decay-iters (WSD)
  int64_t samples_per_iteration = 1;
  // Megatron's weight-decay increment (any type; only Megatron's sets a style other than
  // constant): start -> end over wd_incr_iters (= --train-iters), linear or cosine.
  std::string weight_decay_incr_style = "constant";  // constant | linear | cosine
  double start_weight_decay = 0.0, end_weight_decay = 0.0;
  int64_t wd_incr_iters = 0;
};

// zero_optimization (DeepSpeed's DeepSpeedZeroConfig: field names and their stage3_* aliases,
// defaults of the newest release; semantics doc §1.5). Integer fields accept 5e8-style numbers.
struct OffloadConfig {
  std::string device = "none";  // none | cpu | nvme
  std::string nvme_path;
  int64_t buffer_count = 4;     // optimizer: 4, param: 5
  int64_t buffer_size = 100000000;  // param only
  int64_t max_in_cpu = 1000000000;  // param only
  bool pin_memory = true;       // true since 0.19.5 (0.16: false)
  bool pipeline_read = false, pipeline_write = false, fast_init = false;  // optimizer only
  double ratio = 1.0;           // optimizer only (partial offload, stage 3)
};

struct ZeroConfig {
  int stage = 0;
  bool contiguous_gradients = true, reduce_scatter = true, use_multi_rank_bucket_allreduce = true;
  int64_t reduce_bucket_size = 500000000;
  bool allgather_partitions = true;
  int64_t allgather_bucket_size = 500000000;
  int overlap_comm = -1;  // -1: unset -> true for stage 3, false otherwise (DeepSpeed's None)
  bool load_from_fp32_weights = true, elastic_checkpoint = false, round_robin_gradients = false;
  bool ignore_unused_parameters = true;
  int64_t sub_group_size = 1000000000;
  int64_t prefetch_bucket_size = 50000000;             // alias stage3_prefetch_bucket_size
  int64_t param_persistence_threshold = 100000;        // alias stage3_param_persistence_threshold
  int64_t model_persistence_threshold = INT64_MAX;     // alias stage3_model_persistence_threshold
  int64_t max_live_parameters = 1000000000;            // alias stage3_max_live_parameters
  int64_t max_reuse_distance = 1000000000;             // alias stage3_max_reuse_distance
  bool gather_16bit_weights_on_model_save = false;     // alias stage3_gather_16bit_weights_on_model_save
  OffloadConfig offload_optimizer;
  OffloadConfig offload_param = [] {
    OffloadConfig o;
    o.buffer_count = 5;  // DeepSpeed's offload_param default (offload_optimizer: 4)
    return o;
  }();
  bool overlap() const { return overlap_comm < 0 ? stage == 3 : overlap_comm == 1; }
};

// DeepSpeed's comms_logger block (defaults as DeepSpeed's): logs every collective's count,
// bytes, time, algbw and busbw, and prints a summary table at the end of the run.
struct CommsLoggerConfig {
  bool enabled = false;
  bool verbose = false;
  bool prof_all = true;
  std::vector<std::string> prof_ops;
  bool debug = false;
};

struct DsConfig {
  int64_t train_batch_size = 0;
  int64_t micro_batch = 0;     // train_micro_batch_size_per_gpu
  int64_t grad_accum = 0;      // gradient_accumulation_steps
  double gradient_clipping = 1.0;  // DeepSpeed >= 0.19.3 default (0.16: 0.0 = off)
  int64_t steps_per_print = 10;
  bool steps_per_print_given = false;
  int64_t seed = -1;           // -1: not given
  int zero_stage = 0;
  ZeroConfig zero;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  CommsLoggerConfig comms_logger;
  Fp16Config fp16;
  Bf16Config bf16;
  AioConfig aio;
  ActivationCheckpointingConfig activation_checkpointing;
  PipelineConfig pipeline;
  TensorParallelConfig tensor_parallel;
  MoeConfig moe;
  FlopsProfilerConfig flops_profiler;
  MonitorFileConfig tensorboard, csv_monitor;
  WandbConfig wandb;
  CometConfig comet;
  CheckpointConfig checkpoint;
  MiscConfig misc;
  nlohmann::json raw;          // the file as given
  std::vector<std::string> warnings;
  std::vector<std::string> notes;  // keys accepted because they ask for nothing (config check prints them)
  // Where the optimizer and the LR schedule came from, and why (the ds_config's blocks, the
  // Megatron flags, or the defaults): printed by the start-up banner and `config check`.
  std::string optimizer_source;
  // Valid settings of the file this build does not implement (unimplemented_for_training
  // adds those derived from the values in force).
  std::vector<std::string> unimplemented_keys;

  nlohmann::json resolved() const;  // every value in force, for printing
  // The parameters' dtype: "bf16" or "fp16" when that block is enabled, else "fp32".
  const char* model_dtype() const { return bf16.enabled ? "bf16" : fp16.enabled ? "fp16" : "fp32"; }
};

// Values from the command line (Megatron-LM's flags). They resolve "auto" the way the Hugging
// Face Trainer does (semantics doc §3.4) and fill keys the file leaves out; a config value that
// is explicit and differs from a given flag is an error naming both (as HF's "mismatch
// TrainingArguments"). Without an "optimizer" block they build the optimizer and the schedule as
// Megatron does (megatron_flags.cpp).
struct AutoContext {
  std::optional<int64_t> micro_batch;    // --micro-batch-size  -> train_micro_batch_size_per_gpu
  std::optional<int64_t> global_batch;   // --global-batch-size -> train_batch_size
  std::optional<double> clip_grad;       // --clip-grad         -> gradient_clipping
  std::optional<double> lr;              // --lr                -> optimizer.params.lr, scheduler warmup_max_lr
  std::optional<double> beta1, beta2;    // --adam-beta1/2      -> optimizer.params.betas
  std::optional<double> eps;             // --adam-eps          -> optimizer.params.eps
  std::optional<double> weight_decay;    // --weight-decay      -> optimizer.params.weight_decay
  std::optional<int64_t> warmup_iters;   // --lr-warmup-iters   -> scheduler.params.warmup_num_steps
  std::optional<int64_t> train_iters;    // --train-iters       -> scheduler.params.total_num_steps
  std::optional<int64_t> hidden;         // --hidden-size       -> ZeRO bucket sizes (h^2, 0.9 h^2, 10 h)
  bool fp16 = false, bf16 = false;       // --fp16 / --bf16     -> fp16.enabled / bf16.enabled
  // Megatron's optimizer and schedule flags (used without an optimizer / scheduler block)
  std::optional<std::string> optimizer;          // --optimizer adam | sgd (default adam)
  std::optional<double> sgd_momentum;            // --sgd-momentum (default 0.9)
  std::optional<double> min_lr;                  // --min-lr (default 0)
  std::optional<std::string> lr_decay_style;     // --lr-decay-style (default linear)
  std::optional<double> lr_warmup_fraction;      // --lr-warmup-fraction (of the decay iterations)
  std::optional<double> lr_warmup_init;          // --lr-warmup-init (default 0)
  std::optional<int64_t> lr_decay_iters;         // --lr-decay-iters (default --train-iters)
  std::optional<std::string> lr_wsd_decay_style; // --lr-wsd-decay-style (default exponential)
  std::optional<int64_t> lr_wsd_decay_iters;     // --lr-wsd-decay-iters (required by WSD)
  std::optional<double> start_weight_decay, end_weight_decay;  // --start/--end-weight-decay
  std::optional<std::string> weight_decay_incr_style;          // --weight-decay-incr-style (default constant)
  int64_t default_train_iters = 0;  // the run's length when --train-iters is not given (deepmpi train: 20)
  bool strict = false;              // --strict: every unknown key is an error, the top level's too
};

// Everything one pass over a config finds. `config` holds every value that could be read (a
// trainable config only when errors is empty). Each list is ordered by JSON path.
struct ConfigCheck {
  DsConfig config;
  std::vector<std::string> errors;         // each "path: what is wrong; what to write / which flag"
  std::vector<std::string> unimplemented;  // valid, not implemented by this build (exit 3)
  std::vector<std::string> warnings, notes;
};
ConfigCheck check_ds_config(const nlohmann::json& j, int dp_size, const AutoContext& ctx = {});
// Reads the file as DeepSpeed does (hjson). A file that cannot be read or parsed throws
// dmpi::Error naming the file, line and column; duplicate keys are errors of the result.
ConfigCheck check_ds_config_file(const std::string& path, int dp_size, const AutoContext& ctx = {});
// "N errors in the ds_config:\n  - ..." plus the not-implemented list ("\n  * ...").
std::string problems_text(const ConfigCheck& c);

// Replaces every "auto" it can resolve and fills keys the file leaves out from given flags;
// returns the errors for what it cannot resolve.
nlohmann::json resolve_auto(const nlohmann::json& j, const AutoContext& ctx, std::vector<std::string>& errors);

// Parses and validates; resolves "auto" and the batch triangle with W = data-parallel size.
// Throws dmpi::Error with problems_text() when the config has errors.
DsConfig parse_ds_config(const nlohmann::json& j, int dp_size, const AutoContext& ctx = {});
DsConfig load_ds_config(const std::string& path, int dp_size, const AutoContext& ctx = {});
// Defaults used when no --deepspeed_config is given.
nlohmann::json default_ds_config_json();

// What `deepmpi train` does not implement yet in a valid config: each entry is
// "not supported yet: <path> ..." (empty when everything in force is implemented).
std::vector<std::string> unimplemented_for_training(const DsConfig& c);

// The default of every key (docs/ds-config-defaults.md): path, value (JSON), context (e.g.
// "optimizer.type = SGD") and where older DeepSpeed releases differed.
struct DefaultRow {
  std::string path, value, context, note;
};
std::vector<DefaultRow> default_table();
std::string default_table_text(bool markdown);
std::vector<std::string> stale_default_notes();  // notes naming no row (a test keeps this empty)

// DeepSpeed's batch triangle (§1.2): derives the missing values with floor division, then
// asserts TBS == MBS * GAS * W. Zero means "not given". Throws naming all four values.
void resolve_batch_triangle(int64_t& tbs, int64_t& mbs, int64_t& gas, int dp_size);

}  // namespace dmpi::config
