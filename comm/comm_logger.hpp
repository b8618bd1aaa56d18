// Communication logging like DeepSpeed's comms_logger (ds_config `comms_logger`): per op and
// group, count, bytes, time, algbw and busbw; a summary table at the end of a run, printed
// on rank 0 and aggregated over ranks.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include <mpi.h>

namespace dmpi::comm {

struct CommLogConfig {
  bool enabled = false;
  bool verbose = false;     // print every op as it completes
  bool prof_all = true;     // log every op; false: only prof_ops
  std::vector<std::string> prof_ops;  // e.g. {"all_reduce", "all_gather"}
  bool debug = false;       // add the sequence number to verbose lines
};

struct CommStat {
  long long count = 0;
  double bytes = 0;       // total bytes (nccl-tests sizing) over all calls
  double seconds = 0;     // total time from post to observed completion
};

class CommLogger {
 public:
  static CommLogger& instance();
  void configure(const CommLogConfig& c);
  const CommLogConfig& config() const { return cfg_; }
  bool wants(const std::string& op) const;
  // record() when logging is enabled and `op` is one of the profiled ops (every backend's hook).
  void maybe_record(const std::string& op, const std::string& group, int group_size, size_t bytes, double seconds,
                    long long seq) {
    if (cfg_.enabled && wants(op)) record(op, group, group_size, bytes, seconds, seq);
  }
  // op, group name and size, message bytes (nccl-tests sizing), seconds, sequence number
  void record(const std::string& op, const std::string& group, int group_size, size_t bytes, double seconds,
              long long seq);
  // Gathers every rank's records to rank 0 of `comm` and prints the table there.
  // Returns the table text on rank 0 (empty elsewhere).
  std::string summary(MPI_Comm comm);
  void reset();
  std::map<std::tuple<std::string, std::string, int, size_t>, CommStat> local() const;

 private:
  CommLogConfig cfg_;
  mutable std::mutex mu_;
  // (op, group, group size, message bytes) -> stats
  std::map<std::tuple<std::string, std::string, int, size_t>, CommStat> stats_;
};

}  // namespace dmpi::comm
