#include "src/engine/param_store.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>

#include "base/error.hpp"
#include "base/system.hpp"
#include "kernels/cast.hpp"
#include "kernels/ops.hpp"

namespace dmpi::engine {

using kernels::element;

namespace {
DType dtype_named(const std::string& s, DType dflt) {
  return s.empty() ? dflt : s == "bf16" ? DType::BF16 : s == "fp16" ? DType::F16 : DType::F32;
}
// fn(x0, x1, flat) for each unit chunk of this rank overlapping partition elements [a, a + n):
// the overlap [x0, x1) in partition offsets, and the flat offset of element x0
template <class F>
void for_each_chunk_piece(const Layout& L, int rank, size_t a, size_t n, F&& fn) {
  for (int u = 0; u < L.num_units(); ++u) {
    const UnitInfo& ui = L.unit(u);
    const size_t x0 = std::max(a, ui.part_off), x1 = std::min(a + n, ui.part_off + ui.chunk);
    if (x0 < x1) fn(x0, x1, L.chunk_offset(u, rank) + (x0 - ui.part_off));
  }
}
// A zero-filled buffer (every page touched once, at start-up).
Buffer zeroed(DType t, size_t n) {
  Buffer b(t, n);
  b.zero();
  return b;
}
}  // namespace

Residency Residency::of_stage(int stage) {
  DMPI_REQUIRE(stage >= 0 && stage <= 3, "ZeRO stage " << stage << " does not exist (0-3)");
  Residency r;
  r.states_partitioned = stage >= 1;
  r.grads_partitioned = stage >= 2;
  r.params_partitioned = stage >= 3;
  return r;
}

ParamStore::ParamStore(const model::Model<float>& m, comm::Communicator& comm, const config::DsConfig& ds,
                       int state_slots, const Init& init, const kernels::Context& ctx, const SpillOptions* spill)
    : model_(m), comm_(comm), ctx_(ctx), layout_(m, comm.size(), comm.rank(), ds.zero.stage >= 1),
      res_(Residency::of_stage(ds.zero.stage)), W_(comm.size()), rank_(comm.rank()), overlap_(ds.zero.overlap()),
      reduce_bucket_(std::max<int64_t>(1, ds.zero.reduce_bucket_size)), prefetch_bucket_(ds.zero.prefetch_bucket_size),
      max_live_(ds.zero.max_live_parameters), allgather_bucket_(std::max<int64_t>(1, ds.zero.allgather_bucket_size)),
      max_reuse_(ds.zero.max_reuse_distance) {
  half_ = ds.bf16.enabled || ds.fp16.enabled;
  pdt_ = dtype_named(ds.model_dtype(), DType::F32);
  gdt_ = dtype_named(ds.misc.grad_accum_dtype, pdt_);
  gas_ = static_cast<int>(std::max<int64_t>(1, ds.grad_accum));
  DMPI_REQUIRE(gdt_ == DType::F32 || gdt_ == pdt_,
               "data_types.grad_accum_dtype \"" << ds.misc.grad_accum_dtype << "\" with " << dtype_name(pdt_)
                                                << " parameters: write \"fp32\" or leave it null (the parameters' dtype)");
  // DeepSpeed: the gradients travel in their own dtype unless communication_data_type says otherwise
  comm_dtype_ = dtype_named(ds.misc.communication_data_type, gdt_);
  // DeepSpeed's averaging: postscale (1/f before the sum, f/W after) unless prescale_gradients.
  const double f = ds.misc.gradient_predivide_factor;
  if (W_ > 1) {
    if (ds.misc.prescale_gradients) pre_scale_ = 1.0 / W_, post_scale_ = 1.0;
    else pre_scale_ = 1.0 / f, post_scale_ = f / W_;
  }
  const Layout& L = layout_;
  const size_t numel = L.numel();
  units_.resize(static_cast<size_t>(L.num_units()));
  // bf16/fp16 working copies: only the Widened tensors; the AsStored ones (GEMM weights,
  // embedding tables) are read as the 16-bit views they are
  for (const auto& t : L.tensors()) {
    if (t.dtype == model::DTypePolicy::AsStored) continue;
    Unit& u = units_[static_cast<size_t>(t.unit)];
    const size_t off = t.offset - L.unit(t.unit).offset;
    if (!u.widen.empty() && u.widen.back().first + u.widen.back().second == off) u.widen.back().second += t.numel;
    else u.widen.emplace_back(off, t.numel);
  }
  // The initial values of flat elements [begin, begin + n) (padding 0), tensor by tensor
  auto initial = [&](size_t begin, size_t n, float* out) {
    std::fill(out, out + n, 0.0f);
    const size_t end = begin + n;
    for (const auto& t : L.tensors()) {
      const size_t a = std::max(begin, t.offset), b = std::min(end, t.offset + t.numel);
      if (a < b) init(t.model_tensor, a - t.offset, b - t.offset, out + (a - begin));
    }
  };
  // bf16/fp16: the initial values rounded to 16 bits (as DeepSpeed casts the module), and the
  // masters widened from those (so the 16-bit parameters are always the masters rounded)
  auto initial16 = [&](size_t begin, size_t n, void* dst, float* master) {
    std::vector<float> tmp(std::min<size_t>(n, size_t{1} << 20));
    for (size_t a = 0; a < n; a += tmp.size()) {
      const size_t c = std::min(tmp.size(), n - a);
      initial(begin + a, c, tmp.data());
      kernels::convert(ctx_, tmp.data(), DType::F32, element(dst, pdt_, a), pdt_, c);
      if (master) kernels::convert(ctx_, element(dst, pdt_, a), pdt_, master + a, DType::F32, c);
    }
  };
  auto add_slice = [&](float* p, size_t state_off, size_t n, bool decay, size_t flat) {
    if (n == 0) return;
    auto& b = owned_;
    // (spilled masters: p is null, the elements are at state_off of the masters' spill file)
    if (!b.empty() && b.back().decay == decay && (p ? b.back().p + b.back().n == p : !b.back().p) &&
        b.back().state_off + b.back().n == state_off && b.back().flat + b.back().n == flat) {
      b.back().n += n;
      return;
    }
    b.push_back({p, state_off, n, decay, flat});
  };
  owned_numel_ = L.partition_numel();
  slots_ = state_slots;
  if (spill) {
    DMPI_REQUIRE(res_.states_partitioned, "NVMe offload of the optimizer states needs ZeRO stage 1, 2 or 3");
    DMPI_REQUIRE(spill->aio, "NVMe offload without an I/O engine");
    // fp32 training at stage 3 without offload_param: the partition is the parameters the
    // gathers read (in memory); with it, the spilled masters are the parameters
    params_spilled_ = spill->params;
    DMPI_REQUIRE(!params_spilled_ || res_.params_partitioned, "offload_param needs ZeRO stage 3");
    param_buffers_ = std::max(1, spill->param_buffers);
    masters_spilled_ = half_ || params_spilled_;
    std::vector<std::string> names;
    if (masters_spilled_) names.push_back("fp32_master");
    for (int k = 0; k < state_slots; ++k)
      names.push_back(k < static_cast<int>(spill->state_names.size()) ? spill->state_names[static_cast<size_t>(k)]
                                                                     : "state" + std::to_string(k));
    spill_ = std::make_unique<io::SpillArrays>(spill->dir, "zero", names, owned_numel_, spill->sub_group, spill->buffers,
                                               *spill->aio);
    spill_->write_index(spill->dir + "/zero.index.h5");
  }
  if (!half_ && !res_.params_partitioned) {
    pfull_ = Buffer(DType::F32, numel);
    initial(0, numel, pfull_.as<float>());
  }
  if (half_ && !res_.params_partitioned) {
    p16_ = zeroed(pdt_, numel);
    initial16(0, numel, p16_.data(), nullptr);
    if (!masters_spilled_) master_ = zeroed(DType::F32, owned_numel_);
    if (masters_spilled_) {
      // written to the spill file sub-group by sub-group, widened from the 16-bit parameters below
    } else if (!res_.states_partitioned) {
      kernels::convert(ctx_, p16_.data(), pdt_, master_.data(), DType::F32, numel);
    } else {
      for (int u = 0; u < L.num_units(); ++u)
        kernels::convert(ctx_, p16_.at(L.chunk_offset(u, rank_)), pdt_, master_.as<float>() + L.unit(u).part_off,
                         DType::F32, L.unit(u).chunk);
    }
  }
  if (!res_.grads_partitioned) gfull_ = zeroed(gdt_, numel);
  if (res_.states_partitioned) gpart_ = zeroed(gdt_, L.partition_numel());
  if (res_.params_partitioned && !params_spilled_) {
    if (!masters_spilled_) ppart_ = zeroed(DType::F32, L.partition_numel());
    if (half_) p16part_ = zeroed(pdt_, L.partition_numel());
    for (int u = 0; u < L.num_units(); ++u) {
      const UnitInfo& ui = L.unit(u);
      const size_t first = L.chunk_offset(u, rank_);
      if (half_) initial16(first, ui.chunk, p16part_.at(ui.part_off), masters_spilled_ ? nullptr : ppart_.as<float>() + ui.part_off);
      else initial(first, ui.chunk, ppart_.as<float>() + ui.part_off);
    }
  }
  for (const Run& r : L.owned()) {
    float* p = masters_spilled_           ? nullptr
               : res_.params_partitioned ? ppart_.as<float>() + r.part
               : half_                   ? master_.as<float>() + r.part
                                         : pfull_.as<float>() + r.flat;
    add_slice(p, r.part, r.n, L.tensor(r.tensor).decay, r.flat);
  }
  if (spill_) {
    // the spilled masters are the 16-bit parameters widened (as in memory); the states start
    // at zero (the files were allocated zero-filled, written once here all the same)
    std::vector<uint16_t> tmp16;
    spill_->stream(
        [&](size_t a, size_t n, float* const* arr) {
          int k = 0;
          if (params_spilled_) {
            // the partition's initial values (bf16/fp16: rounded and widened again), computed
            // for this sub-group's part of each unit chunk as the in-memory store computes them
            float* m0 = arr[k++];
            std::fill(m0, m0 + n, 0.0f);
            for_each_chunk_piece(L, rank_, a, n, [&](size_t x0, size_t x1, size_t flat) {
              if (half_) {
                tmp16.resize(x1 - x0);
                initial16(flat, x1 - x0, tmp16.data(), m0 + (x0 - a));
              } else {
                initial(flat, x1 - x0, m0 + (x0 - a));
              }
            });
          } else if (masters_spilled_) {
            widen_partition(a, n, arr[k++]);
          }
          for (; k < spill_->count(); ++k) std::fill(arr[k], arr[k] + n, 0.0f);
        },
        false, true);
  } else {
    states_.resize(static_cast<size_t>(state_slots));  // one at a time: no temporary copy (peak RSS)
    for (auto& st : states_) st = zeroed(DType::F32, owned_numel_);
  }
  if (res_.params_partitioned) {
    for (int u = 0; u < L.num_units(); ++u) {
      Unit& x = units_[static_cast<size_t>(u)];
      const UnitInfo& ui = L.unit(u);
      x.persistent = static_cast<int64_t>(ui.numel) <= ds.zero.param_persistence_threshold;
      if (!x.persistent) continue;
      Buffer& buf = persist_[u];
      if (half_) {
        buf = zeroed(pdt_, ui.numel);
        initial16(ui.offset, ui.numel, buf.data(), nullptr);
      } else {
        buf = Buffer(DType::F32, ui.numel);
        initial(ui.offset, ui.numel, buf.as<float>());
      }
    }
    // the forward gathers the param units in order (the embedding first)
    for (int u = 0; u < L.num_units() && first_gathered_ < 0; ++u)
      if (!units_[static_cast<size_t>(u)].persistent && L.unit(u).chunk > 0) first_gathered_ = u;
  }
  // fp32 stages 0-1: every unit's gradients go straight into the whole buffer
  if (!half_ && !res_.grads_partitioned)
    for (int u = 0; u < L.num_units(); ++u) units_[static_cast<size_t>(u)].grads = gfull_.as<float>() + L.unit(u).offset;
}

ParamStore::~ParamStore() {
  for (auto& r : pending_) r.work->wait();
  for (auto& u : units_) {
    if (u.gather_work) u.gather_work->wait();
    if (u.rd_ticket) try {  // nothing may still be read into a buffer being freed
        spill_->wait(u.rd_ticket);
      } catch (...) {
      }
  }
}

void ParamStore::describe_to(ScheduleSpec& s) const {
  s.materialize = res_.params_partitioned || half_;  // the parameters exist only while their units run
  s.gathered = res_.params_partitioned;
  s.unit_grads = res_.grads_partitioned || half_;
  s.max_reuse_distance = max_reuse_;
  s.widen = half_;
  s.param_numel.clear();
  s.persistent.clear();
  for (int u = 0; u < layout_.num_units(); ++u) {
    s.param_numel.push_back(static_cast<int64_t>(layout_.unit(u).numel));
    s.persistent.push_back(units_[static_cast<size_t>(u)].persistent);
  }
}

float* ParamStore::Pool::acquire(size_t n) {
  auto& f = free[n];
  if (!f.empty()) {
    float* p = f.back();
    f.pop_back();
    return p;
  }
  storage.emplace_back(new float[n]);
  float* p = storage.back().get();
  size_of[p] = n;
  bytes += n * sizeof(float);
  return p;
}

float* ParamStore::base32(int u) const {
  const Unit& x = units_[static_cast<size_t>(u)];
  if (half_) return x.work;
  if (!res_.params_partitioned) return const_cast<float*>(pfull_.as<float>()) + layout_.unit(u).offset;
  if (x.persistent) return const_cast<float*>(persist_.at(u).as<float>());
  return x.work;
}

// The unit's parameters, for its forward or backward: stage 3 all-gathers them (fp32 training:
// straight into the working buffer); bf16/fp16 widens the Widened tensors of the 16-bit parameters
// (stages 0-2: the whole buffer; stage 3: the gathered copy, or a persistent unit's) into a pooled
// buffer, and the views read the rest as stored.
void ParamStore::gather(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  const UnitInfo& ui = layout_.unit(i);
  if (u.persistent) refresh_persistent(i);
  if (!half_ && u.persistent) return;  // fp32 persistent units are the unit's parameters for good
  if (u.work) {
    wait_gather(i);
    return;
  }
  if (!half_) {
    u.work = work_pool_.acquire(ui.numel);
    comm_.all_gather(partition_chunk(i), ui.chunk, u.work, DType::F32);
    drop_chunk(i);
    live_gathered_ += static_cast<int64_t>(ui.numel);
    return;
  }
  const void* src = nullptr;
  if (res_.params_partitioned && !u.persistent) {
    if (!u.g16) {
      u.g16 = acquire16(ui.numel);
      comm_.all_gather(partition_chunk(i), ui.chunk, u.g16, pdt_);
      drop_chunk(i);
      live_gathered_ += static_cast<int64_t>(ui.numel);
    } else {
      wait_gather(i);
    }
    src = u.g16;
  } else {
    src = res_.params_partitioned ? persist_.at(i).data() : p16_.at(ui.offset);
  }
  u.work = work_pool_.acquire(ui.numel);
  for (const auto& [off, n] : u.widen) kernels::convert(ctx_, element(src, pdt_, off), pdt_, u.work + off, DType::F32, n);
  u.src16 = src;
}

void ParamStore::prefetch(int i) {
  if (i < 0 || i >= layout_.num_units()) return;
  Unit& u = units_[static_cast<size_t>(i)];
  const UnitInfo& ui = layout_.unit(i);
  if (u.persistent || u.work || u.g16) return;
  const int64_t n = static_cast<int64_t>(ui.numel);
  if (n > prefetch_bucket_ || live_gathered_ + n > max_live_) return;
  // offload_param: the next unit in this direction of travel (forward: up, backward: down) is
  // read from the spill file while this one is gathered and the current one computes
  const int next = last_prefetch_ < 0 || i >= last_prefetch_ ? i + 1 : i - 1;
  last_prefetch_ = i;
  const void* src = partition_chunk(i);
  if (half_) {
    u.g16 = acquire16(ui.numel);
    u.gather_work = comm_.iall_gather(src, ui.chunk, u.g16, pdt_);
  } else {
    u.work = work_pool_.acquire(ui.numel);
    u.gather_work = comm_.iall_gather(src, ui.chunk, u.work, DType::F32);
  }
  live_gathered_ += n;
  read_ahead(next);
}

void ParamStore::wait_gather(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  if (u.gather_work) u.gather_work->wait(), u.gather_work.reset();
  drop_chunk(i);
}

const void* ParamStore::partition_chunk(int i) {
  const UnitInfo& ui = layout_.unit(i);
  if (!params_spilled_) {
    if (spill_) spill_->ensure(ui.part_off, ui.chunk);  // the step's update of this chunk done
    return half_ ? p16part_.at(ui.part_off) : static_cast<const void*>(ppart_.as<float>() + ui.part_off);
  }
  Unit& u = units_[static_cast<size_t>(i)];
  if (u.part16) return u.part16;
  if (!u.rd) post_read(i);  // not read ahead: read now, past the read-ahead budget if need be
  if (u.rd_ticket) {
    const double a = now_seconds();
    spill_->wait(u.rd_ticket), u.rd_ticket = 0;
    param_wait_s_ += now_seconds() - a;
  }
  const float* chunk = u.rd.get() + io::SpillArrays::lead(ui.part_off);
  if (!half_) return chunk;
  // the in-memory store rounds the masters to its 16-bit partition after each step: the same
  // rounding, here at the read
  u.part16 = acquire16(ui.chunk);
  kernels::convert(ctx_, chunk, DType::F32, u.part16, pdt_, ui.chunk);
  return u.part16;
}

void ParamStore::read_ahead(int i) {
  if (!params_spilled_ || i < 0 || i >= layout_.num_units() || staged_ >= param_buffers_) return;
  const Unit& u = units_[static_cast<size_t>(i)];
  if (u.rd || u.persistent || u.work || u.g16 || layout_.unit(i).chunk == 0) return;
  post_read(i);
}

void ParamStore::post_read(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  const UnitInfo& ui = layout_.unit(i);
  const size_t floats = io::SpillArrays::span(ui.part_off, ui.chunk);
  // the smallest free buffer that holds the span (the spans differ by each chunk's offset in the
  // file); else a new one, and one free buffer is given back: no more buffers live than were
  // ever staged at once
  auto fit = aligned_free_.lower_bound(floats);
  if (fit != aligned_free_.end()) {
    u.rd_floats = fit->first;
    u.rd = std::move(fit->second);
    aligned_free_.erase(fit);
  } else {
    if (!aligned_free_.empty()) {
      aligned_bytes_ -= aligned_free_.begin()->first * sizeof(float);
      aligned_free_.erase(aligned_free_.begin());
    }
    u.rd = io::SpillArrays::aligned_buffer(floats);
    u.rd_floats = floats;
    aligned_bytes_ += floats * sizeof(float);
  }
  // the step's update of this chunk done; elements the optimizer's buffers still hold (the
  // sub-groups it updated last) are copied, the rest is read
  spill_->ensure(ui.part_off, ui.chunk);
  if (!spill_->copy_cached(0, ui.part_off, ui.chunk, u.rd.get() + io::SpillArrays::lead(ui.part_off)))
    u.rd_ticket = spill_->read_async(0, ui.part_off, ui.chunk, u.rd.get());
  ++staged_;
}

void ParamStore::drop_chunk(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  if (!u.rd) return;
  if (u.rd_ticket) spill_->wait(u.rd_ticket), u.rd_ticket = 0;
  aligned_free_.emplace(u.rd_floats, std::move(u.rd));
  if (u.part16) release_buf(static_cast<float*>(u.part16)), u.part16 = nullptr;
  --staged_;
}

void ParamStore::quiesce_reads() {
  if (!params_spilled_) return;
  for (int i = 0; i < layout_.num_units(); ++i) wait_gather(i);
  last_prefetch_ = -1;
}

// Drops the unit's fp32 working parameters, and at stage 3 its gathered 16-bit copy. keep (ZeRO-3 at
// the forward/backward turn): fp32 keeps its gather; bf16/fp16 keeps the 16-bit gather (2 bytes per
// element) and its backward widens it again without an all-gather.
void ParamStore::release(int i, bool keep) {
  Unit& u = units_[static_cast<size_t>(i)];
  const UnitInfo& ui = layout_.unit(i);
  if (!half_ && (u.persistent || keep)) return;
  wait_gather(i);
  if (u.work) {
    work_pool_.release(u.work);
    u.work = nullptr;
    u.src16 = nullptr;
    if (!half_) live_gathered_ -= static_cast<int64_t>(ui.numel);  // fp32: the working buffer is the gather
  }
  if (u.g16 && !keep) {
    release_buf(static_cast<float*>(u.g16));
    u.g16 = nullptr;
    live_gathered_ -= static_cast<int64_t>(ui.numel);
  }
  // offload_param: the backward is done with the forward's first unit, which the next
  // micro-batch of this step gathers first: its read starts now (no instruction prefetches
  // across micro-batches)
  if (in_backward_ && i == first_gathered_ && micro_ + 1 < gas_) read_ahead(i);
}

void ParamStore::acquire_grads(int i) {
  if (!in_backward_ && !armed_) finish_update();  // the backward adds into the gradients the update still reads
  // an armed update: sub-groups whose states arrived since the last look
  if (armed_ && micro_ == gas_ - 1) in_backward_updates_ += spill_->step_ready([this](size_t j) { return group_left_[j] == 0; });
  in_backward_ = true;
  Unit& u = units_[static_cast<size_t>(i)];
  const size_t n = layout_.unit(i).numel;
  u.grads = acquire(n);
  kernels::fill_zero(ctx_, u.grads, n);
}

// The unit's fp32 gradients of this micro-batch are complete: rounded into the accumulated
// gradients (stages 0-1) or reduce-scattered into the partition (stages 2-3).
bool ParamStore::holds_tied(int u) const {
  if (!tied_) return false;
  const UnitInfo& ui = layout_.unit(u);
  for (int t = ui.first_tensor; t < ui.first_tensor + ui.num_tensors; ++t)
    if (layout_.tensor(t).tied) return true;
  return false;
}

void ParamStore::sum_tied(void* g, DType dt, int u) {
  const UnitInfo& ui = layout_.unit(u);
  for (int t = ui.first_tensor; t < ui.first_tensor + ui.num_tensors; ++t)
    if (layout_.tensor(t).tied) {
      void* x = element(g, dt, layout_.offset_in_unit(t));
      tied_->all_reduce(x, x, layout_.tensor(t).numel, dt, comm::ReduceOp::Sum);
    }
}

void ParamStore::reduce_grads(int i) {
  Unit& x = units_[static_cast<size_t>(i)];
  const UnitInfo& u = layout_.unit(i);
  if (holds_tied(i) && std::find(tied_pending_.begin(), tied_pending_.end(), i) == tied_pending_.end()) {
    // the other end of the tie may still be running its backward: summed at the boundary
    tied_pending_.push_back(i);
    return;
  }
  float* buf = x.grads;
  x.grads = nullptr;
  sum_replicated_over_tp(buf, i);
  if (holds_tied(i)) sum_tied(buf, DType::F32, i);
  if (!res_.grads_partitioned) {
    kernels::accumulate(ctx_, gfull_.at(u.offset), gdt_, buf, DType::F32, u.numel, 1.0f);
    release_buf(buf);
    return;
  }
  kernels::scale(ctx_, buf, DType::F32, u.numel, pre_scale_);
  float* send = buf;
  if (comm_dtype_ != DType::F32) {  // 16 bits on the wire, packed into a pooled buffer
    send = acquire16(u.numel);
    kernels::convert(ctx_, buf, DType::F32, send, comm_dtype_, u.numel);
    release_buf(buf);  // the fp32 gradients are no longer needed
  }
  float* recv = comm_dtype_ == DType::F32 ? acquire(u.chunk) : acquire16(u.chunk);
  pending_.push_back({comm_.ireduce_scatter(send, recv, u.chunk, comm_dtype_, comm::ReduceOp::Sum), send, recv, i});
  // overlap_comm: keep at most two reductions in flight (bounded bucket memory); else finish now.
  while (!pending_.empty() && (!overlap_ || pending_.size() > 2)) {
    finish_reduce(pending_.front());
    pending_.erase(pending_.begin());
  }
}

void ParamStore::sum_replicated_over_tp(float* g, int u) {
  if (!sum_replicated_ || !tp_ || tp_->size() == 1) return;
  const UnitInfo& ui = layout_.unit(u);
  std::vector<float> packed;
  for (int t = ui.first_tensor; t < ui.first_tensor + ui.num_tensors; ++t)
    if (!layout_.tensor(t).tp_split) packed.insert(packed.end(), g + layout_.offset_in_unit(t), g + layout_.offset_in_unit(t) + layout_.tensor(t).numel);
  if (packed.empty()) return;
  tp_->all_reduce(packed.data(), packed.data(), packed.size(), DType::F32, comm::ReduceOp::Sum);
  size_t at = 0;
  for (int t = ui.first_tensor; t < ui.first_tensor + ui.num_tensors; ++t)
    if (!layout_.tensor(t).tp_split) {
      std::copy_n(packed.data() + at, layout_.tensor(t).numel, g + layout_.offset_in_unit(t));
      at += layout_.tensor(t).numel;
    }
}

void ParamStore::finish_reduce(PendingReduce& r) {
  r.work->wait();
  const UnitInfo& u = layout_.unit(r.unit);
  kernels::accumulate(ctx_, gpart_.at(u.part_off), gdt_, r.recv, comm_dtype_, u.chunk, static_cast<float>(post_scale_));
  release_buf(r.buf);
  release_buf(r.recv);
  if (armed_ && micro_ == gas_ - 1) gradients_final(r.unit);
}

void ParamStore::wait_all_reduces() {
  for (auto& r : pending_) finish_reduce(r);
  pending_.clear();
}

void ParamStore::unit_views(int mu, std::vector<ConstView>& params, std::vector<float*>& grads) {
  params.clear();
  grads.clear();
  const auto& uses = model_.unit(mu).uses();
  for (const auto& use : uses) {
    const int pu = layout_.unit_of(use.unit);
    const int t = layout_.unit(pu).first_tensor + use.index;
    const TensorInfo& ti = layout_.tensor(t);
    const size_t off = ti.offset - layout_.unit(pu).offset;
    Shape sh;
    for (auto d : ti.shape) sh.d[sh.ndim++] = d;
    if (units_[static_cast<size_t>(pu)].persistent) refresh_persistent(pu);  // (fp32: no gather instruction)
    const Unit& x = units_[static_cast<size_t>(pu)];
    if (half_ && ti.dtype == model::DTypePolicy::AsStored) {
      DMPI_REQUIRE(x.src16, "parameters of unit " << mu << " (" << ti.name << ") are not gathered");
      params.emplace_back(element(x.src16, pdt_, off), pdt_, sh);
    } else {
      const float* b = base32(pu);
      DMPI_REQUIRE(b, "parameters of unit " << mu << " (" << ti.name << ") are not gathered");
      params.emplace_back(b + off, DType::F32, sh);
    }
    grads.push_back(x.grads ? x.grads + off : nullptr);
  }
}

void ParamStore::begin_step() {
  micro_ = 0;
  if (res_.states_partitioned && !res_.grads_partitioned && !half_) kernels::fill_zero(ctx_, gfull_.as<float>(), gfull_.numel());
  if (half_ && !res_.grads_partitioned) kernels::zero_bytes(ctx_, gfull_.data(), gfull_.bytes());
  // (an update finished on demand zeroes each sub-group's gradients once it has stepped them)
  if (res_.states_partitioned && !grads_zeroed_) kernels::zero_bytes(ctx_, gpart_.data(), gpart_.bytes());
  grads_zeroed_ = false;
  if (armed_fn_) begin_armed();
}

void ParamStore::end_micro() {
  if (res_.grads_partitioned) wait_all_reduces();
  in_backward_ = false;
  ++micro_;
}

void ParamStore::skip_step() {
  if (!res_.states_partitioned && !half_) kernels::fill_zero(ctx_, gfull_.as<float>(), gfull_.numel());  // else begin_step zeroes them
}

void ParamStore::reduce_gradients() {
  // pipeline: the units holding a tied table, whose ReduceGrads waited for the boundary
  for (int u : std::vector<int>(tied_pending_)) reduce_grads(u);
  tied_pending_.clear();
  if (res_.grads_partitioned) {  // stages 2-3: reduced into gpart_ during each backward (end_micro)
    wait_all_reduces();
    if (armed_) {  // the sub-groups the backward did not update (the last ones, or states still on their way)
      armed_ = false;
      spill_->finish();
      armed_norm_ = grads_zeroed_ = true;
      quiesce_reads();  // a chunk staged in the backward holds the masters before the update
    }
    return;
  }
  const Layout& L = layout_;
  if (!half_)  // fp32 stages 0-1 accumulate straight into the whole buffer (bf16/fp16: in reduce_grads)
    for (int u = 0; u < L.num_units(); ++u) {
      sum_replicated_over_tp(gfull_.as<float>() + L.unit(u).offset, u);
      if (holds_tied(u)) sum_tied(gfull_.as<float>() + L.unit(u).offset, DType::F32, u);
    }
  void* g = gfull_.data();
  if (W_ == 1) {
    if (res_.states_partitioned)  // one rank owns everything: the partition gradient is the gradient
      for (int u = 0; u < L.num_units(); ++u)
        kernels::convert(ctx_, element(g, gdt_, L.unit(u).offset), gdt_, gpart_.at(L.unit(u).part_off), gdt_, L.unit(u).chunk);
    return;
  }
  // the gradients travel as comm_dtype_: converted into wire_ when that is not their dtype
  const bool conv = comm_dtype_ != gdt_;
  const size_t n = L.numel();
  if (!res_.states_partitioned) {
    kernels::scale(ctx_, g, gdt_, n, pre_scale_);
    void* w = g;
    if (conv) {
      if (wire_.numel() != n || wire_.dtype() != comm_dtype_) wire_ = zeroed(comm_dtype_, n);
      kernels::convert(ctx_, g, gdt_, wire_.data(), comm_dtype_, n);
      w = wire_.data();
    }
    std::vector<comm::WorkPtr> works;
    for (size_t off = 0; off < n; off += static_cast<size_t>(reduce_bucket_)) {
      const size_t c = std::min(n - off, static_cast<size_t>(reduce_bucket_));
      works.push_back(comm_.iall_reduce(element(w, comm_dtype_, off), element(w, comm_dtype_, off), c, comm_dtype_,
                                        comm::ReduceOp::Sum));
    }
    for (auto& wk : works) wk->wait();
    if (conv) kernels::convert(ctx_, w, comm_dtype_, g, gdt_, n);
    kernels::scale(ctx_, g, gdt_, n, post_scale_);
    return;
  }
  // stage 1
  std::vector<comm::WorkPtr> works;
  if (conv && (wire_.numel() != n + gpart_.numel() || wire_.dtype() != comm_dtype_)) wire_ = zeroed(comm_dtype_, n + gpart_.numel());
  for (int ui = 0; ui < L.num_units(); ++ui) {
    const UnitInfo& u = L.unit(ui);
    kernels::scale(ctx_, element(g, gdt_, u.offset), gdt_, u.numel, pre_scale_);
    if (conv) {
      kernels::convert(ctx_, element(g, gdt_, u.offset), gdt_, wire_.at(u.offset), comm_dtype_, u.numel);
      works.push_back(comm_.ireduce_scatter(wire_.at(u.offset), wire_.at(n + u.part_off), u.chunk, comm_dtype_,
                                            comm::ReduceOp::Sum));
    } else {
      works.push_back(comm_.ireduce_scatter(element(g, gdt_, u.offset), gpart_.at(u.part_off), u.chunk, gdt_, comm::ReduceOp::Sum));
    }
  }
  for (auto& wk : works) wk->wait();
  if (conv) kernels::convert(ctx_, wire_.at(n), comm_dtype_, gpart_.data(), gdt_, gpart_.numel());
  kernels::scale(ctx_, gpart_.data(), gdt_, gpart_.numel(), post_scale_);
}

double ParamStore::grad_norm() {
  // every logical element once: with tensor parallelism the split tensors' parts on every tp rank
  // and the replicated tensors on tp rank 0 only; with a pipeline every stage's tensors, the last
  // stage's copy of a tied table not (it equals the first stage's after ReduceTiedGrads)
  const bool tp = tp_ && tp_->size() > 1, pp = pp_ && pp_->size() > 1;
  const bool first = !tp || tp_->rank() == 0;
  auto counted = [&](const TensorInfo& t) { return (t.tp_split || first) && !(pp && t.tied_copy); };
  bool all = true;
  for (const auto& t : layout_.tensors()) all = all && counted(t);
  double sq = 0.0;
  if (!res_.states_partitioned) {
    if (all) {
      sq = kernels::sum_squares(ctx_, gfull_.data(), gdt_, layout_.numel());
    } else {
      for (const auto& t : layout_.tensors())
        if (counted(t)) sq += kernels::sum_squares(ctx_, gfull_.at(t.offset), gdt_, t.numel);
    }
  } else {
    if (armed_norm_) {
      sq = armed_sq_;  // the armed update zeroed the gradients as it went, summing them first
      armed_norm_ = false;
    } else if (all) {
      sq = kernels::sum_squares(ctx_, gpart_.data(), gdt_, gpart_.numel());  // padding is zero
    } else {
      for (const Run& r : layout_.owned())
        if (counted(layout_.tensor(r.tensor))) sq += kernels::sum_squares(ctx_, gpart_.at(r.part), gdt_, r.n);
    }
    comm_.all_reduce(&sq, &sq, 1, DType::F64, comm::ReduceOp::Sum);
  }
  if (tp) tp_->all_reduce(&sq, &sq, 1, DType::F64, comm::ReduceOp::Sum);
  if (pp) pp_->all_reduce(&sq, &sq, 1, DType::F64, comm::ReduceOp::Sum);
  return std::sqrt(sq);
}

// Elements [off, off + n) of owned slice s: their fp32 values at p, their states at base[k];
// fn steps them with their averaged gradients (16-bit gradients widened into tmp, chunk by chunk)
// and in bf16/fp16 the updated masters are rounded to the 16-bit parameters while the chunk is
// in cache.
void ParamStore::step_slice(const OwnedFn& fn, OwnedScratch& w, const OwnedSlice& s, size_t off, size_t n, float* p,
                            bool whole_tensors) {
  constexpr size_t kChunk = size_t{1} << 16;  // bf16/fp16: this many at a time (cache-sized)
  void* g = !res_.states_partitioned ? gfull_.at(s.flat + off) : gpart_.at(s.state_off + off);
  if (!half_) return fn(p, static_cast<float*>(g), w.base.data(), n, s.decay);
  const size_t step = whole_tensors ? n : kChunk;
  for (size_t a = 0; a < n; a += step) {
    const size_t c = std::min(step, n - a);
    void* ga = element(g, gdt_, a);
    float* gf = static_cast<float*>(ga);
    if (gdt_ != DType::F32) {
      w.tmp.resize(std::max(w.tmp.size(), c));
      kernels::convert(ctx_, ga, gdt_, w.tmp.data(), DType::F32, c);
      gf = w.tmp.data();
    }
    for (size_t k = 0; k < w.base.size(); ++k) w.st[k] = w.base[k] + a;
    fn(p + a, gf, w.st.data(), c, s.decay);
    round_to_params(s, off + a, c, p + a);
  }
}

io::SpillArrays::Fn ParamStore::spill_fn(const OwnedFn& fn, bool zero, double* sq) {
  const auto K = static_cast<size_t>(slots_);
  const int m0 = masters_spilled_ ? 1 : 0;
  auto w = std::make_shared<OwnedScratch>();
  w->base.resize(K), w->st.resize(K);
  return [this, fn, w, m0, K, zero, sq](size_t a, size_t m, float* const* arr) {
    if (sq) *sq += kernels::sum_squares(ctx_, gpart_.at(a), gdt_, m);  // before fn may overwrite them
    for (const auto& s : owned_) {
      const size_t x0 = std::max(a, s.state_off), x1 = std::min(a + m, s.state_off + s.n);
      if (x0 >= x1) continue;
      for (size_t k = 0; k < K; ++k) w->base[k] = arr[static_cast<size_t>(m0) + k] + (x0 - a);
      step_slice(fn, *w, s, x0 - s.state_off, x1 - x0, masters_spilled_ ? arr[0] + (x0 - a) : s.p + (x0 - s.state_off), false);
    }
    if (zero) kernels::zero_bytes(ctx_, gpart_.at(a), m * dtype_size(gdt_));
  };
}

void ParamStore::for_each_owned(const OwnedFn& fn, bool whole_tensors) {
  DMPI_REQUIRE(!whole_tensors || !res_.states_partitioned, "whole tensors are owned at ZeRO stage 0 only");
  const auto K = static_cast<size_t>(slots_);
  if (spill_) {
    quiesce_reads();  // no read-ahead of the old masters survives the step
    spill_->finish();
    // ZeRO-3: the stream is finished by the next forward (each gather first updates the
    // sub-groups of its chunk), so it owns what it uses; each sub-group's gradients are zeroed
    // once stepped (begin_step leaves them), so the next backward finds them clean
    const bool lazy = res_.params_partitioned;
    if (!lazy) return spill_->stream(spill_fn(fn, false, nullptr));
    spill_->begin(spill_fn(fn, true, nullptr));
    grads_zeroed_ = true;
    return;
  }
  OwnedScratch w;
  w.base.resize(K), w.st.resize(K);
  for (const auto& s : owned_) {
    auto whole = [&](size_t off, size_t n) {
      for (size_t k = 0; k < K; ++k) w.base[k] = states_[k].as<float>() + s.state_off + off;
      step_slice(fn, w, s, off, n, s.p + off, whole_tensors);
    };
    if (!whole_tensors) {
      whole(0, s.n);
      continue;
    }
    for (const auto& t : layout_.tensors()) {
      const size_t a = std::max(s.flat, t.offset), b = std::min(s.flat + s.n, t.offset + t.numel);
      if (a < b) whole(a - s.flat, b - a);
    }
  }
}

void ParamStore::finish_update() {
  DMPI_REQUIRE(!armed_, "the optimizer's update was asked for before the step's last backward ended");
  if (spill_) spill_->finish();
}

void ParamStore::arm_update(OwnedFn fn) {
  DMPI_REQUIRE(spill_ && res_.params_partitioned && !(tp_ && tp_->size() > 1) && !(pp_ && pp_->size() > 1),
               "an update during the backward needs ZeRO-3 with NVMe offload, without tensor or pipeline parallelism");
  armed_fn_ = std::move(fn);
}

void ParamStore::begin_armed() {
  armed_sq_ = 0.0, in_backward_updates_ = 0;
  const size_t G = spill_->sub_group(), nsub = (spill_->size() + G - 1) / G;
  group_left_.assign(nsub, 0);
  for (int u = 0; u < layout_.num_units(); ++u) {
    const UnitInfo& ui = layout_.unit(u);
    for (size_t g = ui.part_off / G; ui.chunk > 0 && g <= (ui.part_off + ui.chunk - 1) / G; ++g) ++group_left_[g];
  }
  // (a stream left to this forward by an unarmed step is finished first). offload_param: the
  // first reads wait for the last backward, so the forwards copy the chunks of the sub-groups the
  // buffers hold (the lowest: the last ones updated) instead of reading them
  spill_->begin_gated(spill_fn(armed_fn_, true, &armed_sq_), params_spilled_);
  armed_fn_ = nullptr;
  armed_ = true;
}

void ParamStore::gradients_final(int u) {
  const UnitInfo& ui = layout_.unit(u);
  const size_t G = spill_->sub_group();
  for (size_t g = ui.part_off / G; ui.chunk > 0 && g <= (ui.part_off + ui.chunk - 1) / G; ++g) {
    DMPI_REQUIRE(group_left_[g] > 0, "unit " << u << ": its gradients were reduced twice in the step's last micro-batch");
    --group_left_[g];
  }
  in_backward_updates_ += spill_->step_ready([this](size_t j) { return group_left_[j] == 0; });
}

size_t ParamStore::pending_update() const { return spill_ ? spill_->pending() : 0; }

void ParamStore::fill_state(int slot, float v) {
  if (!spill_) {
    std::fill(states_[static_cast<size_t>(slot)].as<float>(), states_[static_cast<size_t>(slot)].as<float>() + owned_numel_, v);
    return;
  }
  const int k = slot + (masters_spilled_ ? 1 : 0);
  spill_->stream([&](size_t, size_t n, float* const* arr) { std::fill(arr[k], arr[k] + n, v); });
}

// bf16/fp16: elements [off, off + n) of an owned slice's masters (at src), rounded into this rank's
// 16-bit parameters
void ParamStore::round_to_params(const OwnedSlice& s, size_t off, size_t n, const float* src) {
  if (params_spilled_) return;  // offload_param: rounded where a gather reads the masters
  void* dst = res_.params_partitioned ? p16part_.at(s.state_off + off) : p16_.at(s.flat + off);
  kernels::convert(ctx_, src, DType::F32, dst, pdt_, n);
}

// The 16-bit parameters of partition elements [a, a + n) widened to fp32 (the initial masters)
void ParamStore::widen_partition(size_t a, size_t n, float* out) const {
  std::fill(out, out + n, 0.0f);
  if (res_.params_partitioned) {
    kernels::convert(ctx_, p16part_.at(a), pdt_, out, DType::F32, n);
    return;
  }
  for_each_chunk_piece(layout_, rank_, a, n, [&](size_t x0, size_t x1, size_t flat) {
    kernels::convert(ctx_, element(p16_.data(), pdt_, flat), pdt_, out + (x0 - a), DType::F32, x1 - x0);
  });
}

void ParamStore::masters_loaded() {
  quiesce_reads();
  if (params_spilled_) {
    // nothing to round: the gathers read the masters' file
  } else if (half_ && masters_spilled_) {
    spill_->stream(
        [&](size_t a, size_t m, float* const* arr) {
          for (const auto& s : owned_) {
            const size_t x0 = std::max(a, s.state_off), x1 = std::min(a + m, s.state_off + s.n);
            if (x0 < x1) round_to_params(s, x0 - s.state_off, x1 - x0, arr[0] + (x0 - a));
          }
        },
        true, false);
  } else if (half_) {
    for (const auto& s : owned_) round_to_params(s, 0, s.n, s.p);
  }
  after_optimizer();
}

void ParamStore::after_optimizer() {
  if (!res_.states_partitioned) return;
  const Layout& L = layout_;
  if (res_.params_partitioned) {
    // the persistent units are gathered again from the updated partitions at their first use
    // (the update may still be finishing then: it reaches their chunks only as the forward does)
    for (auto& [i, buf] : persist_) units_[static_cast<size_t>(i)].stale = true;
    // offload_param: the next forward's first unit read while the step ends - unless the update
    // is still to run, which the read would have to finish first (its gather updates it then)
    if (pending_update() == 0) read_ahead(first_gathered_);
    return;
  }
  if (W_ == 1) return;
  // allgather_bucket_size: at most that many gathered elements in flight (a unit larger than
  // the bucket goes alone); the oldest all-gather is finished before the next would pass it
  std::deque<std::pair<comm::WorkPtr, int64_t>> inflight;
  int64_t elems = 0;
  void* params = half_ ? p16_.data() : pfull_.data();
  for (int ui = 0; ui < L.num_units(); ++ui) {
    const UnitInfo& u = L.unit(ui);
    const auto n = static_cast<int64_t>(u.numel);
    while (!inflight.empty() && elems + n > allgather_bucket_) {
      inflight.front().first->wait();
      elems -= inflight.front().second;
      inflight.pop_front();
    }
    void* base = element(params, pdt_, u.offset);
    inflight.push_back({comm_.iall_gather(element(base, pdt_, static_cast<size_t>(rank_) * u.chunk), u.chunk, base, pdt_), n});
    elems += n;
  }
  for (auto& [w, n] : inflight) w->wait();
}

// A persistent unit's gathered parameters from the partitions updated since (stage 3)
void ParamStore::refresh_persistent(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  if (!u.stale) return;
  u.stale = false;
  Buffer& buf = persist_.at(i);
  const void* chunk = partition_chunk(i);
  if (W_ == 1) kernels::convert(ctx_, chunk, buf.dtype(), buf.data(), buf.dtype(), buf.numel());
  else comm_.all_gather(chunk, layout_.unit(i).chunk, buf.data(), buf.dtype());
  drop_chunk(i);
}

StoreMemory ParamStore::memory() const {
  StoreMemory m;
  m.params = pfull_.bytes() + p16_.bytes() + p16part_.bytes();
  for (const auto& [i, buf] : persist_) m.params += buf.bytes();
  (half_ ? m.masters : m.params) += ppart_.bytes();
  m.masters += master_.bytes();
  m.grads = gfull_.bytes() + gpart_.bytes();
  for (const auto& s : states_) m.optimizer_states += s.bytes();
  m.comm_buffers = pool_.bytes + work_pool_.bytes + wire_.bytes() + aligned_bytes_;
  if (spill_) {
    m.spill_buffers = spill_->host_bytes();
    m.spilled_masters = masters_spilled_ ? owned_numel_ * sizeof(float) : 0;
    m.spilled_states = static_cast<size_t>(slots_) * owned_numel_ * sizeof(float);
  }
  return m;
}

StoreMemory ParamStore::planned(const Layout& L, const config::DsConfig& ds, int state_slots) {
  const Residency r = Residency::of_stage(ds.zero.stage);
  const bool half = ds.bf16.enabled || ds.fp16.enabled;
  const DType pdt = dtype_named(ds.model_dtype(), DType::F32);
  const size_t ps = dtype_size(pdt), gs = dtype_size(dtype_named(ds.misc.grad_accum_dtype, pdt));
  const size_t N = L.numel(), P = L.partition_numel();
  size_t persistent = 0, largest = 0;
  for (int u = 0; u < L.num_units(); ++u) {
    largest = std::max(largest, L.unit(u).numel);
    if (r.params_partitioned && static_cast<int64_t>(L.unit(u).numel) <= ds.zero.param_persistence_threshold)
      persistent += L.unit(u).numel;
  }
  StoreMemory m;
  m.params = (r.params_partitioned ? P + persistent : N) * ps;
  if (half) m.masters = (r.states_partitioned ? P : N) * 4;
  m.grads = (r.grads_partitioned ? 0 : N * gs) + (r.states_partitioned ? P * gs : 0);
  m.optimizer_states = static_cast<size_t>(state_slots) * (r.states_partitioned ? P : N) * 4;
  if (ds.zero.offload_optimizer.device == "nvme" && r.states_partitioned) {
    const size_t arrays = static_cast<size_t>(state_slots) + (half ? 1 : 0);
    const size_t G = (std::min<size_t>(static_cast<size_t>(std::max<int64_t>(1, ds.zero.sub_group_size)), std::max<size_t>(P, 1)) + 1023) / 1024 * 1024;
    const size_t nsub = (P + G - 1) / G;
    const size_t S = std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(ds.zero.offload_optimizer.buffer_count), nsub));
    const bool params = ds.zero.offload_param.device == "nvme" && r.params_partitioned;
    m.spilled_states = m.optimizer_states;
    m.spilled_masters = half ? m.masters : params ? P * 4 : 0;
    m.optimizer_states = 0;
    if (half) m.masters = 0;
    m.spill_buffers = S * (arrays + (params && !half ? 1 : 0)) * G * 4;
    if (params) m.params = persistent * ps;  // the partition: read from the spilled masters per gather
  }
  // stage 3: the gathers in flight (two of the largest unit) and the units kept gathered from the
  // forward to the backward: a kept unit has at most stage3_max_reuse_distance elements gathered
  // after it, so all of them together hold at most that many and one more unit
  const size_t reuse = static_cast<size_t>(std::max<int64_t>(0, ds.zero.max_reuse_distance));
  m.comm_buffers = (half || r.grads_partitioned ? 2 * largest * 4 : 0) + (half ? largest * 4 : 0) +
                   (r.params_partitioned ? (2 * largest + std::min(reuse, N)) * (half ? ps : 4) : 0);
  return m;
}

