// deepmpi: the command-line entry point. Errors become one line on stderr; with more than one
// rank the job is ended with MPI_Abort so no rank is left waiting in a collective.
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "deepmpi/version.hpp"
#include "src/cli/commands.hpp"
#include "base/error.hpp"
#include "base/system.hpp"
#include "io/spill.hpp"
#include "kernels/gemm.hpp"

namespace dmpi::cli {

std::string version_string() {
  return std::string("deepmpi ") + DEEPMPI_VERSION + " (git " + DEEPMPI_GIT_HASH + ", " + DEEPMPI_BUILD_TYPE + ", " +
         DEEPMPI_CXX_COMPILER + ")";
}

}  // namespace dmpi::cli

static void usage() {
  std::printf(
      "usage: deepmpi <command> [flags]\n\n"
      "commands:\n"
      "  train          train a GPT-2 or LLaMA-family model (run under srun / mpirun); `deepmpi train --help`\n"
      "  generate       sample text from a checkpoint (one rank, KV cache); `deepmpi generate --help`\n"
      "  data prepare   tokenize text files into a token dataset; `deepmpi data prepare --help`\n"
      "  config check FILE [--data-parallel-size N]   validate a ds_config, print it resolved\n"
      "  config defaults                               the default of every key\n"
      "  report [--json]  the build, MPI, HDF5, BLAS/GEMM, CPU features, scratch, GEMM peaks\n"
      "  checkpoint inspect|verify|export DIR   checkpoints of `train --save DIR`; `deepmpi checkpoint --help`\n"
      "  --version      print the version\n");
}

// True when the GEMMs of this run go to OpenBLAS (its own pthreads pool), the case where
// spinning OpenMP threads starve the GEMMs (see ensure_passive_omp_wait). With oneDNN the GEMMs
// run on the OpenMP pool itself, and the active policy is faster.
static bool gemms_on_openblas(int argc, char** argv) {
  std::string backend = dmpi::kernels::default_gemm_backend_name();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    for (const char* flag : {"--gemm-backend", "--gemm_backend"}) {
      std::string f = flag;
      if (a == f && i + 1 < argc) backend = argv[i + 1];
      else if (a.rfind(f + "=", 0) == 0) backend = a.substr(f.size() + 1);
    }
  }
  return backend == "openblas";
}

int main(int argc, char** argv) {
  if (gemms_on_openblas(argc, argv)) dmpi::ensure_passive_omp_wait(argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      usage();
      return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version" || args[0] == "-V" || args[0] == "version") {
      std::printf("%s\n", dmpi::cli::version_string().c_str());
      return 0;
    }
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (args[0] == "train") return dmpi::cli::cmd_train(&argc, &argv, rest);
    if (args[0] == "data") return dmpi::cli::cmd_data(rest);
    if (args[0] == "generate") return dmpi::cli::cmd_generate(&argc, &argv, rest);
    if (args[0] == "config") return dmpi::cli::cmd_config(rest);
    if (args[0] == "report") return dmpi::cli::cmd_report(&argc, &argv, rest);
    if (args[0] == "checkpoint") return dmpi::cli::cmd_checkpoint(&argc, &argv, rest);
    std::string hint = dmpi::closest_match(args[0], {"train", "data", "config", "report", "checkpoint"});
    std::fprintf(stderr, "deepmpi: error: unknown command '%s'%s\n", args[0].c_str(),
                 hint.empty() ? "" : ("; did you mean '" + hint + "'?").c_str());
    usage();
    return 2;
  } catch (const std::exception& e) {
    int init = 0, fin = 0, size = 1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_size(MPI_COMM_WORLD, &size);
    std::fprintf(stderr, "deepmpi: error: %s\n", e.what());
    std::fflush(stderr);
    dmpi::io::remove_all_spill_dirs();  // NVMe spill files are scratch: never left behind by an error
    if (init && !fin) {
      if (size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
      MPI_Finalize();
    }
    return 1;
  }
}
