// Pipeline parallelism (issue 16) on the ranks of this job: pp 2 (-n 2), pp 4 and pp 2 x dp 2
// (-n 4), tp 2 x pp 2 x dp 2 (-n 8), each schedule (1F1B, interleaved, zero-bubble), ZeRO 0-2,
// GPT-2 (tied embedding/head across the stages) and the LLaMA composition, gradient accumulation
// 8: losses and parameters equal single-rank training with the same global batch. Stage 0's
// activation memory holds its schedule's in-flight micro-batches; stage 2 reduces gradients
// once per step; messages carry 1/tp of the stream; checkpoints load across pp sizes.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <map>

#include "comm/comm_logger.hpp"
#include "src/engine/trainer.hpp"
#include "tests/mpi/mpi_test_util.hpp"
#include "tests/mpi/train_options.hpp"
#include "tests/mpi/train_compare.hpp"

using namespace dmpi;
using nlohmann::json;
using test::env;
using test::world_rank;
using test::world_size;

namespace {

struct Layout3 {
  int tp, pp;
};
// the layouts of this job's ranks
std::vector<Layout3> layouts() {
  switch (world_size()) {
    case 2: return {{1, 2}};
    case 4: return {{1, 4}, {1, 2}};
    case 8: return {{2, 2}};
    default: return {};
  }
}

model::ModelConfig model_of(const std::string& kind) {
  model::ModelConfig m = model::preset(kind == "gpt2" ? "tiny" : "llama-tiny");
  m.num_layers = 8;  // pp 4 x 2 virtual stages
  m.hidden = 64;
  if (kind == "gpt2") m.vocab = 509, m.heads = 4;
  if (kind == "llama") m.heads = 8, m.query_groups = 4;
  m.seq_len = m.max_pos = 16;
  return m;
}

json ds_json(int stage, int gas, const std::string& opt) {
  return {{"train_micro_batch_size_per_gpu", 2},
          {"gradient_accumulation_steps", gas},
          {"gradient_clipping", 1.0},
          {"zero_optimization", {{"stage", stage}}},
          {"optimizer", opt == "SGD" ? json{{"type", "SGD"}, {"params", {{"lr", 0.05}, {"momentum", 0.9}}}}
                                     : json{{"type", "AdamW"}, {"params", {{"lr", 3e-3}, {"weight_decay", 0.1}}}}}};
}

engine::TrainOptions options(MPI_Comm comm, const model::ModelConfig& m, json cfg, Layout3 l, const std::string& sched,
                             int steps) {
  engine::TrainOptions o = test::train_options(comm, m, cfg, 5, l.tp * l.pp);
  o.tensor_parallel = l.tp;
  o.pipeline_parallel = l.pp;
  o.pipeline_schedule = sched;
  o.virtual_stages = sched == "interleaved" ? 2 : 1;
  o.train_iters = steps;
  return o;
}

struct Result {
  std::vector<double> losses;
  test::Tensors tensors;
};
test::Tensors by_name(engine::Trainer& t) {
  const auto full = t.full_params();
  test::Tensors out;
  for (int k = 0; k < t.whole().num_tensors(); ++k) out[t.whole().spec(k).name] = full[static_cast<size_t>(k)];
  return out;
}
Result train(MPI_Comm comm, const model::ModelConfig& m, json cfg, Layout3 l, const std::string& sched, int steps) {
  engine::Trainer t(env(), options(comm, m, cfg, l, sched, steps));
  Result r;
  for (int i = 0; i < steps; ++i) r.losses.push_back(t.train_step().loss);
  r.tensors = by_name(t);
  return r;
}
// one rank, the same global batch
Result reference(const model::ModelConfig& m, json cfg, int dp, int steps) {
  cfg["gradient_accumulation_steps"] = cfg["gradient_accumulation_steps"].get<int>() * dp;
  cfg["zero_optimization"] = {{"stage", 0}};
  return train(MPI_COMM_SELF, m, cfg, {1, 1}, "1f1b", steps);
}

}  // namespace

