#include <omp.h>
#include <sched.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "comm/mpi_env.hpp"
#include "kernels/gemm.hpp"
#include "src/cli/commands.hpp"
#include "src/config/ds_config.hpp"
#include "src/config/json_text.hpp"
#include "src/engine/trainer.hpp"
#include "src/model/config.hpp"
#include "base/args.hpp"
#include "base/error.hpp"
#include "base/system.hpp"

namespace dmpi::cli {

namespace {

std::vector<FlagSpec> train_flags() {
  return {
      {"deepspeed-config", true, "ds_config.json (batch sizes, optimizer, LR schedule, clipping); default: built-in"},
      {"model", true, "preset (default tiny): tiny | small | gpt2-124m | gpt2-350m | gpt2-774m | gpt2-1.5b | llama-tiny | "
                      "llama-125m | llama2-7b | llama2-13b | llama3-8b"},
      {"num-layers", true, "transformer blocks (overrides the preset)"},
      {"hidden-size", true, "model width"},
      {"num-attention-heads", true, "attention heads (must divide --hidden-size)"},
      {"seq-length", true, "tokens per sample"},
      {"max-position-embeddings", true, "learned positions (>= --seq-length; default = --seq-length)"},
      {"vocab-size", true, "vocabulary size"},
      {"normalization", true, "LayerNorm | RMSNorm"},
      {"norm-epsilon", true, "epsilon of the norms (default 1e-5)"},
      {"position-embedding-type", true, "learned_absolute | rope | none"},
      {"rotary-base", true, "RoPE base (default 10000)"},
      {"swiglu", false, "SwiGLU MLP (gate|up) instead of GELU"},
      {"ffn-hidden-size", true, "MLP width (default 4 x hidden; with --swiglu int(8 hidden / 3 / 64) x 64)"},
      {"group-query-attention", false, "grouped-query attention (with --num-query-groups)"},
      {"num-query-groups", true, "key/value heads with --group-query-attention (must divide the heads)"},
      {"untie-embeddings-and-output-weights", false, "an LM head of its own instead of the embedding table"},
      {"disable-bias-linear", false, "no biases in the linear layers"},
      {"tensor-model-parallel-size", true, "tensor-parallel ranks per model replica (adjacent ranks; default 1, or the "
                                           "ds_config's tensor_parallel.autotp_size); dp = ranks / tp"},
      {"pipeline-model-parallel-size", true, "pipeline stages (default 1, or the ds_config's pipeline.stages); "
                                             "dp = ranks / (tp x pp)"},
      {"pipeline-schedule", true, "1f1b (DeepSpeed's TrainSchedule, the default) | interleaved (with "
                                  "--num-layers-per-virtual-pipeline-stage) | zero-bubble (ZB-H1)"},
      {"num-layers-per-virtual-pipeline-stage", true, "Megatron's interleaved schedule: layers per virtual stage"},
      {"partition-method", true, "DeepSpeed's partition_method: parameters (default) | uniform | type:<regex> "
                                 "(default: the ds_config's pipeline.partition)"},
      {"decoder-first-pipeline-num-layers", true, "layers on the first pipeline stage (the rest balanced)"},
      {"decoder-last-pipeline-num-layers", true, "layers on the last pipeline stage (the rest balanced)"},
      {"sequence-parallel", false, "Megatron's sequence parallelism with tp > 1: the norms and the residual stream hold "
                                   "B*T/tp rows per rank (--seq-length must be a multiple of tp)"},
      {"recompute-granularity", true, "activation recompute: full | selective (attention probabilities only)"},
      {"recompute-method", true, "with full: uniform (chunks of --recompute-num-layers) | block (the first N blocks)"},
      {"recompute-num-layers", true, "blocks per chunk (uniform) or recomputed blocks (block); default 1"},
      {"recompute-activations", false, "Megatron's alias of --recompute-granularity selective"},
      {"checkpoint-activations", false, "Megatron-DeepSpeed's alias of --recompute-granularity full --recompute-method uniform"},
      {"checkpoint-num-layers", true, "Megatron-DeepSpeed's alias of --recompute-num-layers"},
      {"mock-data", false, "deterministic random tokens (the default)"},
      {"data-path", true, "token dataset: PREFIX.tokens (deepmpi data prepare) or Megatron PREFIX.bin/.idx"},
      {"train-iters", true, "optimizer steps (default 20)"},
      {"seed", true, "initialisation and mock-data seed (default: ds_config seed, else 1234)"},
      {"log-interval", true, "print every N steps (default: the ds_config's steps_per_print when given, else 1)"},
      {"metrics-file", true, "append one JSON object per logged step (rank 0)"},
      {"peak-tflops", true, "peak for MFU in TFLOP/s (default: measured with an sgemm probe)"},
      {"comm-timeout", true, "seconds a rank may wait in a collective before the hang report (default 1800; DEEPMPI_COMM_TIMEOUT)"},
      {"gemm-backend", true, "onednn (default when built with oneDNN) | openblas; also DEEPMPI_GEMM"},
      {"print-config", false, "print the resolved ds_config as JSON and continue"},
      {"save", true, "checkpoint directory: DIR/global_step<N>/checkpoint.h5 (parallel HDF5) and DIR/latest"},
      {"save-interval", true, "save every N steps (default: only at a stop signal and at the end)"},
      {"load", true, "resume from DIR/latest (default: the --save directory, when it has a checkpoint)"},
      {"load-tag", true, "resume from DIR/TAG instead of the tag DIR/latest names"},
      {"no-load", false, "start from step 0 even when the --save directory has a checkpoint"},
      {"no-load-optim", false, "load the parameters and counters only (fresh optimizer states)"},
      {"ignore-memory-check", false, "start even when the planned memory per rank exceeds what this node has free"},
      {"overwrite-checkpoints", false, "a save may replace an existing tag of the --save directory or move its latest back (refused otherwise)"},
      {"async-save", false, "write checkpoints in a background thread from a snapshot; training goes on"},
      {"save-verify", true, "after a save, before it becomes `latest`: meta (default: reopen, every dataset and "
                            "checksum attribute in place) | full (also read every byte back and checksum it)"},
      {"help", false, "show this help"},
  };
}

// OpenMP and OpenBLAS threads: OMP_NUM_THREADS when set; otherwise the CPUs this rank may run
// on, shared among the ranks of the node.
int choose_threads(int local_size) {
  if (auto v = env("OMP_NUM_THREADS")) return std::max(1, omp_get_max_threads());
  cpu_set_t set;
  int allowed = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof(set), &set) == 0) allowed = CPU_COUNT(&set);
  int hw = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, std::min(allowed, hw / std::max(1, local_size)));
}

}  // namespace

