// The ds_config corpora (tests/data/configs): realistic configs that must resolve to values
// written by hand from DeepSpeed's rules, and broken ones whose errors must name the path and
// the fix. Plus the defaults table against DeepSpeed's documented defaults.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include "src/config/ds_config.hpp"
#include "base/error.hpp"

using namespace dmpi;
using namespace dmpi::config;
using nlohmann::json;

namespace {

const std::string kData = DEEPMPI_TEST_DATA;

json read_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return json::parse(f);
}

AutoContext context_of(const json& flags, int& dp) {
  AutoContext c;
  dp = flags.value("dp", 1);
  if (flags.contains("micro_batch")) c.micro_batch = flags["micro_batch"].get<int64_t>();
  if (flags.contains("global_batch")) c.global_batch = flags["global_batch"].get<int64_t>();
  if (flags.contains("clip_grad")) c.clip_grad = flags["clip_grad"].get<double>();
  if (flags.contains("lr")) c.lr = flags["lr"].get<double>();
  if (flags.contains("beta1")) c.beta1 = flags["beta1"].get<double>();
  if (flags.contains("beta2")) c.beta2 = flags["beta2"].get<double>();
  if (flags.contains("eps")) c.eps = flags["eps"].get<double>();
  if (flags.contains("weight_decay")) c.weight_decay = flags["weight_decay"].get<double>();
  if (flags.contains("warmup_iters")) c.warmup_iters = flags["warmup_iters"].get<int64_t>();
  if (flags.contains("train_iters")) c.train_iters = flags["train_iters"].get<int64_t>();
  if (flags.contains("hidden")) c.hidden = flags["hidden"].get<int64_t>();
  c.fp16 = flags.value("fp16", false);
  c.bf16 = flags.value("bf16", false);
  // Megatron's optimizer and schedule flags
  if (flags.contains("optimizer")) c.optimizer = flags["optimizer"].get<std::string>();
  if (flags.contains("sgd_momentum")) c.sgd_momentum = flags["sgd_momentum"].get<double>();
  if (flags.contains("min_lr")) c.min_lr = flags["min_lr"].get<double>();
  if (flags.contains("lr_decay_style")) c.lr_decay_style = flags["lr_decay_style"].get<std::string>();
  if (flags.contains("lr_warmup_fraction")) c.lr_warmup_fraction = flags["lr_warmup_fraction"].get<double>();
  if (flags.contains("lr_warmup_init")) c.lr_warmup_init = flags["lr_warmup_init"].get<double>();
  if (flags.contains("lr_decay_iters")) c.lr_decay_iters = flags["lr_decay_iters"].get<int64_t>();
  if (flags.contains("lr_wsd_decay_style")) c.lr_wsd_decay_style = flags["lr_wsd_decay_style"].get<std::string>();
  if (flags.contains("lr_wsd_decay_iters")) c.lr_wsd_decay_iters = flags["lr_wsd_decay_iters"].get<int64_t>();
  if (flags.contains("start_weight_decay")) c.start_weight_decay = flags["start_weight_decay"].get<double>();
  if (flags.contains("end_weight_decay")) c.end_weight_decay = flags["end_weight_decay"].get<double>();
  if (flags.contains("weight_decay_incr_style")) c.weight_decay_incr_style = flags["weight_decay_incr_style"].get<std::string>();
  c.strict = flags.value("strict", false);
  return c;
}

const json* at_path(const json& j, const std::string& path) {
  const json* cur = &j;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (!cur->is_object() || !cur->contains(part)) return nullptr;
    cur = &cur->at(part);
  }
  return cur;
}

bool same(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    return x == y || std::fabs(x - y) <= 1e-12 * std::max(std::fabs(x), std::fabs(y));
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!same(a[i], b[i])) return false;
    return true;
  }
  return a == b;
}

size_t count(const std::string& s, const std::string& sub) {
  size_t n = 0;
  for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + 1)) ++n;
  return n;
}

// Calls fn(name, path, manifest entry) for each config of dir; checks that every file has an
// entry and every entry a file, and that the corpus holds at least 30 configs.
template <class Fn>
void for_each_config(const std::string& dir, Fn fn) {
  json manifest = read_json(dir + "/manifest.json");
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name == "manifest.json") continue;
    ++files;
    if (!manifest.contains(name)) {
      ADD_FAILURE() << name << " has no entry in " << dir << "/manifest.json";
      continue;
    }
    fn(name, entry.path().string(), manifest[name]);
  }
  EXPECT_GE(files, 30u);
  EXPECT_EQ(files, manifest.size() - 1);  // every entry (but "_about") has its file
}

}  // namespace

