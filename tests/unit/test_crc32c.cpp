// CRC32C: the published check value, the combine rule against the checksum of the whole, and
// the threaded version against the serial one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "io/crc32c.hpp"

using namespace dmpi::io;

namespace {

// Bitwise CRC32C straight from the definition: an independent reference for the fast path.
uint32_t crc_bitwise(const unsigned char* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}

TEST(Crc32c, CheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the catalogue's check value of CRC-32C
  EXPECT_EQ(crc32c("", 0), 0u);
  std::vector<unsigned char> zeros(32, 0);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
}

TEST(Crc32c, MatchesBitwiseDefinition) {
  std::mt19937 rng(5);
  for (size_t n : {1u, 7u, 8u, 9u, 63u, 1000u, 4099u}) {
    std::vector<unsigned char> b(n);
    for (auto& x : b) x = static_cast<unsigned char>(rng());
    EXPECT_EQ(crc32c(b.data(), n), crc_bitwise(b.data(), n)) << n;
  }
}

TEST(Crc32c, CombineEqualsWhole) {
  std::mt19937 rng(9);
  std::vector<unsigned char> b(100000);
  for (auto& x : b) x = static_cast<unsigned char>(rng());
  for (int trial = 0; trial < 50; ++trial) {
    // 1-4 cut points anywhere (empty pieces included)
    std::vector<size_t> cuts = {0, b.size()};
    for (int k = 0; k < 1 + trial % 4; ++k) cuts.push_back(rng() % (b.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    uint32_t c = 0;
    for (size_t i = 0; i + 1 < cuts.size(); ++i)
      c = crc32c_combine(c, crc32c(b.data() + cuts[i], cuts[i + 1] - cuts[i]), cuts[i + 1] - cuts[i]);
    EXPECT_EQ(c, crc32c(b.data(), b.size())) << "trial " << trial;
  }
  // continuing a checksum equals combining
  EXPECT_EQ(crc32c(b.data() + 10, 90, crc32c(b.data(), 10)), crc32c(b.data(), 100));
}

TEST(Crc32c, ThreadedEqualsSerial) {
  std::vector<float> x((3u << 20) / 4 + 13);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.37f;
  EXPECT_EQ(crc32c_parallel(x.data(), x.size() * 4), crc32c(x.data(), x.size() * 4));
}

}  // namespace
