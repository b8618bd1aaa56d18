// Spill bandwidth: the NVMe offload engine (io/spill.hpp) moving sub-groups through its host
// buffers the way the optimizer step does, in GB/s, next to which `perf/offload.sh` puts `dd`
// with direct I/O on the same file system in the same run.
//
//   spill_bench --dir D [--gib 2] [--arrays 3] [--sub-group 10000000] [--buffers 4]
//               [--backend uring|threads] [--queue-depth 8] [--block-size 1048576] [--reps 3]
//
// Per repetition, over `arrays` files of gib/arrays GiB each: a write pass (the buffers filled,
// written), a read pass (read, nothing written) and the optimizer's pass (read, a light update of
// every element, written back). Medians over the repetitions; every pass is checked (the read
// pass verifies what the write pass wrote, so a test of nothing cannot pass for a fast one).
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "base/system.hpp"
#include "io/spill.hpp"

using namespace dmpi;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  std::string dir, backend;
  double gib = 2.0;
  int arrays = 3, buffers = 4, reps = 3, depth = 8;
  size_t sub = 10000000, block = size_t{1} << 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--dir") dir = next();
    else if (a == "--gib") gib = std::stod(next());
    else if (a == "--arrays") arrays = std::stoi(next());
    else if (a == "--sub-group") sub = std::stoull(next());
    else if (a == "--buffers") buffers = std::stoi(next());
    else if (a == "--backend") backend = next();
    else if (a == "--queue-depth") depth = std::stoi(next());
    else if (a == "--block-size") block = std::stoull(next());
    else if (a == "--reps") reps = std::stoi(next());
    else {
      std::fprintf(stderr, "spill_bench: unknown option %s (see the comment at the top of perf/spill_bench.cpp)\n", a.c_str());
      return 2;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "spill_bench: --dir DIR (a directory on the file system to measure) is required\n");
    return 2;
  }
  int rc = 0;
  try {
    const std::string d = dir + "/spill_bench." + std::to_string(::getpid());
    std::filesystem::create_directories(d);
    io::AioOptions o;
    o.backend = backend;
    o.queue_depth = depth;
    o.block_size = block;
    o.threads = 1;
    io::AioEngine aio(o);
    const size_t n = static_cast<size_t>(gib * (1ull << 30) / arrays / sizeof(float));
    std::vector<std::string> names;
    for (int k = 0; k < arrays; ++k) {
      char nm[16];
      std::snprintf(nm, sizeof nm, "a%d", k);
      names.emplace_back(nm);
    }
    std::vector<double> w, r, rw;
    size_t bad = 0;
    {
      io::SpillArrays sa(d, "bench", names, n, sub, buffers, aio);
      const double bytes = static_cast<double>(n) * sizeof(float) * arrays;
      std::printf("spill_bench: %s; %d arrays x %.2f GiB in %s; sub-groups of %zu elements through %d buffers (%.0f MiB "
                  "of host memory), queue depth %d, blocks of %zu KiB\n",
                  aio.describe().c_str(), arrays, static_cast<double>(n) * 4 / (1ull << 30), d.c_str(), sa.sub_group(),
                  sa.buffers(), static_cast<double>(sa.host_bytes()) / (1 << 20), depth, block >> 10);
      for (int rep = 0; rep < reps; ++rep) {
        const float tag = static_cast<float>(rep + 1);
        double t = now_seconds();
        sa.stream(
            [&](size_t b, size_t m, float* const* x) {
              for (int k = 0; k < arrays; ++k)
                for (size_t j = 0; j < m; ++j) x[k][j] = tag * static_cast<float>(k + 1) + static_cast<float>((b + j) & 1023);
            },
            false, true);
        w.push_back(bytes / (now_seconds() - t) / 1e9);
        t = now_seconds();
        sa.stream(
            [&](size_t b, size_t m, float* const* x) {
              for (int k = 0; k < arrays; ++k)
                for (size_t j = 0; j < m; j += 4099)
                  bad += x[k][j] != tag * static_cast<float>(k + 1) + static_cast<float>((b + j) & 1023);
            },
            true, false);
        r.push_back(bytes / (now_seconds() - t) / 1e9);
        t = now_seconds();
        sa.stream([&](size_t, size_t m, float* const* x) {
          for (int k = 0; k < arrays; ++k)
            for (size_t j = 0; j < m; ++j) x[k][j] = x[k][j] * 0.999f + 1e-3f;
        });
        rw.push_back(2 * bytes / (now_seconds() - t) / 1e9);  // read and written
      }
      std::printf("| pass | GB/s (median of %d) | runs |\n|---|---|---|\n", reps);
      auto row = [&](const char* what, const std::vector<double>& v) {
        std::string runs;
        char buf[32];
        for (double x : v) {
          std::snprintf(buf, sizeof buf, runs.empty() ? "%.3f" : " %.3f", x);
          runs += buf;
        }
        std::printf("| %s | %.3f | %s |\n", what, median(v), runs.c_str());
      };
      row("write (sub-groups written back)", w);
      row("read (sub-groups read ahead)", r);
      row("read + update + write (the optimizer's pass; bytes both ways)", rw);
    }
    std::filesystem::remove_all(d);
    if (bad) {
      std::fprintf(stderr, "spill_bench: %zu sampled elements read back differ from what was written\n", bad);
      rc = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "spill_bench: %s\n", e.what());
    rc = 1;
  }
  MPI_Finalize();
  return rc;
}
