// GoogleTest main for tests run under mpiexec: MPI is initialised once; rank 0 prints the
// usual report, other ranks print only their failures (prefixed with the rank).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "comm/mpi_env.hpp"

namespace {
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] FAILURE %s:%d\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                   r.summary());
  }

 private:
  int rank_;
};
}  // namespace

namespace dmpi::test {
comm::MpiEnv* g_env = nullptr;  // for tests that need the environment object (the trainer)
}

int main(int argc, char** argv) {
  dmpi::comm::MpiEnv env(&argc, &argv);
  dmpi::test::g_env = &env;
  testing::InitGoogleTest(&argc, argv);
  if (env.rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(env.rank()));
  }
  int rc = RUN_ALL_TESTS();
  // Every rank must agree that everything passed.
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
