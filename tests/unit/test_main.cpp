#include <gtest/gtest.h>

#include <memory>

#include "tests/unit/test_util.hpp"

namespace dmpi::test {
comm::MpiEnv& mpi_env() {
  static std::unique_ptr<comm::MpiEnv> env = std::make_unique<comm::MpiEnv>(nullptr, nullptr);
  return *env;
}
}  // namespace dmpi::test

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