// fp32, 20 steps of 8 micro-batches per dp rank. SGD (linear in the gradients: a lost, doubled or
// misrouted micro-batch shows at once): losses and parameters within 1e-5 relative of one rank
// per tensor (3e-5 per element), for every schedule and ZeRO stage 0-2. What differs from one rank
// is only the order of sums (the tied table's two gradient halves added at the boundary; with
// tp the projections' partial sums). AdamW on 1F1B: losses 1e-5, parameters 5e-4 per tensor, 5e-3
// with tp 2 or dp 2 (as the tensor-parallel test: Adam normalises rounding-level differences of
// near-zero gradients into O(lr) steps).
TEST(Pipeline, MatchesSingleRankTraining) {
  const int steps = 20, gas = 8;
  for (const Layout3 l : layouts()) {
    const int dp = world_size() / (l.tp * l.pp);
    for (const char* kind : {"gpt2", "llama"}) {
      const model::ModelConfig m = model_of(kind);
      std::map<std::string, Result> refs;
      for (const char* opt : {"SGD", "AdamW"})
        for (const char* sched : {"1f1b", "interleaved", "zero-bubble"})
          for (int stage = 0; stage <= 2; ++stage) {
            if (std::string(opt) == "AdamW" && (std::string(sched) != "1f1b" || stage != 1)) continue;
            const json cfg = ds_json(stage, gas, opt);
            Result dist = train(MPI_COMM_WORLD, m, cfg, l, sched, steps);
            if (world_rank() != 0) continue;
            if (!refs.count(opt)) refs[opt] = reference(m, cfg, dp, steps);
            const Result& ref = refs[opt];
            const double loss = test::max_loss_rel(dist.losses, ref.losses);
            const double tensor = test::max_tensor_rel(dist.tensors, ref.tensors);
            const double elem = test::max_elem_rel(dist.tensors, ref.tensors, 1e-2);
            std::printf("[ pp ] %s %s tp %d x pp %d x dp %d %s stage %d, %d steps vs one rank: losses %.2e, parameters "
                        "per tensor %.2e (%s), per element %.2e\n",
                        kind, opt, l.tp, l.pp, dp, sched, stage, steps, loss, tensor, test::g_worst.c_str(), elem);
            const std::string what = std::string(kind) + " " + opt + " pp " + std::to_string(l.pp) + " " + sched +
                                     " stage " + std::to_string(stage);
            EXPECT_LE(loss, 1e-5) << what;
            const bool sgd = std::string(opt) == "SGD";
            // AdamW with tp 2 adds the tensor-parallel sums' order (measured 1.3e-3 on LLaMA's qkv at
            // tp 2 x pp 2), and dp 2 the order of the gradient halves' sum (measured 8.9e-4 on LLaMA's
            // qkv at pp 2 x dp 2 on an AMD EPYC with AVX-512, 4.4e-6..3.2e-4 elsewhere); pp alone
            // changes only the tied table's sum (3.7e-5)
            EXPECT_LE(tensor, sgd ? 1e-5 : l.tp > 1 || dp > 1 ? 5e-3 : 5e-4) << what;
            if (sgd) {
              // per element (denominators floored at 1e-2): the dp 2 layouts sum each gradient in
              // two halves; measured on Intel Xeon (oneDNN's AVX-512 GEMMs) GPT-2 1.1e-6 and LLaMA
              // 1.12e-5..1.14e-5 (its attention projection); under 1e-5 on the AMD EPYC (AVX2) where
              // the test was written
              EXPECT_LE(elem, 3e-5) << what;
            }
            EXPECT_NE(dist.losses.front(), dist.losses.back()) << what;
          }
    }
  }
}

