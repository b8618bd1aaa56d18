// Token datasets (format: docs/token-format.md).
//   * deepmpi token file PREFIX.tokens: 64-byte header (magic "DMPITOK\0", version, token
//     width, vocab size, count) + uint16/uint32 tokens, memory-mapped.
//   * Megatron-LM indexed dataset PREFIX.bin + PREFIX.idx (MMIDIDX, version 1).
//   * mock data: deterministic pseudo-random tokens from a seed (Megatron's --mock-data).
// Every token is checked against the vocabulary when a file is opened; a bad or truncated
// file is an error naming the file and what is wrong.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dmpi::io {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual size_t size() const = 0;                       // tokens available
  virtual void read(size_t pos, size_t n, int32_t* out) const = 0;
  virtual std::string describe() const = 0;
};

std::unique_ptr<TokenSource> make_mock_source(uint64_t seed, int vocab);
// Opens PREFIX.tokens, PREFIX itself (a .tokens file), or PREFIX.bin + PREFIX.idx.
std::unique_ptr<TokenSource> open_token_source(const std::string& prefix, int model_vocab);

// Writers. Both refuse to overwrite existing files and write via a temporary + rename.
struct TokenFileHeader {
  static constexpr char kMagic[8] = {'D', 'M', 'P', 'I', 'T', 'O', 'K', '\0'};
  static constexpr uint32_t kVersion = 1;
};
void write_token_file(const std::string& path, const std::vector<uint32_t>& tokens, uint64_t vocab);
// documents: token counts per document, in order; tokens is their concatenation.
void write_megatron_dataset(const std::string& prefix, const std::vector<uint32_t>& tokens,
                            const std::vector<uint64_t>& document_lengths, uint64_t vocab);

// Fixed-window sampler: sample g is the window starting at (g mod W) * T, where
// W = (size - 1) / T; tokens = src[start, start+T), targets = src[start+1, start+T+1).
class BatchLoader {
 public:
  BatchLoader(const TokenSource& src, int B, int T);
  // Fills B samples starting at global sample index `first_sample`.
  void load(uint64_t first_sample, int32_t* tokens, int32_t* targets) const;
  uint64_t num_windows() const { return windows_; }

 private:
  const TokenSource& src_;
  int B_, T_;
  uint64_t windows_;
};

}  // namespace dmpi::io
