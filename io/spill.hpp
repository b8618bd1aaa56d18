// NVMe spill files (ZeRO-Infinity's residency tier; ../shared/DESIGN.md "Spill files",
// docs/architecture.md). Three parts:
//
//   SpillDir     <nvme_path>/deepmpi-<SLURM_JOB_ID, else rank 0's pid>/rank<r>/: created at start
//                (a directory left by a crashed job of the same id is an error naming it, never
//                reused), removed at a clean exit, at a stop signal (the trainer ends normally)
//                and before main's MPI_Abort (remove_all_spill_dirs).
//   AioEngine    asynchronous reads and writes of aligned buffers: io_uring (liburing, up to
//                aio.queue_depth requests of aio.block_size in flight) or, where io_uring is not
//                available (not built, old kernel, seccomp) or DEEPMPI_SPILL_IO=threads asks for
//                it, aio.intra_op_parallelism threads doing pread/pwrite. describe() says which.
//   SpillArrays  named float arrays of one length, one file each (O_DIRECT, allocated in full at
//                creation, so a full disk shows at start), streamed in sub-groups through
//                `buffers` host buffers: the reads run buffers - 1 sub-groups ahead of the one
//                updated, each chained in the engine after the write out of its buffer (so the
//                writes of the sub-groups just updated overlap the reads and the update of the
//                next ones). The buffers outlive a stream: its last writes
//                finish behind the caller's next work (the forward), and a buffer keeps mirroring
//                its sub-group's bytes in the file, so the next stream starts with the
//                sub-groups the last one ended with, already in memory (neither read again nor
//                waited for), then goes up through the others; offload_param's reads of those
//                elements are copies (copy_cached). A stream may also run on demand (begin,
//                ensure, finish): ZeRO-3's optimizer step is finished by the next forward, each
//                unit's gather updating the sub-groups of its partition chunk first, while the
//                reads of the next ones proceed. Beside the files an HDF5 index (index.h5) names
//                each array as an external dataset (H5Pset_external): h5dump or h5py read a
//                spilled state without deepmpi.
#pragma once
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dmpi::io {

class SpillDir {
 public:
  // Collective over comm (the id comes from rank 0). Errors name the path and the fix: nvme_path
  // missing or not a directory, not writable, a stale directory of the same id.
  SpillDir(MPI_Comm comm, const std::string& nvme_path);
  ~SpillDir();  // removes the rank directory (and the job directory once empty)
  SpillDir(const SpillDir&) = delete;
  SpillDir& operator=(const SpillDir&) = delete;
  const std::string& path() const { return dir_; }        // .../deepmpi-<id>/rank<r>
  const std::string& job_path() const { return job_; }    // .../deepmpi-<id>
  // Other deepmpi-* directories in nvme_path (crashed jobs: their space is not free)
  const std::vector<std::string>& others() const { return others_; }
  bool on_tmpfs() const { return tmpfs_; }
  uint64_t free_bytes() const;  // on the file system of nvme_path

 private:
  std::string dir_, job_;
  std::vector<std::string> others_;
  bool tmpfs_ = false;
};
// Removes every SpillDir still alive in this process (main calls it before MPI_Abort).
void remove_all_spill_dirs() noexcept;

struct AioOptions {
  size_t block_size = 1 << 20;
  int queue_depth = 8;
  int threads = 1;             // the thread-pool fallback's threads (aio.intra_op_parallelism)
  std::string backend = "";    // "", "uring" or "threads" (DEEPMPI_SPILL_IO overrides)
};

class AioEngine {
 public:
  explicit AioEngine(const AioOptions& o);
  ~AioEngine();
  AioEngine(const AioEngine&) = delete;
  AioEngine& operator=(const AioEngine&) = delete;
  bool uring() const { return uring_; }
  std::string describe() const;
  using Ticket = uint64_t;
  // buf, n and off aligned to 4096 bytes (O_DIRECT); `what` names the file in errors; a read
  // starts once the requests `after` finished (the writes out of the buffer it reads into)
  Ticket read(int fd, void* buf, size_t n, uint64_t off, const std::string& what, const std::vector<Ticket>& after = {});
  Ticket write(int fd, const void* buf, size_t n, uint64_t off, const std::string& what);
  void wait(Ticket t);  // throws the request's error (file, offset, the system's message)
  bool done(Ticket t);  // finished (or failed: wait() throws its error), without waiting
  uint64_t bytes_read() const { return bytes_read_.load(); }  // so far (any thread may ask)
  uint64_t bytes_written() const { return bytes_written_.load(); }

 private:
  struct Chunk {
    bool write;
    int fd;
    char* buf;
    size_t n;
    uint64_t off;
    Ticket t;
    size_t done = 0;
  };
  struct Job {
    size_t left = 0;
    std::string error, what;
  };
  Ticket submit(bool write, int fd, void* buf, size_t n, uint64_t off, const std::string& what,
                const std::vector<Ticket>& after);
  void finish(const Chunk& c, int err);  // with mu_ held
  void enqueue(std::vector<Chunk>& chunks);  // with mu_ held
  struct Held {  // a request waiting for others before it is queued
    size_t waiting = 0;
    std::vector<Chunk> chunks;
  };
  std::map<Ticket, Held> held_;
  std::multimap<Ticket, Ticket> dependents_;  // a request -> the held ones waiting for it
  void run_threads();
  void run_uring();
  AioOptions o_;
  bool uring_ = false;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  // Requests waiting for a worker: reads first (someone waits for each soon: the optimizer's
  // next sub-group, a gather's chunk), writes when no read waits (what they hold back is a
  // buffer's next read, chained after them, or the file's durability, settled later)
  struct Queue {
    std::deque<Chunk> reads, writes;
    bool empty() const { return reads.empty() && writes.empty(); }
    void push_back(const Chunk& c) { (c.write ? writes : reads).push_back(c); }
    void push_front(const Chunk& c) { (c.write ? writes : reads).push_front(c); }
    Chunk pop() {
      auto& q = reads.empty() ? writes : reads;
      Chunk c = q.front();
      q.pop_front();
      return c;
    }
  };
  Queue queue_;
  std::map<Ticket, Job> jobs_;
  Ticket next_ = 1;
  bool stop_ = false;
  long fail_write_at_ = -1, writes_seen_ = 0;  // DEEPMPI_TEST_SPILL_FAIL=write:K (fault injection)
  std::atomic<uint64_t> bytes_read_{0}, bytes_written_{0};
  std::vector<std::thread> workers_;
  struct Ring;
  std::unique_ptr<Ring> ring_;
};

class SpillArrays {
 public:
  // Files <dir>/<prefix>.<name>.bin of n floats each (rounded up to 4 KiB), allocated in full;
  // sub-groups of sub_group elements (rounded up to 1024 = 4 KiB) through `buffers` host buffers.
  SpillArrays(const std::string& dir, const std::string& prefix, const std::vector<std::string>& names, size_t n,
              size_t sub_group, int buffers, AioEngine& aio);
  ~SpillArrays();
  SpillArrays(const SpillArrays&) = delete;
  SpillArrays& operator=(const SpillArrays&) = delete;
  size_t size() const { return n_; }
  int count() const { return static_cast<int>(files_.size()); }
  size_t sub_group() const { return G_; }
  int buffers() const { return S_; }
  size_t host_bytes() const { return static_cast<size_t>(S_) * files_.size() * G_ * sizeof(float); }
  size_t file_bytes() const { return files_.size() * padded_ * sizeof(float); }
  // fn(begin, n, arrays): sub-group [begin, begin + n) of every array at arrays[k]. read: the
  // values are read first (else the buffers hold garbage for fn to fill); write: written back
  // after fn (which may change them; without write it must not). Pipelined over the buffers:
  // the sub-groups some buffer still holds (the last ones the previous stream updated) come
  // first and are not read, the others follow in ascending order. stream() returns with the last
  // writes in flight, waited for by whatever next touches those bytes (a stream, read, write,
  // read_async, the destructor) or by settle().
  using Fn = std::function<void(size_t begin, size_t n, float* const* arrays)>;
  void stream(const Fn& fn, bool read = true, bool write = true);
  // The same stream, run on demand (ZeRO-3's optimizer step finished by the next forward):
  // begin() issues the first reads and returns; ensure(lo, n) runs it until every sub-group over
  // elements [lo, lo + n) is done (the reads of the next ones stay in flight behind the caller's
  // work); finish() runs the rest. fn must own what it uses. Another begin() or stream() finishes
  // a pending stream first; read, write, read_async and copy_cached refuse elements it has not
  // updated (the caller ensures them first). Single caller thread.
  void begin(Fn fn, bool read = true, bool write = true);
  void ensure(size_t lo, size_t n);
  void finish();
  // A gated stream (ZeRO-3's optimizer step during the last backward, without gradient clipping
  // or loss scaling): the order is descending (the backward finishes the gradients from the top
  // of the partition down), its first reads are issued at once, and a sub-group is updated only
  // by step_ready(ready), when ready(j) says its inputs are final and its reads have arrived
  // (nothing waits there), or by finish(). ensure() does nothing; reads of elements it has not
  // updated are allowed (they see the values before the update). defer_reads: the first reads
  // wait for the first step_ready (the buffers keep what they hold for copy_cached until then).
  void begin_gated(Fn fn, bool defer_reads = false);
  size_t step_ready(const std::function<bool(size_t j)>& ready);  // sub-groups updated by this call
  size_t pending() const;  // sub-groups the pending stream has not updated yet (0: none)
  void settle();  // every write in flight finished (its error thrown here)
  // Synchronous reads and writes of any range of array k (through an aligned bounce buffer of
  // the caller's thread; safe from another thread while no stream() runs)
  void read(int k, size_t off, size_t n, float* out) const;
  void write(int k, size_t off, size_t n, const float* in);
  // Elements [off, off + n) of array k copied from the buffers if they all lie in sub-groups the
  // buffers mirror (false, nothing copied, else)
  bool copy_cached(int k, size_t off, size_t n, float* out) const;
  // Bytes of I/O the buffers saved so far: sub-group reads not needed (already in a buffer) and
  // copy_cached's copies
  uint64_t bytes_cached() const { return cached_bytes_.load(); }
  // Asynchronous reads of elements [off, off + n) of array k (the stage-3 parameter read-ahead):
  // into an aligned buffer of span(off, n) floats (aligned_buffer), where the elements start at
  // lead(off); wait(ticket) before using them. Safe while no stream() writes the array.
  struct Aligned {
    void operator()(float* p) const;
  };
  using Buffer = std::unique_ptr<float, Aligned>;
  static Buffer aligned_buffer(size_t floats);
  static size_t lead(size_t off) { return off % (4096 / sizeof(float)); }
  static size_t span(size_t off, size_t n) { return (lead(off) + n + 1023) / 1024 * 1024; }
  AioEngine::Ticket read_async(int k, size_t off, size_t n, float* buf) const;
  void wait(AioEngine::Ticket t) const { aio_.wait(t); }
  // The HDF5 index: one external dataset per array, named by `names`
  void write_index(const std::string& path) const;
  const std::string& file(int k) const { return files_[static_cast<size_t>(k)].path; }
  double io_seconds() const { return io_s_.load(); }  // time the streams and settle() waited for I/O

 private:
  struct File {
    std::string name, path;
    int fd = -1;
  };
  void range_io(int k, size_t off, size_t n, float* buf, bool write) const;
  // A host buffer's state between and during streams: the sub-group it holds (-1: none), whether
  // its bytes equal the file's (after its reads: `valid` is set when they are issued), and its
  // requests in flight. Guarded by mu_ (range reads may come from a checkpoint's thread).
  struct Slot {
    long group = -1;
    long written = -1;  // the sub-group its writes in flight carry (a chained read may be refilling it)
    bool valid = false;
    std::vector<AioEngine::Ticket> reads, writes;
  };
  void drain(std::vector<AioEngine::Ticket>& ts) const;  // with mu_ held
  void idle(Slot& sl) const;                            // with mu_ held: its reads and writes done, timed
  long holding(size_t j) const;                         // with mu_ held: the buffer mirroring sub-group j, or -1
  // The pending stream (active: begun, not finished): its order of sub-groups (position p in
  // buffer p % S), the next position to update and to read, what is done
  struct Stream {
    bool active = false, read = true, write = true, gated = false;
    Fn fn;
    std::vector<size_t> order;
    std::vector<char> done;
    size_t pos = 0, next = 0, ahead = 0;
  };
  Stream st_;
  void start(bool reads = true);            // with mu_ held: st_ active, its first reads issued
  void issue_ahead(size_t p);               // with mu_ held
  void step_one();                          // with mu_ held
  void advance(size_t lo, size_t hi);       // takes mu_
  bool pending_over(size_t lo, size_t hi) const;  // with mu_ held
  void require_updated(int k, size_t off, size_t n) const;  // takes mu_
  bool group_over(long g, size_t lo, size_t hi) const;    // sub-group g (-1: none) meets elements [lo, hi)
  // Takes mu_: the writes in flight over elements [lo, hi) finished (invalidate: and the buffers
  // holding them forgotten), the wait added to io_seconds() if timed; on an error every request
  // is drained before it propagates
  void settle_range(size_t lo, size_t hi, bool invalidate, bool timed) const;
  void drain_all_quietly() const noexcept;  // with mu_ held: after an error, and at destruction
  mutable std::mutex mu_;
  mutable std::vector<Slot> slots_;
  mutable std::atomic<uint64_t> cached_bytes_{0};
  std::vector<File> files_;
  size_t n_ = 0, padded_ = 0, G_ = 0;
  int S_ = 1;
  AioEngine& aio_;
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> bufs_;  // S_ slots x count x G_
  mutable std::atomic<double> io_s_{0.0};
};

}  // namespace dmpi::io
