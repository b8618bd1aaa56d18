#include "src/engine/zero.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>

#include "kernels/dtype.hpp"
#include "kernels/ops.hpp"
#include "src/util/error.hpp"

namespace dmpi::engine {

using model::HookPoint;

namespace {
// Gradients on the wire in 16 bits (communication_data_type): packed with round-to-nearest-even,
// reduced by the communicator (pairwise in fp32), unpacked.
void pack16(const float* x, uint16_t* y, size_t n, comm::DType t) {
  if (t == comm::DType::BF16) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) y[i] = to_bf16(x[i]).bits;
  } else {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      _Float16 h = static_cast<_Float16>(x[i]);
      std::memcpy(&y[i], &h, 2);
    }
  }
}
float unpack16(uint16_t v, comm::DType t) {
  if (t == comm::DType::BF16) return to_float(bf16{v});
  _Float16 h;
  std::memcpy(&h, &v, 2);
  return static_cast<float>(h);
}

void scale(float* p, size_t n, double a) {
  if (a != 1.0) kernels::scale_inplace(p, n, static_cast<float>(a));
}
}  // namespace

ZeroEngine::ZeroEngine(model::GPT<float>& model, comm::Communicator& dp, const config::DsConfig& ds, int state_slots,
                       const Init& init)
    : model_(model), dp_(dp), stage_(ds.zero.stage), W_(dp.size()), rank_(dp.rank()), overlap_(ds.zero.overlap()),
      reduce_bucket_(std::max<int64_t>(1, ds.zero.reduce_bucket_size)),
      prefetch_bucket_(ds.zero.prefetch_bucket_size), max_live_(ds.zero.max_live_parameters),
      allgather_bucket_(std::max<int64_t>(1, ds.zero.allgather_bucket_size)) {
  DMPI_REQUIRE(stage_ >= 0 && stage_ <= 3, "ZeRO stage " << stage_ << " does not exist (0-3)");
  const std::string& cdt = ds.misc.communication_data_type;
  comm_dtype_ = cdt == "bf16" ? comm::DType::BF16 : cdt == "fp16" ? comm::DType::F16 : comm::DType::F32;
  // DeepSpeed's averaging: postscale (1/f before the sum, f/W after) unless prescale_gradients.
  const double f = ds.misc.gradient_predivide_factor;
  if (W_ > 1) {
    if (ds.misc.prescale_gradients) pre_scale_ = 1.0 / W_, post_scale_ = 1.0;
    else pre_scale_ = 1.0 / f, post_scale_ = f / W_;
  }
  const auto& mu = model_.units();
  const auto& table = model_.param_table();
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
  auto add_slice = [&](float* p, float* g, size_t state_off, size_t n, bool decay, size_t flat) {
    if (n == 0) return;
    auto& b = owned_;
    if (!b.empty() && b.back().decay == decay && b.back().p + b.back().n == p && b.back().g + b.back().n == g &&
        b.back().state_off + b.back().n == state_off && b.back().flat + b.back().n == flat) {
      b.back().n += n;
      return;
    }
    b.push_back({p, g, state_off, n, decay, flat});
  };
  if (stage_ == 0) {
    owned_numel_ = model_.num_params();
    for (const auto& t : table) add_slice(model_.params() + t.offset, model_.grads() + t.offset, t.offset, t.numel, t.weight_decay,
                                           t.offset);
  } else {
    owned_numel_ = part;
    gpart_.assign(part, 0.0f);
    if (stage_ == 3) {
      DMPI_REQUIRE(model_.params() || init, "ZeRO stage 3: the model has no parameter buffer and no initialiser was given");
      ppart_.assign(part, 0.0f);
      for (auto& u : units_) {
        const size_t first = u.off + static_cast<size_t>(rank_) * u.chunk;
        if (model_.params()) std::copy_n(model_.params() + first, u.chunk, ppart_.data() + u.part_off);
        else init(first, u.chunk, ppart_.data() + u.part_off);
      }
    }
    for (const auto& t : table) {
      const Unit& u = units_[static_cast<size_t>(t.unit)];
      const size_t c0 = u.off + static_cast<size_t>(rank_) * u.chunk, c1 = c0 + u.chunk;
      const size_t a = std::max(c0, t.offset), b = std::min(c1, t.offset + t.numel);
      if (a >= b) continue;
      const size_t local = u.part_off + (a - c0);
      float* p = stage_ == 3 ? ppart_.data() + local : model_.params() + a;
      add_slice(p, gpart_.data() + local, local, b - a, t.weight_decay, a);
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
      if (u.persistent) {
        auto& buf = persist_[i];
        if (model_.params()) {
          buf.assign(model_.params() + u.off, model_.params() + u.off + u.numel);
        } else {
          buf.resize(u.numel);
          init(u.off, u.numel, buf.data());
        }
      }
    }
    model_.release_params();
    for (auto& [i, buf] : persist_) model_.set_unit_params(i, buf.data());
  }
  if (stage_ >= 2) {
    model_.release_grads();
    model_.set_hook([this](HookPoint p, int u) { hook(p, u); });
  }
}

