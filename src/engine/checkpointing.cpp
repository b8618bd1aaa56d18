// Trainer::save_checkpoint / load_checkpoint: the engine's state as logical tensors in one
// parallel-HDF5 file (io/checkpoint.hpp, docs/checkpoint-format.md).
//
// What a rank writes: at stages 1-3 the elements it owns (its chunk of every unit, split at
// tensor boundaries); at stage 0, where every rank holds everything, a balanced 1/W of each
// tensor, so all ranks share the writing. What a rank reads on load: the elements its new
// topology owns (stage 0: everything); the checksums of the datasets are recombined from the
// ranks' pieces and compared (atomic load: in a first pass, before anything live is
// overwritten). The parameters are then completed by the engine's own all-gather (stages 1-3).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "deepmpi/version.hpp"
#include "io/checkpoint.hpp"
#include "io/crc32c.hpp"
#include "src/engine/trainer.hpp"
#include "base/error.hpp"
#include "base/system.hpp"

namespace dmpi::engine {

using nlohmann::json;

namespace {

// The architecture fields of a model description (the checkpoint's `model` attribute) with the
// flag that sets each: a checkpoint loads only into the same architecture.
const std::pair<const char*, const char*> kArchitecture[] = {
    {"num_layers", "--num-layers"},
    {"hidden_size", "--hidden-size"},
    {"num_attention_heads", "--num-attention-heads"},
    {"vocab_size", "--vocab-size"},
    {"max_position_embeddings", "--max-position-embeddings"},
    {"normalization", "--normalization"},
    {"position_embedding_type", "--position-embedding-type"},
    {"swiglu", "--swiglu"},
    {"ffn_hidden_size", "--ffn-hidden-size"},
    {"num_query_groups", "--num-query-groups"},
    {"untie_embeddings_and_output_weights", "--untie-embeddings-and-output-weights"},
    {"add_bias_linear", "--disable-bias-linear"},
};

}  // namespace

// The pieces of the state dict this rank writes (stage 0: a balanced share of every tensor, so all
// ranks share the writing) or reads and checks (its own elements: stage 0 everything).
// With tensor parallelism each piece of a local tensor becomes the logical runs it covers (a row
// split: one per segment; a column split: one per row), and a replicated tensor (identical on
// every tp rank) is written by tp rank 0 only, read by all.
// With pipeline parallelism the tensors are this stage's, numbered in the whole model's order
// (the checkpoint's); the last stage's copy of a tied table is read, never written (the first
// stage writes the table).
// A spilled piece's elements, read from its spill file on demand (any thread)
io::PieceFetch Trainer::spill_fetch(const StatePiece& s) const {
  const ParamStore* st = store_.get();
  const int k = s.spill;
  const size_t off = s.spill_off;
  return [st, k, off](size_t i, size_t n, float* out) { st->spill_read(k, off + i, n, out); };
}

std::vector<StatePiece> Trainer::checkpoint_pieces(bool write) {
  std::vector<StatePiece> local = store_->state_pieces(write && !store_->residency().states_partitioned);
  comm::Communicator& tp = groups_->get(comm::Group::TP);
  const Layout& L = store_->layout();  // its tensors are in (this stage's) model order
  std::vector<StatePiece> out;
  for (const StatePiece& p : local) {
    const TensorInfo& ti = L.tensor(p.tensor);
    if (write && ti.tied_copy) continue;
    const int global = model_->global_tensor(p.tensor);
    if (tp.size() == 1) {
      out.push_back({p.section, global, p.begin, p.n, p.data, p.spill, p.spill_off});
      continue;
    }
    if (write && !ti.tp_split && tp.rank() != 0) continue;
    for (const LogicalRun& r : L.logical_runs(p.tensor, p.begin, p.n))
      out.push_back({p.section, global, r.begin, r.n, p.data ? p.data + r.local : nullptr, p.spill, p.spill_off + r.local});
  }
  return out;
}

// The end of a save, collective over `c`: the checkpoint at `tmp` is verified (meta: reopened
// with every dataset, shape, checksum attribute and extent in place; full: every byte read back
// from the storage and checksummed, a second pass) and committed (renamed, then `latest`).
void Trainer::verify_and_commit(MPI_Comm c, const PendingSave& p, const std::string& extra) {
  if (auto d = env("DEEPMPI_TEST_SAVE_DELAY"); d && d->rfind(p.tag + ":", 0) == 0)
    // Fault injection for the kill-during-save test (DEEPMPI_TEST_SAVE_DELAY=TAG:MS): a pause
    // with the file of TAG written but not verified or committed.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::stol(d->substr(p.tag.size() + 1))));
  DMPI_CHECK_MPI(MPI_Barrier(c));
  const double b = now_seconds();
  const bool full = opt_.save_verify == "full";
  std::vector<std::string> bad;
  {
    io::CheckpointReader rd(c, p.tmp);
    if (full) {
      for (auto& d : rd.verify_all()) bad.push_back(d + " reads back with another checksum");
    } else {
      std::map<std::string, std::vector<int64_t>> expected;
      for (const auto& g : p.groups)
        for (const auto& t : p.tensors) expected["/" + g + "/" + t.name] = t.shape;
      bad = rd.check_structure(expected);
    }
  }
  DMPI_REQUIRE(bad.empty(), "checkpoint " << p.tmp << " failed verification after writing: " << bad.front()
                                          << (bad.size() > 1 ? " (and " + std::to_string(bad.size() - 1) + " more)" : "")
                                          << " (a storage problem); it was not made current, the previous checkpoint "
                                             "is untouched");
  const double v = now_seconds();
  io::on_rank0(c, [&] { io::commit_save(p.dir, p.tag); });
  const double e = now_seconds();
  if (opt_.print && lead()) {
    std::printf("[deepmpi] saved checkpoint %s/%s: %s in %.2f s (write %.2f s = %.2f GB/s, verify (%s) %.2f s, "
                "commit %.2f s%s)\n",
                p.dir.c_str(), p.tag.c_str(), human_bytes(static_cast<double>(p.bytes)).c_str(), e - p.started,
                b - p.write_started, static_cast<double>(p.bytes) / (b - p.write_started) / 1e9, full ? "full" : "meta",
                v - b, e - v, extra.c_str());
    std::fflush(stdout);
  }
}

void Trainer::join_save() {
  if (async_ && async_->thread.joinable()) async_->thread.join();
}

void Trainer::finish_saves() {
  if (!async_) return;
  join_save();
  std::unique_ptr<AsyncSave> job = std::move(async_);
  MPI_Comm comm = opt_.world;
  // every rank learns whether any rank's writer failed, so all stop with the error together
  int failed = job->error.empty() ? 0 : 1;
  DMPI_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm));
  DMPI_REQUIRE(!failed, "the background save of checkpoint " << job->save.tag << " failed"
                                                               << (job->error.empty() ? " on another rank"
                                                                                      : ": " + job->error)
                                                               << "; it was not made current");
  io::write_checkpoint_crcs(comm, job->save.tmp, job->save.tensors, job->save.groups, job->crcs);
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "; in the background: snapshot copy %.1f ms during the next step, writes %.2f s; training waited "
                "%.1f ms for the snapshot",
                job->copy_ms, job->write_s, job->waited_ms.load());
  verify_and_commit(comm, job->save, buf);
}

