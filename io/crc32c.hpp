// CRC32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final xor ~0: the
// checksum of iSCSI, ext4 and Btrfs) with a combine rule, so the checksum of a tensor can be
// computed in pieces on many ranks and threads: crc(A || B) = crc32c_combine(crc(A), crc(B), |B|).
// The SSE4.2 instruction is used when the build targets it; otherwise a table.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dmpi::io {

// Continues `crc` (the checksum of the bytes before) over `n` bytes; crc32c(p, n) starts anew.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// The checksum of A || B from crc(A), crc(B) and the length of B in bytes.
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
// crc32c over `n` bytes split among the OpenMP threads and combined.
uint32_t crc32c_parallel(const void* data, size_t n);

}  // namespace dmpi::io
