#include "io/spill.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/error.hpp"
#include "base/system.hpp"
#include "io/hdf5.hpp"

#ifdef DEEPMPI_HAVE_URING
#include <liburing.h>
#endif

namespace dmpi::io {

namespace fs = std::filesystem;

namespace {
constexpr size_t kAlign = 4096;
size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
std::string err_text(int e) { return std::strerror(e); }

std::mutex g_dirs_mu;
std::vector<std::string>& live_dirs() {
  static std::vector<std::string> v;
  return v;
}

float* aligned_floats(size_t n) {
  void* p = nullptr;
  const size_t bytes = round_up(std::max<size_t>(n * sizeof(float), kAlign), kAlign);
  const int rc = posix_memalign(&p, kAlign, bytes);
  DMPI_REQUIRE(rc == 0, "cannot allocate " << bytes << " bytes of aligned spill buffers: " << err_text(rc));
  return static_cast<float*>(p);
}

// pread/pwrite of the whole range (EINTR and short transfers continued)
void full_io(bool write, int fd, char* buf, size_t n, uint64_t off, const std::string& what) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = write ? ::pwrite(fd, buf + done, n - done, static_cast<off_t>(off + done))
                            : ::pread(fd, buf + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    DMPI_REQUIRE(r > 0, "spill file " << what << ": " << (write ? "write" : "read") << " of " << (n - done)
                                      << " bytes at offset " << (off + done) << " failed: "
                                      << (r == 0 ? std::string("unexpected end of file") : err_text(errno)));
    done += static_cast<size_t>(r);
  }
}
}  // namespace

// ---------------------------------------------------------------- SpillDir

SpillDir::SpillDir(MPI_Comm comm, const std::string& nvme_path) {
  int rank = 0;
  DMPI_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  char id[64] = {0};
  if (rank == 0) {
    const char* job = std::getenv("SLURM_JOB_ID");
    std::snprintf(id, sizeof id, "%s", job && *job ? job : std::to_string(::getpid()).c_str());
  }
  DMPI_CHECK_MPI(MPI_Bcast(id, sizeof id, MPI_CHAR, 0, comm));
  struct stat st {};
  DMPI_REQUIRE(::stat(nvme_path.c_str(), &st) == 0,
               "offload nvme_path " << nvme_path << " does not exist on " << hostname() << " (" << err_text(errno)
                                    << "): create it on every node (mkdir -p " << nvme_path
                                    << ") or point nvme_path at a node-local NVMe file system");
  DMPI_REQUIRE(S_ISDIR(st.st_mode), "offload nvme_path " << nvme_path << " is not a directory: point nvme_path at a "
                                                            "directory on a node-local NVMe file system");
  struct statfs sf {};
  if (::statfs(nvme_path.c_str(), &sf) == 0) tmpfs_ = sf.f_type == 0x01021994;  // TMPFS_MAGIC
  job_ = (fs::path(nvme_path) / (std::string("deepmpi-") + id)).string();
  dir_ = (fs::path(job_) / ("rank" + std::to_string(rank))).string();
  if (::mkdir(job_.c_str(), 0755) != 0 && errno != EEXIST)
    DMPI_FAIL("cannot create the spill directory " << job_ << " (" << err_text(errno) << "): offload nvme_path "
                                                    << nvme_path << " must be writable by this job");
  if (::mkdir(dir_.c_str(), 0700) != 0) {
    const int e = errno;
    DMPI_REQUIRE(e != EEXIST, "spill directory " << dir_ << " already exists: it was left by an earlier job with the "
                                                 "same id ("
                                                 << id << ") that did not end cleanly, and is never reused. If no job "
                                                          "is running with it, remove it (rm -rf "
                                                 << dir_ << ") and start again");
    DMPI_FAIL("cannot create the spill directory " << dir_ << " (" << err_text(e) << "): offload nvme_path " << nvme_path
                                                    << " must be writable by this job");
  }
  {
    std::lock_guard<std::mutex> lk(g_dirs_mu);
    live_dirs().push_back(dir_);
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(nvme_path, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("deepmpi-", 0) == 0 && e.path().string() != job_) others_.push_back(e.path().string());
  }
  std::sort(others_.begin(), others_.end());
}

