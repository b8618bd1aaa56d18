// Checkpoints on the ranks of this job (run with -n 2 and -n 4): resume is bit-exact for every
// ZeRO stage and precision; a checkpoint saved at one dp size / stage loads at another with
// parameters and optimizer states equal element for element; damaged or mismatched
// checkpoints are refused with an error naming the file and dataset, and nothing live changes.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "comm/mpi_env.hpp"
#include "io/checkpoint.hpp"
#include "io/crc32c.hpp"
#include "src/engine/trainer.hpp"

#include "tests/mpi/mpi_test_util.hpp"
#include "tests/mpi/train_options.hpp"

using namespace dmpi;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// every tensor's fp32 parameters, flattened in model order (collective)
std::vector<float> flat_params(engine::Trainer& t) {
  std::vector<float> out;
  for (const auto& v : t.full_params()) out.insert(out.end(), v.begin(), v.end());
  return out;
}


using test::world_rank;
using test::world_size;

// A fresh directory per test, the same on every rank (tests/mpi/mpi_test_util.hpp).
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("deepmpi-ckpt") {}
};

json config(int stage, const std::string& precision, const std::string& opt = "AdamW") {
  json c = {{"train_batch_size", 12},
            {"train_micro_batch_size_per_gpu", 1},
            {"gradient_clipping", 1.0},
            {"zero_optimization", {{"stage", stage}}},
            {"optimizer", {{"type", opt}, {"params", {{"lr", 3e-3}, {"weight_decay", 0.1}}}}},
            {"scheduler", {{"type", "WarmupLR"}, {"params", {{"warmup_num_steps", 5}, {"warmup_max_lr", 3e-3}}}}}};
  if (opt == "SGD") c["optimizer"]["params"] = {{"lr", 1e-2}, {"momentum", 0.9}};
  if (precision == "bf16") c["bf16"] = {{"enabled", true}};
  // fp16: the first steps overflow at 2^12 and are skipped; the scaler state must survive the save
  if (precision == "fp16") c["fp16"] = {{"enabled", true}, {"initial_scale_power", 24}, {"hysteresis", 1}, {"loss_scale_window", 4}};
  return c;
}

engine::TrainOptions options(MPI_Comm comm, const json& cfg, int layers = 2) {
  model::ModelConfig m = model::preset("tiny");
  m.num_layers = layers;
  m.seq_len = m.max_pos = 32;
  return test::train_options(comm, m, cfg, 11);
}

struct Curve {
  std::vector<double> losses;
  std::vector<float> params;
};

// A communicator of the first n world ranks (MPI_COMM_NULL on the others).
MPI_Comm first_ranks(int n) {
  MPI_Comm c;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < n ? 0 : MPI_UNDEFINED, world_rank(), &c);
  return c;
}

// Every dataset of two checkpoint files, element for element (rank 0 only). Returns the
// differing datasets.
std::vector<std::string> diff_files(const std::string& a, const std::string& b) {
  std::vector<std::string> bad;
  io::CheckpointReader ra(MPI_COMM_SELF, a), rb(MPI_COMM_SELF, b);
  EXPECT_EQ(ra.datasets(), rb.datasets());
  for (const auto& [name, shape] : ra.datasets()) {
    if (!rb.has(name)) {
      bad.push_back(name);
      continue;
    }
    size_t n = 1;
    for (auto d : shape) n *= static_cast<size_t>(d);
    std::vector<float> x(n), y(n);
    ra.read(name, 0, n, x.data());
    rb.read(name, 0, n, y.data());
    if (std::memcmp(x.data(), y.data(), n * sizeof(float)) != 0) bad.push_back(name);
  }
  for (const char* k : {"global_steps", "skipped_steps", "micro_steps", "applied_steps", "global_samples", "lr_scheduler",
                        "loss_scaler"})
    if (ra.attrs().value(k, json()) != rb.attrs().value(k, json())) bad.push_back(std::string("attribute ") + k);
  return bad;
}

// ---- resume: 20 steps straight == 10 steps, save, a new engine, load, 10 steps ----

class Resume : public testing::TestWithParam<std::tuple<int, std::string>> {};

