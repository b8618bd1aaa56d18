// Token datasets: round trips, every way a file can be wrong, the sampler, the tokenizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <unistd.h>
#include <fstream>

#include "io/token_dataset.hpp"
#include "io/tokenizer.hpp"
#include "base/error.hpp"

using namespace dmpi;
using namespace dmpi::io;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("deepmpi-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& s) const { return (path / s).string(); }
};
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }
std::vector<int32_t> read_all(const TokenSource& s) {
  std::vector<int32_t> v(s.size());
  s.read(0, v.size(), v.data());
  return v;
}
}  // namespace

TEST(TokenFile, RoundTripUint16AndUint32) {
  TempDir d;
  std::vector<uint32_t> small = {0, 5, 256, 3, 1};
  write_token_file(d / "a.tokens", small, 257);
  EXPECT_EQ(fs::file_size(d / "a.tokens"), 64u + 2 * small.size());
  auto s = open_token_source(d / "a", 300);
  EXPECT_EQ(read_all(*s), std::vector<int32_t>(small.begin(), small.end()));
  std::vector<uint32_t> big = {70000, 1, 99999};
  write_token_file(d / "b.tokens", big, 100000);
  EXPECT_EQ(fs::file_size(d / "b.tokens"), 64u + 4 * big.size());
  auto b = open_token_source(d / "b.tokens", 100000);  // the file itself also works
  EXPECT_EQ(read_all(*b), std::vector<int32_t>(big.begin(), big.end()));
}

TEST(TokenFile, BadFilesAreClearErrors) {
  TempDir d;
  std::vector<uint32_t> toks = {1, 2, 3, 4, 5, 6};
  write_token_file(d / "ok.tokens", toks, 10);
  // refuses to overwrite
  EXPECT_TRUE(has(error_of([&] { write_token_file(d / "ok.tokens", toks, 10); }), "refusing to overwrite"));
  // model vocabulary smaller than the file's
  EXPECT_TRUE(has(error_of([&] { open_token_source(d / "ok", 8); }), "pass --vocab-size 10 or larger"));
  // truncated
  fs::copy_file(d / "ok.tokens", d / "trunc.tokens");
  fs::resize_file(d / "trunc.tokens", 64 + 7);
  EXPECT_TRUE(has(error_of([&] { open_token_source(d / "trunc", 10); }), "truncated"));
  // bad magic
  {
    std::ofstream f(d / "junk.tokens", std::ios::binary);
    f << std::string(100, 'x');
  }
  EXPECT_TRUE(has(error_of([&] { open_token_source(d / "junk", 10); }), "bad magic"));
  // a token beyond the header's vocabulary (bit flip in the payload)
  fs::copy_file(d / "ok.tokens", d / "flip.tokens");
  {
    std::fstream f(d / "flip.tokens", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 2 * 3);
    uint16_t v = 42;
    f.write(reinterpret_cast<char*>(&v), 2);
  }
  std::string e = error_of([&] { open_token_source(d / "flip", 100); });
  EXPECT_TRUE(has(e, "token 42 at position 3")) << e;
  // missing dataset
  EXPECT_TRUE(has(error_of([&] { open_token_source(d / "nope", 10); }), "deepmpi data prepare"));
}

TEST(Megatron, RoundTripAndValidation) {
  TempDir d;
  std::vector<uint32_t> toks = {10, 11, 12, 256, 7, 8, 256};
  write_megatron_dataset(d / "m", toks, {4, 3}, 257);
  auto s = open_token_source(d / "m", 257);
  EXPECT_EQ(read_all(*s), std::vector<int32_t>(toks.begin(), toks.end()));
  EXPECT_TRUE(has(s->describe(), "2 sequences"));
  // header bytes as Megatron writes them
  std::ifstream f(d / "m.idx", std::ios::binary);
  char hdr[18];
  f.read(hdr, 18);
  EXPECT_EQ(std::string(hdr, 9), std::string("MMIDIDX\0\0", 9));
  EXPECT_EQ(hdr[17], 8);  // uint16
  // token beyond the model vocabulary
  EXPECT_TRUE(has(error_of([&] { open_token_source(d / "m", 100); }), "token 256"));
  // .bin truncated relative to .idx
  fs::resize_file(d / "m.bin", 10);
  EXPECT_TRUE(has(error_of([&] { open_token_source(d / "m", 257); }), "truncated or mismatched"));
  // only one of the pair
  fs::remove(d / "m.idx");
  EXPECT_TRUE(has(error_of([&] { open_token_source(d / "m", 257); }), "needs both"));
}

TEST(MockData, DeterministicAndInVocabulary) {
  auto a = make_mock_source(5, 100), b = make_mock_source(5, 100), c = make_mock_source(6, 100);
  std::vector<int32_t> x(1000), y(1000), z(1000);
  a->read(12345, 1000, x.data());
  b->read(12345, 1000, y.data());
  c->read(12345, 1000, z.data());
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  for (int t : x) EXPECT_TRUE(t >= 0 && t < 100);
}

TEST(BatchLoader, WindowsAndTargetsShiftByOne) {
  TempDir d;
  std::vector<uint32_t> toks(23);
  for (uint32_t i = 0; i < 23; ++i) toks[i] = i;
  write_token_file(d / "w.tokens", toks, 32);
  auto s = open_token_source(d / "w", 32);
  BatchLoader l(*s, 2, 5);
  EXPECT_EQ(l.num_windows(), 4u);  // (23 - 1) / 5
  std::vector<int32_t> tok(10), tgt(10);
  l.load(3, tok.data(), tgt.data());  // samples 3 and 4 -> windows 3 and 0
  EXPECT_EQ(tok, (std::vector<int32_t>{15, 16, 17, 18, 19, 0, 1, 2, 3, 4}));
  EXPECT_EQ(tgt, (std::vector<int32_t>{16, 17, 18, 19, 20, 1, 2, 3, 4, 5}));
  EXPECT_THROW(BatchLoader(*s, 1, 23), Error);  // needs seq + 1 tokens
}

TEST(Tokenizer, ByteLevelRoundTrip) {
  std::string text = "héllo, wörld\n";
  auto t = ByteTokenizer::encode(text);
  EXPECT_EQ(t.size(), text.size());
  for (auto v : t) EXPECT_LT(v, 256u);
  EXPECT_EQ(ByteTokenizer::decode(t), text);
}
