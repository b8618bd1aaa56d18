#include "comm/watchdog.hpp"

#include <mpi.h>
#include <unistd.h>

#include "comm/mpi_communicator.hpp"
#include "base/system.hpp"

namespace dmpi::comm {

Watchdog& Watchdog::instance() {
  static Watchdog w;
  return w;
}

void Watchdog::start() {
  if (running_.load()) return;
  int provided = 0, init = 0;
  MPI_Initialized(&init);
  if (!init) return;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) return;
  if (env("DEEPMPI_WATCHDOG").value_or("0") != "1") return;  // opt-in
  stop_ = false;
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void Watchdog::stop() {
  if (!running_.load()) return;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

void Watchdog::add(MpiCommunicator* c) {
  std::lock_guard<std::mutex> g(mu_);
  comms_.insert(c);
}

void Watchdog::remove(MpiCommunicator* c) {
  std::lock_guard<std::mutex> g(mu_);
  comms_.erase(c);
  if (cur_comm_ == c) cur_comm_ = nullptr;
}

void Watchdog::enter(MpiCommunicator* c, const char* op, long long seq, size_t bytes, bool enforce) {
  if (!running_.load()) return;
  std::lock_guard<std::mutex> g(mu_);
  cur_comm_ = c, cur_op_ = op, cur_seq_ = seq, cur_bytes_ = bytes, cur_start_ = now_seconds(), cur_enforce_ = enforce;
}

void Watchdog::leave() {
  if (!running_.load()) return;
  std::lock_guard<std::mutex> g(mu_);
  cur_comm_ = nullptr;
}

void Watchdog::loop() {
  while (!stop_.load()) {
    MpiCommunicator* hung = nullptr;
    const char* op = nullptr;
    long long seq = 0;
    size_t bytes = 0;
    double waited = 0;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (MpiCommunicator* c : comms_) c->answer_queries(c == cur_comm_ ? cur_op_ : nullptr, cur_seq_);
      if (cur_comm_ && cur_enforce_) {
        waited = now_seconds() - cur_start_;
        if (waited > cur_comm_->timeout()) hung = cur_comm_, op = cur_op_, seq = cur_seq_, bytes = cur_bytes_;
      }
    }
    if (hung) hung->hang(op, seq, bytes, waited);  // reports and aborts; never returns
    usleep(20000);
  }
}

}  // namespace dmpi::comm
