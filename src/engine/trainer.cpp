#include "src/engine/trainer.hpp"

#include <algorithm>
#include <array>
#include <pthread.h>

#include <csignal>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "comm/comm_logger.hpp"
#include "io/checkpoint.hpp"
#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "src/engine/flops.hpp"
#include "base/error.hpp"
#include "base/system.hpp"

namespace dmpi::engine {

namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

// The signals are blocked (in the calling thread and every thread it creates later: call this
// before MPI_Init and before any OpenMP region) and polled at the end of each step. An
// asynchronous handler interrupting oneDNN, OpenMP or MPI mid-call was measured to corrupt the
// heap now and then (glibc "corrupted size vs. prev_size" inside dnnl_sgemm).
// A flag-only handler remains for threads created before the mask (OpenBLAS may start its pool
// when the library loads), so a signal they take is still a stop request, not a termination.
void install_stop_handlers() {
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}
int stop_signal() {
  if (g_stop_signal) return g_stop_signal;
  sigset_t pending, set = stop_set();
  sigpending(&pending);
  if (sigismember(&pending, SIGUSR1) || sigismember(&pending, SIGTERM)) {
    timespec zero{0, 0};
    const int sig = sigtimedwait(&set, nullptr, &zero);
    if (sig > 0) g_stop_signal = static_cast<std::sig_atomic_t>(sig);
  }
  return g_stop_signal;
}

namespace {
// The tensor-parallel group as the units see it (model::TpComm), over the tp communicator.
class TpGroupComm final : public model::TpComm {
 public:
  explicit TpGroupComm(comm::Communicator& c) : c_(c) {}
  int size() const override { return c_.size(); }
  int rank() const override { return c_.rank(); }
  std::unique_ptr<Pending> start_sum(void* x, size_t n, DType t) override {
    auto p = std::make_unique<Work>();
    p->w = c_.iall_reduce(x, x, n, t, comm::ReduceOp::Sum);
    return p;
  }
  void sum(void* x, size_t n, DType t) override { c_.all_reduce(x, x, n, t, comm::ReduceOp::Sum); }
  void max(void* x, size_t n, DType t) override { c_.all_reduce(x, x, n, t, comm::ReduceOp::Max); }
  void all_gather(const void* send, size_t n, void* recv, DType t) override { c_.all_gather(send, n, recv, t); }
  std::unique_ptr<Pending> start_reduce_scatter(const void* send, void* recv, size_t n, DType t) override {
    auto p = std::make_unique<Work>();
    p->w = c_.ireduce_scatter(send, recv, n, t, comm::ReduceOp::Sum);
    return p;
  }

