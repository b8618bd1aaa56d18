// A program for the hang-diagnostics test: every rank but --skip-rank joins an all_reduce on
// the world; the skipping rank goes on to finalize. The others must time out, name the
// missing rank, and abort the job.
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
  {
    dmpi::comm::MpiCommunicator world(MPI_COMM_WORLD, "world", false);
    std::vector<float> x(1024, 1.f);
    world.all_reduce(x.data(), x.data(), x.size(), dmpi::comm::DType::F32, dmpi::comm::ReduceOp::Sum);  // everyone
    if (env.rank() != skip)
      world.all_reduce(x.data(), x.data(), x.size(), dmpi::comm::DType::F32, dmpi::comm::ReduceOp::Sum);
    else
      std::printf("rank %d skips the second all_reduce\n", env.rank());
  }
  std::fflush(stdout);
  return 0;
}
