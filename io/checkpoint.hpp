// Checkpoint files: one HDF5 file per tag, written and read collectively with parallel HDF5
// (MPI-IO, collective transfers). docs/checkpoint-format.md describes the layout:
//
//   DIR/latest                      the newest complete tag (written last, atomically)
//   DIR/<tag>/checkpoint.h5         root attributes: format, format_version, counters, states
//       /params/<tensor>            fp32, the tensor's full logical shape
//       /optim/<state>/<tensor>     fp32 optimizer states (exp_avg, exp_avg_sq, ...), same shapes
//   every dataset has a uint32 attribute `crc32c`: CRC32C of its logical bytes (fp32 little
//   endian, row-major), computed in pieces on the ranks and combined.
//
// Each rank writes (and reads) the hyperslabs it holds: a run of elements of a tensor in
// row-major order ("piece") is at most three hyperslabs of a 2-D dataset. A save goes to
// `<tag>.tmp/`, is flushed, reopened and verified (structure, or every byte's checksum with
// --save-verify full), renamed to `<tag>/`, and only then `latest` is replaced (write, fsync,
// rename): a crash at any point leaves the previous checkpoint and `latest` as they were.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dmpi::io {

constexpr const char* kCheckpointFormat = "deepmpi.checkpoint";
// 2: the root attributes carry CRC32Cs too (attribute attributes_crc32c); 1 (read, not written): without
constexpr int64_t kCheckpointFormatVersion = 2;
constexpr const char* kAttributeCrcs = "attributes_crc32c";
constexpr const char* kCheckpointFileName = "checkpoint.h5";

// How the tensors' bytes move (DEEPMPI_CHECKPOINT_IO): "posix" (default) creates the file, its
// datasets and attributes collectively with parallel HDF5, then every rank writes its pieces at
// the datasets' offsets in the file with direct I/O (io/raw_file.hpp) and reads them back the
// same way; "mpiio" moves them with HDF5's collective MPI-IO transfers (H5Dwrite/H5Dread) — the
// choice for parallel file systems whose MPI-IO driver aggregates (Lustre, GPFS). The files are
// identical either way.
std::string checkpoint_data_path();

class RawFile;

struct LogicalTensor {
  std::string name;
  std::vector<int64_t> shape;  // 1-D or 2-D
  size_t numel = 0;
};

// Elements [begin, begin + n) of a tensor in row-major order, held at `data` on this rank, or
// (data null: NVMe-spilled states) read on demand: fetch(i, n, out) gives elements [i, i + n) of the
// piece. Fetched pieces are written with the posix data path only, a bounded chunk at a time.
using PieceFetch = std::function<void(size_t i, size_t n, float* out)>;
// Fetched pieces move this many elements (16 MiB) at a time, with one checksum record per chunk:
// a loader that checks them back chunk by chunk uses the same size.
constexpr size_t kFetchChunk = size_t{1} << 22;
struct Piece {
  size_t tensor = 0;
  size_t begin = 0, n = 0;
  float* data = nullptr;
  PieceFetch fetch = nullptr;
};

// One group of datasets, one dataset per logical tensor ("params" -> /params/<name>). A rank
// holds disjoint pieces of a tensor (one run, or with tensor parallelism the rows or row parts
// of its split); over the ranks the pieces of a section cover every tensor exactly once.
struct Section {
  std::string group;
  std::vector<Piece> pieces;
};

// Collective over `comm`: creates `path` and writes the sections, the checksums and the root
// attributes (`attrs`: numbers and strings as HDF5 attributes; objects and arrays as JSON text).
// With the posix data path it is the three steps below in a row.
void write_checkpoint_file(MPI_Comm comm, const std::string& path, const std::vector<LogicalTensor>& tensors,
                           const std::vector<Section>& sections, const nlohmann::json& attrs);

struct CrcPiece;
// A run of this rank's bytes at its place in the file (posix data path).
struct RawWrite {
  uint64_t offset;      // in the file
  const float* data;
  size_t n;             // elements
  uint32_t key;         // section * tensors + tensor
  uint64_t begin_bytes; // in the dataset
  std::string dataset;
  PieceFetch fetch = nullptr;  // data null: the elements come from here, in chunks
};
// 1. Collective: creates `path` with the root attributes and every dataset (contiguous,
//    allocated, not filled), without data or checksums. Returns this rank's writes.
std::vector<RawWrite> create_checkpoint_layout(MPI_Comm comm, const std::string& path,
                                               const std::vector<LogicalTensor>& tensors,
                                               const std::vector<Section>& sections, const nlohmann::json& attrs);
// 2. This rank alone (any thread, no MPI): the writes with direct I/O, then fdatasync. Returns
//    the checksums of the pieces written.
std::vector<CrcPiece> write_pieces(const std::string& path, const std::vector<RawWrite>& writes);
// 3. Collective: every dataset's crc32c attribute from the ranks' piece checksums, combined.
void write_checkpoint_crcs(MPI_Comm comm, const std::string& path, const std::vector<LogicalTensor>& tensors,
                           const std::vector<std::string>& groups, const std::vector<CrcPiece>& mine);

