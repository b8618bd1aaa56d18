// One training step as data: a pure function of the model's unit list, the parameter policy and
// the recompute plan returns the instruction list the trainer executes (src/engine/executor.hpp).
//
//   BeginStep                 zero the step's gradient buffers
//   Load(micro, slot)         the micro-batch's tokens into an activation slot
//   Gather(unit)              make a param unit's parameters usable: all-gather (ZeRO-3) and/or
//                             widen the 16-bit parameters to an fp32 working copy
//   Prefetch(unit)            start that early (non-blocking; the executor may decline: bucket and
//                             live-parameter limits)
//   Release(unit, keep)       drop them again; keep: ZeRO-3 keeps the gather at the forward/backward
//                             turn (its reuse distance is within stage3_max_reuse_distance)
//   AcquireGrads(unit)        the unit's gradient buffer for this micro-batch's backward
//   Forward(unit, slot)       a model unit's forward (Recompute: the same, before a chunk's backward)
//   Backward(unit, slot)
//   ReduceGrads(unit)         the unit's gradients are complete for this micro-batch: accumulate them
//                             (stages 0-1) or start their reduce-scatter (stages 2-3)
//   EndMicro(micro)           the micro-batch's reductions must be done
//   Step                      the boundary: reduce, norm, clip, optimizer, gather the parameters
//
// Units in Forward/Recompute/Backward are model units; in Gather/Prefetch/Release/AcquireGrads/
// ReduceGrads they are param units (engine::Layout's numbering). Prefetch targets and the keep
// decisions (reuse distances) are computed from the list itself, not from any model's numbering.
// Activations are kept per micro-batch slot: a pipeline schedule (1F1B, interleaved) is another
// generator emitting the same instructions plus send/recv.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "src/model/model.hpp"

namespace dmpi::engine {

enum class OpKind : uint8_t {
  BeginStep,
  Load,
  Gather,
  Prefetch,
  Release,
  AcquireGrads,
  Forward,
  Recompute,
  Backward,
  ReduceGrads,
  EndMicro,
  Step,
  // pipeline parallelism (pipeline.hpp)
  BackwardInput,   // zero-bubble: the input-gradient half of a unit's backward
  BackwardWeight,  // and its weight-gradient half
  RecvAct,         // post the receive of a chunk's input activation (unit: chunk, slot)
  SendAct,         // send a chunk's output activation (unit: chunk, slot)
  RecvGrad,        // post the receive of a chunk's output gradient (unit: chunk, slot: buffer)
  SendGrad         // send the gradient of a chunk's input (unit: chunk, slot: buffer)
};
const char* op_name(OpKind k);

struct Instr {
  OpKind op = OpKind::Step;
  int unit = -1;   // model unit (compute) or param unit (parameter/gradient ops)
  int micro = -1;  // micro-batch of the step
  int slot = 0;    // activation slot
  bool keep = false;
  bool operator==(const Instr& o) const {
    return op == o.op && unit == o.unit && micro == o.micro && slot == o.slot && keep == o.keep;
  }
};
std::string to_string(const Instr& i);  // "Gather(u3)", "Forward(m2, mb1)", ...

struct ScheduleSpec {
  int micro_batches = 1;
  // per model unit: the param units it reads (and, in its backward, writes the gradients of)
  std::vector<std::vector<int>> uses;
  std::vector<model::UnitPlan> recompute;  // per model unit (empty: nothing recomputed)
  std::vector<int64_t> param_numel;        // per param unit (padded)
  bool materialize = false;  // parameters exist only while their units run (ZeRO-3, or 16-bit at rest)
  bool gathered = false;     // ZeRO-3: Gather is an all-gather; prefetch and keep-at-the-turn apply
  bool unit_grads = false;   // gradients per unit (ZeRO 2-3, or 16-bit accumulation): AcquireGrads/ReduceGrads
  int64_t max_reuse_distance = 0;   // ZeRO-3: keep a unit at the turn when at most this many elements are gathered in between
  std::vector<bool> persistent;     // per param unit: ZeRO-3 keeps it gathered for good (no all-gather)
  bool widen = false;               // 16-bit at rest: persistent units still get Gather/Release (their fp32 working copy)
};

struct Schedule {
  std::vector<Instr> instrs;
  int slots = 1;  // activation slots live at once
  // ZeRO-3: per param unit, the elements gathered between its forward release and its backward use
  // (-1: not released at the turn) and whether it is kept
  std::vector<int64_t> reuse_distance;
  std::vector<bool> kept;
};

// Gradient accumulation: every micro-batch's forward then its backward, then the step.
Schedule train_schedule(const ScheduleSpec& s);

// One micro-batch's compute over model units [begin, end) (end -1: all): every forward, then the
// backward in reverse order, a recompute chunk's forwards (in order) before the backward of its
// last unit. forward_count: how many of the entries are the forwards.
struct Compute {
  OpKind op;
  int unit;  // model unit
};
std::vector<Compute> compute_sequence(const ScheduleSpec& s, int& forward_count, int begin = 0, int end = -1);

// The spec of a model (its units' uses and the recompute plan); the parameter policy fields are
// the caller's.
ScheduleSpec schedule_spec(const model::Model<float>& m, const std::vector<int>& param_unit_of_model_unit,
                           const std::vector<model::UnitPlan>& recompute, int micro_batches);

}  // namespace dmpi::engine