// Before anything is allocated: the planned bytes per rank against what this node has free (the
// cgroup's room or MemAvailable, shared by the node's ranks). Every rank decides on the same
// numbers of its own node; rank 0 of a failing node names them and the levers once, and the job
// ends (an OOM kill minutes later says nothing).
static void check_memory(const comm::MpiEnv& mpi, const engine::TrainOptions& opt, int dp, bool ignore) {
  {
    // a rough size in floating point first: the exact plan counts in 64-bit integers, which sizes
    // like --hidden-size 2^20 with thousands of layers would overflow
    const auto& m = opt.model;
    const double C = m.hidden, L = m.num_layers, F = m.ffn_hidden > 0 ? m.ffn_hidden : 4.0 * C;
    const double params = L * (4.0 * C * C + 3.0 * C * F) + 2.0 * m.vocab * C;
    const double acts = static_cast<double>(opt.ds.micro_batch) * m.seq_len * L * (16.0 * C + 2.0 * F + 2.0 * m.heads * m.seq_len);
    const double rough = 16.0 * params + 4.0 * acts;
    DMPI_CLI_REQUIRE(ignore || rough < std::ldexp(1.0, 60),
                     "this run would need about " << human_bytes(rough) << " per rank (" << params
                                                  << " parameters): beyond any machine; check --hidden-size, "
                                                     "--num-layers, --seq-length and the micro-batch");
  }
  const engine::MemoryReport plan = engine::Trainer::planned_memory(opt, dp);
  std::string source;
  const double avail = static_cast<double>(available_memory_bytes(&source));
  // besides the plan: the libraries, the thread pools and the allocator's slack of one process
  const double need = static_cast<double>(plan.total()) * 1.05 + 256.0 * (1 << 20);
  const double share = avail / std::max(1, mpi.local_size());
  const int bad = avail > 0 && need > share && !ignore ? 1 : 0;
  int any = 0;
  DMPI_CHECK_MPI(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  if (!any) return;
  int first = bad ? mpi.rank() : mpi.size();
  DMPI_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (mpi.rank() != first) {  // every rank agreed: `first` reports and aborts the job, which ends this wait
    DMPI_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    DMPI_FAIL("the memory check failed on world rank " << first);  // not reached: that rank aborts the job
  }
  auto h = [](double b) { return human_bytes(b); };
  DMPI_FAIL("not enough memory for this run on " << hostname() << ": each of its " << mpi.local_size()
            << " rank(s) plans " << h(static_cast<double>(plan.total())) << " (params " << h(static_cast<double>(plan.params))
            << ", grads " << h(static_cast<double>(plan.grads)) << ", fp32 masters " << h(static_cast<double>(plan.masters))
            << ", optimizer states " << h(static_cast<double>(plan.optimizer_states)) << ", buffers "
            << h(static_cast<double>(plan.comm_buffers)) << ", activations " << h(static_cast<double>(plan.activations))
            << "; about " << h(need) << " with the process itself), and the node has " << h(avail) << " free (" << source
            << "), " << h(share) << " per rank. To fit: a higher ZeRO stage (zero_optimization.stage, now "
            << opt.ds.zero.stage << "), a smaller train_micro_batch_size_per_gpu (now " << opt.ds.micro_batch
            << "), --recompute-granularity full (activations), "
            << (opt.ds.zero.offload_optimizer.device != "nvme" && opt.ds.zero.stage >= 1
                    ? "NVMe offload of the optimizer states and fp32 masters (zero_optimization.offload_optimizer: "
                      "{\"device\": \"nvme\", \"nvme_path\": \"/local_nvme\"}), "
                    : "")
            << (opt.ds.zero.stage == 3 && opt.ds.zero.offload_param.device != "nvme"
                    ? "and at stage 3 of the parameters (offload_param, the same with nvme), "
                    : "")
            << (opt.ds.zero.stage == 3 ? "lower zero_optimization.stage3_max_reuse_distance (now " +
                                             std::to_string(opt.ds.zero.max_reuse_distance) +
                                             " elements: the units kept gathered from the forward to the backward), "
                                       : std::string())
            << "more ranks on more nodes, fewer ranks per node; --ignore-memory-check starts anyway");
}

int cmd_train(int* argc, char*** argv, const std::vector<std::string>& argl) {
  auto flags = train_flags();
  for (auto& f : auto_flags()) flags.push_back(f);
  Args a(flags, argl);
  if (a.has("help")) {
    std::printf("usage: deepmpi train [flags]   (under srun / mpirun)\n\n%s", a.usage().c_str());
    return 0;
  }
  DMPI_CLI_REQUIRE(a.positional().empty(), "unexpected argument '" << a.positional().front() << "' (flags start with --)");
  DMPI_CLI_REQUIRE(!(a.has("mock-data") && a.has("data-path")), "give either --mock-data or --data-path, not both");

  if (a.has("comm-timeout")) {
    double t = a.real("comm-timeout", 0);
    DMPI_CLI_REQUIRE(t > 0, "--comm-timeout must be a positive number of seconds (got " << t << ")");
    setenv("DEEPMPI_COMM_TIMEOUT", a.str("comm-timeout").c_str(), 1);
  }
  engine::install_stop_handlers();  // before MPI_Init: its threads inherit the blocked mask
  comm::MpiEnv mpi(argc, argv);
  fault_point("startup", mpi.rank());
  int threads = choose_threads(mpi.local_size());
  omp_set_num_threads(threads);
  kernels::set_blas_threads(threads);
  engine::TrainOptions opt;
  opt.gemm_backend = a.str("gemm-backend", kernels::default_gemm_backend_name());
  kernels::make_gemm_backend(opt.gemm_backend);  // a wrong name fails here, before any MPI collective
  opt.model = model_preset(a.str("model", "tiny"));
  auto set_int = [&](const char* flag, int& field) {
    if (a.has(flag)) {
      int64_t v = a.integer(flag, 0);
      DMPI_CLI_REQUIRE(v >= 1 && v <= (1 << 30), "--" << flag << " must be in [1, 2^30] (got " << v << ")");
      field = static_cast<int>(v);
    }
  };
  set_int("num-layers", opt.model.num_layers);
  set_int("hidden-size", opt.model.hidden);
  set_int("num-attention-heads", opt.model.heads);
  set_int("vocab-size", opt.model.vocab);
  bool seq_given = a.has("seq-length");
  set_int("seq-length", opt.model.seq_len);
  if (a.has("max-position-embeddings")) set_int("max-position-embeddings", opt.model.max_pos);
  else if (seq_given) opt.model.max_pos = std::max(opt.model.max_pos, opt.model.seq_len);
  // the LLaMA-family knobs, Megatron's names and values
  if (a.has("normalization")) {
    const std::string n = a.str("normalization");
    DMPI_REQUIRE(n == "LayerNorm" || n == "RMSNorm", "--normalization " << n << ": write LayerNorm or RMSNorm");
    opt.model.norm = n == "RMSNorm" ? model::Norm::RMSNorm : model::Norm::LayerNorm;
  }
  if (a.has("norm-epsilon")) opt.model.norm_eps = a.real("norm-epsilon", 1e-5);
  if (a.has("position-embedding-type")) {
    const std::string p = a.str("position-embedding-type");
    DMPI_REQUIRE(p == "learned_absolute" || p == "rope" || p == "none",
                 "--position-embedding-type " << p << ": write learned_absolute, rope or none");
    opt.model.positions = p == "rope" ? model::Positions::Rope : p == "none" ? model::Positions::None : model::Positions::Learned;
  }
  if (a.has("rotary-base")) opt.model.rotary_base = a.real("rotary-base", 10000.0);
  if (a.has("swiglu")) opt.model.swiglu = true;
  if (a.has("ffn-hidden-size")) set_int("ffn-hidden-size", opt.model.ffn_hidden);
  DMPI_REQUIRE(!a.has("num-query-groups") || a.has("group-query-attention") || opt.model.query_groups > 0,
               "--num-query-groups needs --group-query-attention (as in Megatron)");
  if (a.has("group-query-attention")) {
    DMPI_REQUIRE(a.has("num-query-groups"), "--group-query-attention needs --num-query-groups N");
    set_int("num-query-groups", opt.model.query_groups);
  } else if (a.has("num-query-groups")) {
    set_int("num-query-groups", opt.model.query_groups);
  }
  if (opt.model.query_groups == opt.model.heads) opt.model.query_groups = 0;  // that is multi-head attention
  if (a.has("untie-embeddings-and-output-weights")) opt.model.tie_embeddings = false;
  if (a.has("disable-bias-linear")) opt.model.bias = false;
  for (const char* f : {"num-layers", "hidden-size", "num-attention-heads", "vocab-size", "seq-length", "max-position-embeddings",
                        "normalization", "norm-epsilon", "position-embedding-type", "rotary-base", "swiglu", "ffn-hidden-size",
                        "group-query-attention", "num-query-groups", "untie-embeddings-and-output-weights", "disable-bias-linear"})
    if (a.has(f)) {
      opt.model.name += "+overrides";
      break;
    }
  // activation recompute (Megatron's flags and Megatron-DeepSpeed's older ones)
  {
    using G = model::RecomputeConfig::Granularity;
    auto& rc = opt.recompute;
    std::string gran = a.str("recompute-granularity");
    DMPI_REQUIRE(!(a.has("recompute-activations") && !gran.empty() && gran != "selective"),
                 "--recompute-activations (selective) contradicts --recompute-granularity " << gran);
    DMPI_REQUIRE(!(a.has("checkpoint-activations") && !gran.empty() && gran != "full"),
                 "--checkpoint-activations (full) contradicts --recompute-granularity " << gran);
    if (a.has("recompute-activations")) gran = "selective";
    if (a.has("checkpoint-activations")) gran = "full";
    DMPI_REQUIRE(gran.empty() || gran == "full" || gran == "selective",
                 "--recompute-granularity " << gran << ": write full or selective");
    rc.granularity = gran == "full" ? G::Full : gran == "selective" ? G::Selective : G::None;
    const std::string method = a.str("recompute-method", a.has("checkpoint-activations") ? "uniform" : "");
    DMPI_REQUIRE(method.empty() || rc.granularity == G::Full,
                 "--recompute-method applies to --recompute-granularity full only (as in Megatron)");
    DMPI_REQUIRE(rc.granularity != G::Full || !method.empty(),
                 "--recompute-granularity full needs --recompute-method uniform (chunks of --recompute-num-layers blocks) "
                 "or block (the first --recompute-num-layers blocks)");
    DMPI_REQUIRE(method.empty() || method == "uniform" || method == "block",
                 "--recompute-method " << method << ": write uniform or block");
    rc.method = method == "block" ? model::RecomputeConfig::Method::Block : model::RecomputeConfig::Method::Uniform;
    DMPI_REQUIRE(!(a.has("recompute-num-layers") && a.has("checkpoint-num-layers")),
                 "give --recompute-num-layers or --checkpoint-num-layers, not both");
    const char* nl = a.has("checkpoint-num-layers") ? "checkpoint-num-layers" : "recompute-num-layers";
    if (a.has(nl)) {
      DMPI_REQUIRE(rc.granularity == G::Full, "--" << nl << " applies to --recompute-granularity full only");
      set_int(nl, rc.num_layers);
    }
  }
  opt.model.validate();

  // --tensor-model-parallel-size, else the ds_config's tensor_parallel.autotp_size (the same
  // meaning); the batch triangle is resolved over dp = ranks / tp
  int tp = 1;
  if (a.has("tensor-model-parallel-size")) {
    const int64_t v = a.integer("tensor-model-parallel-size", 1);
    DMPI_CLI_REQUIRE(v >= 1 && v <= mpi.size() && mpi.size() % v == 0,
                     "--tensor-model-parallel-size " << v << " must divide the " << mpi.size()
                                                     << " ranks of the job (dp = ranks / tp)");
    tp = static_cast<int>(v);
  }
  // a ds_config integer read before the batch triangle, which needs dp (tensor_parallel.autotp_size,
  // pipeline.stages)
  const auto ds_int = [&](const char* block, const char* key) -> int64_t {
    if (!a.has("deepspeed-config")) return 0;
    std::ifstream in(a.str("deepspeed-config"));
    if (!in) return 0;  // the config's own reading below names the problem
    std::stringstream text;
    text << in.rdbuf();
    try {
      std::vector<config::TextProblem> dups;
      const nlohmann::json j = config::parse_config_text(text.str(), a.str("deepspeed-config"), dups);
      if (j.contains(block) && j[block].is_object() && j[block].contains(key) && j[block][key].is_number_integer())
        return j[block][key].get<int64_t>();
    } catch (const std::exception&) {
    }
    return 0;
  };
  if (const int64_t v = ds_int("tensor_parallel", "autotp_size"); v > 1) {
    DMPI_CLI_REQUIRE(!a.has("tensor-model-parallel-size") || v == tp,
                     "tensor_parallel.autotp_size " << v << " in the ds_config contradicts --tensor-model-parallel-size "
                                                    << tp << ": give one of them");
    DMPI_CLI_REQUIRE(mpi.size() % v == 0, "tensor_parallel.autotp_size " << v << " must divide the " << mpi.size()
                                                                         << " ranks of the job (dp = ranks / tp)");
    tp = static_cast<int>(v);
  }
  opt.tensor_parallel = tp;
  opt.model.sequence_parallel = a.has("sequence-parallel") && tp > 1;
  if (a.has("sequence-parallel") && tp == 1 && mpi.rank() == 0)
    std::printf("note: --sequence-parallel needs --tensor-model-parallel-size > 1: ignored (as Megatron does)\n");
  // --pipeline-model-parallel-size, else the ds_config's pipeline.stages (DeepSpeed reads the
  // stage count from the PipelineModule; a number there means the same)
  int pp = 1;
  if (a.has("pipeline-model-parallel-size")) {
    const int64_t v = a.integer("pipeline-model-parallel-size", 1);
    DMPI_CLI_REQUIRE(v >= 1 && v * tp <= mpi.size() && mpi.size() % (v * tp) == 0,
                     "--pipeline-model-parallel-size " << v << " x --tensor-model-parallel-size " << tp
                                                       << " must divide the " << mpi.size()
                                                       << " ranks of the job (dp = ranks / (tp x pp))");
    pp = static_cast<int>(v);
  }
  if (const int64_t v = ds_int("pipeline", "stages"); v > 1) {
    DMPI_CLI_REQUIRE(!a.has("pipeline-model-parallel-size") || v == pp,
                     "pipeline.stages " << v << " in the ds_config contradicts --pipeline-model-parallel-size " << pp
                                        << ": give one of them");
    DMPI_CLI_REQUIRE(mpi.size() % (v * tp) == 0, "pipeline.stages " << v << " x tp " << tp << " must divide the "
                                                                    << mpi.size() << " ranks of the job");
    pp = static_cast<int>(v);
  }
  opt.pipeline_parallel = pp;
  for (const char* f : {"pipeline-schedule", "num-layers-per-virtual-pipeline-stage", "partition-method",
                        "decoder-first-pipeline-num-layers", "decoder-last-pipeline-num-layers"})
    DMPI_CLI_REQUIRE(pp > 1 || !a.has(f), "--" << f << " needs --pipeline-model-parallel-size > 1");
  if (a.has("num-layers-per-virtual-pipeline-stage")) {
    const int64_t n = a.integer("num-layers-per-virtual-pipeline-stage", 1);
    DMPI_CLI_REQUIRE(n >= 1 && opt.model.num_layers % (n * pp) == 0 && opt.model.num_layers / (n * pp) >= 2,
                     "--num-layers-per-virtual-pipeline-stage " << n << ": --num-layers " << opt.model.num_layers
                                                                << " must be a multiple of it x the " << pp
                                                                << " stages, with two or more virtual stages per stage");
    opt.virtual_stages = static_cast<int>(opt.model.num_layers / (n * pp));
    opt.pipeline_schedule = "interleaved";
  }
  if (a.has("pipeline-schedule")) {
    opt.pipeline_schedule = a.str("pipeline-schedule");
    engine::pipe_schedule_named(opt.pipeline_schedule);  // names the allowed values
  }
  opt.first_stage_layers = static_cast<int>(a.integer("decoder-first-pipeline-num-layers", -1));
  opt.last_stage_layers = static_cast<int>(a.integer("decoder-last-pipeline-num-layers", -1));
  const int dp = mpi.size() / (tp * pp);
  config::AutoContext actx = auto_context(a);
  actx.hidden = opt.model.hidden;  // ZeRO bucket "auto" values follow the model width (as HF's)
  actx.default_train_iters = kDefaultTrainIters;
  if (a.has("deepspeed-config")) {
    opt.ds = config::load_ds_config(a.str("deepspeed-config"), dp, actx);
  } else {
    nlohmann::json builtin = config::default_ds_config_json();
    // Megatron's optimizer or schedule flags build those from the flags, as they would with a
    // ds_config that has no optimizer block: the built-in blocks are only for a run without them.
    const bool megatron_flags = actx.optimizer || actx.lr || actx.weight_decay || actx.beta1 || actx.beta2 || actx.eps ||
                                actx.sgd_momentum || actx.min_lr || actx.lr_decay_style || actx.lr_warmup_fraction ||
                                actx.lr_warmup_init || actx.lr_decay_iters || actx.lr_wsd_decay_style ||
                                actx.lr_wsd_decay_iters || actx.start_weight_decay || actx.end_weight_decay ||
                                actx.weight_decay_incr_style || actx.warmup_iters;
    if (megatron_flags) builtin.erase("optimizer"), builtin.erase("scheduler");
    if (actx.clip_grad) builtin.erase("gradient_clipping");  // the flags set what the built-in file would
    if (actx.micro_batch) builtin.erase("train_micro_batch_size_per_gpu");
    if (actx.global_batch) builtin.erase("gradient_accumulation_steps");
    opt.ds = config::parse_ds_config(builtin, dp, actx);
    if (!megatron_flags) opt.ds.optimizer_source += " (the built-in defaults: no --deepspeed_config)";
    if (mpi.rank() == 0) std::printf("no --deepspeed_config given: using the built-in defaults (`--print-config` shows them)\n");
  }
  // A valid config asking for what this build does not implement: listed, exit status 3 (the
  // same list and status as `deepmpi config check`).
  if (auto missing = config::unimplemented_for_training(opt.ds); !missing.empty()) {
    if (mpi.rank() == 0) {
      std::fprintf(stderr, "deepmpi: the ds_config is valid, but asks for what `deepmpi train` does not implement yet:\n");
      for (const auto& m : missing) std::fprintf(stderr, "  - %s\n", m.c_str());
    }
    return kExitNotImplemented;
  }
  if (a.has("print-config") && mpi.rank() == 0) std::printf("%s\n", opt.ds.resolved().dump(2).c_str());
  // the partition: --partition-method, else the ds_config's pipeline.partition ("best", its
  // default, is PipelineModule's default "parameters")
  opt.partition_method = a.str("partition-method", opt.ds.pipeline.partition == "best" ? "parameters" : opt.ds.pipeline.partition);
  opt.pipe_partitioned = opt.ds.pipeline.pipe_partitioned;
  opt.grad_partitioned = opt.ds.pipeline.grad_partitioned;
  // DeepSpeed's partition_activations splits the checkpointed activations (each block's input,
  // the residual stream) over the tp ranks: sequence parallelism's split
  if (opt.ds.activation_checkpointing.partition_activations && tp > 1) opt.model.sequence_parallel = true;
  {  // the model at this tp (heads, kv heads, MLP width, the sequence's split); the trainer sets each rank's place
    model::ModelConfig at_tp = opt.model;
    at_tp.tp_size = tp;
    at_tp.validate();
  }
  opt.train_iters = a.integer("train-iters", kDefaultTrainIters);
  int64_t seed = a.integer("seed", opt.ds.seed >= 0 ? opt.ds.seed : 1234);
  DMPI_CLI_REQUIRE(seed >= 0, "--seed must be >= 0");
  opt.seed = static_cast<uint64_t>(seed);
  // --log-interval (Megatron) wins; else the config's steps_per_print when given; else every step.
  opt.log_interval = a.integer("log-interval", opt.ds.steps_per_print_given ? opt.ds.steps_per_print : 1);
  opt.metrics_file = a.str("metrics-file");
  double peak_tflops = a.real("peak-tflops", 0.0);
  DMPI_CLI_REQUIRE(peak_tflops >= 0.0, "--peak-tflops must be positive");
  opt.peak_gflops = peak_tflops * 1e3;
  opt.data_path = a.str("data-path");
  for (auto& w : mpi.warnings())
    if (mpi.rank() == 0) std::printf("warning: %s\n", w.c_str());

  opt.save_dir = a.str("save");
  opt.save_interval = a.integer("save-interval", 0);
  DMPI_CLI_REQUIRE(opt.save_interval >= 0, "--save-interval must be >= 0 (got " << opt.save_interval << ")");
  DMPI_CLI_REQUIRE(!a.has("save-interval") || !opt.save_dir.empty(), "--save-interval needs --save DIR");
  DMPI_CLI_REQUIRE(!a.has("async-save") || !opt.save_dir.empty(), "--async-save needs --save DIR");
  DMPI_CLI_REQUIRE(!(a.has("no-load") && (a.has("load") || a.has("load-tag"))), "--no-load contradicts --load/--load-tag");
  opt.async_save = a.has("async-save");
  opt.save_verify = a.str("save-verify", "meta");
  DMPI_CLI_REQUIRE(opt.save_verify == "meta" || opt.save_verify == "full",
               "--save-verify " << opt.save_verify << ": write meta or full");
  opt.load_optimizer = !a.has("no-load-optim");
  opt.overwrite_checkpoints = a.has("overwrite-checkpoints");
  opt.load_tag = a.str("load-tag");
  if (a.has("load")) {
    opt.load_dir = a.str("load");
    DMPI_CLI_REQUIRE(!opt.load_dir.empty(), "--load needs a directory");
  } else if (!opt.save_dir.empty() && !a.has("no-load")) {
    opt.load_dir = opt.save_dir;  // a resubmitted job resumes by itself
    opt.load_required = false;
  }
  DMPI_CLI_REQUIRE(opt.load_tag.empty() || !opt.load_dir.empty(), "--load-tag needs --load DIR (or --save DIR)");

  if (opt.train_iters == 0 && opt.save_dir.empty()) {
    // nothing to train and nothing to save: the memory per rank of this run, without allocating it
    if (mpi.rank() == 0) std::printf("%s\n(--train-iters 0: nothing trained)\n", engine::Trainer::memory_plan(opt, dp).c_str());
    return 0;
  }
  check_memory(mpi, opt, dp, a.has("ignore-memory-check"));
  engine::Trainer trainer(mpi, opt);
  trainer.run();
  fault_point("exit", mpi.rank());
  return 0;
}

}  // namespace dmpi::cli