TEST(ConfigCorpus, RealisticConfigsResolveAsDeepSpeedWould) {
  for_each_config(kData + "/configs/good", [](const std::string& name, const std::string& path, const json& m) {
    int dp = 1;
    AutoContext ctx = context_of(m["flags"], dp);
    DsConfig c;
    try {
      c = load_ds_config(path, dp, ctx);
    } catch (const Error& e) {
      ADD_FAILURE() << name << " failed to parse: " << e.what();
      return;
    }
    const json r = c.resolved();
    for (auto it = m["expect"].begin(); it != m["expect"].end(); ++it) {
      const json* v = at_path(r, it.key());
      if (!v) {
        ADD_FAILURE() << name << ": resolved config has no " << it.key();
        continue;
      }
      EXPECT_TRUE(same(*v, it.value())) << name << ": " << it.key() << " = " << v->dump() << ", expected "
                                        << it.value().dump();
    }
    auto refused = unimplemented_for_training(c);
    std::string all;
    for (const auto& s : refused) all += s + "\n";
    EXPECT_EQ(refused.size(), m["refused"].size()) << name << " refused:\n" << all;
    for (const auto& want : m["refused"]) EXPECT_NE(all.find(want.get<std::string>()), std::string::npos) << name << ": " << want << " in\n" << all;
    std::string warns, notes;
    for (const auto& w : c.warnings) warns += w + "\n";
    for (const auto& n : c.notes) notes += n + "\n";
    for (const auto& want : m.value("warnings", json::array()))
      EXPECT_NE(warns.find(want.get<std::string>()), std::string::npos) << name << ": warning " << want << " in\n" << warns;
    for (const auto& want : m.value("notes", json::array()))
      EXPECT_NE(notes.find(want.get<std::string>()), std::string::npos) << name << ": note " << want << " in\n" << notes;
    for (const auto& want : m.value("source", json::array()))
      EXPECT_NE(c.optimizer_source.find(want.get<std::string>()), std::string::npos)
          << name << ": optimizer source " << want << " in\n" << c.optimizer_source;
    for (const auto& bad : m.value("absent", json::array()))
      EXPECT_EQ((warns + notes).find(bad.get<std::string>()), std::string::npos) << name << ": " << bad << " in\n" << warns << notes;
    EXPECT_FALSE(c.optimizer_source.empty()) << name << ": the banner must say where the optimizer came from";
  });
}

TEST(ConfigCorpus, BrokenConfigsNamePathAndFix) {
  for_each_config(kData + "/configs/bad", [](const std::string& name, const std::string& path, const json& m) {
    std::string what;
    try {
      load_ds_config(path, m.value("dp", 1));
    } catch (const Error& e) {
      what = e.what();
    }
    if (what.empty()) {
      ADD_FAILURE() << name << " was accepted";
      return;
    }
    EXPECT_NE(what.find(name), std::string::npos) << "the error names the file: " << what;
    const size_t n = m["count"].get<size_t>();
    EXPECT_EQ(count(what, "\n  - "), n) << name << ": " << what;
    EXPECT_NE(what.find(std::to_string(n) + (n == 1 ? " error in" : " errors in")), std::string::npos) << what;
    for (const auto& want : m["errors"]) EXPECT_NE(what.find(want.get<std::string>()), std::string::npos) << name << ": " << want << "\nin: " << what;
    for (const auto& bad : m.value("absent", json::array()))
      EXPECT_EQ(what.find(bad.get<std::string>()), std::string::npos) << name << ": " << bad << "\nin: " << what;
    // every problem once, ordered by its JSON path; no source location, no JSON-library exception id
    std::vector<std::string> paths;
    for (size_t p = what.find("\n  - "); p != std::string::npos; p = what.find("\n  - ", p + 1)) {
      const std::string line = what.substr(p + 5, what.find('\n', p + 5) - (p + 5));
      paths.push_back(line.substr(0, std::min(line.find(": "), line.find(" = "))));
    }
    EXPECT_TRUE(std::is_sorted(paths.begin(), paths.end())) << name << ": not ordered by path: " << what;
    EXPECT_EQ(std::set<std::string>(paths.begin(), paths.end()).size(), paths.size()) << name << ": a path twice: " << what;
    EXPECT_EQ(what.find(".cpp:"), std::string::npos) << what;
    EXPECT_EQ(what.find("json.exception"), std::string::npos) << what;
  });
}