TEST_P(Resume, BitExact) {
  const auto [stage, prec] = GetParam();
  const json cfg = config(stage, prec);
  TempDir dir;
  Curve straight, resumed;
  {
    engine::Trainer t(*test::g_env, options(MPI_COMM_WORLD, cfg));
    for (int i = 0; i < 20; ++i) straight.losses.push_back(t.train_step().loss);
    straight.params = flat_params(t);
  }
  int64_t skipped = 0;
  {
    engine::Trainer t(*test::g_env, options(MPI_COMM_WORLD, cfg));
    for (int i = 0; i < 10; ++i) resumed.losses.push_back(t.train_step().loss);
    t.save_checkpoint(dir.path);
    skipped = t.skipped_steps();
  }
  {
    engine::Trainer t(*test::g_env, options(MPI_COMM_WORLD, cfg));
    EXPECT_EQ(t.load_checkpoint(dir.path), "global_step10");
    EXPECT_EQ(t.global_steps(), 10);
    EXPECT_EQ(t.skipped_steps(), skipped);
    for (int i = 0; i < 10; ++i) {
      auto m = t.train_step();
      EXPECT_EQ(m.step, 11 + i);
      resumed.losses.push_back(m.loss);
    }
    resumed.params = flat_params(t);
  }
  if (prec == "fp16") {
    EXPECT_GT(skipped, 0) << "the fp16 run should have skipped steps before the save";
  }
  ASSERT_EQ(straight.losses.size(), resumed.losses.size());
  for (size_t i = 0; i < straight.losses.size(); ++i) EXPECT_EQ(straight.losses[i], resumed.losses[i]) << "step " << i + 1;
  ASSERT_EQ(straight.params.size(), resumed.params.size());
  EXPECT_EQ(std::memcmp(straight.params.data(), resumed.params.data(), straight.params.size() * sizeof(float)), 0)
      << "parameters after 20 steps differ from the resumed run's";
  EXPECT_NE(straight.losses.front(), straight.losses.back());  // training happened
}

INSTANTIATE_TEST_SUITE_P(StagesPrecisions, Resume,
                         testing::Combine(testing::Values(0, 1, 2, 3), testing::Values("fp32", "bf16", "fp16")),
                         [](const auto& info) {
                           return "stage" + std::to_string(std::get<0>(info.param)) + "_" + std::get<1>(info.param);
                         });

// ---- reshard: saved at dp 4 / stage 3, loaded at dp 2 / stage 1, dp 1 / stage 0, dp 3 / stage 2, and back ----

