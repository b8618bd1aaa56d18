// The ds_config blocks beyond batch/optimizer/scheduler/ZeRO: precision, aio, activation
// checkpointing, pipeline, tensor parallel, MoE, observability, checkpoint, data types and the
// top-level scalars. Defaults are DeepSpeed's newest release's; docs/ds-config-defaults.md (made by
// `deepmpi config defaults --markdown`) lists each with where older releases differed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dmpi::config {

// fp16 (semantics §1.3). loss_scale 0 = dynamic. raise_error_at_min_scale is deepmpi's: false
// keeps training at min_loss_scale (skipping overflowing steps) instead of aborting.
struct Fp16Config {
  bool enabled = false, auto_cast = false;
  double loss_scale = 0.0;
  int64_t initial_scale_power = 16, loss_scale_window = 1000, hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1.0;
  bool fp16_master_weights_and_grads = false;
  bool raise_error_at_min_scale = true;
};

// bf16 (legacy spelling "bfloat16"). No loss scaling.
struct Bf16Config {
  bool enabled = false, immediate_grad_update = false, check_grad_overflow = true;
  bool bf16_master_weights_and_grads = false, bf16_optimizer_states = false;
};

// aio: top level (not under zero_optimization). Used by NVMe offload.
struct AioConfig {
  int64_t block_size = 1048576, queue_depth = 8, intra_op_parallelism = 1;
  bool single_submit = false, overlap_events = true, use_gds = false;
};

struct ActivationCheckpointingConfig {
  bool partition_activations = false, cpu_checkpointing = false, contiguous_memory_optimization = false;
  int64_t number_checkpoints = -1;  // null
  bool synchronize_checkpoint_boundary = false, profile = false;
};

struct PipelineConfig {
  int64_t stages = -1;  // "auto": from the topology (--pipeline-model-parallel-size)
  std::string partition = "best";  // best | parameters | uniform | type:<regex>
  bool seed_layers = false;
  int64_t activation_checkpoint_interval = 0;
  bool pipe_partitioned = true, grad_partitioned = true, use_reentrant = true;
};

struct TensorParallelConfig {
  int64_t autotp_size = 0;  // 0 = off
  bool tp_overlap_comm = false, keep_module_on_host = false;
  int64_t tp_size = 1, tp_grain_size = 1;  // the "tp" sub-block
};

// moe: deepmpi's block for the arguments of DeepSpeed's MoE layer (deepspeed.moe.layer.MoE),
// which DeepSpeed takes in Python rather than in the JSON.
struct MoeConfig {
  bool enabled = false;
  int64_t num_experts = 1, ep_size = 1, top_k = 1, min_capacity = 4;
  double capacity_factor = 1.0, eval_capacity_factor = 1.0;
  std::string noisy_gate_policy;  // null | Jitter | RSample
  bool drop_tokens = true, use_rts = true, use_residual = false;
};

struct FlopsProfilerConfig {
  bool enabled = false;
  double recompute_fwd_factor = 0.0;
  int64_t profile_step = 1, module_depth = -1, top_modules = 1;
  bool detailed = true;
  std::string output_file;  // null: stdout
};

struct MonitorFileConfig {  // tensorboard, csv_monitor
  bool enabled = false;
  std::string output_path, job_name = "DeepSpeedJobName";
};
struct WandbConfig {
  bool enabled = false;
  std::string group, team, project = "deepspeed";
};
struct CometConfig {
  bool enabled = false;
  int64_t samples_log_interval = 100;
  std::string project, workspace, api_key, experiment_name, experiment_key, mode;
  int64_t online = -1;  // null | 0 | 1
};

struct CheckpointConfig {
  std::string tag_validation = "Warn";  // Ignore | Warn | Fail
  bool load_universal = false, use_node_local_storage = false, pipeline_stage_parallel_write = false;
  bool checkpoint_serialization = true;
};

// Top-level scalars that are neither batch nor optimizer.
struct MiscConfig {
  std::string communication_data_type;  // null (= the gradients' dtype) | fp32 | fp16 | bf16
  std::string seq_parallel_communication_data_type = "fp32";
  std::string grad_accum_dtype;         // data_types.grad_accum_dtype: null (= model dtype) | fp32 | fp16 | bf16
  bool prescale_gradients = false;
  double gradient_predivide_factor = 1.0;
  bool wall_clock_breakdown = false, memory_breakdown = false, dump_state = false;
  bool sparse_gradients = false, zero_allow_untested_optimizer = false, zero_force_ds_cpu_optimizer = true;
  bool dataloader_drop_last = false, disable_allgather = false, managed_gradient_accumulation = true;
  bool use_data_before_expert_parallelism = false, graph_harvesting = false;
  int64_t sequence_parallel_size = 1, vocabulary_size = -1;
  bool throughput_timer = true, throughput_timer_synchronized = true;  // timers.throughput
};

}  // namespace dmpi::config
