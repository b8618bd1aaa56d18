// Hang watchdog: one background thread per process (needs MPI_THREAD_MULTIPLE).
//  * It answers the other ranks' "where are you?" queries for every live communicator, even
//    while this rank computes, so a hang report can say "rank 3 is not in an op on this group;
//    its last op here was all_reduce #41".
//  * With DEEPMPI_BLOCKING_MPI=1 blocking collectives call the blocking MPI functions and the
//    main thread marks the op it is blocked in (enter/leave); the watchdog then enforces the
//    timeout itself. By default waits are bounded in the calling thread (MpiWork::wait), which
//    can always end the job with MPI_Abort.
// Opt-in with DEEPMPI_WATCHDOG=1 (MpiEnv then asks for MPI_THREAD_MULTIPLE): with the thread
// alive, Open MPI 4.1's mpiexec sometimes hung while tearing down an aborted job. Off, wait
// loops answer the queries themselves and a computing rank shows as "no answer".
#pragma once
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace dmpi::comm {

class MpiCommunicator;

class Watchdog {
 public:
  static Watchdog& instance();
  // Starts the thread if MPI provides MPI_THREAD_MULTIPLE; idempotent.
  void start();
  void stop();  // before MPI_Finalize
  bool active() const { return running_.load(); }
  bool on_watchdog_thread() const { return running_.load() && std::this_thread::get_id() == thread_.get_id(); }
  void add(MpiCommunicator* c);
  void remove(MpiCommunicator* c);
  // `enforce`: the watchdog ends the job when the op outlives the timeout (blocking-MPI mode);
  // otherwise the waiting thread does that itself and the mark only serves the answers.
  void enter(MpiCommunicator* c, const char* op, long long seq, size_t bytes, bool enforce);
  void leave();

 private:
  void loop();
  std::mutex mu_;
  std::set<MpiCommunicator*> comms_;
  std::thread thread_;
  std::atomic<bool> running_{false}, stop_{false};
  // the op the main thread is blocked in
  MpiCommunicator* cur_comm_ = nullptr;
  const char* cur_op_ = nullptr;
  long long cur_seq_ = 0;
  size_t cur_bytes_ = 0;
  double cur_start_ = 0;
  bool cur_enforce_ = false;
};

}  // namespace dmpi::comm
