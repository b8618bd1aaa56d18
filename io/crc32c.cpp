#include "io/crc32c.hpp"

#include <omp.h>

#include <array>
#include <cstring>
#include <vector>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace dmpi::io {

namespace {
constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

[[maybe_unused]] std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}

// a * b modulo the polynomial, in the reflected bit order (bit 31 is x^0).
uint32_t mult_mod(uint32_t a, uint32_t b) {
  uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = b & 1 ? (b >> 1) ^ kPoly : b >> 1;
  }
  return p;
}

// x^(8 n) modulo the polynomial: square-and-multiply over the bits of n with x^(2^k) tables.
uint32_t x_pow_8n(uint64_t n) {
  static const std::array<uint32_t, 64> x2k = [] {
    std::array<uint32_t, 64> t{};
    uint32_t p = 1u << 30;  // x^1
    for (auto& v : t) v = p, p = mult_mod(p, p);
    return t;
  }();
  uint32_t p = 1u << 31;  // x^0
  int k = 3;              // 8 n = n << 3
  while (n) {
    if (n & 1) p = mult_mod(x2k[static_cast<size_t>(k & 63)], p);
    n >>= 1;
    ++k;
  }
  return p;
}
}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
#if defined(__SSE4_2__)
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8, n -= 8;
  }
  c = static_cast<uint32_t>(c64);
  while (n--) c = _mm_crc32_u8(c, *p++);
#else
  static const std::array<uint32_t, 256> table = make_table();
  while (n--) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
#endif
  return ~c;
}

uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  return mult_mod(x_pow_8n(len_b), crc_a) ^ crc_b;
}

uint32_t crc32c_parallel(const void* data, size_t n) {
  const int threads = omp_get_max_threads();
  if (n < (size_t{1} << 20) || threads == 1) return crc32c(data, n);
  const size_t parts = static_cast<size_t>(threads);
  std::vector<uint32_t> crc(parts, 0);
  std::vector<size_t> len(parts, 0);
  const auto* p = static_cast<const unsigned char*>(data);
#pragma omp parallel for schedule(static)
  for (size_t t = 0; t < parts; ++t) {
    const size_t a = n * t / parts, b = n * (t + 1) / parts;
    crc[t] = crc32c(p + a, b - a);
    len[t] = b - a;
  }
  uint32_t c = crc[0];
  for (size_t t = 1; t < parts; ++t) c = crc32c_combine(c, crc[t], len[t]);
  return c;
}

}  // namespace dmpi::io
