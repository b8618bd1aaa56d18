// io::RawFile: direct I/O for the aligned interior, buffered ends. Two writers (as two ranks)
// write interleaved runs at unaligned offsets of one file, sharing partial pages; the file must
// hold exactly what was written, read back through the same class and through plain stdio.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "io/raw_file.hpp"

namespace {

TEST(RawFile, InterleavedUnalignedRunsFromTwoWriters) {
  const std::string path = (std::filesystem::temp_directory_path() / ("deepmpi-rawfile-" + std::to_string(::getpid()))).string();
  const size_t size = (size_t{40} << 20) + 1234;  // crosses several 16 MiB bounce-buffer chunks
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_TRUE(f);
    ASSERT_EQ(0, ::ftruncate(fileno(f), static_cast<off_t>(size)));
    std::fclose(f);
  }
  std::vector<unsigned char> want(size);
  std::mt19937_64 rng(17);
  for (auto& b : want) b = static_cast<unsigned char>(rng());
  // cut the file into runs of random length at random (unaligned) places; alternate the writers
  std::vector<size_t> cuts = {0};
  while (cuts.back() < size) cuts.push_back(std::min(size, cuts.back() + 1 + rng() % (size_t{9} << 20)));
  {
    dmpi::io::RawFile a(path, true), b(path, true);
    for (size_t i = 0; i + 1 < cuts.size(); ++i)
      (i % 2 ? b : a).write(cuts[i], want.data() + cuts[i], cuts[i + 1] - cuts[i], "run " + std::to_string(i));
    a.sync();
    b.sync();
  }
  dmpi::io::RawFile r(path, false);
  std::vector<unsigned char> got(size, 0);
  // read back in other pieces than written: an unaligned head, then the rest
  r.read(0, got.data(), 4097, "head");
  r.read(4097, got.data() + 4097, size - 4097, "rest");
  EXPECT_TRUE(got == want);
  std::vector<unsigned char> plain(size);
  FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_TRUE(f);
  EXPECT_EQ(size, std::fread(plain.data(), 1, size, f));
  std::fclose(f);
  EXPECT_TRUE(plain == want);
  // a read past the end is an error that says the file is truncated
  std::vector<unsigned char> over(8192);
  try {
    r.read(size - 100, over.data(), over.size(), "tail");
    ADD_FAILURE() << "no error reading past the end";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
