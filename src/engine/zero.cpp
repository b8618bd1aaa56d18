#include "src/engine/zero.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>

#include "base/dtype.hpp"
#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "base/error.hpp"

namespace dmpi::engine {

using model::HookPoint;

namespace {
using comm::DType;

// Element access for the three floating storage types: load widens to fp32, store rounds to
// nearest even.
inline float ld(float x) { return x; }
inline float ld(bf16 x) { return to_float(x); }
inline float ld(_Float16 x) { return static_cast<float>(x); }
inline void st(float& d, float x) { d = x; }
inline void st(bf16& d, float x) { d = to_bf16(x); }
inline void st(_Float16& d, float x) { d = static_cast<_Float16>(x); }

template <class Fn>
void typed(DType t, const void* p, Fn&& fn) {
  void* q = const_cast<void*>(p);
  switch (t) {
    case DType::F32: fn(static_cast<float*>(q)); return;
    case DType::BF16: fn(static_cast<bf16*>(q)); return;
    case DType::F16: fn(static_cast<_Float16*>(q)); return;
    default: DMPI_FAIL("ZeRO: gradients and parameters are fp32, bf16 or fp16");
  }
}
void* at(void* base, DType t, size_t i) { return static_cast<char*>(base) + i * comm::dtype_size(t); }
const void* at(const void* base, DType t, size_t i) { return static_cast<const char*>(base) + i * comm::dtype_size(t); }

// dst = src, rounded to dst's dtype
void convert(const void* src, DType ts, void* dst, DType td, size_t n) {
  if (ts == td) {
    std::memcpy(dst, src, n * comm::dtype_size(td));
    return;
  }
  typed(td, dst, [&](auto* d) {
    typed(ts, src, [&](auto* s) {
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; ++i) st(d[i], ld(s[i]));
    });
  });
}
// dst += a * src, in fp32, rounded to dst's dtype
void accumulate(void* dst, DType td, const void* src, DType ts, size_t n, float a) {
  typed(td, dst, [&](auto* d) {
    typed(ts, src, [&](auto* s) {
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; ++i) st(d[i], ld(d[i]) + a * ld(s[i]));
    });
  });
}
void scale(void* p, DType t, size_t n, double a) {
  if (a == 1.0) return;
  if (t == DType::F32) return kernels::scale_inplace(kernels::global_context(), static_cast<float*>(p), n, static_cast<float>(a));
  const float fa = static_cast<float>(a);
  typed(t, p, [&](auto* x) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) st(x[i], fa * ld(x[i]));
  });
}
double sum_squares(const void* p, DType t, size_t n) {
  if (t == DType::F32) return kernels::sum_squares(kernels::global_context(), static_cast<const float*>(p), n);
  double sq = 0;
  typed(t, p, [&](auto* x) {
#pragma omp parallel for simd reduction(+ : sq) schedule(static)
    for (size_t i = 0; i < n; ++i) {
      const double v = ld(x[i]);
      sq += v * v;
    }
  });
  return sq;
}
DType dtype_named(const std::string& s, DType dflt) {
  return s.empty() ? dflt : s == "bf16" ? DType::BF16 : s == "fp16" ? DType::F16 : DType::F32;
}
}  // namespace

void ZeroEngine::Typed::assign(DType type, size_t count) {
  t = type, n = count;
  raw.assign((count * comm::dtype_size(type) + sizeof(float) - 1) / sizeof(float), 0.0f);
}

std::pair<bool, bool> ZeroEngine::model_buffers(const config::DsConfig& ds) {
  const bool half = ds.bf16.enabled || ds.fp16.enabled;
  return {ds.zero.stage < 3 && !half, ds.zero.stage < 2 && !half};
}

