// A program for the hang-diagnostics test: every rank but SKIP_RANK joins an all_reduce on the
// world; the skipping rank goes on to finalize ("finish" mode) or computes for a minute
// ("compute" mode). The others must time out, name the missing rank and what it is doing,
// and abort the job. Usage: hang_check SKIP_RANK [finish|compute]
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "comm/mpi_communicator.hpp"
#include "comm/mpi_env.hpp"

int main(int argc, char** argv) {
  dmpi::comm::MpiEnv env(&argc, &argv);
  int skip = argc > 1 ? std::atoi(argv[1]) : 1;
  const bool compute = argc > 2 && std::strcmp(argv[2], "compute") == 0;
  {
    dmpi::comm::MpiCommunicator world(MPI_COMM_WORLD, "world", false);
    std::vector<float> x(1024, 1.f);
    world.all_reduce(x.data(), x.data(), x.size(), dmpi::comm::DType::F32, dmpi::comm::ReduceOp::Sum);  // everyone
    if (env.rank() != skip)
      world.all_reduce(x.data(), x.data(), x.size(), dmpi::comm::DType::F32, dmpi::comm::ReduceOp::Sum);
    else
      std::printf("rank %d skips the second all_reduce%s\n", env.rank(), compute ? " and computes" : "");
    std::fflush(stdout);
    if (env.rank() == skip && compute) {
      volatile double acc = 0;  // busy for a minute, never calling MPI (the watchdog answers)
      const double until = MPI_Wtime() + 60.0;
      while (MPI_Wtime() < until)
        for (int i = 0; i < 100000; ++i) acc = acc + 1e-9 * i;
    }
  }
  std::fflush(stdout);
  return 0;
}
