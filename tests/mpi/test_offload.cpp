// ZeRO-Infinity NVMe offload on the ranks of this job (run with -n 1 and -n 2): with the
// optimizer states (and in bf16 the fp32 masters) spilled to files and stepped a sub-group at a
// time through few buffers, 20 steps of training are bit-identical to the in-memory engine — the
// losses and every parameter — for ZeRO stages 1-3 in fp32 and bf16, through io_uring and through
// the thread-pool fallback. The memory report holds no spilled category in memory beyond the
// buffers. Checkpoints (foreground and background) stream the spilled states out and back in,
// bit-exactly, into an offloaded or an in-memory run. At stage 3 the parameters are offloaded
// too (offload_param): no partition in memory, every gather reads the spilled masters.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "src/engine/trainer.hpp"
#include "tests/mpi/mpi_test_util.hpp"
#include "tests/mpi/train_options.hpp"

using namespace dmpi;
using nlohmann::json;

namespace {

using test::env;
using test::world_rank;

struct Result {
  std::vector<double> losses;
  std::vector<double> read_bytes, cached_bytes, deferred;  // NVMe offload: per step, from the step's metrics
  std::vector<double> norms, in_backward;
  bool update_in_backward = false;
  std::map<std::string, std::vector<float>> tensors;
  engine::MemoryReport memory;
  size_t partition = 0, max_chunk = 0;  // this rank's partition; the largest unit chunk in it
  std::string spill_dir;
};

int g_layers = 0;  // > 0: the tiny model with this many layers

json config(int stage, bool bf16, const std::string& nvme, bool params = false) {
  json c{{"train_micro_batch_size_per_gpu", 2},
         {"gradient_accumulation_steps", 2},
         {"gradient_clipping", 1.0},
         {"zero_optimization", {{"stage", stage}, {"sub_group_size", 4096}}},
         {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 3e-3}, {"weight_decay", 0.1}}}}}};
  if (bf16) c["bf16"] = {{"enabled", true}};
  if (!nvme.empty())
    c["zero_optimization"]["offload_optimizer"] = {{"device", "nvme"}, {"nvme_path", nvme}, {"buffer_count", 3}};
  if (params) {
    c["zero_optimization"]["offload_param"] = {{"device", "nvme"}, {"nvme_path", nvme}, {"buffer_count", 2}};
    c["zero_optimization"]["stage3_param_persistence_threshold"] = 600;  // some units stay gathered, most do not
  }
  return c;
}

engine::TrainOptions options(const json& cfg) {
  model::ModelConfig m = model::preset("tiny");
  m.seq_len = m.max_pos = 32;
  if (g_layers > 0) m.num_layers = g_layers;
  return test::train_options(MPI_COMM_WORLD, m, cfg, 7);
}

// steps of training; save_at > 0: a checkpoint into ckpt after that step (async: in the background)
Result train(const json& cfg, int steps, const std::string& ckpt = "", int save_at = 0, bool async = false,
             const std::string& load = "") {
  engine::TrainOptions o = options(cfg);
  o.train_iters = steps;
  engine::Trainer t(env(), o);
  if (!load.empty()) t.load_checkpoint(load);
  Result r;
  for (int i = 0; i < steps; ++i) {
    const engine::StepMetrics m = t.train_step();
    r.losses.push_back(m.loss);
    r.read_bytes.push_back(m.spill_read_bytes);
    r.cached_bytes.push_back(m.spill_cached_bytes);
    r.deferred.push_back(m.spill_deferred);
    r.norms.push_back(m.grad_norm);
    r.in_backward.push_back(m.spill_in_backward);
    if (save_at && i + 1 == save_at) t.save_checkpoint(ckpt, "", async);
  }
  t.finish_saves();
  const auto full = t.full_params();
  for (int k = 0; k < t.model().num_tensors(); ++k) r.tensors[t.model().spec(k).name] = full[static_cast<size_t>(k)];
  r.memory = t.memory();
  r.update_in_backward = t.update_in_backward();
  r.partition = t.store().layout().partition_numel();
  for (int u = 0; u < t.store().layout().num_units(); ++u) r.max_chunk = std::max(r.max_chunk, t.store().layout().unit(u).chunk);
  if (t.store().spilled()) r.spill_dir = t.store().spill_arrays()->file(0);
  return r;
}

