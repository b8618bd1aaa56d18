#pragma once
#include <sstream>
#include <string>
#include <vector>

#include "src/config/ds_config.hpp"
#include "src/model/config.hpp"
#include "base/args.hpp"

// A user's mistake on the command line: the message names the flag and the fix, never a source
// location (DMPI_REQUIRE's file:line is for the program's own invariants).
#define DMPI_CLI_REQUIRE(cond, msg_expr)      \
  do {                                        \
    if (!(cond)) {                            \
      std::ostringstream cli_os_;             \
      cli_os_ << msg_expr;                    \
      throw ::dmpi::Error(cli_os_.str());     \
    }                                         \
  } while (0)

namespace dmpi::cli {

// Exit statuses (README "ds_config.json"): 0 success; 1 errors (a config's, a flag's, a run's);
// 2 no or an unknown command; 3 a valid config asking for what this build does not implement.
constexpr int kExitErrors = 1;
constexpr int kExitNotImplemented = 3;
constexpr int64_t kDefaultTrainIters = 20;  // deepmpi train's --train-iters default

int cmd_train(int* argc, char*** argv, const std::vector<std::string>& args);
int cmd_data(const std::vector<std::string>& args);
int cmd_config(const std::vector<std::string>& args);
int cmd_report(int* argc, char*** argv, const std::vector<std::string>& args);
int cmd_checkpoint(int* argc, char*** argv, const std::vector<std::string>& args);
int cmd_generate(int* argc, char*** argv, const std::vector<std::string>& args);
std::string version_string();

// The --model preset; an unknown name is the user's error (the presets named, no source location).
model::ModelConfig model_preset(const std::string& name);

// Megatron-style flags that resolve "auto" in the ds_config (config::AutoContext).
std::vector<FlagSpec> auto_flags();
config::AutoContext auto_context(const Args& a);

}  // namespace dmpi::cli
