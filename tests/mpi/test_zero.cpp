// ZeRO stages 0-3 on the ranks of this job (run with -n 2 and -n 4): training equals
// single-rank training with the same global batch; memory per rank and bytes on the wire
// match the formulas; overlap_comm changes nothing.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "comm/comm_logger.hpp"
#include "comm/communicator.hpp"
#include "comm/mpi_env.hpp"
#include "src/engine/trainer.hpp"

#include "tests/mpi/mpi_test_util.hpp"
#include "tests/mpi/train_options.hpp"

using namespace dmpi;
using nlohmann::json;

namespace {

using test::world_rank;
using test::world_size;
using test::env;

struct Result {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> tensors;  // by name: layout-independent
  engine::MemoryReport memory;
  std::vector<engine::UnitInfo> units;
  size_t real_params = 0;
  double wire_bytes = 0;  // comms logger: bytes x bus factor over the training steps
  std::vector<double> scales, lrs;
  std::vector<int> skipped;
  int64_t skipped_steps = 0, global_steps = 0, micro_steps = 0;
};

// Trains `steps` steps of the tiny model on the ranks of `comm`.
// the model the tests train (tiny GPT-2 unless a test switches to the LLaMA composition)
std::string g_model = "tiny";

Result train(MPI_Comm comm, json cfg, int steps, const model::RecomputeConfig& rc = {}) {
  model::ModelConfig m = model::preset(g_model);
  m.seq_len = m.max_pos = 32;
  engine::TrainOptions o = test::train_options(comm, m, cfg, 7);
  o.train_iters = steps;
  o.recompute = rc;
  engine::Trainer t(env(), o);
  Result r;
  for (int i = 0; i < steps; ++i) {
    auto m = t.train_step();
    r.losses.push_back(m.loss);
    r.scales.push_back(m.loss_scale);
    r.lrs.push_back(m.lr);
    r.skipped.push_back(m.skipped ? 1 : 0);
  }
  r.skipped_steps = t.skipped_steps(), r.global_steps = t.global_steps(), r.micro_steps = t.micro_steps();
  for (const auto& [key, st] : comm::CommLogger::instance().local())  // before full_params() gathers
    r.wire_bytes += st.bytes * comm::bus_factor(std::get<0>(key), std::get<2>(key));
  const auto full = t.full_params();
  for (int k = 0; k < t.model().num_tensors(); ++k) r.tensors[t.model().spec(k).name] = full[static_cast<size_t>(k)];
  r.memory = t.memory();
  for (int u = 0; u < t.store().layout().num_units(); ++u) r.units.push_back(t.store().layout().unit(u));
  r.real_params = t.model().real_params();
  return r;
}

// The initial parameters (0 steps, one rank): to check that training moved them.
std::map<std::string, std::vector<float>> train_init();

json base_config(int stage, int mbs, int gas) {
  return json{{"train_micro_batch_size_per_gpu", mbs},
              {"gradient_accumulation_steps", gas},
              {"gradient_clipping", 1.0},
              {"zero_optimization", {{"stage", stage}}},
              {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 3e-3}, {"weight_decay", 0.1}}}}}};
}

// The attention key bias has an exactly zero gradient (softmax is invariant to a shift of a
// row's scores), so Adam random-walks both runs on rounding noise there: excluded.
bool key_bias(const std::string& name, size_t i, size_t n) {
  return name.ends_with("attn.qkv.bias") && i >= n / 3 && i < 2 * n / 3;
}

// max over elements of |a - b| / max(|b|, floor): relative, with a floor for values near zero
double max_rel(const std::map<std::string, std::vector<float>>& a, const std::map<std::string, std::vector<float>>& b,
               double floor) {
  double worst = 0;
  for (const auto& [name, va] : a) {
    const auto& vb = b.at(name);
    EXPECT_EQ(va.size(), vb.size()) << name;
    for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
      if (key_bias(name, i, va.size())) continue;
      worst = std::max(worst, std::fabs(static_cast<double>(va[i]) - vb[i]) / std::max(std::fabs(static_cast<double>(vb[i])), floor));
    }
  }
  return worst;
}

