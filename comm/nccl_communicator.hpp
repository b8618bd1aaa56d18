// The NCCL backend: device buffers, ops enqueued on the communicator's CUDA stream ("enqueued,
// not completed": a Work completes when the op has run on the GPU). The NCCL unique id is made
// by group rank 0 and broadcast over the group's MPI communicator. Built with
// -DDEEPMPI_ENABLE_CUDA=ON; without a GPU it compiles, and device_count() returns 0.
#pragma once
#ifdef DEEPMPI_HAVE_NCCL
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "base/error.hpp"

#define DMPI_CHECK_CUDA(call)                                                                   \
  do {                                                                                          \
    cudaError_t dmpi_e_ = (call);                                                               \
    if (dmpi_e_ != cudaSuccess) DMPI_FAIL(#call << " failed: " << cudaGetErrorString(dmpi_e_)); \
  } while (0)
#define DMPI_CHECK_NCCL(call)                                                                      \
  do {                                                                                             \
    ncclResult_t dmpi_r_ = (call);                                                                 \
    if (dmpi_r_ != ncclSuccess) DMPI_FAIL(#call << " failed: " << ncclGetErrorString(dmpi_r_));    \
  } while (0)

namespace dmpi::comm {

class NcclCommunicator;

class NcclWork final : public Work {
 public:
  NcclWork(NcclCommunicator* comm, const char* op, long long seq, size_t bytes);
  ~NcclWork() override;
  bool test() override;
  void wait() override;
  cudaEvent_t event() const { return event_; }
  void* scratch = nullptr;  // device memory freed at completion

 private:
  void finish();
  NcclCommunicator* comm_;
  const char* op_;
  long long seq_;
  size_t bytes_;
  double t0_;
  cudaEvent_t event_ = nullptr;
  bool done_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `mpi_comm`. `device`: the CUDA device of this rank (usually the node-local rank).
  NcclCommunicator(MPI_Comm mpi_comm, std::string name, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // CUDA devices visible to this process; 0 when there is no GPU or no driver.
  static int device_count();

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const char* backend() const override { return "nccl"; }
  std::vector<int> world_ranks() const override { return world_ranks_; }
  cudaStream_t stream() const { return stream_; }
  double timeout() const { return timeout_; }

  WorkPtr iall_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) override;
  WorkPtr ireduce_scatter(const void* send, void* recv, size_t recv_count, DType t, ReduceOp op) override;
  WorkPtr iall_gather(const void* send, size_t count, void* recv, DType t) override;
  WorkPtr iall_gatherv(const void* send, void* recv, const std::vector<size_t>& counts, DType t) override;
  WorkPtr ibroadcast(void* buf, size_t count, DType t, int root) override;
  WorkPtr iall_to_all(const void* send, void* recv, size_t count_per_rank, DType t) override;
  WorkPtr iall_to_allv(const void* send, const std::vector<size_t>& send_counts, void* recv,
                       const std::vector<size_t>& recv_counts, DType t) override;
  WorkPtr isend(const void* buf, size_t count, DType t, int dst, int tag = 0) override;
  WorkPtr irecv(void* buf, size_t count, DType t, int src, int tag = 0) override;
  WorkPtr ibarrier() override;

  [[noreturn]] void hang(const char* op, long long seq, size_t bytes, double waited);

 private:
  std::unique_ptr<NcclWork> finish_enqueue(std::unique_ptr<NcclWork> w);
  std::unique_ptr<NcclWork> start(const char* op, size_t bytes);
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::string name_;
  int rank_ = 0, size_ = 1, device_ = 0;
  std::vector<int> world_ranks_;
  double timeout_;
  long long seq_ = 0;
  void* barrier_buf_ = nullptr;
};

ncclDataType_t nccl_type(DType t);
ncclRedOp_t nccl_op(ReduceOp op);

}  // namespace dmpi::comm
#endif  // DEEPMPI_HAVE_NCCL
