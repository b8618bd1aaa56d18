// One group, one backend: the same calls on every backend (MPI for host buffers, NCCL for
// device buffers). Non-blocking calls (prefix i) return a Work handle; blocking calls are
// the non-blocking call plus wait(). Every wait is bounded by the communicator's timeout:
// on expiry the rank prints the collective (op, group, sequence number, bytes) and which
// ranks of the group have not arrived, then aborts the job.
//
// Conventions: counts are elements. In-place: pass send == recv for all_reduce and
// all_to_all; for all_gather pass send == recv + rank * count; for reduce_scatter pass
// send == recv (the result lands at the start of the buffer). v-variants take per-rank
// counts; displacements are their prefix sums (contiguous). fp16/bf16 reductions add in fp32
// (one rounding per pairwise combination).
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "comm/dtype.hpp"

namespace dmpi::comm {

class Work {
 public:
  virtual ~Work() = default;
  virtual bool test() = 0;  // true once complete (non-blocking)
  virtual void wait() = 0;  // blocks; bounded by the timeout
};
using WorkPtr = std::unique_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;     // "dp", "tp", "world", ...
  virtual const char* backend() const = 0;         // "mpi" | "nccl"
  virtual std::vector<int> world_ranks() const = 0;  // members, in group-rank order

  virtual WorkPtr iall_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) = 0;
  // send holds size() * recv_count elements; rank r receives the reduction of block r.
  virtual WorkPtr ireduce_scatter(const void* send, void* recv, size_t recv_count, DType t, ReduceOp op) = 0;
  virtual WorkPtr iall_gather(const void* send, size_t count, void* recv, DType t) = 0;
  virtual WorkPtr iall_gatherv(const void* send, void* recv, const std::vector<size_t>& counts, DType t) = 0;
  virtual WorkPtr ibroadcast(void* buf, size_t count, DType t, int root) = 0;
  virtual WorkPtr iall_to_all(const void* send, void* recv, size_t count_per_rank, DType t) = 0;
  virtual WorkPtr iall_to_allv(const void* send, const std::vector<size_t>& send_counts, void* recv,
                               const std::vector<size_t>& recv_counts, DType t) = 0;
  virtual WorkPtr isend(const void* buf, size_t count, DType t, int dst, int tag = 0) = 0;
  virtual WorkPtr irecv(void* buf, size_t count, DType t, int src, int tag = 0) = 0;
  virtual WorkPtr ibarrier() = 0;

  virtual void all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) {
    iall_reduce(send, recv, count, t, op)->wait();
  }
  virtual void reduce_scatter(const void* send, void* recv, size_t recv_count, DType t, ReduceOp op) {
    ireduce_scatter(send, recv, recv_count, t, op)->wait();
  }
  virtual void all_gather(const void* send, size_t count, void* recv, DType t) { iall_gather(send, count, recv, t)->wait(); }
  virtual void all_gatherv(const void* send, void* recv, const std::vector<size_t>& counts, DType t) {
    iall_gatherv(send, recv, counts, t)->wait();
  }
  virtual void broadcast(void* buf, size_t count, DType t, int root) { ibroadcast(buf, count, t, root)->wait(); }
  virtual void all_to_all(const void* send, void* recv, size_t count_per_rank, DType t) {
    iall_to_all(send, recv, count_per_rank, t)->wait();
  }
  virtual void all_to_allv(const void* send, const std::vector<size_t>& sc, void* recv, const std::vector<size_t>& rc, DType t) {
    iall_to_allv(send, sc, recv, rc, t)->wait();
  }
  void send(const void* buf, size_t count, DType t, int dst, int tag = 0) { isend(buf, count, t, dst, tag)->wait(); }
  void recv(void* buf, size_t count, DType t, int src, int tag = 0) { irecv(buf, count, t, src, tag)->wait(); }
  virtual void barrier() { ibarrier()->wait(); }
};

// nccl-tests conventions: the bytes an op is sized by, and busbw = algbw * factor.
double bus_factor(const std::string& op, int nranks);

}  // namespace dmpi::comm