// max over tensors of ||a - b||_2 / ||b||_2
double max_tensor_rel(const std::map<std::string, std::vector<float>>& a, const std::map<std::string, std::vector<float>>& b) {
  double worst = 0;
  for (const auto& [name, va] : a) {
    const auto& vb = b.at(name);
    double d = 0, nb = 0;
    for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
      if (key_bias(name, i, va.size())) continue;
      d += (static_cast<double>(va[i]) - vb[i]) * (static_cast<double>(va[i]) - vb[i]);
      nb += static_cast<double>(vb[i]) * vb[i];
    }
    if (nb > 0) worst = std::max(worst, std::sqrt(d / nb));
  }
  return worst;
}

// The reference: one rank (world rank 0) training on the whole global batch, GAS x W micro-batches.
Result single_rank_reference(json cfg, int gas_total, int steps) {
  MPI_Comm solo;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
  Result r;
  if (solo != MPI_COMM_NULL) {
    cfg["gradient_accumulation_steps"] = gas_total;
    cfg["zero_optimization"] = {{"stage", 0}};
    r = train(solo, cfg, steps);
    MPI_Comm_free(&solo);
  }
  return r;
}

std::map<std::string, std::vector<float>> train_init() {
  MPI_Comm solo;
  MPI_Comm_split(MPI_COMM_SELF, 0, 0, &solo);
  Result r = train(solo, base_config(0, 1, 1), 0);
  MPI_Comm_free(&solo);
  return r.tensors;
}

// Bytes on the wire per rank and step (op bytes x the nccl-tests bus factor: all_reduce 2(W-1)/W,
// reduce_scatter and all_gather (W-1)/W). Gradient reductions carry `gb` bytes per element (4, or
// 2 with 16-bit gradients or communication_data_type bf16/fp16); parameter all-gathers `pb` (4 in
// fp32 training, 2 in bf16/fp16):
//   stage 0: all_reduce of the gradients           2 (W-1)/W * gb N
//   stage 1: reduce_scatter + all_gather           (W-1)/W * (gb + pb) Psi
//   stage 2: GAS reduce_scatters + all_gather      (W-1)/W * (GAS gb + pb) Psi
//   stage 3: per micro-batch all_gather forward, all_gather backward of the units not kept at
//            the turn, reduce_scatter             GAS (W-1)/W * (pb (2 Psi - Psi_kept) + gb Psi)
// plus the per-step all_reduces of the loss with the stop flag (16 bytes) and of the gradient norm
// (8 bytes; not at stage 0).
double wire_per_step(int stage, int W, int gas, const Result& r, double gb, double pb = 4) {
  double psi = 0;
  for (const auto& u : r.units) psi += static_cast<double>(u.numel);
  const double N = static_cast<double>(r.real_params);
  const double kept = static_cast<double>(r.units.front().numel + r.units.back().numel);
  const double f = static_cast<double>(W - 1) / W, loss_ar = 2.0 * f * 16, norm_ar = 2.0 * f * 8;
  switch (stage) {
    case 0: return 2 * f * gb * N + loss_ar;
    case 1: return f * (gb + pb) * psi + loss_ar + norm_ar;
    case 2: return f * (gas * gb + pb) * psi + loss_ar + norm_ar;
    default: return gas * f * (pb * (2 * psi - kept) + gb * psi) + loss_ar + norm_ar;
  }
}

// The optimizers of the single-rank comparisons: base_config's AdamW, or SGD with momentum.
json with_optimizer(json cfg, const std::string& opt) {
  if (opt == "SGD") cfg["optimizer"] = {{"type", "SGD"}, {"params", {{"lr", 0.05}, {"momentum", 0.9}}}};
  return cfg;
}
double max_loss_rel(const Result& dist, const Result& ref) {
  double d = 0;
  for (size_t i = 0; i < ref.losses.size(); ++i)
    d = std::max(d, std::fabs(dist.losses[i] - ref.losses[i]) / std::fabs(ref.losses[i]));
  return d;
}

