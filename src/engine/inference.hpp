// A trained model for single-rank inference: the model a checkpoint describes (its `model`
// attribute), with the fp32 parameters it holds, whatever dp size and ZeRO stage saved it (the
// datasets are logical tensors), each dataset's checksum checked before use.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "src/model/model.hpp"

namespace dmpi::engine {

struct LoadedModel {
  std::string path;  // the checkpoint file
  std::string tag;
  int64_t global_steps = 0;
  std::unique_ptr<model::LocalModel<float>> model;
  std::vector<std::string> notes;  // what resolving the tag noted
};

// Collective over `comm` (the checksum pass reads in balanced pieces; every rank ends with the
// whole model). tag empty: the one DIR/latest names.
LoadedModel load_for_inference(MPI_Comm comm, const std::string& dir, const std::string& tag);

}  // namespace dmpi::engine
