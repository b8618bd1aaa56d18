#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "io/crc32c.hpp"
#include "io/hdf5.hpp"
#include "io/raw_file.hpp"
#include "base/system.hpp"
#include "base/error.hpp"

namespace fs = std::filesystem;

namespace dmpi::io {

namespace {

int comm_rank(MPI_Comm c) {
  int r = 0;
  DMPI_CHECK_MPI(MPI_Comm_rank(c, &r));
  return r;
}
int comm_size(MPI_Comm c) {
  int n = 0;
  DMPI_CHECK_MPI(MPI_Comm_size(c, &n));
  return n;
}

h5::Handle file_access(MPI_Comm comm, const std::string& path) {
  h5::quiet();
  auto fapl = DMPI_H5_OPEN(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "file access list for " << path);
  DMPI_H5_CHECK(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), "MPI-IO driver for " << path);
  DMPI_H5_CHECK(H5Pset_all_coll_metadata_ops(fapl, true), "collective metadata reads for " << path);
  DMPI_H5_CHECK(H5Pset_coll_metadata_write(fapl, true), "collective metadata writes for " << path);
  // Datasets of 64 KiB and more start on 4 KiB boundaries (whole file-system blocks).
  DMPI_H5_CHECK(H5Pset_alignment(fapl, 65536, 4096), "alignment for " << path);
  return fapl;
}

// Selects elements [begin, begin + n) (row-major) of a 1-D or 2-D dataspace: up to three
// hyperslabs (a partial first row, whole rows, a partial last row).
// Adds elements [begin, begin + n) (row-major) to the selection of `space` (the first call of a
// selection sets it: first is then cleared).
void add_run(hid_t space, const std::vector<int64_t>& shape, size_t begin, size_t n, bool& first, const std::string& what) {
  if (n == 0) return;
  if (shape.size() == 1) {
    hsize_t start = begin, count = n;
    DMPI_H5_CHECK(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, &start, nullptr, &count, nullptr),
                  "selection in " << what);
    first = false;
    return;
  }
  DMPI_REQUIRE(shape.size() == 2, what << ": tensors of rank " << shape.size() << " are not supported (1-D or 2-D)");
  const size_t C = static_cast<size_t>(shape[1]);
  auto add = [&](size_t r, size_t c, size_t rows, size_t cols) {
    hsize_t start[2] = {r, c}, count[2] = {rows, cols};
    DMPI_H5_CHECK(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, start, nullptr, count, nullptr),
                  "selection in " << what);
    first = false;
  };
  size_t pos = begin, left = n;
  if (pos % C != 0) {  // partial first row
    const size_t k = std::min(left, C - pos % C);
    add(pos / C, pos % C, 1, k);
    pos += k, left -= k;
  }
  if (left >= C) {  // whole rows
    const size_t rows = left / C;
    add(pos / C, 0, rows, C);
    pos += rows * C, left -= rows * C;
  }
  if (left > 0) add(pos / C, 0, 1, left);  // partial last row
}

void select_run(hid_t space, const std::vector<int64_t>& shape, size_t begin, size_t n, const std::string& what) {
  if (n == 0) {
    DMPI_H5_CHECK(H5Sselect_none(space), "empty selection in " << what);
    return;
  }
  bool first = true;
  add_run(space, shape, begin, n, first, what);
}

// The selection of several runs (in increasing order, disjoint): HDF5 maps a selection's elements
// to memory in file order, so the memory buffer holds the runs back to back in that order.
void select_runs(hid_t space, const std::vector<int64_t>& shape, const std::vector<const Piece*>& runs,
                 const std::string& what) {
  bool first = true;
  for (const Piece* p : runs) add_run(space, shape, p->begin, p->n, first, what);
  if (first) DMPI_H5_CHECK(H5Sselect_none(space), "empty selection in " << what);
}

h5::Handle mem_space(size_t n, const std::string& what) {
  hsize_t dim = std::max<size_t>(n, 1);
  auto s = DMPI_H5_OPEN(H5Screate_simple(1, &dim, nullptr), H5Sclose, "memory space for " << what);
  if (n == 0) DMPI_H5_CHECK(H5Sselect_none(s), "empty memory selection for " << what);
  return s;
}

h5::Handle collective_xfer(const std::string& what) {
  auto dxpl = DMPI_H5_OPEN(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "transfer list for " << what);
  DMPI_H5_CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "collective transfer for " << what);
  return dxpl;
}