class ZeroStages : public testing::TestWithParam<int> {};

// Adam: per-tensor relative L2 difference (Adam turns rounding noise in small gradients into
// O(lr) steps, so single elements drift more); SGD with momentum is linear in the gradients:
// element-wise.
TEST_P(ZeroStages, MatchesSingleRankTrainingFp32) {
  const int stage = GetParam(), W = world_size(), steps = 20, gas = 2, mbs = 1;
  for (const char* opt : {"AdamW", "SGD"}) {
    json cfg = with_optimizer(base_config(stage, mbs, gas), opt), ref_cfg = cfg;
    ref_cfg["zero_optimization"] = {{"stage", 0}};
    Result dist = train(MPI_COMM_WORLD, cfg, steps);
    Result ref = single_rank_reference(ref_cfg, gas * W, steps);
    if (world_rank() != 0) continue;
    ASSERT_EQ(dist.losses.size(), ref.losses.size());
    const double loss_diff = max_loss_rel(dist, ref);
    const double elem = max_rel(dist.tensors, ref.tensors, 1e-2), tensor = max_tensor_rel(dist.tensors, ref.tensors);
    std::printf("[ zero ] %s stage %d, dp %d, %d steps, GAS %d vs single rank (GAS %d): max relative difference of "
                "losses %.2e, of parameters per tensor (L2) %.2e, per element (|b| floored at 1e-2) %.2e\n",
                opt, stage, W, steps, gas, gas * W, loss_diff, tensor, elem);
    EXPECT_LE(loss_diff, 1e-5) << opt;
    EXPECT_LE(tensor, 1e-5) << opt;
    if (std::string(opt) == "SGD") {
      EXPECT_LE(elem, 1e-5) << opt;
    }
    EXPECT_GT(max_rel(dist.tensors, train_init(), 1e-2), 1e-3) << "the parameters must have moved";
  }
}

// The LLaMA composition (RMSNorm, RoPE, SwiGLU, grouped-query attention, untied head, no biases)
// through the same engine: every stage on W ranks equals one rank on the whole global batch.
// AdamW: per-tensor L2 within 5e-5 (measured, fp32: dp 2 2.1e-6 to 8.7e-6; dp 4 3.4e-6 at stage
// 0, 1.5e-5 at stage 1, 8.8e-6 at stages 2-3: the reductions sum in another order, and Adam turns
// that rounding in small gradients into O(lr) steps). Adam is blind to a gradient's scale, so a
// missed or doubled reduction would pass it: SGD with momentum, linear in the gradients, is held
// per tensor and element-wise to 1e-5 (measured 5.4e-8 and 3.7e-7).
TEST_P(ZeroStages, LlamaMatchesSingleRankTraining) {
  const int stage = GetParam(), W = world_size(), steps = 6, gas = 2;
  g_model = "llama-tiny";
  for (const char* opt : {"AdamW", "SGD"}) {
    json cfg = with_optimizer(base_config(stage, 1, gas), opt), ref_cfg = cfg;
    ref_cfg["zero_optimization"] = {{"stage", 0}};
    Result dist = train(MPI_COMM_WORLD, cfg, steps);
    Result ref = single_rank_reference(ref_cfg, gas * W, steps);
    if (world_rank() != 0) continue;
    ASSERT_EQ(dist.losses.size(), ref.losses.size());
    const double loss_diff = max_loss_rel(dist, ref), tensor = max_tensor_rel(dist.tensors, ref.tensors), elem = max_rel(dist.tensors, ref.tensors, 1e-2);
    std::printf("[ zero ] llama-tiny %s stage %d, dp %d, %d steps vs single rank: max relative difference of losses "
                "%.2e, of parameters per tensor (L2) %.2e, per element (|b| floored at 1e-2) %.2e\n",
                opt, stage, W, steps, loss_diff, tensor, elem);
    EXPECT_LE(loss_diff, 1e-5) << opt;
    if (std::string(opt) == "SGD") {
      EXPECT_LE(tensor, 1e-5) << opt;
      EXPECT_LE(elem, 1e-5) << opt;
    } else {
      EXPECT_LE(tensor, 5e-5) << opt;
    }
    EXPECT_NE(dist.losses.front(), dist.losses.back()) << opt;
    EXPECT_TRUE(dist.tensors.count("lm_head.weight")) << "the untied head is a parameter of its own";
  }
  g_model = "tiny";
}

