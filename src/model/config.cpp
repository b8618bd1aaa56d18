#include "src/model/config.hpp"

#include <sstream>

#include "base/error.hpp"

namespace dmpi::model {

void GPTConfig::validate() const {
  DMPI_REQUIRE(num_layers >= 1, "--num-layers must be >= 1 (got " << num_layers << ")");
  DMPI_REQUIRE(hidden >= 1, "--hidden-size must be >= 1 (got " << hidden << ")");
  DMPI_REQUIRE(heads >= 1 && hidden % heads == 0,
               "--hidden-size (" << hidden << ") must be divisible by --num-attention-heads (" << heads << ")");
  DMPI_REQUIRE(vocab >= 2, "--vocab-size must be >= 2 (got " << vocab << ")");
  DMPI_REQUIRE(seq_len >= 1, "--seq-length must be >= 1 (got " << seq_len << ")");
  DMPI_REQUIRE(max_pos >= seq_len, "--max-position-embeddings (" << max_pos << ") must be >= --seq-length ("
                                                                  << seq_len << ")");
}

std::string GPTConfig::describe() const {
  std::ostringstream os;
  os << name << ": layers=" << num_layers << " hidden=" << hidden << " heads=" << heads << " vocab=" << vocab
     << " seq=" << seq_len << " max_pos=" << max_pos;
  return os.str();
}

GPTConfig preset(const std::string& name) {
  GPTConfig c;
  c.name = name;
  if (name == "tiny") {
    c.num_layers = 2, c.hidden = 128, c.heads = 4, c.vocab = 512, c.seq_len = 64;
  } else if (name == "small") {
    c.num_layers = 6, c.hidden = 384, c.heads = 6, c.vocab = 8192, c.seq_len = 256;
  } else if (name == "gpt2-124m") {
    c.num_layers = 12, c.hidden = 768, c.heads = 12, c.vocab = 50257, c.seq_len = 1024;
  } else {
    std::string hint = closest_match(name, preset_names());
    DMPI_FAIL("unknown --model '" << name << "'" << (hint.empty() ? "" : "; did you mean '" + hint + "'?")
                                  << " (presets: tiny, small, gpt2-124m)");
  }
  c.max_pos = c.seq_len;
  return c;
}

std::vector<std::string> preset_names() { return {"tiny", "small", "gpt2-124m"}; }

std::vector<TensorSpec> gpt_param_table(const GPTConfig& c, size_t unit_align) {
  DMPI_REQUIRE(unit_align >= 1, "unit_align must be >= 1");
  std::vector<TensorSpec> t;
  size_t off = 0;
  int cur_unit = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay, int layer) {
    size_t n = 1;
    for (auto s : shape) n *= static_cast<size_t>(s);
    const int unit = layer >= 0 ? layer + 1 : (name == "lnf.weight" || name == "lnf.bias" ? c.num_layers + 1 : 0);
    if (unit != cur_unit) off = (off + unit_align - 1) / unit_align * unit_align, cur_unit = unit;
    const bool read_16bit = shape.size() == 2;
    t.push_back({std::move(name), std::move(shape), off, n, decay, layer, unit, read_16bit});
    off += n;
  };
  const int64_t C = c.hidden;
  add("wte", {c.vocab, C}, true, -1);  // tied with the LM head
  add("wpe", {c.max_pos, C}, true, -1);
  for (int l = 0; l < c.num_layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    add(p + "ln1.weight", {C}, false, l);
    add(p + "ln1.bias", {C}, false, l);
    add(p + "attn.qkv.weight", {3 * C, C}, true, l);
    add(p + "attn.qkv.bias", {3 * C}, false, l);
    add(p + "attn.proj.weight", {C, C}, true, l);
    add(p + "attn.proj.bias", {C}, false, l);
    add(p + "ln2.weight", {C}, false, l);
    add(p + "ln2.bias", {C}, false, l);
    add(p + "mlp.fc.weight", {4 * C, C}, true, l);
    add(p + "mlp.fc.bias", {4 * C}, false, l);
    add(p + "mlp.proj.weight", {C, 4 * C}, true, l);
    add(p + "mlp.proj.bias", {C}, false, l);
  }
  add("lnf.weight", {C}, false, -1);
  add("lnf.bias", {C}, false, -1);
  return t;
}

size_t table_numel(const std::vector<TensorSpec>& t) { return t.empty() ? 0 : t.back().offset + t.back().numel; }

std::vector<UnitSpec> gpt_units(const std::vector<TensorSpec>& table, size_t unit_align) {
  std::vector<UnitSpec> u;
  for (const auto& t : table) {
    if (u.size() <= static_cast<size_t>(t.unit)) u.resize(static_cast<size_t>(t.unit) + 1);
    UnitSpec& s = u[static_cast<size_t>(t.unit)];
    if (s.real == 0) s.offset = t.offset;
    s.real += t.numel;
    s.numel = t.offset + t.numel - s.offset;
  }
  for (auto& s : u) {
    DMPI_REQUIRE(s.offset % unit_align == 0, "unit not aligned (offset " << s.offset << ")");
    s.numel = (s.numel + unit_align - 1) / unit_align * unit_align;
  }
  return u;
}

size_t num_params(const GPTConfig& c) { return table_numel(gpt_param_table(c)); }

size_t num_matmul_params(const GPTConfig& c) {
  return num_params(c) - static_cast<size_t>(c.max_pos) * static_cast<size_t>(c.hidden);
}

}  // namespace dmpi::model
