// The training loop over the data-parallel group (every rank of the job). One step is an
// instruction list (src/engine/schedule.hpp) the trainer executes: micro-batches with gradient
// accumulation (DeepSpeed's boundary semantics: the loss of each micro-batch is scaled by 1/GAS),
// each unit's forward and backward run by the model's Runner on parameters the ParamStore hands
// out (gathered, widened, partitioned by ZeRO stage 0-3: param_store.hpp), then at the boundary
// gradients averaged over the group, global-norm clipping, the optimizer (optimizer.hpp) on this
// rank's elements, the LR schedule stepped once per applied optimizer step, and metrics. Sample
// order: step s, micro-batch m, dp rank r reads samples s*TBS + m*(W*MBS) + r*MBS ..., so every
// layout sees the same samples per global batch.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/mpi_env.hpp"
#include "comm/process_groups.hpp"
#include "io/checkpoint.hpp"
#include "io/spill.hpp"
#include "io/metrics.hpp"
#include "io/token_dataset.hpp"
#include "kernels/gemm.hpp"
#include "src/config/ds_config.hpp"
#include "src/engine/loss_scaler.hpp"
#include "src/engine/lr_schedule.hpp"
#include "src/engine/optimizer.hpp"
#include "src/engine/param_store.hpp"
#include "src/engine/pipeline.hpp"
#include "src/engine/schedule.hpp"
#include "src/model/model.hpp"

namespace dmpi::engine {

struct TrainOptions {
  model::ModelConfig model;
  model::RecomputeConfig recompute;  // activation checkpointing (--recompute-granularity ...)
  int tensor_parallel = 1;           // --tensor-model-parallel-size (tensor_parallel.autotp_size): world = tp x dp x pp
  // Pipeline parallelism (src/engine/pipeline.hpp): --pipeline-model-parallel-size, the virtual
  // stages per stage (--num-layers-per-virtual-pipeline-stage), DeepSpeed's partition_method,
  // Megatron's uneven first/last stages, the schedule (1f1b | interleaved | zero-bubble), and
  // DeepSpeed's pipe_partitioned/grad_partitioned (with tp > 1 each tp rank sends 1/tp of a
  // message and the receiver all-gathers it).
  int pipeline_parallel = 1;
  int virtual_stages = 1;
  std::string partition_method = "parameters";
  int first_stage_layers = -1, last_stage_layers = -1;
  std::string pipeline_schedule = "1f1b";
  bool pipe_partitioned = true, grad_partitioned = true;
  std::string gemm_backend;          // empty: kernels::default_gemm_backend_name()
  config::DsConfig ds;
  int64_t train_iters = 20;
  uint64_t seed = 1234;
  int64_t log_interval = 1;
  std::string metrics_file;
  double peak_gflops = 0;        // 0: measure with an sgemm probe at start-up
  std::string data_path;         // empty: mock data
  bool print = true;             // rank 0 prints the log
  MPI_Comm world = MPI_COMM_WORLD;  // the ranks that train together (tests use sub-communicators)
  // Checkpoints (src/engine/checkpointing.cpp, io/checkpoint.hpp). train_iters is the total: a
  // resumed run continues from the loaded step up to it (Megatron's --train-iters).
  std::string save_dir;           // --save: save here every save_interval steps, at a stop signal and at the end
  int64_t save_interval = 0;      // --save-interval (0: only at a stop signal and at the end)
  std::string load_dir;           // --load (defaults to --save): resume from latest (or load_tag)
  std::string load_tag;           // --load-tag
  bool load_required = true;      // false when load_dir came from --save: no checkpoint there = fresh start
  bool load_optimizer = true;     // false: --no-load-optim (parameters and counters only)
  bool overwrite_checkpoints = false;  // --overwrite-checkpoints: a save may replace an existing tag or move latest back
  bool async_save = false;        // --async-save: write in a background thread from a snapshot
  std::string save_verify = "meta";  // --save-verify: meta (reopen, structure) | full (read every byte back)
};

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0, grad_norm_clipped = 0;
  double step_ms = 0, tokens_per_s = 0, tflops = 0, mfu = 0;
  double forward_ms = 0, backward_ms = 0, optimizer_ms = 0;  // wall_clock_breakdown
  double recompute_ms = 0;  // inside backward_ms: the recomputed forwards (activation_checkpointing.profile)
  double loss_scale = 1;  // fp16: the scale this step ran with
  bool skipped = false;   // overflow: no optimizer step (DeepSpeed's skipped_steps)
  // NVMe offload: bytes this rank's spill engine read and wrote during the step, and the time the
  // step waited for them (the optimizer's sub-group stream, and the parameter chunks' reads)
  double spill_read_bytes = 0, spill_write_bytes = 0, spill_wait_ms = 0;
  double spill_cached_bytes = 0;  // reads the spill buffers saved (already holding the bytes)
  // ZeRO-3: sub-groups of this step's update left to the next forward (each gather updates its own)
  double spill_deferred = 0;
  // ZeRO-3 without gradient clipping or loss scaling: sub-groups updated during the last backward
  double spill_in_backward = 0;
};

