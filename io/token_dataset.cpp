#include "io/token_dataset.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.hpp"
#include "base/rng.hpp"

namespace dmpi::io {

namespace fs = std::filesystem;

namespace {

class MockSource final : public TokenSource {
 public:
  MockSource(uint64_t seed, int vocab) : seed_(splitmix64(seed ^ 0x6d6f636bull)), vocab_(vocab) {}
  size_t size() const override { return size_t{1} << 62; }
  void read(size_t pos, size_t n, int32_t* out) const override {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(splitmix64(seed_ ^ (pos + i)) % vocab_);
  }
  std::string describe() const override { return "mock data (deterministic random tokens, vocab " + std::to_string(vocab_) + ")"; }

 private:
  uint64_t seed_;
  uint64_t vocab_;
};

// A read-only memory map of a whole file.
class Mapping {
 public:
  explicit Mapping(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    DMPI_REQUIRE(fd >= 0, "cannot open '" << path << "': " << std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      DMPI_FAIL("cannot stat '" << path << "': " << std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      DMPI_FAIL("'" << path << "' is " << (S_ISDIR(st.st_mode) ? "a directory" : "not a regular file")
                    << ", not a token file (--data-path takes the prefix of PREFIX.tokens, or of Megatron's "
                       "PREFIX.bin + PREFIX.idx)");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      int e = errno;
      ::close(fd);
      DMPI_REQUIRE(p != MAP_FAILED, "cannot mmap '" << path << "': " << std::strerror(e));
      data_ = static_cast<const uint8_t*>(p);
    } else {
      ::close(fd);
    }
  }
  ~Mapping() {
    if (data_) munmap(const_cast<uint8_t*>(data_), size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Tokens of width 1, 2, 4 (unsigned) or 4, 8 (signed), starting `offset` bytes into a mapping.
class MappedSource final : public TokenSource {
 public:
  MappedSource(std::unique_ptr<Mapping> m, size_t offset, size_t count, int width, bool is_signed, std::string what)
      : m_(std::move(m)), base_(m_->data() + offset), count_(count), width_(width), signed_(is_signed),
        what_(std::move(what)) {}
  size_t size() const override { return count_; }
  int64_t at(size_t i) const {
    const uint8_t* p = base_ + i * static_cast<size_t>(width_);
    switch (width_) {
      case 1: return *p;
      case 2: { uint16_t v; std::memcpy(&v, p, 2); return v; }
      case 4: {
        if (signed_) { int32_t v; std::memcpy(&v, p, 4); return v; }
        uint32_t v; std::memcpy(&v, p, 4); return v;
      }
      default: { int64_t v; std::memcpy(&v, p, 8); return v; }
    }
  }
  void read(size_t pos, size_t n, int32_t* out) const override {
    DMPI_REQUIRE(pos + n <= count_, "read past the end of " << what_);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(at(pos + i));
  }
  // Checks every token against [0, vocab); reports one offending position.
  void validate(int64_t vocab, const std::string& fix) const {
    int64_t bad_pos = -1, bad_val = 0;
#pragma omp parallel for schedule(static) reduction(max : bad_pos)
    for (size_t i = 0; i < count_; ++i) {
      int64_t v = at(i);
      if (v < 0 || v >= vocab) bad_pos = std::max<int64_t>(bad_pos, static_cast<int64_t>(i));
    }
    if (bad_pos >= 0) {
      bad_val = at(static_cast<size_t>(bad_pos));
      DMPI_FAIL(what_ << ": token " << bad_val << " at position " << bad_pos << " is outside the vocabulary [0, "
                      << vocab << "); " << fix);
    }
  }
  std::string describe() const override { return what_; }

 private:
  std::unique_ptr<Mapping> m_;
  const uint8_t* base_;
  size_t count_;
  int width_;
  bool signed_;
  std::string what_;
};

struct RawHeader {
  char magic[8];
  uint32_t version;
  uint32_t token_bytes;
  uint64_t vocab_size;
  uint64_t count;
  uint8_t reserved[32];
};
static_assert(sizeof(RawHeader) == 64);

std::unique_ptr<TokenSource> open_deepmpi_tokens(const std::string& path, int model_vocab) {
  auto m = std::make_unique<Mapping>(path);
  DMPI_REQUIRE(m->size() >= sizeof(RawHeader),
               "'" << path << "' is too small (" << m->size() << " bytes) to be a deepmpi token file (64-byte header)");
  RawHeader h;
  std::memcpy(&h, m->data(), sizeof(h));
  DMPI_REQUIRE(std::memcmp(h.magic, TokenFileHeader::kMagic, 8) == 0,
               "'" << path << "' is not a deepmpi token file (bad magic); make one with `deepmpi data prepare`");
  DMPI_REQUIRE(h.version == TokenFileHeader::kVersion,
               "'" << path << "' has token-format version " << h.version << "; this deepmpi reads version "
                   << TokenFileHeader::kVersion);
  DMPI_REQUIRE(h.token_bytes == 2 || h.token_bytes == 4,
               "'" << path << "': token width " << h.token_bytes << " bytes is invalid (2 or 4)");
  // compared by division: count * token_bytes overflows for a damaged count (2^63 gave "64 bytes")
  const size_t body = m->size() - sizeof(RawHeader);
  DMPI_REQUIRE(h.count <= body / h.token_bytes && h.count * h.token_bytes == body,
               "'" << path << "' is truncated or padded: header says " << h.count << " tokens of " << h.token_bytes
                   << " bytes, the file has " << body << " bytes after its 64-byte header (room for "
                   << body / h.token_bytes << " tokens)");
  DMPI_REQUIRE(h.vocab_size >= 1, "'" << path << "': vocab size 0 in header");
  DMPI_REQUIRE(static_cast<int64_t>(h.vocab_size) <= model_vocab,
               "'" << path << "' was tokenized with vocab size " << h.vocab_size << " but the model has --vocab-size "
                   << model_vocab << "; pass --vocab-size " << h.vocab_size << " or larger");
  std::string what = "'" + path + "' (" + std::to_string(h.count) + " tokens, uint" + std::to_string(8 * h.token_bytes) +
                     ", vocab " + std::to_string(h.vocab_size) + ")";
  auto src = std::make_unique<MappedSource>(std::move(m), sizeof(RawHeader), h.count, static_cast<int>(h.token_bytes),
                                            false, what);
  src->validate(static_cast<int64_t>(h.vocab_size), "the file is corrupt (its header says vocab " +
                                                        std::to_string(h.vocab_size) + ")");
  return src;
}

// Megatron-LM MMIDIDX: "MMIDIDX\0\0", u64 version (1), u8 dtype code, u64 sequence count,
// u64 document count, i32 lengths[seq], i64 byte pointers[seq], i64 document index[doc].
std::unique_ptr<TokenSource> open_megatron(const std::string& prefix, int model_vocab) {
  const std::string idx = prefix + ".idx", bin = prefix + ".bin";
  Mapping im(idx);
  const uint8_t* p = im.data();
  const size_t hdr = 9 + 8 + 1 + 8 + 8;
  DMPI_REQUIRE(im.size() >= hdr, "'" << idx << "' is too small to be a Megatron index (MMIDIDX)");
  DMPI_REQUIRE(std::memcmp(p, "MMIDIDX\0\0", 9) == 0, "'" << idx << "' is not a Megatron MMIDIDX index (bad magic)");
  uint64_t version, nseq, ndoc;
  std::memcpy(&version, p + 9, 8);
  uint8_t code = p[17];
  std::memcpy(&nseq, p + 18, 8);
  std::memcpy(&ndoc, p + 26, 8);
  DMPI_REQUIRE(version == 1, "'" << idx << "': MMIDIDX version " << version << " (only version 1 is known)");
  int width = 0;
  bool is_signed = false;
  switch (code) {
    case 1: width = 1; break;                    // uint8
    case 4: width = 4; is_signed = true; break;  // int32
    case 5: width = 8; is_signed = true; break;  // int64
    case 8: width = 2; break;                    // uint16
    default:
      DMPI_FAIL("'" << idx << "': token dtype code " << int(code)
                    << " is not an integer type deepmpi reads (1 uint8, 4 int32, 5 int64, 8 uint16)");
  }
  DMPI_REQUIRE(nseq <= im.size() / 12 && ndoc <= im.size() / 8,
               "'" << idx << "' is truncated or damaged: it claims " << nseq << " sequences and " << ndoc
                   << " documents, more than its " << im.size() << " bytes can hold");
  size_t need = hdr + nseq * 4 + nseq * 8 + ndoc * 8;
  DMPI_REQUIRE(im.size() >= need, "'" << idx << "' is truncated: " << nseq << " sequences and " << ndoc
                                      << " documents need " << need << " bytes, file has " << im.size());
  auto bm = std::make_unique<Mapping>(bin);
  DMPI_REQUIRE(bm->size() % static_cast<size_t>(width) == 0,
               "'" << bin << "' has " << bm->size() << " bytes, not a multiple of the token width " << width);
  // The sequences must tile the .bin exactly, in order.
  uint64_t expect_ptr = 0;
  for (uint64_t s = 0; s < nseq; ++s) {
    int32_t len;
    int64_t ptr;
    std::memcpy(&len, p + hdr + s * 4, 4);
    std::memcpy(&ptr, p + hdr + nseq * 4 + s * 8, 8);
    DMPI_REQUIRE(len >= 0 && static_cast<uint64_t>(ptr) == expect_ptr,
                 "'" << idx << "': sequence " << s << " (length " << len << ", byte offset " << ptr
                     << ") does not follow the previous one (expected offset " << expect_ptr << ")");
    expect_ptr += static_cast<uint64_t>(len) * width;
  }
  DMPI_REQUIRE(expect_ptr == bm->size(), "'" << bin << "' has " << bm->size() << " bytes but '" << idx
                                             << "' describes " << expect_ptr << " bytes of tokens (truncated or mismatched pair)");
  size_t count = bm->size() / width;
  std::string what = "'" + bin + "' (Megatron MMIDIDX, " + std::to_string(count) + " tokens, " + std::to_string(nseq) +
                     " sequences)";
  auto src = std::make_unique<MappedSource>(std::move(bm), 0, count, width, is_signed, what);
  src->validate(model_vocab, "pass a --vocab-size larger than the largest token id");
  return src;
}

void write_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts) {
  DMPI_REQUIRE(!fs::exists(path), "'" << path << "' already exists; refusing to overwrite it (choose another --output)");
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    DMPI_REQUIRE(f.good(), "cannot create '" << tmp << "': " << std::strerror(errno));
    for (auto& [ptr, n] : parts) f.write(static_cast<const char*>(ptr), static_cast<std::streamsize>(n));
    f.flush();
    if (!f.good()) {
      int e = errno;
      std::remove(tmp.c_str());
      DMPI_FAIL("writing '" << tmp << "' failed: " << std::strerror(e));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    DMPI_FAIL("cannot rename '" << tmp << "' to '" << path << "': " << ec.message());
  }
}

}  // namespace

std::unique_ptr<TokenSource> make_mock_source(uint64_t seed, int vocab) {
  DMPI_REQUIRE(vocab >= 1, "mock data needs a vocabulary size >= 1");
  return std::make_unique<MockSource>(seed, vocab);
}

std::unique_ptr<TokenSource> open_token_source(const std::string& prefix, int model_vocab) {
  if (fs::exists(prefix + ".idx") && fs::exists(prefix + ".bin")) return open_megatron(prefix, model_vocab);
  if (fs::exists(prefix + ".tokens")) return open_deepmpi_tokens(prefix + ".tokens", model_vocab);
  if (fs::is_regular_file(prefix)) {
    if (prefix.ends_with(".idx") || prefix.ends_with(".bin"))
      DMPI_FAIL("--data-path '" << prefix << "': give the Megatron prefix without .bin/.idx ('"
                                << prefix.substr(0, prefix.size() - 4) << "')");
    return open_deepmpi_tokens(prefix, model_vocab);
  }
  if (fs::is_directory(prefix))
    DMPI_FAIL("--data-path '" << prefix << "' is a directory: it takes the prefix of a dataset, e.g. '" << prefix
                              << "/corpus' for " << prefix << "/corpus.tokens (or .bin + .idx)");
  if (fs::exists(prefix + ".bin") != fs::exists(prefix + ".idx"))
    DMPI_FAIL("--data-path '" << prefix << "': found only one of " << prefix << ".bin and " << prefix
                              << ".idx; a Megatron dataset needs both");
  DMPI_FAIL("--data-path '" << prefix << "': no such dataset (looked for " << prefix << ".tokens, " << prefix
                            << ".bin + " << prefix << ".idx, and " << prefix
                            << "); make one with `deepmpi data prepare --input FILE --output PREFIX`");
}

void write_token_file(const std::string& path, const std::vector<uint32_t>& tokens, uint64_t vocab) {
  RawHeader h{};
  std::memcpy(h.magic, TokenFileHeader::kMagic, 8);
  h.version = TokenFileHeader::kVersion;
  h.token_bytes = vocab <= 65536 ? 2 : 4;
  h.vocab_size = vocab;
  h.count = tokens.size();
  for (auto t : tokens) DMPI_REQUIRE(t < vocab, "token " << t << " is outside the vocabulary [0, " << vocab << ")");
  if (h.token_bytes == 2) {
    std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
    write_atomically(path, {{&h, sizeof(h)}, {narrow.data(), narrow.size() * 2}});
  } else {
    write_atomically(path, {{&h, sizeof(h)}, {tokens.data(), tokens.size() * 4}});
  }
}

void write_megatron_dataset(const std::string& prefix, const std::vector<uint32_t>& tokens,
                            const std::vector<uint64_t>& document_lengths, uint64_t vocab) {
  uint64_t total = 0;
  for (auto n : document_lengths) total += n;
  DMPI_REQUIRE(total == tokens.size(), "document lengths add up to " << total << ", not " << tokens.size());
  DMPI_REQUIRE(!fs::exists(prefix + ".idx") && !fs::exists(prefix + ".bin"),
               "'" << prefix << ".bin' or '.idx' already exists; refusing to overwrite (choose another --output)");
  const bool narrow = vocab <= 65535;
  const int width = narrow ? 2 : 4;
  std::vector<uint8_t> bin(tokens.size() * width);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (narrow) {
      uint16_t v = static_cast<uint16_t>(tokens[i]);
      std::memcpy(bin.data() + 2 * i, &v, 2);
    } else {
      int32_t v = static_cast<int32_t>(tokens[i]);
      std::memcpy(bin.data() + 4 * i, &v, 4);
    }
  }
  const uint64_t nseq = document_lengths.size(), ndoc = nseq + 1, version = 1;
  const uint8_t code = narrow ? 8 : 4;
  std::vector<int32_t> lens;
  std::vector<int64_t> ptrs, docs;
  int64_t ptr = 0;
  docs.push_back(0);
  for (uint64_t s = 0; s < nseq; ++s) {
    DMPI_REQUIRE(document_lengths[s] <= INT32_MAX, "document " << s << " is too long for MMIDIDX (int32 lengths)");
    lens.push_back(static_cast<int32_t>(document_lengths[s]));
    ptrs.push_back(ptr);
    ptr += static_cast<int64_t>(document_lengths[s]) * width;
    docs.push_back(static_cast<int64_t>(s + 1));
  }
  write_atomically(prefix + ".bin", {{bin.data(), bin.size()}});
  write_atomically(prefix + ".idx", {{"MMIDIDX\0\0", 9}, {&version, 8}, {&code, 1}, {&nseq, 8}, {&ndoc, 8},
                                     {lens.data(), lens.size() * 4}, {ptrs.data(), ptrs.size() * 8},
                                     {docs.data(), docs.size() * 8}});
}

BatchLoader::BatchLoader(const TokenSource& src, int B, int T) : src_(src), B_(B), T_(T) {
  DMPI_REQUIRE(src.size() >= static_cast<size_t>(T) + 1,
               src.describe() << " has " << src.size() << " tokens; --seq-length " << T << " needs at least "
                              << T + 1);
  windows_ = (src.size() - 1) / static_cast<uint64_t>(T);
}

void BatchLoader::load(uint64_t first_sample, int32_t* tokens, int32_t* targets) const {
  std::vector<int32_t> buf(static_cast<size_t>(T_) + 1);
  for (int b = 0; b < B_; ++b) {
    uint64_t start = ((first_sample + static_cast<uint64_t>(b)) % windows_) * static_cast<uint64_t>(T_);
    src_.read(start, buf.size(), buf.data());
    std::memcpy(tokens + static_cast<size_t>(b) * T_, buf.data(), sizeof(int32_t) * T_);
    std::memcpy(targets + static_cast<size_t>(b) * T_, buf.data() + 1, sizeof(int32_t) * T_);
  }
}

}  // namespace dmpi::io