void write_attr(hid_t obj, const std::string& name, const nlohmann::json& v, const std::string& what) {
  auto scalar = DMPI_H5_OPEN(H5Screate(H5S_SCALAR), H5Sclose, "attribute space");
  if (v.is_number_integer() || v.is_boolean()) {
    int64_t x = v.is_boolean() ? (v.get<bool>() ? 1 : 0) : v.get<int64_t>();
    auto a = DMPI_H5_OPEN(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                          "attribute " << name << " of " << what);
    DMPI_H5_CHECK(H5Awrite(a, H5T_NATIVE_INT64, &x), "attribute " << name << " of " << what);
  } else if (v.is_number()) {
    double x = v.get<double>();
    auto a = DMPI_H5_OPEN(H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, scalar, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                          "attribute " << name << " of " << what);
    DMPI_H5_CHECK(H5Awrite(a, H5T_NATIVE_DOUBLE, &x), "attribute " << name << " of " << what);
  } else {
    const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
    auto t = DMPI_H5_OPEN(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
    DMPI_H5_CHECK(H5Tset_size(t, std::max<size_t>(s.size(), 1)), "string type");
    DMPI_H5_CHECK(H5Tset_strpad(t, H5T_STR_NULLPAD), "string type");
    auto a = DMPI_H5_OPEN(H5Acreate2(obj, name.c_str(), t, scalar, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                          "attribute " << name << " of " << what);
    std::string buf = s.empty() ? std::string(1, '\0') : s;
    DMPI_H5_CHECK(H5Awrite(a, t, buf.data()), "attribute " << name << " of " << what);
  }
}

// The bytes an attribute is stored as (what its CRC32C covers): int64 or float64 little-endian,
// or the string (JSON objects and arrays as their text).
std::string attr_bytes(const nlohmann::json& v) {
  if (v.is_number_integer() || v.is_boolean()) {
    const int64_t x = v.is_boolean() ? (v.get<bool>() ? 1 : 0) : v.get<int64_t>();
    return std::string(reinterpret_cast<const char*>(&x), sizeof x);
  }
  if (v.is_number()) {
    const double x = v.get<double>();
    return std::string(reinterpret_cast<const char*>(&x), sizeof x);
  }
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// Every root attribute, and their CRC32Cs as one more (a JSON object name -> crc).
void write_root_attrs(hid_t file, const nlohmann::json& attrs, const std::string& path) {
  nlohmann::json crcs = nlohmann::json::object();
  for (const auto& [k, v] : attrs.items()) {
    write_attr(file, k, v, path);
    const std::string raw = attr_bytes(v);
    crcs[k] = crc32c(raw.data(), raw.size());
  }
  write_attr(file, kAttributeCrcs, crcs.dump(), path);
}

void write_crc_attr(hid_t dset, uint32_t crc, const std::string& what) {
  auto scalar = DMPI_H5_OPEN(H5Screate(H5S_SCALAR), H5Sclose, "attribute space");
  auto a = DMPI_H5_OPEN(H5Acreate2(dset, "crc32c", H5T_STD_U32LE, scalar, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                        "attribute crc32c of " << what);
  DMPI_H5_CHECK(H5Awrite(a, H5T_NATIVE_UINT32, &crc), "attribute crc32c of " << what);
}

struct AttrReadCtx {
  nlohmann::json* out;
  std::string path;
  std::map<std::string, uint32_t> crcs;  // of the bytes as read
};
herr_t read_root_attr(hid_t loc, const char* name, const H5A_info_t*, void* p) {
  auto* ctx = static_cast<AttrReadCtx*>(p);
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a);
  const H5T_class_t cls = H5Tget_class(t);
  nlohmann::json v;
  herr_t rc = 0;
  std::string raw;
  if (cls == H5T_INTEGER) {
    int64_t x = 0;
    rc = H5Aread(a, H5T_NATIVE_INT64, &x);
    v = x;
    raw.assign(reinterpret_cast<const char*>(&x), sizeof x);
  } else if (cls == H5T_FLOAT) {
    double x = 0;
    rc = H5Aread(a, H5T_NATIVE_DOUBLE, &x);
    v = x;
    raw.assign(reinterpret_cast<const char*>(&x), sizeof x);
  } else if (cls == H5T_STRING && !H5Tis_variable_str(t)) {
    std::string s(H5Tget_size(t), '\0');
    rc = H5Aread(a, t, s.data());
    s.resize(std::strlen(s.c_str()));
    raw = s;
    if (!s.empty() && (s[0] == '{' || s[0] == '[')) {
      v = nlohmann::json::parse(s, nullptr, false);
      if (v.is_discarded()) v = s;
    } else {
      v = s;
    }
  }
  H5Tclose(t);
  H5Aclose(a);
  if (rc < 0) return -1;
  if (!v.is_null()) (*ctx->out)[name] = v;
  ctx->crcs[name] = crc32c(raw.data(), raw.size());
  return 0;
}

// Every root attribute against the CRC32C written with it (format 2): a damaged, edited, added
// or missing attribute is an error naming it.
void check_attribute_crcs(const std::string& path, const nlohmann::json& attrs, const std::map<std::string, uint32_t>& got) {
  const char* fix = ": restore the file from a copy or load an earlier tag (deepmpi checkpoint verify names every damaged part)";
  // the table is the one attribute without a checksum of its own: damage to it shows as a
  // malformed table or as a mismatch below
  DMPI_REQUIRE(attrs.contains(kAttributeCrcs) && attrs[kAttributeCrcs].is_object(),
               "checkpoint " << path << ": the attribute " << kAttributeCrcs << " (the checksums of the attributes) is "
                             << (attrs.contains(kAttributeCrcs) ? "damaged" : "missing") << fix);
  const nlohmann::json& table = attrs[kAttributeCrcs];
  for (const auto& [name, crc] : got) {
    if (name == kAttributeCrcs) continue;
    DMPI_REQUIRE(table.contains(name) && table[name].is_number_unsigned(),
                 "checkpoint " << path << ": the attribute '" << name << "' was not written by deepmpi (it is not in "
                               << kAttributeCrcs << ": its name or the table is damaged)" << fix);
    DMPI_REQUIRE(table[name].get<uint32_t>() == crc, "checkpoint " << path << ": the attribute '" << name
                                                                   << "' is damaged or was edited (its CRC32C does not "
                                                                      "match the one written with it)" << fix);
  }
  for (const auto& item : table.items())
    DMPI_REQUIRE(got.count(item.key()), "checkpoint " << path << ": the attribute '" << item.key() << "' is missing" << fix);
}

struct WalkCtx {
  std::map<std::string, std::vector<int64_t>>* shapes;
};
herr_t visit_obj(hid_t root, const char* name, const H5O_info_t* info, void* p) {
  if (info->type != H5O_TYPE_DATASET) return 0;
  auto* ctx = static_cast<WalkCtx*>(p);
  hid_t d = H5Dopen2(root, name, H5P_DEFAULT);
  if (d < 0) return -1;
  hid_t s = H5Dget_space(d);
  const int nd = H5Sget_simple_extent_ndims(s);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
  if (nd > 0) H5Sget_simple_extent_dims(s, dims.data(), nullptr);
  H5Sclose(s);
  H5Dclose(d);
  std::vector<int64_t> shape(dims.begin(), dims.end());
  (*ctx->shapes)["/" + std::string(name)] = shape;
  return 0;
}

size_t numel_of(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n;
}

std::string errno_text() { return std::strerror(errno); }

haddr_t dataset_offset(hid_t d) { return H5Dget_offset(d); }

void fsync_path(const std::string& p, bool dir) {
  int fd = ::open(p.c_str(), dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  DMPI_REQUIRE(fd >= 0, "cannot open " << p << " to flush it: " << errno_text());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  DMPI_REQUIRE(rc == 0, "fsync of " << p << " failed: " << std::strerror(err));
}

}  // namespace

std::map<uint32_t, uint32_t> combine_crcs(MPI_Comm comm, const std::vector<CrcPiece>& mine,
                                          const std::map<uint32_t, uint64_t>& total) {
  const int W = comm_size(comm);
  // records as 4 uint64: key, begin, bytes, crc
  std::vector<uint64_t> send;
  send.reserve(mine.size() * 4);
  for (const auto& p : mine) send.insert(send.end(), {p.key, p.begin, p.bytes, p.crc});
  int cnt = static_cast<int>(send.size());
  std::vector<int> counts(static_cast<size_t>(W)), displs(static_cast<size_t>(W), 0);
  DMPI_CHECK_MPI(MPI_Allgather(&cnt, 1, MPI_INT, counts.data(), 1, MPI_INT, comm));
  for (int i = 1; i < W; ++i) displs[static_cast<size_t>(i)] = displs[static_cast<size_t>(i - 1)] + counts[static_cast<size_t>(i - 1)];
  std::vector<uint64_t> all(static_cast<size_t>(displs.back() + counts.back()));
  DMPI_CHECK_MPI(MPI_Allgatherv(send.data(), cnt, MPI_UINT64_T, all.data(), counts.data(), displs.data(), MPI_UINT64_T, comm));
  std::map<uint32_t, std::vector<CrcPiece>> by_key;
  for (size_t i = 0; i + 3 < all.size(); i += 4)
    if (all[i + 2] > 0) by_key[static_cast<uint32_t>(all[i])].push_back({static_cast<uint32_t>(all[i]), all[i + 1], all[i + 2], static_cast<uint32_t>(all[i + 3])});
  std::map<uint32_t, uint32_t> out;
  for (const auto& [key, len] : total) {
    auto& v = by_key[key];
    std::sort(v.begin(), v.end(), [](const CrcPiece& a, const CrcPiece& b) { return a.begin < b.begin; });
    uint64_t pos = 0;
    uint32_t crc = 0;
    bool ok = true;
    for (const auto& p : v) {
      if (p.begin != pos) { ok = false; break; }
      crc = crc32c_combine(crc, p.crc, p.bytes);
      pos += p.bytes;
    }
    if (ok && pos == len) out[key] = crc;
  }
  return out;
}

namespace {

struct Creation {
  h5::Handle lcpl, dcpl;
};
Creation creation_lists() {
  Creation c;
  c.lcpl = DMPI_H5_OPEN(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "link list");
  DMPI_H5_CHECK(H5Pset_create_intermediate_group(c.lcpl, 1), "intermediate groups");
  c.dcpl = DMPI_H5_OPEN(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "dataset creation list");
  DMPI_H5_CHECK(H5Pset_fill_time(c.dcpl, H5D_FILL_TIME_NEVER), "fill time");  // every element is written
  DMPI_H5_CHECK(H5Pset_alloc_time(c.dcpl, H5D_ALLOC_TIME_EARLY), "allocation time");
  return c;
}

h5::Handle create_dataset(hid_t file, const Creation& c, const std::string& name, const LogicalTensor& t,
                          const std::string& what, h5::Handle* space = nullptr) {
  std::vector<hsize_t> dims(t.shape.begin(), t.shape.end());
  auto fspace = DMPI_H5_OPEN(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                             "dataspace of " << what);
  auto d = DMPI_H5_OPEN(H5Dcreate2(file, name.c_str(), H5T_IEEE_F32LE, fspace, c.lcpl, c.dcpl, H5P_DEFAULT), H5Dclose,
                        "cannot create dataset " << what);
  if (space) *space = std::move(fspace);
  return d;
}

// This rank's piece of each (section, tensor); checks that a rank holds at most one.
std::vector<std::vector<std::vector<const Piece*>>> pieces_by_tensor(const std::vector<LogicalTensor>& tensors,
                                                                     const std::vector<Section>& sections) {
  const size_t T = tensors.size();
  std::vector<std::vector<std::vector<const Piece*>>> mine(sections.size(), std::vector<std::vector<const Piece*>>(T));
  for (size_t s = 0; s < sections.size(); ++s) {
    for (const auto& p : sections[s].pieces) {
      DMPI_REQUIRE(p.tensor < T && p.begin + p.n <= tensors[p.tensor].numel, "checkpoint piece out of range");
      if (p.n) mine[s][p.tensor].push_back(&p);
    }
    for (auto& v : mine[s]) {
      std::sort(v.begin(), v.end(), [](const Piece* a, const Piece* b) { return a->begin < b->begin; });
      for (size_t i = 1; i < v.size(); ++i)
        DMPI_REQUIRE(v[i - 1]->begin + v[i - 1]->n <= v[i]->begin,
                     "overlapping pieces of " << tensors[v[i]->tensor].name << " in section " << sections[s].group
                                              << " on one rank");
    }
  }
  return mine;
}

// Pieces to one contiguous buffer in file order (several runs), or the piece's own memory (one).
const float* pack(const std::vector<const Piece*>& runs, std::vector<float>& buf) {
  static const float none = 0.0f;  // a valid address for an empty selection
  if (runs.empty()) return &none;
  if (runs.size() == 1) return runs[0]->data;
  buf.clear();
  for (const Piece* p : runs) buf.insert(buf.end(), p->data, p->data + p->n);
  return buf.data();
}
size_t total_of(const std::vector<const Piece*>& runs) {
  size_t n = 0;
  for (const Piece* p : runs) n += p->n;
  return n;
}

std::map<uint32_t, uint64_t> section_sizes(const std::vector<LogicalTensor>& tensors, size_t nsections) {
  std::map<uint32_t, uint64_t> total;
  for (size_t s = 0; s < nsections; ++s)
    for (size_t t = 0; t < tensors.size(); ++t)
      total[static_cast<uint32_t>(s * tensors.size() + t)] = tensors[t].numel * sizeof(float);
  return total;
}

// The ranks' piece checksums combined per dataset; every dataset must be covered exactly once.
std::map<uint32_t, uint32_t> combined_crcs(MPI_Comm comm, const std::vector<LogicalTensor>& tensors,
                                           const std::vector<std::string>& groups, const std::vector<CrcPiece>& mine) {
  const size_t T = tensors.size();
  const auto total = section_sizes(tensors, groups.size());
  auto crcs = combine_crcs(comm, mine, total);
  for (const auto& [key, len] : total)
    DMPI_REQUIRE(crcs.count(key), "internal: the ranks' pieces of " << groups[key / T] << "/" << tensors[key % T].name
                                                                    << " do not cover the tensor exactly once");
  return crcs;
}

}  // namespace

std::vector<RawWrite> create_checkpoint_layout(MPI_Comm comm, const std::string& path,
                                               const std::vector<LogicalTensor>& tensors,
                                               const std::vector<Section>& sections, const nlohmann::json& attrs) {
  const size_t T = tensors.size();
  const auto mine = pieces_by_tensor(tensors, sections);
  auto fapl = file_access(comm, path);
  auto file = DMPI_H5_OPEN(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose,
                           "cannot create the checkpoint file " << path);
  write_root_attrs(file, attrs, path);
  const Creation c = creation_lists();
  std::vector<RawWrite> out;
  for (size_t s = 0; s < sections.size(); ++s)
    for (size_t t = 0; t < T; ++t) {
      const std::string name = "/" + sections[s].group + "/" + tensors[t].name;
      auto d = create_dataset(file, c, name, tensors[t], path + ":" + name);
      const haddr_t off = dataset_offset(d);
      DMPI_REQUIRE(off != HADDR_UNDEF, "dataset " << path << ":" << name << " has no contiguous storage");
      for (const Piece* p : mine[s][t])
        out.push_back({static_cast<uint64_t>(off) + p->begin * sizeof(float), p->data, p->n,
                       static_cast<uint32_t>(s * T + t), p->begin * sizeof(float), name, p->fetch});
    }
  DMPI_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush " << path);
  return out;  // the collective close (file's destructor) gives the file its full size
}

std::vector<CrcPiece> write_pieces(const std::string& path, const std::vector<RawWrite>& writes) {
  std::vector<CrcPiece> crcs;
  if (writes.empty()) return crcs;
  RawFile f(path, true);
  std::vector<float> buf;
  for (const auto& w : writes) {
    if (!w.data && w.n) {  // fetched (spilled states): a bounded chunk at a time, a checksum record per chunk
      DMPI_REQUIRE(w.fetch, "checkpoint " << path << ": a piece of " << w.dataset << " has neither data nor a source");
      buf.resize(std::min(kFetchChunk, w.n));
      for (size_t i = 0; i < w.n; i += kFetchChunk) {
        const size_t c = std::min(kFetchChunk, w.n - i);
        w.fetch(i, c, buf.data());
        crcs.push_back({w.key, w.begin_bytes + i * sizeof(float), c * sizeof(float), crc32c_parallel(buf.data(), c * sizeof(float))});
        f.write(w.offset + i * sizeof(float), buf.data(), c * sizeof(float), w.dataset);
      }
      continue;
    }
    crcs.push_back({w.key, w.begin_bytes, w.n * sizeof(float), crc32c_parallel(w.data, w.n * sizeof(float))});
    f.write(w.offset, w.data, w.n * sizeof(float), w.dataset);
  }
  f.sync();
  return crcs;
}

void write_checkpoint_crcs(MPI_Comm comm, const std::string& path, const std::vector<LogicalTensor>& tensors,
                           const std::vector<std::string>& groups, const std::vector<CrcPiece>& mine) {
  const size_t T = tensors.size();
  const auto crcs = combined_crcs(comm, tensors, groups, mine);
  auto fapl = file_access(comm, path);
  auto file = DMPI_H5_OPEN(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl), H5Fclose, "cannot reopen " << path);
  for (size_t s = 0; s < groups.size(); ++s)
    for (size_t t = 0; t < T; ++t) {
      const std::string name = "/" + groups[s] + "/" + tensors[t].name;
      auto d = DMPI_H5_OPEN(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, "cannot open " << path << ":" << name);
      write_crc_attr(d, crcs.at(static_cast<uint32_t>(s * T + t)), path + ":" + name);
    }
  DMPI_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush " << path);
}

void write_checkpoint_file(MPI_Comm comm, const std::string& path, const std::vector<LogicalTensor>& tensors,
                           const std::vector<Section>& sections, const nlohmann::json& attrs) {
  std::vector<std::string> groups;
  for (const auto& s : sections) groups.push_back(s.group);
  if (checkpoint_data_path() == "posix") {
    const auto writes = create_checkpoint_layout(comm, path, tensors, sections, attrs);
    write_checkpoint_crcs(comm, path, tensors, groups, write_pieces(path, writes));
    return;
  }
  // mpiio: the checksums from memory first, then each dataset created with its attribute and
  // written with a collective transfer
  const size_t T = tensors.size();
  for (const auto& s : sections)
    for (const auto& p : s.pieces)
      DMPI_REQUIRE(p.data || !p.n, "checkpoint " << path << ": NVMe-spilled states are written with the posix data "
                                                 "path only; unset DEEPMPI_CHECKPOINT_IO=mpiio");
  const auto mine = pieces_by_tensor(tensors, sections);
  std::vector<CrcPiece> crc_mine;
  for (size_t s = 0; s < sections.size(); ++s)
    for (const auto& p : sections[s].pieces)
      crc_mine.push_back({static_cast<uint32_t>(s * T + p.tensor), p.begin * sizeof(float), p.n * sizeof(float),
                          crc32c_parallel(p.data, p.n * sizeof(float))});
  const auto crcs = combined_crcs(comm, tensors, groups, crc_mine);
  auto fapl = file_access(comm, path);
  auto file = DMPI_H5_OPEN(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose,
                           "cannot create the checkpoint file " << path);
  write_root_attrs(file, attrs, path);
  const Creation c = creation_lists();
  auto dxpl = collective_xfer(path);
  for (size_t s = 0; s < sections.size(); ++s)
    for (size_t t = 0; t < T; ++t) {
      const std::string name = "/" + sections[s].group + "/" + tensors[t].name;
      const std::string what = path + ":" + name;
      h5::Handle fspace;
      auto d = create_dataset(file, c, name, tensors[t], what, &fspace);
      write_crc_attr(d, crcs.at(static_cast<uint32_t>(s * T + t)), what);
      const auto& runs = mine[s][t];
      const size_t n = total_of(runs);
      select_runs(fspace, tensors[t].shape, runs, what);
      auto mspace = mem_space(n, what);
      std::vector<float> buf;
      DMPI_H5_CHECK(H5Dwrite(d, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, pack(runs, buf)), "cannot write dataset " << what);
    }
  DMPI_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush " << path);
}

std::string checkpoint_data_path() {
  const std::string v = env("DEEPMPI_CHECKPOINT_IO").value_or("posix");
  DMPI_REQUIRE(v == "posix" || v == "mpiio", "DEEPMPI_CHECKPOINT_IO=" << v << ": write posix (the default: metadata through "
                                             "parallel HDF5, data with direct I/O at each dataset's offset) or mpiio "
                                             "(data through HDF5's collective MPI-IO transfers)");
  return v;
}

CheckpointReader::CheckpointReader(MPI_Comm comm, const std::string& path)
    : comm_(comm), path_(path), posix_(checkpoint_data_path() == "posix") {
  h5::quiet();
  {
    // A clear error before HDF5's for the common cases (every rank sees the same file system).
    struct stat st{};
    DMPI_REQUIRE(::stat(path.c_str(), &st) == 0, "checkpoint file " << path << " does not exist (" << errno_text() << ")");
    DMPI_REQUIRE(S_ISREG(st.st_mode), "checkpoint file " << path << " is not a regular file");
  }
  auto fapl = file_access(comm, path);
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl);
  if (f < 0)
    h5::fail(__FILE__, __LINE__,
             "cannot open the checkpoint " + path + " (not an HDF5 file, or truncated / damaged: restore it or load an "
             "earlier tag)");
  file_ = f;
  AttrReadCtx actx{&attrs_, path, {}};
  hsize_t idx = 0;
  DMPI_H5_CHECK(H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &idx, read_root_attr, &actx),
                "cannot read the attributes of " << path << " (damaged file?)");
  const std::string fmt = attrs_.value("format", std::string());
  const int64_t ver = attrs_.value("format_version", int64_t{-1});
  // the attributes' checksums first, so that a damaged format or version attribute is named as
  // damaged; a format-2 checkpoint without its table is named as missing it (format 1 had none)
  if (attrs_.contains(kAttributeCrcs) || (ver >= 2 && ver <= kCheckpointFormatVersion && fmt == kCheckpointFormat))
    check_attribute_crcs(path, attrs_, actx.crcs);
  DMPI_REQUIRE(fmt == kCheckpointFormat, path << " is not a deepmpi checkpoint (root attribute format is '" << fmt
                                              << "', expected '" << kCheckpointFormat << "')");
  DMPI_REQUIRE(ver == kCheckpointFormatVersion || ver == 1,
               path << " has checkpoint format_version " << ver << "; this deepmpi reads version "
                    << kCheckpointFormatVersion
                    << (ver > kCheckpointFormatVersion ? ": it was written by a newer deepmpi; load it with that version"
                                                       : ": convert it with the deepmpi that wrote it"));
  WalkCtx w{&shapes_};
  DMPI_H5_CHECK(H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit_obj, &w, H5O_INFO_BASIC),
                "cannot list the datasets of " << path << " (damaged file?)");
  for (const auto& [name, shape] : shapes_) {
    auto d = DMPI_H5_OPEN(H5Dopen2(f, name.c_str(), H5P_DEFAULT), H5Dclose, "dataset " << path << ":" << name);
    {
      auto t = DMPI_H5_OPEN(H5Dget_type(d), H5Tclose, "type of " << path << ":" << name);
      DMPI_REQUIRE(H5Tequal(t, H5T_IEEE_F32LE) > 0, path << ":" << name << " is not little-endian float32");
    }
    const haddr_t off = dataset_offset(d);
    if (off != HADDR_UNDEF) offsets_[name] = static_cast<uint64_t>(off);
    if (H5Aexists(d, "crc32c") > 0) {
      auto a = DMPI_H5_OPEN(H5Aopen(d, "crc32c", H5P_DEFAULT), H5Aclose, "crc32c of " << path << ":" << name);
      uint32_t c = 0;
      DMPI_H5_CHECK(H5Aread(a, H5T_NATIVE_UINT32, &c), "crc32c of " << path << ":" << name);
      crcs_[name] = c;
    }
  }
}