size_t differing(const Result& a, const Result& b) {
  size_t bad = 0;
  for (const auto& [name, va] : a.tensors) {
    const auto& vb = b.tensors.at(name);
    EXPECT_EQ(va.size(), vb.size()) << name;
    for (size_t i = 0; i < va.size() && i < vb.size(); ++i) bad += std::memcmp(&va[i], &vb[i], sizeof(float)) != 0;
  }
  return bad;
}

struct Backend {
  const char* name;
  explicit Backend(const char* b) : name(b) { ::setenv("DEEPMPI_SPILL_IO", b, 1); }
  ~Backend() { ::unsetenv("DEEPMPI_SPILL_IO"); }
};

bool uring_here() {
  try {
    io::AioOptions o;
    o.backend = "uring";
    return io::AioEngine(o).uring();
  } catch (const std::exception&) {
    return false;
  }
}

TEST(Offload, BitIdenticalToInMemoryForEveryStageAndPrecision) {
  test::TempDir nvme("deepmpi-nvme");
  const std::vector<const char*> backends = uring_here() ? std::vector<const char*>{"uring", "threads"}
                                                         : std::vector<const char*>{"threads"};
  if (backends.size() == 1 && world_rank() == 0) std::printf("note: io_uring unavailable; the thread pool only\n");
  for (int stage : {1, 2, 3})
    for (bool bf16 : {false, true}) {
      const Result mem = train(config(stage, bf16, ""), 20);
      // it trains: the comparison is not of two idle runs (most parameters moved from their initial values)
      size_t total = 0;
      for (const auto& [name, v] : mem.tensors) total += v.size();
      EXPECT_GT(differing(mem, train(config(stage, bf16, ""), 0)), total / 2);
      for (const char* b : backends) {
        SCOPED_TRACE(std::string("stage ") + std::to_string(stage) + (bf16 ? " bf16 " : " fp32 ") + b);
        Backend be(b);
        const Result off = train(config(stage, bf16, nvme.path), 20);
        ASSERT_EQ(off.losses.size(), mem.losses.size());
        for (size_t i = 0; i < off.losses.size(); ++i) EXPECT_EQ(off.losses[i], mem.losses[i]) << "step " << i + 1;
        EXPECT_EQ(differing(off, mem), 0u);
        // memory: nothing spilled is resident beyond the buffers (2 Adam states, + masters in bf16)
        const size_t arrays = bf16 ? 3 : 2, P = off.partition;
        EXPECT_EQ(off.memory.optimizer_states, 0u);
        EXPECT_EQ(off.memory.masters, 0u);
        EXPECT_EQ(off.memory.spilled_states, 2 * P * sizeof(float));
        EXPECT_EQ(off.memory.spilled_masters, bf16 ? P * sizeof(float) : 0u);
        const size_t G = std::min<size_t>(4096, (P + 1023) / 1024 * 1024);
        const size_t S = std::min<size_t>(3, (P + G - 1) / G);
        EXPECT_EQ(off.memory.spill_buffers, S * arrays * G * sizeof(float));
        EXPECT_LT(off.memory.spill_buffers, (2 * P + (bf16 ? P : 0)) * sizeof(float));  // less than what it holds
        EXPECT_EQ(off.memory.params + off.memory.grads, mem.memory.params + mem.memory.grads);
        // I/O per step: each optimizer stream starts with the S sub-groups the previous one
        // updated last, still in the buffers: those are not read, the rest are, every array, each
        // sub-group's bytes rounded to 4 KiB. A stream takes the held ones first, then the others
        // in ascending order, so the last sub-group (the short one) is held at every other stream
        // (nsub >= 2S: the top S of the others include it exactly when it was not held).
        // At stage 3 the whole update is left to the next forward (its gathers update what
        // they need), so a step's I/O is the previous step's stream: the first step's is none.
        const size_t nsub = (P + G - 1) / G, last = (P - (nsub - 1) * G + 1023) / 1024 * 1024;
        const double total = static_cast<double>(arrays * ((nsub - 1) * G + last) * sizeof(float));
        const double low = static_cast<double>(arrays * S * G * sizeof(float));                  // S full ones
        const double high = static_cast<double>(arrays * ((S - 1) * G + last) * sizeof(float));  // and the last
        const bool lazy = stage == 3;
        for (size_t i = 0; i < off.read_bytes.size(); ++i) {
          EXPECT_EQ(off.deferred[i], lazy ? static_cast<double>(nsub) : 0.0) << "step " << i + 1;
          if (lazy && i == 0) {
            EXPECT_EQ(off.read_bytes[i], 0.0) << "step 1: its update is not done yet";
            continue;
          }
          EXPECT_EQ(off.read_bytes[i] + off.cached_bytes[i], total) << "step " << i + 1;
          if (nsub >= 2 * S) {
            EXPECT_TRUE(off.cached_bytes[i] == low || off.cached_bytes[i] == high) << "step " << i + 1 << ": " << off.cached_bytes[i];
          }
          if (i > (lazy ? 1u : 0u) && nsub >= 2 * S && low != high) {
            EXPECT_NE(off.cached_bytes[i] == low, off.cached_bytes[i - 1] == low) << "step " << i + 1 << ": the last sub-group is held every other stream";
          }
        }
        EXPECT_FALSE(std::filesystem::exists(off.spill_dir));  // removed with the run
      }
    }
  MPI_Barrier(MPI_COMM_WORLD);
  std::error_code ec;
  if (world_rank() == 0) {
    EXPECT_TRUE(std::filesystem::is_empty(nvme.path, ec)) << "spill files left behind";
  }
}

