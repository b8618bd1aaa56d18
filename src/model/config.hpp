// The model's shape and composition: GPT-2 (LayerNorm, learned positions, GELU MLP, biases,
// tied head) and LLaMA-family models (RMSNorm, rotary embeddings, SwiGLU, grouped-query
// attention, untied head, no biases) are two settings of the same struct, chosen with Megatron's
// flags (--normalization, --position-embedding-type, --swiglu, --group-query-attention, ...), and
// named presets. src/model/model.hpp turns it into the ordered list of units.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dmpi::model {

enum class Norm { LayerNorm, RMSNorm };
enum class Positions { Learned, Rope, None };
const char* norm_name(Norm n);            // "LayerNorm" | "RMSNorm" (Megatron's --normalization values)
const char* positions_name(Positions p);  // "learned_absolute" | "rope" | "none"

struct ModelConfig {
  std::string name = "custom";
  int num_layers = 2;
  int hidden = 128;
  int heads = 4;
  int vocab = 512;
  int seq_len = 64;
  int max_pos = 64;  // --max-position-embeddings; >= seq_len (the learned table's rows; RoPE: the longest sequence)
  Norm norm = Norm::LayerNorm;          // --normalization
  double norm_eps = 1e-5;               // --norm-epsilon
  Positions positions = Positions::Learned;  // --position-embedding-type
  double rotary_base = 10000.0;         // --rotary-base
  bool swiglu = false;                  // --swiglu (else GELU)
  int ffn_hidden = 0;                   // --ffn-hidden-size (0: 4 * hidden, or Megatron's SwiGLU default)
  int query_groups = 0;                 // --num-query-groups with --group-query-attention (0: heads, MHA)
  bool tie_embeddings = true;           // false: --untie-embeddings-and-output-weights
  bool bias = true;                     // false: --disable-bias-linear
  // Tensor parallelism (--tensor-model-parallel-size): the group's size and this rank's place.
  // Not part of the architecture (a checkpoint holds the logical tensors of any tp).
  int tp_size = 1, tp_rank = 0;
  // --sequence-parallel (with tp > 1): outside the tensor-parallel layers the B·T rows of the
  // residual stream are split over the tp ranks (rank r holds rows [B T r / tp, B T (r+1) / tp))
  bool sequence_parallel = false;
  bool sp() const { return sequence_parallel && tp_size > 1; }

  int kv_heads() const { return query_groups > 0 ? query_groups : heads; }
  int head_size() const { return hidden / heads; }
  // The MLP width: --ffn-hidden-size, else 4 * hidden (GELU) or Megatron's SwiGLU default
  // int(4 * hidden * 2 / 3 / 64) * 64.
  int ffn() const;
  // qkv rows: (heads + 2 * kv_heads) * head_size
  int qkv_width() const { return (heads + 2 * kv_heads()) * head_size(); }
  bool llama_like() const { return norm == Norm::RMSNorm || positions == Positions::Rope || swiglu; }
  void validate() const;  // throws naming the flag to change
  std::string describe() const;
  nlohmann::json to_json() const;  // the checkpoint's `model` attribute
  // from a checkpoint's `model` attribute (missing keys: GPT-2's values, as older checkpoints wrote)
  static ModelConfig from_json(const nlohmann::json& j);
};

ModelConfig preset(const std::string& name);
std::vector<std::string> preset_names();
std::string preset_help();  // one line per preset

// Parameter counts (the FLOPs formula and the banner).
size_t num_params(const ModelConfig& c);         // every parameter
size_t num_matmul_params(const ModelConfig& c);  // those in a matmul: not the learned positions; the tied table once

}  // namespace dmpi::model
