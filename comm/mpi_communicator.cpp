#include "comm/mpi_communicator.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>

#include "comm/comm_logger.hpp"
#include "comm/watchdog.hpp"
#include "base/dtype.hpp"
#include "base/error.hpp"
#include "base/system.hpp"

namespace dmpi::comm {

namespace {

const char* const kOps[] = {"all_reduce", "reduce_scatter", "all_gather", "all_gatherv", "broadcast",
                            "all_to_all", "all_to_allv",    "send",       "recv",        "barrier"};
long long op_code(const char* op) {
  for (long long i = 0; i < static_cast<long long>(sizeof(kOps) / sizeof(kOps[0])); ++i)
    if (std::strcmp(kOps[i], op) == 0) return i;
  return -1;
}

MPI_Datatype g_f16 = MPI_DATATYPE_NULL, g_bf16 = MPI_DATATYPE_NULL;
MPI_Op g_half_sum = MPI_OP_NULL, g_half_max = MPI_OP_NULL;
std::once_flag g_types_once;

inline float load(const uint16_t v, bool bf) { return bf ? to_float(bf16{v}) : half_to_float(v); }
inline uint16_t store(float f, bool bf) { return bf ? to_bf16(f).bits : float_to_half(f); }

// Pairwise combination in fp32, one rounding back to the 16-bit type.
void half_sum(void* in, void* inout, int* len, MPI_Datatype* dt) {
  const bool bf = *dt == g_bf16;
  auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = store(load(a[i], bf) + load(b[i], bf), bf);
}
void half_max(void* in, void* inout, int* len, MPI_Datatype* dt) {
  const bool bf = *dt == g_bf16;
  auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i)
    if (load(a[i], bf) > load(b[i], bf)) b[i] = a[i];
}

void init_types() {
  std::call_once(g_types_once, [] {
    DMPI_CHECK_MPI(MPI_Type_contiguous(1, MPI_UINT16_T, &g_f16));
    DMPI_CHECK_MPI(MPI_Type_commit(&g_f16));
    DMPI_CHECK_MPI(MPI_Type_contiguous(1, MPI_UINT16_T, &g_bf16));
    DMPI_CHECK_MPI(MPI_Type_commit(&g_bf16));
    DMPI_CHECK_MPI(MPI_Op_create(&half_sum, 1, &g_half_sum));
    DMPI_CHECK_MPI(MPI_Op_create(&half_max, 1, &g_half_max));
  });
}

int as_int(size_t n, const char* what) {
  DMPI_REQUIRE(n <= static_cast<size_t>(INT_MAX),
               what << ": " << n << " elements exceed MPI's int count (" << INT_MAX << "); split the message");
  return static_cast<int>(n);
}

bool is_half(DType t) { return t == DType::F16 || t == DType::BF16; }

// Divides `n` elements at `p` by `d` (the Avg of a Sum).
void divide(void* p, size_t n, DType t, int d) {
  switch (t) {
    case DType::F32: {
      auto* x = static_cast<float*>(p);
      for (size_t i = 0; i < n; ++i) x[i] /= static_cast<float>(d);
      break;
    }
    case DType::F16:
    case DType::BF16: {
      bool bf = t == DType::BF16;
      auto* x = static_cast<uint16_t*>(p);
      for (size_t i = 0; i < n; ++i) x[i] = store(load(x[i], bf) / static_cast<float>(d), bf);
      break;
    }
    case DType::I32: {
      auto* x = static_cast<int32_t*>(p);
      for (size_t i = 0; i < n; ++i) x[i] /= d;
      break;
    }
    case DType::I64: {
      auto* x = static_cast<int64_t*>(p);
      for (size_t i = 0; i < n; ++i) x[i] /= d;
      break;
    }
    case DType::F64: {
      auto* x = static_cast<double*>(p);
      for (size_t i = 0; i < n; ++i) x[i] /= d;
      break;
    }
  }
}

}  // namespace

