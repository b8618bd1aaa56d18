#include <gtest/gtest.h>

#include <memory>

#include "base/system.hpp"
#include "tests/unit/test_util.hpp"

namespace dmpi::test {
comm::MpiEnv& mpi_env() {
  static std::unique_ptr<comm::MpiEnv> env = std::make_unique<comm::MpiEnv>(nullptr, nullptr);
  return *env;
}
}  // namespace dmpi::test

int main(int argc, char** argv) {
  // Tests run two at a time on two cores: spinning OpenMP workers would starve the other test
  // (measured 35x slower). ctest cannot pass two variables through gtest_discover_tests, so the
  // binary sets OMP_WAIT_POLICY=PASSIVE itself (re-exec, as the CLI does).
  dmpi::ensure_passive_omp_wait(argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
