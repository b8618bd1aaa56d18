// The NVMe spill engine (io/spill.hpp) on its own: arrays streamed in sub-groups through few
// buffers hold exactly what was written, through io_uring and through the thread pool, for every
// buffer count and a length that is not a multiple of a sub-group; ranges read and written
// synchronously agree with the streamed view; the HDF5 index reads the same values through
// HDF5 itself; a full disk, a file system without O_DIRECT, a missing nvme_path and a stale
// directory are errors naming the path.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "io/spill.hpp"
#include "tests/unit/test_util.hpp"

namespace {

namespace fs = std::filesystem;
using dmpi::io::AioEngine;
using dmpi::io::AioOptions;
using dmpi::io::SpillArrays;

struct TmpDir {
  std::string path;
  explicit TmpDir(const std::string& tag)
      : path((fs::temp_directory_path() / ("deepmpi-spill-" + tag + "-" + std::to_string(::getpid()))).string()) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TmpDir() { fs::remove_all(path); }
};

float value(int k, size_t i, int round) { return static_cast<float>(k * 1000003 + static_cast<long>(i) * 7 + round) * 0.5f; }

bool have_uring() {
  try {
    AioOptions o;
    o.backend = "uring";
    AioEngine e(o);
    return e.uring();
  } catch (const std::exception&) {
    return false;
  }
}

void roundtrip(const std::string& backend, int buffers) {
  TmpDir d(backend + std::to_string(buffers));
  AioOptions o;
  o.backend = backend;
  o.block_size = 8192;  // several requests per sub-group
  o.queue_depth = 4;
  o.threads = 3;
  AioEngine aio(o);
  EXPECT_EQ(aio.uring(), backend == "uring") << aio.describe();
  const size_t n = 10 * 2048 + 333;  // the last sub-group is short and not 4 KiB-aligned
  SpillArrays a(d.path, "t", {"m", "s0", "s1"}, n, 2048, buffers, aio);
  EXPECT_EQ(a.sub_group(), 2048u);
  EXPECT_EQ(a.buffers(), buffers);
  EXPECT_EQ(a.host_bytes(), static_cast<size_t>(buffers) * 3 * 2048 * sizeof(float));
  size_t seen = 0, calls = 0;
  a.stream(
      [&](size_t b, size_t m, float* const* arr) {
        EXPECT_EQ(b, seen);  // in order, each element once
        seen += m;
        ++calls;
        for (int k = 0; k < 3; ++k)
          for (size_t i = 0; i < m; ++i) arr[k][i] = value(k, b + i, 0);
      },
      false, true);
  EXPECT_EQ(seen, n);
  EXPECT_EQ(calls, 11u);
  // read, check, change (round 1): every sub-group sees what the last write left
  size_t bad = 0;
  a.stream([&](size_t b, size_t m, float* const* arr) {
    for (int k = 0; k < 3; ++k)
      for (size_t i = 0; i < m; ++i) {
        bad += arr[k][i] != value(k, b + i, 0);
        arr[k][i] = value(k, b + i, 1);
      }
  });
  EXPECT_EQ(bad, 0u);
  // the synchronous view of unaligned ranges
  std::vector<float> got(5000);
  a.read(1, 1001, got.size(), got.data());
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != value(1, 1001 + i, 1);
  EXPECT_EQ(bad, 0u);
  std::vector<float> put(3001);
  for (size_t i = 0; i < put.size(); ++i) put[i] = -static_cast<float>(i);
  a.write(2, n - put.size(), put.size(), put.data());  // the tail, up to the last element
  a.write(0, 3, 2, put.data());                         // two elements inside one block
  a.stream(
      [&](size_t b, size_t m, float* const* arr) {
        for (size_t i = 0; i < m; ++i) {
          const size_t j = b + i;
          const float w2 = j >= n - put.size() ? put[j - (n - put.size())] : value(2, j, 1);
          const float w0 = j == 3 || j == 4 ? put[j - 3] : value(0, j, 1);
          bad += arr[0][i] != w0;
          bad += arr[1][i] != value(1, j, 1);
          bad += arr[2][i] != w2;
        }
      },
      true, false);
  EXPECT_EQ(bad, 0u);
  EXPECT_GE(aio.bytes_written(), 3 * n * sizeof(float));
  // The buffers outlive a stream, and a stream takes the sub-groups they hold first (not read),
  // then the others in ascending order, position p through buffer p % S. The second stream finds
  // the first's last S sub-groups (11-S .. 10: the short one is 4096 bytes on disk) and ends with
  // the top S of the others, 11-2S .. 10-S (S <= 4 leaves at least S of them); the writes of
  // elements 3-4 (sub-group 0) and of the tail (from element n - 3001: sub-groups 8, 9, 10) make
  // those stale, so the third stream finds only the ones outside {0, 8, 9, 10}. Every other
  // sub-group is read from the file.
  const auto S = static_cast<size_t>(buffers);
  const size_t full = 2048 * sizeof(float), file = 10 * full + 4096;
  size_t third = 0;
  for (size_t g = 11 - 2 * S; g <= 10 - S; ++g) third += g != 0 && g < 8;
  EXPECT_EQ(a.bytes_cached(), 3 * (4096 + (S - 1) * full) + 3 * third * full);
  EXPECT_GE(aio.bytes_read() + a.bytes_cached(), 2 * 3 * file);
  // copy_cached: the third stream ended with the top S of the sub-groups it read, 11-S .. 10
  // (8, 9 and 10 among them: the tail that write() put)
  std::vector<float> tail(300, 0.0f);
  ASSERT_TRUE(a.copy_cached(2, n - tail.size(), tail.size(), tail.data()));
  for (size_t i = 0; i < tail.size(); ++i) bad += tail[i] != put[put.size() - tail.size() + i];
  EXPECT_EQ(bad, 0u);
  EXPECT_FALSE(a.copy_cached(0, 0, 10, tail.data()));  // sub-group 0 is not in a buffer
  EXPECT_EQ(S == 1, !a.copy_cached(1, 9 * 2048, 10, tail.data()));  // sub-group 9: in one of 2+ buffers

  // the HDF5 index, read through HDF5's external-file datasets (not through deepmpi)
  const std::string index = d.path + "/t.index.h5";
  a.write_index(index);
  hid_t f = H5Fopen(index.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t ds = H5Dopen2(f, "s0", H5P_DEFAULT);  // array 1
  ASSERT_GE(ds, 0);
  std::vector<float> h5(n);
  ASSERT_GE(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, h5.data()), 0);
  for (size_t i = 0; i < n; ++i) bad += h5[i] != value(1, i, 1);
  EXPECT_EQ(bad, 0u);
  H5Dclose(ds);
  H5Fclose(f);
}

TEST(Spill, RoundTripThreadPool) {
  for (int b : {1, 2, 3, 4}) roundtrip("threads", b);
}

TEST(Spill, RoundTripIoUring) {
  if (!have_uring()) GTEST_SKIP() << "io_uring is not available here (built without liburing, or the kernel refuses it)";
  for (int b : {1, 2, 3, 4}) roundtrip("uring", b);
}

// Round 0 of two arrays written by a write-only stream (it ends holding its last sub-groups)
void fill_round0(SpillArrays& a) {
  a.stream([&](size_t b, size_t m, float* const* arr) {
    for (int k = 0; k < 2; ++k)
      for (size_t i = 0; i < m; ++i) arr[k][i] = value(k, b + i, 0);
  }, false, true);
}

// An update from round 0 to round 1 of two arrays: records the order of sub-groups (of G) and
// counts the values it finds that are not round 0's
SpillArrays::Fn to_round1(std::vector<size_t>& order, size_t& bad, size_t G) {
  return [&order, &bad, G](size_t b, size_t m, float* const* arr) {
    order.push_back(b / G);
    for (int k = 0; k < 2; ++k)
      for (size_t i = 0; i < m; ++i) {
        bad += arr[k][i] != value(k, b + i, 0);
        arr[k][i] = value(k, b + i, 1);
      }
  };
}

// Values of the two arrays' n elements that are not round 1's, read synchronously
size_t not_round1(const SpillArrays& a, size_t n) {
  size_t bad = 0;
  std::vector<float> all(n);
  for (int k = 0; k < 2; ++k) {
    a.read(k, 0, n, all.data());
    for (size_t i = 0; i < n; ++i) bad += all[i] != value(k, i, 1);
  }
  return bad;
}

// A stream run on demand (begin, ensure, finish: ZeRO-3's update finished by the next forward):
// ensure updates the sub-groups over a range and no more than the order asks (the ones held
// first, then ascending), reads of elements it has not updated are refused, and the finished
// stream leaves in the files exactly what a plain stream leaves.
void on_demand(const std::string& backend) {
  TmpDir d("demand-" + backend);
  AioOptions o;
  o.backend = backend;
  AioEngine aio(o);
  const size_t n = 8 * 1024 + 100, G = 1024;  // 9 sub-groups, the last one short
  SpillArrays a(d.path, "t", {"x", "y"}, n, G, 3, aio);
  fill_round0(a);  // ends holding sub-groups 6, 7, 8 (positions 6, 7, 8: buffers 0, 1, 2)
  std::vector<size_t> order;
  size_t bad = 0;
  auto update = to_round1(order, bad, G);
  a.begin(update);
  EXPECT_EQ(a.pending(), 9u);
  EXPECT_TRUE(order.empty());  // nothing updated yet: the first reads are in flight
  std::vector<float> got(10);
  EXPECT_THROW(a.read(0, 2 * G, 10, got.data()), std::exception);  // sub-group 2 is not updated yet
  EXPECT_THROW(a.copy_cached(1, 7 * G, 10, got.data()), std::exception);  // held, but not updated either
  a.ensure(2 * G + 5, 10);  // sub-group 2: after the held ones (6, 7, 8), then 0, 1, 2
  EXPECT_EQ(order, (std::vector<size_t>{6, 7, 8, 0, 1, 2}));
  EXPECT_EQ(a.pending(), 3u);
  a.ensure(7 * G, G);  // already done: nothing more
  EXPECT_EQ(order.size(), 6u);
  ASSERT_TRUE(a.copy_cached(0, 2 * G, 10, got.data()));  // just updated, still in its buffer
  for (size_t i = 0; i < 10; ++i) bad += got[i] != value(0, 2 * G + i, 1);
  EXPECT_THROW(a.read(1, 3 * G, 10, got.data()), std::exception);
  a.finish();
  EXPECT_EQ(order, (std::vector<size_t>{6, 7, 8, 0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(a.pending(), 0u);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(not_round1(a, n), 0u);
  // a new stream finishes a pending one first: the second update sees the first's values
  order.clear();
  a.begin([&](size_t b, size_t m, float* const* arr) {
    order.push_back(b / G);
    for (size_t i = 0; i < m; ++i) arr[0][i] += 1.0f;
  });
  a.ensure(0, 1);  // the held ones are 3, 4, 5 (the last three updated), then 0
  EXPECT_EQ(order, (std::vector<size_t>{3, 4, 5, 0}));
  a.stream([&](size_t b, size_t m, float* const* arr) {
    for (size_t i = 0; i < m; ++i) bad += arr[0][i] != value(0, b + i, 1) + 1.0f;
  }, true, false);
  EXPECT_EQ(order.size(), 9u);
  EXPECT_EQ(bad, 0u);
}

TEST(Spill, StreamOnDemandThreadPool) { on_demand("threads"); }

TEST(Spill, StreamOnDemandIoUring) {
  if (!have_uring()) GTEST_SKIP() << "io_uring is not available here (built without liburing, or the kernel refuses it)";
  on_demand("uring");
}

// A gated stream (ZeRO-3's update during the last backward): descending; step_ready updates a
// sub-group only when the caller says it is ready and its reads have arrived, in order, never
// waiting; ensure does nothing; reads of elements it has not updated see the old values; a
// sub-group a buffer already holds among the first ones is not read; finish updates the rest.
void gated(const std::string& backend) {
  TmpDir d("gated-" + backend);
  AioOptions o;
  o.backend = backend;
  AioEngine aio(o);
  const size_t n = 8 * 1024 + 100, G = 1024, nsub = 9;  // the last sub-group short
  SpillArrays a(d.path, "t", {"x", "y"}, n, G, 3, aio);
  fill_round0(a);  // ends holding sub-groups 6, 7, 8 in buffers 0, 1, 2
  std::vector<size_t> order;
  size_t bad = 0;
  auto update = to_round1(order, bad, G);
  const uint64_t cached0 = a.bytes_cached();
  a.begin_gated(update);
  EXPECT_EQ(a.pending(), nsub);
  // 8, 7, 6 are held: position s takes buffer s's sub-group (6 -> 0, 7 -> 1, 8 -> 2), none read
  EXPECT_EQ(a.bytes_cached() - cached0, 2u * 3 * G * sizeof(float));  // 2 arrays x (6, 7, and 8 rounded up to 4 KiB)
  a.ensure(0, n);  // no effect on a gated stream
  EXPECT_TRUE(order.empty());
  std::vector<float> got(10);
  a.read(1, 8 * G, 10, got.data());  // not updated: the values before it (allowed)
  for (size_t i = 0; i < 10; ++i) bad += got[i] != value(1, 8 * G + i, 0);
  // ready: 5 and above; the order goes 6, 7, 8 (held, in their buffers' positions), then 5, 4, ...
  auto ready = [](size_t j) { return j >= 5; };
  size_t stepped = 0;
  for (int t = 0; t < 2000 && stepped < 4; ++t) {
    stepped += a.step_ready(ready);
    if (stepped < 4) ::usleep(1000);  // sub-group 5's reads on their way (step_ready never waits)
  }
  EXPECT_EQ(order, (std::vector<size_t>{6, 7, 8, 5}));
  EXPECT_EQ(a.step_ready(ready), 0u);  // 4 is not ready
  EXPECT_EQ(a.pending(), 5u);
  a.finish();
  EXPECT_EQ(order, (std::vector<size_t>{6, 7, 8, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(a.pending(), 0u);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(not_round1(a, n), 0u);
  // the buffers now hold 2, 1, 0: not among the next gated stream's first three (8, 7, 6), so
  // everything is read; the values are the last stream's
  order.clear();
  const uint64_t cached1 = a.bytes_cached();
  a.begin_gated([&](size_t b, size_t m, float* const* arr) {
    order.push_back(b / G);
    for (size_t i = 0; i < m; ++i) bad += arr[0][i] != value(0, b + i, 1);
  });
  a.finish();
  EXPECT_EQ(a.bytes_cached(), cached1);
  EXPECT_EQ(order, (std::vector<size_t>{8, 7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(bad, 0u);
  // defer_reads: nothing is read before the first step_ready, so the buffers still hold 2, 1, 0
  // for copy_cached (the reads of 8, 7, 6 would take them)
  const uint64_t read0 = aio.bytes_read();
  a.begin_gated([&](size_t b, size_t m, float* const* arr) {
    for (size_t i = 0; i < m; ++i) bad += arr[1][i] != value(1, b + i, 1);
  }, true);
  ASSERT_TRUE(a.copy_cached(1, 5, 10, got.data()));
  for (size_t i = 0; i < 10; ++i) bad += got[i] != value(1, 5 + i, 1);
  EXPECT_EQ(a.step_ready([](size_t) { return false; }), 0u);  // the reads start; nothing is updated
  EXPECT_FALSE(a.copy_cached(1, 5, 10, got.data()));  // sub-group 0's buffer (2) now takes sub-group 6
  a.finish();
  EXPECT_EQ(aio.bytes_read() - read0, 2u * (8 * G + 1024) * sizeof(float));  // every sub-group, the last rounded up
  EXPECT_EQ(bad, 0u);
}

TEST(Spill, GatedStreamThreadPool) { gated("threads"); }

TEST(Spill, GatedStreamIoUring) {
  if (!have_uring()) GTEST_SKIP() << "io_uring is not available here (built without liburing, or the kernel refuses it)";
  gated("uring");
}

// A read chained after writes starts only once they are done: each buffer is written to one
// place and then refilled from another, the read submitted at once; the file and the buffer must
// hold the values in that order (a read that overtook its write would put the other place's
// bytes in the file).
void chained(const std::string& backend) {
  TmpDir d("chain-" + backend);
  AioOptions o;
  o.backend = backend;
  o.block_size = 4096;  // many requests, so an unordered engine would interleave them
  o.queue_depth = 8;
  o.threads = 4;
  AioEngine aio(o);
  const size_t B = 16, F = 4 * 4096 / sizeof(float);  // 16 buffers of 16 KiB
  const std::string path = d.path + "/chain.bin";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_DIRECT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(2 * B * F * sizeof(float))), 0);
  std::vector<SpillArrays::Buffer> bufs;
  for (size_t b = 0; b < B; ++b) bufs.push_back(SpillArrays::aligned_buffer(F));
  // the second half of the file: the values the reads bring back
  for (size_t b = 0; b < B; ++b) {
    for (size_t i = 0; i < F; ++i) bufs[b].get()[i] = value(2, b * F + i, 0);
    aio.wait(aio.write(fd, bufs[b].get(), F * sizeof(float), (B + b) * F * sizeof(float), path));
  }
  for (int round = 0; round < 5; ++round) {
    std::vector<AioEngine::Ticket> reads;
    for (size_t b = 0; b < B; ++b) {
      for (size_t i = 0; i < F; ++i) bufs[b].get()[i] = value(1, b * F + i, round);
      const AioEngine::Ticket w = aio.write(fd, bufs[b].get(), F * sizeof(float), b * F * sizeof(float), path);
      reads.push_back(aio.read(fd, bufs[b].get(), F * sizeof(float), (B + b) * F * sizeof(float), path, {w}));
      reads.push_back(w);
    }
    for (auto t : reads) aio.wait(t);
    size_t bad = 0;
    std::vector<float> back(F);
    for (size_t b = 0; b < B; ++b) {
      for (size_t i = 0; i < F; ++i) bad += bufs[b].get()[i] != value(2, b * F + i, 0);
      ASSERT_EQ(::pread(fd, bufs[0].get(), F * sizeof(float), static_cast<off_t>(b * F * sizeof(float))),
                static_cast<ssize_t>(F * sizeof(float)));
      for (size_t i = 0; i < F; ++i) bad += bufs[0].get()[i] != value(1, b * F + i, round);
    }
    EXPECT_EQ(bad, 0u) << "round " << round;
  }
  ::close(fd);
}

TEST(Spill, ChainedReadWaitsForItsWritesThreadPool) { chained("threads"); }

TEST(Spill, ChainedReadWaitsForItsWritesIoUring) {
  if (!have_uring()) GTEST_SKIP() << "io_uring is not available here (built without liburing, or the kernel refuses it)";
  chained("uring");
}

TEST(Spill, SubGroupAndBuffersAreBounded) {
  TmpDir d("bounds");
  AioEngine aio(AioOptions{});
  // a sub-group larger than the array: one sub-group of the array's (rounded) size, one buffer
  SpillArrays a(d.path, "b", {"x"}, 5000, 1000000000, 4, aio);
  EXPECT_EQ(a.sub_group(), 5120u);
  EXPECT_EQ(a.buffers(), 1);
  EXPECT_EQ(a.file_bytes(), 5120u * sizeof(float));
  EXPECT_TRUE(fs::exists(a.file(0)));
  const std::string f = a.file(0);
  { SpillArrays gone(d.path, "c", {"y"}, 10, 4, 2, aio); }
  EXPECT_FALSE(fs::exists(d.path + "/c.y.bin"));  // removed with its arrays
}

TEST(Spill, FullDiskMidStreamIsAnErrorNamingTheFile) {
  for (const char* backend : {"threads", "uring"}) {
    if (std::string(backend) == "uring" && !have_uring()) continue;
    TmpDir d(std::string("full-") + backend);
    ::setenv("DEEPMPI_TEST_SPILL_FAIL", "write:5", 1);
    AioOptions o;
    o.backend = backend;
    o.block_size = 4096;
    AioEngine aio(o);
    ::unsetenv("DEEPMPI_TEST_SPILL_FAIL");
    SpillArrays a(d.path, "f", {"x", "y"}, 8192, 2048, 3, aio);
    try {
      a.stream([](size_t, size_t m, float* const* arr) { std::fill(arr[0], arr[0] + m, 1.0f); }, false, true);
      a.settle();  // the stream's last writes finish behind it: their error comes here at the latest
      ADD_FAILURE() << "a failed write was not reported (" << backend << ")";
    } catch (const std::exception& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find("No space left on device"), std::string::npos) << w;
      EXPECT_NE(w.find(d.path + "/f."), std::string::npos) << w;
      EXPECT_NE(w.find("last checkpoint is untouched"), std::string::npos) << w;
    }
  }
}

TEST(Spill, NoDirectIoAndFileSizeLimitAreErrorsNamingThePath) {
  TmpDir d("nodirect");
  AioEngine aio(AioOptions{});
  ::setenv("DEEPMPI_TEST_SPILL_NO_DIRECT", "1", 1);
  try {
    SpillArrays a(d.path, "n", {"x"}, 100, 100, 1, aio);
    ADD_FAILURE() << "no error without O_DIRECT";
  } catch (const std::exception& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("does not support direct I/O (O_DIRECT)"), std::string::npos) << w;
    EXPECT_NE(w.find(d.path), std::string::npos) << w;
  }
  ::unsetenv("DEEPMPI_TEST_SPILL_NO_DIRECT");
  EXPECT_TRUE(fs::is_empty(d.path));  // nothing left behind
}

TEST(Spill, SpillDirStaleMissingAndRemoved) {
  dmpi::test::mpi_env();
  TmpDir d("dir");
  ::setenv("SLURM_JOB_ID", "unit-test", 1);
  std::string made;
  {
    dmpi::io::SpillDir s(MPI_COMM_WORLD, d.path);
    made = s.path();
    EXPECT_EQ(made, d.path + "/deepmpi-unit-test/rank0");
    EXPECT_TRUE(fs::is_directory(made));
    // a second job of the same id while the directory exists: stale, never reused
    try {
      dmpi::io::SpillDir again(MPI_COMM_WORLD, d.path);
      ADD_FAILURE() << "the stale directory was reused";
    } catch (const std::exception& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find("already exists"), std::string::npos) << w;
      EXPECT_NE(w.find("rm -rf " + made), std::string::npos) << w;
    }
  }
  EXPECT_FALSE(fs::exists(made));                       // removed at the end
  EXPECT_FALSE(fs::exists(d.path + "/deepmpi-unit-test"));
  fs::create_directories(d.path + "/deepmpi-4242/rank0");  // another (crashed) job's
  {
    dmpi::io::SpillDir s(MPI_COMM_WORLD, d.path);
    ASSERT_EQ(s.others().size(), 1u);
    EXPECT_EQ(s.others()[0], d.path + "/deepmpi-4242");
  }
  ::unsetenv("SLURM_JOB_ID");
  try {
    dmpi::io::SpillDir s(MPI_COMM_WORLD, d.path + "/missing");
    ADD_FAILURE() << "a missing nvme_path was accepted";
  } catch (const std::exception& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find(d.path + "/missing does not exist"), std::string::npos) << w;
    EXPECT_NE(w.find("mkdir -p"), std::string::npos) << w;
  }
}

}  // namespace