CheckpointReader::~CheckpointReader() {
  if (file_ >= 0) H5Fclose(static_cast<hid_t>(file_));
}

uint32_t CheckpointReader::stored_crc(const std::string& dset) const {
  auto it = crcs_.find(dset);
  DMPI_REQUIRE(it != crcs_.end(), path_ << ":" << dset << " has no crc32c attribute (damaged file?)");
  return it->second;
}

void CheckpointReader::read(const std::string& dset, size_t begin, size_t n, float* out) {
  const std::string what = path_ + ":" + dset;
  auto it = shapes_.find(dset);
  DMPI_REQUIRE(it != shapes_.end(), "dataset " << dset << " is missing from " << path_);
  DMPI_REQUIRE(begin + n <= numel_of(it->second), "read past the end of " << what);
  if (posix_ && offsets_.count(dset)) {  // independent: no collective needed
    if (n == 0) return;
    if (!raw_) raw_ = std::make_unique<RawFile>(path_, false);
    raw_->read(offsets_.at(dset) + begin * sizeof(float), out, n * sizeof(float), dset);
    return;
  }
  auto d = DMPI_H5_OPEN(H5Dopen2(static_cast<hid_t>(file_), dset.c_str(), H5P_DEFAULT), H5Dclose, "cannot open " << what);
  auto fspace = DMPI_H5_OPEN(H5Dget_space(d), H5Sclose, "dataspace of " << what);
  select_run(fspace, it->second, begin, n, what);
  auto mspace = mem_space(n, what);
  auto dxpl = collective_xfer(what);
  float none = 0.0f;  // a valid address for an empty selection
  DMPI_H5_CHECK(H5Dread(d, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, n ? out : &none),
                "cannot read " << what << " (truncated or damaged file?)");
}