// Stage 0 keeps activations for its schedule's micro-batches in flight only, from the memory
// report: per slot the kept bytes, slots = min(S, M) for 1F1B and zero-bubble (DeepSpeed's
// buffers, a closed form), the interleaved schedule's own count; GPipe's would be all M.
TEST(Pipeline, StageZeroActivationsHoldTheInFlightMicroBatches) {
  const int gas = 8;
  for (const Layout3 l : layouts())
    for (const char* sched : {"1f1b", "interleaved", "zero-bubble"}) {
      engine::Trainer t(env(), options(MPI_COMM_WORLD, model_of("gpt2"), ds_json(1, gas, "SGD"), l, sched, 1));
      t.train_step();
      if (t.pipeline_stage() != 0) continue;
      const auto kind = engine::pipe_schedule_named(sched);
      const int v = sched == std::string("interleaved") ? 2 : 1;
      const int in_flight = kind == engine::PipeSchedule::Interleaved ? engine::pipeline_in_flight(kind, l.pp, 0, gas, v)
                                                                      : std::min(l.pp, gas);
      const auto& r = t.runner();
      const size_t held = t.memory().activations - r.work_bytes() - r.stream_grad_bytes();
      std::printf("[ pp ] %s pp %d stage 0: activations %zu bytes = %d micro-batches x %zu kept + working buffers\n", sched,
                  l.pp, t.memory().activations, in_flight, r.kept_bytes_per_slot());
      EXPECT_EQ(held, static_cast<size_t>(in_flight) * r.kept_bytes_per_slot()) << sched;
      // fewer than GPipe's M, except interleaved at M = 2 S (its warm-up reaches every micro-batch;
      // its slots also hold every chunk of the stage: a limit noted in docs/architecture.md)
      if (kind != engine::PipeSchedule::Interleaved) {
        EXPECT_LT(in_flight, gas) << sched;
      } else {
        EXPECT_LE(in_flight, gas) << sched;
      }
    }
}

// Wire: stage 2 reduce-scatters each of a stage's units once per step (not once per micro-batch),
// the tied table's gradients cross between the end stages once per step, and each pipeline
// message is one micro-batch's stream (B T C floats), 1/tp of it per tp rank.
TEST(Pipeline, WireReduceOncePerStepAndSlicedMessages) {
  const int steps = 2, gas = 8, B = 2;
  for (const Layout3 l : layouts()) {
    const int dp = world_size() / (l.tp * l.pp);
    const model::ModelConfig m = model_of("gpt2");
    json cfg = ds_json(2, gas, "SGD");
    cfg["comms_logger"] = {{"enabled", true}};
    engine::Trainer t(env(), options(MPI_COMM_WORLD, m, cfg, l, "1f1b", steps));
    comm::CommLogger::instance().reset();  // after the set-up (its one exchange of message shapes)
    for (int i = 0; i < steps; ++i) t.train_step();
    long long rs = 0, tied = 0, sends = 0;
    double send_bytes = 0;
    for (const auto& [key, st] : comm::CommLogger::instance().local()) {
      const auto& [op, group, size, bytes] = key;
      if (op == "reduce_scatter" && group == "dp") rs += st.count;
      if (op == "all_reduce" && group == "tied") tied += st.count;
      if (op == "send" && group == "pp") sends += st.count, send_bytes += st.bytes;
    }
    const int units = t.store().layout().num_units(), S = l.pp, s = t.pipeline_stage();
    if (dp > 1) {
      EXPECT_EQ(rs, static_cast<long long>(steps) * units) << "stage " << s;
    }
    const bool end = s == 0 || s == S - 1;
    EXPECT_EQ(tied, end ? steps : 0) << "stage " << s;
    // 1F1B: every stage but the last sends each micro-batch's activation, every stage but the first its gradient
    const long long want_sends = static_cast<long long>(steps) * gas * ((s < S - 1) + (s > 0));
    EXPECT_EQ(sends, want_sends) << "stage " << s;
    const double per = 4.0 * B * m.seq_len * m.hidden / l.tp;
    if (sends > 0) {
      EXPECT_EQ(send_bytes / static_cast<double>(sends), per) << "stage " << s;
    }
    if (world_rank() == 0)
      std::printf("[ pp ] tp %d x pp %d x dp %d stage 2: %lld reduce-scatters on dp over %d steps (%d units), %lld "
                  "tied all-reduces, %lld sends of %.0f bytes\n",
                  l.tp, l.pp, dp, rs, steps, units, tied, sends, sends ? send_bytes / static_cast<double>(sends) : 0.0);
  }
}

