// Byte ranges of a file read and written with O_DIRECT for their 4 KiB-aligned interior (through
// an aligned bounce buffer) and ordinary pread/pwrite for the unaligned head and tail. On this
// machine's virtual disk, buffered writes of new files reach 0.35-1.8 GB/s while direct I/O
// sustains 2.1 GB/s (perf/results/checkpoint-gpt2-124m.md). Where the file system refuses
// O_DIRECT (tmpfs, some network file systems) everything is buffered. Linux keeps the two views
// coherent: a direct read or write first writes back and drops the page-cache pages it covers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dmpi::io {

class RawFile {
 public:
  RawFile(const std::string& path, bool write);
  ~RawFile();
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;
  // Errors name the file and `what` (e.g. the dataset); a short read says the file is truncated.
  void write(uint64_t off, const void* p, size_t n, const std::string& what);
  void read(uint64_t off, void* p, size_t n, const std::string& what);
  void sync();  // fdatasync
  bool direct() const { return dfd_ >= 0; }

 private:
  std::string path_;
  int fd_ = -1, dfd_ = -1;
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<unsigned char, Free> buf_;
};

}  // namespace dmpi::io
