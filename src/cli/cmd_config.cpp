#include <cstdio>

#include "src/cli/commands.hpp"
#include "src/config/ds_config.hpp"
#include "src/util/args.hpp"
#include "src/util/error.hpp"

namespace dmpi::cli {

// deepmpi config check FILE [--data-parallel-size N]: validates a ds_config as `deepmpi train`
// would for N data-parallel ranks; prints the resolved config (every default filled in) as
// JSON, or every error with a non-zero exit.
// deepmpi config defaults: the values deepmpi uses for keys a config leaves out.
int cmd_config(const std::vector<std::string>& argl) {
  const char* usage =
      "usage: deepmpi config check FILE [--data-parallel-size N]\n"
      "       deepmpi config defaults\n";
  DMPI_REQUIRE(!argl.empty() && (argl[0] == "check" || argl[0] == "defaults"), usage);
  std::vector<std::string> rest(argl.begin() + 1, argl.end());
  Args a({{"data-parallel-size", true, "data-parallel size W of the batch triangle (default 1)"},
          {"help", false, "show this help"}},
         rest);
  if (a.has("help")) {
    std::printf("%s\n%s", usage, a.usage().c_str());
    return 0;
  }
  if (argl[0] == "defaults") {
    // A config that sets only the required batch key: everything else is a default.
    auto c = config::parse_ds_config(nlohmann::json{{"train_micro_batch_size_per_gpu", 1}}, 1);
    auto j = c.resolved();
    j.erase("train_batch_size");
    j.erase("gradient_accumulation_steps");
    j["train_micro_batch_size_per_gpu"] = "required (or train_batch_size)";
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  DMPI_REQUIRE(a.positional().size() == 1, "deepmpi config check: give exactly one FILE\n" << usage);
  const int64_t dp = a.integer("data-parallel-size", 1);
  DMPI_REQUIRE(dp >= 1 && dp <= (1 << 24), "--data-parallel-size must be >= 1 (got " << dp << ")");
  auto c = config::load_ds_config(a.positional()[0], static_cast<int>(dp));
  for (const auto& w : c.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::printf("%s\n", c.resolved().dump(2).c_str());
  return 0;
}

}  // namespace dmpi::cli
