#include "comm/process_groups.hpp"

#include "src/util/error.hpp"

namespace dmpi::comm {

ProcessGroups::ProcessGroups(const Topology& topo, MPI_Comm world) : topo_(topo) {
  int size = 0;
  DMPI_CHECK_MPI(MPI_Comm_rank(world, &world_rank_));
  DMPI_CHECK_MPI(MPI_Comm_size(world, &size));
  DMPI_REQUIRE(size == topo.world(), "the topology is for " << topo.world() << " ranks but the job has " << size
                                                            << " (" << topo.describe() << ")");
  for (Group g : all_groups()) {
    MPI_Comm c = MPI_COMM_NULL;
    DMPI_CHECK_MPI(MPI_Comm_split(world, topo.color(g, world_rank_), world_rank_, &c));
    auto comm = std::make_unique<MpiCommunicator>(c, group_name(g), true);
    // MPI's view of the group must be the topology's.
    DMPI_REQUIRE(comm->world_ranks() == topo.members(g, world_rank_),
                 "MPI_Comm_split produced a different '" << group_name(g) << "' group than the topology");
    groups_[g] = std::move(comm);
  }
}

}  // namespace dmpi::comm
