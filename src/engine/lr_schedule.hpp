// Learning-rate schedules with DeepSpeed's formulas (deepspeed-semantics.md §1.7) and its
// stepping convention: last_batch_iteration starts at -1; the optimizer's first step uses the
// initial lr (warmup_min_lr), and each *applied* optimizer step then calls step(), which
// evaluates the formula at it = last_batch_iteration + 1.
// Type "Megatron" is Megatron-LM's OptimizerParamScheduler (megatron/core/
// optimizer_param_scheduler.py): constant, linear, cosine, inverse-square-root and WSD decay
// after a linear warmup from lr_warmup_init, floored at min_lr, plus the weight-decay
// increment (constant, linear, cosine). Megatron counts in samples and steps by the global
// batch after each applied iteration, so iteration k (1-based) runs with the value at
// num_steps = (k - 1) x samples_per_iteration: here lr_at(it) with it = k - 2.
#pragma once
#include <cstdint>
#include <string>

#include "src/config/ds_config.hpp"

namespace dmpi::engine {

class LRScheduler {
 public:
  LRScheduler(const config::SchedulerConfig& s, double optimizer_lr);
  double current_lr() const { return lr_; }   // lr the next optimizer step uses
  // OneCycle with cycle_momentum: (beta1, beta2) the next step uses; false otherwise.
  bool momentum(double& beta1, double& beta2) const;
  double momentum_at(int64_t it) const;       // OneCycle's beta1 formula
  void step();                                // after an applied optimizer step
  int64_t last_batch_iteration() const { return it_; }
  void set_last_batch_iteration(int64_t it);  // restore state by value
  double lr_at(int64_t it) const;             // the formula
  // The weight decay the next optimizer step uses: Megatron's increment schedule when one is
  // set (weight_decay_incr_style linear or cosine), else `configured` (the optimizer's).
  double weight_decay(double configured) const;
  double weight_decay_at(int64_t it, double configured) const;
  std::string describe() const;

 private:
  config::SchedulerConfig s_;
  double base_lr_;
  double max_lr_;
  int64_t it_ = -1;
  double lr_;
};

}  // namespace dmpi::engine
