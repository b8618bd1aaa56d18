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
  Args a({{"input", true, "text files (UTF-8); each becomes one document", true},
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
  std::vector<uint32_t> tokens;
  std::vector<uint64_t> docs;
  for (const auto& path : inputs) {
    std::ifstream f(path, std::ios::binary);
    DMPI_CLI_REQUIRE(f.good(), "cannot open --input '" << path << "'");
    std::stringstream ss;
    ss << f.rdbuf();
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
                inputs.size(), io::ByteTokenizer::kVocab);
  } else {
    io::write_megatron_dataset(out, tokens, docs, io::ByteTokenizer::kVocab);
    std::printf("wrote %s.bin + %s.idx (Megatron MMIDIDX): %zu tokens in %zu documents (byte-level, vocab %u)\n",
                out.c_str(), out.c_str(), tokens.size(), docs.size(), io::ByteTokenizer::kVocab);
  }
  return 0;
}

}  // namespace dmpi::cli
