// The NCCL backend against host references. Skipped (reported as skipped, not passed) when
// no CUDA device is visible, as on the CPU-only build machines.
#include <gtest/gtest.h>

#include <vector>

#include "comm/nccl_communicator.hpp"
#include "base/error.hpp"

using namespace dmpi::comm;

TEST(Nccl, AllReduceAllGatherBroadcastAgainstHost) {
  if (NcclCommunicator::device_count() == 0) GTEST_SKIP() << "no CUDA device visible: NCCL backend is compile-only here";
  int local = 0;
  {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
  }
  NcclCommunicator c(MPI_COMM_WORLD, "world", local % NcclCommunicator::device_count());
  const size_t n = 1 << 20;
  const int me = c.rank(), size = c.size();
  std::vector<float> h(n), out(n * size);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>((me + 1) * (i % 13));
  float *d_in = nullptr, *d_out = nullptr;
  DMPI_CHECK_CUDA(cudaMalloc(&d_in, n * sizeof(float)));
  DMPI_CHECK_CUDA(cudaMalloc(&d_out, n * size * sizeof(float)));
  DMPI_CHECK_CUDA(cudaMemcpy(d_in, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  c.all_reduce(d_in, d_out, n, DType::F32, ReduceOp::Sum);
  DMPI_CHECK_CUDA(cudaMemcpy(out.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < n; i += 997) ASSERT_EQ(out[i], static_cast<float>(size * (size + 1) / 2 * (i % 13)));
  c.all_gather(d_in, n, d_out, DType::F32);
  DMPI_CHECK_CUDA(cudaMemcpy(out.data(), d_out, n * size * sizeof(float), cudaMemcpyDeviceToHost));
  for (int r = 0; r < size; ++r)
    for (size_t i = 0; i < n; i += 997) ASSERT_EQ(out[r * n + i], static_cast<float>((r + 1) * (i % 13)));
  c.broadcast(d_in, n, DType::F32, 0);
  DMPI_CHECK_CUDA(cudaMemcpy(h.data(), d_in, n * sizeof(float), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < n; i += 997) ASSERT_EQ(h[i], static_cast<float>(1 * (i % 13)));
  c.barrier();
  cudaFree(d_in);
  cudaFree(d_out);
}

TEST(Nccl, DeviceCountIsZeroWithoutAGpuAndNeverThrows) {
  int n = NcclCommunicator::device_count();
  EXPECT_GE(n, 0);
  if (n == 0) {
    // constructing a communicator without a device is a clear error, not a crash
    try {
      NcclCommunicator c(MPI_COMM_WORLD, "world", 0);
      FAIL() << "constructed an NCCL communicator without a device";
    } catch (const dmpi::Error& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
    }
  }
}