struct MemoryReport {
  size_t params = 0, grads = 0, masters = 0, optimizer_states = 0, comm_buffers = 0, activations = 0;
  size_t checkpoint_snapshot = 0;  // --async-save: one copy of this rank's share of the state
  // NVMe offload: the host buffers the spilled masters and states stream through (resident), and
  // the bytes in the spill files (not in memory)
  size_t spill_buffers = 0, spilled_masters = 0, spilled_states = 0;
  size_t model_states() const { return params + grads + masters + optimizer_states; }
  size_t total() const { return model_states() + comm_buffers + activations + checkpoint_snapshot + spill_buffers; }
};

struct TrainSummary {
  std::vector<StepMetrics> steps;
  double median_step_ms = 0, median_tokens_per_s = 0, median_tflops = 0, median_mfu = 0;
  size_t peak_rss = 0;
  MemoryReport memory;
  bool stopped_by_signal = false;  // SIGUSR1/SIGTERM on some rank: every rank stopped after one step
};

// SIGUSR1 and SIGTERM (Slurm's warning before the time limit, preemption) are blocked and polled
// by the training loop at the end of each step; the loss all-reduce carries the request to every
// rank, so all ranks stop after the same step even when only one got the signal. Call
// install_stop_handlers() first thing (before MPI_Init) so every thread inherits the mask.
void install_stop_handlers();
int stop_signal();  // the signal received (consumed on first sight), 0 if none

