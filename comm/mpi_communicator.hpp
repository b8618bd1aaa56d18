// The MPI backend: host buffers, non-blocking MPI collectives, bounded waits.
#pragma once
#include <mpi.h>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.hpp"

namespace dmpi::comm {

class MpiCommunicator;

// Seconds every blocking wait may take before the hang report (DEEPMPI_COMM_TIMEOUT, default 1800).
double default_comm_timeout();

class MpiWork final : public Work {
 public:
  MpiWork(MpiCommunicator* comm, const char* op, long long seq, size_t bytes);
  ~MpiWork() override;  // an unfinished op is waited for: its buffers must outlive it
  bool test() override;
  void wait() override;
  MPI_Request* req() { return &req_; }
  // Runs once after completion (Avg division, copies out of scratch buffers).
  std::function<void()> on_complete;
  std::vector<unsigned char> scratch;

 private:
  void finish();
  MpiCommunicator* comm_;
  const char* op_;
  long long seq_;
  size_t bytes_;
  double t0_;
  MPI_Request req_ = MPI_REQUEST_NULL;
  bool done_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` when `owned` (freed in the destructor, which is collective).
  MpiCommunicator(MPI_Comm comm, std::string name, bool owned);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const char* backend() const override { return "mpi"; }
  std::vector<int> world_ranks() const override { return world_ranks_; }
  MPI_Comm comm() const { return comm_; }
  void set_timeout(double seconds) { timeout_ = seconds; }
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

  // Blocking calls go to the blocking MPI collectives (Open MPI's tuned algorithms) with the
  // watchdog bounding them; without the watchdog, to the non-blocking path and a bounded wait.
  void all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) override;
  void reduce_scatter(const void* send, void* recv, size_t recv_count, DType t, ReduceOp op) override;
  void all_gather(const void* send, size_t count, void* recv, DType t) override;
  void all_gatherv(const void* send, void* recv, const std::vector<size_t>& counts, DType t) override;
  void broadcast(void* buf, size_t count, DType t, int root) override;
  void all_to_all(const void* send, void* recv, size_t count_per_rank, DType t) override;
  void all_to_allv(const void* send, const std::vector<size_t>& sc, void* recv, const std::vector<size_t>& rc,
                   DType t) override;
  void barrier() override;

  // What each member is doing, as far as it answers within `wait_s` seconds: for member r,
  // answered[r], and (ops entered, op code, 1 if waiting in it) in state[3r..3r+2].
  struct MemberStates {
    std::vector<bool> answered;
    std::vector<long long> state;
  };
  MemberStates query_members(const char* op, long long seq, double wait_s);
  static const char* op_name_of(long long code);

  // Called by MpiWork when a wait exceeds the timeout: prints the report and aborts.
  [[noreturn]] void hang(const char* op, long long seq, size_t bytes, double waited);
  // Answers other members' "where are you?" queries: with the op this rank is blocked in on
  // this group (`waiting_op`, `waiting_seq`), or, when null, with the last op it entered here.
  // Called by the watchdog thread, or from slow wait loops when there is no watchdog.
  void answer_queries(const char* waiting_op, long long waiting_seq);

 private:
  std::unique_ptr<MpiWork> start(const char* op, size_t bytes);
  template <class F>
  void blocking(const char* op, size_t bytes, F&& call);
  MPI_Comm comm_;
  bool owned_;
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;
  double timeout_;
  std::atomic<long long> seq_{0}, last_op_{-1};  // read by the watchdog thread
  // Hang diagnostics travel on a duplicate of the group's communicator, so they never match
  // the program's own messages.
  MPI_Comm diag_ = MPI_COMM_NULL;
};

// MPI datatypes and ops used for each payload type.
MPI_Datatype mpi_type(DType t);
MPI_Op mpi_op(DType t, ReduceOp op);

}  // namespace dmpi::comm