MPI_Datatype mpi_type(DType t) {
  init_types();
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F16: return g_f16;
    case DType::BF16: return g_bf16;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::F64: return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(DType t, ReduceOp op) {
  init_types();
  if (op == ReduceOp::Max) return is_half(t) ? g_half_max : MPI_MAX;
  return is_half(t) ? g_half_sum : MPI_SUM;  // Sum, and Avg = Sum then divide
}

double default_comm_timeout() {
  if (auto v = env("DEEPMPI_COMM_TIMEOUT")) {
    char* end = nullptr;
    double s = std::strtod(v->c_str(), &end);
    if (end && *end == '\0' && s > 0) return s;
  }
  return 1800.0;
}

// ---- MpiWork ----

MpiWork::MpiWork(MpiCommunicator* comm, const char* op, long long seq, size_t bytes)
    : comm_(comm), op_(op), seq_(seq), bytes_(bytes), t0_(now_seconds()) {}

MpiWork::~MpiWork() {
  if (done_ || req_ == MPI_REQUEST_NULL) return;
  try {
    wait();
  } catch (...) {
    // an MPI error while unwinding: the error that caused the unwinding is the one reported
  }
}

bool MpiWork::test() {
  if (done_) return true;
  int flag = 0;
  DMPI_CHECK_MPI(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE));
  if (flag) finish();
  return done_;
}

void MpiWork::wait() {
  if (done_) return;
  const double start = now_seconds();
  long spins = 0;
  Watchdog::instance().enter(comm_, op_, seq_, bytes_, false);  // lets the watchdog answer for us
  for (;;) {
    int flag = 0;
    DMPI_CHECK_MPI(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE));
    if (flag) break;
    if (++spins < 256) continue;  // small messages: poll without sleeping
    double waited = now_seconds() - start;
    if (waited > comm_->timeout()) comm_->hang(op_, seq_, bytes_, waited);
    if (spins < 4096) {
      sched_yield();
    } else {
      if (spins % 64 == 0) comm_->answer_queries(op_, seq_);  // a member that timed out asks
      usleep(50);
    }
  }
  Watchdog::instance().leave();
  finish();
}

void MpiWork::finish() {
  done_ = true;
  if (on_complete) on_complete();
  CommLogger::instance().maybe_record(op_, comm_->name(), comm_->size(), bytes_, now_seconds() - t0_, seq_);
}

// ---- MpiCommunicator ----

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, bool owned)
    : comm_(comm), owned_(owned), name_(std::move(name)), timeout_(default_comm_timeout()) {
  init_types();
  DMPI_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
  DMPI_CHECK_MPI(MPI_Comm_size(comm_, &size_));
  MPI_Group g, wg;
  DMPI_CHECK_MPI(MPI_Comm_group(comm_, &g));
  DMPI_CHECK_MPI(MPI_Comm_group(MPI_COMM_WORLD, &wg));
  std::vector<int> local(size_), world(size_);
  for (int i = 0; i < size_; ++i) local[i] = i;
  DMPI_CHECK_MPI(MPI_Group_translate_ranks(g, size_, local.data(), wg, world.data()));
  DMPI_CHECK_MPI(MPI_Group_free(&g));
  DMPI_CHECK_MPI(MPI_Group_free(&wg));
  world_ranks_ = world;
  if (size_ > 1) {
    DMPI_CHECK_MPI(MPI_Comm_dup(comm_, &diag_));
    Watchdog::instance().start();
    Watchdog::instance().add(this);
  }
}

MpiCommunicator::~MpiCommunicator() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  Watchdog::instance().remove(this);
  if (diag_ != MPI_COMM_NULL) MPI_Comm_free(&diag_);
  if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiWork> MpiCommunicator::start(const char* op, size_t bytes) {
  long long seq = ++seq_;
  last_op_ = op_code(op);
  return std::make_unique<MpiWork>(this, op, seq, bytes);
}