ZeroEngine::ZeroEngine(model::GPT<float>& model, comm::Communicator& dp, const config::DsConfig& ds, int state_slots,
                       const Init& init)
    : model_(model), dp_(dp), stage_(ds.zero.stage), W_(dp.size()), rank_(dp.rank()), overlap_(ds.zero.overlap()),
      reduce_bucket_(std::max<int64_t>(1, ds.zero.reduce_bucket_size)),
      prefetch_bucket_(ds.zero.prefetch_bucket_size), max_live_(ds.zero.max_live_parameters),
      allgather_bucket_(std::max<int64_t>(1, ds.zero.allgather_bucket_size)) {
  DMPI_REQUIRE(stage_ >= 0 && stage_ <= 3, "ZeRO stage " << stage_ << " does not exist (0-3)");
  half_ = ds.bf16.enabled || ds.fp16.enabled;
  pdt_ = dtype_named(ds.model_dtype(), DType::F32);
  gdt_ = dtype_named(ds.misc.grad_accum_dtype, pdt_);
  DMPI_REQUIRE(gdt_ == DType::F32 || gdt_ == pdt_,
               "data_types.grad_accum_dtype \"" << ds.misc.grad_accum_dtype << "\" with " << comm::dtype_name(pdt_)
                                                << " parameters: write \"fp32\" or leave it null (the parameters' dtype)");
  // DeepSpeed: the gradients travel in their own dtype unless communication_data_type says otherwise
  comm_dtype_ = dtype_named(ds.misc.communication_data_type, gdt_);
  // DeepSpeed's averaging: postscale (1/f before the sum, f/W after) unless prescale_gradients.
  const double f = ds.misc.gradient_predivide_factor;
  if (W_ > 1) {
    if (ds.misc.prescale_gradients) pre_scale_ = 1.0 / W_, post_scale_ = 1.0;
    else pre_scale_ = 1.0 / f, post_scale_ = f / W_;
  }
  const auto& mu = model_.units();
  const auto& table = model_.param_table();
  const size_t numel = model_.num_params();
  size_t part = 0;
  for (const auto& u : mu) {
    Unit x;
    x.off = u.offset, x.numel = u.numel;
    if (stage_ >= 1) {
      DMPI_REQUIRE(u.numel % (16 * static_cast<size_t>(W_)) == 0,
                   "the model was not built with ZeroEngine::unit_align (unit of " << u.numel << " elements, dp " << W_ << ")");
      x.chunk = u.numel / static_cast<size_t>(W_);
      x.part_off = part;
      part += x.chunk;
    }
    units_.push_back(std::move(x));
  }
  // bf16 working copies: the tensors whose readers all take the registered bf16 copy
  // (kernels::register_lowp_copy: the GEMMs and the embedding lookup) are never widened; fp16
  // GEMMs multiply the fp32 values, so everything is widened
  for (const auto& t : table) {
    Unit& u = units_[static_cast<size_t>(t.unit)];
    if (pdt_ == DType::BF16 && t.read_16bit) continue;
    const size_t off = t.offset - u.off;
    if (!u.widen.empty() && u.widen.back().first + u.widen.back().second == off) u.widen.back().second += t.numel;
    else u.widen.emplace_back(off, t.numel);
  }
  DMPI_REQUIRE(model_.params() || init, "the model has no parameter buffer and no initialiser was given");
  // The initial values of flat elements [begin, begin + n): the model's, or computed
  auto initial = [&](size_t begin, size_t n, float* out) {
    if (model_.params()) std::copy_n(model_.params() + begin, n, out);
    else init(begin, n, out);
  };
  // bf16/fp16: the initial values rounded to 16 bits (as DeepSpeed casts the module), and the
  // masters widened from those (so the 16-bit parameters are always the masters rounded)
  auto initial16 = [&](size_t begin, size_t n, void* dst, float* master) {
    std::vector<float> tmp(std::min<size_t>(n, size_t{1} << 20));
    for (size_t a = 0; a < n; a += tmp.size()) {
      const size_t c = std::min(tmp.size(), n - a);
      initial(begin + a, c, tmp.data());
      convert(tmp.data(), DType::F32, at(dst, pdt_, a), pdt_, c);
      if (master) convert(at(dst, pdt_, a), pdt_, master + a, DType::F32, c);
    }
  };
  auto add_slice = [&](float* p, size_t state_off, size_t n, bool decay, size_t flat) {
    if (n == 0) return;
    auto& b = owned_;
    if (!b.empty() && b.back().decay == decay && b.back().p + b.back().n == p &&
        b.back().state_off + b.back().n == state_off && b.back().flat + b.back().n == flat) {
      b.back().n += n;
      return;
    }
    b.push_back({p, state_off, n, decay, flat});
  };
  owned_numel_ = stage_ == 0 ? numel : part;
  if (half_ && stage_ <= 2) {
    p16_.assign(pdt_, numel);
    initial16(0, numel, p16_.at(0), nullptr);
    master_.resize(owned_numel_);
    if (stage_ == 0) convert(p16_.at(0), pdt_, master_.data(), DType::F32, numel);
    else
      for (const auto& u : units_)
        convert(p16_.at(u.off + static_cast<size_t>(rank_) * u.chunk), pdt_, master_.data() + u.part_off, DType::F32, u.chunk);
  }
  if (half_ && stage_ <= 1) gfull_.assign(gdt_, numel);
  if (stage_ == 0) {
    float* base = half_ ? master_.data() : model_.params();
    for (const auto& t : table) add_slice(base + t.offset, t.offset, t.numel, t.weight_decay, t.offset);
  } else {
    gpart_.assign(gdt_, part);
    if (stage_ == 3) {
      ppart_.assign(part, 0.0f);
      if (half_) p16part_.assign(pdt_, part);
      for (auto& u : units_) {
        const size_t first = u.off + static_cast<size_t>(rank_) * u.chunk;
        if (half_) initial16(first, u.chunk, p16part_.at(u.part_off), ppart_.data() + u.part_off);
        else initial(first, u.chunk, ppart_.data() + u.part_off);
      }
    }
    for (const auto& t : table) {
      const Unit& u = units_[static_cast<size_t>(t.unit)];
      const size_t c0 = u.off + static_cast<size_t>(rank_) * u.chunk, c1 = c0 + u.chunk;
      const size_t a = std::max(c0, t.offset), b = std::min(c1, t.offset + t.numel);
      if (a >= b) continue;
      const size_t local = u.part_off + (a - c0);
      float* p = stage_ == 3 ? ppart_.data() + local : half_ ? master_.data() + local : model_.params() + a;
      add_slice(p, local, b - a, t.weight_decay, a);
    }
  }
  states_.resize(static_cast<size_t>(state_slots));  // one at a time: no temporary copy (peak RSS)
  for (auto& st : states_) st.assign(owned_numel_, 0.0f);
  if (stage_ == 3) {
    // Reuse distance at the forward/backward turn: the elements gathered between a unit's
    // forward and its backward (blocks after it, twice, and the final LayerNorm).
    const int L = static_cast<int>(units_.size()) - 2;
    for (int i = 0; i <= L + 1; ++i) {
      Unit& u = units_[static_cast<size_t>(i)];
      int64_t d = 0;
      if (i >= 1 && i <= L) {
        for (int v = i + 1; v <= L; ++v) d += 2 * static_cast<int64_t>(units_[static_cast<size_t>(v)].numel);
        d += static_cast<int64_t>(units_[static_cast<size_t>(L + 1)].numel);
      }
      u.reuse_distance = d;
      u.keep = d <= ds.zero.max_reuse_distance;
      u.persistent = static_cast<int64_t>(u.numel) <= ds.zero.param_persistence_threshold;
      if (!u.persistent) continue;
      if (half_) {
        Typed& buf = persist16_[i];
        buf.assign(pdt_, u.numel);
        initial16(u.off, u.numel, buf.at(0), nullptr);
      } else {
        auto& buf = persist_[i];
        buf.resize(u.numel);
        initial(u.off, u.numel, buf.data());
      }
    }
  }
  if (stage_ == 3 || half_) model_.release_params();
  for (auto& [i, buf] : persist_) model_.set_unit_params(i, buf.data());
  if (stage_ >= 2 || half_) {
    model_.release_grads();
    model_.set_hook([this](HookPoint p, int u) { hook(p, u); });
  }
}

