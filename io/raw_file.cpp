#include "io/raw_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <future>

#include "base/error.hpp"

namespace dmpi::io {

namespace {
constexpr uint64_t kAlign = 4096;
constexpr size_t kChunk = size_t{16} << 20;  // bounce buffer: 16 MiB (reads: two 8 MiB requests in flight)
uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }
uint64_t align_down(uint64_t x) { return x / kAlign * kAlign; }
}  // namespace

void RawFile::Free::operator()(void* p) const { std::free(p); }

RawFile::RawFile(const std::string& path, bool write) : path_(path) {
  const int mode = write ? O_WRONLY : O_RDONLY;
  fd_ = ::open(path.c_str(), mode | O_CLOEXEC);
  DMPI_REQUIRE(fd_ >= 0, "cannot open " << path << (write ? " for writing" : "") << ": " << std::strerror(errno));
  dfd_ = ::open(path.c_str(), mode | O_CLOEXEC | O_DIRECT);  // EINVAL where unsupported: buffered only
  if (dfd_ >= 0) {
    void* p = nullptr;
    DMPI_REQUIRE(::posix_memalign(&p, kAlign, kChunk) == 0, "out of memory for an I/O buffer");
    buf_.reset(static_cast<unsigned char*>(p));
  }
}

RawFile::~RawFile() {
  if (dfd_ >= 0) ::close(dfd_);
  if (fd_ >= 0) ::close(fd_);
}

namespace {
void full_pwrite(int fd, const unsigned char* p, size_t n, uint64_t off, const std::string& path, const std::string& what) {
  while (n > 0) {
    ssize_t k = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (k < 0 && errno == EINTR) continue;
    DMPI_REQUIRE(k > 0, "cannot write " << what << " to " << path << ": " << (k < 0 ? std::strerror(errno) : "no progress")
                                        << (errno == ENOSPC ? " (the file system is full)" : ""));
    p += k, n -= static_cast<size_t>(k), off += static_cast<uint64_t>(k);
  }
}
void full_pread(int fd, unsigned char* p, size_t n, uint64_t off, const std::string& path, const std::string& what) {
  while (n > 0) {
    ssize_t k = ::pread(fd, p, n, static_cast<off_t>(off));
    if (k < 0 && errno == EINTR) continue;
    DMPI_REQUIRE(k >= 0, "cannot read " << what << " from " << path << ": " << std::strerror(errno));
    DMPI_REQUIRE(k > 0, path << " ends before the data of " << what << " (the file is truncated)");
    p += k, n -= static_cast<size_t>(k), off += static_cast<uint64_t>(k);
  }
}
}  // namespace

void RawFile::write(uint64_t off, const void* data, size_t n, const std::string& what) {
  const auto* p = static_cast<const unsigned char*>(data);
  const uint64_t end = off + n;
  const uint64_t a = std::min(end, align_up(off)), b = std::max(a, align_down(end));
  if (dfd_ < 0 || b <= a) {
    full_pwrite(fd_, p, n, off, path_, what);
    return;
  }
  if (a > off) full_pwrite(fd_, p, a - off, off, path_, what);
  for (uint64_t pos = a; pos < b; pos += kChunk) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, b - pos));
    std::memcpy(buf_.get(), p + (pos - off), len);
    full_pwrite(dfd_, buf_.get(), len, pos, path_, what);
  }
  if (end > b) full_pwrite(fd_, p + (b - off), end - b, b, path_, what);
}

void RawFile::read(uint64_t off, void* data, size_t n, const std::string& what) {
  auto* p = static_cast<unsigned char*>(data);
  const uint64_t end = off + n;
  const uint64_t a = std::min(end, align_up(off)), b = std::max(a, align_down(end));
  if (dfd_ < 0 || b <= a) {
    full_pread(fd_, p, n, off, path_, what);
    return;
  }
  if (a > off) full_pread(fd_, p, a - off, off, path_, what);
  // Two halves of the bounce buffer: the next request is in flight while the last one is copied out.
  const size_t half = kChunk / 2;
  unsigned char* bufs[2] = {buf_.get(), buf_.get() + half};
  auto len_at = [&](uint64_t pos) { return static_cast<size_t>(std::min<uint64_t>(half, b - pos)); };
  std::future<void> next = std::async(std::launch::async, [&, pos = a] { full_pread(dfd_, bufs[0], len_at(pos), pos, path_, what); });
  int cur = 0;
  for (uint64_t pos = a; pos < b; pos += half, cur ^= 1) {
    next.get();
    const uint64_t npos = pos + half;
    if (npos < b)
      next = std::async(std::launch::async, [&, npos, nb = bufs[cur ^ 1]] { full_pread(dfd_, nb, len_at(npos), npos, path_, what); });
    std::memcpy(p + (pos - off), bufs[cur], len_at(pos));
  }
  if (end > b) full_pread(fd_, p + (b - off), end - b, b, path_, what);
}

void RawFile::sync() {
  DMPI_REQUIRE(::fdatasync(fd_) == 0, "cannot flush " << path_ << ": " << std::strerror(errno));
}

}  // namespace dmpi::io
