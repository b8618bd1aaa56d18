// Comparing a distributed run with single-rank training (the tensor-parallel and pipeline tests):
// logical tensors by name, relative differences per tensor, per element and of the losses.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace dmpi::test {

using Tensors = std::map<std::string, std::vector<float>>;

// The attention key bias has an exactly zero gradient: Adam random-walks it on rounding noise.
inline bool key_bias(const std::string& name, size_t i, size_t n) {
  return name.ends_with("attn.qkv.bias") && i >= n / 3 && i < 2 * n / 3;
}
inline std::string g_worst;  // the tensor of the last max_tensor_rel
inline double max_tensor_rel(const Tensors& a, const Tensors& b) {  // max over tensors of ||a - b|| / ||b||
  double worst = 0;
  EXPECT_EQ(a.size(), b.size());
  for (const auto& [name, va] : a) {
    auto it = b.find(name);
    if (it == b.end()) {
      ADD_FAILURE() << name << " is not in the reference";
      continue;
    }
    const auto& vb = it->second;
    EXPECT_EQ(va.size(), vb.size()) << name;
    double d = 0, nb = 0;
    for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
      if (key_bias(name, i, va.size())) continue;
      d += (static_cast<double>(va[i]) - vb[i]) * (static_cast<double>(va[i]) - vb[i]);
      nb += static_cast<double>(vb[i]) * vb[i];
    }
    if (nb > 0 && std::sqrt(d / nb) > worst) worst = std::sqrt(d / nb), g_worst = name;
  }
  return worst;
}
inline double max_elem_rel(const Tensors& a, const Tensors& b, double floor) {
  double worst = 0;
  for (const auto& [name, va] : a) {
    auto it = b.find(name);
    if (it == b.end()) continue;  // max_tensor_rel reports it
    const auto& vb = it->second;
    for (size_t i = 0; i < va.size() && i < vb.size(); ++i)
      if (!key_bias(name, i, va.size()))
        worst = std::max(worst, std::fabs(static_cast<double>(va[i]) - vb[i]) / std::max(std::fabs(static_cast<double>(vb[i])), floor));
  }
  return worst;
}
inline double max_loss_rel(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / std::fabs(b[i]));
  return worst;
}

}  // namespace dmpi::test