// A checkpoint file opened collectively for reading. Opening checks the format and version.
class CheckpointReader {
 public:
  CheckpointReader(MPI_Comm comm, const std::string& path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;
  const std::string& path() const { return path_; }
  // Root attributes (strings that hold JSON objects or arrays are parsed).
  const nlohmann::json& attrs() const { return attrs_; }
  // Every dataset: path ("/params/wte.weight") -> shape.
  const std::map<std::string, std::vector<int64_t>>& datasets() const { return shapes_; }
  bool has(const std::string& dset) const { return shapes_.count(dset) != 0; }
  uint32_t stored_crc(const std::string& dset) const;
  // Reads elements [begin, begin + n) (row-major) of `dset` into `out`; n = 0 reads nothing on
  // this rank. Collective with DEEPMPI_CHECKPOINT_IO=mpiio: every rank calls it for the same
  // datasets in the same order.
  void read(const std::string& dset, size_t begin, size_t n, float* out);
  // Reads each piece (disjoint runs of `dset`) into its data: one collective transfer with mpiio.
  void read_pieces(const std::string& dset, const std::vector<Piece>& pieces);
  // Collective: reads each dataset in balanced pieces over the ranks and compares the combined
  // checksum with the stored one. Returns the datasets that differ (the same list on every rank).
  std::vector<std::string> verify_all(size_t max_buffer_elems = size_t{1} << 24);
  // The same for the datasets named (returned in that order).
  std::vector<std::string> verify(const std::vector<std::string>& datasets, size_t max_buffer_elems = size_t{1} << 24);
  // Without reading the data: every expected dataset is there with its shape, type and checksum
  // attribute, and its bytes lie inside the file. Returns what is wrong (empty: sound).
  std::vector<std::string> check_structure(const std::map<std::string, std::vector<int64_t>>& expected) const;

 private:
  MPI_Comm comm_;
  std::string path_;
  bool posix_ = true;
  std::unique_ptr<RawFile> raw_;
  std::map<std::string, uint64_t> offsets_;  // contiguous datasets: byte offset of the data
  int64_t file_ = -1;
  nlohmann::json attrs_;
  std::map<std::string, std::vector<int64_t>> shapes_;
  std::map<std::string, uint32_t> crcs_;
};

// A checksum record: the CRC32C of `bytes` bytes at byte offset `begin` of dataset `key`.
struct CrcPiece {
  uint32_t key = 0;
  uint64_t begin = 0, bytes = 0;
  uint32_t crc = 0;
};
// Collective: every rank's records gathered and combined per key (in offset order). `total`
// gives each key's byte length; a key whose pieces do not cover [0, total) exactly gets no entry.
std::map<uint32_t, uint32_t> combine_crcs(MPI_Comm comm, const std::vector<CrcPiece>& mine,
                                          const std::map<uint32_t, uint64_t>& total);

// ---- the directory protocol (rank 0 touches the file system; errors reach every rank) ----

// Runs `fn` on rank 0 of `comm`; an exception there is rethrown on every rank with its message.
void on_rank0(MPI_Comm comm, const std::function<void()>& fn);
// Rank 0: creates DIR if needed and checks it is writable (a probe file), so a run that will
// save fails at start-up, not after hours of training.
void check_save_dir(const std::string& dir);
// Rank 0 (check_save_dir calls it): what an interrupted save left in DIR is cleaned up, each with a
// line on stdout: <tag>.tmp (incomplete) is removed; <tag>.replaced is removed when <tag> was
// committed, else renamed back to <tag> (it is then the only complete copy).
void clean_leftovers(const std::string& dir);
// Rank 0: makes DIR (if needed) and DIR/<tag>.tmp (removing a stale one, with a warning on
// stdout) after checking that the file system has room for `bytes` more.
void begin_save(const std::string& dir, const std::string& tag, uint64_t bytes);
// Rank 0: fsyncs the file, renames <tag>.tmp to <tag> (replacing an older <tag>), fsyncs DIR,
// then replaces DIR/latest atomically.
void commit_save(const std::string& dir, const std::string& tag);
// The tag to load: `tag` when given, else the one DIR/latest names. Errors name the directory,
// the file and the tags present. `notes` gets one line per incomplete <tag>.tmp found (ignored).
std::string resolve_tag(const std::string& dir, const std::string& tag, std::vector<std::string>* notes = nullptr);
// The same on rank 0 of `comm`, the tag (or the error) reaching every rank; notes on rank 0.
std::string resolve_tag(MPI_Comm comm, const std::string& dir, const std::string& tag,
                        std::vector<std::string>* notes = nullptr);
// True when DIR/latest exists.
bool has_latest(const std::string& dir);
// Rank 0, before a save of <tag> into DIR: unless `overwrite` (--overwrite-checkpoints), refuses
// to replace an existing DIR/<tag> or to move DIR/latest back to an older global_step<N> (what a
// job started with --no-load in a used directory would do: a resubmitted job would then resume
// from older progress). The error names what exists and the ways out.
void check_overwrite(const std::string& dir, const std::string& tag, bool overwrite);
// N of a tag global_step<N>, else -1.
long long tag_step(const std::string& tag);
// The complete tags in DIR (directories holding checkpoint.h5), sorted by step when named global_step<N>.
std::vector<std::string> list_tags(const std::string& dir);
std::string checkpoint_path(const std::string& dir, const std::string& tag);

}  // namespace dmpi::io