// Blocking MPI collectives (Open MPI's tuned algorithms: faster than the non-blocking ones for
// 1-16 MiB here) are opt-in: a hang in them can only be ended from the watchdog thread, and
// Open MPI 4.1's launcher does not always survive that (see the hang test). Default: the
// non-blocking call and a bounded wait in the calling thread, which aborts reliably.
static bool use_blocking_mpi() {
  static const bool on = env("DEEPMPI_BLOCKING_MPI").value_or("0") == "1" && Watchdog::instance().active();
  return on;
}

template <class F>
void MpiCommunicator::blocking(const char* op, size_t bytes, F&& call) {
  long long seq = ++seq_;
  last_op_ = op_code(op);
  auto& dog = Watchdog::instance();
  const double t0 = now_seconds();
  dog.enter(this, op, seq, bytes, true);
  call();
  dog.leave();
  CommLogger::instance().maybe_record(op, name_, size_, bytes, now_seconds() - t0, seq);
}

void MpiCommunicator::all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) {
  if (!use_blocking_mpi()) return Communicator::all_reduce(send, recv, count, t, op);
  int n = as_int(count, "all_reduce");
  blocking("all_reduce", count * dtype_size(t), [&] {
    DMPI_CHECK_MPI(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, n, mpi_type(t), mpi_op(t, op), comm_));
  });
  if (op == ReduceOp::Avg) divide(recv, count, t, size_);
}

void MpiCommunicator::reduce_scatter(const void* send, void* recv, size_t recv_count, DType t, ReduceOp op) {
  if (!use_blocking_mpi()) return Communicator::reduce_scatter(send, recv, recv_count, t, op);
  int n = as_int(recv_count, "reduce_scatter");
  blocking("reduce_scatter", recv_count * dtype_size(t) * size_, [&] {
    DMPI_CHECK_MPI(MPI_Reduce_scatter_block(send == recv ? MPI_IN_PLACE : send, recv, n, mpi_type(t), mpi_op(t, op), comm_));
  });
  if (op == ReduceOp::Avg) divide(recv, recv_count, t, size_);
}

void MpiCommunicator::all_gather(const void* send, size_t count, void* recv, DType t) {
  if (!use_blocking_mpi()) return Communicator::all_gather(send, count, recv, t);
  const size_t es = dtype_size(t);
  int n = as_int(count, "all_gather");
  bool in_place = send == static_cast<const char*>(recv) + static_cast<size_t>(rank_) * count * es;
  blocking("all_gather", count * es * size_, [&] {
    DMPI_CHECK_MPI(MPI_Allgather(in_place ? MPI_IN_PLACE : send, n, mpi_type(t), recv, n, mpi_type(t), comm_));
  });
}

void MpiCommunicator::all_gatherv(const void* send, void* recv, const std::vector<size_t>& counts, DType t) {
  if (!use_blocking_mpi()) return Communicator::all_gatherv(send, recv, counts, t);
  DMPI_REQUIRE(static_cast<int>(counts.size()) == size_,
               "all_gatherv on group '" << name_ << "': " << counts.size() << " counts for " << size_ << " ranks");
  const size_t es = dtype_size(t);
  std::vector<int> c(size_), d(size_);
  size_t displ = 0, my_displ = 0;
  for (int r = 0; r < size_; ++r) {
    c[r] = as_int(counts[r], "all_gatherv");
    d[r] = as_int(displ, "all_gatherv displacement");
    if (r == rank_) my_displ = displ;
    displ += counts[r];
  }
  bool in_place = send == static_cast<const char*>(recv) + my_displ * es;
  blocking("all_gatherv", displ * es, [&] {
    DMPI_CHECK_MPI(MPI_Allgatherv(in_place ? MPI_IN_PLACE : send, c[rank_], mpi_type(t), recv, c.data(), d.data(),
                                  mpi_type(t), comm_));
  });
}

void MpiCommunicator::broadcast(void* buf, size_t count, DType t, int root) {
  if (!use_blocking_mpi()) return Communicator::broadcast(buf, count, t, root);
  DMPI_REQUIRE(root >= 0 && root < size_, "broadcast on group '" << name_ << "': root " << root << " outside [0, " << size_ << ")");
  int n = as_int(count, "broadcast");
  blocking("broadcast", count * dtype_size(t), [&] { DMPI_CHECK_MPI(MPI_Bcast(buf, n, mpi_type(t), root, comm_)); });
}