ZeroEngine::~ZeroEngine() {
  model_.set_hook(nullptr);
  for (auto& r : pending_) r.work->wait();
  for (auto& u : units_)
    if (u.gather_work) u.gather_work->wait();
}

float* ZeroEngine::acquire(size_t n) {
  auto& f = free_[n];
  if (!f.empty()) {
    float* p = f.back();
    f.pop_back();
    return p;
  }
  storage_.emplace_back(new float[n]);
  float* p = storage_.back().get();
  size_of_[p] = n;
  pool_bytes_ += n * sizeof(float);
  return p;
}

void ZeroEngine::release(float* p) { free_[size_of_.at(p)].push_back(p); }

void ZeroEngine::ensure_gathered(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  if (u.persistent) return;
  if (u.gathered) {
    if (u.gather_work) u.gather_work->wait(), u.gather_work.reset();
    return;
  }
  u.gathered = acquire(u.numel);
  dp_.all_gather(ppart_.data() + u.part_off, u.chunk, u.gathered, comm::DType::F32);
  live_gathered_ += static_cast<int64_t>(u.numel);
  model_.set_unit_params(i, u.gathered);
}

void ZeroEngine::prefetch(int i) {
  if (i < 0 || i >= static_cast<int>(units_.size())) return;
  Unit& u = units_[static_cast<size_t>(i)];
  if (u.persistent || u.gathered) return;
  const int64_t n = static_cast<int64_t>(u.numel);
  if (n > prefetch_bucket_ || live_gathered_ + n > max_live_) return;
  u.gathered = acquire(u.numel);
  u.gather_work = dp_.iall_gather(ppart_.data() + u.part_off, u.chunk, u.gathered, comm::DType::F32);
  live_gathered_ += n;
  model_.set_unit_params(i, u.gathered);
}

void ZeroEngine::release_gathered(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  if (u.persistent || !u.gathered) return;
  if (u.gather_work) u.gather_work->wait(), u.gather_work.reset();
  release(u.gathered);
  u.gathered = nullptr;
  live_gathered_ -= static_cast<int64_t>(u.numel);
  model_.set_unit_params(i, nullptr);
}

void ZeroEngine::start_grad_reduce(int i) {
  Unit& u = units_[static_cast<size_t>(i)];
  float* buf = model_.unit_grads(i);
  model_.set_unit_grads(i, nullptr);
  scale(buf, u.numel, pre_scale_);
  float* send = buf;
  if (comm_dtype_ != comm::DType::F32) {  // 16 bits on the wire, packed into a pooled buffer
    send = acquire((u.numel + 1) / 2);
    pack16(buf, reinterpret_cast<uint16_t*>(send), u.numel, comm_dtype_);
    release(buf);  // the fp32 gradients are no longer needed
  }
  float* recv = acquire(u.chunk);
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
  float* dst = gpart_.data() + u.part_off;
  const float post = static_cast<float>(post_scale_);
  const size_t n = u.chunk;
  if (comm_dtype_ != comm::DType::F32) {
    const uint16_t* src = reinterpret_cast<const uint16_t*>(r.recv);
    const comm::DType t = comm_dtype_;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < n; ++k) dst[k] += post * unpack16(src[k], t);
  } else {
    const float* src = r.recv;
#pragma omp parallel for simd schedule(static)
    for (size_t k = 0; k < n; ++k) dst[k] += post * src[k];
  }
  release(r.buf);
  release(r.recv);
}

void ZeroEngine::wait_all_reduces() {
  for (auto& r : pending_) finish_reduce(r);
  pending_.clear();
}

void ZeroEngine::hook(HookPoint p, int i) {
  const int L = static_cast<int>(units_.size()) - 2;
  switch (p) {
    case HookPoint::BeforeForward:
      if (stage_ == 3) {
        ensure_gathered(i);
        prefetch(i == 0 ? 1 : (i <= L ? i + 1 : -1));
      }
      break;
    case HookPoint::AfterForward:
      if (stage_ == 3 && !units_[static_cast<size_t>(i)].keep) release_gathered(i);
      break;
    case HookPoint::BeforeBackward: {
      Unit& u = units_[static_cast<size_t>(i)];
      float* g = acquire(u.numel);
      kernels::fill_zero(g, u.numel);
      model_.set_unit_grads(i, g);
      if (stage_ == 3) {
        ensure_gathered(i);
        prefetch(i == 0 ? L + 1 : (i == L + 1 ? L : i - 1));
      }
      break;
    }
    case HookPoint::AfterBackward:
      start_grad_reduce(i);
      if (stage_ == 3) release_gathered(i);
      break;
  }
}

void ZeroEngine::begin_step() {
  if (stage_ == 1) model_.zero_grad();
  if (stage_ >= 1) kernels::fill_zero(gpart_.data(), gpart_.size());
}

void ZeroEngine::end_micro() {
  if (stage_ >= 2) wait_all_reduces();
}

