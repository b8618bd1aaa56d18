// The TrainOptions every MPI test starts from: a quiet run of model m on comm, its ds_config
// parsed for the data-parallel size (the ranks of comm over model_ranks, tp x pp), a fixed seed,
// a nominal peak for MFU. Each test sets what it varies on top.
#pragma once
#include <mpi.h>

#include <nlohmann/json.hpp>

#include "src/engine/trainer.hpp"

namespace dmpi::test {

inline engine::TrainOptions train_options(MPI_Comm comm, const model::ModelConfig& m, const nlohmann::json& cfg,
                                          uint64_t seed, int model_ranks = 1) {
  int n = 0;
  MPI_Comm_size(comm, &n);
  engine::TrainOptions o;
  o.model = m;
  o.ds = config::parse_ds_config(cfg, n / model_ranks);
  o.seed = seed;
  o.print = false;
  o.peak_gflops = 100;
  o.world = comm;
  return o;
}

}  // namespace dmpi::test
