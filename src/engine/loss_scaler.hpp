// DeepSpeed's dynamic loss scaler (deepspeed-semantics.md §1.3, implementation A: the one ZeRO
// 1-3 use), for every stage: deepmpi has one loss scaler. DeepSpeed's ZeRO-0 fp16 path
// (FP16_Optimizer) differs (it ignores hysteresis and never raises); deepmpi does not copy that.
//
// update(overflow), once per optimizer step at the gradient-accumulation boundary, after the
// overflow flag was MAX-reduced over the groups:
//   overflow:    if hysteresis == 1 or the current hysteresis is 1: at min_loss_scale raise
//                (or, with raise_error_at_min_scale false, stay there), else halve (not below
//                min_loss_scale); otherwise decrement the current hysteresis. The step is skipped.
//   no overflow: with consecutive_hysteresis the current hysteresis is refilled; then with
//                stable = iter - last_overflow_iter - 1, if stable > 0 and stable % window == 0 the
//                scale doubles (and the hysteresis is refilled when not consecutive). This is the
//                rule of DeepSpeed >= 0.17.1; 0.16 tested (iter - last_overflow_iter) % window
//                and grew one step earlier.
// Static scaling (fp16.loss_scale > 0): the scale never changes; an overflowing step is skipped.
#pragma once
#include <cstdint>
#include <string>

#include "src/config/blocks.hpp"

namespace dmpi::engine {

class LossScaler {
 public:
  struct State {  // everything a checkpoint must keep
    double cur_scale = 1.0;
    int64_t cur_iter = 0, last_overflow_iter = -1, cur_hysteresis = 1;
  };
  explicit LossScaler(const config::Fp16Config& c);
  double scale() const { return s_.cur_scale; }
  bool dynamic() const { return dynamic_; }
  // Returns true when the step must be skipped (overflow). `message` gets DeepSpeed's log line.
  bool update(bool overflow, std::string* message = nullptr);
  const State& state() const { return s_; }
  void set_state(const State& s) { s_ = s; }

 private:
  config::Fp16Config c_;
  bool dynamic_;
  State s_;
};

}  // namespace dmpi::engine
