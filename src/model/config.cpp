#include "src/model/config.hpp"

#include <sstream>

#include "base/error.hpp"

namespace dmpi::model {

const char* norm_name(Norm n) { return n == Norm::RMSNorm ? "RMSNorm" : "LayerNorm"; }
const char* positions_name(Positions p) {
  return p == Positions::Rope ? "rope" : p == Positions::None ? "none" : "learned_absolute";
}

int ModelConfig::ffn() const {
  if (ffn_hidden > 0) return ffn_hidden;
  if (swiglu) return static_cast<int>(4.0 * hidden * 2.0 / 3.0 / 64.0) * 64;
  return 4 * hidden;
}

void ModelConfig::validate() const {
  DMPI_REQUIRE(num_layers >= 1, "--num-layers must be >= 1 (got " << num_layers << ")");
  DMPI_REQUIRE(hidden >= 1, "--hidden-size must be >= 1 (got " << hidden << ")");
  DMPI_REQUIRE(heads >= 1 && hidden % heads == 0,
               "--hidden-size (" << hidden << ") must be divisible by --num-attention-heads (" << heads << ")");
  DMPI_REQUIRE(vocab >= 2, "--vocab-size must be >= 2 (got " << vocab << ")");
  DMPI_REQUIRE(seq_len >= 1, "--seq-length must be >= 1 (got " << seq_len << ")");
  DMPI_REQUIRE(max_pos >= seq_len, "--max-position-embeddings (" << max_pos << ") must be >= --seq-length ("
                                                                  << seq_len << ")");
  DMPI_REQUIRE(norm_eps > 0.0 && norm_eps < 1.0, "--norm-epsilon must be in (0, 1) (got " << norm_eps << ")");
  DMPI_REQUIRE(query_groups >= 0 && (query_groups == 0 || heads % query_groups == 0),
               "--num-query-groups (" << query_groups << ") must divide --num-attention-heads (" << heads << ")");
  DMPI_REQUIRE(positions != Positions::Rope || head_size() % 2 == 0,
               "rotary embeddings need an even head size (--hidden-size / --num-attention-heads = " << head_size() << ")");
  DMPI_REQUIRE(rotary_base > 1.0, "--rotary-base must be > 1 (got " << rotary_base << ")");
  DMPI_REQUIRE(ffn() >= 1, "--ffn-hidden-size must be >= 1 (got " << ffn() << ")");
  DMPI_REQUIRE(tp_size >= 1 && tp_rank >= 0 && tp_rank < tp_size, "tensor-parallel rank " << tp_rank << " of " << tp_size);
  if (tp_size > 1) {
    // Megatron's conditions: whole heads (and kv heads) and MLP columns per rank; the vocabulary
    // may split unevenly (rank r holds rows [V r / tp, V (r + 1) / tp)).
    DMPI_REQUIRE(heads % tp_size == 0, "--tensor-model-parallel-size " << tp_size << " must divide --num-attention-heads ("
                                                                       << heads << "): each rank holds whole heads");
    DMPI_REQUIRE(kv_heads() % tp_size == 0, "--tensor-model-parallel-size " << tp_size << " must divide the key/value heads ("
                                                                            << kv_heads() << ", --num-query-groups): each "
                                                                            << "rank holds whole query groups");
    DMPI_REQUIRE(ffn() % tp_size == 0, "--tensor-model-parallel-size " << tp_size << " must divide the MLP width ("
                                                                       << ffn() << ", --ffn-hidden-size)");
    DMPI_REQUIRE(vocab >= tp_size, "--vocab-size " << vocab << " is smaller than --tensor-model-parallel-size " << tp_size);
    DMPI_REQUIRE(!sequence_parallel || seq_len % tp_size == 0,
                 "--sequence-parallel (or activation_checkpointing.partition_activations) splits the sequence over "
                 "the tp ranks: --seq-length " << seq_len
                     << " must be a multiple of --tensor-model-parallel-size " << tp_size);
  }
}

std::string ModelConfig::describe() const {
  std::ostringstream os;
  os << name << ": layers=" << num_layers << " hidden=" << hidden << " heads=" << heads << " vocab=" << vocab
     << " seq=" << seq_len << " max_pos=" << max_pos;
  const ModelConfig gpt;  // GPT-2's composition: only what differs from it is printed
  if (norm != gpt.norm || norm_eps != gpt.norm_eps) os << " norm=" << norm_name(norm) << "(eps " << norm_eps << ")";
  if (positions != gpt.positions)
    os << " positions=" << positions_name(positions) << (positions == Positions::Rope ? "(base " + std::to_string(static_cast<long long>(rotary_base)) + ")" : "");
  if (swiglu) os << " mlp=SwiGLU";
  if (ffn() != 4 * hidden) os << " ffn=" << ffn();
  if (kv_heads() != heads) os << " kv_heads=" << kv_heads();
  if (!tie_embeddings) os << " untied-head";
  if (!bias) os << " no-bias";
  return os.str();
}

nlohmann::json ModelConfig::to_json() const {
  return {{"name", name},
          {"num_layers", num_layers},
          {"hidden_size", hidden},
          {"num_attention_heads", heads},
          {"vocab_size", vocab},
          {"max_position_embeddings", max_pos},
          {"seq_length", seq_len},
          {"normalization", norm_name(norm)},
          {"norm_epsilon", norm_eps},
          {"position_embedding_type", positions_name(positions)},
          {"rotary_base", rotary_base},
          {"swiglu", swiglu},
          {"ffn_hidden_size", ffn()},
          {"num_query_groups", kv_heads()},
          {"untie_embeddings_and_output_weights", !tie_embeddings},
          {"add_bias_linear", bias}};
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  DMPI_REQUIRE(j.is_object(), "the model description is not a JSON object");
  ModelConfig c;
  auto num = [&](const char* key, auto fallback) {
    using T = decltype(fallback);
    if (!j.contains(key)) return fallback;
    const auto& v = j.at(key);
    DMPI_REQUIRE(v.is_number(), "model." << key << " is " << v.dump() << ", not a number");
    return v.get<T>();
  };
  auto flag = [&](const char* key, bool fallback) {
    if (!j.contains(key)) return fallback;
    DMPI_REQUIRE(j.at(key).is_boolean(), "model." << key << " is " << j.at(key).dump() << ", not true/false");
    return j.at(key).get<bool>();
  };
  auto text = [&](const char* key, const char* fallback) {
    if (!j.contains(key)) return std::string(fallback);
    DMPI_REQUIRE(j.at(key).is_string(), "model." << key << " is " << j.at(key).dump() << ", not a string");
    return j.at(key).get<std::string>();
  };
  c.name = text("name", "custom");
  c.num_layers = num("num_layers", c.num_layers);
  c.hidden = num("hidden_size", c.hidden);
  c.heads = num("num_attention_heads", c.heads);
  c.vocab = num("vocab_size", c.vocab);
  c.max_pos = num("max_position_embeddings", c.max_pos);
  c.seq_len = num("seq_length", c.seq_len);
  const std::string norm = text("normalization", "LayerNorm");
  DMPI_REQUIRE(norm == "LayerNorm" || norm == "RMSNorm", "model.normalization \"" << norm << "\": LayerNorm or RMSNorm");
  c.norm = norm == "RMSNorm" ? Norm::RMSNorm : Norm::LayerNorm;
  c.norm_eps = num("norm_epsilon", c.norm_eps);
  const std::string pos = text("position_embedding_type", "learned_absolute");
  DMPI_REQUIRE(pos == "learned_absolute" || pos == "rope" || pos == "none",
               "model.position_embedding_type \"" << pos << "\": learned_absolute, rope or none");
  c.positions = pos == "rope" ? Positions::Rope : pos == "none" ? Positions::None : Positions::Learned;
  c.rotary_base = num("rotary_base", c.rotary_base);
  c.swiglu = flag("swiglu", false);
  c.ffn_hidden = num("ffn_hidden_size", 0);
  const int groups = num("num_query_groups", 0);
  c.query_groups = groups == c.heads ? 0 : groups;
  c.tie_embeddings = !flag("untie_embeddings_and_output_weights", false);
  c.bias = flag("add_bias_linear", true);
  return c;
}

namespace {
ModelConfig llama(const std::string& name, int L, int C, int H, int groups, int ffn, int V, int T, double base) {
  ModelConfig c;
  c.name = name;
  c.num_layers = L, c.hidden = C, c.heads = H, c.vocab = V, c.seq_len = T, c.max_pos = T;
  c.norm = Norm::RMSNorm;
  c.norm_eps = 1e-5;
  c.positions = Positions::Rope;
  c.rotary_base = base;
  c.swiglu = true;
  c.ffn_hidden = ffn;
  c.query_groups = groups == H ? 0 : groups;
  c.tie_embeddings = false;
  c.bias = false;
  return c;
}
ModelConfig gpt2(const std::string& name, int L, int C, int H, int V, int T) {
  ModelConfig c;
  c.name = name;
  c.num_layers = L, c.hidden = C, c.heads = H, c.vocab = V, c.seq_len = T, c.max_pos = T;
  return c;
}
struct Preset {
  const char* name;
  ModelConfig (*make)();
  const char* what;
};
const Preset kPresets[] = {
    {"tiny", [] { return gpt2("tiny", 2, 128, 4, 512, 64); }, "GPT-2 L=2 d=128 h=4 V=512 T=64 (tests)"},
    {"small", [] { return gpt2("small", 6, 384, 6, 8192, 256); }, "GPT-2 L=6 d=384 h=6 V=8192 T=256"},
    {"gpt2-124m", [] { return gpt2("gpt2-124m", 12, 768, 12, 50257, 1024); }, "GPT-2 small, 124M"},
    {"gpt2-350m", [] { return gpt2("gpt2-350m", 24, 1024, 16, 50257, 1024); }, "GPT-2 medium, 350M"},
    {"gpt2-774m", [] { return gpt2("gpt2-774m", 36, 1280, 20, 50257, 1024); }, "GPT-2 large, 774M"},
    {"gpt2-1.5b", [] { return gpt2("gpt2-1.5b", 48, 1600, 25, 50257, 1024); }, "GPT-2 XL, 1.5B"},
    {"llama-tiny", [] { return llama("llama-tiny", 2, 128, 4, 2, 352, 512, 64, 10000.0); },
     "LLaMA composition L=2 d=128 h=4 kv=2 ffn=352 V=512 T=64 (tests)"},
    {"llama-125m", [] { return llama("llama-125m", 12, 768, 12, 4, 2048, 32000, 1024, 10000.0); },
     "LLaMA composition L=12 d=768 h=12 kv=4 ffn=2048 V=32000 T=1024, about 125M"},
    {"llama2-7b", [] { return llama("llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, 10000.0); }, "LLaMA-2 7B"},
    {"llama2-13b", [] { return llama("llama2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, 10000.0); }, "LLaMA-2 13B"},
    {"llama3-8b", [] { return llama("llama3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, 500000.0); }, "LLaMA-3 8B"},
};
}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> v;
  for (const auto& p : kPresets) v.push_back(p.name);
  return v;
}

std::string preset_help() {
  std::string s;
  for (const auto& p : kPresets) s += std::string("  ") + p.name + ": " + p.what + "\n";
  return s;
}

ModelConfig preset(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) return p.make();
  std::string list;
  for (const auto& p : kPresets) list += std::string(list.empty() ? "" : ", ") + p.name;
  std::string hint = closest_match(name, preset_names());
  DMPI_FAIL("unknown --model '" << name << "'" << (hint.empty() ? "" : "; did you mean '" + hint + "'?") << " (presets: "
                                << list << ")");
}

}  // namespace dmpi::model
