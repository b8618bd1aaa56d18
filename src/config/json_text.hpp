// Reading a ds_config file's text the way DeepSpeed reads one (it uses hjson): JSON, plus
// `//`, `#` and `/* */` comments, trailing commas, members separated by a newline instead of a
// comma, unquoted keys, single-quoted strings and hjson's quoteless string values. Strings are
// kept intact (a `//` inside quotes is text). Duplicate keys are reported with both lines, as
// DeepSpeed rejects them. Nesting is bounded (kMaxDepth) so no input can overflow the stack;
// numbers outside the double range (1e309) are an error. Every error names the line and column.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dmpi::config {

struct TextProblem {
  std::string path;     // JSON path of the problem ("zero_optimization.stage")
  std::string message;  // "zero_optimization.stage: duplicate key (lines 3 and 9); ..."
};

// The deepest nesting accepted. DeepSpeed's deepest documented block (compression_training)
// nests 6 levels; anything near this limit is a broken or hostile file, not a config.
constexpr int kMaxConfigDepth = 64;

// Parses `text`. `source` names the input in errors ("'ds.json'"). A syntax error throws
// dmpi::Error("<source> line L, column C: what; fix"); duplicate keys do not stop the parse
// (the last value is kept) and are returned in `duplicates`, ordered by line.
nlohmann::json parse_config_text(const std::string& text, const std::string& source,
                                 std::vector<TextProblem>& duplicates);

// `s` shortened for a message: at most about `max` bytes, cut at a character boundary, with the
// full length named ("\"aaaa...\" (10485762 characters)").
std::string shorten(const std::string& s, size_t max = 60);

}  // namespace dmpi::config
