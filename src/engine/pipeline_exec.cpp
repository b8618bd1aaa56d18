// The trainer's side of pipeline parallelism: the point-to-point set-up (message sizes agreed
// once with the neighbouring stages), the execution of a stage's instruction list
// (src/engine/pipeline.hpp) and the partition report.
//
// Messages are fp32 rows of the residual stream, non-blocking on the pp communicator: a receive
// is posted when its instruction comes (the list puts it one command ahead where its buffer is
// free) and waited for when the data is needed; an activation is sent from the slot's kept
// output and a gradient from one of two buffers per chunk, each waited for before its buffer is
// written again. With tensor parallelism (and without sequence parallelism, whose stream is
// split already) each tp rank sends its 1/tp of the message and the receiver all-gathers it over
// the tp group (DeepSpeed's pipe_partitioned / grad_partitioned).
#include <cstdio>
#include <cstring>
#include <sstream>

#include "base/error.hpp"
#include "base/system.hpp"
#include "src/engine/trainer.hpp"

namespace dmpi::engine {

void Trainer::setup_pipeline_io() {
  pio_ = std::make_unique<PipeIo>();
  PipeIo& io = *pio_;
  comm::Communicator& pp = groups_->get(comm::Group::PP);
  comm::Communicator& tp = groups_->get(comm::Group::TP);
  const int S = pp.size(), s = pp.rank(), v = opt_.virtual_stages, K = S * v;
  io.n = runner_->stream_numel();
  const bool replicated = tp.size() > 1 && !opt_.model.sp();  // every tp rank holds the whole stream
  for (int r = 0; r < tp.size(); ++r) io.counts.push_back(static_cast<size_t>(model::split_len(static_cast<int64_t>(io.n), tp.size(), r)));
  const size_t begin = static_cast<size_t>(model::split_begin(static_cast<int64_t>(io.n), tp.size(), tp.rank()));
  io.act_sliced = replicated && opt_.pipe_partitioned;
  io.grad_sliced = replicated && opt_.grad_partitioned;
  io.act_begin = io.act_sliced ? begin : 0, io.act_n = io.act_sliced ? io.counts[static_cast<size_t>(tp.rank())] : io.n;
  io.grad_begin = io.grad_sliced ? begin : 0, io.grad_n = io.grad_sliced ? io.counts[static_cast<size_t>(tp.rank())] : io.n;
  io.grad_recv.assign(static_cast<size_t>(v), std::vector<std::vector<float>>(2, std::vector<float>(io.grad_n)));
  io.grad_send = io.grad_recv;
  io.grad_pending.resize(static_cast<size_t>(v));
  io.grad_send_work.resize(static_cast<size_t>(v));
  for (auto& w : io.grad_send_work) w.resize(2);
  io.tmp.resize(std::max(io.act_n, io.grad_n));
  // Shapes agreed once, not per message: each boundary's sender tells its receiver what every
  // activation and gradient message will hold; a mismatch (a different model or batch on a
  // neighbour) stops the job here, naming both.
  struct Shape {
    int64_t elements, act, grad, dtype;
  };
  const Shape mine{static_cast<int64_t>(io.n), static_cast<int64_t>(io.act_n), static_cast<int64_t>(io.grad_n),
                   static_cast<int64_t>(DType::F32)};
  std::vector<Shape> got(static_cast<size_t>(v));
  std::vector<comm::WorkPtr> works;
  for (int k = 0; k < v; ++k) {
    const int g = k * S + s;
    if (g > 0) works.push_back(pp.irecv(&got[static_cast<size_t>(k)], 4, DType::I64, (g - 1) % S, 100000 + g));
  }
  for (int k = 0; k < v; ++k) {
    const int g = k * S + s;
    if (g < K - 1) works.push_back(pp.isend(&mine, 4, DType::I64, (g + 1) % S, 100000 + g + 1));
  }
  for (auto& w : works) w->wait();
  for (int k = 0; k < v; ++k) {
    const int g = k * S + s;
    const Shape& o = got[static_cast<size_t>(k)];
    DMPI_REQUIRE(g == 0 || (o.elements == mine.elements && o.act == mine.act && o.grad == mine.grad && o.dtype == mine.dtype),
                 "pipeline stage " << (g - 1) % S << " sends " << o.elements << " elements per message (" << o.act
                                   << " per tp rank), stage " << s << " expects " << mine.elements << " ("
                                   << mine.act << "): the stages run different models or batch shapes");
  }
}

double Trainer::run_pipeline_list(const model::Ops<float>& ops, double backward_scale, double& t_fwd, double& t_rec) {
  const auto& ds = opt_.ds;
  PipeIo& io = *pio_;
  comm::Communicator& pp = groups_->get(comm::Group::PP);
  comm::Communicator& tp = groups_->get(comm::Group::TP);
  comm::Communicator& dp = groups_->get(comm::Group::DP);
  const int S = pp.size(), s = pp.rank(), K = S * opt_.virtual_stages;
  auto global = [&](int k) { return k * S + s; };
  double loss_sum = 0.0;
  // an all-gather of this tp rank's part of a message (at `at` + its begin) into `full`
  auto gather = [&](const float* part, float* full) {
    std::memcpy(io.tmp.data(), part, io.counts[static_cast<size_t>(tp.rank())] * sizeof(float));
    tp.all_gatherv(io.tmp.data(), full, io.counts, DType::F32);
  };
  for (const Instr& in : schedule_.instrs) {
    switch (in.op) {
      case OpKind::BeginStep: store_->begin_step(); break;
      case OpKind::Load: {
        const uint64_t first = samples_ + static_cast<uint64_t>(in.micro * dp.size() + dp.rank()) * static_cast<uint64_t>(ds.micro_batch);
        loader_->load(first, tokens_.data(), targets_.data());
        runner_->load(in.slot, tokens_.data(), targets_.data());
        break;
      }
      case OpKind::Gather: store_->gather(in.unit); break;
      case OpKind::Prefetch: store_->prefetch(in.unit); break;
      case OpKind::Release: store_->release(in.unit, in.keep); break;
      case OpKind::AcquireGrads: store_->acquire_grads(in.unit); break;
      case OpKind::ReduceGrads: store_->reduce_grads(in.unit); break;
      case OpKind::RecvAct: {
        const int g = global(in.unit);
        float* buf = runner_->input(in.unit, in.slot) + io.act_begin;
        io.act_recv[{in.unit, in.slot}] = pp.irecv(buf, io.act_n, DType::F32, (g - 1) % S, pipe_tag(false, g - 1));
        break;
      }
      case OpKind::SendAct: {
        const int g = global(in.unit);
        const float* out = runner_->output(runner_->chunk_last(in.unit), in.slot) + io.act_begin;
        io.act_send[{in.unit, in.slot}] = pp.isend(out, io.act_n, DType::F32, (g + 1) % S, pipe_tag(false, g));
        break;
      }
      case OpKind::RecvGrad: {
        const int g = global(in.unit);
        auto& buf = io.grad_recv[static_cast<size_t>(in.unit)][static_cast<size_t>(in.slot)];
        io.grad_pending[static_cast<size_t>(in.unit)].emplace_back(
            in.slot, pp.irecv(buf.data(), io.grad_n, DType::F32, (g + 1) % S, pipe_tag(true, g)));
        break;
      }
      case OpKind::SendGrad: {
        const int g = global(in.unit);
        auto& work = io.grad_send_work[static_cast<size_t>(in.unit)][static_cast<size_t>(in.slot)];
        if (work) work->wait(), work.reset();  // the buffer's previous message is out
        auto& buf = io.grad_send[static_cast<size_t>(in.unit)][static_cast<size_t>(in.slot)];
        std::memcpy(buf.data(), runner_->stream_grad() + io.grad_begin, io.grad_n * sizeof(float));
        work = pp.isend(buf.data(), io.grad_n, DType::F32, (g - 1) % S, pipe_tag(true, g - 1));
        break;
      }
      case OpKind::Forward:
      case OpKind::Recompute: {
        const double r0 = now_seconds();
        const int k = chunk_of_unit_[static_cast<size_t>(in.unit)], g = global(k);
        if (in.op == OpKind::Forward && in.unit == runner_->chunk_first(k) && g > 0) {
          auto it = io.act_recv.find({k, in.slot});
          DMPI_REQUIRE(it != io.act_recv.end(), "pipeline stage " << s << ": the input of micro-batch " << in.micro
                                                                  << " was never received (a schedule bug)");
          it->second->wait();
          io.act_recv.erase(it);
          if (io.act_sliced) gather(runner_->input(k, in.slot) + io.act_begin, runner_->input(k, in.slot));
        }
        if (in.op == OpKind::Forward && in.unit == runner_->chunk_last(k) && g < K - 1)
          if (auto it = io.act_send.find({k, in.slot}); it != io.act_send.end()) it->second->wait(), io.act_send.erase(it);
        store_->unit_views(in.unit, views_, grad_ptrs_);
        const double loss = runner_->forward(ops, in.unit, in.slot, views_.data());
        if (std::string(model_->unit(in.unit).kind()) == "lm_head" && in.op == OpKind::Forward) loss_sum += loss;
        (in.op == OpKind::Forward ? t_fwd : t_rec) += now_seconds() - r0;
        break;
      }
      case OpKind::Backward:
      case OpKind::BackwardInput: {
        const int k = chunk_of_unit_[static_cast<size_t>(in.unit)], g = global(k);
        if (in.unit == runner_->chunk_last(k) && g < K - 1) {
          auto& q = io.grad_pending[static_cast<size_t>(k)];
          DMPI_REQUIRE(!q.empty(), "pipeline stage " << s << ": the output gradient of micro-batch " << in.micro
                                                     << " was never received (a schedule bug)");
          q.front().second->wait();
          const float* buf = io.grad_recv[static_cast<size_t>(k)][static_cast<size_t>(q.front().first)].data();
          if (io.grad_sliced) gather(buf, runner_->stream_grad());
          else std::memcpy(runner_->stream_grad(), buf, io.n * sizeof(float));
          q.pop_front();
        }
        store_->unit_views(in.unit, views_, grad_ptrs_);
        runner_->backward(ops, in.unit, in.slot, views_.data(), grad_ptrs_.data(), backward_scale,
                          in.op == OpKind::BackwardInput);
        break;
      }
      case OpKind::BackwardWeight:
        store_->unit_views(in.unit, views_, grad_ptrs_);
        runner_->backward_weight(ops, in.unit, in.slot, views_.data(), grad_ptrs_.data());
        break;
      case OpKind::EndMicro:
        if (in.unit == 0) ++micro_steps_;  // once per micro-batch (each chunk ends it)
        break;
      case OpKind::Step:
        for (auto& [key, w] : io.act_send) w->wait();
        io.act_send.clear();
        for (auto& ws : io.grad_send_work)
          for (auto& w : ws)
            if (w) w->wait(), w.reset();
        store_->end_micro();
        break;
    }
  }
  return loss_sum;
}

std::string Trainer::partition_report() const {
  std::ostringstream os;
  const int S = partition_.stages, v = partition_.virtual_stages, M = static_cast<int>(opt_.ds.grad_accum);
  const model::ModelConfig tp0 = [&] {
    model::ModelConfig c = opt_.model;
    c.tp_rank = 0;
    return c;
  }();
  os << "  pipeline: " << S << " stages" << (v > 1 ? " x " + std::to_string(v) + " virtual" : std::string()) << ", schedule "
     << pipe_schedule_name(pipe_kind_) << ", partition " << opt_.partition_method << ", " << M
     << " micro-batches per step; bubble (equal layer costs) " << 100.0 * analytic_bubble(pipe_kind_, S, M, v) << "%";
  const auto plan_of = [&](const model::Model<float>& m, const std::vector<int>& cb) {
    return model::plan_recompute(m, opt_.recompute, cb);
  };
  for (int s = 0; s < S; ++s) {
    const model::Model<float> m(tp0, partition_.units_of(s));
    int blocks = 0;
    std::string units;
    for (int k = 0; k < v; ++k) {
      const auto [a, b] = partition_.chunks[static_cast<size_t>(partition_.global_chunk(s, k))];
      units += (k ? ", " : "") + std::to_string(a) + "-" + std::to_string(b - 1);
      for (int u = a; u < b; ++u) blocks += std::string(whole().unit(u).kind()) == "block";
    }
    model::RunnerShape shape;
    shape.chunk_begin = partition_.chunk_begin(s);
    shape.split_backward = pipe_kind_ == PipeSchedule::ZeroBubble;
    const int slots = pipeline_slots(pipe_kind_, S, s, M, v);
    const size_t act = model::Runner<float>::planned_bytes(m, static_cast<int>(opt_.ds.micro_batch), opt_.model.seq_len,
                                                           plan_of(m, shape.chunk_begin), slots, shape);
    os << "\n    stage " << s << ": units " << units << " (" << blocks << " layers" << (s == 0 ? " + embedding" : "")
       << (s == S - 1 ? " + final norm and head" : "") << ") | " << m.real_params() << " parameters (this tp rank) | activations "
       << human_bytes(static_cast<double>(act)) << " (" << slots << " slots, "
       << pipeline_in_flight(pipe_kind_, S, s, M, v) << " micro-batches in flight)";
  }
  return os.str();
}

}  // namespace dmpi::engine