void MpiCommunicator::all_to_all(const void* send, void* recv, size_t count_per_rank, DType t) {
  if (!use_blocking_mpi()) return Communicator::all_to_all(send, recv, count_per_rank, t);
  int n = as_int(count_per_rank, "all_to_all");
  blocking("all_to_all", count_per_rank * dtype_size(t) * size_, [&] {
    DMPI_CHECK_MPI(MPI_Alltoall(send == recv ? MPI_IN_PLACE : send, n, mpi_type(t), recv, n, mpi_type(t), comm_));
  });
}

void MpiCommunicator::all_to_allv(const void* send, const std::vector<size_t>& sc, void* recv,
                                  const std::vector<size_t>& rc, DType t) {
  // Through the non-blocking path (its displacement bookkeeping, in-place copy); the wait is
  // bounded either way.
  Communicator::all_to_allv(send, sc, recv, rc, t);
}

void MpiCommunicator::barrier() {
  if (!use_blocking_mpi()) return Communicator::barrier();
  blocking("barrier", 0, [&] { DMPI_CHECK_MPI(MPI_Barrier(comm_)); });
}

void MpiCommunicator::hang(const char* op, long long seq, size_t bytes, double waited) {
  std::ostringstream os;
  os << "deepmpi: HANG on world rank " << world_ranks_[rank_] << " (" << hostname() << "): waited " << waited
     << " s (timeout " << timeout_ << " s, DEEPMPI_COMM_TIMEOUT) in " << op << " #" << seq << " on group '" << name_
     << "' (" << size_ << " ranks, world ranks";
  for (int r : world_ranks_) os << " " << r;
  os << "), " << bytes << " bytes";
  std::fprintf(stderr, "%s\n", os.str().c_str());
  std::fflush(stderr);
  if (diag_ != MPI_COMM_NULL) {
    auto ms = query_members(op, seq, 3.0);
    const std::vector<bool>& answered = ms.answered;
    const std::vector<long long>& state = ms.state;
    const long long my_op = op_code(op);
    auto waiting_here = [&](int r) {
      return answered[r] && state[3 * r + 2] == 1 && state[3 * r] == seq && state[3 * r + 1] == my_op;
    };
    std::ostringstream miss;
    int missing = 0;
    for (int r = 0; r < size_; ++r) {
      if (waiting_here(r)) continue;
      ++missing;
      const long long s_seq = state[3 * r], s_op = state[3 * r + 1], s_wait = state[3 * r + 2];
      miss << "\n  group rank " << r << " (world rank " << world_ranks_[r] << ") has not arrived: ";
      const char* name = op_name_of(s_op);
      if (!answered[r]) miss << "no answer (it finished, crashed, is computing, or is in another group's op; "
                                "DEEPMPI_WATCHDOG=1 lets computing ranks answer)";
      else if (s_wait == 1) miss << "it is waiting in " << name << " #" << s_seq << " on this group";
      else miss << "it is not in an op on this group (computing, or in another group's op); its last op here was "
                << name << " #" << s_seq;
    }
    std::fprintf(stderr, "deepmpi: %d of %d ranks of group '%s' have not arrived at %s #%lld:%s\n", missing, size_,
                 name_.c_str(), op, seq, miss.str().c_str());
    std::fflush(stderr);
    // Watchdog-thread path (opt-in): one rank ends the job. The lowest rank waiting in this op
    // goes first; the others wait to be killed, and end themselves if that does not happen.
    // From a waiting main thread every rank calls MPI_Abort, which launchers handle best.
    if (Watchdog::instance().on_watchdog_thread()) {
      int leader = rank_;
      for (int r = 0; r < size_; ++r)
        if (waiting_here(r)) {
          leader = r;
          break;
        }
      const double until_kill = now_seconds() + 10.0;
      while (leader != rank_ && now_seconds() < until_kill) {
        answer_queries(op, seq);
        usleep(10000);
      }
    }
  }
  if (Watchdog::instance().on_watchdog_thread()) {
    // Open MPI 4.1 can hang or crash in MPI_Abort called from a second thread while the main
    // thread is inside a blocking collective; a rank killed by a signal ends the job under
    // mpirun, and under srun with --kill-on-bad-exit=1.
    std::fprintf(stderr, "deepmpi: ending this rank (SIGKILL) so the launcher ends the job instead of hanging\n");
    std::fflush(stderr);
    kill(getpid(), SIGKILL);
  }
  std::fprintf(stderr, "deepmpi: aborting the job (MPI_Abort) instead of hanging\n");
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();
}