SpillDir::~SpillDir() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
  ::rmdir(job_.c_str());  // the last rank of the node removes it
  std::lock_guard<std::mutex> lk(g_dirs_mu);
  auto& v = live_dirs();
  v.erase(std::remove(v.begin(), v.end(), dir_), v.end());
}

uint64_t SpillDir::free_bytes() const {
  struct statvfs s {};
  if (::statvfs(dir_.c_str(), &s) != 0) return 0;
  return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
}

void remove_all_spill_dirs() noexcept {
  try {
    std::lock_guard<std::mutex> lk(g_dirs_mu);
    for (const auto& d : live_dirs()) {
      std::error_code ec;
      fs::remove_all(d, ec);
      ::rmdir(fs::path(d).parent_path().c_str());
    }
    live_dirs().clear();
  } catch (...) {
  }
}

// ---------------------------------------------------------------- AioEngine

struct AioEngine::Ring {
#ifdef DEEPMPI_HAVE_URING
  io_uring ring{};
#endif
  std::string why_not;  // why io_uring is not used
};

AioEngine::AioEngine(const AioOptions& o) : o_(o), ring_(std::make_unique<Ring>()) {
  o_.block_size = round_up(std::max<size_t>(o_.block_size, kAlign), kAlign);
  o_.queue_depth = std::max(1, o_.queue_depth);
  o_.threads = std::max(1, o_.threads);
  std::string want = o_.backend;
  if (const char* e = std::getenv("DEEPMPI_SPILL_IO"); e && *e) want = e;
  DMPI_REQUIRE(want.empty() || want == "uring" || want == "threads",
               "DEEPMPI_SPILL_IO=" << want << ": write uring or threads (or leave it unset: io_uring where available)");
  if (const char* f = std::getenv("DEEPMPI_TEST_SPILL_FAIL"); f && std::strncmp(f, "write:", 6) == 0)
    fail_write_at_ = std::atol(f + 6);
#ifdef DEEPMPI_HAVE_URING
  if (want != "threads") {
    const int rc = io_uring_queue_init(static_cast<unsigned>(o_.queue_depth), &ring_->ring, 0);
    if (rc == 0) uring_ = true;
    else ring_->why_not = "io_uring_queue_init: " + err_text(-rc);
  } else {
    ring_->why_not = "DEEPMPI_SPILL_IO=threads";
  }
#else
  ring_->why_not = "built without liburing";
#endif
  DMPI_REQUIRE(uring_ || want != "uring", "DEEPMPI_SPILL_IO=uring: io_uring is not available here (" << ring_->why_not
                                                                                                     << ")");
  if (uring_) workers_.emplace_back([this] { run_uring(); });
  else
    for (int i = 0; i < o_.threads; ++i) workers_.emplace_back([this] { run_threads(); });
}

AioEngine::~AioEngine() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
#ifdef DEEPMPI_HAVE_URING
  if (uring_) io_uring_queue_exit(&ring_->ring);
#endif
}

std::string AioEngine::describe() const {
  auto kib = std::to_string(o_.block_size / 1024) + " KiB blocks";
  if (uring_) return "io_uring (queue depth " + std::to_string(o_.queue_depth) + ", " + kib + ", O_DIRECT)";
  return "thread pool of " + std::to_string(o_.threads) + " pread/pwrite thread(s) (" + kib + ", O_DIRECT; io_uring not used: " +
         ring_->why_not + ")";
}

AioEngine::Ticket AioEngine::read(int fd, void* buf, size_t n, uint64_t off, const std::string& what,
                                  const std::vector<Ticket>& after) {
  return submit(false, fd, buf, n, off, what, after);
}
AioEngine::Ticket AioEngine::write(int fd, const void* buf, size_t n, uint64_t off, const std::string& what) {
  return submit(true, fd, const_cast<void*>(buf), n, off, what, {});
}

AioEngine::Ticket AioEngine::submit(bool write, int fd, void* buf, size_t n, uint64_t off, const std::string& what,
                                    const std::vector<Ticket>& after) {
  std::lock_guard<std::mutex> lk(mu_);
  const Ticket t = next_++;
  Job& j = jobs_[t];
  j.what = what;
  std::vector<Chunk> chunks;
  for (size_t a = 0; a < n; a += o_.block_size)
    chunks.push_back({write, fd, static_cast<char*>(buf) + a, std::min(o_.block_size, n - a), off + a, t});
  j.left = chunks.size();
  if (chunks.empty()) return t;
  // requests still in flight among `after` (one waited for already, or finished, is done)
  size_t waiting = 0;
  for (Ticket a : after) {
    auto it = jobs_.find(a);
    if (it != jobs_.end() && it->second.left > 0) ++waiting, dependents_.emplace(a, t);
  }
  if (waiting > 0) {
    held_[t] = Held{waiting, std::move(chunks)};
    return t;
  }
  enqueue(chunks);
  return t;
}