TEST(Reshard, ParametersAndOptimizerStatesSurvive) {
  if (world_size() < 4) GTEST_SKIP() << "needs 4 ranks (run by mpi.checkpoint.np4)";
  TempDir dir;
  const std::string src = dir.sub("dp4_stage3");
  std::vector<double> cont_ref;  // 3 more steps at the original topology
  {
    engine::Trainer t(*test::g_env, options(MPI_COMM_WORLD, config(3, "fp32")));
    for (int i = 0; i < 5; ++i) t.train_step();
    t.save_checkpoint(src);
    for (int i = 0; i < 3; ++i) cont_ref.push_back(t.train_step().loss);
  }
  const std::string src_file = io::checkpoint_path(src, "global_step5");
  struct Hop {
    int dp, stage;
    std::string from;
  };
  const std::vector<Hop> hops = {{2, 1, src}, {1, 0, src}, {3, 2, src}, {4, 3, "dp3_stage2"}};
  for (const auto& h : hops) {
    const std::string from = h.from == src ? src : dir.sub(h.from);
    const std::string out = dir.sub("dp" + std::to_string(h.dp) + "_stage" + std::to_string(h.stage));
    MPI_Comm c = first_ranks(h.dp);
    std::vector<double> cont;
    if (c != MPI_COMM_NULL) {
      auto o = options(c, config(h.stage, "fp32"));
      o.overwrite_checkpoints = true;  // a layout visited twice writes its global_step5 again
      engine::Trainer t(*test::g_env, o);
      t.load_checkpoint(from);
      EXPECT_EQ(t.global_steps(), 5);
      t.save_checkpoint(out);  // the state as this topology holds it, written back as logical tensors
      for (int i = 0; i < 3; ++i) cont.push_back(t.train_step().loss);
      MPI_Comm_free(&c);
    }
    if (world_rank() == 0) {
      auto bad = diff_files(src_file, io::checkpoint_path(out, "global_step5"));
      std::string list;
      for (auto& b : bad) list += b + " ";
      EXPECT_TRUE(bad.empty()) << "dp " << h.dp << " stage " << h.stage << " (from " << h.from << "): " << list;
      // training goes on the same way (sums in another order: not bit-exact)
      for (size_t i = 0; i < cont.size(); ++i)
        EXPECT_NEAR(cont[i], cont_ref[i], 1e-5 * std::fabs(cont_ref[i])) << "dp " << h.dp << " step " << 6 + i;
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

// ---- bad input: every case is refused with the file and dataset named; nothing live changes ----

// Rank 0 edits a file with serial HDF5 / plain I/O; everyone waits.
void on_root(const std::function<void()>& f) {
  if (world_rank() == 0) f();
  MPI_Barrier(MPI_COMM_WORLD);
}

std::string load_error(engine::Trainer& t, const std::string& dir, const std::string& tag = "", bool optim = true) {
  try {
    t.load_checkpoint(dir, tag, optim);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(BadCheckpoint, RefusedWithTheReason) {
  TempDir dir;
  const json cfg = config(2, "fp32");
  {
    engine::Trainer t(*test::g_env, options(MPI_COMM_WORLD, cfg));
    for (int i = 0; i < 3; ++i) t.train_step();
    t.save_checkpoint(dir.path);
  }
  const std::string good = io::checkpoint_path(dir.path, "global_step3");
  auto copy_tag = [&](const std::string& tag) {
    on_root([&] {
      fs::create_directories(dir.sub(tag));
      fs::copy_file(good, io::checkpoint_path(dir.path, tag));
    });
    return io::checkpoint_path(dir.path, tag);
  };
  engine::Trainer t(*test::g_env, options(MPI_COMM_WORLD, cfg));
  const std::vector<float> before = flat_params(t);
  auto unchanged = [&] {
    auto now = flat_params(t);
    return now.size() == before.size() && std::memcmp(now.data(), before.data(), now.size() * sizeof(float)) == 0;
  };

  // a flipped bit in an optimizer state's data
  const std::string dset = "/optim/exp_avg_sq/layers.1.mlp.fc.weight";
  const std::string flipped = copy_tag("flipped");
  on_root([&] {
    hid_t f = H5Fopen(flipped.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dset.c_str(), H5P_DEFAULT);
    const haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    ASSERT_NE(off, HADDR_UNDEF);
    std::fstream io(flipped, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(off + 4001));
    char c = 0;
    io.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    io.seekp(static_cast<std::streamoff>(off + 4001));
    io.write(&c, 1);
  });
  std::string e = load_error(t, dir.path, "flipped");
  EXPECT_NE(e.find(flipped), std::string::npos) << e;
  EXPECT_NE(e.find(dset), std::string::npos) << e;
  EXPECT_NE(e.find("nothing was loaded"), std::string::npos) << e;
  EXPECT_TRUE(unchanged());
  EXPECT_EQ(t.global_steps(), 0);

  // a truncated file
  const std::string cut = copy_tag("truncated");
  on_root([&] { fs::resize_file(cut, fs::file_size(cut) / 2); });
  e = load_error(t, dir.path, "truncated");
  EXPECT_NE(e.find(cut), std::string::npos) << e;
  EXPECT_TRUE(unchanged());

  // an edited attribute (format_version 2 -> 99 with the attribute checksums in place): named as edited
  auto set_version = [&](const std::string& path, bool drop_crcs) {
    on_root([&] {
      hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
      hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
      int64_t v = 99;
      H5Awrite(a, H5T_NATIVE_INT64, &v);
      H5Aclose(a);
      if (drop_crcs) H5Adelete(f, io::kAttributeCrcs);
      H5Fclose(f);
    });
  };
  const std::string edited = copy_tag("edited");
  set_version(edited, false);
  e = load_error(t, dir.path, "edited");
  EXPECT_NE(e.find("the attribute 'format_version' is damaged or was edited"), std::string::npos) << e;
  EXPECT_TRUE(unchanged());

  // a newer format version (a newer deepmpi's file: what it checksums is its own business)
  const std::string newer = copy_tag("newer");
  set_version(newer, true);
  e = load_error(t, dir.path, "newer");
  EXPECT_NE(e.find("format_version 99"), std::string::npos) << e;
  EXPECT_NE(e.find("newer deepmpi"), std::string::npos) << e;

  // missing tag, missing directory
  e = load_error(t, dir.path, "global_step999");
  EXPECT_NE(e.find("global_step3"), std::string::npos) << "the error lists the tags present: " << e;
  e = load_error(t, dir.sub("nope"));
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;

  // a model of another shape
  {
    engine::Trainer other(*test::g_env, options(MPI_COMM_WORLD, cfg, 3));
    e = load_error(other, dir.path);
    EXPECT_NE(e.find("--num-layers 2 (this run: 3)"), std::string::npos) << e;
  }
  // another optimizer: refused, unless the parameters only are asked for
  {
    engine::Trainer sgd(*test::g_env, options(MPI_COMM_WORLD, config(2, "fp32", "SGD")));
    e = load_error(sgd, dir.path);
    EXPECT_NE(e.find("--no-load-optim"), std::string::npos) << e;
    EXPECT_EQ(load_error(sgd, dir.path, "", false), "");
    EXPECT_EQ(sgd.global_steps(), 3);
  }
  // an incomplete save beside the good one is ignored
  on_root([&] {
    fs::create_directories(dir.sub("global_step4.tmp"));
    std::ofstream(dir.sub("global_step4.tmp/checkpoint.h5")) << "partial";
  });
  EXPECT_EQ(load_error(t, dir.path), "");
  EXPECT_EQ(t.global_steps(), 3);
  EXPECT_FALSE(unchanged());  // now it did load
  // a crash while a save of the same tag replaced it: `latest` names a tag that was moved aside
  on_root([&] { fs::rename(dir.sub("global_step3"), dir.sub("global_step3.replaced")); });
  {
    engine::Trainer again(*test::g_env, options(MPI_COMM_WORLD, cfg));
    EXPECT_EQ(again.load_checkpoint(dir.path), "global_step3.replaced");
    EXPECT_EQ(again.global_steps(), 3);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
