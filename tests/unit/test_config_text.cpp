// Reading a ds_config file as DeepSpeed does (hjson): comments, trailing commas, duplicate
// keys, bounded nesting, out-of-range numbers, and files that are not files. Every error
// names the file and the line, and never a source location or the JSON library's id.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/error.hpp"
#include "src/config/ds_config.hpp"
#include "src/config/json_text.hpp"

using namespace dmpi;
using namespace dmpi::config;
using nlohmann::json;

namespace {

bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

json parse(const std::string& text, std::vector<TextProblem>* dups_out = nullptr) {
  std::vector<TextProblem> dups;
  json j = parse_config_text(text, "'t.json'", dups);
  if (dups_out) *dups_out = dups;
  return j;
}

std::string parse_error(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A file of this test's own, removed at the end of the test.
struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& name, const std::string& text)
      : path(std::filesystem::temp_directory_path() / ("deepmpi_test_" + std::to_string(::getpid()) + "_" + name)) {
    std::ofstream(path, std::ios::binary) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

std::string load_error(const std::string& path) {
  try {
    load_ds_config(path, 1);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_clean(const std::string& msg) {
  EXPECT_FALSE(has(msg, ".cpp:")) << msg;            // no source location
  EXPECT_FALSE(has(msg, "json.exception")) << msg;   // no library exception id
  EXPECT_FALSE(has(msg, "--deepspeed_config")) << msg;
}

}  // namespace

TEST(ConfigText, JsonIsReadAsIs) {
  const std::string text = R"({"a": 1, "b": [1.5, -2, 3e2, true, false, null], "c": {"d": "x\"y\\z\u00e9"}, "e": 18446744073709551615})";
  json j = parse(text);
  EXPECT_EQ(j, json::parse(text));
  EXPECT_EQ(j["c"]["d"], "x\"y\\z\xc3\xa9");
  EXPECT_TRUE(j["b"][0].is_number_float());
  EXPECT_TRUE(j["a"].is_number_integer());
}

TEST(ConfigText, HjsonCommentsTrailingCommasAndStringsIntact) {
  json j = parse(R"(// a line comment
# a hash comment
{
  /* a block
     comment */ "train_micro_batch_size_per_gpu": 2,   // after a value
  "wandb": {"project": "a//b#c/*d*/e", "team": "x, y"},  # after a value
  "list": [1, 2, 3,],
  "zero_optimization": {"stage": 1,},
})");
  EXPECT_EQ(j["train_micro_batch_size_per_gpu"], 2);
  EXPECT_EQ(j["wandb"]["project"], "a//b#c/*d*/e");  // comment markers inside a string are text
  EXPECT_EQ(j["wandb"]["team"], "x, y");
  EXPECT_EQ(j["list"], json::array({1, 2, 3}));
  EXPECT_EQ(j["zero_optimization"]["stage"], 1);
}

TEST(ConfigText, HjsonNewlinesUnquotedKeysAndValues) {
  json j = parse("{\n  stage: 3\n  device: cpu\n  'quoted': 'it\\'s'\n  ratio: 0.5 # comment\n  on: true\n}");
  EXPECT_EQ(j["stage"], 3);             // commas are optional between lines
  EXPECT_EQ(j["device"], "cpu");        // a quoteless string runs to the end of the line
  EXPECT_EQ(j["quoted"], "it's");       // single-quoted strings
  EXPECT_DOUBLE_EQ(j["ratio"].get<double>(), 0.5);
  EXPECT_EQ(j["on"], true);
}

TEST(ConfigText, DuplicateKeysNameBothLines) {
  std::vector<TextProblem> dups;
  parse("{\n \"zero_optimization\": {\n  \"stage\": 1,\n  \"stage\": 2\n },\n \"seed\": 1,\n \"seed\": 2\n}", &dups);
  ASSERT_EQ(dups.size(), 2u);
  EXPECT_EQ(dups[0].path, "zero_optimization.stage");
  EXPECT_TRUE(has(dups[0].message, "zero_optimization.stage: duplicate key (line 3 and line 4)")) << dups[0].message;
  EXPECT_TRUE(has(dups[1].message, "seed: duplicate key (line 6 and line 7)")) << dups[1].message;
  // through the config reader: an error of the file, with the others, not a stop
  TempFile f("dup.json", "{\"train_micro_batch_size_per_gpu\": 2,\n\"train_micro_batch_size_per_gpu\": 2,\n\"optimzer\": {}}");
  std::string w = load_error(f.path.string());
  EXPECT_TRUE(has(w, "2 errors in the ds_config")) << w;
  EXPECT_TRUE(has(w, "train_micro_batch_size_per_gpu: duplicate key (line 1 and line 2)")) << w;
  EXPECT_TRUE(has(w, "optimzer: unknown key; did you mean 'optimizer'?")) << w;
}

