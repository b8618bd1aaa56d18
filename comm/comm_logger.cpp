#include "comm/comm_logger.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "comm/communicator.hpp"
#include "base/error.hpp"

namespace dmpi::comm {

CommLogger& CommLogger::instance() {
  static CommLogger logger;
  return logger;
}

void CommLogger::configure(const CommLogConfig& c) {
  std::lock_guard<std::mutex> g(mu_);
  cfg_ = c;
}

bool CommLogger::wants(const std::string& op) const {
  if (cfg_.prof_all) return true;
  return std::find(cfg_.prof_ops.begin(), cfg_.prof_ops.end(), op) != cfg_.prof_ops.end();
}

void CommLogger::record(const std::string& op, const std::string& group, int group_size, size_t bytes,
                        double seconds, long long seq) {
  std::lock_guard<std::mutex> g(mu_);
  auto& s = stats_[{op, group, group_size, bytes}];
  s.count += 1;
  s.bytes += static_cast<double>(bytes);
  s.seconds += seconds;
  if (cfg_.verbose) {
    double algbw = seconds > 0 ? bytes / seconds / 1e9 : 0.0;
    std::printf("[comm] %s group=%s ranks=%d bytes=%zu time=%.3f ms algbw=%.3f GB/s busbw=%.3f GB/s",
                op.c_str(), group.c_str(), group_size, bytes, seconds * 1e3, algbw, algbw * bus_factor(op, group_size));
    if (cfg_.debug) std::printf(" seq=%lld", seq);
    std::printf("\n");
  }
}

void CommLogger::reset() {
  std::lock_guard<std::mutex> g(mu_);
  stats_.clear();
}

std::map<std::tuple<std::string, std::string, int, size_t>, CommStat> CommLogger::local() const {
  std::lock_guard<std::mutex> g(mu_);
  return stats_;
}

std::string CommLogger::summary(MPI_Comm comm) {
  int rank = 0, size = 1;
  DMPI_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  DMPI_CHECK_MPI(MPI_Comm_size(comm, &size));
  std::ostringstream mine;
  for (auto& [k, s] : local())
    mine << std::get<0>(k) << '\t' << std::get<1>(k) << '\t' << std::get<2>(k) << '\t' << std::get<3>(k) << '\t'
         << s.count << '\t' << s.seconds << '\n';
  std::string text = mine.str();
  int len = static_cast<int>(text.size());
  std::vector<int> lens(size), displs(size);
  DMPI_CHECK_MPI(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, comm));
  std::string all;
  if (rank == 0) {
    int total = 0;
    for (int r = 0; r < size; ++r) displs[r] = total, total += lens[r];
    all.resize(static_cast<size_t>(total));
  }
  DMPI_CHECK_MPI(MPI_Gatherv(text.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0, comm));
  if (rank != 0) return {};
  // Per (op, group, ranks, message size): the count (max over ranks) and the mean over the
  // reporting ranks of their total time.
  struct Agg {
    long long count = 0;
    double seconds = 0;
    int ranks = 0;
  };
  std::map<std::tuple<std::string, std::string, int, size_t>, Agg> agg;
  std::istringstream in(all);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string op, group;
    int gs;
    size_t bytes;
    long long count;
    double secs;
    std::getline(ls, op, '\t');
    std::getline(ls, group, '\t');
    ls >> gs >> bytes >> count >> secs;
    auto& a = agg[{op, group, gs, bytes}];
    a.count = std::max(a.count, count);
    a.seconds += secs;
    a.ranks += 1;
  }
  std::ostringstream os;
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%-15s %-6s %5s %12s %8s %12s %12s %10s %10s\n", "op", "group", "ranks", "msg bytes",
                "count", "total ms", "avg us", "algbw GB/s", "busbw GB/s");
  os << "comms summary (mean over " << size << " ranks)\n" << buf;
  for (auto& [k, a] : agg) {
    double mean_total = a.seconds / a.ranks, per_op = a.count ? mean_total / static_cast<double>(a.count) : 0.0;
    double algbw = per_op > 0 ? static_cast<double>(std::get<3>(k)) / per_op / 1e9 : 0.0;
    std::snprintf(buf, sizeof(buf), "%-15s %-6s %5d %12zu %8lld %12.3f %12.2f %10.3f %10.3f\n", std::get<0>(k).c_str(),
                  std::get<1>(k).c_str(), std::get<2>(k), std::get<3>(k), a.count, mean_total * 1e3, per_op * 1e6,
                  algbw, algbw * bus_factor(std::get<0>(k), std::get<2>(k)));
    os << buf;
  }
  return os.str();
}

}  // namespace dmpi::comm
