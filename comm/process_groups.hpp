// Every parallel group of a topology as an MPI communicator, split from MPI_COMM_WORLD with
// MPI_Comm_split and owned (freed collectively in the destructor). Construction is collective.
#pragma once
#include <map>
#include <memory>

#include "comm/mpi_communicator.hpp"
#include "comm/topology.hpp"

namespace dmpi::comm {

class ProcessGroups {
 public:
  ProcessGroups(const Topology& topo, MPI_Comm world = MPI_COMM_WORLD);
  ProcessGroups(const ProcessGroups&) = delete;
  ProcessGroups& operator=(const ProcessGroups&) = delete;
  MpiCommunicator& get(Group g) { return *groups_.at(g); }
  const Topology& topology() const { return topo_; }
  int world_rank() const { return world_rank_; }

 private:
  Topology topo_;
  int world_rank_ = 0;
  std::map<Group, std::unique_ptr<MpiCommunicator>> groups_;
};

}  // namespace dmpi::comm