 private:
  struct Work final : Pending {
    comm::WorkPtr w;
    void wait() override { w->wait(); }
  };
  comm::Communicator& c_;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The store's categories of a memory report (the trainer adds activations and the snapshot)
MemoryReport store_part(const StoreMemory& z) {
  MemoryReport r;
  r.params = z.params, r.grads = z.grads, r.masters = z.masters, r.optimizer_states = z.optimizer_states;
  r.comm_buffers = z.comm_buffers;
  r.spill_buffers = z.spill_buffers, r.spilled_masters = z.spilled_masters, r.spilled_states = z.spilled_states;
  return r;
}
}  // namespace

Trainer::Trainer(const comm::MpiEnv& env, TrainOptions opt)
    : env_(env), opt_(std::move(opt)), sched_(opt_.ds.scheduler, opt_.ds.optimizer.lr),
      metrics_(env.rank() == 0 ? opt_.metrics_file : std::string()) {
  DMPI_REQUIRE(opt_.train_iters >= 0, "--train-iters must be >= 0 (got " << opt_.train_iters << ")");
  DMPI_REQUIRE(opt_.log_interval >= 1, "--log-interval must be >= 1 (got " << opt_.log_interval << ")");
  const auto& ds = opt_.ds;
  DMPI_REQUIRE(ds.micro_batch >= 1 && ds.grad_accum >= 1, "batch sizes must be resolved before training");
  // A valid config may ask for what this build does not do yet: refuse it, never ignore it.
  if (auto missing = config::unimplemented_for_training(ds); !missing.empty()) {
    std::string msg = "the ds_config asks for what `deepmpi train` does not implement yet:";
    for (const auto& m : missing) msg += "\n  - " + m;
    throw Error(msg);
  }
  comm::CommLogConfig lc;
  lc.enabled = ds.comms_logger.enabled;
  lc.verbose = ds.comms_logger.verbose;
  lc.prof_all = ds.comms_logger.prof_all;
  lc.prof_ops = ds.comms_logger.prof_ops;
  lc.debug = ds.comms_logger.debug;
  comm::CommLogger::instance().configure(lc);
  int world_size = 0;
  DMPI_CHECK_MPI(MPI_Comm_size(opt_.world, &world_size));
  DMPI_REQUIRE(opt_.tensor_parallel >= 1 && world_size % opt_.tensor_parallel == 0,
               "--tensor-model-parallel-size " << opt_.tensor_parallel << " does not divide the " << world_size
                                               << " ranks of the job: use a divisor, or launch a multiple of it");
  const int PP = opt_.pipeline_parallel;
  DMPI_REQUIRE(PP >= 1 && world_size % (opt_.tensor_parallel * PP) == 0,
               "--pipeline-model-parallel-size " << PP << " x --tensor-model-parallel-size " << opt_.tensor_parallel
                                                 << " does not divide the " << world_size
                                                 << " ranks of the job (world = tp x pp x dp): launch a multiple of "
                                                 << opt_.tensor_parallel * PP << " ranks");
  groups_ = std::make_unique<comm::ProcessGroups>(comm::Topology(world_size, opt_.tensor_parallel, PP), opt_.world);
  {
    comm::Communicator& tp = groups_->get(comm::Group::TP);
    opt_.model.tp_size = tp.size();
    opt_.model.tp_rank = tp.rank();
    opt_.model.validate();
    tp_ = std::make_unique<TpGroupComm>(tp);
  }
  DMPI_REQUIRE(ds.micro_batch <= 1 << 20, "train_micro_batch_size_per_gpu " << ds.micro_batch << " is too large");
  comm::Communicator& dp = groups_->get(comm::Group::DP);
  optimizer_ = make_optimizer(ds.optimizer);
  DMPI_REQUIRE(!(optimizer_->needs_whole_tensors() && ds.zero.stage >= 1),
               "optimizer " << ds.optimizer.type << " with zero_optimization.stage " << ds.zero.stage
                   << ": its trust ratio needs whole tensors; use stage 0 (DeepSpeed does not support Lamb with "
                      "ZeRO either)");
  // The execution context: the GEMM backend and precision. Mixed precision: the GEMMs run in bf16
  // or fp16 while activations and everything outside the GEMMs stay fp32; fp16 gets the loss scaler.
  gemm_ = kernels::make_gemm_backend(opt_.gemm_backend.empty() ? kernels::default_gemm_backend_name() : opt_.gemm_backend);
  ctx_ = kernels::host_context(*gemm_, ds.bf16.enabled   ? kernels::Precision::BF16
                                       : ds.fp16.enabled ? kernels::Precision::F16
                                                         : kernels::Precision::F32);
  // The model as units; the parameters live in the store, which initialises only what this rank
  // keeps (stage 3: its partition, DeepSpeed's zero.Init) and holds them in the model dtype.
  // With pipelines: this stage's units (src/engine/pipeline.hpp).
  std::vector<int> chunk_begin = {0};
  if (PP > 1) {
    pipe_kind_ = pipe_schedule_named(opt_.pipeline_schedule);
    const int v = opt_.virtual_stages;
    DMPI_REQUIRE(ds.zero.stage <= 2, "zero_optimization.stage 3 with --pipeline-model-parallel-size "
                                         << PP << ": not supported (each stage would all-gather its layers per "
                                            "micro-batch); use stage 1 or 2, which partition the optimizer states "
                                            "and gradients over dp within each stage");
    DMPI_REQUIRE(pipe_kind_ != PipeSchedule::Interleaved || v >= 2,
                 "--pipeline-schedule interleaved needs --num-layers-per-virtual-pipeline-stage (two or more virtual "
                 "stages per stage)");
    DMPI_REQUIRE(pipe_kind_ == PipeSchedule::Interleaved || v == 1,
                 "--num-layers-per-virtual-pipeline-stage runs the interleaved schedule: drop --pipeline-schedule "
                     << pipe_schedule_name(pipe_kind_) << " or the virtual stages");
    if (pipe_kind_ == PipeSchedule::ZeroBubble) {
      DMPI_REQUIRE(!opt_.model.sp(), "--pipeline-schedule zero-bubble with --sequence-parallel: not supported (the "
                                     "sequence-parallel backward does not split yet); use 1f1b or drop --sequence-parallel");
      DMPI_REQUIRE(opt_.recompute.granularity != model::RecomputeConfig::Granularity::Full,
                   "--pipeline-schedule zero-bubble with --recompute-granularity full: the weight gradients need the "
                   "activations after the input gradients; use 1f1b, or selective recompute");
    }
    PartitionOptions po;
    po.stages = PP, po.virtual_stages = v, po.method = opt_.partition_method;
    po.first_layers = opt_.first_stage_layers, po.last_layers = opt_.last_stage_layers;
    partition_ = partition_model(logical_model(), po);
    const int stage = groups_->get(comm::Group::PP).rank();
    model_ = std::make_unique<model::Model<float>>(opt_.model, partition_.units_of(stage));
    whole_ = std::make_unique<model::Model<float>>(opt_.model);
    chunk_begin = partition_.chunk_begin(stage);
    if (opt_.model.tie_embeddings) {
      // the first and last stages of each (tp, dp) place: the tied table's two copies
      const comm::Coord me = groups_->topology().coord(groups_->world_rank());
      const bool end = stage == 0 || stage == PP - 1;
      MPI_Comm c = MPI_COMM_NULL;
      DMPI_CHECK_MPI(MPI_Comm_split(opt_.world, end ? me.tp + opt_.tensor_parallel * me.dp : MPI_UNDEFINED, stage, &c));
      if (c != MPI_COMM_NULL) tied_ = std::make_unique<comm::MpiCommunicator>(c, "tied", true);
    }
  } else {
    partition_.chunks = {{0, 0}};
    model_ = std::make_unique<model::Model<float>>(opt_.model);
  }
  for (int u = 0, k = 0; u < model_->num_units(); ++u) {
    if (k + 1 < static_cast<int>(chunk_begin.size()) && u == chunk_begin[static_cast<size_t>(k) + 1]) ++k;
    chunk_of_unit_.push_back(k);
  }
  // NVMe offload (ZeRO-Infinity): this rank's spill directory and I/O engine
  SpillOptions spill;
  if (ds.zero.offload_optimizer.device == "nvme") {
    DMPI_REQUIRE(ds.zero.stage >= 1, "zero_optimization.offload_optimizer.device \"nvme\" with stage 0: the optimizer "
                                     "states spilled are the partitions ZeRO makes; set zero_optimization.stage to 1, "
                                     "2 or 3");
    DMPI_REQUIRE(io::checkpoint_data_path() == "posix",
                 "DEEPMPI_CHECKPOINT_IO=mpiio with NVMe offload: the spilled states stream into checkpoints with the "
                 "posix data path only; unset DEEPMPI_CHECKPOINT_IO");
    spill_dir_ = std::make_unique<io::SpillDir>(opt_.world, ds.zero.offload_optimizer.nvme_path);
    io::AioOptions ao;
    ao.block_size = static_cast<size_t>(ds.aio.block_size);
    ao.queue_depth = static_cast<int>(ds.aio.queue_depth);
    ao.threads = static_cast<int>(ds.aio.intra_op_parallelism);
    aio_ = std::make_unique<io::AioEngine>(ao);
    spill.dir = spill_dir_->path();
    spill.aio = aio_.get();
    spill.state_names = optimizer_->state_names();
    spill.sub_group = static_cast<size_t>(ds.zero.sub_group_size);
    spill.buffers = static_cast<int>(ds.zero.offload_optimizer.buffer_count);
    spill.params = ds.zero.stage == 3 && ds.zero.offload_param.device == "nvme";
    spill.param_buffers = static_cast<int>(ds.zero.offload_param.buffer_count);
  }
  // Initial values by logical element: a tensor-parallel split starts as the same slice of the
  // logical tensor that one rank would initialise.
  store_ = std::make_unique<ParamStore>(
      *model_, dp, ds, optimizer_->state_slots(),
      [this](int t, size_t j0, size_t j1, float* out) {
        model::for_each_logical_run(model_->spec(t), opt_.model.tp_rank, j0, j1 - j0, [&](size_t lb, size_t off, size_t n) {
          model_->init_tensor(opt_.seed, t, lb, lb + n, out + off);
        });
      },
      ctx_, spill_dir_ ? &spill : nullptr);
  store_->set_tp(&groups_->get(comm::Group::TP), opt_.model.sp());
  if (PP > 1) store_->set_pipeline(&groups_->get(comm::Group::PP), tied_.get());
  // The step as an instruction list, and the activations it needs.
  const auto plan = model::plan_recompute(*model_, opt_.recompute, chunk_begin);
  std::vector<int> param_unit;
  for (int u = 0; u < model_->num_units(); ++u) param_unit.push_back(store_->layout().unit_of(u));
  ScheduleSpec spec = schedule_spec(*model_, param_unit, plan, static_cast<int>(ds.grad_accum));
  store_->describe_to(spec);
  model::RunnerShape shape;
  if (PP > 1) {
    PipelineSpec ps;
    ps.base = spec;
    ps.chunk_begin = chunk_begin;
    for (int u = 0; u < model_->num_units(); ++u) {
      ps.splits.push_back(model_->unit(u).splits_backward());
      if (model_->global_unit(u) == 0) ps.embedding_unit = u;
      if (std::string(model_->unit(u).kind()) == "lm_head") ps.head_unit = u;
    }
    ps.stages = PP, ps.stage = pipeline_stage(), ps.virtual_stages = opt_.virtual_stages, ps.kind = pipe_kind_;
    schedule_ = pipeline_schedule(ps);
    shape.chunk_begin = chunk_begin;
    shape.split_backward = pipe_kind_ == PipeSchedule::ZeroBubble;
  } else {
    schedule_ = train_schedule(spec);
  }
  runner_ = std::make_unique<model::Runner<float>>(*model_, static_cast<int>(ds.micro_batch), opt_.model.seq_len, plan,
                                                   schedule_.slots, shape);
  runner_->set_tp(tp_.get());
  if (PP > 1) setup_pipeline_io();
  if (ds.fp16.enabled) scaler_ = std::make_unique<LossScaler>(ds.fp16);
  {
    // nothing needs every gradient before the update: no clipping (the global norm), no loss
    // scaler or bf16 overflow check (skip the step), element-wise optimizer, and one tp and pp rank
    // (the norm's sum over them is not kept per sub-group)
    const char* e = std::getenv("DEEPMPI_OFFLOAD_UPDATE");
    DMPI_REQUIRE(!e || std::string(e) == "after" || std::string(e) == "backward" || std::string(e).empty(),
                 "DEEPMPI_OFFLOAD_UPDATE=" << e << ": write \"backward\" (the default where it applies) or \"after\"");
    update_in_backward_ = store_->spilled() && ds.zero.stage == 3 && !scaler_ && ds.gradient_clipping <= 0.0 &&
                          !(ds.bf16.enabled && ds.bf16.check_grad_overflow) && !optimizer_->needs_whole_tensors() &&
                          PP == 1 && groups_->get(comm::Group::TP).size() == 1 && !(e && std::string(e) == "after");
  }
  for (int k = 0; k < optimizer_->state_slots(); ++k)
    if (const float v = optimizer_->initial_state(k); v != 0.0f)
      store_->fill_state(k, v);
  if (opt_.data_path.empty())
    source_ = io::make_mock_source(opt_.seed, opt_.model.vocab);
  else
    source_ = io::open_token_source(opt_.data_path, opt_.model.vocab);
  loader_ = std::make_unique<io::BatchLoader>(*source_, static_cast<int>(ds.micro_batch), opt_.model.seq_len);
  if (!opt_.data_path.empty() && loader_->num_windows() < static_cast<uint64_t>(ds.train_batch_size) && opt_.print &&
      lead())
    std::printf("[deepmpi] warning: %s holds %llu windows of --seq-length %d + 1 tokens, fewer than one global batch "
                "(train_batch_size %lld): every step reads some samples twice (more data, a shorter --seq-length or a "
                "smaller batch avoid it)\n",
                source_->describe().c_str(), static_cast<unsigned long long>(loader_->num_windows()),
                opt_.model.seq_len, static_cast<long long>(ds.train_batch_size));
  tokens_.resize(static_cast<size_t>(ds.micro_batch) * opt_.model.seq_len);
  targets_.resize(tokens_.size());

  peak_gflops_ = opt_.peak_gflops > 0 ? opt_.peak_gflops : kernels::measure_gemm_gflops(ctx_);
  flops_per_token_ = flops_per_token(logical_model(), opt_.model.seq_len);
}

Trainer::~Trainer() {
  join_save();  // a background save never committed (an error ended training) stays a .tmp
}

MemoryReport Trainer::memory() const {
  MemoryReport r = store_part(store_->memory());
  r.checkpoint_snapshot = snapshot_size_ * sizeof(float);
  r.activations = runner_->activation_bytes();
  return r;
}

MemoryReport Trainer::planned_memory(const TrainOptions& opt, int dp_size) {
  model::ModelConfig mc = opt.model;
  mc.tp_size = opt.tensor_parallel, mc.tp_rank = 0;  // rank 0 holds the largest vocabulary slice
  // with pipelines: the stage that needs the most (its units, its schedule's activation slots)
  const int S = opt.pipeline_parallel;
  Partition part;
  PipeSchedule kind = PipeSchedule::OneFOneB;
  if (S > 1) {
    PartitionOptions po;
    po.stages = S, po.virtual_stages = opt.virtual_stages, po.method = opt.partition_method;
    po.first_layers = opt.first_stage_layers, po.last_layers = opt.last_stage_layers;
    model::ModelConfig logical = mc;
    logical.tp_size = 1;
    part = partition_model(logical, po);
    kind = pipe_schedule_named(opt.pipeline_schedule);
  }
  MemoryReport best;
  for (int s = 0; s < S; ++s) {
    const model::Model<float> m = S > 1 ? model::Model<float>(mc, part.units_of(s)) : model::Model<float>(mc);
    const Layout layout(m, dp_size, 0, opt.ds.zero.stage >= 1);
    MemoryReport r = store_part(ParamStore::planned(layout, opt.ds, make_optimizer(opt.ds.optimizer)->state_slots()));
    model::RunnerShape shape;
    int slots = 1;
    if (S > 1) {
      shape.chunk_begin = part.chunk_begin(s);
      shape.split_backward = kind == PipeSchedule::ZeroBubble;
      slots = pipeline_slots(kind, S, s, static_cast<int>(opt.ds.grad_accum), opt.virtual_stages);
    }
    r.activations = model::Runner<float>::planned_bytes(m, static_cast<int>(opt.ds.micro_batch), opt.model.seq_len,
                                                        model::plan_recompute(m, opt.recompute, shape.chunk_begin), slots,
                                                        shape);
    if (s == 0 || r.total() > best.total()) best = r;
  }
  return best;
}

std::string Trainer::memory_plan(const TrainOptions& opt, int dp_size) {
  const MemoryReport r = planned_memory(opt, dp_size);
  auto h = [](size_t b) { return human_bytes(static_cast<double>(b)); };
  std::ostringstream os;
  os << "deepmpi train: " << opt.model.describe() << "\n"
     << "  parameters " << model::num_params(opt.model) << " (" << opt.ds.model_dtype() << "); ZeRO stage "
     << opt.ds.zero.stage << " over dp " << dp_size
     << (opt.tensor_parallel > 1 ? "; tensor parallel " + std::to_string(opt.tensor_parallel) : std::string())
     << (opt.pipeline_parallel > 1 ? "; pipeline parallel " + std::to_string(opt.pipeline_parallel) + " (the largest stage)"
                                   : std::string())
     << "; micro-batch " << opt.ds.micro_batch << " x seq "
     << opt.model.seq_len << "; activation recompute " << opt.recompute.describe() << "\n"
     << "  memory per rank (planned, nothing allocated): params " << h(r.params) << " | grads " << h(r.grads)
     << " | fp32 masters " << h(r.masters) << " | optimizer states " << h(r.optimizer_states)
     << " | comm + working buffers ~" << h(r.comm_buffers) << " | activations " << h(r.activations)
     << (r.spill_buffers ? " | spill buffers " + h(r.spill_buffers) : std::string()) << " | total " << h(r.total())
     << (r.spill_buffers ? "\n  spilled to NVMe per rank (not in memory): fp32 masters " + h(r.spilled_masters) +
                               " | optimizer states " + h(r.spilled_states)
                         : std::string());
  return os.str();
}

std::string Trainer::banner() const {
  std::ostringstream os;
  const auto& ds = opt_.ds;
  auto mem = memory();
  os << "deepmpi train: " << opt_.model.describe() << "\n"
     << "  parameters " << model::num_params(logical_model()) << " (" << ds.model_dtype() << "), FLOPs/token " << flops_per_token_ / 1e6
     << " M (6N + 6LTC); ZeRO stage " << ds.zero.stage << " over dp " << groups_->get(comm::Group::DP).size()
     << (opt_.tensor_parallel > 1
             ? "; tensor parallel " + std::to_string(opt_.tensor_parallel) +
                   (opt_.model.sp() ? " + sequence parallel" : "") + " (this rank holds " +
                   std::to_string(model_->real_params()) + " of the parameters)"
             : std::string())
     << (partition_.stages > 1 ? "; pipeline parallel " + std::to_string(partition_.stages) + " (this stage holds " +
                                      std::to_string(model_->real_params()) + " of the parameters)"
                                : std::string())
     << "; activation recompute " << opt_.recompute.describe() << "\n"
     << (partition_.stages > 1 ? partition_report() + "\n" : std::string())
     << "  data: " << source_->describe() << "\n"
     << "  batch: train_batch_size " << ds.train_batch_size << " = micro " << ds.micro_batch << " x accumulation "
     << ds.grad_accum << " x dp " << groups_->get(comm::Group::DP).size() << "; tokens/step " << ds.train_batch_size * opt_.model.seq_len << "\n"
     << "  optimizer " << ds.optimizer.type << " " << ds.resolved()["optimizer"]["params"].dump()
     << "; schedule " << sched_.describe()
     << "; gradient_clipping " << ds.gradient_clipping << "\n"
     << "  optimizer and schedule from: " << ds.optimizer_source << "\n"
     << "  precision: GEMMs " << kernels::precision_name(ctx_.precision)
     << (ds.fp16.enabled || ds.bf16.enabled
             ? std::string("; parameters ") + ds.model_dtype() + ", gradients " +
                   (ds.misc.grad_accum_dtype.empty() ? std::string(ds.model_dtype()) : ds.misc.grad_accum_dtype) +
                   ", fp32 masters and optimizer states"
             : std::string())
     << (scaler_ ? (scaler_->dynamic() ? "; dynamic loss scale from " : "; static loss scale ") +
                       std::to_string(scaler_->scale())
                 : std::string())
     << "\n"
     << "  threads: " << compute_threads() << " OpenMP, " << kernels::blas_threads() << " OpenBLAS; GEMM backend "
     << gemm_->name() << "; peak " << peak_gflops_
     << " GFLOP/s (" << (opt_.peak_gflops > 0 ? "--peak-tflops" : "sgemm probe") << ")\n"
     << "  memory per rank: params " << human_bytes(static_cast<double>(mem.params)) << " | grads "
     << human_bytes(static_cast<double>(mem.grads)) << " | fp32 masters " << human_bytes(static_cast<double>(mem.masters))
     << " | optimizer states "
     << human_bytes(static_cast<double>(mem.optimizer_states)) << " | comm + working buffers "
     << human_bytes(static_cast<double>(mem.comm_buffers)) << " | activations "
     << human_bytes(static_cast<double>(mem.activations))
     << (mem.spill_buffers ? " | spill buffers " + human_bytes(static_cast<double>(mem.spill_buffers)) : std::string())
     << " | total " << human_bytes(static_cast<double>(mem.total()));
  if (spill_dir_) os << "\n" << spill_report();
  else if (ds.zero.offload_optimizer.device == "cpu" || ds.zero.offload_param.device == "cpu")
    os << "\n  note: offload device \"cpu\": this host-only build keeps every state in host memory already; "
          "nothing moves";
  return os.str();
}

std::string Trainer::spill_report() const {
  const io::SpillArrays* a = store_->spill_arrays();
  const auto& ds = opt_.ds;
  auto h = [](size_t b) { return human_bytes(static_cast<double>(b)); };
  const StoreMemory z = store_->memory();
  std::ostringstream os;
  os << "  NVMe offload (offload_optimizer): " << (store_->masters_spilled() ? "fp32 masters " + h(z.spilled_masters) + " + " : "")
     << "optimizer states " << h(z.spilled_states) << " per rank in " << spill_dir_->path() << " (index "
     << spill_dir_->path() << "/zero.index.h5)\n"
     << "    I/O: " << aio_->describe() << "; sub-groups of " << a->sub_group() << " elements (sub_group_size "
     << ds.zero.sub_group_size << ") through " << a->buffers() << " buffer(s) (buffer_count "
     << ds.zero.offload_optimizer.buffer_count << "): " << h(a->host_bytes()) << " of host memory; "
     << static_cast<double>(spill_dir_->free_bytes()) / 1e9 << " GB left free on the file system";
  if (ds.zero.stage == 3)
    os << "\n    the optimizer step "
       << (update_in_backward_ ? "runs during the last backward: each sub-group is updated once its gradients are final "
                                 "(no gradient_clipping, no loss scaling)"
                               : std::string("is finished by the next forward: each gather first updates its chunk's "
                                             "sub-groups") +
                                     (std::getenv("DEEPMPI_OFFLOAD_UPDATE") && std::string(std::getenv("DEEPMPI_OFFLOAD_UPDATE")) == "after"
                                          ? " (DEEPMPI_OFFLOAD_UPDATE=after)"
                                                                            : " (gradient_clipping, loss scaling, the bf16 "
                                                                              "overflow check or tp/pp need every gradient first)"));
  if (store_->params_spilled())
    os << "\n  NVMe offload (offload_param): no parameter partition in memory; each unit's chunk is read from the "
          "spilled fp32 masters"
       << (store_->sixteen_bit() ? " (rounded to 16 bits)" : "") << " one unit ahead of its gather, at most "
       << ds.zero.offload_param.buffer_count << " chunks staged (buffer_count; buffer_size, max_in_cpu: the chunks are "
       << "sized by the units)"
       << (ds.zero.offload_param.nvme_path != ds.zero.offload_optimizer.nvme_path
               ? "; offload_param.nvme_path is not used: the masters' files are in offload_optimizer.nvme_path"
               : "");
  if (spill_dir_->on_tmpfs())
    os << "\n    warning: nvme_path is on tmpfs: the spill files take memory, not disk (point nvme_path at an NVMe drive)";
  for (const auto& o : spill_dir_->others())
    os << "\n    note: " << o << " is another job's spill directory (a crashed job's, if none runs): remove it to free its space";
  return os.str();
}

// The optimizer's step number is applied_steps_ (counted before the step)
ParamStore::OwnedFn Trainer::update_fn(double lr, float grad_scale, double beta1, double beta2) const {
  StepHyper h;
  h.lr = lr, h.beta1 = beta1, h.beta2 = beta2, h.grad_scale = grad_scale, h.step = applied_steps_;
  h.weight_decay = sched_.weight_decay(opt_.ds.optimizer.weight_decay);  // Megatron's weight-decay increment
  // by value: at ZeRO-3 with NVMe offload the update finishes during the next forward, or runs
  // during the backward
  return [opt = optimizer_.get(), h](float* p, float* g, float* const* st, size_t n, bool decay) {
    opt->step(p, g, st, n, decay, h);
  };
}

void Trainer::apply_optimizer(double lr, float grad_scale, double beta1, double beta2) {
  store_->for_each_owned(update_fn(lr, grad_scale, beta1, beta2), optimizer_->needs_whole_tensors());
}

std::vector<std::vector<float>> Trainer::full_params() {
  std::vector<std::vector<float>> local = stage_params();
  comm::Communicator& pp = groups_->get(comm::Group::PP);
  if (pp.size() == 1) return local;
  // every stage's tensors on every rank: each tensor broadcast from the stage that owns it (the
  // tied table from the first stage)
  const int T = whole().num_tensors();
  std::vector<int> owner(static_cast<size_t>(T), -1), local_of(static_cast<size_t>(T), -1);
  for (int t = 0; t < model_->num_tensors(); ++t)
    if (!model_->spec(t).tied_copy) owner[static_cast<size_t>(model_->global_tensor(t))] = pp.rank(), local_of[static_cast<size_t>(model_->global_tensor(t))] = t;
  pp.all_reduce(owner.data(), owner.data(), owner.size(), DType::I32, comm::ReduceOp::Max);
  std::vector<std::vector<float>> out(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) {
    auto& dst = out[static_cast<size_t>(t)];
    if (local_of[static_cast<size_t>(t)] >= 0) dst = std::move(local[static_cast<size_t>(local_of[static_cast<size_t>(t)])]);
    else dst.assign(whole().spec(t).logical_numel, 0.0f);
    DMPI_REQUIRE(owner[static_cast<size_t>(t)] >= 0, "tensor " << whole().spec(t).name << " is on no pipeline stage");
    pp.broadcast(dst.data(), dst.size(), DType::F32, owner[static_cast<size_t>(t)]);
  }
  return out;
}

std::vector<std::vector<float>> Trainer::stage_params() {
  std::vector<std::vector<float>> local = store_->gather_full();
  comm::Communicator& tp = groups_->get(comm::Group::TP);
  if (tp.size() == 1) return local;
  const Layout& L = store_->layout();
  std::vector<std::vector<float>> out(local.size());
  for (int t = 0; t < L.num_tensors(); ++t) {
    const TensorInfo& ti = L.tensor(t);
    const auto& sp = model_->spec(ti.model_tensor);
    auto& dst = out[static_cast<size_t>(ti.model_tensor)];
    if (!ti.tp_split) {
      dst = std::move(local[static_cast<size_t>(ti.model_tensor)]);
      continue;
    }
    std::vector<size_t> counts;
    size_t total = 0;
    for (int r = 0; r < tp.size(); ++r) counts.push_back(L.local_numel(t, r)), total += counts.back();
    std::vector<float> all(total);
    tp.all_gatherv(local[static_cast<size_t>(ti.model_tensor)].data(), all.data(), counts, DType::F32);
    dst.assign(sp.logical_numel, 0.0f);
    size_t at = 0;
    for (int r = 0; r < tp.size(); ++r) {
      for (const LogicalRun& lr : L.logical_runs(t, 0, counts[static_cast<size_t>(r)], r))
        std::copy_n(all.data() + at + lr.local, lr.n, dst.data() + lr.begin);
      at += counts[static_cast<size_t>(r)];
    }
  }
  return out;
}

StepMetrics Trainer::train_step() {
  const auto& ds = opt_.ds;
  const double t0 = now_seconds();
  comm::Communicator& dp = groups_->get(comm::Group::DP);
  const model::Ops<float> ops{ctx_, true};
  const int head = model_->num_units() - 1;
  // DeepSpeed divides each micro loss by GAS; fp16 multiplies it by the loss scale
  const double backward_scale = (scaler_ ? scaler_->scale() : 1.0) / static_cast<double>(ds.grad_accum);
  double loss_sum = 0.0, t_fwd = 0.0, t_bwd = 0.0, t_rec = 0.0, a = 0.0, b = 0.0;
  // spill bytes: counted from the last step's end (a step's last writes and the next forward's
  // first read finish between two steps), from this step's start the first time
  if (aio_ && spill_mark_[0] < 0)
    spill_mark_ = {static_cast<double>(aio_->bytes_read()), static_cast<double>(aio_->bytes_written()),
                   store_->spill_cached_bytes()};
  const double spill_t0 = store_->spill_wait_seconds();
  // the update during the last backward: its hyper-parameters are this step's (the scheduler
  // steps at the end; no clipping and no loss scale: the gradients' factor is 1)
  bool snapshot_waited = false;
  if (update_in_backward_) {
    double b1 = ds.optimizer.beta1, b2 = ds.optimizer.beta2;
    if (optimizer_->has_betas()) sched_.momentum(b1, b2);
    ++applied_steps_;
    store_->arm_update(update_fn(sched_.current_lr(), 1.0f, b1, b2));
  }
  if (partition_.stages > 1) {
    loss_sum = run_pipeline_list(ops, backward_scale, t_fwd, t_rec);
    t_bwd = now_seconds() - t0 - t_fwd;
  }
  const std::vector<Instr> none;
  for (const Instr& in : partition_.stages > 1 ? none : schedule_.instrs) {
    switch (in.op) {
      case OpKind::BeginStep: store_->begin_step(); break;
      case OpKind::Load: {
        const uint64_t first = samples_ + static_cast<uint64_t>(in.micro * dp.size() + dp.rank()) * static_cast<uint64_t>(ds.micro_batch);
        loader_->load(first, tokens_.data(), targets_.data());
        runner_->load(in.slot, tokens_.data(), targets_.data());
        a = now_seconds();
        break;
      }
      case OpKind::Gather: store_->gather(in.unit); break;
      case OpKind::Prefetch: store_->prefetch(in.unit); break;
      case OpKind::Release: store_->release(in.unit, in.keep); break;
      case OpKind::AcquireGrads:
        // the update during this backward writes the spill files a background save may still read
        if (update_in_backward_ && in.micro == static_cast<int>(ds.grad_accum) - 1 && !snapshot_waited)
          wait_snapshot(), snapshot_waited = true;
        store_->acquire_grads(in.unit);
        break;
      case OpKind::ReduceGrads: store_->reduce_grads(in.unit); break;
      case OpKind::Forward:
      case OpKind::Recompute: {
        const double r0 = in.op == OpKind::Recompute ? now_seconds() : 0.0;
        store_->unit_views(in.unit, views_, grad_ptrs_);
        const double loss = runner_->forward(ops, in.unit, in.slot, views_.data());
        if (in.op == OpKind::Recompute) t_rec += now_seconds() - r0;
        if (in.op == OpKind::Forward && in.unit == head) {
          loss_sum += loss;
          b = now_seconds();
        }
        break;
      }
      case OpKind::Backward:
        store_->unit_views(in.unit, views_, grad_ptrs_);
        runner_->backward(ops, in.unit, in.slot, views_.data(), grad_ptrs_.data(), backward_scale);
        break;
      case OpKind::EndMicro:
        store_->end_micro();
        t_fwd += b - a, t_bwd += now_seconds() - b;
        ++micro_steps_;
        break;
      case OpKind::Step: break;  // the boundary, below
      default: DMPI_FAIL("instruction " << to_string(in) << " outside a pipeline");
    }
  }
  samples_ += static_cast<uint64_t>(ds.train_batch_size);
  const double t_opt0 = now_seconds();
  store_->reduce_gradients();
  // The norm is of the scaled gradients; every rank gets the same value (all-reduced, or
  // computed from identical all-reduced gradients), so the overflow decision is the group's.
  const double scale = scaler_ ? scaler_->scale() : 1.0;
  const double norm = store_->grad_norm() / scale;
  const bool overflow = !std::isfinite(norm);
  DMPI_REQUIRE(!overflow || scaler_ || (ds.bf16.enabled && ds.bf16.check_grad_overflow),
               "gradient norm is " << norm << " at step " << global_steps_ + 1
                                   << " (training diverged; lower the lr)");
  wait_snapshot();  // a background save's copy of the parameters and states must be complete
  std::string scaler_msg;
  if (scaler_) scaler_->update(overflow, &scaler_msg);
  ++global_steps_;
  const double lr = sched_.current_lr();
  double coef = 1.0;
  if (overflow) {
    // DeepSpeed: the step is skipped (no optimizer step, no scheduler step) and the gradients
    // are zeroed; global_steps still counts it.
    ++skipped_steps_;
    store_->skip_step();
    if (!scaler_msg.empty() && opt_.print && lead()) std::printf("[deepmpi] %s\n", scaler_msg.c_str());
  } else {
    // DeepSpeed: clip_coef = min(1, max_norm / (norm + 1e-6)) on the unscaled norm; 0 disables
    // clipping. Unscaling and clipping are one multiply in the optimizer.
    if (ds.gradient_clipping > 0.0) coef = std::min(1.0, ds.gradient_clipping / (norm + 1e-6));
    if (!update_in_backward_) {  // (else done during the backward, with these values)
      ++applied_steps_;
      double b1 = ds.optimizer.beta1, b2 = ds.optimizer.beta2;
      if (optimizer_->has_betas()) sched_.momentum(b1, b2);  // OneCycle's cycled momentum
      apply_optimizer(lr, static_cast<float>(coef / scale), b1, b2);
    }
    store_->after_optimizer();
    sched_.step();
  }
  const double t_end = now_seconds();
  const double dt = t_end - t0;

  // The logged loss is the mean over the whole global batch: averaged over the dp group.
  double loss = loss_sum / static_cast<double>(ds.grad_accum);
  // One all-reduce carries the loss and the stop request: a signal (SIGUSR1/SIGTERM, Slurm's
  // warning before the time limit or a preemption) on any rank stops every rank after this step.
  // It also carries whether this rank's background save writer has finished (weighted by W+1,
  // so the sum separates the two counts): when every rank's has, the save is committed now.
  // Over every training rank (tp ranks hold the same loss, the other pipeline stages 0; a
  // signal may reach any of them).
  comm::Communicator& world = groups_->get(comm::Group::World);
  const double W1 = world.size() + 1.0;
  double red[2] = {loss, (stop_signal() != 0 ? 1.0 : 0.0) + (save_in_flight_done() ? W1 : 0.0)};
  world.all_reduce(red, red, 2, comm::DType::F64, comm::ReduceOp::Sum);
  loss = red[0] / (world.size() / groups_->get(comm::Group::PP).size());  // the last stage's ranks hold the loss
  const double writers_done = std::floor(red[1] / W1);
  stop_requested_ = red[1] - writers_done * W1 > 0.5;
  if (async_ && writers_done == world.size()) {
    const double a = now_seconds();
    finish_saves();
    commit_ms_ = (now_seconds() - a) * 1e3;  // what training waited for the commit (run() logs it)
  }
  StepMetrics m;
  m.step = global_steps_;
  m.loss = loss;
  m.lr = lr;
  m.grad_norm = norm;
  m.grad_norm_clipped = overflow ? norm : norm * coef;
  m.loss_scale = scale;
  m.skipped = overflow;
  m.step_ms = dt * 1e3;
  m.forward_ms = t_fwd * 1e3, m.backward_ms = t_bwd * 1e3, m.optimizer_ms = (t_end - t_opt0) * 1e3;
  m.recompute_ms = t_rec * 1e3;
  if (aio_) {
    const std::array<double, 3> now{static_cast<double>(aio_->bytes_read()), static_cast<double>(aio_->bytes_written()),
                                    store_->spill_cached_bytes()};
    m.spill_read_bytes = now[0] - spill_mark_[0];
    m.spill_write_bytes = now[1] - spill_mark_[1];
    m.spill_cached_bytes = now[2] - spill_mark_[2];
    spill_mark_ = now;
    m.spill_wait_ms = (store_->spill_wait_seconds() - spill_t0) * 1e3;
    m.spill_deferred = static_cast<double>(store_->pending_update());
    m.spill_in_backward = update_in_backward_ ? static_cast<double>(store_->updated_in_backward()) : 0.0;
  }
  const double tokens = static_cast<double>(ds.train_batch_size) * opt_.model.seq_len;
  m.tokens_per_s = tokens / dt;
  m.tflops = m.tokens_per_s * flops_per_token_ / 1e12;
  m.mfu = m.tflops * 1e3 / (peak_gflops_ * world.size());  // the job's FLOP/s over the job's peak
  return m;
}

TrainSummary Trainer::run() {
  TrainSummary s;
  s.memory = memory();
  const bool print = opt_.print && lead();
  if (print) {
    std::printf("%s\n", banner().c_str());
    if (opt_.ds.misc.dump_state) std::printf("dump_state: resolved ds_config\n%s\n", opt_.ds.resolved().dump(2).c_str());
    for (auto& w : opt_.ds.warnings) std::printf("  warning: %s\n", w.c_str());
    // DeepSpeed's activation_checkpointing block configures its checkpoint API; on one
    // tensor-parallel rank each key is either what deepmpi does anyway or moot
    const auto& ac = opt_.ds.activation_checkpointing;
    if (ac.partition_activations && opt_.tensor_parallel == 1)
      std::printf("  note: activation_checkpointing.partition_activations: one tensor-parallel rank, nothing to partition\n");
    else if (ac.partition_activations)
      std::printf("  note: activation_checkpointing.partition_activations: %s\n",
                  opt_.model.sp() ? "the residual stream (each block's checkpointed input), the norms' statistics and "
                                    "outputs are split over the tp ranks (sequence parallelism's split)"
                                  : "the residual stream is whole on every tp rank (sequence parallelism is off)");
    if (ac.cpu_checkpointing)
      std::printf("  note: activation_checkpointing.cpu_checkpointing: checkpointed activations are in host memory already\n");
    if (ac.contiguous_memory_optimization)
      std::printf("  note: activation_checkpointing.contiguous_memory_optimization: kept activations are one contiguous "
                  "buffer per micro-batch already\n");
    if (opt_.ds.raw.contains("activation_checkpointing") && opt_.recompute.granularity == model::RecomputeConfig::Granularity::None)
      std::printf("  note: the activation_checkpointing block sets how checkpoints are kept, not which layers are recomputed: "
                  "add --recompute-granularity full --recompute-method uniform (or selective) to recompute\n");
    if (opt_.ds.scheduler.type == "OneCycle" && opt_.ds.scheduler.cycle_momentum && !optimizer_->has_betas())
      std::printf("  warning: cycle_momentum is disabled: optimizer %s has no betas (as in DeepSpeed)\n",
                  opt_.ds.optimizer.type.c_str());
    std::fflush(stdout);
  }
  MPI_Comm comm = opt_.world;
  if (!opt_.save_dir.empty()) io::on_rank0(comm, [&] { io::check_save_dir(opt_.save_dir); });  // fail now, not at step N
  if (!opt_.save_dir.empty() && opt_.async_save) reserve_snapshot();
  if (!opt_.load_dir.empty()) {
    bool load = opt_.load_required || !opt_.load_tag.empty();
    if (!load) {  // --load defaulted to --save: resume when a checkpoint is there
      int found = 0;
      io::on_rank0(comm, [&] { found = io::has_latest(opt_.load_dir) ? 1 : 0; });
      DMPI_CHECK_MPI(MPI_Bcast(&found, 1, MPI_INT, 0, comm));
      load = found != 0;
      if (!load && print) std::printf("[deepmpi] no checkpoint in %s yet: starting from step 0\n", opt_.load_dir.c_str());
    }
    // one pass: a damaged checkpoint stops the run (the error propagates), so no partly loaded
    // state is ever trained on
    if (load) load_checkpoint(opt_.load_dir, opt_.load_tag, opt_.load_optimizer, /*atomic=*/false);
  }
  if (!opt_.save_dir.empty() && global_steps_ < opt_.train_iters) {
    // the first checkpoint this run will write: refused now, not after hours of training, when it
    // would replace an earlier run's or move `latest` back (each save checks again)
    const long long every = opt_.save_interval, next = global_steps_ + 1;
    const long long first = every > 0 ? std::min<long long>(opt_.train_iters, (next + every - 1) / every * every) : opt_.train_iters;
    io::on_rank0(comm, [&] {
      io::check_overwrite(opt_.save_dir, "global_step" + std::to_string(first), opt_.overwrite_checkpoints);
    });
  } else if (!opt_.save_dir.empty() && opt_.train_iters == 0 && global_steps_ == 0) {
    io::on_rank0(comm, [&] { io::check_overwrite(opt_.save_dir, "global_step0", opt_.overwrite_checkpoints); });
  }
  if (global_steps_ > 0 && global_steps_ >= opt_.train_iters && print)
    std::printf("[deepmpi] the checkpoint is at step %lld, --train-iters is %lld: nothing to train (raise "
                "--train-iters to go on)\n",
                static_cast<long long>(global_steps_), static_cast<long long>(opt_.train_iters));
  while (global_steps_ < opt_.train_iters) {
    StepMetrics m = train_step();
    fault_point("step" + std::to_string(m.step), groups_->world_rank());
    s.steps.push_back(m);
    bool log = m.step % opt_.log_interval == 0 || m.step == opt_.train_iters || stop_requested_;
    if (log && print) {
      std::printf("step %6lld/%lld | loss %.4f | lr %.3e | grad norm %.4f | %8.1f ms | %9.0f tokens/s | "
                  "%6.3f TFLOP/s | MFU %5.1f%%",
                  static_cast<long long>(m.step), static_cast<long long>(opt_.train_iters), m.loss, m.lr, m.grad_norm,
                  m.step_ms, m.tokens_per_s, m.tflops, 100.0 * m.mfu);
      if (scaler_) std::printf(" | loss scale %g | skipped %lld", m.loss_scale, static_cast<long long>(skipped_steps_));
      std::printf("\n");
      if (opt_.ds.misc.wall_clock_breakdown)  // DeepSpeed's timers: forward, backward (incl. allreduce), step
        std::printf("  time (ms) | forward %.1f | backward %.1f | clip + optimizer step %.1f\n", m.forward_ms,
                    m.backward_ms, m.optimizer_ms);
      if (aio_)  // rank 0's spill traffic this step (every rank moves about as much)
        std::printf("  NVMe offload | read %.3f GB | written %.3f GB | %.2f GB/s over the step | waited %.1f ms for I/O"
                    " | %.3f GB not read (in the spill buffers) | %.0f sub-groups %s\n",
                    m.spill_read_bytes / 1e9, m.spill_write_bytes / 1e9,
                    (m.spill_read_bytes + m.spill_write_bytes) / 1e9 / (m.step_ms / 1e3), m.spill_wait_ms,
                    m.spill_cached_bytes / 1e9, update_in_backward_ ? m.spill_in_backward : m.spill_deferred,
                    update_in_backward_ ? "updated during the backward" : "left to the next forward");
      if (opt_.ds.activation_checkpointing.profile && opt_.recompute.granularity == model::RecomputeConfig::Granularity::Full)
        std::printf("  recompute (ms) | %.1f of the backward's %.1f\n", m.recompute_ms, m.backward_ms);
      if (opt_.ds.misc.memory_breakdown) {
        const MemoryReport mem = memory();
        std::printf("  memory | params %s | grads %s | fp32 masters %s | optimizer states %s | comm + working buffers %s | "
                    "activations %s%s | RSS %s (peak %s)\n",
                    human_bytes(static_cast<double>(mem.params)).c_str(), human_bytes(static_cast<double>(mem.grads)).c_str(),
                    human_bytes(static_cast<double>(mem.masters)).c_str(),
                    human_bytes(static_cast<double>(mem.optimizer_states)).c_str(),
                    human_bytes(static_cast<double>(mem.comm_buffers)).c_str(),
                    human_bytes(static_cast<double>(mem.activations)).c_str(),
                    mem.checkpoint_snapshot
                        ? (" | checkpoint snapshot " + human_bytes(static_cast<double>(mem.checkpoint_snapshot))).c_str()
                        : "",
                    human_bytes(static_cast<double>(current_rss_bytes())).c_str(),
                    human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
      }
      std::fflush(stdout);
    }
    if (log)
      metrics_.write({{"step", m.step}, {"loss", m.loss}, {"lr", m.lr}, {"grad_norm", m.grad_norm},
                      {"grad_norm_clipped", m.grad_norm_clipped}, {"step_ms", m.step_ms},
                      {"tokens_per_s", m.tokens_per_s}, {"tflops", m.tflops}, {"mfu", m.mfu},
                      {"forward_ms", m.forward_ms}, {"backward_ms", m.backward_ms}, {"optimizer_ms", m.optimizer_ms},
                      {"loss_scale", m.loss_scale}, {"skipped", m.skipped}, {"skipped_steps", skipped_steps_},
                      {"spill_read_bytes", m.spill_read_bytes}, {"spill_write_bytes", m.spill_write_bytes}, {"spill_cached_bytes", m.spill_cached_bytes}, {"spill_deferred_subgroups", m.spill_deferred}, {"spill_in_backward_subgroups", m.spill_in_backward},
                      {"spill_wait_ms", m.spill_wait_ms}});
    if (commit_ms_ > 0) {
      metrics_.write({{"checkpoint_commit_ms", commit_ms_}, {"step", m.step}});
      commit_ms_ = 0;
    }
    const bool interval_save = opt_.save_interval > 0 && m.step % opt_.save_interval == 0;
    if (!opt_.save_dir.empty() && (interval_save || stop_requested_)) {
      // what training waits for: the whole save, or with --async-save the set-up of the background one
      const bool async = opt_.async_save && !stop_requested_;
      const double a = now_seconds();
      save_checkpoint(opt_.save_dir, "", async);
      metrics_.write({{"checkpoint", "global_step" + std::to_string(m.step)}, {"step", m.step},
                      {"stall_ms", (now_seconds() - a) * 1e3}, {"async", async}});
    }
    if (stop_requested_) {
      s.stopped_by_signal = true;
      if (print) {
        if (opt_.save_dir.empty())
          std::printf("deepmpi: a stop signal (SIGUSR1/SIGTERM) reached the job; every rank stopped after step %lld of "
                      "%lld (no --save directory: nothing was saved)\n",
                      static_cast<long long>(m.step), static_cast<long long>(opt_.train_iters));
        else
          std::printf("deepmpi: a stop signal (SIGUSR1/SIGTERM) reached the job; every rank stopped after step %lld of "
                      "%lld and saved %s/global_step%lld; the same command resumes from it (--load defaults to "
                      "--save)\n",
                      static_cast<long long>(m.step), static_cast<long long>(opt_.train_iters), opt_.save_dir.c_str(),
                      static_cast<long long>(m.step));
        std::fflush(stdout);
      }
      break;
    }
  }
  // Megatron saves at the end of training too; with --train-iters 0 (nothing trained, nothing
  // loaded) that is the initial weights (issue 18: users export them)
  if (!opt_.save_dir.empty() && last_saved_step_ != global_steps_ && (!s.steps.empty() || global_steps_ == 0)) {
    const double a = now_seconds();
    save_checkpoint(opt_.save_dir);
    metrics_.write({{"checkpoint", "global_step" + std::to_string(global_steps_)}, {"step", global_steps_},
                    {"stall_ms", (now_seconds() - a) * 1e3}, {"async", false}});
  }
  if (async_) {  // the last background save must end before the job does
    const double a = now_seconds();
    finish_saves();
    metrics_.write({{"checkpoint_wait_ms", (now_seconds() - a) * 1e3}});
  }
  // Medians over the steps after the first (which pays page faults and thread start-up).
  std::vector<double> ms, tps, tf, mfu;
  for (size_t i = s.steps.size() > 1 ? 1 : 0; i < s.steps.size(); ++i) {
    ms.push_back(s.steps[i].step_ms);
    tps.push_back(s.steps[i].tokens_per_s);
    tf.push_back(s.steps[i].tflops);
    mfu.push_back(s.steps[i].mfu);
  }
  s.median_step_ms = median(ms);
  s.median_tokens_per_s = median(tps);
  s.median_tflops = median(tf);
  s.median_mfu = median(mfu);
  {  // the largest peak RSS of the ranks (what a job must fit per rank)
    double rss = static_cast<double>(peak_rss_bytes());
    groups_->get(comm::Group::World).all_reduce(&rss, &rss, 1, comm::DType::F64, comm::ReduceOp::Max);
    s.peak_rss = static_cast<size_t>(rss);
  }
  s.memory = memory();  // after the steps: the pooled communication buffers exist now
  metrics_.write({{"summary", true}, {"steps", s.steps.size()}, {"median_step_ms", s.median_step_ms},
                  {"median_tokens_per_s", s.median_tokens_per_s}, {"median_tflops", s.median_tflops},
                  {"median_mfu", s.median_mfu}, {"peak_rss_bytes_max_rank", s.peak_rss},
                  {"zero_stage", opt_.ds.zero.stage}, {"dp", groups_->get(comm::Group::DP).size()},
                  {"tp", groups_->get(comm::Group::TP).size()}, {"pp", groups_->get(comm::Group::PP).size()},
                  {"params_bytes", s.memory.params}, {"grads_bytes", s.memory.grads}, {"masters_bytes", s.memory.masters},
                  {"optimizer_states_bytes", s.memory.optimizer_states}, {"comm_buffers_bytes", s.memory.comm_buffers},
                  {"checkpoint_snapshot_bytes", s.memory.checkpoint_snapshot},
                  {"activations_bytes", s.memory.activations}});
  if (print && !s.steps.empty()) {
    std::printf("done: %zu steps | median %.1f ms/step | %.0f tokens/s | %.3f TFLOP/s | MFU %.1f%% | peak RSS %s "
                "(%.2fx the %s the memory report accounts for)\n",
                s.steps.size(), s.median_step_ms, s.median_tokens_per_s, s.median_tflops, 100.0 * s.median_mfu,
                human_bytes(static_cast<double>(s.peak_rss)).c_str(),
                static_cast<double>(s.peak_rss) / static_cast<double>(s.memory.total()),
                human_bytes(static_cast<double>(s.memory.total())).c_str());
    std::fflush(stdout);
  }
  if (comm::CommLogger::instance().config().enabled) {  // collective: every rank takes part
    std::string table = comm::CommLogger::instance().summary(opt_.world);
    if (print) std::printf("%s", table.c_str());
  }
  return s;
}

}  // namespace dmpi::engine