bool Trainer::save_in_flight_done() const { return async_ && async_->done.load(); }

void Trainer::save_checkpoint(const std::string& dir, const std::string& tag_in, bool async) {
  finish_saves();
  MPI_Comm comm = opt_.world;
  const int rank = groups_->world_rank();
  fault_point("save", groups_->world_rank());
  const std::string tag = tag_in.empty() ? "global_step" + std::to_string(global_steps_) : tag_in;
  DMPI_REQUIRE(!tag.empty() && tag.find('/') == std::string::npos && tag != "." && tag != ".." && tag != "latest" &&
                   !tag.ends_with(".tmp"),
               "checkpoint tag '" << tag << "' must be a plain name (no '/', not 'latest', not ending in .tmp)");
  if (async && io::checkpoint_data_path() != "posix") {
    if (opt_.print && rank == 0)
      std::printf("[deepmpi] note: --async-save needs the posix data path (DEEPMPI_CHECKPOINT_IO=mpiio moves the data "
                  "with collective MPI-IO): saving in the foreground\n");
    async = false;
  }
  PendingSave p;
  p.started = now_seconds();
  p.dir = dir;
  p.tag = tag;
  p.tmp = (std::filesystem::path(dir) / (tag + ".tmp") / io::kCheckpointFileName).string();
  for (int t = 0; t < whole().num_tensors(); ++t) {
    const auto& sp = whole().spec(t);
    p.tensors.push_back({sp.name, sp.logical, sp.logical_numel});
    p.bytes += sp.logical_numel * sizeof(float);
  }
  const auto names = state_names();
  p.bytes *= 1 + names.size();
  p.groups.push_back("params");
  for (const auto& n : names) p.groups.push_back("optim/" + n);
  const auto pieces = checkpoint_pieces(true);
  std::vector<io::Section> sections(p.groups.size());
  for (size_t k = 0; k < sections.size(); ++k) sections[k].group = p.groups[k];
  std::unique_ptr<AsyncSave> job;
  if (async) {
    // The snapshot: everything this rank writes, copied by the background thread while the
    // next step's forward and backward run (they only read parameters and never touch the
    // optimizer states); the next optimizer step waits for the copy (wait_snapshot).
    job = std::make_unique<AsyncSave>();
    reserve_snapshot();
    float* dst = snapshot_buf_.get();
    // NVMe-spilled pieces are not copied: the thread streams them from the spill files, and the
    // next optimizer step waits until it has (the forward and backward never touch them)
    for (size_t k = 0; k < sections.size(); ++k)
      for (const auto& s : pieces) {
        if (s.section != static_cast<int>(k)) continue;
        if (!s.data) {
          sections[k].pieces.push_back({static_cast<size_t>(s.tensor), s.begin, s.n, nullptr, spill_fetch(s)});
          continue;
        }
        job->copies.push_back({s.data, dst, s.n});
        sections[k].pieces.push_back({static_cast<size_t>(s.tensor), s.begin, s.n, dst});
        dst += s.n;
      }
  } else {
    for (const auto& s : pieces)
      sections[static_cast<size_t>(s.section)].pieces.push_back(
          {static_cast<size_t>(s.tensor), s.begin, s.n, s.data, s.data ? nullptr : spill_fetch(s)});
  }
  const auto& ds = opt_.ds;
  json attrs;
  attrs["format"] = io::kCheckpointFormat;
  attrs["format_version"] = io::kCheckpointFormatVersion;
  attrs["deepmpi_version"] = std::string(DEEPMPI_VERSION) + " (git " + DEEPMPI_GIT_HASH + ")";
  attrs["tag"] = tag;
  attrs["global_steps"] = global_steps_;
  attrs["skipped_steps"] = skipped_steps_;
  attrs["micro_steps"] = micro_steps_;
  attrs["applied_steps"] = applied_steps_;
  attrs["global_samples"] = static_cast<int64_t>(samples_);
  attrs["seed"] = static_cast<int64_t>(opt_.seed);
  {
    std::vector<std::string> order;  // the model's order (datasets are listed by name)
    for (int t = 0; t < whole().num_tensors(); ++t) order.push_back(whole().spec(t).name);
    attrs["tensors"] = order;
  }
  attrs["optimizer"] = ds.optimizer.type;
  attrs["optimizer_states"] = names;
  attrs["precision"] = ds.model_dtype();
  const int W = groups_->get(comm::Group::DP).size(), world = groups_->get(comm::Group::World).size();
  attrs["topology"] = {{"world_size", world}, {"data_parallel_size", W},
                       {"tensor_parallel_size", groups_->get(comm::Group::TP).size()},
                       {"pipeline_parallel_size", groups_->get(comm::Group::PP).size()}, {"zero_stage", ds.zero.stage}};
  attrs["model"] = opt_.model.to_json();
  attrs["ds_config"] = ds.resolved();
  attrs["lr_scheduler"] = {{"type", ds.scheduler.type.empty() ? "constant" : ds.scheduler.type},
                           {"last_batch_iteration", sched_.last_batch_iteration()}};
  if (scaler_) {
    const auto& st = scaler_->state();
    attrs["loss_scaler"] = {{"cur_scale", st.cur_scale}, {"cur_iter", st.cur_iter},
                            {"last_overflow_iter", st.last_overflow_iter}, {"cur_hysteresis", st.cur_hysteresis},
                            {"dynamic", scaler_->dynamic()}};
  }
  // Training draws no random numbers after initialisation (no dropout) and the mock data is a
  // function of (seed, sample index): the generator state of every rank is the seed.
  attrs["rng"] = {{"generator", "none after initialisation (no dropout)"}, {"seed", opt_.seed}, {"ranks", world}};
  attrs["data"] = {{"source", source_->describe()}, {"global_samples", samples_}};


  io::on_rank0(comm, [&] { io::check_overwrite(dir, tag, opt_.overwrite_checkpoints); });
  last_saved_step_ = global_steps_;
  io::on_rank0(comm, [&] { io::begin_save(dir, tag, p.bytes); });
  p.write_started = now_seconds();
  if (!async) {
    io::write_checkpoint_file(comm, p.tmp, p.tensors, sections, attrs);
    verify_and_commit(comm, p, "");
    return;
  }
  // Background: the file and its datasets are created now (collective metadata, no data); the
  // thread then copies the snapshot, writes this rank's pieces with direct I/O and syncs. It makes
  // no MPI calls: when every rank's writer is done (seen in a step's loss all-reduce) or at the
  // next save, the checksums are combined and written and the save is verified and committed.
  job->writes = io::create_checkpoint_layout(comm, p.tmp, p.tensors, sections, attrs);
  job->save = std::move(p);
  AsyncSave* j = job.get();
  j->thread = std::thread([j] {
    omp_set_num_threads(1);  // leave the cores to training
    try {
      const double a = now_seconds();
      for (const auto& cp : j->copies) std::memcpy(cp.dst, cp.src, cp.n * sizeof(float));
      j->copy_ms = (now_seconds() - a) * 1e3;
      // the spilled pieces first: the snapshot is complete once they are read
      std::vector<io::RawWrite> spilled, rest;
      for (auto& w : j->writes) (w.data ? rest : spilled).push_back(w);
      const double w = now_seconds();
      if (!spilled.empty()) j->crcs = io::write_pieces(j->save.tmp, spilled);
      {
        std::lock_guard<std::mutex> lk(j->mu);
        j->snapshot_ready = true;
      }
      j->cv.notify_all();
      const auto more = io::write_pieces(j->save.tmp, rest);
      j->crcs.insert(j->crcs.end(), more.begin(), more.end());
      j->write_s = now_seconds() - w;
    } catch (const std::exception& e) {
      j->error = e.what();
      {
        std::lock_guard<std::mutex> lk(j->mu);
        j->snapshot_ready = true;
      }
      j->cv.notify_all();
    }
    j->done.store(true);
  });
  async_ = std::move(job);
  if (opt_.print && rank == 0) {
    std::printf("[deepmpi] checkpoint %s: a snapshot of %s per rank is being copied and written in the background\n",
                tag.c_str(), human_bytes(static_cast<double>(snapshot_size_ * sizeof(float))).c_str());
    std::fflush(stdout);
  }
}