void AioEngine::enqueue(std::vector<Chunk>& chunks) {
  for (auto& c : chunks) {
    if (c.write && fail_write_at_ >= 0 && writes_seen_++ == fail_write_at_) {
      finish(c, ENOSPC);  // fault injection: this block finds the disk full
      continue;
    }
    queue_.push_back(c);
  }
  work_cv_.notify_all();
}

void AioEngine::finish(const Chunk& c, int err) {
  Job& j = jobs_.at(c.t);
  if (err && j.error.empty())
    j.error = "spill file " + j.what + ": " + (c.write ? "write" : "read") + " of " + std::to_string(c.n) +
              " bytes at offset " + std::to_string(c.off) + " failed: " + err_text(err) +
              (err == ENOSPC ? " (the nvme_path file system is full: free space there or point nvme_path at a larger "
                               "one; the last checkpoint is untouched)"
                             : "");
  if (!err) (c.write ? bytes_written_ : bytes_read_) += c.n;
  if (--j.left > 0) return;
  done_cv_.notify_all();
  // the requests held for this one go to the queue once nothing else holds them
  auto [b, e] = dependents_.equal_range(c.t);
  std::vector<Ticket> ready;
  for (auto it = b; it != e; ++it)
    if (--held_.at(it->second).waiting == 0) ready.push_back(it->second);
  dependents_.erase(b, e);
  for (Ticket r : ready) {
    std::vector<Chunk> chunks = std::move(held_.at(r).chunks);
    held_.erase(r);
    enqueue(chunks);
  }
}

bool AioEngine::done(Ticket t) {
  std::lock_guard<std::mutex> lk(mu_);
  const auto it = jobs_.find(t);
  return it == jobs_.end() || it->second.left == 0;
}

void AioEngine::wait(Ticket t) {
  std::unique_lock<std::mutex> lk(mu_);
  done_cv_.wait(lk, [&] { return jobs_.at(t).left == 0; });
  const std::string e = std::move(jobs_.at(t).error);
  jobs_.erase(t);
  lk.unlock();
  DMPI_REQUIRE(e.empty(), e);
}

void AioEngine::run_threads() {
  for (;;) {
    Chunk c{};
    {
      std::unique_lock<std::mutex> lk(mu_);
      work_cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      c = queue_.pop();
    }
    int err = 0;
    while (c.done < c.n) {
      const ssize_t r = c.write ? ::pwrite(c.fd, c.buf + c.done, c.n - c.done, static_cast<off_t>(c.off + c.done))
                                : ::pread(c.fd, c.buf + c.done, c.n - c.done, static_cast<off_t>(c.off + c.done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        err = r == 0 ? EIO : errno;
        break;
      }
      c.done += static_cast<size_t>(r);
    }
    std::lock_guard<std::mutex> lk(mu_);
    finish(c, err);
  }
}

void AioEngine::run_uring() {
#ifdef DEEPMPI_HAVE_URING
  io_uring& ring = ring_->ring;
  std::map<uint64_t, Chunk> active;
  uint64_t ids = 0;
  for (;;) {
    bool submitted = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (active.empty()) work_cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (active.empty() && queue_.empty()) return;  // stop_
      while (static_cast<int>(active.size()) < o_.queue_depth && !queue_.empty()) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        if (!sqe) break;
        Chunk c = queue_.pop();
        if (c.write) io_uring_prep_write(sqe, c.fd, c.buf + c.done, static_cast<unsigned>(c.n - c.done), c.off + c.done);
        else io_uring_prep_read(sqe, c.fd, c.buf + c.done, static_cast<unsigned>(c.n - c.done), c.off + c.done);
        io_uring_sqe_set_data64(sqe, ++ids);
        active.emplace(ids, c);
        submitted = true;
      }
    }
    if (submitted) {
      int rc;
      do rc = io_uring_submit(&ring);
      while (rc == -EINTR);
      if (rc < 0) {  // nothing reached the kernel: every request fails with the reason
        std::lock_guard<std::mutex> lk(mu_);
        for (auto& [id, c] : active) finish(c, -rc);
        active.clear();
        continue;
      }
    }
    io_uring_cqe* cqe = nullptr;
    int rc;
    do rc = io_uring_wait_cqe(&ring, &cqe);
    while (rc == -EINTR);
    if (rc < 0) continue;
    const uint64_t id = io_uring_cqe_get_data64(cqe);
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    auto it = active.find(id);
    if (it == active.end()) continue;
    Chunk c = it->second;
    active.erase(it);
    std::lock_guard<std::mutex> lk(mu_);
    if (res == -EINTR || res == -EAGAIN) {
      queue_.push_front(c);
    } else if (res < 0 || res == 0) {
      finish(c, res < 0 ? -res : EIO);
    } else {
      c.done += static_cast<size_t>(res);
      if (c.done < c.n) queue_.push_front(c);  // a short transfer: the rest again
      else finish(c, 0);
    }
  }
