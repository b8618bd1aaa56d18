#include "src/engine/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "comm/comm_logger.hpp"
#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "src/engine/flops.hpp"
#include "src/util/error.hpp"
#include "src/util/system.hpp"

namespace dmpi::engine {

namespace {
double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
}  // namespace

Trainer::Trainer(const comm::MpiEnv& env, TrainOptions opt)
    : env_(env), opt_(std::move(opt)), sched_(opt_.ds.scheduler, opt_.ds.optimizer.lr),
      metrics_(env.rank() == 0 ? opt_.metrics_file : std::string()) {
  DMPI_REQUIRE(env_.size() == 1, "this build trains on one rank (got " << env_.size()
                                     << " ranks); data-parallel training lands with the ZeRO engine — run with "
                                        "`mpirun -np 1`");
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
  groups_ = std::make_unique<comm::ProcessGroups>(comm::Topology(env_.size(), 1, 1));
  DMPI_REQUIRE(ds.micro_batch <= 1 << 20, "train_micro_batch_size_per_gpu " << ds.micro_batch << " is too large");
  model_ = std::make_unique<model::GPT<float>>(opt_.model, static_cast<int>(ds.micro_batch), opt_.model.seq_len);
  model_->init_weights(opt_.seed);
  // Optimizer states (fp32): Adam/AdamW/Lamb m and v; SGD the momentum buffer (when
  // momentum > 0); Adagrad the squared-gradient sum; Lion m.
  const auto& oc = ds.optimizer;
  const size_t np = model_->num_params();
  if (oc.type == "Adam" || oc.type == "AdamW" || oc.type == "Lamb") {
    m_.assign(np, 0.0f);
    v_.assign(np, 0.0f);
  } else if (oc.type == "SGD") {
    if (oc.momentum != 0.0) m_.assign(np, 0.0f);
  } else if (oc.type == "Adagrad") {
    m_.assign(np, static_cast<float>(oc.initial_accumulator_value));
  } else if (oc.type == "Lion") {
    m_.assign(np, 0.0f);
  } else {
    DMPI_FAIL("optimizer type '" << oc.type << "' is not implemented by the trainer");
  }
  for (const auto& t : model_->param_table()) {
    if (!segments_.empty() && segments_.back().decay == t.weight_decay &&
        segments_.back().offset + segments_.back().size == t.offset)
      segments_.back().size += t.numel;
    else
      segments_.push_back({t.offset, t.numel, t.weight_decay});
  }
  if (opt_.data_path.empty())
    source_ = io::make_mock_source(opt_.seed, opt_.model.vocab);
  else
    source_ = io::open_token_source(opt_.data_path, opt_.model.vocab);
  loader_ = std::make_unique<io::BatchLoader>(*source_, static_cast<int>(ds.micro_batch), opt_.model.seq_len);
  tokens_.resize(static_cast<size_t>(ds.micro_batch) * opt_.model.seq_len);
  targets_.resize(tokens_.size());

  adam_.lr = static_cast<float>(ds.optimizer.lr);
  adam_.beta1 = static_cast<float>(ds.optimizer.beta1);
  adam_.beta2 = static_cast<float>(ds.optimizer.beta2);
  adam_.eps = static_cast<float>(ds.optimizer.eps);
  adam_.weight_decay = static_cast<float>(ds.optimizer.weight_decay);
  adam_.bias_correction = ds.optimizer.bias_correction;
  adam_.adam_w_mode = ds.optimizer.adam_w_mode;

  peak_gflops_ = opt_.peak_gflops > 0 ? opt_.peak_gflops : kernels::measure_sgemm_gflops();
  flops_per_token_ = flops_per_token(opt_.model, opt_.model.seq_len);
}

bool Trainer::optimizer_has_betas() const {
  const auto& t = opt_.ds.optimizer.type;
  return t == "Adam" || t == "AdamW" || t == "Lamb" || t == "Lion";
}

MemoryReport Trainer::memory() const {
  MemoryReport r;
  r.params = model_->param_bytes();
  r.grads = model_->grad_bytes();
  r.optimizer_states = (m_.size() + v_.size()) * sizeof(float);
  r.activations = model_->activation_bytes();
  return r;
}

std::string Trainer::banner() const {
  std::ostringstream os;
  const auto& ds = opt_.ds;
  auto mem = memory();
  os << "deepmpi train: " << opt_.model.describe() << "\n"
     << "  parameters " << model_->num_params() << " (" << human_bytes(static_cast<double>(mem.params)) << " fp32)"
     << ", FLOPs/token " << flops_per_token_ / 1e6 << " M (6N + 6LTC)\n"
     << "  data: " << source_->describe() << "\n"
     << "  batch: train_batch_size " << ds.train_batch_size << " = micro " << ds.micro_batch << " x accumulation "
     << ds.grad_accum << " x dp " << env_.size() << "; tokens/step " << ds.train_batch_size * opt_.model.seq_len << "\n"
     << "  optimizer " << ds.optimizer.type << " " << ds.resolved()["optimizer"]["params"].dump()
     << "; schedule " << sched_.describe()
     << "; gradient_clipping " << ds.gradient_clipping << "\n"
     << "  threads: " << compute_threads() << " OpenMP, " << blas_threads() << " OpenBLAS; GEMM backend "
     << kernels::gemm_backend().name() << "; peak " << peak_gflops_
     << " GFLOP/s (" << (opt_.peak_gflops > 0 ? "--peak-tflops" : "sgemm probe") << ")\n"
     << "  memory per rank: params " << human_bytes(static_cast<double>(mem.params)) << " | grads "
     << human_bytes(static_cast<double>(mem.grads)) << " | optimizer states "
     << human_bytes(static_cast<double>(mem.optimizer_states)) << " | activations "
     << human_bytes(static_cast<double>(mem.activations)) << " | total "
     << human_bytes(static_cast<double>(mem.total()));
  return os.str();
}

void Trainer::apply_optimizer(double lr, float grad_scale, double beta1, double beta2) {
  const auto& oc = opt_.ds.optimizer;
  float* P = model_->params();
  float* G = model_->grads();
  const float flr = static_cast<float>(lr);
  if (oc.type == "Lamb") {  // the trust ratio is per tensor
    for (const auto& t : model_->param_table()) {
      kernels::LambParams h;
      h.lr = flr, h.beta1 = static_cast<float>(beta1), h.beta2 = static_cast<float>(beta2);
      h.eps = static_cast<float>(oc.eps), h.weight_decay = t.weight_decay ? static_cast<float>(oc.weight_decay) : 0.f;
      h.max_coeff = static_cast<float>(oc.max_coeff), h.min_coeff = static_cast<float>(oc.min_coeff);
      h.bias_correction = oc.bias_correction, h.eps_inside_sqrt = oc.eps_inside_sqrt;
      kernels::lamb_step(P + t.offset, G + t.offset, m_.data() + t.offset, v_.data() + t.offset, t.numel, h,
                         global_steps_, grad_scale, true);
    }
    return;
  }
  for (const auto& sg : segments_) {
    const float wd = sg.decay ? static_cast<float>(oc.weight_decay) : 0.0f;
    float* p = P + sg.offset;
    float* g = G + sg.offset;
    if (oc.type == "Adam" || oc.type == "AdamW") {
      kernels::AdamParams h = adam_;
      h.lr = flr, h.weight_decay = wd, h.beta1 = static_cast<float>(beta1), h.beta2 = static_cast<float>(beta2);
      kernels::adam_step(p, g, m_.data() + sg.offset, v_.data() + sg.offset, sg.size, h, global_steps_, grad_scale, true);
    } else if (oc.type == "SGD") {
      kernels::SgdParams h;
      h.lr = flr, h.momentum = static_cast<float>(oc.momentum), h.dampening = static_cast<float>(oc.dampening);
      h.weight_decay = wd, h.nesterov = oc.nesterov;
      kernels::sgd_step(p, g, m_.empty() ? nullptr : m_.data() + sg.offset, sg.size, h, global_steps_, grad_scale, true);
    } else if (oc.type == "Adagrad") {
      kernels::AdagradParams h;
      h.lr = flr, h.lr_decay = static_cast<float>(oc.lr_decay), h.weight_decay = wd, h.eps = static_cast<float>(oc.eps);
      kernels::adagrad_step(p, g, m_.data() + sg.offset, sg.size, h, global_steps_, grad_scale, true);
    } else {  // Lion
      kernels::LionParams h;
      h.lr = flr, h.beta1 = static_cast<float>(beta1), h.beta2 = static_cast<float>(beta2), h.weight_decay = wd;
      kernels::lion_step(p, g, m_.data() + sg.offset, sg.size, h, grad_scale, true);
    }
  }
}

StepMetrics Trainer::train_step() {
  const auto& ds = opt_.ds;
  const double t0 = now_seconds();
  if (!grads_zero_) model_->zero_grad();  // AdamW zeroes them as it consumes them
  grads_zero_ = false;
  double loss_sum = 0.0, t_fwd = 0.0, t_bwd = 0.0;
  for (int64_t micro = 0; micro < ds.grad_accum; ++micro) {
    loader_->load(samples_, tokens_.data(), targets_.data());
    samples_ += static_cast<uint64_t>(ds.micro_batch);
    const double a = now_seconds();
    loss_sum += model_->forward(tokens_.data(), targets_.data());
    const double b = now_seconds();
    model_->backward(1.0 / static_cast<double>(ds.grad_accum));  // DeepSpeed divides each micro loss by GAS
    t_fwd += b - a, t_bwd += now_seconds() - b;
    ++micro_steps_;
  }
  const double t_opt0 = now_seconds();
  const double norm = std::sqrt(kernels::sum_squares(model_->grads(), model_->num_params()));
  DMPI_REQUIRE(std::isfinite(norm), "gradient norm is " << norm << " at step " << global_steps_ + 1
                                                        << " (fp32 training diverged; lower the lr)");
  // DeepSpeed (fp32): clip_coef = min(1, max_norm / (norm + 1e-6)); 0 disables clipping.
  double coef = 1.0;
  if (ds.gradient_clipping > 0.0) coef = std::min(1.0, ds.gradient_clipping / (norm + 1e-6));
  const double lr = sched_.current_lr();
  ++global_steps_;
  double b1 = ds.optimizer.beta1, b2 = ds.optimizer.beta2;
  if (optimizer_has_betas()) sched_.momentum(b1, b2);  // OneCycle's cycled momentum
  apply_optimizer(lr, static_cast<float>(coef), b1, b2);
  grads_zero_ = true;
  sched_.step();
  const double t_end = now_seconds();
  const double dt = t_end - t0;

  // The logged loss is the mean over the whole global batch: averaged over the dp group.
  double loss = loss_sum / static_cast<double>(ds.grad_accum);
  groups_->get(comm::Group::DP).all_reduce(&loss, &loss, 1, comm::DType::F64, comm::ReduceOp::Avg);
  StepMetrics m;
  m.step = global_steps_;
  m.loss = loss;
  m.lr = lr;
  m.grad_norm = norm;
  m.grad_norm_clipped = norm * coef;
  m.step_ms = dt * 1e3;
  m.forward_ms = t_fwd * 1e3, m.backward_ms = t_bwd * 1e3, m.optimizer_ms = (t_end - t_opt0) * 1e3;
  const double tokens = static_cast<double>(ds.train_batch_size) * opt_.model.seq_len;
  m.tokens_per_s = tokens / dt;
  m.tflops = m.tokens_per_s * flops_per_token_ / 1e12;
  m.mfu = m.tflops * 1e3 / peak_gflops_;
  return m;
}

TrainSummary Trainer::run() {
  TrainSummary s;
  s.memory = memory();
  const bool print = opt_.print && env_.rank() == 0;
  if (print) {
    std::printf("%s\n", banner().c_str());
    if (opt_.ds.misc.dump_state) std::printf("dump_state: resolved ds_config\n%s\n", opt_.ds.resolved().dump(2).c_str());
    for (auto& w : opt_.ds.warnings) std::printf("  warning: %s\n", w.c_str());
    if (opt_.ds.scheduler.type == "OneCycle" && opt_.ds.scheduler.cycle_momentum && !optimizer_has_betas())
      std::printf("  warning: cycle_momentum is disabled: optimizer %s has no betas (as in DeepSpeed)\n",
                  opt_.ds.optimizer.type.c_str());
    std::fflush(stdout);
  }
  for (int64_t i = 0; i < opt_.train_iters; ++i) {
    StepMetrics m = train_step();
    s.steps.push_back(m);
    bool log = m.step % opt_.log_interval == 0 || i + 1 == opt_.train_iters;
    if (log && print) {
      std::printf("step %6lld/%lld | loss %.4f | lr %.3e | grad norm %.4f | %8.1f ms | %9.0f tokens/s | "
                  "%6.3f TFLOP/s | MFU %5.1f%%\n",
                  static_cast<long long>(m.step), static_cast<long long>(opt_.train_iters), m.loss, m.lr, m.grad_norm,
                  m.step_ms, m.tokens_per_s, m.tflops, 100.0 * m.mfu);
      if (opt_.ds.misc.wall_clock_breakdown)  // DeepSpeed's timers: forward, backward (incl. allreduce), step
        std::printf("  time (ms) | forward %.1f | backward %.1f | clip + optimizer step %.1f\n", m.forward_ms,
                    m.backward_ms, m.optimizer_ms);
      if (opt_.ds.misc.memory_breakdown)
        std::printf("  memory | params %s | grads %s | optimizer states %s | activations %s | RSS %s (peak %s)\n",
                    human_bytes(static_cast<double>(s.memory.params)).c_str(),
                    human_bytes(static_cast<double>(s.memory.grads)).c_str(),
                    human_bytes(static_cast<double>(s.memory.optimizer_states)).c_str(),
                    human_bytes(static_cast<double>(s.memory.activations)).c_str(),
                    human_bytes(static_cast<double>(current_rss_bytes())).c_str(),
                    human_bytes(static_cast<double>(peak_rss_bytes())).c_str());
      std::fflush(stdout);
    }
    if (log)
      metrics_.write({{"step", m.step}, {"loss", m.loss}, {"lr", m.lr}, {"grad_norm", m.grad_norm},
                      {"grad_norm_clipped", m.grad_norm_clipped}, {"step_ms", m.step_ms},
                      {"tokens_per_s", m.tokens_per_s}, {"tflops", m.tflops}, {"mfu", m.mfu},
                      {"forward_ms", m.forward_ms}, {"backward_ms", m.backward_ms}, {"optimizer_ms", m.optimizer_ms}});
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
  s.peak_rss = peak_rss_bytes();
  if (print && !s.steps.empty()) {
    std::printf("done: %zu steps | median %.1f ms/step | %.0f tokens/s | %.3f TFLOP/s | MFU %.1f%% | peak RSS %s "
                "(%.2fx the %s of params+grads+optimizer+activations)\n",
                s.steps.size(), s.median_step_ms, s.median_tokens_per_s, s.median_tflops, 100.0 * s.median_mfu,
                human_bytes(static_cast<double>(s.peak_rss)).c_str(),
                static_cast<double>(s.peak_rss) / static_cast<double>(s.memory.total()),
                human_bytes(static_cast<double>(s.memory.total())).c_str());
    std::fflush(stdout);
  }
  if (comm::CommLogger::instance().config().enabled) {  // collective: every rank takes part
    std::string table = comm::CommLogger::instance().summary(MPI_COMM_WORLD);
    if (print) std::printf("%s", table.c_str());
  }
  return s;
}

}  // namespace dmpi::engine