ZeroEngine::~ZeroEngine() {
  model_.set_hook(nullptr);
  for (auto& u : units_)
    if (u.work && half_) kernels::unregister_lowp_copy(u.work);
  for (auto& r : pending_) r.work->wait();
  for (auto& u : units_)
    if (u.gather_work) u.gather_work->wait();
}

float* ZeroEngine::Pool::acquire(size_t n) {
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

// The unit's fp32 parameters, for its forward or backward: stage 3 all-gathers them (fp32
// training: straight into the working buffer); bf16/fp16 widens the 16-bit parameters (stages
// 0-2: the full buffer; stage 3: the gathered copy, or a persistent unit's) into a pooled one.
void ZeroEngine::ensure_gathered(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  if (!half_ && u.persistent) return;  // fp32 persistent units are the unit's parameters for good
  if (u.work) {
    if (u.gather_work) u.gather_work->wait(), u.gather_work.reset();
    return;
  }
  if (!half_) {
    u.work = work_pool_.acquire(u.numel);
    dp_.all_gather(ppart_.data() + u.part_off, u.chunk, u.work, DType::F32);
    live_gathered_ += static_cast<int64_t>(u.numel);
    model_.set_unit_params(i, u.work);
    return;
  }
  const void* src = nullptr;
  if (stage_ == 3 && !u.persistent) {
    if (!u.g16) {
      u.g16 = acquire16(u.numel);
      dp_.all_gather(p16part_.at(u.part_off), u.chunk, u.g16, pdt_);
      live_gathered_ += static_cast<int64_t>(u.numel);
    } else if (u.gather_work) {
      u.gather_work->wait(), u.gather_work.reset();
    }
    src = u.g16;
  } else {
    src = stage_ == 3 ? persist16_.at(i).at(0) : p16_.at(u.off);
  }
  u.work = work_pool_.acquire(u.numel);
  for (const auto& [off, n] : u.widen) convert(at(src, pdt_, off), pdt_, u.work + off, DType::F32, n);
  model_.set_unit_params(i, u.work);
  // the GEMMs take the 16-bit values as they are (kernels::register_lowp_copy); a stage-3 gather
  // is kept for that until the unit is released
  kernels::register_lowp_copy(u.work, u.numel, pdt_ == DType::BF16 ? static_cast<const bf16*>(src) : nullptr);
}

void ZeroEngine::prefetch(int i) {
  if (i < 0 || i >= static_cast<int>(units_.size())) return;
  Unit& u = units_[static_cast<size_t>(i)];
  if (u.persistent || u.work || u.g16) return;
  const int64_t n = static_cast<int64_t>(u.numel);
  if (n > prefetch_bucket_ || live_gathered_ + n > max_live_) return;
  if (half_) {
    u.g16 = acquire16(u.numel);
    u.gather_work = dp_.iall_gather(p16part_.at(u.part_off), u.chunk, u.g16, pdt_);
  } else {
    u.work = work_pool_.acquire(u.numel);
    u.gather_work = dp_.iall_gather(ppart_.data() + u.part_off, u.chunk, u.work, DType::F32);
    model_.set_unit_params(i, u.work);
  }
  live_gathered_ += n;
}

// Drops the unit's fp32 working parameters; at stage 3 also its gathered 16-bit copy unless
// keep_16bit (bf16/fp16 at the forward/backward turn: a kept unit holds 2 bytes per element, and
// its backward widens it again without an all-gather).
void ZeroEngine::release_gathered(int i, bool keep_16bit) {
  Unit& u = units_[static_cast<size_t>(i)];
  if (!half_ && u.persistent) return;
  if (u.gather_work) u.gather_work->wait(), u.gather_work.reset();
  if (u.work) {
    if (half_) kernels::unregister_lowp_copy(u.work);
    work_pool_.release(u.work);
    u.work = nullptr;
    model_.set_unit_params(i, nullptr);
    if (!half_) live_gathered_ -= static_cast<int64_t>(u.numel);  // fp32: the working buffer is the gather
  }
  if (u.g16 && !keep_16bit) {
    release(u.g16);
    u.g16 = nullptr;
    live_gathered_ -= static_cast<int64_t>(u.numel);
  }
}

void* ZeroEngine::full_grads() { return half_ ? gfull_.at(0) : model_.grads(); }

// Stages 0-1, bf16/fp16: the unit's fp32 gradients of this micro-batch, rounded into the
// accumulated gradients.
void ZeroEngine::accumulate_grads(int i) {
  const Unit& u = units_[static_cast<size_t>(i)];
  float* g = model_.unit_grads(i);
  model_.set_unit_grads(i, nullptr);
  accumulate(gfull_.at(u.off), gdt_, g, DType::F32, u.numel, 1.0f);
  release(g);
}

void ZeroEngine::start_grad_reduce(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  float* buf = model_.unit_grads(i);
  model_.set_unit_grads(i, nullptr);
  scale(buf, DType::F32, u.numel, pre_scale_);
  float* send = buf;
  if (comm_dtype_ != DType::F32) {  // 16 bits on the wire, packed into a pooled buffer
    send = acquire16(u.numel);
    convert(buf, DType::F32, send, comm_dtype_, u.numel);
    release(buf);  // the fp32 gradients are no longer needed
  }
  float* recv = comm_dtype_ == DType::F32 ? acquire(u.chunk) : acquire16(u.chunk);
  pending_.push_back({dp_.ireduce_scatter(send, recv, u.chunk, comm_dtype_, comm::ReduceOp::Sum), send, recv, i});
  // overlap_comm: keep at most two reductions in flight (bounded bucket memory); else finish now.
  while (!pending_.empty() && (!overlap_ || pending_.size() > 2)) {
    finish_reduce(pending_.front());
    pending_.erase(pending_.begin());
  }
}

void ZeroEngine::finish_reduce(PendingReduce& r) {
  r.work->wait();
  const Unit& u = units_[static_cast<size_t>(r.unit)];
  accumulate(gpart_.at(u.part_off), gdt_, r.recv, comm_dtype_, u.chunk, static_cast<float>(post_scale_));
  release(r.buf);
  release(r.recv);
}

void ZeroEngine::wait_all_reduces() {
  for (auto& r : pending_) finish_reduce(r);
  pending_.clear();
}

void ZeroEngine::hook(HookPoint p, int i) {
  const int L = static_cast<int>(units_.size()) - 2;
  const bool materialise = stage_ == 3 || half_;  // the unit's parameters exist only while it runs
  switch (p) {
    case HookPoint::BeforeForward:
      if (materialise) ensure_gathered(i);
      if (stage_ == 3) prefetch(i == 0 ? 1 : (i <= L ? i + 1 : -1));
      break;
    case HookPoint::AfterForward:
      if (!materialise) break;
      if (!(stage_ == 3 && units_[static_cast<size_t>(i)].keep)) release_gathered(i);
      else if (half_) release_gathered(i, /*keep_16bit=*/true);
      break;
    case HookPoint::BeforeBackward: {
      Unit& u = units_[static_cast<size_t>(i)];
      float* g = acquire(u.numel);
      kernels::fill_zero(kernels::global_context(), g, u.numel);
      model_.set_unit_grads(i, g);
      if (materialise) ensure_gathered(i);
      if (stage_ == 3) prefetch(i == 0 ? L + 1 : (i == L + 1 ? L : i - 1));
      break;
    }
    case HookPoint::AfterBackward:
      if (materialise) release_gathered(i);  // first: the reduction can reuse its buffers
      if (stage_ >= 2) start_grad_reduce(i);
      else accumulate_grads(i);
      break;
  }
}

void ZeroEngine::begin_step() {
  if (stage_ == 1 && !half_) model_.zero_grad();
  if (half_ && stage_ <= 1) kernels::fill_zero(kernels::global_context(), gfull_.raw.data(), gfull_.raw.size());
  if (stage_ >= 1) kernels::fill_zero(kernels::global_context(), gpart_.raw.data(), gpart_.raw.size());
}

void ZeroEngine::end_micro() {
  if (stage_ >= 2) wait_all_reduces();
}

void ZeroEngine::skip_step() {
  if (stage_ == 0 && !half_) model_.zero_grad();  // else begin_step zeroes them
}

void ZeroEngine::reduce_gradients() {
  void* g = stage_ <= 1 ? full_grads() : nullptr;
  if (W_ == 1 && stage_ <= 1) {
    if (stage_ == 1)  // one rank owns everything: the partition gradient is the gradient
      for (auto& u : units_) convert(at(g, gdt_, u.off), gdt_, gpart_.at(u.part_off), gdt_, u.chunk);
    return;
  }
  // the gradients travel as comm_dtype_: converted into wire_ when that is not their dtype
  const bool conv = comm_dtype_ != gdt_;
  const size_t n = model_.num_params();
  if (stage_ == 0) {
    scale(g, gdt_, n, pre_scale_);
    void* w = g;
    if (conv) {
      if (wire_.n != n || wire_.t != comm_dtype_) wire_.assign(comm_dtype_, n);
      convert(g, gdt_, wire_.at(0), comm_dtype_, n);
      w = wire_.at(0);
    }
    std::vector<comm::WorkPtr> works;
    for (size_t off = 0; off < n; off += static_cast<size_t>(reduce_bucket_)) {
      const size_t c = std::min(n - off, static_cast<size_t>(reduce_bucket_));
      works.push_back(dp_.iall_reduce(at(w, comm_dtype_, off), at(w, comm_dtype_, off), c, comm_dtype_, comm::ReduceOp::Sum));
    }
    for (auto& wk : works) wk->wait();
    if (conv) convert(w, comm_dtype_, g, gdt_, n);
    scale(g, gdt_, n, post_scale_);
  } else if (stage_ == 1) {
    std::vector<comm::WorkPtr> works;
    if (conv && (wire_.n != n + gpart_.n || wire_.t != comm_dtype_)) wire_.assign(comm_dtype_, n + gpart_.n);
    for (auto& u : units_) {
      scale(at(g, gdt_, u.off), gdt_, u.numel, pre_scale_);
      if (conv) {
        convert(at(g, gdt_, u.off), gdt_, wire_.at(u.off), comm_dtype_, u.numel);
        works.push_back(dp_.ireduce_scatter(wire_.at(u.off), wire_.at(n + u.part_off), u.chunk, comm_dtype_,
                                            comm::ReduceOp::Sum));
      } else {
        works.push_back(dp_.ireduce_scatter(at(g, gdt_, u.off), gpart_.at(u.part_off), u.chunk, gdt_, comm::ReduceOp::Sum));
      }
    }
    for (auto& wk : works) wk->wait();
    if (conv) convert(wire_.at(n), comm_dtype_, gpart_.at(0), gdt_, gpart_.n);
    scale(gpart_.at(0), gdt_, gpart_.n, post_scale_);
  }
  // stages 2-3: reduced into gpart_ during each backward (end_micro)
}

double ZeroEngine::grad_norm() {
  if (stage_ == 0) return std::sqrt(sum_squares(full_grads(), gdt_, model_.num_params()));
  double sq = sum_squares(gpart_.at(0), gdt_, gpart_.n);  // padding is zero
  dp_.all_reduce(&sq, &sq, 1, DType::F64, comm::ReduceOp::Sum);
  return std::sqrt(sq);
}

void ZeroEngine::for_each_owned(const OwnedFn& fn, bool whole_tensors) {
  DMPI_REQUIRE(!whole_tensors || stage_ == 0, "whole tensors are owned at ZeRO stage 0 only");
  constexpr size_t kChunk = size_t{1} << 16;  // bf16/fp16: this many at a time (cache-sized)
  std::vector<float> tmp;
  for (const auto& s : owned_) {
    auto run = [&](size_t off, size_t n) {  // elements [off, off + n) of the slice
      void* g = stage_ == 0 ? at(full_grads(), gdt_, s.flat + off) : gpart_.at(s.state_off + off);
      if (!half_) return fn(s.p + off, static_cast<float*>(g), s.state_off + off, n, s.decay);
      // 16-bit gradients widened into tmp; the updated masters rounded to the 16-bit parameters
      // while the chunk is in cache
      const size_t step = whole_tensors ? n : kChunk;
      for (size_t a = 0; a < n; a += step) {
        const size_t c = std::min(step, n - a);
        void* ga = at(g, gdt_, a);
        float* gf = static_cast<float*>(ga);
        if (gdt_ != DType::F32) {
          tmp.resize(std::max(tmp.size(), c));
          convert(ga, gdt_, tmp.data(), DType::F32, c);
          gf = tmp.data();
        }
        float* p = s.p + off + a;
        fn(p, gf, s.state_off + off + a, c, s.decay);
        round_to_params(s, off + a, c);
      }
    };
    if (!whole_tensors) {
      run(0, s.n);
      continue;
    }
    for (const auto& t : model_.param_table()) {
      const size_t a = std::max(s.flat, t.offset), b = std::min(s.flat + s.n, t.offset + t.numel);
      if (a < b) run(a - s.flat, b - a);
    }
  }
}

// bf16/fp16: elements [off, off + n) of an owned slice's masters, rounded into this rank's
// 16-bit parameters
void ZeroEngine::round_to_params(const OwnedSlice& s, size_t off, size_t n) {
  void* dst = stage_ == 3 ? p16part_.at(s.state_off + off) : p16_.at(s.flat + off);
  convert(s.p + off, DType::F32, dst, pdt_, n);
}

void ZeroEngine::masters_loaded() {
  if (half_)
    for (const auto& s : owned_) round_to_params(s, 0, s.n);
  after_optimizer();
}

float* ZeroEngine::stage0_params() {
  DMPI_REQUIRE(stage_ == 0, "stage0_params at ZeRO stage " << stage_);
  return half_ ? master_.data() : model_.params();
}

void ZeroEngine::after_optimizer() {
  if (stage_ == 0) return;
  if (W_ == 1) {
    if (stage_ == 3) {
      for (auto& [i, buf] : persist_) std::copy_n(ppart_.data() + units_[static_cast<size_t>(i)].part_off, buf.size(), buf.data());
      for (auto& [i, buf] : persist16_) convert(p16part_.at(units_[static_cast<size_t>(i)].part_off), pdt_, buf.at(0), pdt_, buf.n);
    }
    return;
  }
  std::vector<comm::WorkPtr> works;
  if (stage_ <= 2) {
    // allgather_bucket_size: at most that many gathered elements in flight (a unit larger than
    // the bucket goes alone); the oldest all-gather is finished before the next would pass it
    std::deque<std::pair<comm::WorkPtr, int64_t>> inflight;
    int64_t elems = 0;
    void* params = half_ ? p16_.at(0) : model_.params();
    for (auto& u : units_) {
      const auto n = static_cast<int64_t>(u.numel);
      while (!inflight.empty() && elems + n > allgather_bucket_) {
        inflight.front().first->wait();
        elems -= inflight.front().second;
        inflight.pop_front();
      }
      void* base = at(params, pdt_, u.off);
      inflight.push_back({dp_.iall_gather(at(base, pdt_, static_cast<size_t>(rank_) * u.chunk), u.chunk, base, pdt_), n});
      elems += n;
    }
    for (auto& [w, n] : inflight) w->wait();
  } else {
    for (auto& [i, buf] : persist_) {
      const Unit& u = units_[static_cast<size_t>(i)];
      works.push_back(dp_.iall_gather(ppart_.data() + u.part_off, u.chunk, buf.data(), DType::F32));
    }
    for (auto& [i, buf] : persist16_) {
      const Unit& u = units_[static_cast<size_t>(i)];
      works.push_back(dp_.iall_gather(p16part_.at(u.part_off), u.chunk, buf.at(0), pdt_));
    }
  }
  for (auto& w : works) w->wait();
}

ZeroMemory ZeroEngine::memory() const {
  ZeroMemory m;
  m.params = model_.param_bytes() + p16_.bytes() + p16part_.bytes();
  for (const auto& [i, buf] : persist_) m.params += buf.capacity() * sizeof(float);
  for (const auto& [i, buf] : persist16_) m.params += buf.bytes();
  (half_ ? m.masters : m.params) += ppart_.capacity() * sizeof(float);
  m.masters += master_.capacity() * sizeof(float);
  m.grads = model_.grad_bytes() + gfull_.bytes() + gpart_.bytes();
  for (const auto& s : states_) m.optimizer_states += s.capacity() * sizeof(float);
  m.comm_buffers = pool_.bytes + work_pool_.bytes + wire_.bytes();
  return m;
}

}  // namespace dmpi::engine
