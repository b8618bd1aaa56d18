#include "comm/nccl_communicator.hpp"

#ifdef DEEPMPI_HAVE_NCCL
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "comm/comm_logger.hpp"
#include "comm/mpi_communicator.hpp"
#include "base/error.hpp"
#include "base/system.hpp"

namespace dmpi::comm {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F16: return ncclFloat16;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::F64: return ncclFloat64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

int NcclCommunicator::device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

// ---- NcclWork ----

NcclWork::NcclWork(NcclCommunicator* comm, const char* op, long long seq, size_t bytes)
    : comm_(comm), op_(op), seq_(seq), bytes_(bytes), t0_(now_seconds()) {
  DMPI_CHECK_CUDA(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
}

NcclWork::~NcclWork() {
  if (!done_) {
    try {
      wait();
    } catch (...) {
    }
  }
  if (event_) cudaEventDestroy(event_);
}

bool NcclWork::test() {
  if (done_) return true;
  cudaError_t e = cudaEventQuery(event_);
  if (e == cudaErrorNotReady) return false;
  DMPI_CHECK_CUDA(e);
  finish();
  return true;
}

void NcclWork::wait() {
  const double start = now_seconds();
  while (!test()) {
    double waited = now_seconds() - start;
    if (waited > comm_->timeout()) comm_->hang(op_, seq_, bytes_, waited);
    usleep(20);
  }
}

void NcclWork::finish() {
  done_ = true;
  if (scratch) {
    cudaFree(scratch);
    scratch = nullptr;
  }
  CommLogger::instance().maybe_record(op_, comm_->name(), comm_->size(), bytes_, now_seconds() - t0_, seq_);
}

// ---- NcclCommunicator ----

NcclCommunicator::NcclCommunicator(MPI_Comm mpi_comm, std::string name, int device)
    : name_(std::move(name)), device_(device), timeout_(default_comm_timeout()) {
  DMPI_CHECK_MPI(MPI_Comm_rank(mpi_comm, &rank_));
  DMPI_CHECK_MPI(MPI_Comm_size(mpi_comm, &size_));
  {
    MpiCommunicator view(mpi_comm, name_, false);  // for the world-rank list
    world_ranks_ = view.world_ranks();
  }
  const int n = device_count();
  DMPI_REQUIRE(n > 0, "NCCL communicator '" << name_ << "': no CUDA device is visible to this rank "
                                            << "(check CUDA_VISIBLE_DEVICES and --gpus-per-task)");
  DMPI_REQUIRE(device >= 0 && device < n, "NCCL communicator '" << name_ << "': device " << device << " outside [0, " << n << ")");
  DMPI_CHECK_CUDA(cudaSetDevice(device));
  ncclUniqueId id;
  if (rank_ == 0) DMPI_CHECK_NCCL(ncclGetUniqueId(&id));
  DMPI_CHECK_MPI(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi_comm));
  DMPI_CHECK_NCCL(ncclCommInitRank(&comm_, size_, id, rank_));
  DMPI_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  DMPI_CHECK_CUDA(cudaMalloc(&barrier_buf_, sizeof(float)));
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) ncclCommDestroy(comm_);
  if (stream_) cudaStreamDestroy(stream_);
  if (barrier_buf_) cudaFree(barrier_buf_);
}

std::unique_ptr<NcclWork> NcclCommunicator::start(const char* op, size_t bytes) {
  return std::make_unique<NcclWork>(this, op, ++seq_, bytes);
}

std::unique_ptr<NcclWork> NcclCommunicator::finish_enqueue(std::unique_ptr<NcclWork> w) {
  DMPI_CHECK_CUDA(cudaEventRecord(w->event(), stream_));
  return w;
}

void NcclCommunicator::hang(const char* op, long long seq, size_t bytes, double waited) {
  std::fprintf(stderr,
               "deepmpi: HANG on world rank %d (%s): waited %.1f s (timeout %.1f s) in %s #%lld on NCCL group '%s' "
               "(%d ranks), %zu bytes; aborting the NCCL communicator and the job\n",
               world_ranks_[rank_], hostname().c_str(), waited, timeout_, op, seq, name_.c_str(), size_, bytes);
  std::fflush(stderr);
  ncclCommAbort(comm_);
  comm_ = nullptr;
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();
}