TEST(ConfigDefaults, TableMatchesDeepSpeedsDocumentedDefaults) {
  std::map<std::string, std::string> v;  // "path [context]" -> value
  for (const auto& r : default_table()) v[r.context.empty() ? r.path : r.path + " [" + r.context + "]"] = r.value;
  // DeepSpeed's defaults (semantics doc §1), written here by hand.
  const std::pair<const char*, const char*> expected[] = {
      {"gradient_clipping", "1.0"},
      {"steps_per_print", "10"},
      {"zero_optimization.stage", "0"},
      {"zero_optimization.reduce_bucket_size", "500000000"},
      {"zero_optimization.allgather_bucket_size", "500000000"},
      {"zero_optimization.stage3_prefetch_bucket_size", "50000000"},
      {"zero_optimization.stage3_param_persistence_threshold", "100000"},
      {"zero_optimization.stage3_max_live_parameters", "1000000000"},
      {"zero_optimization.stage3_max_reuse_distance", "1000000000"},
      {"zero_optimization.sub_group_size", "1000000000"},
      {"zero_optimization.contiguous_gradients", "true"},
      {"zero_optimization.offload_optimizer.device", "\"none\""},
      {"zero_optimization.offload_optimizer.buffer_count", "4"},
      {"zero_optimization.offload_param.buffer_count", "5"},
      {"zero_optimization.offload_param.buffer_size", "100000000"},
      {"zero_optimization.offload_param.max_in_cpu", "1000000000"},
      {"zero_optimization.offload_param.pin_memory", "true"},
      {"fp16.enabled", "false"},
      {"fp16.loss_scale", "0.0"},
      {"fp16.initial_scale_power", "16"},
      {"fp16.loss_scale_window", "1000"},
      {"fp16.hysteresis", "2"},
      {"fp16.consecutive_hysteresis", "false"},
      {"fp16.min_loss_scale", "1.0"},
      {"bf16.check_grad_overflow", "true"},
      {"aio.block_size", "1048576"},
      {"aio.queue_depth", "8"},
      {"aio.intra_op_parallelism", "1"},
      {"aio.overlap_events", "true"},
      {"activation_checkpointing.number_checkpoints", "null"},
      {"pipeline.stages", "\"auto\""},
      {"pipeline.partition", "\"best\""},
      {"pipeline.activation_checkpoint_interval", "0"},
      {"tensor_parallel.autotp_size", "0"},
      {"flops_profiler.profile_step", "1"},
      {"flops_profiler.module_depth", "-1"},
      {"flops_profiler.top_modules", "1"},
      {"flops_profiler.detailed", "true"},
      {"tensorboard.job_name", "\"DeepSpeedJobName\""},
      {"csv_monitor.output_path", "\"\""},
      {"wandb.project", "\"deepspeed\""},
      {"comet.samples_log_interval", "100"},
      {"checkpoint.tag_validation", "\"Warn\""},
      {"checkpoint.load_universal", "false"},
      {"comms_logger.prof_all", "true"},
      {"prescale_gradients", "false"},
      {"gradient_predivide_factor", "1.0"},
      {"communication_data_type", "null"},
      {"zero_force_ds_cpu_optimizer", "true"},
      {"managed_gradient_accumulation", "true"},
      {"optimizer.params.lr", "0.001"},
      {"optimizer.params.eps", "1e-08"},
      {"optimizer.params.adam_w_mode [optimizer.type = Adam]", "true"},
      {"optimizer.params.lr [optimizer.type = SGD]", "required"},
      {"optimizer.params.lr [optimizer.type = Adagrad]", "0.01"},
      {"optimizer.params.eps [optimizer.type = Adagrad]", "1e-10"},
      {"optimizer.params.max_coeff [optimizer.type = Lamb]", "10.0"},
      {"scheduler.params.warmup_num_steps [scheduler.type = WarmupLR]", "1000"},
      {"scheduler.params.warmup_type [scheduler.type = WarmupLR]", "\"log\""},
      {"scheduler.params.cos_min_ratio [scheduler.type = WarmupCosineLR]", "0.0001"},
      {"scheduler.params.cycle_first_step_size [scheduler.type = OneCycle]", "2000.0"},
      {"scheduler.params.cycle_min_mom [scheduler.type = OneCycle]", "0.8"},
      {"scheduler.params.lr_range_test_step_size [scheduler.type = LRRangeTest]", "2000.0"},
  };
  for (auto [key, val] : expected) {
    ASSERT_TRUE(v.count(key)) << key << " missing from the defaults table";
    EXPECT_EQ(v[key], val) << key;
  }
  EXPECT_TRUE(stale_default_notes().empty()) << stale_default_notes().front();
}

TEST(ConfigDefaults, DocsTableIsCurrent) {
  std::ifstream f(kData + "/../../docs/ds-config-defaults.md");
  ASSERT_TRUE(f.good()) << "docs/ds-config-defaults.md is missing: `deepmpi config defaults --markdown > docs/ds-config-defaults.md`";
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(), default_table_text(true))
      << "docs/ds-config-defaults.md is stale: `deepmpi config defaults --markdown > docs/ds-config-defaults.md`";
}