void MpiCommunicator::answer_queries(const char* waiting_op, long long waiting_seq) {
  if (diag_ == MPI_COMM_NULL) return;
  constexpr int kQuery = 1, kAnswer = 2;
  for (;;) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    // Matched probe: the watchdog and a wait loop can never take each other's message.
    if (MPI_Improbe(MPI_ANY_SOURCE, kQuery, diag_, &flag, &msg, &st) != MPI_SUCCESS || !flag) return;
    long long q[2];
    MPI_Mrecv(q, 2, MPI_LONG_LONG, &msg, MPI_STATUS_IGNORE);
    long long a[3];
    if (waiting_op) a[0] = waiting_seq, a[1] = op_code(waiting_op), a[2] = 1;
    else a[0] = seq_.load(), a[1] = last_op_.load(), a[2] = 0;
    MPI_Send(a, 3, MPI_LONG_LONG, st.MPI_SOURCE, kAnswer, diag_);  // three integers: sent eagerly
  }
}

const char* MpiCommunicator::op_name_of(long long code) {
  return code >= 0 && code < static_cast<long long>(sizeof(kOps) / sizeof(kOps[0])) ? kOps[code] : "no op yet";
}

MpiCommunicator::MemberStates MpiCommunicator::query_members(const char* op, long long seq, double wait_s) {
  MemberStates ms;
  ms.answered.assign(size_, false);
  ms.state.assign(static_cast<size_t>(size_) * 3, -1);
  ms.answered[rank_] = true;
  ms.state[3 * rank_] = op ? seq : seq_.load();
  ms.state[3 * rank_ + 1] = op ? op_code(op) : last_op_.load();
  ms.state[3 * rank_ + 2] = op ? 1 : 0;
  if (diag_ == MPI_COMM_NULL) return ms;
  // Ask every other member which op it is in; members waiting on this group (or whose
  // watchdog thread runs) answer; the others stay silent.
  constexpr int kQuery = 1, kAnswer = 2;
  const long long q[2] = {seq, op ? op_code(op) : -1};
  std::vector<MPI_Request> sends;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    sends.emplace_back();
    MPI_Isend(q, 2, MPI_LONG_LONG, r, kQuery, diag_, &sends.back());
  }
  const double until = now_seconds() + wait_s;
  int pending = size_ - 1;
  while (pending > 0 && now_seconds() < until) {
    answer_queries(op, seq);  // the others may be asking us at the same time
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    MPI_Improbe(MPI_ANY_SOURCE, kAnswer, diag_, &flag, &msg, &st);
    if (!flag) {
      usleep(1000);
      continue;
    }
    long long a[3];
    MPI_Mrecv(a, 3, MPI_LONG_LONG, &msg, MPI_STATUS_IGNORE);
    if (!ms.answered[st.MPI_SOURCE]) --pending;
    ms.answered[st.MPI_SOURCE] = true;
    for (int k = 0; k < 3; ++k) ms.state[3 * st.MPI_SOURCE + k] = a[k];
  }
  // Queries nobody answered stay posted; cancel them so a later query starts clean.
  for (auto& rq : sends) {
    int done = 0;
    MPI_Test(&rq, &done, MPI_STATUS_IGNORE);
    if (!done) {
      MPI_Cancel(&rq);
      MPI_Request_free(&rq);
    }
  }
  return ms;
}