WorkPtr NcclCommunicator::iall_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) {
  auto w = start("all_reduce", count * dtype_size(t));
  DMPI_CHECK_NCCL(ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), comm_, stream_));
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::ireduce_scatter(const void* send, void* recv, size_t recv_count, DType t, ReduceOp op) {
  auto w = start("reduce_scatter", recv_count * dtype_size(t) * size_);
  if (send == recv) {  // in place: the result lands at the start of the buffer
    const size_t bytes = recv_count * dtype_size(t) * size_;
    DMPI_CHECK_CUDA(cudaMalloc(&w->scratch, bytes));
    DMPI_CHECK_CUDA(cudaMemcpyAsync(w->scratch, send, bytes, cudaMemcpyDeviceToDevice, stream_));
    send = w->scratch;
  }
  DMPI_CHECK_NCCL(ncclReduceScatter(send, recv, recv_count, nccl_type(t), nccl_op(op), comm_, stream_));
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::iall_gather(const void* send, size_t count, void* recv, DType t) {
  auto w = start("all_gather", count * dtype_size(t) * size_);
  DMPI_CHECK_NCCL(ncclAllGather(send, recv, count, nccl_type(t), comm_, stream_));  // in place is native
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::iall_gatherv(const void* send, void* recv, const std::vector<size_t>& counts, DType t) {
  DMPI_REQUIRE(static_cast<int>(counts.size()) == size_, "all_gatherv on NCCL group '" << name_ << "': "
                                                             << counts.size() << " counts for " << size_ << " ranks");
  const size_t es = dtype_size(t);
  size_t total = 0;
  for (auto c : counts) total += c;
  auto w = start("all_gatherv", total * es);
  DMPI_CHECK_NCCL(ncclGroupStart());
  size_t displ = 0;
  for (int r = 0; r < size_; ++r) {
    char* dst = static_cast<char*>(recv) + displ * es;
    DMPI_CHECK_NCCL(ncclBroadcast(r == rank_ ? send : dst, dst, counts[r], nccl_type(t), r, comm_, stream_));
    displ += counts[r];
  }
  DMPI_CHECK_NCCL(ncclGroupEnd());
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::ibroadcast(void* buf, size_t count, DType t, int root) {
  DMPI_REQUIRE(root >= 0 && root < size_, "broadcast on NCCL group '" << name_ << "': root " << root << " outside [0, " << size_ << ")");
  auto w = start("broadcast", count * dtype_size(t));
  DMPI_CHECK_NCCL(ncclBroadcast(buf, buf, count, nccl_type(t), root, comm_, stream_));
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::iall_to_all(const void* send, void* recv, size_t count_per_rank, DType t) {
  std::vector<size_t> c(size_, count_per_rank);
  return iall_to_allv(send, c, recv, c, t);
}

WorkPtr NcclCommunicator::iall_to_allv(const void* send, const std::vector<size_t>& send_counts, void* recv,
                                       const std::vector<size_t>& recv_counts, DType t) {
  DMPI_REQUIRE(static_cast<int>(send_counts.size()) == size_ && static_cast<int>(recv_counts.size()) == size_,
               "all_to_allv on NCCL group '" << name_ << "': counts must have " << size_ << " entries");
  const size_t es = dtype_size(t);
  size_t send_total = 0;
  for (auto c : send_counts) send_total += c;
  auto w = start(send_counts == recv_counts ? "all_to_all" : "all_to_allv", send_total * es);
  if (send == recv) {  // in place through a device copy
    DMPI_CHECK_CUDA(cudaMalloc(&w->scratch, send_total * es));
    DMPI_CHECK_CUDA(cudaMemcpyAsync(w->scratch, send, send_total * es, cudaMemcpyDeviceToDevice, stream_));
    send = w->scratch;
  }
  DMPI_CHECK_NCCL(ncclGroupStart());
  size_t sd = 0, rd = 0;
  for (int r = 0; r < size_; ++r) {
    DMPI_CHECK_NCCL(ncclSend(static_cast<const char*>(send) + sd * es, send_counts[r], nccl_type(t), r, comm_, stream_));
    DMPI_CHECK_NCCL(ncclRecv(static_cast<char*>(recv) + rd * es, recv_counts[r], nccl_type(t), r, comm_, stream_));
    sd += send_counts[r];
    rd += recv_counts[r];
  }
  DMPI_CHECK_NCCL(ncclGroupEnd());
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::isend(const void* buf, size_t count, DType t, int dst, int tag) {
  DMPI_REQUIRE(tag == 0, "NCCL send/recv have no tags (got tag " << tag << "); order the calls instead");
  auto w = start("send", count * dtype_size(t));
  DMPI_CHECK_NCCL(ncclSend(buf, count, nccl_type(t), dst, comm_, stream_));
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::irecv(void* buf, size_t count, DType t, int src, int tag) {
  DMPI_REQUIRE(tag == 0, "NCCL send/recv have no tags (got tag " << tag << "); order the calls instead");
  auto w = start("recv", count * dtype_size(t));
  DMPI_CHECK_NCCL(ncclRecv(buf, count, nccl_type(t), src, comm_, stream_));
  return finish_enqueue(std::move(w));
}

WorkPtr NcclCommunicator::ibarrier() {
  auto w = start("barrier", 0);
  DMPI_CHECK_NCCL(ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, comm_, stream_));
  return finish_enqueue(std::move(w));
}

}  // namespace dmpi::comm
#endif  // DEEPMPI_HAVE_NCCL
