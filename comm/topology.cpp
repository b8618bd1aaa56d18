#include "comm/topology.hpp"

#include <sstream>

#include "base/error.hpp"

namespace dmpi::comm {

const char* group_name(Group g) {
  switch (g) {
    case Group::World: return "world";
    case Group::TP: return "tp";
    case Group::PP: return "pp";
    case Group::DP: return "dp";
    case Group::EP: return "ep";
    case Group::EDP: return "edp";
    case Group::MP: return "mp";
  }
  return "?";
}

std::vector<Group> all_groups() {
  return {Group::World, Group::TP, Group::PP, Group::DP, Group::EP, Group::EDP, Group::MP};
}

Topology::Topology(int world, int tp, int pp, int ep) : world_(world), tp_(tp), pp_(pp), dp_(0), ep_(ep) {
  std::ostringstream sizes;
  sizes << "world size " << world << ", --tensor-model-parallel-size " << tp << ", --pipeline-model-parallel-size "
        << pp << ", --expert-model-parallel-size " << ep;
  DMPI_REQUIRE(world >= 1 && tp >= 1 && pp >= 1 && ep >= 1, "parallel sizes must be >= 1 (" << sizes.str() << ")");
  DMPI_REQUIRE(world % (tp * pp) == 0, "tensor x pipeline parallel size (" << tp << " x " << pp << " = " << tp * pp
                                                                          << ") must divide the world size ("
                                                                          << sizes.str() << ")");
  dp_ = world / (tp * pp);
  DMPI_REQUIRE(dp_ % ep == 0, "--expert-model-parallel-size must divide the data-parallel size " << dp_ << " = world / (tp x pp) ("
                                                                                                   << sizes.str() << ")");
}

int Topology::size(Group g) const {
  switch (g) {
    case Group::World: return world_;
    case Group::TP: return tp_;
    case Group::PP: return pp_;
    case Group::DP: return dp_;
    case Group::EP: return ep_;
    case Group::EDP: return dp_ / ep_;
    case Group::MP: return tp_ * pp_;
  }
  return 0;
}

Coord Topology::coord(int rank) const {
  DMPI_REQUIRE(rank >= 0 && rank < world_, "rank " << rank << " outside [0, " << world_ << ")");
  Coord c;
  c.tp = rank % tp_;
  c.dp = (rank / tp_) % dp_;
  c.pp = rank / (tp_ * dp_);
  c.ep = c.dp % ep_;
  c.edp = c.dp / ep_;
  return c;
}

int Topology::rank_of(int tp, int dp, int pp) const {
  DMPI_REQUIRE(tp >= 0 && tp < tp_ && dp >= 0 && dp < dp_ && pp >= 0 && pp < pp_,
               "coordinate (tp " << tp << ", dp " << dp << ", pp " << pp << ") outside " << describe());
  return tp + tp_ * (dp + dp_ * pp);
}

int Topology::color(Group g, int rank) const {
  Coord c = coord(rank);
  switch (g) {
    case Group::World: return 0;
    case Group::TP: return c.dp + dp_ * c.pp;                 // vary tp
    case Group::PP: return c.tp + tp_ * c.dp;                 // vary pp
    case Group::DP: return c.tp + tp_ * c.pp;                 // vary dp
    case Group::EP: return c.tp + tp_ * (c.edp + (dp_ / ep_) * c.pp);  // vary ep
    case Group::EDP: return c.tp + tp_ * (c.ep + ep_ * c.pp);          // vary edp
    case Group::MP: return c.dp;                               // vary tp and pp
  }
  return -1;
}

std::vector<int> Topology::members(Group g, int rank) const {
  std::vector<int> m;
  int col = color(g, rank);
  for (int r = 0; r < world_; ++r)
    if (color(g, r) == col) m.push_back(r);  // ascending world rank = group-rank order
  return m;
}

std::vector<std::vector<int>> Topology::groups(Group g) const {
  std::vector<std::vector<int>> out;
  std::vector<bool> seen(world_, false);
  for (int r = 0; r < world_; ++r) {
    if (seen[r]) continue;
    auto m = members(g, r);
    for (int x : m) seen[x] = true;
    out.push_back(std::move(m));
  }
  return out;
}

std::string Topology::describe() const {
  std::ostringstream os;
  os << "world " << world_ << " = tp " << tp_ << " x dp " << dp_ << " x pp " << pp_ << " (dp = ep " << ep_ << " x edp "
     << dp_ / ep_ << ")";
  return os.str();
}

}  // namespace dmpi::comm
