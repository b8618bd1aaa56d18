// Topology golden tables, without MPI. Expected groups come from Megatron's documented
// construction (nested loops over the other coordinates), written independently of
// Topology::color, plus hand-written tables from Megatron's own docstring example.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "comm/topology.hpp"
#include "base/error.hpp"

using namespace dmpi;
using namespace dmpi::comm;

namespace {
using Groups = std::vector<std::vector<int>>;

Groups sorted(Groups g) {
  std::sort(g.begin(), g.end());
  return g;
}

// Megatron-style construction: rank = tp + TP*(dp + DP*pp), dp = ep + EP*edp.
Groups expected(Group g, int W, int TP, int PP, int EP) {
  int DP = W / (TP * PP), EDP = DP / EP;
  auto R = [&](int t, int d, int p) { return t + TP * (d + DP * p); };
  Groups out;
  switch (g) {
    case Group::World: {
      std::vector<int> all(W);
      for (int i = 0; i < W; ++i) all[i] = i;
      out.push_back(all);
      break;
    }
    case Group::TP:
      for (int p = 0; p < PP; ++p)
        for (int d = 0; d < DP; ++d) {
          std::vector<int> m;
          for (int t = 0; t < TP; ++t) m.push_back(R(t, d, p));
          out.push_back(m);
        }
      break;
    case Group::DP:
      for (int p = 0; p < PP; ++p)
        for (int t = 0; t < TP; ++t) {
          std::vector<int> m;
          for (int d = 0; d < DP; ++d) m.push_back(R(t, d, p));
          out.push_back(m);
        }
      break;
    case Group::PP:
      for (int d = 0; d < DP; ++d)
        for (int t = 0; t < TP; ++t) {
          std::vector<int> m;
          for (int p = 0; p < PP; ++p) m.push_back(R(t, d, p));
          out.push_back(m);
        }
      break;
    case Group::EP:
      for (int p = 0; p < PP; ++p)
        for (int e2 = 0; e2 < EDP; ++e2)
          for (int t = 0; t < TP; ++t) {
            std::vector<int> m;
            for (int e = 0; e < EP; ++e) m.push_back(R(t, e + EP * e2, p));
            out.push_back(m);
          }
      break;
    case Group::EDP:
      for (int p = 0; p < PP; ++p)
        for (int e = 0; e < EP; ++e)
          for (int t = 0; t < TP; ++t) {
            std::vector<int> m;
            for (int e2 = 0; e2 < EDP; ++e2) m.push_back(R(t, e + EP * e2, p));
            out.push_back(m);
          }
      break;
    case Group::MP:
      for (int d = 0; d < DP; ++d) {
        std::vector<int> m;
        for (int p = 0; p < PP; ++p)
          for (int t = 0; t < TP; ++t) m.push_back(R(t, d, p));
        std::sort(m.begin(), m.end());
        out.push_back(m);
      }
      break;
  }
  return sorted(out);
}
}  // namespace

TEST(Topology, EveryValidLayoutOfWorldsOneToSixteen) {
  int layouts = 0;
  for (int W = 1; W <= 16; ++W)
    for (int TP = 1; TP <= W; ++TP)
      for (int PP = 1; PP <= W; ++PP) {
        if (W % (TP * PP)) continue;
        int DP = W / (TP * PP);
        for (int EP = 1; EP <= DP; ++EP) {
          if (DP % EP) continue;
          ++layouts;
          Topology t(W, TP, PP, EP);
          SCOPED_TRACE(t.describe());
          for (Group g : all_groups()) {
            auto got = t.groups(g);
            EXPECT_EQ(sorted(got), expected(g, W, TP, PP, EP)) << group_name(g);
            // a partition of the world into groups of the advertised size
            std::set<int> seen;
            for (auto& m : got) {
              EXPECT_EQ(static_cast<int>(m.size()), t.size(g));
              for (int r : m) EXPECT_TRUE(seen.insert(r).second);
              for (int r : m) EXPECT_EQ(t.members(g, r), m);
            }
            EXPECT_EQ(static_cast<int>(seen.size()), W);
          }
          for (int r = 0; r < W; ++r) {
            Coord c = t.coord(r);
            EXPECT_EQ(t.rank_of(c.tp, c.dp, c.pp), r);
            EXPECT_EQ(c.dp, c.ep + EP * c.edp);
          }
        }
      }
  // number of (W, TP, PP, EP) with TP*PP | W and EP | W/(TP*PP), W <= 16 (enumerated by hand in
  // python: sum over W of the ordered factorisations W = TP*PP*DP times the divisors of DP)
  EXPECT_EQ(layouts, 204);
}

TEST(Topology, MegatronDocstringExample) {
  // 16 ranks, tp 2, pp 4 (Megatron's initialize_model_parallel docstring):
  Topology t(16, 2, 4);
  EXPECT_EQ(t.dp(), 2);
  EXPECT_EQ(sorted(t.groups(Group::TP)),
            (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(sorted(t.groups(Group::DP)),
            (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
  EXPECT_EQ(sorted(t.groups(Group::PP)), (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
}

TEST(Topology, ExpertGroupsSubdivideDataParallel) {
  Topology t(8, 1, 1, 4);  // dp 8, ep 4, edp 2
  EXPECT_EQ(sorted(t.groups(Group::EP)), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(sorted(t.groups(Group::EDP)), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  Topology u(8, 2, 1, 2);  // tp 2, dp 4, ep 2
  EXPECT_EQ(sorted(u.groups(Group::EP)), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(sorted(u.groups(Group::EDP)), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
}

TEST(Topology, BadSizesNameEverySize) {
  for (auto [w, tp, pp, ep] : std::vector<std::array<int, 4>>{{8, 3, 1, 1}, {8, 2, 3, 1}, {12, 2, 1, 4}, {4, 0, 1, 1}}) {
    try {
      Topology t(w, tp, pp, ep);
      FAIL() << w << " " << tp << " " << pp << " " << ep;
    } catch (const Error& e) {
      std::string s = e.what();
      EXPECT_NE(s.find("world size " + std::to_string(w)), std::string::npos) << s;
      EXPECT_NE(s.find("--tensor-model-parallel-size " + std::to_string(tp)), std::string::npos) << s;
      EXPECT_NE(s.find("--pipeline-model-parallel-size " + std::to_string(pp)), std::string::npos) << s;
      EXPECT_NE(s.find("--expert-model-parallel-size " + std::to_string(ep)), std::string::npos) << s;
    }
  }
}