void CheckpointReader::read_pieces(const std::string& dset, const std::vector<Piece>& pieces) {
  const std::string what = path_ + ":" + dset;
  auto it = shapes_.find(dset);
  DMPI_REQUIRE(it != shapes_.end(), "dataset " << dset << " is missing from " << path_);
  std::vector<const Piece*> runs;
  for (const auto& p : pieces) {
    DMPI_REQUIRE(p.begin + p.n <= numel_of(it->second), "read past the end of " << what);
    if (p.n) runs.push_back(&p);
  }
  if (posix_ && offsets_.count(dset)) {  // independent: no collective needed
    for (const Piece* p : runs) read(dset, p->begin, p->n, p->data);
    return;
  }
  if (runs.size() <= 1) return read(dset, runs.empty() ? 0 : runs[0]->begin, runs.empty() ? 0 : runs[0]->n,
                                    runs.empty() ? nullptr : runs[0]->data);
  // one collective transfer of the union, in file order, into a buffer then out to the pieces
  std::sort(runs.begin(), runs.end(), [](const Piece* a, const Piece* b) { return a->begin < b->begin; });
  auto d = DMPI_H5_OPEN(H5Dopen2(static_cast<hid_t>(file_), dset.c_str(), H5P_DEFAULT), H5Dclose, "cannot open " << what);
  auto fspace = DMPI_H5_OPEN(H5Dget_space(d), H5Sclose, "dataspace of " << what);
  select_runs(fspace, it->second, runs, what);
  const size_t n = total_of(runs);
  auto mspace = mem_space(n, what);
  auto dxpl = collective_xfer(what);
  std::vector<float> buf(n);
  DMPI_H5_CHECK(H5Dread(d, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, buf.data()),
                "cannot read " << what << " (truncated or damaged file?)");
  size_t at = 0;
  for (const Piece* p : runs) std::copy_n(buf.data() + at, p->n, p->data), at += p->n;
}