// Bytes held per rank, measured from the live allocations, against DeepSpeed's split by stage.
// fp32 training: 4 bytes per parameter for params and grads, 8 for Adam's two states, no
// separate masters. bf16/fp16 training: 2 + 2 + 12 (2-byte params, 2-byte grads, fp32 masters 4
// and Adam 8; with data_types.grad_accum_dtype fp32 the grads take 4). Psi is the padded element
// count: each unit padded to 16 W elements; stage 0 holds the unpadded N.
//   stage 0: P N, G N, M N, 8 N      stage 1: P Psi, G (Psi + Psi/W), M Psi/W, 8 Psi/W
//   stage 2: P Psi, G Psi/W, ...     stage 3: P Psi/W, G Psi/W, M Psi/W, 8 Psi/W
TEST_P(ZeroStages, MemoryPerRankMatchesTheFormula) {
  const int stage = GetParam(), W = world_size();
  struct Case {
    const char* precision;
    const char* grad_accum;
    size_t P, G, M;  // bytes per element of params, grads, masters
  };
  for (const Case c : {Case{"fp32", "", 4, 4, 0}, Case{"bf16", "", 2, 2, 4}, Case{"fp16", "", 2, 2, 4},
                       Case{"bf16", "fp32", 2, 4, 4}}) {
    json cfg = base_config(stage, 1, 1);
    cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0;  // nothing stays whole
    if (std::string(c.precision) != "fp32") cfg[c.precision] = {{"enabled", true}};
    if (*c.grad_accum) cfg["data_types"] = {{"grad_accum_dtype", c.grad_accum}};
    Result r = train(MPI_COMM_WORLD, cfg, 1);
    size_t psi = 0;
    for (const auto& u : r.units) psi += u.numel;
    const size_t N = r.real_params;
    const size_t pad_bound = r.units.size() * (16 * static_cast<size_t>(W) - 1);
    EXPECT_LE(psi - N, stage == 0 ? 0 : pad_bound);
    const size_t w = static_cast<size_t>(W);
    size_t params = 0, grads = 0, masters = 0, states = 0;
    switch (stage) {
      case 0: params = c.P * N, grads = c.G * N, masters = c.M * N, states = 8 * N; break;
      case 1: params = c.P * psi, grads = c.G * psi + c.G * psi / w, masters = c.M * psi / w, states = 8 * psi / w; break;
      case 2: params = c.P * psi, grads = c.G * psi / w, masters = c.M * psi / w, states = 8 * psi / w; break;
      default: params = c.P * psi / w, grads = c.G * psi / w, masters = c.M * psi / w, states = 8 * psi / w; break;
    }
    const std::string what = std::string(c.precision) + (*c.grad_accum ? " grad_accum fp32" : "");
    EXPECT_EQ(r.memory.params, params) << what;
    EXPECT_EQ(r.memory.grads, grads) << what;
    EXPECT_EQ(r.memory.masters, masters) << what;
    EXPECT_EQ(r.memory.optimizer_states, states) << what;
    if (world_rank() == 0)
      std::printf("[ zero ] %s, stage %d, dp %d: bytes per rank params %zu grads %zu fp32 masters %zu optimizer %zu comm "
                  "buffers %zu (model states %.3f of fp32 stage 0's %zu)\n",
                  what.c_str(), stage, W, r.memory.params, r.memory.grads, r.memory.masters, r.memory.optimizer_states,
                  r.memory.comm_buffers, static_cast<double>(r.memory.model_states()) / static_cast<double>(16 * N), 16 * N);
  }
}