#endif
}

// ---------------------------------------------------------------- SpillArrays

void SpillArrays::Free::operator()(float* p) const { std::free(p); }

SpillArrays::SpillArrays(const std::string& dir, const std::string& prefix, const std::vector<std::string>& names,
                         size_t n, size_t sub_group, int buffers, AioEngine& aio)
    : n_(n), aio_(aio) {
  padded_ = round_up(n, kAlign / sizeof(float));
  G_ = round_up(std::max<size_t>(1, std::min(sub_group, std::max<size_t>(n, 1))), kAlign / sizeof(float));
  const size_t nsub = (n + G_ - 1) / G_;
  S_ = static_cast<int>(std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(std::max(1, buffers)), nsub)));
  // growing a file past `ulimit -f` raises SIGXFSZ, which would kill the process before the
  // error could be reported: the call then fails with EFBIG instead
  std::signal(SIGXFSZ, SIG_IGN);
  const bool no_direct = std::getenv("DEEPMPI_TEST_SPILL_NO_DIRECT") != nullptr;  // the tmpfs case, simulated
  for (const auto& nm : names) {
    File f;
    f.name = nm;
    f.path = (fs::path(dir) / (prefix + "." + nm + ".bin")).string();
    f.fd = no_direct ? -1 : ::open(f.path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
    const int e = no_direct ? EINVAL : errno;
    if (f.fd < 0) {
      for (auto& g : files_) ::close(g.fd), ::unlink(g.path.c_str());
      DMPI_REQUIRE(e != EINVAL, "spill file " << f.path << ": the file system of " << dir
                                              << " does not support direct I/O (O_DIRECT), which NVMe offload needs "
                                                 "(tmpfs on older kernels and some network file systems lack it): "
                                                 "point nvme_path at a local ext4 or xfs file system on NVMe");
      DMPI_FAIL("cannot create the spill file " << f.path << ": " << err_text(e));
    }
    files_.push_back(f);
    const off_t bytes = static_cast<off_t>(padded_ * sizeof(float));
    if (bytes == 0) continue;
    int rc = ::fallocate(f.fd, 0, 0, bytes);
    int fe = rc == 0 ? 0 : errno;
    if (rc != 0 && fe == EOPNOTSUPP) rc = ::ftruncate(f.fd, bytes), fe = rc == 0 ? 0 : errno;  // no fallocate: sparse
    if (rc != 0) {
      struct statvfs s {};
      const double free_gb = ::statvfs(dir.c_str(), &s) == 0 ? static_cast<double>(s.f_bavail) * s.f_frsize / 1e9 : -1;
      for (auto& g : files_) ::close(g.fd), ::unlink(g.path.c_str());
      files_.clear();
      DMPI_FAIL("cannot allocate the spill file " << f.path << " (" << static_cast<double>(bytes) / 1e9 << " GB): "
                                                  << err_text(fe)
                                                  << (fe == ENOSPC ? " - the file system of nvme_path is full (" +
                                                                         std::to_string(free_gb) +
                                                                         " GB free): free space or point nvme_path "
                                                                         "at a larger one"
                                                      : fe == EFBIG ? " - the file size limit (ulimit -f) is too small"
                                                                    : ""));
    }
  }
  slots_.resize(static_cast<size_t>(S_));
  if (n_ > 0) {
    const size_t total = static_cast<size_t>(S_) * files_.size() * G_;
    bufs_.reset(aligned_floats(total));
    std::memset(bufs_.get(), 0, total * sizeof(float));
  }
}

