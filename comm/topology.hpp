// Rank <-> (pp, dp, ep, tp) coordinates: a pure function, no MPI.
//
// Order tp-ep-dp-pp with tp fastest (Megatron's convention: tensor-parallel ranks are
// adjacent, so they share a node):
//     rank = tp + TP * (dp + DP * pp),    DP = world / (TP * PP)
// Expert parallelism subdivides the data-parallel dimension, ep fastest within it:
//     dp = ep + EP * edp,                 EDP = DP / EP
// so an expert-parallel group is EP consecutive data-parallel ranks, and the
// expert-data-parallel group is the rest of the data-parallel group (same ep index).
#pragma once
#include <string>
#include <vector>

namespace dmpi::comm {

enum class Group { World, TP, PP, DP, EP, EDP, MP };  // MP = tp x pp (model parallel)
const char* group_name(Group g);
std::vector<Group> all_groups();

struct Coord {
  int tp = 0, pp = 0, dp = 0;
  int ep = 0, edp = 0;  // dp = ep + EP * edp
};

class Topology {
 public:
  // Throws naming every size when they do not divide the world.
  Topology(int world, int tp, int pp, int ep = 1);
  int world() const { return world_; }
  int tp() const { return tp_; }
  int pp() const { return pp_; }
  int dp() const { return dp_; }
  int ep() const { return ep_; }
  int edp() const { return dp_ / ep_; }
  int size(Group g) const;

  Coord coord(int rank) const;
  int rank_of(int tp, int dp, int pp) const;
  // The members of `rank`'s group, in group-rank order (the rank's index in this list is its
  // rank inside the group).
  std::vector<int> members(Group g, int rank) const;
  // Every group of one kind: a partition of the world.
  std::vector<std::vector<int>> groups(Group g) const;
  // A number that is the same for every member of `rank`'s group and different between groups
  // (used as the MPI_Comm_split colour).
  int color(Group g, int rank) const;
  std::string describe() const;

 private:
  int world_, tp_, pp_, dp_, ep_;
};

}  // namespace dmpi::comm