// Bytes on the wire per rank and step, from the comms logger, against wire_per_step().
TEST_P(ZeroStages, BytesOnTheWireMatchTheFormula) {
  const int stage = GetParam(), W = world_size(), gas = 2, steps = 2;
  json cfg = base_config(stage, 1, gas);
  cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
  cfg["zero_optimization"]["stage3_max_reuse_distance"] = 0;  // keeps the units with distance 0: embeddings, final LN
  cfg["comms_logger"] = {{"enabled", true}};
  auto& log = comm::CommLogger::instance();
  log.reset();
  Result r = train(MPI_COMM_WORLD, cfg, steps);
  log.configure(comm::CommLogConfig{});
  log.reset();
  const double wire = r.wire_bytes;
  const double per_step = wire_per_step(stage, W, gas, r, 4);
  if (world_rank() == 0)
    std::printf("[ zero ] stage %d, dp %d: %.0f bytes on the wire per rank per step (formula %.0f)\n", stage, W,
                wire / steps, per_step);
  EXPECT_NEAR(wire / steps, per_step, 1e-9 * per_step);
  // bf16: 16-bit gradients travel in 16 bits (DeepSpeed's default communication dtype is the
  // gradients'), and the all-gathers move 16-bit parameters: half of every term
  cfg["bf16"] = {{"enabled", true}};
  log.reset();
  Result h = train(MPI_COMM_WORLD, cfg, steps);
  log.configure(comm::CommLogConfig{});
  log.reset();
  const double half_step = wire_per_step(stage, W, gas, h, 2, 2);
  if (world_rank() == 0)
    std::printf("[ zero ] bf16, stage %d, dp %d: %.0f bytes on the wire per rank per step (formula %.0f)\n", stage, W,
                h.wire_bytes / steps, half_step);
  EXPECT_NEAR(h.wire_bytes / steps, half_step, 1e-9 * half_step);
}

INSTANTIATE_TEST_SUITE_P(Stages, ZeroStages, testing::Values(0, 1, 2, 3),
                         [](const testing::TestParamInfo<int>& p) { return "stage" + std::to_string(p.param); });

// The knobs below move memory and timing, never values: in fp32 and in bf16 (16-bit parameters
// and gradients, fp32 masters).
json with_precision(json cfg, const char* precision) {
  if (std::string(precision) != "fp32") cfg[precision] = {{"enabled", true}};
  return cfg;
}