SpillArrays::~SpillArrays() {
  drain_all_quietly();  // the last stream's writes: nothing may move into freed buffers
  for (auto& f : files_) ::close(f.fd), ::unlink(f.path.c_str());
}

void SpillArrays::drain(std::vector<AioEngine::Ticket>& ts) const {
  while (!ts.empty()) {  // each ticket leaves the list before its wait (which may throw)
    const AioEngine::Ticket t = ts.back();
    ts.pop_back();
    aio_.wait(t);
  }
}

void SpillArrays::drain_all_quietly() const noexcept {
  for (auto& sl : slots_) {
    for (auto* ts : {&sl.reads, &sl.writes})
      while (!ts->empty()) {
        const AioEngine::Ticket t = ts->back();
        ts->pop_back();
        try {
          aio_.wait(t);
        } catch (...) {
        }
      }
    sl.group = -1, sl.valid = false;
  }
}

void SpillArrays::settle_range(size_t lo, size_t hi, bool invalidate, bool timed) const {
  std::lock_guard<std::mutex> lk(mu_);
  const double a = now_seconds();
  try {
    for (auto& sl : slots_) {
      // the writes of the sub-group it wrote (which a chained read may already have replaced)
      if (group_over(sl.written, lo, hi)) drain(sl.writes), sl.written = -1;
      if (invalidate && group_over(sl.group, lo, hi)) drain(sl.reads), drain(sl.writes), sl.group = -1, sl.valid = false;
    }
  } catch (...) {
    drain_all_quietly();  // nothing may still move into or out of the buffers
    throw;
  }
  if (timed) io_s_ += now_seconds() - a;
}

bool SpillArrays::group_over(long g, size_t lo, size_t hi) const {
  if (g < 0) return false;
  const size_t g0 = static_cast<size_t>(g) * G_, g1 = std::min(n_, g0 + G_);
  return g1 > lo && g0 < hi;
}

void SpillArrays::settle() { settle_range(0, n_, false, true); }

void SpillArrays::stream(const Fn& fn, bool read, bool write) {
  begin(fn, read, write);
  finish();
}

long SpillArrays::holding(size_t j) const {
  for (size_t s = 0; s < slots_.size(); ++s)
    if (slots_[s].group == static_cast<long>(j) && slots_[s].valid) return static_cast<long>(s);
  return -1;
}