class Trainer {
 public:
  Trainer(const comm::MpiEnv& env, TrainOptions opt);
  ~Trainer();
  StepMetrics train_step();
  TrainSummary run();
  // one step of the configured optimizer (beta1/beta2: the config's, or OneCycle's cycled ones)
  void apply_optimizer(double lr, float grad_scale, double beta1, double beta2);
  // ZeRO-3 with NVMe offload, no gradient clipping, no loss scaler, no bf16 overflow check, one
  // tensor- and pipeline-parallel rank: the optimizer runs during each step's last backward
  // (ParamStore::arm_update); DEEPMPI_OFFLOAD_UPDATE=after keeps it after the backward
  bool update_in_backward() const { return update_in_backward_; }
  const model::Model<float>& model() const { return *model_; }  // this pipeline stage's units
  const model::Model<float>& whole() const { return whole_ ? *whole_ : *model_; }  // every unit (the checkpoint's tensors)
  const Partition& partition() const { return partition_; }
  int pipeline_stage() const { return partition_.stages > 1 ? groups_->get(comm::Group::PP).rank() : 0; }
  // per stage: layers, parameters and the activation bytes of its in-flight micro-batches (rank 0 prints it)
  std::string partition_report() const;
  ParamStore& store() { return *store_; }
  const Optimizer& optimizer() const { return *optimizer_; }
  const Schedule& schedule() const { return schedule_; }
  const model::Runner<float>& runner() const { return *runner_; }
  const kernels::Context& context() const { return ctx_; }
  // The fp32 parameters (masters) of every tensor in the whole model's order, as logical tensors
  // (collective at stages 1-3, over the tp group with tensor parallelism, over the pp group with
  // pipelines: every rank gets every stage's tensors).
  std::vector<std::vector<float>> full_params();
  std::vector<std::vector<float>> stage_params();  // this stage's tensors (its model order), logical over tp
  comm::ProcessGroups& groups() { return *groups_; }
  bool lead() const { return groups_->world_rank() == 0; }  // world rank 0 of the training ranks
  // the model's config without this rank's tensor-parallel place (counts, FLOPs)
  model::ModelConfig logical_model() const {
    model::ModelConfig c = opt_.model;
    c.tp_size = 1, c.tp_rank = 0;
    return c;
  }
  MemoryReport memory() const;
  double peak_gflops() const { return peak_gflops_; }
  int64_t global_steps() const { return global_steps_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  int64_t micro_steps() const { return micro_steps_; }
  const LossScaler* loss_scaler() const { return scaler_.get(); }
  // Collective over the training ranks. save: DIR/<tag> (default global_step<N>), crash-safe
  // (a temporary directory, verified, renamed, then `latest`); with async the write goes on in
  // a background thread from a snapshot, and the next save (or finish_saves) waits for it.
  // load: DIR/<tag> (default: the tag `latest` names) into this topology, whatever topology
  // saved it. atomic: two passes, nothing live changes unless every checksum matched; otherwise
  // one pass into the live state, checked after (a mismatch throws and the trainer must not be
  // used: what `deepmpi train` does, since it stops on the error). Returns the loaded tag.
  void save_checkpoint(const std::string& dir, const std::string& tag = "", bool async = false);
  std::string load_checkpoint(const std::string& dir, const std::string& tag = "", bool load_optimizer = true,
                              bool atomic = true);
  // Collective: waits for a background save, then combines its checksums, verifies and commits
  // it; an error on any rank's writer is raised on every rank.
  void finish_saves();
  int64_t applied_steps() const { return applied_steps_; }
  uint64_t global_samples() const { return samples_; }
  int64_t scheduler_iteration() const { return sched_.last_batch_iteration(); }
  std::string banner() const;   // what is about to run
  // The bytes per rank of a run of these options on dp ranks, worked out without allocating
  // anything (comm + working buffers estimated), and a report of it: `deepmpi train --train-iters 0`
  // prints it for geometries that would not fit.
  static MemoryReport planned_memory(const TrainOptions& opt, int dp_size);  // opt.model: tp rank 0's split
  static std::string memory_plan(const TrainOptions& opt, int dp_size);

 private:
  const comm::MpiEnv& env_;
  TrainOptions opt_;
  std::unique_ptr<comm::ProcessGroups> groups_;
  std::unique_ptr<model::TpComm> tp_;  // the units' view of the tp group
  std::unique_ptr<kernels::GemmBackend> gemm_;
  kernels::Context ctx_;
  std::unique_ptr<model::Model<float>> model_, whole_;  // whole_: with pipelines, every unit (specs only)
  Partition partition_;
  PipeSchedule pipe_kind_ = PipeSchedule::OneFOneB;
  std::unique_ptr<comm::MpiCommunicator> tied_;  // the first and last stages (a tied embedding/head)
  std::vector<int> chunk_of_unit_;               // per model unit: its chunk (virtual stage) on this stage
  // Point-to-point between stages: per message the stream's elements (or this tp rank's 1/tp),
  // the receives in flight, double-buffered gradient buffers
  struct PipeIo {
    size_t n = 0, act_begin = 0, act_n = 0, grad_begin = 0, grad_n = 0;
    std::vector<size_t> counts;  // per tp rank (sliced messages)
    bool act_sliced = false, grad_sliced = false;
    std::vector<std::vector<std::vector<float>>> grad_recv, grad_send;  // [chunk][buffer]
    std::map<std::pair<int, int>, comm::WorkPtr> act_recv, act_send;   // (chunk, slot)
    std::vector<std::deque<std::pair<int, comm::WorkPtr>>> grad_pending;  // per chunk: (buffer, receive)
    std::vector<std::vector<comm::WorkPtr>> grad_send_work;           // [chunk][buffer]
    std::vector<float> tmp;
  };
  std::unique_ptr<PipeIo> pio_;
  void setup_pipeline_io();
  // runs this stage's instruction list of one step; returns the summed micro-batch losses
  double run_pipeline_list(const model::Ops<float>& ops, double backward_scale, double& t_fwd, double& t_rec);
  std::unique_ptr<model::Runner<float>> runner_;
  std::unique_ptr<io::TokenSource> source_;
  std::unique_ptr<io::BatchLoader> loader_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<io::SpillDir> spill_dir_;  // NVMe offload (before the store: removed after it)
  std::unique_ptr<io::AioEngine> aio_;
  std::unique_ptr<ParamStore> store_;
  Schedule schedule_;
  std::vector<ConstView> views_;   // the unit being run: its parameters
  std::vector<float*> grad_ptrs_;  // and gradients
  std::vector<int32_t> tokens_, targets_;
  LRScheduler sched_;
  io::MetricsWriter metrics_;
  double peak_gflops_ = 0, flops_per_token_ = 0;
  // DeepSpeed's counters: global_steps counts every boundary, skipped_steps the overflowing ones,
  // micro_steps every micro-batch; applied_steps (the optimizer's own step count) the others.
  int64_t global_steps_ = 0, skipped_steps_ = 0, micro_steps_ = 0, applied_steps_ = 0;
  std::unique_ptr<LossScaler> scaler_;
  bool update_in_backward_ = false;
  ParamStore::OwnedFn update_fn(double lr, float grad_scale, double beta1, double beta2) const;
  bool stop_requested_ = false;
  uint64_t samples_ = 0;    // global samples consumed (DeepSpeed's global_samples)
  std::array<double, 3> spill_mark_{-1.0, 0.0, 0.0};  // NVMe offload: bytes read, written, not read at the last step's end
  struct PendingSave {  // a save between its start and its commit
    std::string dir, tag, tmp;
    std::vector<io::LogicalTensor> tensors;
    std::vector<std::string> groups;
    uint64_t bytes = 0;
    double started = 0, write_started = 0;
  };
  struct AsyncSave {  // a save whose data a background thread writes (no MPI in that thread)
    struct Copy {
      const float* src;
      float* dst;
      size_t n;
    };
    PendingSave save;
    std::thread thread;
    std::string error;
    std::vector<Copy> copies;          // live state -> snapshot, done first by the thread
    std::vector<io::RawWrite> writes;  // the snapshot's pieces at their places in the file
    std::vector<io::CrcPiece> crcs;    // their checksums, from the thread
    std::mutex mu;
    std::condition_variable cv;
    bool snapshot_ready = false;
    std::atomic<bool> done{false};
    double copy_ms = 0, write_s = 0;
    std::atomic<double> waited_ms{0};
  };
  void verify_and_commit(MPI_Comm c, const PendingSave& p, const std::string& extra);
  void join_save();                   // waits for the background thread (not collective)
  bool save_in_flight_done() const;   // this rank's background writer has finished
  void wait_snapshot();     // before the parameters or optimizer states change
  void reserve_snapshot();  // --async-save: the snapshot buffer, allocated and touched once
  std::unique_ptr<AsyncSave> async_;  // a background save in flight
  // the background saves' snapshot, kept for the next save (not zero-filled: the copy writes it all)
  std::unique_ptr<float[]> snapshot_buf_;
  size_t snapshot_size_ = 0;
  int64_t last_saved_step_ = -1;
  double commit_ms_ = 0;  // a background save committed during the last step
  std::vector<std::string> state_names() const { return optimizer_->state_names(); }
  std::string spill_report() const;  // NVMe offload: the banner's lines
  std::vector<StatePiece> checkpoint_pieces(bool write);
  io::PieceFetch spill_fetch(const StatePiece& s) const;  // NVMe offload: a spilled piece's source
};

}  // namespace dmpi::engine
