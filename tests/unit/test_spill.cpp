// The NVMe spill engine (io/spill.hpp) on its own: arrays streamed in sub-groups through few
// buffers hold exactly what was written, through io_uring and through the thread pool, for every
// buffer count and a length that is not a multiple of a sub-group; ranges read and written
// synchronously agree with the streamed view; the HDF5 index reads the same values through
// HDF5 itself; a full disk, a file system without O_DIRECT, a missing nvme_path and a stale
// directory are errors naming the path.
#include <gtest/gtest.h>
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
  // The buffers outlive a stream and the streams alternate direction: the second (down) finds
  // the first's last `buffers` sub-groups in memory (10 full ones and the short one: 4096 bytes
  // on disk), the third (up) the second's last ones (0 .. buffers-1) less sub-group 0, which the
  // write of elements 3-4 made stale. Every other sub-group is read from the file.
  const auto S = static_cast<size_t>(buffers);
  const size_t full = 2048 * sizeof(float), file = 10 * full + 4096;
  EXPECT_EQ(a.bytes_cached(), 3 * (4096 + (S - 1) * full) + 3 * (S - 1) * full);
  EXPECT_GE(aio.bytes_read() + a.bytes_cached(), 2 * 3 * file);
  // copy_cached: the third stream ended holding sub-groups 11-S .. 10 (the tail that write() put)
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