std::vector<StatePiece> ParamStore::state_pieces(bool balanced) {
  DMPI_REQUIRE(!balanced || !res_.states_partitioned, "a balanced share needs every element on every rank (ZeRO stage 0)");
  finish_update();  // (a checkpoint reads the spill files from its own thread)
  std::vector<StatePiece> out;
  const std::vector<Run> runs = balanced ? layout_.balanced() : layout_.owned();
  for (const Run& r : runs) {
    const int t = layout_.tensor(r.tensor).model_tensor;
    if (masters_spilled_) {
      out.push_back({0, t, r.begin, r.n, nullptr, 0, r.part});
    } else {
      float* p = res_.params_partitioned ? ppart_.as<float>() + r.part
                 : half_                 ? master_.as<float>() + r.part
                                         : pfull_.as<float>() + r.flat;
      out.push_back({0, t, r.begin, r.n, p});
    }
    const int m0 = masters_spilled_ ? 1 : 0;
    for (int k = 0; k < slots_; ++k) {
      if (spill_) out.push_back({k + 1, t, r.begin, r.n, nullptr, k + m0, r.part});
      else out.push_back({k + 1, t, r.begin, r.n, states_[static_cast<size_t>(k)].as<float>() + r.part});
    }
  }
  return out;
}

std::vector<std::vector<float>> ParamStore::gather_full() {
  finish_update();
  const Layout& L = layout_;
  std::vector<float> flat;
  if (!res_.states_partitioned) {
    const float* src = half_ ? master_.as<float>() : pfull_.as<float>();
    flat.assign(src, src + L.numel());
  } else if (!half_ && !res_.params_partitioned) {
    flat.assign(pfull_.as<float>(), pfull_.as<float>() + L.numel());
  } else {
    // the masters (stage 3, or stages 1-2 in bf16/fp16): every unit gathered from the partitions (collective)
    flat.assign(L.numel(), 0.0f);
    std::vector<float> part(owned_numel_, 0.0f);
    if (masters_spilled_) spill_->read(0, 0, owned_numel_, part.data());
    else
      for (const auto& o : owned_) std::copy_n(o.p, o.n, part.data() + o.state_off);
    for (int ui = 0; ui < L.num_units(); ++ui)
      comm_.all_gather(part.data() + L.unit(ui).part_off, L.unit(ui).chunk, flat.data() + L.unit(ui).offset, DType::F32);
  }
  std::vector<std::vector<float>> out;
  for (const auto& t : L.tensors()) out.emplace_back(flat.begin() + static_cast<long>(t.offset), flat.begin() + static_cast<long>(t.offset + t.numel));
  return out;
}

}  // namespace dmpi::engine