WorkPtr MpiCommunicator::iall_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) {
  auto w = start("all_reduce", count * dtype_size(t));
  int n = as_int(count, "all_reduce");
  DMPI_CHECK_MPI(MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, n, mpi_type(t), mpi_op(t, op), comm_, w->req()));
  if (op == ReduceOp::Avg) w->on_complete = [recv, count, t, s = size_] { divide(recv, count, t, s); };
  return w;
}

WorkPtr MpiCommunicator::ireduce_scatter(const void* send, void* recv, size_t recv_count, DType t, ReduceOp op) {
  auto w = start("reduce_scatter", recv_count * dtype_size(t) * size_);
  int n = as_int(recv_count, "reduce_scatter");
  DMPI_CHECK_MPI(MPI_Ireduce_scatter_block(send == recv ? MPI_IN_PLACE : send, recv, n, mpi_type(t), mpi_op(t, op),
                                           comm_, w->req()));
  if (op == ReduceOp::Avg) w->on_complete = [recv, recv_count, t, s = size_] { divide(recv, recv_count, t, s); };
  return w;
}

WorkPtr MpiCommunicator::iall_gather(const void* send, size_t count, void* recv, DType t) {
  const size_t es = dtype_size(t);
  auto w = start("all_gather", count * es * size_);
  int n = as_int(count, "all_gather");
  bool in_place = send == static_cast<const char*>(recv) + static_cast<size_t>(rank_) * count * es;
  DMPI_CHECK_MPI(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, n, mpi_type(t), recv, n, mpi_type(t), comm_, w->req()));
  return w;
}

WorkPtr MpiCommunicator::iall_gatherv(const void* send, void* recv, const std::vector<size_t>& counts, DType t) {
  DMPI_REQUIRE(static_cast<int>(counts.size()) == size_,
               "all_gatherv on group '" << name_ << "': " << counts.size() << " counts for " << size_ << " ranks");
  const size_t es = dtype_size(t);
  size_t total = 0;
  for (auto c : counts) total += c;
  auto w = start("all_gatherv", total * es);
  std::vector<int> ints(2 * static_cast<size_t>(size_));
  size_t displ = 0, my_displ = 0;
  for (int r = 0; r < size_; ++r) {
    ints[r] = as_int(counts[r], "all_gatherv");
    ints[size_ + r] = as_int(displ, "all_gatherv displacement");
    if (r == rank_) my_displ = displ;
    displ += counts[r];
  }
  bool in_place = send == static_cast<const char*>(recv) + my_displ * es;
  w->scratch.resize(ints.size() * sizeof(int));
  std::memcpy(w->scratch.data(), ints.data(), w->scratch.size());
  const int* c = reinterpret_cast<const int*>(w->scratch.data());
  DMPI_CHECK_MPI(MPI_Iallgatherv(in_place ? MPI_IN_PLACE : send, c[rank_], mpi_type(t), recv, c, c + size_, mpi_type(t),
                                 comm_, w->req()));
  return w;
}

WorkPtr MpiCommunicator::ibroadcast(void* buf, size_t count, DType t, int root) {
  DMPI_REQUIRE(root >= 0 && root < size_, "broadcast on group '" << name_ << "': root " << root << " outside [0, " << size_ << ")");
  auto w = start("broadcast", count * dtype_size(t));
  DMPI_CHECK_MPI(MPI_Ibcast(buf, as_int(count, "broadcast"), mpi_type(t), root, comm_, w->req()));
  return w;
}

WorkPtr MpiCommunicator::iall_to_all(const void* send, void* recv, size_t count_per_rank, DType t) {
  const size_t es = dtype_size(t), total = count_per_rank * es * size_;
  auto w = start("all_to_all", total);
  int n = as_int(count_per_rank, "all_to_all");
  const void* src = send;
  if (send == recv) {  // in place through a copy (MPI_IN_PLACE for non-blocking all-to-all is not portable)
    w->scratch.assign(static_cast<const unsigned char*>(send), static_cast<const unsigned char*>(send) + total);
    src = w->scratch.data();
  }
  DMPI_CHECK_MPI(MPI_Ialltoall(src, n, mpi_type(t), recv, n, mpi_type(t), comm_, w->req()));
  return w;
}

