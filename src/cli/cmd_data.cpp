#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/token_dataset.hpp"
#include "io/tokenizer.hpp"
#include "src/cli/commands.hpp"
#include "base/args.hpp"
#include "base/error.hpp"

namespace dmpi::cli {

int cmd_data(const std::vector<std::string>& argl) {
  DMPI_CLI_REQUIRE(!argl.empty() && argl[0] == "prepare",
               "usage: deepmpi data prepare --input FILE... --output PREFIX [--format deepmpi|megatron]");
  std::vector<std::string> rest(argl.begin() + 1, argl.end());
  Args a({{"input", true, "text files (UTF-8), or folders of them; each file becomes one document", true},
          {"output", true, "output prefix: writes PREFIX.tokens (or PREFIX.bin + PREFIX.idx)"},
          {"format", true, "deepmpi (default) | megatron"},
          {"help", false, "show this help"}},
         rest);
  if (a.has("help")) {
    std::printf("usage: deepmpi data prepare --input FILE... --output PREFIX\n\n%s", a.usage().c_str());
    return 0;
  }
  auto inputs = a.list("input");
  DMPI_CLI_REQUIRE(!inputs.empty(), "deepmpi data prepare: --input FILE... is required");
  DMPI_CLI_REQUIRE(a.has("output"), "deepmpi data prepare: --output PREFIX is required");
  std::string format = a.str("format", "deepmpi");
  DMPI_CLI_REQUIRE(format == "deepmpi" || format == "megatron",
               "--format must be 'deepmpi' or 'megatron' (got '" << format << "')");
  // a folder stands for the regular files directly in it (links followed), in name order
  std::vector<std::string> files;
  for (const auto& path : inputs) {
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec)) {
      files.push_back(path);
      continue;
    }
    std::vector<std::string> in_dir;
    for (const auto& e : std::filesystem::directory_iterator(path, ec))
      if (std::filesystem::is_regular_file(e.path())) in_dir.push_back(e.path().string());
    DMPI_CLI_REQUIRE(!ec, "cannot list the --input folder '" << path << "': " << ec.message());
    DMPI_CLI_REQUIRE(!in_dir.empty(), "the --input folder '" << path << "' has no files in it (subfolders are not read)");
    std::sort(in_dir.begin(), in_dir.end());
    files.insert(files.end(), in_dir.begin(), in_dir.end());
  }
  std::vector<uint32_t> tokens;
  std::vector<uint64_t> docs;
  for (const auto& path : files) {
    std::ifstream f(path, std::ios::binary);
    DMPI_CLI_REQUIRE(f.good(), "cannot open --input '" << path << "'");
    std::stringstream ss;
    ss << f.rdbuf();
    DMPI_CLI_REQUIRE(!f.bad(), "cannot read --input '" << path << "'");
    auto t = io::ByteTokenizer::encode(ss.str());
    t.push_back(io::ByteTokenizer::kEod);
    docs.push_back(t.size());
    tokens.insert(tokens.end(), t.begin(), t.end());
  }
  const std::string out = a.str("output");
  // the output prefix's folder is created (as Megatron's preprocess_data does with its prefix)
  if (const auto parent = std::filesystem::path(out).parent_path(); !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    DMPI_CLI_REQUIRE(!ec, "cannot create the --output folder '" << parent.string() << "': " << ec.message());
  }
  if (format == "deepmpi") {
    io::write_token_file(out + ".tokens", tokens, io::ByteTokenizer::kVocab);
    std::printf("wrote %s.tokens: %zu tokens from %zu files (byte-level, vocab %u)\n", out.c_str(), tokens.size(),
                files.size(), io::ByteTokenizer::kVocab);
  } else {
    io::write_megatron_dataset(out, tokens, docs, io::ByteTokenizer::kVocab);
    std::printf("wrote %s.bin + %s.idx (Megatron MMIDIDX): %zu tokens in %zu documents (byte-level, vocab %u)\n",
                out.c_str(), out.c_str(), tokens.size(), docs.size(), io::ByteTokenizer::kVocab);
  }
  return 0;
}

}  // namespace dmpi::cli
