// Helpers shared by the GoogleTest binaries run under mpiexec (tests/mpi/test_mpi_main.cpp).
#pragma once
#include <mpi.h>

#include "comm/mpi_env.hpp"

namespace dmpi::test {

extern comm::MpiEnv* g_env;  // tests/mpi/test_mpi_main.cpp

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
inline comm::MpiEnv& env() { return *g_env; }

}  // namespace dmpi::test
