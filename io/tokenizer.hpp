// The built-in byte-level tokenizer: each byte of UTF-8 text is one token (0..255); an
// end-of-document token (256) follows every input file. Vocabulary size 257.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dmpi::io {

struct ByteTokenizer {
  static constexpr uint32_t kEod = 256;
  static constexpr uint32_t kVocab = 257;
  static std::vector<uint32_t> encode(const std::string& text);
  static std::string decode(const std::vector<uint32_t>& tokens);  // EOD -> "\n<|eod|>\n"
};

}  // namespace dmpi::io
