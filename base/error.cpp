#include "base/error.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>

namespace dmpi {

int error_rank() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin) return -1;
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

static std::string prefix(const char* file, int line) {
  std::ostringstream os;
  // Keep the path relative to the source tree: strip everything up to the project folders.
  std::string f = file;
  for (const char* top : {"/src/", "/kernels/", "/comm/", "/io/", "/tests/", "/perf/"}) {
    auto p = f.rfind(top);
    if (p != std::string::npos) {
      f = f.substr(p + 1);
      break;
    }
  }
  os << f << ":" << line;
  int r = error_rank();
  if (r >= 0) os << " [rank " << r << "]";
  os << ": ";
  return os.str();
}

void fault_point(const std::string& point, int world_rank) {
  const char* env = std::getenv("DEEPMPI_FAULT");
  if (!env || !*env) return;
  const std::string want = point + ":" + std::to_string(world_rank);
  std::string list = env;
  for (size_t a = 0; a <= list.size();) {
    size_t b = list.find(',', a);
    if (b == std::string::npos) b = list.size();
    if (list.compare(a, b - a, want) == 0)
      throw Error("injected fault at '" + point + "' on world rank " + std::to_string(world_rank) + " (DEEPMPI_FAULT=" +
                  list + ")");
    a = b + 1;
  }
}

void throw_error(const char* file, int line, const std::string& msg) {
  throw Error(prefix(file, line) + msg);
}

void throw_mpi_error(const char* file, int line, const char* call, int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) len = 0;
  throw Error(prefix(file, line) + call + " failed: " + std::string(buf, static_cast<size_t>(len)));
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& s, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = static_cast<size_t>(-1);
  for (const auto& c : candidates) {
    size_t d = edit_distance(s, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Only suggest when the candidate is plausibly what was meant.
  size_t limit = std::max<size_t>(2, s.size() / 3);
  if (best_d > limit) return {};
  return best;
}

}  // namespace dmpi
