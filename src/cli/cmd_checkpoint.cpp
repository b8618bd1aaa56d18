// deepmpi checkpoint inspect|verify|export: tools for checkpoint directories written by
// `deepmpi train --save` (docs/checkpoint-format.md). inspect and verify read in parallel when
// run under srun/mpirun (each rank checks a share of every dataset); export runs on rank 0 and
// streams one tensor at a time, so its memory stays bounded by the largest tensor.
#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "comm/mpi_env.hpp"
#include "io/checkpoint.hpp"
#include "io/crc32c.hpp"
#include "io/hdf5.hpp"
#include "base/dtype.hpp"
#include "src/cli/commands.hpp"
#include "base/error.hpp"
#include "base/system.hpp"

namespace fs = std::filesystem;

namespace dmpi::cli {

namespace {

using json = nlohmann::json;

std::vector<FlagSpec> ckpt_flags() {
  return {
      {"tag", true, "the tag to use (default: the one DIR/latest names)"},
      {"json", false, "inspect: print JSON"},
      {"format", true, "export: safetensors (default) | hdf5"},
      {"dtype", true, "export: fp32 (default) | bf16 | fp16"},
      {"output", true, "export: the file to write (must not exist)"},
      {"max-shard-size", true, "export: safetensors shard limit in bytes, e.g. 5GB or 500MB (default 5GB)"},
      {"help", false, "show this help"},
  };
}

void usage(const Args& a) {
  std::printf(
      "usage: deepmpi checkpoint inspect DIR [--tag T] [--json]   tags, step, topology, datasets, checksum status\n"
      "       deepmpi checkpoint verify DIR [--tag T]             recompute every checksum; exit 1 on a mismatch\n"
      "       deepmpi checkpoint export DIR [--tag T] --output FILE [--format safetensors|hdf5] [--dtype fp32|bf16|fp16]\n"
      "                                 consolidated weights (the zero_to_fp32 equivalent)\n"
      "inspect and verify read in parallel under srun/mpirun.\n\n%s",
      a.usage().c_str());
}

uint64_t parse_size(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  DMPI_REQUIRE(i > 0, "--max-shard-size '" << s << "': write a size like 5GB, 500MB or 1000000");
  const double v = std::stod(s.substr(0, i));
  std::string unit = s.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double m = 1;
  if (unit == "" || unit == "B") m = 1;
  else if (unit == "KB") m = 1e3;
  else if (unit == "MB") m = 1e6;
  else if (unit == "GB") m = 1e9;
  else if (unit == "KIB") m = 1024.0;
  else if (unit == "MIB") m = 1048576.0;
  else if (unit == "GIB") m = 1073741824.0;
  else DMPI_FAIL("--max-shard-size '" << s << "': unknown unit '" << unit << "' (B, KB, MB, GB, KiB, MiB, GiB)");
  DMPI_REQUIRE(v * m >= 1, "--max-shard-size must be positive");
  return static_cast<uint64_t>(v * m);
}

struct Opened {
  std::string dir, tag, path;
  std::vector<std::string> notes;
};

Opened open_dir(MPI_Comm comm, const std::string& dir, const std::string& tag) {
  Opened o;
  o.dir = dir;
  o.tag = io::resolve_tag(comm, dir, tag, &o.notes);
  o.path = io::checkpoint_path(dir, o.tag);
  return o;
}

size_t numel(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n;
}

// The parameter datasets in the model's order (the root attribute "tensors"), else by name.
std::vector<std::string> param_names(const io::CheckpointReader& rd) {
  std::vector<std::string> out;
  if (rd.attrs().contains("tensors") && rd.attrs()["tensors"].is_array()) {
    for (const auto& n : rd.attrs()["tensors"]) out.push_back(n.get<std::string>());
  } else {
    for (const auto& [name, shape] : rd.datasets())
      if (name.rfind("/params/", 0) == 0) out.push_back(name.substr(8));
  }
  for (const auto& n : out)
    DMPI_REQUIRE(rd.has("/params/" + n), rd.path() << " lists tensor " << n << " but has no dataset /params/" << n);
  return out;
}

int inspect(MPI_Comm comm, const Args& a, const std::string& dir, bool verify_only) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  Opened o = open_dir(comm, dir, a.str("tag"));
  io::CheckpointReader rd(comm, o.path);
  const double t0 = now_seconds();
  const auto bad_list = rd.verify_all();
  const double dt = now_seconds() - t0;
  std::set<std::string> bad(bad_list.begin(), bad_list.end());
  uint64_t bytes = 0;
  for (const auto& [name, shape] : rd.datasets()) bytes += numel(shape) * sizeof(float);
  if (rank != 0) return bad.empty() ? 0 : 1;
  const json& A = rd.attrs();
  if (verify_only) {
    for (const auto& n : o.notes) std::printf("note: %s\n", n.c_str());
    for (const auto& d : bad_list) std::printf("MISMATCH %s (stored crc32c differs from the data)\n", d.c_str());
    std::printf("%s: %zu datasets, %s, %s (checked in %.2f s, %.2f GB/s)\n", o.path.c_str(), rd.datasets().size(),
                human_bytes(static_cast<double>(bytes)).c_str(),
                bad.empty() ? "all checksums match" : (std::to_string(bad.size()) + " checksum mismatches").c_str(), dt,
                static_cast<double>(bytes) / dt / 1e9);
    return bad.empty() ? 0 : 1;
  }
  json out;
  out["directory"] = dir;
  out["tags"] = io::list_tags(dir);
  out["tag"] = o.tag;
  out["file"] = o.path;
  out["file_bytes"] = fs::file_size(o.path);
  out["incomplete"] = o.notes;
  for (const char* k : {"format_version", "deepmpi_version", "global_steps", "skipped_steps", "micro_steps",
                        "applied_steps", "global_samples", "seed", "optimizer", "optimizer_states", "precision",
                        "topology", "model", "lr_scheduler", "loss_scaler", "data", "rng"})
    if (A.contains(k)) out[k] = A[k];
  json ds = json::array();
  for (const auto& [name, shape] : rd.datasets()) {
    char crc[16];
    std::snprintf(crc, sizeof crc, "%08x", rd.stored_crc(name));
    json d;
    d["name"] = name;
    d["shape"] = shape;
    d["dtype"] = "float32";
    d["bytes"] = numel(shape) * sizeof(float);
    d["crc32c"] = std::string(crc);
    d["checksum"] = bad.count(name) ? "MISMATCH" : "ok";
    ds.push_back(d);
  }
  out["datasets"] = ds;
  out["checksum_mismatches"] = bad.size();
  if (a.has("json")) {
    std::printf("%s\n", out.dump(2).c_str());
    return bad.empty() ? 0 : 1;
  }
  std::string latest = "(none)";
  if (io::has_latest(dir)) {
    try {
      latest = io::resolve_tag(dir, "");
    } catch (const std::exception& e) {
      latest = std::string("(unusable: ") + e.what() + ")";
    }
  }
  std::printf("checkpoint directory %s\n  tags: %s\n  latest: %s\n", dir.c_str(), out["tags"].dump().c_str(),
              latest.c_str());
  for (const auto& n : o.notes) std::printf("  %s\n", n.c_str());
  std::printf("tag %s: %s (%s)\n", o.tag.c_str(), o.path.c_str(),
              human_bytes(static_cast<double>(out["file_bytes"].get<uint64_t>())).c_str());
  for (const char* k : {"format_version", "deepmpi_version", "global_steps", "skipped_steps", "micro_steps",
                        "applied_steps", "global_samples", "precision", "optimizer", "optimizer_states", "topology",
                        "model", "lr_scheduler", "loss_scaler"})
    if (out.contains(k)) std::printf("  %-18s %s\n", k, out[k].is_string() ? out[k].get<std::string>().c_str() : out[k].dump().c_str());
  std::printf("  %-44s %-14s %-8s %12s %-9s %s\n", "dataset", "shape", "dtype", "bytes", "crc32c", "checksum");
  for (const auto& d : ds)
    std::printf("  %-44s %-14s %-8s %12llu %-9s %s\n", d["name"].get<std::string>().c_str(), d["shape"].dump().c_str(),
                "float32", static_cast<unsigned long long>(d["bytes"].get<uint64_t>()),
                d["crc32c"].get<std::string>().c_str(), d["checksum"].get<std::string>().c_str());
  std::printf("%zu datasets, %s; %s\n", ds.size(), human_bytes(static_cast<double>(bytes)).c_str(),
              bad.empty() ? "every checksum matches" : (std::to_string(bad.size()) + " checksum mismatches").c_str());
  return bad.empty() ? 0 : 1;
}

// ---- export ----

enum class Out { F32, BF16, F16 };

void convert(const float* x, size_t n, Out t, std::vector<unsigned char>& bytes) {
  const size_t w = t == Out::F32 ? 4 : 2;
  bytes.resize(n * w);
  if (t == Out::F32) {
    std::memcpy(bytes.data(), x, n * 4);
  } else if (t == Out::BF16) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t b = to_bf16(x[i]).bits;
      std::memcpy(bytes.data() + 2 * i, &b, 2);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const _Float16 h = static_cast<_Float16>(x[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
}

// Writes to PATH.tmp and renames: an interrupted export never leaves a partial FILE.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    DMPI_REQUIRE(f_, "cannot create " << tmp_ << ": " << std::strerror(errno));
  }
  ~AtomicFile() {
    if (f_) std::fclose(f_), std::remove(tmp_.c_str());
  }
  void write(const void* p, size_t n) {
    DMPI_REQUIRE(std::fwrite(p, 1, n, f_) == n, "cannot write " << tmp_ << ": " << std::strerror(errno)
                                                                 << " (disk full?)");
  }
  void commit() {
    DMPI_REQUIRE(std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0, "cannot flush " << tmp_ << ": " << std::strerror(errno));
    std::fclose(f_);
    f_ = nullptr;
    DMPI_REQUIRE(std::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename " << tmp_ << " to " << path_);
  }

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

void export_safetensors(io::CheckpointReader& rd, const std::vector<std::string>& names, Out t, const std::string& out,
                        uint64_t max_shard, const json& meta) {
  const char* dt = t == Out::F32 ? "F32" : t == Out::BF16 ? "BF16" : "F16";
  const size_t w = t == Out::F32 ? 4 : 2;
  // shards: tensors in order, a new shard when the next tensor would pass max_shard
  std::vector<std::vector<std::string>> shards(1);
  uint64_t cur = 0, total = 0;
  for (const auto& n : names) {
    const uint64_t b = numel(rd.datasets().at("/params/" + n)) * w;
    if (cur > 0 && cur + b > max_shard) shards.emplace_back(), cur = 0;
    shards.back().push_back(n), cur += b, total += b;
  }
  const fs::path outp(out);
  std::string stem = outp.filename().string();
  if (stem.ends_with(".safetensors")) stem.resize(stem.size() - 12);
  std::vector<std::string> files;
  for (size_t i = 0; i < shards.size(); ++i) {
    if (shards.size() == 1) {
      files.push_back(out);
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      files.push_back((outp.parent_path() / (stem + buf)).string());
    }
    DMPI_REQUIRE(!fs::exists(files.back()), "--output: " << files.back() << " exists; remove it or choose another name");
  }
  const std::string index_path = (outp.parent_path() / (stem + ".safetensors.index.json")).string();
  if (shards.size() > 1)
    DMPI_REQUIRE(!fs::exists(index_path), "--output: " << index_path << " exists; remove it or choose another name");
  json weight_map = json::object();
  std::vector<float> buf;
  std::vector<unsigned char> bytes;
  for (size_t i = 0; i < shards.size(); ++i) {
    json header = json::object();
    header["__metadata__"] = meta;
    uint64_t off = 0;
    for (const auto& n : shards[i]) {
      const auto& shape = rd.datasets().at("/params/" + n);
      const uint64_t b = numel(shape) * w;
      header[n] = {{"dtype", dt}, {"shape", shape}, {"data_offsets", {off, off + b}}};
      off += b;
      weight_map[n] = fs::path(files[i]).filename().string();
    }
    std::string h = header.dump();
    while ((8 + h.size()) % 8) h.push_back(' ');  // the data starts 8-byte aligned
    AtomicFile f(files[i]);
    const uint64_t hl = h.size();
    f.write(&hl, 8);
    f.write(h.data(), h.size());
    for (const auto& n : shards[i]) {  // one tensor in memory at a time
      const size_t k = numel(rd.datasets().at("/params/" + n));
      buf.resize(k);
      rd.read("/params/" + n, 0, k, buf.data());
      DMPI_REQUIRE(io::crc32c_parallel(buf.data(), k * 4) == rd.stored_crc("/params/" + n),
                   rd.path() << ": /params/" << n << " does not match its checksum; nothing exported for it (the "
                             << "checkpoint is damaged; export an earlier tag)");
      convert(buf.data(), k, t, bytes);
      f.write(bytes.data(), bytes.size());
    }
    f.commit();
    std::printf("wrote %s (%zu tensors)\n", files[i].c_str(), shards[i].size());
  }
  if (shards.size() > 1) {
    AtomicFile f(index_path);
    const std::string s = json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) + "\n";
    f.write(s.data(), s.size());
    f.commit();
    std::printf("wrote %s (%zu shards, %s)\n", index_path.c_str(), shards.size(), human_bytes(static_cast<double>(total)).c_str());
  }
}

// HDF5 has no predefined 16-bit floats in 1.10: IEEE half and bfloat16 are described by fields.
io::h5::Handle float_type(Out t) {
  auto ft = DMPI_H5_OPEN(H5Tcopy(H5T_IEEE_F32LE), H5Tclose, "float type");
  if (t == Out::F32) return ft;
  const bool bf = t == Out::BF16;
  DMPI_H5_CHECK(H5Tset_fields(ft, 15, bf ? 7 : 10, bf ? 8 : 5, 0, bf ? 7 : 10), "16-bit float fields");
  DMPI_H5_CHECK(H5Tset_precision(ft, 16), "16-bit float precision");
  DMPI_H5_CHECK(H5Tset_size(ft, 2), "16-bit float size");
  DMPI_H5_CHECK(H5Tset_ebias(ft, bf ? 127 : 15), "16-bit float exponent bias");
  return ft;
}

void export_hdf5(io::CheckpointReader& rd, const std::vector<std::string>& names, Out t, const std::string& out,
                 const json& meta) {
  DMPI_REQUIRE(!fs::exists(out), "--output: " << out << " exists; remove it or choose another name");
  const std::string tmp = out + ".tmp";
  std::vector<float> buf;
  std::vector<unsigned char> bytes;
  {
    auto f = DMPI_H5_OPEN(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "cannot create " << tmp);
    auto ft = float_type(t);
    for (const auto& n : names) {
      const auto& shape = rd.datasets().at("/params/" + n);
      const size_t k = numel(shape);
      buf.resize(k);
      rd.read("/params/" + n, 0, k, buf.data());
      DMPI_REQUIRE(io::crc32c_parallel(buf.data(), k * 4) == rd.stored_crc("/params/" + n),
                   rd.path() << ": /params/" << n << " does not match its checksum (the checkpoint is damaged)");
      convert(buf.data(), k, t, bytes);
      std::vector<hsize_t> dims(shape.begin(), shape.end());
      auto sp = DMPI_H5_OPEN(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose, "space");
      auto d = DMPI_H5_OPEN(H5Dcreate2(f, ("/" + n).c_str(), ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                            "cannot create " << tmp << ":/" << n);
      DMPI_H5_CHECK(H5Dwrite(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), "cannot write " << tmp << ":/" << n);
    }
    auto scalar = DMPI_H5_OPEN(H5Screate(H5S_SCALAR), H5Sclose, "space");
    const std::string m = meta.dump();
    auto st = DMPI_H5_OPEN(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
    DMPI_H5_CHECK(H5Tset_size(st, m.size()), "string type");
    auto at = DMPI_H5_OPEN(H5Acreate2(f, "metadata", st, scalar, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, "attribute");
    DMPI_H5_CHECK(H5Awrite(at, st, m.data()), "attribute metadata of " << tmp);
  }
  DMPI_REQUIRE(std::rename(tmp.c_str(), out.c_str()) == 0, "cannot rename " << tmp << " to " << out);
  std::printf("wrote %s (%zu tensors)\n", out.c_str(), names.size());
}

int export_cmd(const Args& a, const std::string& dir) {
  const std::string fmt = a.str("format", "safetensors"), dts = a.str("dtype", "fp32");
  DMPI_REQUIRE(fmt == "safetensors" || fmt == "hdf5", "--format '" << fmt << "': write safetensors or hdf5");
  DMPI_REQUIRE(dts == "fp32" || dts == "bf16" || dts == "fp16", "--dtype '" << dts << "': write fp32, bf16 or fp16");
  DMPI_REQUIRE(a.has("output"), "export needs --output FILE");
  const std::string out = a.str("output");
  DMPI_REQUIRE(out.empty() || fs::is_directory(fs::path(out).parent_path().empty() ? "." : fs::path(out).parent_path()),
               "--output " << out << ": the directory " << fs::path(out).parent_path().string() << " does not exist");
  const Out t = dts == "fp32" ? Out::F32 : dts == "bf16" ? Out::BF16 : Out::F16;
  const uint64_t max_shard = parse_size(a.str("max-shard-size", "5GB"));
  Opened o = open_dir(MPI_COMM_SELF, dir, a.str("tag"));
  for (const auto& n : o.notes) std::printf("note: %s\n", n.c_str());
  io::CheckpointReader rd(MPI_COMM_SELF, o.path);
  const auto names = param_names(rd);
  json meta = {{"format", "pt"}, {"source", o.path}, {"global_steps", std::to_string(rd.attrs().value("global_steps", int64_t{0}))},
               {"model", rd.attrs().value("model", json::object()).dump()}, {"dtype", dts}};
  if (fmt == "safetensors") export_safetensors(rd, names, t, out, max_shard, meta);
  else export_hdf5(rd, names, t, out, meta);
  return 0;
}

}  // namespace

int cmd_checkpoint(int* argc, char*** argv, const std::vector<std::string>& argl) {
  std::vector<std::string> rest = argl;
  const std::string sub = rest.empty() ? "" : rest.front();
  if (!rest.empty()) rest.erase(rest.begin());
  Args a(ckpt_flags(), rest);
  if (sub.empty() || sub == "--help" || sub == "-h" || a.has("help")) {
    usage(a);
    return sub.empty() ? 2 : 0;
  }
  if (sub != "inspect" && sub != "verify" && sub != "export") {
    std::string hint = closest_match(sub, {"inspect", "verify", "export"});
    DMPI_FAIL("unknown checkpoint command '" << sub << "'" << (hint.empty() ? "" : "; did you mean '" + hint + "'?")
                                             << " (inspect, verify, export)");
  }
  DMPI_REQUIRE(a.positional().size() == 1, "deepmpi checkpoint " << sub << " takes one checkpoint directory (the --save DIR)");
  const std::string dir = a.positional().front();
  comm::MpiEnv mpi(argc, argv);
  if (sub == "export") {
    int rc = 0;
    if (mpi.rank() == 0) rc = export_cmd(a, dir);  // one process streams the file
    return rc;
  }
  return inspect(MPI_COMM_WORLD, a, dir, sub == "verify");
}

}  // namespace dmpi::cli