WorkPtr MpiCommunicator::iall_to_allv(const void* send, const std::vector<size_t>& send_counts, void* recv,
                                      const std::vector<size_t>& recv_counts, DType t) {
  DMPI_REQUIRE(static_cast<int>(send_counts.size()) == size_ && static_cast<int>(recv_counts.size()) == size_,
               "all_to_allv on group '" << name_ << "': counts must have " << size_ << " entries");
  const size_t es = dtype_size(t);
  size_t send_total = 0, recv_total = 0;
  for (int r = 0; r < size_; ++r) send_total += send_counts[r], recv_total += recv_counts[r];
  auto w = start("all_to_allv", send_total * es);
  size_t ints_bytes = 4 * static_cast<size_t>(size_) * sizeof(int);
  size_t copy_bytes = send == recv ? send_total * es : 0;
  w->scratch.resize(ints_bytes + copy_bytes);
  int* c = reinterpret_cast<int*>(w->scratch.data());
  size_t sd = 0, rd = 0;
  for (int r = 0; r < size_; ++r) {
    c[r] = as_int(send_counts[r], "all_to_allv");
    c[size_ + r] = as_int(sd, "all_to_allv displacement");
    c[2 * size_ + r] = as_int(recv_counts[r], "all_to_allv");
    c[3 * size_ + r] = as_int(rd, "all_to_allv displacement");
    sd += send_counts[r];
    rd += recv_counts[r];
  }
  const void* src = send;
  if (copy_bytes) {
    std::memcpy(w->scratch.data() + ints_bytes, send, copy_bytes);
    src = w->scratch.data() + ints_bytes;
  }
  DMPI_CHECK_MPI(MPI_Ialltoallv(src, c, c + size_, mpi_type(t), recv, c + 2 * size_, c + 3 * size_, mpi_type(t), comm_,
                                w->req()));
  return w;
}

WorkPtr MpiCommunicator::isend(const void* buf, size_t count, DType t, int dst, int tag) {
  DMPI_REQUIRE(dst >= 0 && dst < size_, "send on group '" << name_ << "': destination " << dst << " outside [0, " << size_ << ")");
  auto w = start("send", count * dtype_size(t));
  DMPI_CHECK_MPI(MPI_Isend(buf, as_int(count, "send"), mpi_type(t), dst, tag, comm_, w->req()));
  return w;
}

WorkPtr MpiCommunicator::irecv(void* buf, size_t count, DType t, int src, int tag) {
  DMPI_REQUIRE(src >= 0 && src < size_, "recv on group '" << name_ << "': source " << src << " outside [0, " << size_ << ")");
  auto w = start("recv", count * dtype_size(t));
  DMPI_CHECK_MPI(MPI_Irecv(buf, as_int(count, "recv"), mpi_type(t), src, tag, comm_, w->req()));
  return w;
}

WorkPtr MpiCommunicator::ibarrier() {
  auto w = start("barrier", 0);
  DMPI_CHECK_MPI(MPI_Ibarrier(comm_, w->req()));
  return w;
}

double bus_factor(const std::string& op, int n) {
  if (n <= 1) return op == "all_reduce" ? 0.0 : (op == "broadcast" || op == "send" || op == "recv" ? 1.0 : 0.0);
  if (op == "all_reduce") return 2.0 * (n - 1) / n;
  if (op == "reduce_scatter" || op == "all_gather" || op == "all_gatherv" || op == "all_to_all" || op == "all_to_allv")
    return static_cast<double>(n - 1) / n;
  if (op == "barrier") return 0.0;
  return 1.0;  // broadcast, send, recv
}

}  // namespace dmpi::comm