void SpillArrays::begin(Fn fn, bool read, bool write) {
  finish();  // a stream still pending first: its sub-groups are then what this one reads
  if (n_ == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  const size_t nsub = (n_ + G_ - 1) / G_;
  const auto S = static_cast<size_t>(S_);
  // The order: position p goes through buffer p % S. A buffer that holds a sub-group (its bytes
  // the file's) gives it position s, its own index: it is not read. The other sub-groups follow
  // in ascending order (S <= nsub leaves enough of them to fill every buffer that holds none),
  // so a forward going up the partition finds its sub-groups in the order they are updated.
  Stream& st = st_;
  st = Stream{};
  st.fn = std::move(fn), st.read = read, st.write = write;
  st.done.assign(nsub, 0);
  std::vector<long> held(S, -1);
  std::vector<char> taken(nsub, 0);
  for (size_t s = 0; s < S; ++s) {
    const long g = slots_[s].group;
    if (g >= 0 && static_cast<size_t>(g) < nsub && !taken[static_cast<size_t>(g)] && (slots_[s].valid || !read))
      held[s] = g, taken[static_cast<size_t>(g)] = 1;
  }
  size_t rest = 0;
  auto next_rest = [&] {
    while (taken[rest]) ++rest;
    taken[rest] = 1;
    return rest;
  };
  st.order.reserve(nsub);
  for (size_t s = 0; s < S; ++s) st.order.push_back(held[s] >= 0 ? static_cast<size_t>(held[s]) : next_rest());
  while (st.order.size() < nsub) st.order.push_back(next_rest());
  start();
}

void SpillArrays::start(bool reads) {
  // how far ahead to read: S - 1 places, into the buffer of the sub-group just updated, the read
  // chained after that buffer's write in the engine
  st_.ahead = static_cast<size_t>(S_) - 1;
  st_.active = true;
  if (!reads) return;
  try {
    issue_ahead(0);
  } catch (...) {
    st_ = Stream{};
    drain_all_quietly();
    throw;
  }
}

void SpillArrays::begin_gated(Fn fn, bool defer_reads) {
  finish();
  if (n_ == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  const size_t nsub = (n_ + G_ - 1) / G_, S = std::min(static_cast<size_t>(S_), nsub);
  st_ = Stream{};
  st_.fn = std::move(fn), st_.gated = true;
  st_.done.assign(nsub, 0);
  // descending; among the first S (positions s < S go through buffer s) a sub-group some buffer
  // already holds takes that buffer's position and is not read
  for (size_t q = 0; q < nsub; ++q) st_.order.push_back(nsub - 1 - q);
  std::vector<char> placed(S, 0);
  for (size_t s = 0; s < S; ++s) {
    const long g = slots_[s].group;
    if (g < 0 || !slots_[s].valid || static_cast<size_t>(g) + S < nsub) continue;  // not among the top S
    const auto at = static_cast<size_t>(std::find(st_.order.begin(), st_.order.begin() + static_cast<long>(S), g) -
                                        st_.order.begin());
    if (at >= S || placed[at] || placed[s]) continue;
    std::swap(st_.order[s], st_.order[at]);
    placed[s] = 1;
  }
  start(!defer_reads);
}

size_t SpillArrays::step_ready(const std::function<bool(size_t)>& ready) {
  std::unique_lock<std::mutex> lk(mu_);
  Stream& st = st_;
  if (!st.active || !st.gated) return 0;
  const size_t nsub = st.order.size(), S = static_cast<size_t>(S_);
  size_t stepped = 0;
  auto arrived = [&](const Slot& sl) {
    for (auto* ts : {&sl.reads, &sl.writes})
      for (AioEngine::Ticket t : *ts)
        if (!aio_.done(t)) return false;
    return true;
  };
  try {
    if (st.pos == 0) issue_ahead(0);  // (deferred reads start here; issued ones are not again)
    while (st.pos < nsub && ready(st.order[st.pos]) && arrived(slots_[st.pos % S])) step_one(), ++stepped;
  } catch (...) {
    st_ = Stream{};
    drain_all_quietly();
    throw;
  }
  if (st.pos == nsub) {
    Fn done = std::move(st.fn);
    st_ = Stream{};
    lk.unlock();
  }
  return stepped;
}

void SpillArrays::idle(Slot& sl) const {  // the buffer's requests finished (the time counted as waiting)
  const double a = now_seconds();
  drain(sl.reads);
  drain(sl.writes);
  io_s_ += now_seconds() - a;
}

// with mu_ held: the reads of every position up to p + ahead issued (each into its buffer once
// the buffer's last write is done)
void SpillArrays::issue_ahead(size_t p) {
  Stream& st = st_;
  const size_t K = files_.size(), nsub = st.order.size();
  const auto S = static_cast<size_t>(S_);
  while (st.next < nsub && st.next <= p + st.ahead) {
    const size_t q = st.next++, j = st.order[q], s = q % S;
    Slot& sl = slots_[s];
    const size_t bytes = round_up(std::min(G_, n_ - j * G_) * sizeof(float), kAlign);
    if (sl.group == static_cast<long>(j) && (sl.valid || !st.read)) {  // already there (or not wanted)
      if (st.read) cached_bytes_ += K * bytes;
      continue;
    }
    drain(sl.reads);  // (none: its last sub-group was updated, or held and not read)
    // the reads start in the engine once the buffer's writes (of the sub-group it held) are done,
    // and any write of this sub-group still in flight from another buffer: nobody waits here; no
    // other buffer names this sub-group any more (none mirrors it)
    std::vector<AioEngine::Ticket> after = sl.writes;
    for (auto& other : slots_) {
      if (&other == &sl) continue;
      if (other.group == static_cast<long>(j)) idle(other), other.group = -1, other.valid = false;
      if (other.written == static_cast<long>(j)) after.insert(after.end(), other.writes.begin(), other.writes.end());
    }
    sl.group = static_cast<long>(j), sl.valid = false;
    if (!st.read) continue;
    for (size_t k = 0; k < K; ++k)
      sl.reads.push_back(aio_.read(files_[k].fd, bufs_.get() + (s * K + k) * G_, bytes, j * G_ * sizeof(float),
                                   files_[k].path, after));
    sl.valid = true;  // once these reads are drained
  }
}

// with mu_ held: the next position of the pending stream updated and its write issued
void SpillArrays::step_one() {
  Stream& st = st_;
  const size_t K = files_.size(), S = static_cast<size_t>(S_);
  const size_t p = st.pos, j = st.order[p], s = p % S, len = std::min(G_, n_ - j * G_);
  issue_ahead(p);
  Slot& sl = slots_[s];
  idle(sl);  // its reads, and the writes of a buffer the previous stream left in flight
  std::vector<float*> ptrs(K);
  for (size_t k = 0; k < K; ++k) ptrs[k] = bufs_.get() + (s * K + k) * G_;
  st.fn(j * G_, len, ptrs.data());
  sl.valid = st.read || st.write;
  if (st.write) {
    const size_t bytes = round_up(len * sizeof(float), kAlign);
    // the padding after the last element is written as zeros
    if (len < G_)
      for (size_t k = 0; k < K; ++k) std::fill(ptrs[k] + len, ptrs[k] + G_, 0.0f);
    for (size_t k = 0; k < K; ++k)
      sl.writes.push_back(aio_.write(files_[k].fd, ptrs[k], bytes, j * G_ * sizeof(float), files_[k].path));
    sl.written = static_cast<long>(j);
  }
  st.done[j] = 1;
  ++st.pos;
}

void SpillArrays::advance(size_t lo, size_t hi) {
  std::unique_lock<std::mutex> lk(mu_);
  Stream& st = st_;
  if (!st.active) return;
  const size_t nsub = st.order.size();
  const size_t g0 = lo / G_, g1 = std::min(nsub, (std::max(hi, lo + 1) - 1) / G_ + 1);
  auto needed = [&] {
    for (size_t g = g0; g < g1; ++g)
      if (!st.done[g]) return true;
    return false;
  };
  try {
    while (st.pos < nsub && needed()) step_one();
  } catch (...) {
    // nothing may still move into or out of the buffers when the error propagates, and none of
    // them mirrors the file any more; the stream is abandoned
    st_ = Stream{};
    drain_all_quietly();
    throw;
  }
  if (st.pos == nsub) {
    Fn done = std::move(st.fn);  // released outside the lock: it may own its caller's state
    st_ = Stream{};
    lk.unlock();
  }
}

void SpillArrays::require_updated(int k, size_t off, size_t n) const {
  std::lock_guard<std::mutex> lk(mu_);
  DMPI_REQUIRE(!pending_over(off, off + n), "spill array " << files_[static_cast<size_t>(k)].name << ": elements ["
                                                            << off << ", " << off + n
                                                            << ") are read before the pending stream updated them");
}

void SpillArrays::ensure(size_t lo, size_t n) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (st_.gated) return;  // its sub-groups wait for their gradients (step_ready), not for a reader
  }
  if (n > 0) advance(lo, lo + n);
}
void SpillArrays::finish() { advance(0, n_); }

