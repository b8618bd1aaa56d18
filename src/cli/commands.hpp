#pragma once
#include <string>
#include <vector>

namespace dmpi::cli {

int cmd_train(int* argc, char*** argv, const std::vector<std::string>& args);
int cmd_data(const std::vector<std::string>& args);
int cmd_config(const std::vector<std::string>& args);
std::string version_string();

}  // namespace dmpi::cli
