#include "comm/process_groups.hpp"

#include <vector>

#include "base/error.hpp"

namespace dmpi::comm {

ProcessGroups::ProcessGroups(const Topology& topo, MPI_Comm world) : topo_(topo) {
  int size = 0;
  DMPI_CHECK_MPI(MPI_Comm_rank(world, &world_rank_));
  DMPI_CHECK_MPI(MPI_Comm_size(world, &size));
  fault_point("groups", world_rank_);
  DMPI_REQUIRE(size == topo.world(), "the topology is for " << topo.world() << " ranks but the job has " << size
                                                            << " (" << topo.describe() << ")");
  for (Group g : all_groups()) {
    MPI_Comm c = MPI_COMM_NULL;
    DMPI_CHECK_MPI(MPI_Comm_split(world, topo.color(g, world_rank_), world_rank_, &c));
    auto comm = std::make_unique<MpiCommunicator>(c, group_name(g), true);
    // MPI's view of the group must be the topology's (members as MPI_COMM_WORLD ranks, which
    // is what world_ranks() reports; `world` may be a sub-communicator).
    std::vector<int> expected = topo.members(g, world_rank_);
    if (world != MPI_COMM_WORLD) {
      MPI_Group from, to;
      DMPI_CHECK_MPI(MPI_Comm_group(world, &from));
      DMPI_CHECK_MPI(MPI_Comm_group(MPI_COMM_WORLD, &to));
      std::vector<int> translated(expected.size());
      DMPI_CHECK_MPI(MPI_Group_translate_ranks(from, static_cast<int>(expected.size()), expected.data(), to, translated.data()));
      DMPI_CHECK_MPI(MPI_Group_free(&from));
      DMPI_CHECK_MPI(MPI_Group_free(&to));
      expected = translated;
    }
    DMPI_REQUIRE(comm->world_ranks() == expected,
                 "MPI_Comm_split produced a different '" << group_name(g) << "' group than the topology");
    groups_[g] = std::move(comm);
  }
}

}  // namespace dmpi::comm
