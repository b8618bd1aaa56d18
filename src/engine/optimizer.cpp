#include "src/engine/optimizer.hpp"

#include "base/error.hpp"
#include "kernels/optim.hpp"

namespace dmpi::engine {

namespace {

// Adam / AdamW (DeepSpeed FusedAdam semantics, kernels/optim.hpp)
class Adam final : public Optimizer {
 public:
  explicit Adam(const config::OptimizerConfig& oc) : oc_(oc) {}
  const char* name() const override { return oc_.adam_w_mode ? "AdamW" : "Adam"; }
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  bool has_betas() const override { return true; }
  void step(float* p, float* g, float* const* s, size_t n, bool decay, const StepHyper& h) const override {
    kernels::AdamParams hp;
    hp.lr = static_cast<float>(h.lr);
    hp.beta1 = static_cast<float>(h.beta1), hp.beta2 = static_cast<float>(h.beta2);
    hp.eps = static_cast<float>(oc_.eps);
    hp.weight_decay = decay ? static_cast<float>(h.weight_decay) : 0.0f;
    hp.bias_correction = oc_.bias_correction;
    hp.adam_w_mode = oc_.adam_w_mode;
    kernels::adam_step(p, g, s[0], s[1], n, hp, h.step, h.grad_scale, true);
  }

 private:
  config::OptimizerConfig oc_;
};

class Lamb final : public Optimizer {
 public:
  explicit Lamb(const config::OptimizerConfig& oc) : oc_(oc) {}
  const char* name() const override { return "Lamb"; }
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  bool needs_whole_tensors() const override { return true; }
  bool has_betas() const override { return true; }
  void step(float* p, float* g, float* const* s, size_t n, bool decay, const StepHyper& h) const override {
    kernels::LambParams hp;
    hp.lr = static_cast<float>(h.lr), hp.beta1 = static_cast<float>(h.beta1), hp.beta2 = static_cast<float>(h.beta2);
    hp.eps = static_cast<float>(oc_.eps), hp.weight_decay = decay ? static_cast<float>(h.weight_decay) : 0.f;
    hp.max_coeff = static_cast<float>(oc_.max_coeff), hp.min_coeff = static_cast<float>(oc_.min_coeff);
    hp.bias_correction = oc_.bias_correction, hp.eps_inside_sqrt = oc_.eps_inside_sqrt;
    kernels::lamb_step(p, g, s[0], s[1], n, hp, h.step, h.grad_scale, true);
  }

 private:
  config::OptimizerConfig oc_;
};

class Sgd final : public Optimizer {
 public:
  explicit Sgd(const config::OptimizerConfig& oc) : oc_(oc) {}
  const char* name() const override { return "SGD"; }
  // the momentum buffer exists only with momentum
  std::vector<std::string> state_names() const override {
    return oc_.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{};
  }
  void step(float* p, float* g, float* const* s, size_t n, bool decay, const StepHyper& h) const override {
    kernels::SgdParams hp;
    hp.lr = static_cast<float>(h.lr), hp.momentum = static_cast<float>(oc_.momentum);
    hp.dampening = static_cast<float>(oc_.dampening);
    hp.weight_decay = decay ? static_cast<float>(h.weight_decay) : 0.0f, hp.nesterov = oc_.nesterov;
    kernels::sgd_step(p, g, oc_.momentum != 0.0 ? s[0] : nullptr, n, hp, h.step, h.grad_scale, true);
  }

 private:
  config::OptimizerConfig oc_;
};

class Adagrad final : public Optimizer {
 public:
  explicit Adagrad(const config::OptimizerConfig& oc) : oc_(oc) {}
  const char* name() const override { return "Adagrad"; }
  std::vector<std::string> state_names() const override { return {"sum"}; }
  float initial_state(int) const override { return static_cast<float>(oc_.initial_accumulator_value); }
  void step(float* p, float* g, float* const* s, size_t n, bool decay, const StepHyper& h) const override {
    kernels::AdagradParams hp;
    hp.lr = static_cast<float>(h.lr), hp.lr_decay = static_cast<float>(oc_.lr_decay);
    hp.weight_decay = decay ? static_cast<float>(h.weight_decay) : 0.0f, hp.eps = static_cast<float>(oc_.eps);
    kernels::adagrad_step(p, g, s[0], n, hp, h.step, h.grad_scale, true);
  }

 private:
  config::OptimizerConfig oc_;
};

class Lion final : public Optimizer {
 public:
  explicit Lion(const config::OptimizerConfig& oc) : oc_(oc) {}
  const char* name() const override { return "Lion"; }
  std::vector<std::string> state_names() const override { return {"exp_avg"}; }
  bool has_betas() const override { return true; }
  void step(float* p, float* g, float* const* s, size_t n, bool decay, const StepHyper& h) const override {
    kernels::LionParams hp;
    hp.lr = static_cast<float>(h.lr), hp.beta1 = static_cast<float>(h.beta1), hp.beta2 = static_cast<float>(h.beta2);
    hp.weight_decay = decay ? static_cast<float>(h.weight_decay) : 0.0f;
    kernels::lion_step(p, g, s[0], n, hp, h.grad_scale, true);
  }

 private:
  config::OptimizerConfig oc_;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& oc) {
  if (oc.type == "Adam" || oc.type == "AdamW") return std::make_unique<Adam>(oc);
  if (oc.type == "Lamb") return std::make_unique<Lamb>(oc);
  if (oc.type == "SGD") return std::make_unique<Sgd>(oc);
  if (oc.type == "Adagrad") return std::make_unique<Adagrad>(oc);
  if (oc.type == "Lion") return std::make_unique<Lion>(oc);
  DMPI_FAIL("optimizer type '" << oc.type << "' is not implemented by the trainer (Adam, AdamW, Lamb, SGD, Adagrad, Lion)");
}

}  // namespace dmpi::engine