void Trainer::reserve_snapshot() {
  size_t total = 0;
  for (const auto& sp : checkpoint_pieces(true))
    if (sp.data) total += sp.n;  // NVMe-spilled pieces are streamed, not copied
  if (snapshot_size_ == total) return;
  snapshot_size_ = total;
  snapshot_buf_.reset(new float[total]);
  // touched now: first-touch page faults are slow here (about 0.3 GB/s in this VM) and would
  // otherwise land in the middle of training
  std::memset(snapshot_buf_.get(), 0, total * sizeof(float));
}

void Trainer::wait_snapshot() {
  if (!async_) return;
  const double a = now_seconds();
  std::unique_lock<std::mutex> lk(async_->mu);
  async_->cv.wait(lk, [&] { return async_->snapshot_ready; });
  async_->waited_ms.store(async_->waited_ms.load() + (now_seconds() - a) * 1e3);
}

std::string Trainer::load_checkpoint(const std::string& dir, const std::string& tag_in, bool load_optimizer,
                                     bool atomic) {
  finish_saves();
  fault_point("load", groups_->world_rank());
  MPI_Comm comm = opt_.world;
  const bool print = opt_.print && lead();
  const double t0 = now_seconds();
  std::vector<std::string> notes;
  const std::string tag = io::resolve_tag(comm, dir, tag_in, &notes);
  if (print)
    for (const auto& n : notes) std::printf("[deepmpi] %s\n", n.c_str());
  const std::string path = io::checkpoint_path(dir, tag);
  io::CheckpointReader rd(comm, path);
  const json& A = rd.attrs();

  // The model must be the one this run builds (a description without the LLaMA-era keys is
  // GPT-2's: older checkpoints).
  const json want = opt_.model.to_json();
  json have;
  try {
    have = model::ModelConfig::from_json(A.value("model", json::object())).to_json();
  } catch (const std::exception& e) {
    DMPI_FAIL("checkpoint " << path << ": its model attribute is damaged (" << e.what() << ")");
  }
  std::string diff;
  for (const auto& [key, flag] : kArchitecture)
    if (have.value(key, json()) != want[key])
      diff += std::string(diff.empty() ? "" : ", ") + flag + " " + have.value(key, json()).dump() + " (this run: " +
              want[key].dump() + ")";
  DMPI_REQUIRE(diff.empty(), "checkpoint " << path << " holds a different model: " << diff
                                           << "; run with the model flags it was saved with (`deepmpi checkpoint "
                                              "inspect "
                                           << dir << "` shows them)");
  auto check_dset = [&](const std::string& dset, const model::ParamSpec& t) {
    DMPI_REQUIRE(rd.has(dset), "checkpoint " << path << " has no dataset " << dset << " (damaged or not written by "
                                             << "this model)");
    const auto& shape = rd.datasets().at(dset);
    DMPI_REQUIRE(shape == t.logical, "checkpoint " << path << ": dataset " << dset << " has shape "
                                                   << json(shape).dump() << ", this model's " << t.name << " is "
                                                   << json(t.logical).dump());
  };
  const size_t T = static_cast<size_t>(whole().num_tensors());
  for (size_t t = 0; t < T; ++t) check_dset("/params/" + whole().spec(static_cast<int>(t)).name, whole().spec(static_cast<int>(t)));
  const auto names = state_names();
  const std::string saved_opt = A.value("optimizer", std::string("?"));
  if (load_optimizer) {
    const json saved_states = A.value("optimizer_states", json::array());
    DMPI_REQUIRE(saved_states == json(names),
                 "checkpoint " << path << " holds the optimizer states of " << saved_opt << " " << saved_states.dump()
                               << "; the ds_config asks for " << opt_.ds.optimizer.type << " " << json(names).dump()
                               << ": use the same optimizer, or pass --no-load-optim to load the parameters only");
    for (const auto& n : names)
      for (size_t t = 0; t < T; ++t)
        check_dset("/optim/" + n + "/" + whole().spec(static_cast<int>(t)).name, whole().spec(static_cast<int>(t)));
  }

  // Two passes, so that nothing live changes unless the whole checkpoint is sound and no
  // second copy of the model state is allocated (fresh memory is also slow to touch here):
  //   1. every rank reads its share of each dataset through one reused buffer and checksums it;
  //      the checksums are recombined over the ranks and compared with the stored ones
  //      (CheckpointReader::verify);
  //   2. only then the data this topology holds is read into the live parameters and states.
  const size_t nsec = 1 + (load_optimizer ? names.size() : 0);
  std::vector<std::string> dsets;  // section-major, as `key` = section * T + tensor below
  for (size_t k = 0; k < nsec; ++k)
    for (size_t t = 0; t < T; ++t)
      dsets.push_back((k == 0 ? std::string("/params/") : "/optim/" + names[k - 1] + "/") + whole().spec(static_cast<int>(t)).name);
  const double t_read = now_seconds();
  auto report_bad = [&](const std::vector<std::string>& bad, const char* consequence) {
    std::string list;
    for (size_t i = 0; i < bad.size() && i < 5; ++i) list += (i ? ", " : "") + bad[i];
    if (bad.size() > 5) list += " and " + std::to_string(bad.size() - 5) + " more";
    DMPI_FAIL("checkpoint " << path << " is damaged: the checksum (crc32c) of " << list << " does not match the data; "
                            << consequence << ". Load an earlier tag with --load-tag (`deepmpi checkpoint inspect "
                            << dir << "` lists them)");
  };
  if (atomic) {
    const auto bad = rd.verify(dsets, size_t{1} << 22);
    if (!bad.empty()) report_bad(bad, "nothing was loaded");
  }
  const double t_commit = now_seconds();
  // Pass 2: into the live state. A failure here (the file changed or vanished since pass 1)
  // leaves a partly loaded state: the error says so, and training must not go on.
  // a rank's pieces of a tensor: one contiguous run, or with tensor parallelism the logical runs
  // of its split
  const auto pieces = checkpoint_pieces(false);
  size_t read_bytes = 0;
  std::vector<std::vector<io::Piece>> pieces_of(nsec * T);
  std::vector<std::vector<StatePiece>> spilled_of(nsec * T);
  for (const auto& sp : pieces) {
    if (static_cast<size_t>(sp.section) >= nsec) continue;
    const size_t key = static_cast<size_t>(sp.section) * T + static_cast<size_t>(sp.tensor);
    if (sp.data) pieces_of[key].push_back({static_cast<size_t>(sp.tensor), sp.begin, sp.n, sp.data});
    else spilled_of[key].push_back(sp);
    read_bytes += sp.n * sizeof(float);
  }
  try {
    std::vector<float> bounce;
    for (size_t key = 0; key < nsec * T; ++key) {
      rd.read_pieces(dsets[key], pieces_of[key]);
      // NVMe-spilled pieces: read into a bounded buffer and written to their spill files
      for (const auto& sp : spilled_of[key])
        for (size_t i = 0; i < sp.n; i += io::kFetchChunk) {
          const size_t c = std::min(io::kFetchChunk, sp.n - i);
          bounce.resize(std::max(bounce.size(), c));
          rd.read(dsets[key], sp.begin + i, c, bounce.data());
          store_->spill_write(sp.spill, sp.spill_off + i, c, bounce.data());
        }
    }
  } catch (const std::exception& e) {
    DMPI_FAIL("checkpoint " << path << " could not be read" << (atomic ? " after its checksums were checked" : "")
                            << " (" << e.what() << "); this rank's parameters are partly loaded and must not be trained");
  }
  if (!atomic) {  // one pass: the checksums of what was just read into the live state
    std::vector<io::CrcPiece> mine;
    std::map<uint32_t, uint64_t> total;
    for (size_t k = 0; k < nsec; ++k)
      for (size_t t = 0; t < T; ++t)
        total[static_cast<uint32_t>(k * T + t)] = whole().spec(static_cast<int>(t)).logical_numel * sizeof(float);
    std::vector<float> bounce;
    for (const auto& sp : checkpoint_pieces(true)) {  // over the ranks, every tensor exactly once
      if (static_cast<size_t>(sp.section) >= nsec) continue;
      const auto key = static_cast<uint32_t>(static_cast<size_t>(sp.section) * T + static_cast<size_t>(sp.tensor));
      if (sp.data) {
        mine.push_back({key, sp.begin * sizeof(float), sp.n * sizeof(float), io::crc32c_parallel(sp.data, sp.n * sizeof(float))});
        continue;
      }
      for (size_t i = 0; i < sp.n; i += io::kFetchChunk) {  // read back from the spill file
        const size_t c = std::min(io::kFetchChunk, sp.n - i);
        bounce.resize(std::max(bounce.size(), c));
        store_->spill_read(sp.spill, sp.spill_off + i, c, bounce.data());
        mine.push_back({key, (sp.begin + i) * sizeof(float), c * sizeof(float), io::crc32c_parallel(bounce.data(), c * sizeof(float))});
      }
    }
    const auto got = io::combine_crcs(comm, mine, total);
    std::vector<std::string> bad;
    for (uint32_t key = 0; key < dsets.size(); ++key)
      if (!got.count(key) || got.at(key) != rd.stored_crc(dsets[key])) bad.push_back(dsets[key]);
    if (!bad.empty()) report_bad(bad, "the partly loaded state is discarded: the run stops here, nothing was trained on it");
  }
  global_steps_ = A.value("global_steps", int64_t{0});
  skipped_steps_ = A.value("skipped_steps", int64_t{0});
  micro_steps_ = A.value("micro_steps", int64_t{0});
  samples_ = static_cast<uint64_t>(A.value("global_samples", int64_t{0}));
  if (load_optimizer) {
    applied_steps_ = A.value("applied_steps", int64_t{0});
    sched_.set_last_batch_iteration(A.value("lr_scheduler", json::object()).value("last_batch_iteration", int64_t{-1}));
    if (scaler_ && A.contains("loss_scaler")) {
      const json& L = A["loss_scaler"];
      LossScaler::State st;
      st.cur_scale = L.value("cur_scale", 1.0);
      st.cur_iter = L.value("cur_iter", int64_t{0});
      st.last_overflow_iter = L.value("last_overflow_iter", int64_t{-1});
      st.cur_hysteresis = L.value("cur_hysteresis", int64_t{1});
      scaler_->set_state(st);
    }
  } else {
    // fresh optimizer states: Adam's bias correction starts again; the lr schedule continues
    applied_steps_ = 0;
    sched_.set_last_batch_iteration(A.value("lr_scheduler", json::object()).value("last_batch_iteration", int64_t{-1}));
  }
  store_->masters_loaded();  // the 16-bit parameters rounded from the masters; every rank's chunks gathered
  last_saved_step_ = global_steps_;
  if (print) {
    const json topo = A.value("topology", json::object());
    std::printf("[deepmpi] loaded checkpoint %s (step %lld, saved at tp %s pp %s dp %s ZeRO stage %s; now tp %d pp %d dp %d "
                "stage %d%s) in %.2f s (%s %.2f s, read %.2f s, %s per rank)\n",
                path.c_str(), static_cast<long long>(global_steps_), topo.value("tensor_parallel_size", json(1)).dump().c_str(),
                topo.value("pipeline_parallel_size", json(1)).dump().c_str(),
                topo.value("data_parallel_size", json()).dump().c_str(), topo.value("zero_stage", json()).dump().c_str(),
                groups_->get(comm::Group::TP).size(), groups_->get(comm::Group::PP).size(),
                groups_->get(comm::Group::DP).size(), store_->residency().stage(),
                load_optimizer ? "" : "; optimizer states not loaded (--no-load-optim)", now_seconds() - t0,
                atomic ? "checksum pass" : "set-up", t_commit - t_read, now_seconds() - t_commit,
                human_bytes(static_cast<double>(read_bytes)).c_str());
    if (A.value("seed", int64_t{-1}) != static_cast<int64_t>(opt_.seed) && opt_.data_path.empty())
      std::printf("  warning: the checkpoint was trained with seed %lld, this run uses %llu: the mock data differs\n",
                  static_cast<long long>(A.value("seed", int64_t{-1})), static_cast<unsigned long long>(opt_.seed));
    if (scaler_ && !A.contains("loss_scaler"))
      std::printf("  note: the checkpoint has no fp16 loss-scaler state (saved as %s): the scale starts at its initial "
                  "value\n",
                  A.value("precision", std::string("?")).c_str());
    std::fflush(stdout);
  }
  return tag;
}

}  // namespace dmpi::engine
