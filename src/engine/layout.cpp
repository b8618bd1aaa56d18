#include "src/engine/layout.hpp"

#include <algorithm>

#include "base/error.hpp"

namespace dmpi::engine {

Layout::Layout(const model::Model<float>& m, int dp_size, int dp_rank, bool partitioned)
    : model_(&m), W_(dp_size), r_(dp_rank), partitioned_(partitioned) {
  DMPI_REQUIRE(dp_size >= 1 && dp_rank >= 0 && dp_rank < dp_size, "layout for rank " << dp_rank << " of " << dp_size);
  const size_t align = alignment(partitioned, dp_size);
  unit_of_.assign(static_cast<size_t>(m.num_units()), -1);
  size_t off = 0;
  for (int t = 0; t < m.num_tensors(); ++t) {
    const model::TensorRef& ref = m.tensor(t);
    const model::ParamSpec& s = m.spec(t);
    if (unit_of_[static_cast<size_t>(ref.unit)] < 0) {
      // a new unit: starts at a multiple of the alignment (the previous one is padded to it)
      off = (off + align - 1) / align * align;
      unit_of_[static_cast<size_t>(ref.unit)] = static_cast<int>(units_.size());
      UnitInfo u;
      u.model_unit = ref.unit;
      u.offset = off;
      u.first_tensor = t;
      units_.push_back(u);
    }
    UnitInfo& u = units_.back();
    TensorInfo ti;
    ti.name = s.name;
    ti.shape = s.shape;
    ti.numel = s.numel;
    ti.logical = s.logical;
    ti.tp_split = s.tp_split();
    ti.tied = s.tied, ti.tied_copy = s.tied_copy;
    ti.offset = off;
    ti.unit = static_cast<int>(units_.size()) - 1;
    ti.model_tensor = t;
    ti.decay = s.weight_decay;
    ti.dtype = s.dtype;
    tensors_.push_back(ti);
    u.real += s.numel;
    ++u.num_tensors;
    off += s.numel;
    real_ += s.numel;
  }
  for (auto& u : units_) {
    const size_t end = tensors_[static_cast<size_t>(u.first_tensor + u.num_tensors - 1)].offset +
                       tensors_[static_cast<size_t>(u.first_tensor + u.num_tensors - 1)].numel;
    u.numel = (end - u.offset + align - 1) / align * align;
    u.chunk = partitioned ? u.numel / static_cast<size_t>(W_) : u.numel;
    u.part_off = part_;
    part_ += partitioned ? u.chunk : u.numel;
  }
  numel_ = units_.empty() ? 0 : units_.back().offset + units_.back().numel;
  if (!partitioned) part_ = numel_;
  // the runs this rank owns: its chunk of every unit, split at tensor boundaries
  for (int ui = 0; ui < num_units(); ++ui) {
    const UnitInfo& u = units_[static_cast<size_t>(ui)];
    const size_t c0 = partitioned ? chunk_offset(ui, r_) : u.offset, c1 = c0 + u.chunk;
    for (int t = u.first_tensor; t < u.first_tensor + u.num_tensors; ++t) {
      const TensorInfo& ti = tensors_[static_cast<size_t>(t)];
      const size_t a = std::max(c0, ti.offset), b = std::min(c1, ti.offset + ti.numel);
      if (a >= b) continue;
      owned_.push_back({t, a - ti.offset, b - a, a, partitioned ? u.part_off + (a - c0) : a});
    }
  }
}

std::vector<LogicalRun> Layout::logical_runs(int t, size_t begin, size_t n, int tp_rank) const {
  const model::ParamSpec& s = model_->spec(tensor(t).model_tensor);
  std::vector<LogicalRun> out;
  model::for_each_logical_run(s, tp_rank < 0 ? s.tp_rank : tp_rank, begin, n,
                              [&](size_t lb, size_t off, size_t len) { out.push_back({lb, off, len}); });
  return out;
}

size_t Layout::local_numel(int t, int tp_rank) const {
  size_t n = 1;
  for (auto d : model::tp_local_shape(model_->spec(tensor(t).model_tensor), tp_rank)) n *= static_cast<size_t>(d);
  return n;
}

int Layout::unit_of(int model_unit) const {
  return model_unit >= 0 && model_unit < static_cast<int>(unit_of_.size()) ? unit_of_[static_cast<size_t>(model_unit)] : -1;
}

std::vector<Run> Layout::balanced() const {
  std::vector<Run> out;
  const size_t W = static_cast<size_t>(W_), r = static_cast<size_t>(r_);
  for (int t = 0; t < num_tensors(); ++t) {
    const size_t n = tensors_[static_cast<size_t>(t)].numel;
    const size_t a = n * r / W, b = n * (r + 1) / W;
    if (b > a) out.push_back({t, a, b - a, tensors_[static_cast<size_t>(t)].offset + a, tensors_[static_cast<size_t>(t)].offset + a});
  }
  return out;
}

}  // namespace dmpi::engine