// offload_param (stage 3): no parameter partition in memory; every gather reads its chunk from the
// spilled masters (read one unit ahead). Bit-identical to the in-memory run, which keeps the same
// persistent units.
TEST(Offload, ParameterOffloadIsBitIdenticalAtStage3) {
  test::TempDir nvme("deepmpi-nvme");
  const std::vector<const char*> backends = uring_here() ? std::vector<const char*>{"uring", "threads"}
                                                         : std::vector<const char*>{"threads"};
  g_layers = 8;  // 10 units: staged chunks are few next to the units that are gathered
  for (bool bf16 : {false, true}) {
    json in_memory = config(3, bf16, "");
    in_memory["zero_optimization"]["stage3_param_persistence_threshold"] = 600;
    const Result mem = train(in_memory, 20);
    for (const char* b : backends) {
      SCOPED_TRACE(std::string(bf16 ? "bf16 " : "fp32 ") + b);
      Backend be(b);
      const Result off = train(config(3, bf16, nvme.path, true), 20);
      ASSERT_EQ(off.losses.size(), mem.losses.size());
      for (size_t i = 0; i < off.losses.size(); ++i) EXPECT_EQ(off.losses[i], mem.losses[i]) << "step " << i + 1;
      EXPECT_EQ(differing(off, mem), 0u);
      // the update is left to the next forward but for the sub-groups of its first unit, whose
      // chunk the step's end reads ahead
      for (size_t i = 0; i < off.deferred.size(); ++i) {
        EXPECT_GT(off.deferred[i], 0.0) << "step " << i + 1;
      }
      // the partition is not held: parameters at rest are the persistent units only, and the
      // spilled masters (fp32: the parameters themselves) are in the files
      const size_t P = off.partition, ps = bf16 ? 2 : 4;
      ASSERT_GE(mem.memory.params, P * ps);
      EXPECT_EQ(off.memory.params, mem.memory.params - P * ps);
      EXPECT_LT(off.memory.params, P * ps);
      EXPECT_EQ(off.memory.spilled_masters, P * sizeof(float));
      EXPECT_EQ(off.memory.masters, 0u);
      EXPECT_EQ(off.memory.grads, mem.memory.grads);
      // the staged chunks: at most buffer_count (2) read ahead plus the one being gathered, each
      // an fp32 read buffer (aligned span) and in bf16 its 16-bit rounding; never one per unit
      const size_t staged = off.memory.comm_buffers - mem.memory.comm_buffers;
      EXPECT_LE(staged, 3 * (off.max_chunk + 1024) * (4 + (bf16 ? 2 : 0))) << "chunk " << off.max_chunk;
      EXPECT_GT(staged, 0u);
    }
  }
  g_layers = 0;
}

