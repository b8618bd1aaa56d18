// Errors: every library call is checked; an error carries file:line, the rank and the
// library's message. Library code throws dmpi::Error; main() prints it as one line and
// calls MPI_Abort so one failing rank never leaves the others hanging.
#pragma once
#include <stdexcept>
#include <string>
#include <sstream>
#include <vector>

namespace dmpi {

// A user-facing error: the text names the thing that is wrong and what to write instead.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// World rank for messages (-1 before MPI_Init or after MPI_Finalize).
int error_rank();

// Builds "file:line [rank R]: msg" and throws dmpi::Error.
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
// Test hook for the failure paths: with DEEPMPI_FAULT=<point>:<world rank>[,<point>:<rank>...] it
// throws a dmpi::Error on that rank when the run reaches the point (points: startup, groups, load,
// step<N>, save, exit). Without the variable it does nothing. tests/e2e/test_failure.sh uses it.
void fault_point(const std::string& point, int world_rank);
[[noreturn]] void throw_mpi_error(const char* file, int line, const char* call, int code);

// Closest string in `candidates` to `s` by edit distance; empty when nothing is close.
std::string closest_match(const std::string& s, const std::vector<std::string>& candidates);
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace dmpi

#define DMPI_FAIL(msg_expr)                                                  \
  do {                                                                       \
    std::ostringstream dmpi_os_;                                             \
    dmpi_os_ << msg_expr;                                                    \
    ::dmpi::throw_error(__FILE__, __LINE__, dmpi_os_.str());                 \
  } while (0)

#define DMPI_REQUIRE(cond, msg_expr) \
  do {                               \
    if (!(cond)) DMPI_FAIL(msg_expr); \
  } while (0)

#define DMPI_CHECK_MPI(call)                                                  \
  do {                                                                        \
    int dmpi_rc_ = (call);                                                    \
    if (dmpi_rc_ != MPI_SUCCESS) ::dmpi::throw_mpi_error(__FILE__, __LINE__, #call, dmpi_rc_); \
  } while (0)
