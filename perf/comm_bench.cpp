// Collective bandwidth in nccl-tests' format, deepmpi's communicator and the same op through
// raw MPI side by side in one run, for every group of a layout. Also the ping-pong bandwidth
// between two ranks, the machine's point-to-point ceiling.
//
//   mpiexec -n 2 build/release/perf/comm_bench [--ops all_reduce,all_gather,reduce_scatter,broadcast,all_to_all]
//       [--min-bytes 8] [--max-bytes 268435456] [--iters 20] [--tp 1] [--pp 1]
//
// size = bytes of the full buffer (nccl-tests: all_gather's output, reduce_scatter's input),
// time = mean per op over the iterations, the maximum over ranks, the median of 5 rounds that
// alternate with raw MPI; algbw = size / time;
// busbw = algbw x nccl-tests' factor (all_reduce 2(n-1)/n; all_gather, reduce_scatter,
// all_to_all (n-1)/n; broadcast 1). #wrong counts elements that differ from the expected result.
#include <mpi.h>

#include <algorithm>
#include <functional>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "comm/mpi_communicator.hpp"
#include "comm/mpi_env.hpp"
#include "comm/process_groups.hpp"
#include "base/args.hpp"
#include "base/error.hpp"
#include "base/system.hpp"

using namespace dmpi;
using namespace dmpi::comm;

