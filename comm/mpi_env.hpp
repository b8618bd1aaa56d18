// MPI start-up and the world's shape: rank, size, and the node-local rank from
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED). RANK / WORLD_SIZE / LOCAL_RANK, when set by a
// launcher, are only a cross-check: a mismatch is reported, MPI's answer is used.
// (Topology, sub-communicators and collectives: the communication-layer issue.)
#pragma once
#include <mpi.h>

#include <string>
#include <vector>

namespace dmpi::comm {

class MpiEnv {
 public:
  MpiEnv(int* argc, char*** argv);   // MPI_Init_thread(MULTIPLE)
  ~MpiEnv();                         // MPI_Finalize unless aborted
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  MPI_Comm node_comm() const { return node_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  static std::string library_version();

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  MPI_Comm node_ = MPI_COMM_NULL;
  std::vector<std::string> warnings_;
};

}  // namespace dmpi::comm
