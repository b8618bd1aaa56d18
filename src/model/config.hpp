// GPT-2 model shape, named presets, and the parameter table {name, shape} that lays every
// parameter out in one flat buffer, layer by layer (each layer's parameters are contiguous,
// so a layer is one "flat group" for ZeRO-3).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dmpi::model {

struct GPTConfig {
  std::string name = "custom";
  int num_layers = 2;
  int hidden = 128;
  int heads = 4;
  int vocab = 512;
  int seq_len = 64;
  int max_pos = 64;  // --max-position-embeddings; >= seq_len
  void validate() const;  // throws naming the flag to change
  std::string describe() const;
};

GPTConfig preset(const std::string& name);         // tiny | small | gpt2-124m
std::vector<std::string> preset_names();

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;  // elements into the flat buffer
  size_t numel = 0;
  bool weight_decay = false;  // 2-D weights and embeddings decay; biases and LayerNorm do not
  int layer = -1;             // transformer block, -1 for embeddings and the final LayerNorm
  int unit = 0;               // fetch/reduce unit: 0 embeddings, 1..L blocks, L+1 final LayerNorm
  bool read_16bit = false;    // every kernel reading it takes a registered bf16 copy when there is
                              // one (kernels::lowp_copy): the 2-D tensors, read by GEMMs and the
                              // embedding lookup only
};

// A unit is what ZeRO gathers, reduces and frees at once: the embeddings (wte, wpe), one
// transformer block, or the final LayerNorm. Units are contiguous in the flat buffer; with
// unit_align > 1 each starts at a multiple of unit_align and is padded to one (padding is zero).
struct UnitSpec {
  size_t offset = 0;  // elements into the flat buffer
  size_t numel = 0;   // padded to unit_align
  size_t real = 0;    // parameters it holds
};

std::vector<TensorSpec> gpt_param_table(const GPTConfig& c, size_t unit_align = 1);
std::vector<UnitSpec> gpt_units(const std::vector<TensorSpec>& table, size_t unit_align = 1);
size_t table_numel(const std::vector<TensorSpec>& t);  // end of the last tensor (unpadded)

// Parameter counts used by the FLOPs formula (src/engine/flops.hpp).
size_t num_params(const GPTConfig& c);              // everything in the table
size_t num_matmul_params(const GPTConfig& c);       // excludes position embeddings

}  // namespace dmpi::model
