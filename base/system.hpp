// Small OS helpers: clocks, memory, environment, threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace dmpi {

double now_seconds();                      // monotonic clock
size_t peak_rss_bytes();                   // getrusage ru_maxrss of this process
size_t current_rss_bytes();                // /proc/self/statm
// Memory this process may still use on its node: the smaller of MemAvailable (/proc/meminfo) and
// the room left under its cgroup's limit (v2 memory.max - memory.current, or v1
// memory.limit_in_bytes - memory.usage_in_bytes); 0 when neither can be read. `source` says which.
size_t available_memory_bytes(std::string* source = nullptr);
std::optional<std::string> env(const char* name);
std::string hostname();
std::string human_bytes(double bytes);     // "1.23 GiB"

// Thread policy (platform notes): OpenMP threads for element-wise/attention work, OpenBLAS
// threads for GEMMs (kernels/gemm.hpp), never nested: BLAS is never called inside an OpenMP region.
int compute_threads();                     // OMP max threads

// OpenMP threads that spin after a parallel region steal the cores OpenBLAS's threads need
// for the next GEMM (measured: 2-10x slower GEMMs). libgomp reads OMP_WAIT_POLICY when it is
// loaded, so when the user has not chosen one this re-executes the program once with
// OMP_WAIT_POLICY=PASSIVE (before MPI_Init; same PID and environment otherwise).
void ensure_passive_omp_wait(char** argv);

}  // namespace dmpi