size_t SpillArrays::pending() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_.active ? st_.order.size() - st_.pos : 0;
}

bool SpillArrays::pending_over(size_t lo, size_t hi) const {
  if (!st_.active || st_.gated || hi <= lo) return false;  // a gated stream's readers want the values before it
  for (size_t g = lo / G_; g <= (hi - 1) / G_ && g < st_.done.size(); ++g)
    if (!st_.done[g]) return true;
  return false;
}

bool SpillArrays::copy_cached(int k, size_t off, size_t n, float* out) const {
  if (n == 0) return true;
  require_updated(k, off, n);
  std::lock_guard<std::mutex> lk(mu_);
  const size_t K = files_.size();
  for (size_t j = off / G_; j <= (off + n - 1) / G_; ++j) {
    const long s = holding(j);
    if (s < 0 || !slots_[static_cast<size_t>(s)].reads.empty()) return false;
  }
  for (size_t x = off; x < off + n;) {
    const size_t j = x / G_, e = std::min(off + n, (j + 1) * G_);
    const auto s = static_cast<size_t>(holding(j));
    const float* src = bufs_.get() + (s * K + static_cast<size_t>(k)) * G_ + (x - j * G_);
    std::memcpy(out + (x - off), src, (e - x) * sizeof(float));
    x = e;
  }
  cached_bytes_ += n * sizeof(float);
  return true;
}

