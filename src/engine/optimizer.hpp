// The optimizer interface: the names of its per-element states (PyTorch's, so checkpoints read the
// same in both), whether a step needs whole tensors (Lamb's trust ratio), and one step over a
// slice of fp32 parameters with their gradients and states. The parameter store calls it over
// the elements this rank owns (src/engine/param_store.hpp, for_each_owned); the checkpoint reads
// the states by name through the store's state dict. One factory reads the ds_config's optimizer
// block; nothing else compares the type string.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/config/ds_config.hpp"

namespace dmpi::engine {

// What one step of the optimizer is given besides the slice.
struct StepHyper {
  double lr = 0;
  double beta1 = 0.9, beta2 = 0.999;  // the config's, or OneCycle's cycled momentum
  float grad_scale = 1.0f;            // unscaling (fp16) and clipping folded into one multiply
  double weight_decay = 0;            // for the tensors that decay (Megatron can schedule it)
  int64_t step = 0;                   // 1-based count of applied optimizer steps
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual const char* name() const = 0;
  // per-element fp32 state arrays, by name (exp_avg, exp_avg_sq, momentum_buffer, sum)
  virtual std::vector<std::string> state_names() const = 0;
  int state_slots() const { return static_cast<int>(state_names().size()); }
  virtual bool needs_whole_tensors() const { return false; }
  virtual bool has_betas() const { return false; }  // OneCycle cycles them
  // initial value of every element of state k (Adagrad's initial_accumulator_value)
  virtual float initial_state(int k) const { return 0.0f; }
  // p[n] updated from g[n] (scratch afterwards: set to 0) and states[k][n]; decay: weight decay applies
  virtual void step(float* p, float* g, float* const* states, size_t n, bool decay, const StepHyper& h) const = 0;
};

std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& oc);

}  // namespace dmpi::engine