std::vector<std::string> CheckpointReader::verify_all(size_t max_buffer_elems) {
  std::vector<std::string> names;
  for (const auto& [name, shape] : shapes_) names.push_back(name);
  return verify(names, max_buffer_elems);
}

std::vector<std::string> CheckpointReader::verify(const std::vector<std::string>& names, size_t max_buffer_elems) {
  const size_t W = static_cast<size_t>(comm_size(comm_)), r = static_cast<size_t>(comm_rank(comm_));
  std::map<uint32_t, uint64_t> total;
  std::vector<CrcPiece> mine;
  std::vector<float> buf;
  for (size_t key = 0; key < names.size(); ++key) {
    const std::string& name = names[key];
    auto it = shapes_.find(name);
    DMPI_REQUIRE(it != shapes_.end(), "dataset " << name << " is missing from " << path_);
    const size_t n = numel_of(it->second);
    total[static_cast<uint32_t>(key)] = n * sizeof(float);
    // this rank's balanced share, read in rounds of at most max_buffer_elems (every rank the
    // same number of rounds: the reads are collective)
    const size_t a = n * r / W, b = n * (r + 1) / W;
    const size_t share_max = (n + W - 1) / W;
    const size_t rounds = std::max<size_t>(1, (share_max + max_buffer_elems - 1) / max_buffer_elems);
    uint32_t crc = 0;
    for (size_t k = 0; k < rounds; ++k) {
      const size_t lo = std::min(b, a + k * max_buffer_elems), hi = std::min(b, lo + max_buffer_elems);
      buf.resize(std::max<size_t>(hi - lo, 1));
      read(name, lo, hi - lo, buf.data());
      crc = crc32c_combine(crc, crc32c_parallel(buf.data(), (hi - lo) * sizeof(float)), (hi - lo) * sizeof(float));
    }
    mine.push_back({static_cast<uint32_t>(key), a * sizeof(float), (b - a) * sizeof(float), crc});
  }
  const auto got = combine_crcs(comm_, mine, total);
  std::vector<std::string> bad;
  for (size_t k = 0; k < names.size(); ++k) {
    auto it = crcs_.find(names[k]);
    if (it == crcs_.end() || !got.count(static_cast<uint32_t>(k)) || got.at(static_cast<uint32_t>(k)) != it->second)
      bad.push_back(names[k]);
  }
  return bad;
}