namespace {

struct Result {
  double time_us = 0, algbw = 0, busbw = 0;
};

double max_over(MPI_Comm c, double v) {
  double m = 0;
  DMPI_CHECK_MPI(MPI_Allreduce(&v, &m, 1, MPI_DOUBLE, MPI_MAX, c));
  return m;
}

// Runs `op` iters times after warm-up and returns the per-op time (max over ranks).
template <class F>
double time_op(MPI_Comm c, int iters, F op) {
  for (int i = 0; i < 3; ++i) op();
  DMPI_CHECK_MPI(MPI_Barrier(c));
  double t0 = now_seconds();
  for (int i = 0; i < iters; ++i) op();
  double dt = (now_seconds() - t0) / iters;
  return max_over(c, dt);
}

void fill(std::vector<float>& v, int rank) {
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((rank + 1) * ((i % 7) + 1));
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnv env(&argc, &argv);
  try {
    Args a({{"ops", true, "comma-separated: all_reduce,all_gather,reduce_scatter,broadcast,all_to_all"},
            {"min-bytes", true, "smallest message (default 8)"},
            {"max-bytes", true, "largest message (default 268435456 = 256 MiB)"},
            {"iters", true, "timed iterations per size and round (default 20; fewer above 16 MiB)"},
            {"rounds", true, "alternating rounds of ours and raw MPI; medians are reported (default 5)"},
            {"tp", true, "tensor-parallel size of the layout (default 1)"},
            {"pp", true, "pipeline-parallel size of the layout (default 1)"},
            {"help", false, "show this help"}},
           std::vector<std::string>(argv + 1, argv + argc));
    if (a.has("help")) {
      if (env.rank() == 0) std::printf("usage: mpiexec -n N comm_bench [flags]\n%s", a.usage().c_str());
      return 0;
    }
    std::vector<std::string> ops;
    std::stringstream ss(a.str("ops", "all_reduce,all_gather,reduce_scatter,broadcast,all_to_all"));
    for (std::string op; std::getline(ss, op, ',');) ops.push_back(op);
    const size_t min_b = static_cast<size_t>(a.integer("min-bytes", 8));
    const size_t max_b = static_cast<size_t>(a.integer("max-bytes", 256ll << 20));
    const int base_iters = static_cast<int>(a.integer("iters", 20));
    const int rounds = static_cast<int>(a.integer("rounds", 5));
    Topology topo(env.size(), static_cast<int>(a.integer("tp", 1)), static_cast<int>(a.integer("pp", 1)));
    ProcessGroups groups(topo);
    const bool root = env.rank() == 0;
    if (root)
      std::printf("# deepmpi comm_bench: %s; %s\n# MPI: %s\n", topo.describe().c_str(), hostname().c_str(),
                  MpiEnv::library_version().c_str());

    std::vector<float> send(max_b / 4 + 64), recv(max_b / 4 + 64);
    // Ping-pong between world ranks 0 and 1: the point-to-point ceiling.
    if (env.size() >= 2) {
      const size_t pp_bytes = std::min<size_t>(max_b, 64u << 20);
      const int n = static_cast<int>(pp_bytes / 4), reps = 10;
      DMPI_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
      double t0 = now_seconds();
      for (int i = 0; i < reps; ++i) {
        if (env.rank() == 0) {
          DMPI_CHECK_MPI(MPI_Send(send.data(), n, MPI_FLOAT, 1, 0, MPI_COMM_WORLD));
          DMPI_CHECK_MPI(MPI_Recv(recv.data(), n, MPI_FLOAT, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        } else if (env.rank() == 1) {
          DMPI_CHECK_MPI(MPI_Recv(recv.data(), n, MPI_FLOAT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
          DMPI_CHECK_MPI(MPI_Send(send.data(), n, MPI_FLOAT, 0, 0, MPI_COMM_WORLD));
        }
      }
      double dt = now_seconds() - t0;
      if (root)
        std::printf("# ping-pong world ranks 0<->1, %zu bytes: %.2f GB/s (bytes / half round trip)\n", pp_bytes,
                    2.0 * reps * pp_bytes / dt / 1e9);
    }

    for (Group g : all_groups()) {
      auto& c = groups.get(g);
      if (c.size() < 2) continue;
      if (g != Group::World && topo.size(g) == topo.world()) continue;  // same members as world
      MPI_Comm mc = c.comm();
      const int n = c.size(), me = c.rank();
      for (const auto& op : ops) {
        if (root)
          std::printf("#\n# %s on group '%s' (%d ranks)\n#%12s %12s %6s %6s | %10s %8s %8s %6s | %10s %8s %8s | %7s\n",
                      op.c_str(), group_name(g), n, "size", "count", "type", "redop", "time(us)", "algbw", "busbw",
                      "#wrong", "raw us", "algbw", "busbw", "busbw%");
        for (size_t bytes = min_b; bytes <= max_b; bytes *= 2) {
          size_t count = bytes / 4;
          if (op != "all_reduce" && op != "broadcast") count = count / n * n;  // divisible by the group
          if (count == 0) continue;
          const size_t sz = count * 4;
          const int iters = std::max(2, std::min(base_iters, static_cast<int>((256u << 20) / sz)));
          const int ci = static_cast<int>(count), per = static_cast<int>(count / n);
          fill(send, me);
          std::function<void()> ours, raw;
          std::function<size_t()> check;
          if (op == "all_reduce") {
            ours = [&] { c.all_reduce(send.data(), recv.data(), count, DType::F32, ReduceOp::Sum); };
            raw = [&] { MPI_Allreduce(send.data(), recv.data(), ci, MPI_FLOAT, MPI_SUM, mc); };
            check = [&] {
              size_t w = 0;
              for (size_t i = 0; i < count; ++i) w += recv[i] != static_cast<float>(n * (n + 1) / 2 * ((i % 7) + 1));
              return w;
            };
          } else if (op == "all_gather") {
            ours = [&] { c.all_gather(send.data(), count / n, recv.data(), DType::F32); };
            raw = [&] { MPI_Allgather(send.data(), per, MPI_FLOAT, recv.data(), per, MPI_FLOAT, mc); };
            check = [&] {
              size_t w = 0;
              for (size_t i = 0; i < count; ++i) {
                size_t r = i / (count / n), j = i % (count / n);
                w += recv[i] != static_cast<float>((r + 1) * ((j % 7) + 1));
              }
              return w;
            };
          } else if (op == "reduce_scatter") {
            ours = [&] { c.reduce_scatter(send.data(), recv.data(), count / n, DType::F32, ReduceOp::Sum); };
            raw = [&] { MPI_Reduce_scatter_block(send.data(), recv.data(), per, MPI_FLOAT, MPI_SUM, mc); };
            check = [&] {
              size_t w = 0;
              for (size_t j = 0; j < count / n; ++j) {
                size_t i = me * (count / n) + j;
                w += recv[j] != static_cast<float>(n * (n + 1) / 2 * ((i % 7) + 1));
              }
              return w;
            };
          } else if (op == "broadcast") {
            ours = [&] { c.broadcast(send.data(), count, DType::F32, 0); };
            raw = [&] { MPI_Bcast(send.data(), ci, MPI_FLOAT, 0, mc); };
            check = [&] {
              size_t w = 0;
              for (size_t i = 0; i < count; ++i) w += send[i] != static_cast<float>(1 * ((i % 7) + 1));
              return w;
            };
          } else if (op == "all_to_all") {
            ours = [&] { c.all_to_all(send.data(), recv.data(), count / n, DType::F32); };
            raw = [&] { MPI_Alltoall(send.data(), per, MPI_FLOAT, recv.data(), per, MPI_FLOAT, mc); };
            check = [&] {
              size_t w = 0;
              for (size_t i = 0; i < count; ++i) {
                size_t src = i / (count / n), j = me * (count / n) + i % (count / n);
                w += recv[i] != static_cast<float>((src + 1) * ((j % 7) + 1));
              }
              return w;
            };
          } else {
            DMPI_FAIL("unknown op '" << op << "' (all_reduce, all_gather, reduce_scatter, broadcast, all_to_all)");
          }
          // Alternate ours and raw MPI over several rounds (the host is shared and noisy) and
          // take each side's median round.
          std::vector<double> to, tr;
          for (int round = 0; round < rounds; ++round) {
            to.push_back(time_op(mc, iters, ours));
            tr.push_back(time_op(mc, iters, raw));
          }
          std::sort(to.begin(), to.end());
          std::sort(tr.begin(), tr.end());
          double t_ours = to[to.size() / 2], t_raw = tr[tr.size() / 2];
          fill(send, me);
          std::fill(recv.begin(), recv.end(), -1.f);
          ours();
          long long wrong = static_cast<long long>(check()), all_wrong = 0;
          DMPI_CHECK_MPI(MPI_Allreduce(&wrong, &all_wrong, 1, MPI_LONG_LONG, MPI_SUM, mc));
          const double f = bus_factor(op, n);
          const double a1 = sz / t_ours / 1e9, a2 = sz / t_raw / 1e9;
          if (root)
            std::printf(" %12zu %12zu %6s %6s | %10.2f %8.3f %8.3f %6lld | %10.2f %8.3f %8.3f | %6.1f%%\n", sz, count,
                        "float", op == "all_reduce" || op == "reduce_scatter" ? "sum" : "none", t_ours * 1e6, a1,
                        a1 * f, all_wrong, t_raw * 1e6, a2, a2 * f, 100.0 * t_raw / t_ours);
          std::fflush(stdout);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "comm_bench: error: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
