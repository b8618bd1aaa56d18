#include "base/system.hpp"

#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace dmpi {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

size_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;
}

size_t current_rss_bytes() {
  size_t pages_total = 0, pages_rss = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%zu %zu", &pages_total, &pages_rss) != 2) pages_rss = 0;
  std::fclose(f);
  return pages_rss * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

namespace {
// the first number in a file ("max" and unreadable files give nothing)
std::optional<double> read_number(const std::string& path, const char* key = nullptr) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return std::nullopt;
  char line[512];
  std::optional<double> v;
  while (std::fgets(line, sizeof line, f)) {
    const char* p = line;
    if (key) {
      const size_t n = std::strlen(key);
      if (std::strncmp(line, key, n) != 0) continue;
      p = line + n;
    }
    char* end = nullptr;
    const double x = std::strtod(p, &end);
    if (end != p) v = x;
    break;
  }
  std::fclose(f);
  return v;
}
// this process's cgroup folder (v2 "0::/path", or v1's memory controller line)
std::optional<std::pair<std::string, bool>> cgroup_dir() {
  FILE* f = std::fopen("/proc/self/cgroup", "r");
  if (!f) return std::nullopt;
  char line[1024];
  std::optional<std::pair<std::string, bool>> r;
  while (std::fgets(line, sizeof line, f)) {
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (s.rfind("0::", 0) == 0) r = {{"/sys/fs/cgroup" + s.substr(3), true}};
    const size_t a = s.find(':'), b = a == std::string::npos ? a : s.find(':', a + 1);
    if (b != std::string::npos && s.substr(a + 1, b - a - 1).find("memory") != std::string::npos) {
      r = {{"/sys/fs/cgroup/memory" + s.substr(b + 1), false}};
      break;
    }
  }
  std::fclose(f);
  return r;
}
}  // namespace

size_t available_memory_bytes(std::string* source) {
  double best = 0;
  std::string from;
  if (auto kb = read_number("/proc/meminfo", "MemAvailable:")) best = *kb * 1024.0, from = "MemAvailable";
  if (auto cg = cgroup_dir()) {
    const auto& [dir, v2] = *cg;
    auto limit = read_number(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
    auto used = read_number(dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
    if (limit && *limit > 0 && *limit < 1e18) {  // v1 reports "no limit" as a huge number
      const double room = *limit - (used ? *used : 0.0);
      if (best == 0 || room < best) best = std::max(0.0, room), from = "the cgroup limit " + human_bytes(*limit);
    }
  }
  if (source) *source = from;
  return static_cast<size_t>(best);
}

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

int compute_threads() { return omp_get_max_threads(); }
void ensure_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("DEEPMPI_NO_REEXEC")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  setenv("DEEPMPI_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  // exec failed: keep going with the active policy (slower, still correct)
}

}  // namespace dmpi