std::vector<std::string> CheckpointReader::check_structure(
    const std::map<std::string, std::vector<int64_t>>& expected) const {
  std::vector<std::string> bad;
  struct stat st{};
  const uint64_t file_size = ::stat(path_.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  for (const auto& [name, shape] : expected) {
    auto it = shapes_.find(name);
    if (it == shapes_.end()) {
      bad.push_back(name + " is missing");
    } else if (it->second != shape) {
      bad.push_back(name + " has the wrong shape");
    } else if (!crcs_.count(name)) {
      bad.push_back(name + " has no crc32c attribute");
    } else if (auto off = offsets_.find(name);
               off != offsets_.end() && off->second + numel_of(shape) * sizeof(float) > file_size) {
      bad.push_back(name + " lies past the end of the file");
    }
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------

void on_rank0(MPI_Comm comm, const std::function<void()>& fn) {
  std::string err;
  if (comm_rank(comm) == 0) {
    try {
      fn();
    } catch (const std::exception& e) {
      err = e.what();
      if (err.empty()) err = "unknown error";
    }
  }
  int len = static_cast<int>(err.size());
  DMPI_CHECK_MPI(MPI_Bcast(&len, 1, MPI_INT, 0, comm));
  if (len == 0) return;
  err.resize(static_cast<size_t>(len));
  DMPI_CHECK_MPI(MPI_Bcast(err.data(), len, MPI_CHAR, 0, comm));
  throw Error(err);  // already carries file:line [rank 0]
}

std::string checkpoint_path(const std::string& dir, const std::string& tag) {
  return (fs::path(dir) / tag / kCheckpointFileName).string();
}

void check_save_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  DMPI_REQUIRE(!ec, "--save " << dir << ": cannot create the directory: " << ec.message()
                              << " (pick a writable path, e.g. under $SCRATCH)");
  DMPI_REQUIRE(fs::is_directory(dir), "--save " << dir << " exists and is not a directory");
  const std::string probe = (fs::path(dir) / (".deepmpi-write-test." + std::to_string(::getpid()))).string();
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DMPI_REQUIRE(fd >= 0, "--save " << dir << " is not writable: " << errno_text()
                                  << " (a read-only file system or no permission; pick another --save directory)");
  const bool wrote = ::write(fd, "ok", 2) == 2;
  const int err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  DMPI_REQUIRE(wrote, "--save " << dir << " is not writable: " << std::strerror(err));
  clean_leftovers(dir);
}

void clean_leftovers(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> tmps, replaced;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_directory()) continue;
    const std::string n = e.path().filename().string();
    if (n.ends_with(".tmp")) tmps.push_back(e.path());
    if (n.ends_with(".replaced")) replaced.push_back(e.path());
  }
  for (const auto& p : replaced) {
    const std::string name = p.filename().string();
    const fs::path tag = p.parent_path() / name.substr(0, name.size() - 9);
    if (fs::exists(tag / kCheckpointFileName)) {  // the newer copy was committed: the older one is garbage
      std::printf("[deepmpi] removing %s: the older copy of %s, left by a save that was interrupted after "
                  "committing the new one\n", p.c_str(), tag.filename().c_str());
      fs::remove_all(p, ec);
    } else if (fs::exists(p / kCheckpointFileName)) {  // the interrupted replace left only the older copy
      std::printf("[deepmpi] restoring %s from %s: a save of that tag was interrupted while replacing it; the older "
                  "copy is complete\n", tag.c_str(), p.c_str());
      fs::remove_all(tag, ec);
      fs::rename(p, tag, ec);
      DMPI_REQUIRE(!ec, "cannot rename " << p.string() << " back to " << tag.string() << ": " << ec.message());
    }
  }
  for (const auto& p : tmps) {
    std::printf("[deepmpi] removing %s: an incomplete save from an earlier run (the job stopped while writing it)\n",
                p.c_str());
    fs::remove_all(p, ec);
  }
  std::fflush(stdout);
}

