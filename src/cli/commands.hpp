#pragma once
#include <string>
#include <vector>

#include "src/config/ds_config.hpp"
#include "base/args.hpp"

namespace dmpi::cli {

int cmd_train(int* argc, char*** argv, const std::vector<std::string>& args);
int cmd_data(const std::vector<std::string>& args);
int cmd_config(const std::vector<std::string>& args);
int cmd_report(int* argc, char*** argv, const std::vector<std::string>& args);
int cmd_checkpoint(int* argc, char*** argv, const std::vector<std::string>& args);
std::string version_string();

// Megatron-style flags that resolve "auto" in the ds_config (config::AutoContext).
std::vector<FlagSpec> auto_flags();
config::AutoContext auto_context(const Args& a);

}  // namespace dmpi::cli
