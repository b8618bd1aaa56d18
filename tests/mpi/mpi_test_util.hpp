// Helpers shared by the GoogleTest binaries run under mpiexec (tests/mpi/test_mpi_main.cpp).
#pragma once
#include <mpi.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <string>

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

// A fresh directory (same path on every rank of MPI_COMM_WORLD), removed at the end of the test.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix = "deepmpi-test") {
    char buf[256] = {0};
    if (world_rank() == 0) {
      std::string p = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
      std::strncpy(buf, p.c_str(), sizeof buf - 1);
      if (!mkdtemp(buf)) buf[0] = 0;
    }
    MPI_Bcast(buf, sizeof buf, MPI_CHAR, 0, MPI_COMM_WORLD);
    path = buf;
  }
  ~TempDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0 && !path.empty()) std::filesystem::remove_all(path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string sub(const std::string& s) const { return path + "/" + s; }
};

}  // namespace dmpi::test