void ZeroEngine::reduce_gradients() {
  if (W_ == 1 && stage_ <= 1) {
    if (stage_ == 1)  // one rank owns everything: the partition gradient is the gradient
      for (auto& u : units_) std::copy_n(model_.grads() + u.off, u.chunk, gpart_.data() + u.part_off);
    return;
  }
  const bool c16 = comm_dtype_ != comm::DType::F32;
  if (stage_ == 0) {
    float* g = model_.grads();
    const size_t n = model_.num_params();
    scale(g, n, pre_scale_);
    if (c16) wire16_.resize(n), pack16(g, wire16_.data(), n, comm_dtype_);
    std::vector<comm::WorkPtr> works;
    for (size_t off = 0; off < n; off += static_cast<size_t>(reduce_bucket_)) {
      const size_t c = std::min(n - off, static_cast<size_t>(reduce_bucket_));
      if (c16) works.push_back(dp_.iall_reduce(wire16_.data() + off, wire16_.data() + off, c, comm_dtype_, comm::ReduceOp::Sum));
      else works.push_back(dp_.iall_reduce(g + off, g + off, c, comm::DType::F32, comm::ReduceOp::Sum));
    }
    for (auto& w : works) w->wait();
    if (c16)
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < n; ++i) g[i] = unpack16(wire16_[i], comm_dtype_);
    scale(g, n, post_scale_);
  } else if (stage_ == 1) {
    std::vector<comm::WorkPtr> works;
    if (c16) wire16_.resize(model_.num_params() + gpart_.size());
    uint16_t* recv16 = c16 ? wire16_.data() + model_.num_params() : nullptr;
    for (auto& u : units_) {
      scale(model_.grads() + u.off, u.numel, pre_scale_);
      if (c16) {
        pack16(model_.grads() + u.off, wire16_.data() + u.off, u.numel, comm_dtype_);
        works.push_back(dp_.ireduce_scatter(wire16_.data() + u.off, recv16 + u.part_off, u.chunk, comm_dtype_,
                                            comm::ReduceOp::Sum));
      } else {
        works.push_back(dp_.ireduce_scatter(model_.grads() + u.off, gpart_.data() + u.part_off, u.chunk,
                                            comm::DType::F32, comm::ReduceOp::Sum));
      }
    }
    for (auto& w : works) w->wait();
    if (c16)
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < gpart_.size(); ++i) gpart_[i] = unpack16(recv16[i], comm_dtype_);
    scale(gpart_.data(), gpart_.size(), post_scale_);
  }
  // stages 2-3: reduced into gpart_ during each backward (end_micro)
}

double ZeroEngine::grad_norm() {
  if (stage_ == 0) return std::sqrt(kernels::sum_squares(model_.grads(), model_.num_params()));
  double sq = kernels::sum_squares(gpart_.data(), gpart_.size());  // padding is zero
  dp_.all_reduce(&sq, &sq, 1, comm::DType::F64, comm::ReduceOp::Sum);
  return std::sqrt(sq);
}

void ZeroEngine::after_optimizer() {
  if (stage_ == 0 || W_ == 1) {
    if (stage_ == 3)
      for (auto& [i, buf] : persist_) std::copy_n(ppart_.data() + units_[static_cast<size_t>(i)].part_off, buf.size(), buf.data());
    return;
  }
  std::vector<comm::WorkPtr> works;
  if (stage_ <= 2) {
    // allgather_bucket_size: at most that many gathered elements in flight (a unit larger than
    // the bucket goes alone); the oldest all-gather is finished before the next would pass it
    std::deque<std::pair<comm::WorkPtr, int64_t>> inflight;
    int64_t elems = 0;
    for (auto& u : units_) {
      const auto n = static_cast<int64_t>(u.numel);
      while (!inflight.empty() && elems + n > allgather_bucket_) {
        inflight.front().first->wait();
        elems -= inflight.front().second;
        inflight.pop_front();
      }
      float* base = model_.params() + u.off;
      inflight.push_back({dp_.iall_gather(base + static_cast<size_t>(rank_) * u.chunk, u.chunk, base, comm::DType::F32), n});
      elems += n;
    }
    for (auto& [w, n] : inflight) w->wait();
  } else {
    for (auto& [i, buf] : persist_) {
      const Unit& u = units_[static_cast<size_t>(i)];
      works.push_back(dp_.iall_gather(ppart_.data() + u.part_off, u.chunk, buf.data(), comm::DType::F32));
    }
  }
  for (auto& w : works) w->wait();
}

ZeroMemory ZeroEngine::memory() const {
  ZeroMemory m;
  m.params = model_.param_bytes() + ppart_.capacity() * sizeof(float);
  for (const auto& [i, buf] : persist_) m.params += buf.capacity() * sizeof(float);
  m.grads = model_.grad_bytes() + gpart_.capacity() * sizeof(float);
  for (const auto& s : states_) m.optimizer_states += s.capacity() * sizeof(float);
  m.comm_buffers = pool_bytes_ + wire16_.capacity() * sizeof(uint16_t);
  return m;
}

}  // namespace dmpi::engine