TEST(ConfigText, SyntaxErrorsNameLineAndColumn) {
  struct Case {
    const char* text;
    const char* want;
  } cases[] = {
      {"{\"a\": 1,\n \"b\" 2}", "'t.json' line 2, column 6: expected ':' after the key \"b\""},
      {"{\"a\": [1, 2}", "line 1, column 12: expected ',' or ']'"},
      {"{\"a\": \"open\n}", "line 1, column 7: this string is not closed"},
      {"{\"a\": 1 /* never closed", "a /* comment is not closed"},
      {"{\"a\": {\"b\": 1}", "line 1, column 1: this '{' is not closed"},
      {"", "the file is empty"},
      {"[1, 2]", "expected '{'"},
      {"{\"a\": 1} {\"b\": 2}", "after the closing '}'"},
      {"{\"a\": ,}", "expected a value for a, got ','"},
      {"{\"a\": \"\\q\"}", "unknown escape \\q"},
      {"{\"a\": \"\xff\"}", "invalid UTF-8"},
      {"{\"a\": 1,, \"b\": 2}", "two commas in a row"},
  };
  for (const auto& c : cases) {
    std::string w = parse_error(c.text);
    EXPECT_TRUE(has(w, c.want)) << c.text << "\n -> " << w;
    expect_clean(w);
  }
  // a missing comma between members on one line: hjson reads "2 "x": 1}" as text, and the
  // error at the end names that value
  std::string w = parse_error("{\"train_micro_batch_size_per_gpu\": 2 \"x\": 1}");
  EXPECT_TRUE(has(w, "the unquoted value 2 \"x\": 1} of train_micro_batch_size_per_gpu")) << w;
  EXPECT_TRUE(has(w, "a comma is probably missing")) << w;
}

TEST(ConfigText, NumbersOutOfRange) {
  std::string w = parse_error("{\n  \"train_batch_size\": 8,\n  \"seed\": 1e309\n}");
  EXPECT_TRUE(has(w, "'t.json' line 3, column 11: the number 1e309 (seed) is too large")) << w;
  EXPECT_TRUE(has(parse_error("{\"a\": -1e400}"), "too large")) << parse_error("{\"a\": -1e400}");
  // an integer beyond 64 bits is a double; underflow is 0 (as Python reads it)
  json j = parse("{\"a\": 123456789012345678901234567890, \"b\": 1e-400}");
  EXPECT_DOUBLE_EQ(j["a"].get<double>(), 1.2345678901234568e29);
  EXPECT_EQ(j["b"].get<double>(), 0.0);
}

TEST(ConfigText, DeepNestingIsAnErrorNotACrash) {
  // the issue's two shapes: objects 100,000 deep inside zero_optimization, arrays 1,000,000 deep
  std::string objs = "{\"zero_optimization\": ";
  for (int i = 0; i < 100000; ++i) objs += "{\"a\": ";
  objs += "1";
  objs += std::string(100000, '}') + "}";
  std::string w = parse_error(objs);
  EXPECT_TRUE(has(w, "nested deeper than 64 levels at zero_optimization.a.a.a")) << w.substr(0, 300);
  EXPECT_LT(w.size(), 400u) << "the path in the message is shortened";
  const std::string arrs = "{\"zero_optimization\": " + std::string(1000000, '[') + std::string(1000000, ']') + "}";
  w = parse_error(arrs);
  EXPECT_TRUE(has(w, "nested deeper than 64 levels")) << w.substr(0, 300);
  // a generated 1,000,000-deep file through the whole reader
  TempFile f("deep.json", arrs);
  w = load_error(f.path.string());
  EXPECT_TRUE(has(w, "deep.json' line 1, column")) << w.substr(0, 300);
  expect_clean(w);
  // 64 levels are still read
  std::string ok = "{\"x\": " + std::string(63, '[') + std::string(63, ']') + "}";
  EXPECT_NO_THROW(parse(ok));
  EXPECT_TRUE(has(parse_error("{\"x\": " + std::string(64, '[') + std::string(64, ']') + "}"), "deeper than 64"));
}

TEST(ConfigText, FilesThatAreNotConfigFiles) {
  const auto dir = std::filesystem::temp_directory_path();
  std::string w = load_error(dir.string());
  EXPECT_TRUE(has(w, "is a directory, not a file")) << w;
  expect_clean(w);
  w = load_error((dir / "deepmpi_no_such_config.json").string());
  EXPECT_TRUE(has(w, "does not exist")) << w;
  TempFile f("syntax.json", "{\"train_micro_batch_size_per_gpu\": 2,\n  \"zero_optimization\": {\"stage\" 1}}");
  w = load_error(f.path.string());
  EXPECT_TRUE(has(w, "syntax.json' line 2, column 33: expected ':' after the key \"stage\"")) << w;
  expect_clean(w);
}

TEST(ConfigText, LongValuesAreShortenedInMessages) {
  const std::string big(10 * 1024 * 1024, 'x');
  TempFile f("big.json", "{\"train_micro_batch_size_per_gpu\": \"" + big + "\", \"" + big + "\": 1, \"zero_optimization\": {\"" +
                             big + "\": 2}}");
  std::string w = load_error(f.path.string());
  EXPECT_TRUE(has(w, "train_micro_batch_size_per_gpu: expected an integer, got \"xxxx")) << w.substr(0, 500);
  EXPECT_TRUE(has(w, "(10485762 characters)")) << w.substr(0, 500);  // the value, quotes included
  EXPECT_TRUE(has(w, "(10485760 characters)")) << w.substr(0, 500);  // the keys
  EXPECT_LT(w.size(), 2000u) << "a 10 MB value or key is not copied into the message";
  EXPECT_EQ(shorten("short"), "short");
  EXPECT_EQ(shorten(std::string(100, 'a'), 60), std::string(40, 'a') + "... (100 characters)");
}
