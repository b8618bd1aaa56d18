// Pipeline parallelism as data: the partition of the unit list into stages (and virtual stages),
// the order of a stage's work for one global batch (1F1B, interleaved 1F1B, zero-bubble ZB-H1),
// and its lowering into the trainer's instruction list (schedule.hpp) with point-to-point ops.
// Everything here is a pure function (no MPI): the golden tests check step counts, micro-batch
// order, buffer counts and that every send has its receive.
//
//   partition      the blocks split into S x v chunks (global chunk c = k S + s lives on stage s,
//                  virtual stage k); the embedding goes with chunk 0, the final norm and the head
//                  with the last chunk. DeepSpeed's partition_method: uniform (block counts),
//                  parameters (balanced parameter counts, the embedding's and head's included:
//                  the default), type:<regex> (balanced counts of units whose kind matches);
//                  Megatron's --decoder-first/last-pipeline-num-layers for uneven ends.
//   1F1B           DeepSpeed's TrainSchedule: 2 (M + S - 1) steps, at step t stage s runs a
//                  forward when t and s have the same parity, else a backward, micro-batch ids
//                  by DeepSpeed's formulas; buffers max(2, min(S - s, M)).
//   interleaved    Megatron's virtual stages: warm-up (S - s - 1) 2 + (v - 1) S chunk forwards,
//                  then one forward and one backward, the chunk of the k-th forward
//                  (k mod S v) / S and its micro-batch (k / S v) S + k mod S (M a multiple of S).
//   zero-bubble    ZB-H1: the backward split into B (input gradient, sent upstream at once) and
//                  W (the weight-gradient GEMMs); as 1F1B, with stage s deferring its W by s
//                  micro-batches, so the W's fill the cool-down. Bubble (S-1)(F+B-W) against
//                  1F1B's (S-1)(F+B+W); the same S micro-batches in flight as 1F1B's stage 0.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "src/engine/schedule.hpp"
#include "src/model/config.hpp"

namespace dmpi::engine {

struct PartitionOptions {
  int stages = 1;
  int virtual_stages = 1;              // chunks per stage (interleaved schedule)
  std::string method = "parameters";   // uniform | parameters | type:<regex> (DeepSpeed's partition_method)
  int first_layers = -1, last_layers = -1;  // Megatron's --decoder-first/last-pipeline-num-layers (-1: balanced)
};

struct Partition {
  int stages = 1, virtual_stages = 1;
  std::vector<std::pair<int, int>> chunks;  // per global chunk: the whole model's units [begin, end)
  std::vector<int64_t> weights;             // per global chunk: what the method balanced
  int num_chunks() const { return static_cast<int>(chunks.size()); }
  int stage_of(int chunk) const { return chunk % stages; }
  int global_chunk(int stage, int k) const { return k * stages + stage; }
  std::vector<int> units_of(int stage) const;        // the stage's units, increasing
  std::vector<int> chunk_begin(int stage) const;     // local index of each of its chunks' first unit
};

// The whole model's config (tp 1). Throws naming the flag when the layers do not split.
Partition partition_model(const model::ModelConfig& c, const PartitionOptions& o);

enum class PipeSchedule { OneFOneB, Interleaved, ZeroBubble };
PipeSchedule pipe_schedule_named(const std::string& s);  // 1f1b | interleaved | zero-bubble
const char* pipe_schedule_name(PipeSchedule s);

// One command of a stage: a chunk's forward, backward (B: with ZB-H1 the input gradient only) or
// weight gradients (W) for a micro-batch. chunk: the stage's virtual stage k.
struct PipeCmd {
  enum Kind : uint8_t { F, B, W } kind = F;
  int chunk = 0, micro = 0;
  bool operator==(const PipeCmd& o) const { return kind == o.kind && chunk == o.chunk && micro == o.micro; }
};
std::string to_string(const PipeCmd& c);  // "F0", "B3", "W1", "F1.2" (chunk 1, micro 2)

// DeepSpeed's TrainSchedule table for stage s: per step, the forward and backward micro-batch
// (-1: none); 2 (M + S - 1) steps.
struct PipeStep {
  int forward = -1, backward = -1;
};
std::vector<PipeStep> one_f_one_b_steps(int S, int s, int M);
int one_f_one_b_buffers(int S, int s, int M);  // max(2, min(S - s, M))

// The order of stage s's commands for M micro-batches (v chunks per stage).
std::vector<PipeCmd> pipeline_order(PipeSchedule kind, int S, int s, int M, int v = 1);

// The analytic bubble fraction (idle / total per stage) with equal per-layer costs: 1F1B
// (S-1)/(M+S-1); interleaved (S-1)/(v M + S-1); ZB-H1 with F = B = W: (S-1)/(3M + S-1).
double analytic_bubble(PipeSchedule kind, int S, int M, int v = 1);
// The makespan of every stage's order with fixed costs per chunk command (forward f, input
// backward b, weight backward w; without a split B costs b + w) and instant messages: what the
// orders allow, and the check that they cannot deadlock (throws if they do).
double simulate_pipeline(const std::vector<std::vector<PipeCmd>>& orders, int S, int v, double f, double b, double w,
                         bool split);

// Activation slots stage s allocates (max(2, in flight); 1F1B: DeepSpeed's buffers) and the most
// micro-batches in flight per chunk (forwarded, their backward, or with zero-bubble their weight
// gradients, not done).
int pipeline_slots(PipeSchedule kind, int S, int s, int M, int v = 1);
int pipeline_in_flight(PipeSchedule kind, int S, int s, int M, int v = 1);
// The MPI tag of a message across chunk boundary b (global chunk b to b + 1): activations 2b,
// gradients 2b + 1.
int pipe_tag(bool grad, int boundary);

// What the lowering needs of this stage.
struct PipelineSpec {
  ScheduleSpec base;             // uses per local model unit, the parameter policy, recompute plan; micro_batches = M
  std::vector<int> chunk_begin;  // local model units that start each of the stage's chunks
  std::vector<bool> splits;      // per local model unit: its backward splits (zero-bubble)
  int stages = 1, stage = 0, virtual_stages = 1;
  PipeSchedule kind = PipeSchedule::OneFOneB;
  int embedding_unit = -1, head_unit = -1;  // local model units (-1: on another stage)
};

// The instruction list of one step of stage `stage`: per command, the receives it needs (posted
// one command ahead where its buffer is free), Load, the units' Gather/Forward/Release (or
// AcquireGrads/Recompute/Backward/BackwardInput/BackwardWeight/ReduceGrads), the sends. Gradients
// are acquired at a unit's first backward of the step and reduced after its last (pipelines
// reduce once per step). Schedule::slots: activation slots (max(2, in flight)).
// RecvAct/SendAct: unit = the stage's chunk, slot its activation slot; RecvGrad/SendGrad: unit =
// chunk, slot = the gradient buffer (two per chunk).
Schedule pipeline_schedule(const PipelineSpec& p);

// Every send of every stage's list has its receive on the peer stage, in the same order per
// (peer, tag), with the same micro-batch: returns "" or what is wrong.
std::string check_pipeline_messages(const std::vector<Schedule>& stages, int S, int v);

}  // namespace dmpi::engine
