// The watchdog thread answers for its rank (DEEPMPI_WATCHDOG=1), checked without any abort:
// rank 1 computes after all_reduce #1, rank 2 waits in barrier #2, and rank 0 asks the group
// what everyone is doing. Exit code 0 when every answer is right.
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "comm/mpi_communicator.hpp"
#include "comm/mpi_env.hpp"
#include "comm/watchdog.hpp"

int main(int argc, char** argv) {
  dmpi::comm::MpiEnv env(&argc, &argv);
  int bad = 0;
  {
    dmpi::comm::MpiCommunicator world(MPI_COMM_WORLD, "world", false);
    if (!dmpi::comm::Watchdog::instance().active()) {
      if (env.rank() == 0) std::fprintf(stderr, "FAIL: watchdog not running (needs DEEPMPI_WATCHDOG=1 and MPI_THREAD_MULTIPLE)\n");
      bad = 1;
    }
    float x = 1.f;
    world.all_reduce(&x, &x, 1, dmpi::comm::DType::F32, dmpi::comm::ReduceOp::Sum);  // op #1 everywhere
    if (env.rank() == 1) {
      const double until = MPI_Wtime() + 3.0;  // computing, no MPI calls: only the watchdog can answer
      volatile double acc = 0;
      while (MPI_Wtime() < until)
        for (int i = 0; i < 100000; ++i) acc = acc + 1e-9 * i;
    }
    if (env.rank() == 0 && !bad) {
      usleep(500000);
      auto ms = world.query_members(nullptr, 0, 2.0);
      auto check = [&](int r, long long seq, const char* op, long long waiting) {
        const long long* s = &ms.state[3 * r];
        if (!ms.answered[r] || s[0] != seq || std::strcmp(world.op_name_of(s[1]), op) != 0 || s[2] != waiting) {
          std::fprintf(stderr, "FAIL: rank %d answered=%d state (%lld, %s, %lld), expected (%lld, %s, %lld)\n", r,
                       static_cast<int>(ms.answered[r]), s[0], world.op_name_of(s[1]), s[2], seq, op, waiting);
          bad = 1;
        }
      };
      check(1, 1, "all_reduce", 0);  // computing after all_reduce #1
      check(2, 2, "barrier", 1);     // waiting in barrier #2
      if (!bad) std::printf("watchdog check: rank 1 computing after all_reduce #1, rank 2 waiting in barrier #2\n");
    }
    world.barrier();  // op #2 everywhere
  }
  int worst = 0;
  MPI_Allreduce(&bad, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
