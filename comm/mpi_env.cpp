#include "comm/mpi_env.hpp"

#include "comm/watchdog.hpp"

#include <cstdlib>
#include <exception>

#include "base/error.hpp"
#include "base/system.hpp"

namespace dmpi::comm {

MpiEnv::MpiEnv(int* argc, char*** argv) {
  int provided = 0;
  // Open MPI: collectives go through the non-blocking (libnbc) path with a bounded wait; its
  // ring all-reduce measured 1.2-2.9x its default choice at 1-64 MiB on 2 and 4 ranks, with the
  // same small-message latency (perf/README.md). Only when the user has not chosen; other MPIs
  // ignore OMPI_MCA_ variables.
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
  // The hang watchdog thread (comm/watchdog.hpp, opt-in with DEEPMPI_WATCHDOG=1) makes MPI
  // calls beside the main thread and needs MULTIPLE; otherwise FUNNELED. (With the watchdog
  // thread alive, Open MPI 4.1's mpiexec sometimes hung while tearing down an aborted job.)
  const bool watchdog = env("DEEPMPI_WATCHDOG").value_or("0") == "1";
  DMPI_CHECK_MPI(MPI_Init_thread(argc, argv, watchdog ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED, &provided));
  // Errors come back as codes, so every call's failure is reported with file:line and rank.
  DMPI_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  DMPI_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  DMPI_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  DMPI_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_));
  DMPI_CHECK_MPI(MPI_Comm_rank(node_, &local_rank_));
  DMPI_CHECK_MPI(MPI_Comm_size(node_, &local_size_));
  auto cross_check = [&](const char* var, int mpi_value) {
    if (auto v = env(var)) {
      if (*v != std::to_string(mpi_value))
        warnings_.push_back(std::string(var) + "=" + *v + " disagrees with MPI (" + std::to_string(mpi_value) +
                            "); using MPI's value");
    }
  };
  cross_check("RANK", rank_);
  cross_check("WORLD_SIZE", size_);
  cross_check("LOCAL_RANK", local_rank_);
}

MpiEnv::~MpiEnv() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  // Unwinding from an exception with more than one rank: no MPI_Finalize here (it would make
  // main's handler skip MPI_Abort, and the other ranks would wait for this one forever, e.g. in
  // the MPI_Comm_split of the process groups). main prints the message and aborts the job.
  if (std::uncaught_exceptions() > 0 && size_ > 1) return;
  Watchdog::instance().stop();
  if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
  MPI_Finalize();
}

std::string MpiEnv::library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(buf, &len) != MPI_SUCCESS) return "unknown";
  std::string s(buf, static_cast<size_t>(len));
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace dmpi::comm