void begin_save(const std::string& dir, const std::string& tag, uint64_t bytes) {
  const fs::path tmp = fs::path(dir) / (tag + ".tmp");
  std::error_code ec;
  fs::create_directories(dir, ec);
  DMPI_REQUIRE(!ec, "cannot create the checkpoint directory " << dir << ": " << ec.message());
  if (fs::exists(tmp)) {
    std::printf("[deepmpi] removing %s: an incomplete save from an earlier run\n", tmp.c_str());
    std::fflush(stdout);
    fs::remove_all(tmp, ec);
    DMPI_REQUIRE(!ec, "cannot remove the stale " << tmp.string() << ": " << ec.message());
  }
  struct statvfs sv{};
  if (::statvfs(dir.c_str(), &sv) == 0) {
    const double avail = static_cast<double>(sv.f_bavail) * static_cast<double>(sv.f_frsize);
    const double need = static_cast<double>(bytes) * 1.02 + (1 << 20);
    DMPI_REQUIRE(avail >= need, "not enough space for checkpoint " << tag << " in " << dir << ": it needs "
                                    << need / 1e9 << " GB, the file system has " << avail / 1e9
                                    << " GB free (free space, or --save to another file system); the earlier "
                                       "checkpoints are untouched");
  }
  fs::create_directory(tmp, ec);
  DMPI_REQUIRE(!ec, "cannot create " << tmp.string() << ": " << ec.message());
}

