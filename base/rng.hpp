// Deterministic random numbers that do not depend on the standard library's distributions:
// splitmix64 streams keyed by (seed, stream), Box-Muller normals.
#pragma once
#include <cmath>
#include <cstdint>

namespace dmpi {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream) : state_(splitmix64(seed ^ splitmix64(stream + 0x51ed2701ull))) {}
  uint64_t next_u64() {
    state_ += 0x9e3779b97f4a7c15ull;
    return splitmix64(state_);
  }
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }  // [0,1)
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }
  uint64_t state() const { return state_; }
  // Moves the stream on by `draws` 64-bit draws (the state is a counter): normal() number k of a
  // fresh stream comes from draws 2*(k/2) and 2*(k/2)+1, so skip(2*(k/2)) and, for odd k, one
  // normal() reach it.
  void skip(uint64_t draws) {
    state_ += draws * 0x9e3779b97f4a7c15ull;
    has_spare_ = false;
  }

 private:
  uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace dmpi
