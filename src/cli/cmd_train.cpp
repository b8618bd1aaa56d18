#include <omp.h>
#include <sched.h>

#include <cstdio>
#include <thread>

#include "comm/mpi_env.hpp"
#include "kernels/gemm.hpp"
#include "src/cli/commands.hpp"
#include "src/config/ds_config.hpp"
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
      {"model", true, "preset: tiny | small | gpt2-124m (default tiny)"},
      {"num-layers", true, "transformer blocks (overrides the preset)"},
      {"hidden-size", true, "model width"},
      {"num-attention-heads", true, "attention heads (must divide --hidden-size)"},
      {"seq-length", true, "tokens per sample"},
      {"max-position-embeddings", true, "learned positions (>= --seq-length; default = --seq-length)"},
      {"vocab-size", true, "vocabulary size"},
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
  int threads = choose_threads(mpi.local_size());
  omp_set_num_threads(threads);
  kernels::set_blas_threads(threads);
  std::string backend = a.str("gemm-backend", kernels::default_gemm_backend_name());
  kernels::set_gemm_backend(kernels::make_gemm_backend(backend));

  engine::TrainOptions opt;
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
  if (a.has("num-layers") || a.has("hidden-size") || a.has("num-attention-heads") || a.has("vocab-size") || seq_given ||
      a.has("max-position-embeddings"))
    opt.model.name += "+overrides";
  opt.model.validate();

  const int dp = mpi.size();
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
  opt.load_tag = a.str("load-tag");
  if (a.has("load")) {
    opt.load_dir = a.str("load");
    DMPI_CLI_REQUIRE(!opt.load_dir.empty(), "--load needs a directory");
  } else if (!opt.save_dir.empty() && !a.has("no-load")) {
    opt.load_dir = opt.save_dir;  // a resubmitted job resumes by itself
    opt.load_required = false;
  }
  DMPI_CLI_REQUIRE(opt.load_tag.empty() || !opt.load_dir.empty(), "--load-tag needs --load DIR (or --save DIR)");

  engine::Trainer trainer(mpi, opt);
  trainer.run();
  return 0;
}

}  // namespace dmpi::cli
