// The bubble of each pipeline schedule, measured on real ranks: every rank is one stage and runs
// its order (src/engine/pipeline.hpp, the orders the trainer executes) with a fixed time per
// command instead of compute (a sleep: on 2 cores, 4 computing ranks would measure the
// scheduler, not the schedule), the dependencies carried by real MPI messages between adjacent
// stages (a receive before a command that needs one, polled without spinning; a non-blocking send after).
// Bubble = (T - work) / T with T the step's wall time (barrier to the last rank's end) and work a
// stage's busy time as measured (the mean over stages; the median over steps); printed beside the closed form of each schedule.
//   costs per stage and micro-batch: forward F, input-gradient backward B, weight-gradient W
//   (1F1B and interleaved run B + W as one backward; interleaved chunks cost 1/v of a stage's)
// Usage: mpirun -np P pipeline_bubble [--ms F] [--micro "4 8 16"] [--reps 3]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/engine/pipeline.hpp"

using namespace dmpi::engine;

namespace {
// the time a command keeps its rank busy, as it took (a sleep overshoots by tens of us: that is
// work, not bubble)
double busy(double ms) {
  const double t0 = MPI_Wtime();
  std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
  return (MPI_Wtime() - t0) * 1e3;
}
// a receive that waits without spinning (ranks beyond the cores must not steal them from the
// rank whose time is up): tested every 20 us
void recv(char* buf, int src, int tag) {
  MPI_Request r;
  MPI_Irecv(buf, 1, MPI_CHAR, src, tag, MPI_COMM_WORLD, &r);
  for (int done = 0;;) {
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (done) return;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

// one step of stage s's order; returns its busy milliseconds
double run_step(PipeSchedule kind, int S, int s, int M, int v, double f, double b, double w) {
  const auto order = pipeline_order(kind, S, s, M, v);
  const int K = S * v;
  const bool split = kind == PipeSchedule::ZeroBubble;
  char token = 0, in = 0;
  std::vector<MPI_Request> sends;
  double work = 0;
  for (const PipeCmd& c : order) {
    const int g = c.chunk * S + s;
    if (c.kind == PipeCmd::F && g > 0)
      recv(&in, (g - 1) % S, pipe_tag(false, g - 1));
    if (c.kind == PipeCmd::B && g < K - 1)
      recv(&in, (g + 1) % S, pipe_tag(true, g));
    const double ms = c.kind == PipeCmd::F ? f : c.kind == PipeCmd::W ? w : split ? b : b + w;
    work += busy(ms);
    MPI_Request r;
    if (c.kind == PipeCmd::F && g < K - 1) {
      MPI_Isend(&token, 1, MPI_CHAR, (g + 1) % S, pipe_tag(false, g), MPI_COMM_WORLD, &r);
      sends.push_back(r);
    }
    if (c.kind == PipeCmd::B && g > 0) {
      MPI_Isend(&token, 1, MPI_CHAR, (g - 1) % S, pipe_tag(true, g - 1), MPI_COMM_WORLD, &r);
      sends.push_back(r);
    }
  }
  MPI_Waitall(static_cast<int>(sends.size()), sends.data(), MPI_STATUSES_IGNORE);
  return work;
}
}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, S = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &S);
  double F = 10;
  std::string micro = "4 8 16";
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ms")) F = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--micro")) micro = argv[i + 1];
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  if (rank == 0) {
    std::printf("pipeline bubble, %d stages (one rank each), F = B = W = %g ms per stage and micro-batch (sleeps), "
                "median of %d steps\n\n",
                S, F, reps);
    std::printf("| schedule | p | m | measured bubble | formula | formula | measured / formula | step ms |\n|---|---|---|---|---|---|---|---|\n");
  }
  std::istringstream ms(micro);
  for (int M; ms >> M;) {
    for (auto kind : {PipeSchedule::OneFOneB, PipeSchedule::Interleaved, PipeSchedule::ZeroBubble}) {
      const int v = kind == PipeSchedule::Interleaved ? 2 : 1;
      if (kind == PipeSchedule::Interleaved && M % S) continue;
      // per chunk: interleaved splits a stage's layers into v chunks
      const double f = F / v, b = F / v, w = F / v;
      std::vector<double> bubbles, steps;
      double work = 0;
      for (int r = 0; r < reps; ++r) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        work = run_step(kind, S, rank, M, v, f, b, w);
        double t = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &work, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        work /= S;  // the stages' mean busy time
        const double T = t * 1e3;
        bubbles.push_back((T - work) / T);
        steps.push_back(T);
      }
      std::sort(bubbles.begin(), bubbles.end());
      std::sort(steps.begin(), steps.end());
      const double measured = bubbles[bubbles.size() / 2], formula = analytic_bubble(kind, S, M, v);
      const char* form = kind == PipeSchedule::OneFOneB ? "(p-1)/(m+p-1)"
                         : kind == PipeSchedule::Interleaved ? "(p-1)/(v m+p-1), v=2"
                                                             : "(p-1)/(3m+p-1)";
      if (rank == 0)
        std::printf("| %s | %d | %d | %.4f | %s | %.4f | %.3f | %.1f |\n", pipe_schedule_name(kind), S, M, measured, form,
                    formula, measured / formula, steps[steps.size() / 2]);
    }
  }
  MPI_Finalize();
  return 0;
}
