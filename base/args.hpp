// Command-line flags. Megatron spells flags with dashes, DeepSpeed with underscores:
// both spellings are accepted (--deepspeed_config == --deepspeed-config). An unknown flag
// is an error naming the closest known flag.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dmpi {

struct FlagSpec {
  std::string name;        // without leading dashes, dash-separated: "num-layers"
  bool takes_value = true;
  std::string help;
  bool repeatable = false; // "--input a b c" or "--input a --input b"
};

class Args {
 public:
  Args(std::vector<FlagSpec> specs, const std::vector<std::string>& argv);

  bool has(const std::string& name) const;
  std::string str(const std::string& name, const std::string& def = "") const;
  std::vector<std::string> list(const std::string& name) const;
  int64_t integer(const std::string& name, int64_t def) const;
  double real(const std::string& name, double def) const;
  const std::vector<std::string>& positional() const { return positional_; }
  std::string usage() const;

 private:
  const FlagSpec* find(const std::string& name) const;
  std::vector<FlagSpec> specs_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

// Parses an integer that may be written as "5e8" (when integral); throws naming `what`.
int64_t parse_integer(const std::string& s, const std::string& what);
double parse_real(const std::string& s, const std::string& what);

}  // namespace dmpi