TEST(Zero, OverlapCommChangesNothing) {
  for (const char* prec : {"fp32", "bf16"}) {
    for (int stage : {2, 3}) {
      json on = with_precision(base_config(stage, 1, 2), prec), off = on;
      on["zero_optimization"]["overlap_comm"] = true;
      off["zero_optimization"]["overlap_comm"] = false;
      on["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
      off["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
      Result a = train(MPI_COMM_WORLD, on, 5), b = train(MPI_COMM_WORLD, off, 5);
      EXPECT_EQ(a.losses, b.losses) << prec << " stage " << stage;
      EXPECT_EQ(max_rel(a.tensors, b.tensors, 1e-30), 0.0) << prec << " stage " << stage;
    }
  }
}

TEST(Zero, AllgatherBucketSizeChangesNothing) {
  // stages 1-2 gather the updated parameters with at most allgather_bucket_size elements in
  // flight: one unit at a time (a bucket smaller than any unit) against all at once
  for (const char* prec : {"fp32", "bf16"}) {
    for (int stage : {1, 2}) {
      json one = with_precision(base_config(stage, 1, 2), prec), all = one;
      one["zero_optimization"]["allgather_bucket_size"] = 1;
      all["zero_optimization"]["allgather_bucket_size"] = 500000000;
      Result a = train(MPI_COMM_WORLD, one, 4), b = train(MPI_COMM_WORLD, all, 4);
      EXPECT_EQ(a.losses, b.losses) << prec << " stage " << stage;
      EXPECT_EQ(max_rel(a.tensors, b.tensors, 1e-30), 0.0) << prec << " stage " << stage;
      EXPECT_NE(a.losses.front(), a.losses.back());
    }
  }
}

TEST(Zero, Stage3PrefetchPersistenceAndReuseChangeNothing) {
  // Against a run gathering every unit on demand (no prefetch, no persistence, no reuse).
  for (const char* prec : {"fp32", "bf16"}) {
    json plain = with_precision(base_config(3, 1, 2), prec);
    plain["zero_optimization"]["stage3_prefetch_bucket_size"] = 0;
    plain["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
    plain["zero_optimization"]["stage3_max_reuse_distance"] = 0;
    json tuned = with_precision(base_config(3, 1, 2), prec);
    tuned["zero_optimization"]["stage3_param_persistence_threshold"] = 20000;  // some blocks persist
    Result a = train(MPI_COMM_WORLD, plain, 4), b = train(MPI_COMM_WORLD, tuned, 4);
    EXPECT_EQ(a.losses, b.losses) << prec;
    EXPECT_EQ(max_rel(a.tensors, b.tensors, 1e-30), 0.0) << prec;
  }
}

// Activation recompute is a schedule variant: at every stage and precision, losses and every
// parameter after training are bit for bit those of the run that keeps everything.
TEST(Zero, RecomputeChangesNothing) {
  using G = model::RecomputeConfig::Granularity;
  model::RecomputeConfig selective, full, chunks;
  selective.granularity = G::Selective;
  full.granularity = G::Full;
  chunks.granularity = G::Full, chunks.num_layers = 2;
  for (const char* prec : {"fp32", "bf16", "fp16"})
    for (int stage : {0, 1, 2, 3}) {
      json cfg = with_precision(base_config(stage, 1, 2), prec);
      cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
      const Result keep = train(MPI_COMM_WORLD, cfg, 3);
      for (const auto& rc : {selective, full, chunks}) {
        const Result r = train(MPI_COMM_WORLD, cfg, 3, rc);
        EXPECT_EQ(r.losses, keep.losses) << prec << " stage " << stage << " " << rc.describe();
        EXPECT_EQ(max_rel(r.tensors, keep.tensors, 1e-30), 0.0) << prec << " stage " << stage << " " << rc.describe();
        EXPECT_LT(r.memory.activations, keep.memory.activations) << rc.describe();
      }
    }
}

}  // namespace

namespace {

// Mixed precision (16-bit parameters and gradients, fp32 masters and Adam states, GEMMs in
// bf16 / fp16): W ranks follow one rank with the same precision and global batch, at every
// stage. The gradients are rounded to 16 bits at other points (single rank: into the accumulated
// sum after each micro-batch; W ranks: per micro-batch and rank, then summed in 16 bits on the
// wire), so the runs drift apart by rounding: loss curves and every tensor's parameters are
// compared, at stated tolerances (bf16 keeps 8 significant bits, fp16 11).
// With data_types.grad_accum_dtype "fp32" the gradients are summed and reduced in fp32 and only
// the parameters are 16-bit: closer, but the fp32 summation-order differences of the masters still
// flip bf16 roundings of the parameters now and then.
TEST(ZeroPrecision, Bf16AndFp16MatchSingleRankTraining) {
  const int W = world_size(), steps = 20, gas = 2;
  // tol: of the losses; update_tol: of each tensor's parameters, as a fraction of the tensor's update
  // over the run (a gradient that went wrong anywhere, a missed or doubled reduction, is of the
  // order of the update itself; measured at dp 2 and 4: bf16 <= 4.5e-2, fp16 <= 2.5e-2, bf16 with
  // fp32 gradients <= 5.3e-3)
  struct Case {
    const char* precision;
    const char* grad_accum;
    double tol, update_tol;
  };
  const auto init = train_init();
  for (const Case c : {Case{"bf16", "", 2e-3, 0.1}, Case{"fp16", "", 2e-4, 5e-2}, Case{"bf16", "fp32", 2e-4, 2e-2}}) {
    auto config = [&](int stage) {
      json cfg = with_precision(base_config(stage, 1, gas), c.precision);
      if (*c.grad_accum) cfg["data_types"] = {{"grad_accum_dtype", c.grad_accum}};
      return cfg;
    };
    const std::string what = std::string(c.precision) + (*c.grad_accum ? " (fp32 gradients)" : "");
    Result ref = single_rank_reference(config(0), gas * W, steps);
    for (int stage : {0, 1, 2, 3}) {
      if (*c.grad_accum && stage % 2 == 1) continue;  // fp32 gradients: stages 0 and 2 (full / partitioned)
      Result dist = train(MPI_COMM_WORLD, config(stage), steps);
      if (world_rank() != 0) continue;
      const double loss_diff = max_loss_rel(dist, ref), tensor = max_tensor_rel(dist.tensors, ref.tensors);
      // the parameters: how far apart the two runs' updates are, per tensor, against the update itself
      double update = 0;
      for (const auto& [name, p] : dist.tensors) {
        const auto& q = ref.tensors.at(name);
        const auto& p0 = init.at(name);
        double d = 0, u = 0;
        for (size_t i = 0; i < p.size(); ++i) {
          if (key_bias(name, i, p.size())) continue;
          d += (static_cast<double>(p[i]) - q[i]) * (static_cast<double>(p[i]) - q[i]);
          u += (static_cast<double>(q[i]) - p0[i]) * (static_cast<double>(q[i]) - p0[i]);
        }
        if (u > 0) update = std::max(update, std::sqrt(d / u));
      }
      std::printf("[ zero ] %s stage %d, dp %d vs single rank, %d steps: max relative difference of losses %.2e "
                  "(tolerance %.0e); parameters per tensor, L2: %.2e of the parameters, %.2e of the update\n",
                  what.c_str(), stage, W, steps, loss_diff, c.tol, tensor, update);
      EXPECT_LE(loss_diff, c.tol) << what << " stage " << stage;
      EXPECT_LE(update, c.update_tol) << what << " stage " << stage << ": the parameters' updates disagree";
      EXPECT_EQ(dist.skipped, ref.skipped) << what << " stage " << stage;  // the same overflow decisions
    }
  }
}

// bf16/fp16 GEMMs follow the fp32 loss curve closely (same model, data and seed).
TEST(ZeroPrecision, LossCurvesFollowFp32) {
  const int steps = 20;
  json f32 = base_config(1, 2, 1);
  Result ref = train(MPI_COMM_WORLD, f32, steps);
  for (const char* prec : {"bf16", "fp16"}) {
    json cfg = f32;
    cfg[prec] = {{"enabled", true}};
    Result r = train(MPI_COMM_WORLD, cfg, steps);
    double worst = 0;
    for (size_t i = 0; i < ref.losses.size(); ++i)
      worst = std::max(worst, std::fabs(r.losses[i] - ref.losses[i]) / ref.losses[i]);
    if (world_rank() == 0)
      std::printf("[ zero ] %s vs fp32, stage 1, dp %d, %d steps: max relative loss difference %.2e\n", prec,
                  world_size(), steps, worst);
    EXPECT_LE(worst, 5e-3) << prec;
    EXPECT_EQ(r.skipped_steps, 0) << prec;
  }
}

// fp16 overflow: a loss scale of 2^24 overflows the fp16 gradients; every such step is
// skipped (no optimizer step, no scheduler step, global_steps still counts it) and the scale
// follows DeepSpeed's algorithm replayed on the same overflow flags.
TEST(ZeroPrecision, Fp16OverflowSkipsStepsAndFollowsTheScaler) {
  const int steps = 16;
  for (int stage : {0, 3}) {
    json cfg = base_config(stage, 1, 2);
    cfg["fp16"] = {{"enabled", true}, {"initial_scale_power", 24}, {"hysteresis", 2}, {"loss_scale_window", 4}};
    cfg["scheduler"] = {{"type", "WarmupLR"},
                        {"params", {{"warmup_min_lr", 0}, {"warmup_max_lr", 1e-3}, {"warmup_num_steps", 100},
                                    {"warmup_type", "linear"}}}};
    Result r = train(MPI_COMM_WORLD, cfg, steps);
    ASSERT_GT(r.skipped_steps, 1) << "2^24 must overflow fp16";
    ASSERT_LT(r.skipped_steps, steps) << "the scale must come down until steps apply";
    EXPECT_EQ(r.global_steps, steps);
    EXPECT_EQ(r.micro_steps, 2 * steps);
    engine::LossScaler replay(config::parse_ds_config(cfg, world_size()).fp16);
    int applied = 0;
    for (int i = 0; i < steps; ++i) {
      EXPECT_EQ(r.scales[static_cast<size_t>(i)], replay.scale()) << "stage " << stage << " step " << i + 1;
      // WarmupLR advances on applied steps only: after `applied` of them (the first step() evaluates
      // it = 0) the linear warmup stands at max(applied - 1, 0) / 100 of 1e-3
      EXPECT_NEAR(r.lrs[static_cast<size_t>(i)], 1e-3 * std::max(applied - 1, 0) / 100.0, 1e-12) << i;
      replay.update(r.skipped[static_cast<size_t>(i)] != 0);
      applied += r.skipped[static_cast<size_t>(i)] ? 0 : 1;
    }
    // the fp32 masters start as the fp32 initialisation rounded to fp16 (DeepSpeed casts the
    // module, then copies the masters from it)
    Result z = train(MPI_COMM_WORLD, cfg, 0);
    auto rounded = train_init();
    for (auto& [name, v] : rounded)
      for (auto& x : v) x = static_cast<float>(static_cast<_Float16>(x));
    EXPECT_EQ(max_rel(z.tensors, rounded, 1e-30), 0.0) << "stage " << stage;
    // skipped steps leave the parameters untouched: after the leading run of skipped steps
    // they still equal the initial ones, bit for bit
    int leading = 0;
    while (leading < steps && r.skipped[static_cast<size_t>(leading)]) ++leading;
    ASSERT_GE(leading, 1);
    Result k = train(MPI_COMM_WORLD, cfg, leading);
    EXPECT_EQ(max_rel(k.tensors, z.tensors, 1e-30), 0.0) << "stage " << stage;
  }
}

}  // namespace

namespace {

// communication_data_type bf16/fp16: the gradients travel (and are summed) in 16 bits — half the
// gradient bytes on the wire; the parameters' all-gathers stay fp32 — and training follows the
// fp32-communication run closely.
TEST(ZeroPrecision, SixteenBitGradientCommunication) {
  const int W = world_size(), gas = 2, steps = 10;
  for (int stage : {0, 1, 2, 3}) {
    for (const char* cdt : {"bf16", "fp16"}) {
      json cfg = base_config(stage, 1, gas);
      cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
      cfg["zero_optimization"]["stage3_max_reuse_distance"] = 0;
      json c16 = cfg;
      c16["communication_data_type"] = cdt;
      c16["comms_logger"] = {{"enabled", true}};
      comm::CommLogger::instance().reset();
      Result a = train(MPI_COMM_WORLD, c16, steps);
      comm::CommLogger::instance().configure(comm::CommLogConfig{});
      comm::CommLogger::instance().reset();
      Result b = train(MPI_COMM_WORLD, cfg, steps);
      const double per_step = wire_per_step(stage, W, gas, a, 2);  // gradient reductions at 2 bytes
      EXPECT_NEAR(a.wire_bytes / steps, per_step, 1e-9 * per_step) << cdt << " stage " << stage;
      double worst = 0;
      for (size_t i = 0; i < b.losses.size(); ++i)
        worst = std::max(worst, std::fabs(a.losses[i] - b.losses[i]) / b.losses[i]);
      if (world_rank() == 0)
        std::printf("[ zero ] communication_data_type %s, stage %d, dp %d: %.0f bytes on the wire per rank per step "
                    "(formula %.0f); max relative loss difference to fp32 communication over %d steps %.2e\n",
                    cdt, stage, W, a.wire_bytes / steps, per_step, steps, worst);
      EXPECT_LE(worst, 1e-3) << cdt << " stage " << stage;
    }
  }
}

}  // namespace