void SpillArrays::range_io(int k, size_t off, size_t n, float* data, bool write) const {
  if (n == 0) return;
  DMPI_REQUIRE(off + n <= n_, "spill array " << files_[static_cast<size_t>(k)].name << ": elements [" << off << ", "
                                             << off + n << ") are past its end " << n_);
  const File& f = files_[static_cast<size_t>(k)];
  require_updated(k, off, n);
  // the file's bytes there: the last stream's writes finished; a write makes the buffers
  // holding those sub-groups stale (not timed: this may be a checkpoint's thread)
  settle_range(off, off + n, write, false);
  constexpr size_t kBounce = size_t{8} << 20;
  std::unique_ptr<float, Free> bounce(aligned_floats(kBounce / sizeof(float)));
  char* b = reinterpret_cast<char*>(bounce.get());
  const uint64_t lo = off * sizeof(float), hi = (off + n) * sizeof(float);
  for (uint64_t a = lo / kAlign * kAlign; a < hi; a += kBounce) {
    const uint64_t e = std::min<uint64_t>(a + kBounce, round_up(hi, kAlign));
    const uint64_t x0 = std::max(a, lo), x1 = std::min(e, hi);  // the caller's bytes in this block
    char* user = reinterpret_cast<char*>(data) + (x0 - lo);
    if (!write || x0 != a || x1 != e) full_io(false, f.fd, b, e - a, a, f.path);
    if (!write) {
      std::memcpy(user, b + (x0 - a), x1 - x0);
      continue;
    }
    std::memcpy(b + (x0 - a), user, x1 - x0);
    full_io(true, f.fd, b, e - a, a, f.path);
  }
}

void SpillArrays::Aligned::operator()(float* p) const { std::free(p); }
SpillArrays::Buffer SpillArrays::aligned_buffer(size_t floats) { return Buffer(aligned_floats(floats)); }

AioEngine::Ticket SpillArrays::read_async(int k, size_t off, size_t n, float* buf) const {
  DMPI_REQUIRE(off + n <= n_, "spill array " << files_[static_cast<size_t>(k)].name << ": elements [" << off << ", "
                                             << off + n << ") are past its end " << n_);
  const File& f = files_[static_cast<size_t>(k)];
  require_updated(k, off, n);
  // chained after the writes of these elements still in flight (a stream's, from the buffers)
  std::vector<AioEngine::Ticket> after;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& sl : slots_)
      if (group_over(sl.written, off, off + n)) after.insert(after.end(), sl.writes.begin(), sl.writes.end());
  }
  const size_t first = off - lead(off);
  return aio_.read(f.fd, buf, span(off, n) * sizeof(float), first * sizeof(float), f.path, after);
}

void SpillArrays::read(int k, size_t off, size_t n, float* out) const { range_io(k, off, n, out, false); }
void SpillArrays::write(int k, size_t off, size_t n, const float* in) { range_io(k, off, n, const_cast<float*>(in), true); }

void SpillArrays::write_index(const std::string& path) const {
  h5::quiet();
  auto file = DMPI_H5_OPEN(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                           "cannot create the spill index " << path);
  for (const auto& f : files_) {
    if (n_ == 0) break;
    auto dcpl = DMPI_H5_OPEN(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "spill index " << path);
    const std::string abs = fs::absolute(f.path).string();
    DMPI_H5_CHECK(H5Pset_external(dcpl, abs.c_str(), 0, static_cast<hsize_t>(n_ * sizeof(float))),
                  "spill index " << path << ": external file " << abs);
    const hsize_t dims[1] = {static_cast<hsize_t>(n_)};
    auto space = DMPI_H5_OPEN(H5Screate_simple(1, dims, nullptr), H5Sclose, "spill index " << path);
    auto d = DMPI_H5_OPEN(H5Dcreate2(file, f.name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                          H5Dclose, "spill index " << path << ": dataset " << f.name);
  }
  DMPI_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush " << path);
}

}  // namespace dmpi::io
