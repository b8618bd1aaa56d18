// Uses deepmpi as a library: validates a ds_config, builds the tiny GPT as a unit list and runs
// one forward/backward on one rank. Prints what the install test checks.
#include <cstdio>
#include <vector>

#include "deepmpi/version.hpp"
#include "kernels/gemm.hpp"
#include "src/config/ds_config.hpp"
#include "src/model/model.hpp"

int main() {
  auto c = dmpi::config::parse_ds_config(nlohmann::json{{"train_batch_size", 32}, {"gradient_accumulation_steps", 2}}, 4);
  auto backend = dmpi::kernels::make_gemm_backend(dmpi::kernels::default_gemm_backend_name());
  const dmpi::kernels::Context ctx = dmpi::kernels::host_context(*backend);
  dmpi::model::LocalModel<float> m(dmpi::model::preset("tiny"), 1, 8);
  m.init_weights(1);
  std::vector<int32_t> tok(8, 3), tgt(8, 5);
  const double loss = m.forward(ctx, tok.data(), tgt.data());
  m.backward(ctx, 1.0);
  std::printf("deepmpi %s: micro batch %lld, tiny has %zu parameters, loss %.3f\n", DEEPMPI_VERSION,
              static_cast<long long>(c.micro_batch), m.model().real_params(), loss);
  return loss > 0 ? 0 : 1;
}
