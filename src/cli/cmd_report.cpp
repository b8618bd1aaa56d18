// deepmpi report [--json] [--no-peak]: what this build is and what this machine offers, like
// DeepSpeed's ds_report: version, compiler, MPI library, HDF5, BLAS, GEMM backends and their
// precision, optional backends (CUDA/NCCL/Kokkos/io_uring) compiled in and usable, CPU
// features, ranks per node, node-local scratch, and the measured GEMM peaks. Run it under the
// same srun/mpirun line as training to see that job's view; rank 0 prints.
#include <hdf5.h>
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "comm/mpi_env.hpp"
#include "deepmpi/version.hpp"
#include "kernels/gemm.hpp"
#include "src/cli/commands.hpp"
#include "base/error.hpp"
#include "base/system.hpp"
#ifdef DEEPMPI_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef DEEPMPI_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace dmpi::cli {

namespace {

using json = nlohmann::ordered_json;  // printed in the order written

json cpu_info() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "unknown";
  std::set<std::string> flags;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    std::string val = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && model == "unknown") model = val;
    if (key == "flags" && flags.empty()) {
      std::istringstream is(val);
      for (std::string fl; is >> fl;) flags.insert(fl);
    }
  }
  json j{{"model", model}, {"cpus_online", sysconf(_SC_NPROCESSORS_ONLN)}};
  for (const char* fl : {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                         "amx_bf16", "amx_int8"})
    j[fl] = flags.count(fl) > 0;
  return j;
}

json scratch_info() {
  json j;
  std::string chosen;
  for (const char* var : {"SLURM_TMPDIR", "TMPDIR"}) {
    const char* v = std::getenv(var);
    j[var] = v ? json(v) : json(nullptr);
    if (v && chosen.empty()) chosen = v;
  }
  if (chosen.empty()) chosen = "/tmp";
  j["node_local_scratch"] = chosen;
  j["writable"] = access(chosen.c_str(), W_OK) == 0;
  return j;
}

std::string mpi_library() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  DMPI_CHECK_MPI(MPI_Get_library_version(buf, &len));
  std::string s(buf, static_cast<size_t>(len));
  auto nl = s.find_first_of("\r\n");
  if (nl != std::string::npos) s.resize(nl);
  while (!s.empty() && (s.back() == ',' || s.back() == ' ')) s.pop_back();
  return s;
}

void print_text(const json& j) {
  std::printf("deepmpi report\n");
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::printf("%s\n", it.key().c_str());
    for (auto f = it.value().begin(); f != it.value().end(); ++f) {
      std::string v = f.value().is_string() ? f.value().get<std::string>() : f.value().dump();
      std::printf("  %-22s %s\n", f.key().c_str(), v.c_str());
    }
  }
}

}  // namespace

int cmd_report(int* argc, char*** argv, const std::vector<std::string>& argl) {
  Args a({{"json", false, "print one JSON object instead of text"},
          {"no-peak", false, "skip the GEMM peak measurements (about 2 s)"},
          {"help", false, "show this help"}},
         argl);
  if (a.has("help")) {
    std::printf("usage: deepmpi report [--json] [--no-peak]   (under srun / mpirun for the job's view)\n\n%s",
                a.usage().c_str());
    return 0;
  }
  DMPI_REQUIRE(a.positional().empty(), "deepmpi report takes no arguments (got '" << a.positional().front() << "')");
  comm::MpiEnv mpi(argc, argv);
  json r;
  r["deepmpi"] = {{"version", DEEPMPI_VERSION}, {"git", DEEPMPI_GIT_HASH}, {"build_type", DEEPMPI_BUILD_TYPE},
                  {"compiler", DEEPMPI_CXX_COMPILER}};
  int major = 0, minor = 0, provided = 0;
  DMPI_CHECK_MPI(MPI_Get_version(&major, &minor));
  DMPI_CHECK_MPI(MPI_Query_thread(&provided));
  r["mpi"] = {{"library", mpi_library()},
              {"standard", std::to_string(major) + "." + std::to_string(minor)},
              {"thread_level", provided == MPI_THREAD_MULTIPLE ? "multiple" : provided == MPI_THREAD_SERIALIZED ? "serialized"
                                                          : provided == MPI_THREAD_FUNNELED  ? "funneled"
                                                                                              : "single"},
              {"world_size", mpi.size()},
              {"ranks_per_node", mpi.local_size()}};
  unsigned h5maj = 0, h5min = 0, h5rel = 0;
  H5get_libversion(&h5maj, &h5min, &h5rel);
#ifdef H5_HAVE_PARALLEL
  const bool h5par = true;
#else
  const bool h5par = false;
#endif
  r["hdf5"] = {{"version", std::to_string(h5maj) + "." + std::to_string(h5min) + "." + std::to_string(h5rel)},
               {"parallel", h5par}};
  r["blas"] = {{"vendor", "OpenBLAS"}, {"config", kernels::blas_config()}, {"threads", kernels::blas_threads()},
               {"OPENBLAS_CORETYPE", std::getenv("OPENBLAS_CORETYPE") ? json(std::getenv("OPENBLAS_CORETYPE")) : json(nullptr)}};
  json gemm{{"default_backend", kernels::default_gemm_backend_name()}, {"backends", kernels::gemm_backend_names()}};
#ifdef DEEPMPI_HAVE_DNNL
  const dnnl_version_t* v = dnnl_version();
  gemm["onednn"] = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
#else
  gemm["onednn"] = nullptr;
#endif
  r["gemm"] = gemm;
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  r["openmp"] = {{"threads", compute_threads()}, {"OMP_WAIT_POLICY", wait ? json(wait) : json(nullptr)}};
  json cuda{{"compiled", false}, {"devices", nullptr}, {"nccl_compiled", false}};
#ifdef DEEPMPI_HAVE_CUDA
  cuda["compiled"] = true;
  cuda["nccl_compiled"] = true;
  int n = 0;
  cuda["devices"] = cudaGetDeviceCount(&n) == cudaSuccess ? json(n) : json(0);
#endif
  r["accelerators"] = cuda;
  r["optional"] = {{"kokkos_compiled", false}, {"io_uring_compiled", false}, {"cublas_compiled", false}};
  r["cpu"] = cpu_info();
  r["scratch"] = scratch_info();
  const char* job = std::getenv("SLURM_JOB_ID");
  r["slurm"] = {{"SLURM_JOB_ID", job ? json(job) : json(nullptr)},
                {"in_allocation", job != nullptr}};
  if (!a.has("no-peak")) {
    auto backend = kernels::make_gemm_backend(kernels::default_gemm_backend_name());
    const double f32 = kernels::measure_gemm_gflops(kernels::host_context(*backend));
    // the bf16 GEMM, fp32 operands converted
    const double b16 = kernels::measure_gemm_gflops(kernels::host_context(*backend, kernels::Precision::BF16));
    r["peak"] = {{"sgemm_gflops", std::round(f32)}, {"bf16_gemm_gflops", std::round(b16)}, {"threads", compute_threads()}};
  }
  if (mpi.rank() == 0) {
    if (a.has("json")) std::printf("%s\n", r.dump(2).c_str());
    else print_text(r);
  }
  return 0;
}

}  // namespace dmpi::cli