// Without gradient clipping, loss scaling or an overflow check nothing needs every gradient
// before the update, so at ZeRO-3 each sub-group is stepped during the last backward once the
// gradients over it are final (ParamStore::arm_update). Still bit-identical to the in-memory run
// over 20 steps (an update of a sub-group before its last gradients would not be), with and
// without offload_param and across a background save; the norm is summed per sub-group before
// its update; every step streams every sub-group and leaves none to the next forward.
TEST(Offload, UpdateDuringTheBackwardIsBitIdentical) {
  test::TempDir nvme("deepmpi-nvme"), ckpt("deepmpi-ckpt");
  const std::vector<const char*> backends = uring_here() ? std::vector<const char*>{"uring", "threads"}
                                                         : std::vector<const char*>{"threads"};
  auto unclipped = [](json c, bool bf16) {
    c["gradient_clipping"] = 0.0;
    if (bf16) c["bf16"]["check_grad_overflow"] = false;
    return c;
  };
  for (bool bf16 : {false, true})
    for (bool params : {false, true}) {
      json in_memory = unclipped(config(3, bf16, ""), bf16);
      if (params) in_memory["zero_optimization"]["stage3_param_persistence_threshold"] = 600;
      const Result mem = train(in_memory, 20);
      EXPECT_FALSE(mem.update_in_backward);
      for (const char* b : backends) {
        SCOPED_TRACE(std::string(bf16 ? "bf16 " : "fp32 ") + (params ? "offload_param " : "") + b);
        Backend be(b);
        const std::string dir = ckpt.path + "/" + b + (bf16 ? "b" : "f") + (params ? "p" : "");
        const Result off = train(unclipped(config(3, bf16, nvme.path, params), bf16), 20, dir, 10, true);
        ASSERT_TRUE(off.update_in_backward);
        ASSERT_EQ(off.losses.size(), mem.losses.size());
        const size_t P = off.partition, G = std::min<size_t>(4096, (P + 1023) / 1024 * 1024), nsub = (P + G - 1) / G;
        const size_t arrays = bf16 ? 3 : 2, last = (P - (nsub - 1) * G + 1023) / 1024 * 1024;
        const double total = static_cast<double>(arrays * ((nsub - 1) * G + last) * sizeof(float));
        double early = 0;
        for (size_t i = 0; i < off.losses.size(); ++i) {
          EXPECT_EQ(off.losses[i], mem.losses[i]) << "step " << i + 1;
          EXPECT_NEAR(off.norms[i], mem.norms[i], 1e-9 * mem.norms[i]) << "step " << i + 1;
          EXPECT_EQ(off.deferred[i], 0.0) << "step " << i + 1;
          EXPECT_LE(off.in_backward[i], static_cast<double>(nsub)) << "step " << i + 1;
          if (!params) {  // (offload_param's chunk reads come from the same engine)
            EXPECT_EQ(off.read_bytes[i] + off.cached_bytes[i], total) << "step " << i + 1;
          }
          early += off.in_backward[i];
        }
        EXPECT_GT(early, 0.0) << "no sub-group was updated during a backward in 20 steps";
        EXPECT_EQ(differing(off, mem), 0u);
      }
    }
}

TEST(Offload, CheckpointsStreamSpilledStatesBitExactly) {
  test::TempDir nvme("deepmpi-nvme"), ckpt("deepmpi-ckpt");
  for (bool async : {false, true})
    for (int stage : {2, 3}) {
      SCOPED_TRACE(std::string("stage ") + std::to_string(stage) + (async ? " background save" : " foreground save"));
      const bool bf16 = stage == 3;
      const std::string dir = ckpt.path + "/s" + std::to_string(stage) + (async ? "a" : "f");
      const Result whole = train(config(stage, bf16, ""), 20);
      const Result first = train(config(stage, bf16, nvme.path), 10, dir, 10, async);
      // resumed with offload, and resumed in memory from the offloaded run's checkpoint
      const Result off = train(config(stage, bf16, nvme.path), 10, "", 0, false, dir);
      const Result mem = train(config(stage, bf16, ""), 10, "", 0, false, dir);
      // stage 3: resumed with the parameters offloaded too (the loaded masters are what it gathers)
      const Result par = stage == 3 ? train(config(stage, bf16, nvme.path, true), 10, "", 0, false, dir) : mem;
      for (size_t i = 0; i < 10; ++i) {
        EXPECT_EQ(par.losses[i], whole.losses[10 + i]) << "step " << 11 + i;
        EXPECT_EQ(first.losses[i], whole.losses[i]);
        EXPECT_EQ(off.losses[i], whole.losses[10 + i]) << "step " << 11 + i;
        EXPECT_EQ(mem.losses[i], whole.losses[10 + i]) << "step " << 11 + i;
      }
      EXPECT_EQ(differing(off, whole), 0u);
      EXPECT_EQ(differing(mem, whole), 0u);
      EXPECT_EQ(differing(par, whole), 0u);
    }
}

}  // namespace
