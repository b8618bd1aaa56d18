#include "io/tokenizer.hpp"

namespace dmpi::io {

std::vector<uint32_t> ByteTokenizer::encode(const std::string& text) {
  std::vector<uint32_t> out;
  out.reserve(text.size());
  for (unsigned char c : text) out.push_back(c);
  return out;
}

std::string ByteTokenizer::decode(const std::vector<uint32_t>& tokens) {
  std::string s;
  for (auto t : tokens) {
    if (t < 256) s.push_back(static_cast<char>(t));
    else if (t == kEod) s += "\n<|eod|>\n";
    else s += "<?>";
  }
  return s;
}

}  // namespace dmpi::io
