// Hang watchdog: one background thread per process (needs MPI_THREAD_MULTIPLE).
//  * The main thread marks the op it is blocked in (enter/leave); when that op outlives its
//    communicator's timeout the watchdog asks the other members where they are, prints the
//    report (op, group, sequence number, bytes, which ranks have not arrived) and aborts.
//  * It answers the other ranks' "where are you?" queries for every live communicator, even
//    while this rank computes, so a report can say "rank 3 is computing; its last op on this
//    group was all_reduce #41".
// Without MPI_THREAD_MULTIPLE it stays off and communicators fall back to non-blocking MPI
// calls with a bounded wait loop in the calling thread.
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
  void enter(MpiCommunicator* c, const char* op, long long seq, size_t bytes);
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
};

}  // namespace dmpi::comm
