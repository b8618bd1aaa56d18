// The one answer to every offset question about a parameter group's flat buffers.
//
// The group's parameters are laid out unit by unit ("param units": the model units that own
// parameters, in model order), each tensor contiguous in its unit, every unit starting at and
// padded to a multiple of the alignment (16 x dp size when the group is partitioned, so a unit
// splits into dp equal chunks of 64-byte multiples; 1 otherwise). Padding is zero and never
// updated. Rank r of the group owns chunk r of every unit (partitioned) or everything; its
// partition is its chunks back to back. From that follow: the flat range of a unit, a rank's chunk
// of it and its offset in the partition, the runs of tensor elements a rank owns (what the
// optimizer updates, what a checkpoint writes at ZeRO stages 1-3 and reads), a balanced share of
// every tensor (what a rank writes at stage 0, where every rank holds everything), and the
// logical runs a local run covers (tensor parallelism: the tensors in the flat buffers are this
// tp rank's splits; checkpoints hold the logical tensors). Nothing else in the engine does this arithmetic.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "src/model/model.hpp"

namespace dmpi::engine {

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // this tensor-parallel rank's (the flat buffers hold these)
  size_t numel = 0;
  std::vector<int64_t> logical;  // the logical shape (checkpoints)
  bool tp_split = false;         // split over the tp group (else replicated on every tp rank)
  bool tied = false, tied_copy = false;  // pipeline: the tied embedding/head table (model::ParamSpec)
  size_t offset = 0;  // flat (padded layout)
  int unit = 0;       // param unit
  int model_tensor = 0;  // index in model order
  bool decay = false;
  model::DTypePolicy dtype = model::DTypePolicy::Widened;
};

struct UnitInfo {
  int model_unit = 0;   // the model unit that owns these parameters
  size_t offset = 0;    // flat
  size_t numel = 0;     // padded to the alignment
  size_t real = 0;      // parameters it holds
  size_t chunk = 0;     // numel / dp (partitioned), else numel
  size_t part_off = 0;  // offset of this rank's chunk in its partition
  int first_tensor = 0, num_tensors = 0;
};

// A run of elements of one tensor: flattened elements [begin, begin + n), at flat offset `flat`
// and at offset `part` in this rank's partition (= flat when not partitioned).
struct Run {
  int tensor = 0;
  size_t begin = 0, n = 0;
  size_t flat = 0, part = 0;
};

// A contiguous run of a tensor's logical elements (row-major) that local elements cover: logical
// elements [begin, begin + n) are the local run's elements [local, local + n). A tensor-parallel
// row split is one run per fused segment; a column slab of a [rows, cols] weight one run per row.
struct LogicalRun {
  size_t begin = 0, local = 0, n = 0;
};

class Layout {
 public:
  // partitioned: split every unit into dp_size chunks (ZeRO stages 1-3)
  Layout(const model::Model<float>& m, int dp_size, int dp_rank, bool partitioned);
  static size_t alignment(bool partitioned, int dp_size) { return partitioned ? 16 * static_cast<size_t>(dp_size) : 1; }

  int dp_size() const { return W_; }
  int dp_rank() const { return r_; }
  bool partitioned() const { return partitioned_; }
  size_t numel() const { return numel_; }            // the flat buffer, padding included
  size_t real() const { return real_; }              // parameters, padding excluded
  size_t partition_numel() const { return part_; }   // this rank's chunks (partitioned), else numel()
  int num_units() const { return static_cast<int>(units_.size()); }
  const UnitInfo& unit(int u) const { return units_[static_cast<size_t>(u)]; }
  int unit_of(int model_unit) const;                 // -1: the model unit owns no parameters
  int num_tensors() const { return static_cast<int>(tensors_.size()); }
  const TensorInfo& tensor(int t) const { return tensors_[static_cast<size_t>(t)]; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // tensor t's offset inside its unit
  size_t offset_in_unit(int t) const { return tensor(t).offset - unit(tensor(t).unit).offset; }
  // flat offset of rank r's chunk of unit u
  size_t chunk_offset(int u, int r) const { return unit(u).offset + static_cast<size_t>(r) * unit(u).chunk; }

  // This rank's elements, tensor by tensor in flat order: its chunks (partitioned) or everything.
  const std::vector<Run>& owned() const { return owned_; }
  // A balanced share of every tensor for this rank (1/dp of each; everything when dp is 1), with
  // `part` = flat: what each rank writes of a checkpoint when every rank holds everything.
  std::vector<Run> balanced() const;
  // The logical runs that local elements [begin, begin + n) of tensor t cover, in local order, on
  // tensor-parallel rank `tp_rank` (-1: this rank's). Unsplit tensors: the identity.
  std::vector<LogicalRun> logical_runs(int t, size_t begin, size_t n, int tp_rank = -1) const;
  // The element count tensor-parallel rank `tp_rank` holds of tensor t.
  size_t local_numel(int t, int tp_rank) const;

 private:
  const model::Model<float>* model_;
  int W_, r_;
  bool partitioned_;
  size_t numel_ = 0, real_ = 0, part_ = 0;
  std::vector<UnitInfo> units_;
  std::vector<int> unit_of_;
  std::vector<TensorInfo> tensors_;
  std::vector<Run> owned_;
};

}  // namespace dmpi::engine