// A checkpoint saved at one tp x pp x dp (and ZeRO stage) loads at other pp sizes with no
// conversion: the same logical tensors bit for bit, and training goes on as the saving run does.
TEST(Pipeline, CheckpointsLoadAcrossPipelineSizes) {
  test::TempDir dir("deepmpi-pp-ckpt");
  const model::ModelConfig m = model_of("gpt2");
  const int gas = 8;
  for (const Layout3 l : layouts()) {
    const int dp = world_size() / (l.tp * l.pp);
    const json cfg = ds_json(1, gas, "AdamW");
    const std::string tag = "pp" + std::to_string(l.pp) + "tp" + std::to_string(l.tp);
    engine::Trainer a(env(), options(MPI_COMM_WORLD, m, cfg, l, "1f1b", 5));
    for (int i = 0; i < 3; ++i) a.train_step();
    a.save_checkpoint(dir.path, tag);
    const test::Tensors saved = by_name(a);
    std::vector<double> going_on;
    for (int i = 0; i < 2; ++i) going_on.push_back(a.train_step().loss);
    // other layouts of the same ranks (the same dp keeps the same samples per step), and one rank
    std::vector<std::pair<Layout3, int>> targets = {{{1, 1}, 2}};  // pp 1 at ZeRO stage 2
    if (l.pp * l.tp == 2 && world_size() >= 4) targets.push_back({{1, 4}, 0});
    if (world_size() == 8) targets.push_back({{2, 4}, 1}), targets.push_back({{1, 2}, 0});
    for (const auto& [to, stage] : targets) {
      const int dp2 = world_size() / (to.tp * to.pp);
      json c2 = cfg;
      c2["zero_optimization"]["stage"] = stage;
      c2["gradient_accumulation_steps"] = gas * dp / dp2;  // the same global batch
      engine::Trainer b(env(), options(MPI_COMM_WORLD, m, c2, to, "1f1b", 5));
      b.load_checkpoint(dir.path, tag);
      const test::Tensors loaded = by_name(b);
      EXPECT_EQ(test::max_tensor_rel(loaded, saved), 0.0) << tag << " -> pp " << to.pp << " tp " << to.tp;
      std::vector<double> resumed;
      for (int i = 0; i < 2; ++i) resumed.push_back(b.train_step().loss);
      EXPECT_LE(test::max_loss_rel(resumed, going_on), 1e-5) << tag << " -> pp " << to.pp;
      if (world_rank() == 0)
        std::printf("[ pp ] checkpoint tp %d x pp %d x dp %d -> tp %d x pp %d x dp %d stage %d: parameters equal, "
                    "next losses within %.1e\n",
                    l.tp, l.pp, dp, to.tp, to.pp, dp2, stage, test::max_loss_rel(resumed, going_on));
    }
    if (world_rank() == 0) {  // one rank alone
      json c1 = cfg;
      c1["zero_optimization"]["stage"] = 0;
      c1["gradient_accumulation_steps"] = gas * dp;
      engine::Trainer one(env(), options(MPI_COMM_SELF, m, c1, {1, 1}, "1f1b", 5));
      one.load_checkpoint(dir.path, tag);
      EXPECT_EQ(test::max_tensor_rel(by_name(one), saved), 0.0) << tag << " -> one rank";
      std::vector<double> resumed;
      for (int i = 0; i < 2; ++i) resumed.push_back(one.train_step().loss);
      EXPECT_LE(test::max_loss_rel(resumed, going_on), 1e-5) << tag << " -> one rank";
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

// What pipelines refuse, with the fix in the message.
TEST(Pipeline, RefusesWhatItCannotDo) {
  if (world_size() != 2) GTEST_SKIP() << "run at -n 2";
  auto refused = [&](json cfg, const std::string& sched, const std::string& want, auto&& tweak) {
    engine::TrainOptions o = options(MPI_COMM_WORLD, model_of("gpt2"), cfg, {1, 2}, sched, 1);
    tweak(o);
    try {
      engine::Trainer t(env(), o);
      ADD_FAILURE() << "accepted: " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  auto none = [](engine::TrainOptions&) {};
  refused(ds_json(3, 8, "SGD"), "1f1b", "use stage 1 or 2", none);
  refused(ds_json(1, 8, "SGD"), "zero-bubble", "use 1f1b, or selective recompute", [](engine::TrainOptions& o) {
    o.recompute.granularity = model::RecomputeConfig::Granularity::Full;
  });
  refused(ds_json(1, 5, "SGD"), "interleaved", "multiple of --pipeline-model-parallel-size", none);
  refused(ds_json(1, 8, "SGD"), "1f1b", "fewer stages", [](engine::TrainOptions& o) { o.model.num_layers = 1; });
}
