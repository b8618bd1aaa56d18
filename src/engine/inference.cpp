#include "src/engine/inference.hpp"

#include "base/error.hpp"
#include "io/checkpoint.hpp"

namespace dmpi::engine {

LoadedModel load_for_inference(MPI_Comm comm, const std::string& dir, const std::string& tag_in) {
  LoadedModel out;
  out.tag = io::resolve_tag(comm, dir, tag_in, &out.notes);
  out.path = io::checkpoint_path(dir, out.tag);
  io::CheckpointReader rd(comm, out.path);
  const nlohmann::json& A = rd.attrs();
  DMPI_REQUIRE(A.contains("model"), "checkpoint " << out.path << " has no model attribute: it does not say which model it holds");
  model::ModelConfig cfg;
  try {
    cfg = model::ModelConfig::from_json(A.at("model"));
    cfg.validate();
  } catch (const std::exception& e) {
    DMPI_FAIL("checkpoint " << out.path << ": its model attribute is damaged (" << e.what() << ")");
  }
  out.global_steps = A.value("global_steps", int64_t{0});
  out.model = std::make_unique<model::LocalModel<float>>(cfg, 1, cfg.seq_len);
  const model::Model<float>& m = out.model->model();
  std::vector<std::string> dsets;
  for (int t = 0; t < m.num_tensors(); ++t) {
    const model::ParamSpec& s = m.spec(t);
    const std::string d = "/params/" + s.name;
    DMPI_REQUIRE(rd.has(d), "checkpoint " << out.path << " has no dataset " << d << " (damaged, or not written by this model)");
    DMPI_REQUIRE(rd.datasets().at(d) == s.shape, "checkpoint " << out.path << ": dataset " << d << " has shape "
                                                                << nlohmann::json(rd.datasets().at(d)).dump() << ", its model's "
                                                                << s.name << " is " << nlohmann::json(s.shape).dump());
    dsets.push_back(d);
  }
  const auto bad = rd.verify(dsets);
  DMPI_REQUIRE(bad.empty(), "checkpoint " << out.path << " is damaged: the checksum (crc32c) of " << bad.front()
                                          << (bad.size() > 1 ? " and " + std::to_string(bad.size() - 1) + " more" : "")
                                          << " does not match its data; load another tag with --load-tag");
  for (int t = 0; t < m.num_tensors(); ++t)
    rd.read(dsets[static_cast<size_t>(t)], 0, m.spec(t).numel, out.model->params() + out.model->offset(t));
  return out;
}

}  // namespace dmpi::engine