void commit_save(const std::string& dir, const std::string& tag) {
  const fs::path d(dir), tmp = d / (tag + ".tmp"), final_dir = d / tag;
  fsync_path((tmp / kCheckpointFileName).string(), false);
  fsync_path(tmp.string(), true);
  std::error_code ec;
  fs::path replaced;
  if (fs::exists(final_dir)) {  // saving a tag again (e.g. the same step after a resume)
    replaced = d / (tag + ".replaced");
    fs::remove_all(replaced, ec);
    fs::rename(final_dir, replaced, ec);
    DMPI_REQUIRE(!ec, "cannot move the older " << final_dir.string() << " aside: " << ec.message());
  }
  fs::rename(tmp, final_dir, ec);
  DMPI_REQUIRE(!ec, "cannot rename " << tmp.string() << " to " << final_dir.string() << ": " << ec.message());
  fsync_path(dir, true);
  if (replaced.empty() && fs::exists(d / (tag + ".replaced"))) replaced = d / (tag + ".replaced");  // an older crash's
  const fs::path latest_tmp = d / "latest.tmp", latest = d / "latest";
  {
    int fd = ::open(latest_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    DMPI_REQUIRE(fd >= 0, "cannot write " << latest_tmp.string() << ": " << errno_text());
    const std::string line = tag + "\n";
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    DMPI_REQUIRE(ok, "cannot write " << latest_tmp.string() << ": " << std::strerror(err));
  }
  fs::rename(latest_tmp, latest, ec);
  DMPI_REQUIRE(!ec, "cannot rename " << latest_tmp.string() << " to " << latest.string() << ": " << ec.message());
  fsync_path(dir, true);
  if (!replaced.empty()) fs::remove_all(replaced, ec);
}

std::string resolve_tag(MPI_Comm comm, const std::string& dir, const std::string& tag, std::vector<std::string>* notes) {
  std::string t;
  on_rank0(comm, [&] { t = resolve_tag(dir, tag, notes); });
  int len = static_cast<int>(t.size());
  DMPI_CHECK_MPI(MPI_Bcast(&len, 1, MPI_INT, 0, comm));
  t.resize(static_cast<size_t>(len));
  if (len) DMPI_CHECK_MPI(MPI_Bcast(t.data(), len, MPI_CHAR, 0, comm));
  return t;
}

bool has_latest(const std::string& dir) { return fs::exists(fs::path(dir) / "latest"); }

namespace {
// The tag named by DIR/latest: its first line without surrounding blanks (an editor's, `echo " tag"`).
// nullopt when the file cannot be opened or read; every reader of latest goes through here.
std::optional<std::string> read_latest(const fs::path& latest) {
  std::ifstream in(latest);
  std::string t;
  if (!in || !std::getline(in, t)) return std::nullopt;
  const size_t a = t.find_first_not_of(" \t\r\n"), b = t.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : t.substr(a, b - a + 1);
}
}  // namespace

long long tag_step(const std::string& t) {
  if (t.rfind("global_step", 0) != 0 || t.size() == 11 || t.size() > 30) return -1;
  for (size_t i = 11; i < t.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(t[i]))) return -1;
  return std::stoll(t.substr(11));
}

void check_overwrite(const std::string& dir, const std::string& tag, bool overwrite) {
  if (overwrite) return;
  const fs::path d(dir);
  const std::string ways = "resume from it (drop --no-load), --save into another directory, or pass "
                           "--overwrite-checkpoints to replace it";
  DMPI_REQUIRE(!fs::exists(d / tag / kCheckpointFileName),
               "checkpoint " << (d / tag).string() << " already exists (an earlier run saved it) and this run would "
                             << "replace it: " << ways);
  if (fs::is_directory(d / "latest")) return;  // refused with its own message when loading
  const auto latest = read_latest(d / "latest");
  if (!latest) return;
  const std::string& cur = *latest;
  const long long now = tag_step(cur), next = tag_step(tag);
  DMPI_REQUIRE(now < 0 || next < 0 || next >= now,
               (d / "latest").string() << " names " << cur << "; saving " << tag << " would move it back to older "
                                       << "progress (a resubmitted job would resume from step " << next << "): "
                                       << ways);
}

std::vector<std::string> list_tags(const std::string& dir) {
  std::vector<std::string> tags;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && !n.ends_with(".tmp") && !n.ends_with(".replaced") && fs::exists(e.path() / kCheckpointFileName))
      tags.push_back(n);
  }
  std::sort(tags.begin(), tags.end(), [](const std::string& a, const std::string& b) {
    return tag_step(a) != tag_step(b) ? tag_step(a) < tag_step(b) : a < b;
  });
  return tags;
}

std::string resolve_tag(const std::string& dir, const std::string& tag, std::vector<std::string>* notes) {
  DMPI_REQUIRE(fs::is_directory(dir), "checkpoint directory " << dir << " does not exist (check --load / the path)");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory() && e.path().filename().string().ends_with(".tmp") && notes)
      notes->push_back("ignoring " + e.path().string() + ": an incomplete save (the job stopped while writing it)");
  auto tags = list_tags(dir);
  std::string available;
  for (const auto& t : tags) available += (available.empty() ? "" : ", ") + t;
  if (available.empty()) available = "none";
  std::string t = tag;
  if (t.empty()) {
    const fs::path latest = fs::path(dir) / "latest";
    DMPI_REQUIRE(!fs::is_directory(latest), latest.string() << " is a directory, not the file naming the current tag "
                                                            << "(complete tags: " << available << "): remove it, or "
                                                            << "name a tag with --load-tag");
    DMPI_REQUIRE(fs::exists(latest), "no checkpoint to load in " << dir << ": there is no 'latest' file (complete tags: "
                                                             << available << "); name one with --load-tag, or drop "
                                                             << "--load to start from scratch");
    t = read_latest(latest).value_or(std::string());
    DMPI_REQUIRE(!t.empty(), latest.string() << " is empty (complete tags: " << available << "; name one with --load-tag)");
    const bool printable = t.size() <= 255 && std::all_of(t.begin(), t.end(), [](char c) {
                             return std::isprint(static_cast<unsigned char>(c)) != 0;
                           });
    DMPI_REQUIRE(printable, latest.string() << " does not hold a tag name (" << t.size() << " bytes, not printable "
                                            << "text: damaged?); complete tags: " << available << "; write one into it "
                                            << "(echo global_stepN > " << latest.string() << ") or name it with --load-tag");
  }
  DMPI_REQUIRE(t.find('/') == std::string::npos && t != "." && t != "..", "checkpoint tag '" << t << "' is not a plain name");
  const std::string file = checkpoint_path(dir, t);
  if (!fs::exists(file) && fs::exists(checkpoint_path(dir, t + ".replaced"))) {
    // a save of the same tag was interrupted between moving the older copy aside and renaming
    // the new one into place: the older copy is complete
    if (notes)
      notes->push_back("using " + (fs::path(dir) / (t + ".replaced")).string() + ": a save of " + t +
                       " was interrupted while replacing it");
    return t + ".replaced";
  }
  DMPI_REQUIRE(fs::exists(file), "checkpoint " << file << " does not exist (complete tags in " << dir << ": "
                                               << available << ")");
  return t;
}

}  // namespace dmpi::io
