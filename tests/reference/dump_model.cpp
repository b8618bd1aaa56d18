// dump_model: one forward and backward of a LocalModel<float> (the fast fp32 kernels, or with
// --kernels ref the plain-loop reference kernels in fp32) on a deterministic batch, written to a directory for an independent implementation to check
// (tests/reference/torch_reference.py, in PyTorch):
//   manifest.json  the ModelConfig (to_json()), B, T, seed, jitter, the mean loss (a round-trip
//                  double), the counted rows, the tensor list {name, shape, offset, numel} in
//                  model order
//   params.f32     every parameter, model order, little-endian float32
//   grads.f32      d(mean loss)/d(parameter) from backward(1.0), same layout
//   losses.f32     the per-row losses [B*T] (0 for ignored rows)
//   tokens.i32     [B*T] little-endian int32
//   targets.i32    [B*T], -100 where the row has no target
//
// Usage: dump_model --out DIR [--model PRESET] [--batch B] [--seq T] [--seed S] [--jitter A]
//                   [--kernels fast|ref] [--recompute none|selective|uniform:N|block:N] [--set KEY=JSON]...
//   --set patches the preset's to_json() with the keys ModelConfig::from_json reads (the value is
//   JSON, or else a string), e.g. --set untie_embeddings_and_output_weights=true
//   --set position_embedding_type=none.
//   --recompute: activation checkpointing (Megatron's granularity, method and num_layers): the
//   backward recomputes what the forward did not keep, and must give the same gradients.
//   --jitter A adds A * u, u uniform in [-1, 1), to every parameter after init_weights(seed), so
//   the norms' weights and the biases (ones and zeros at init) carry signal of their own.
// DEEPMPI_REF_PERTURB=<tensor name> (a self-test of the checker, never for real runs): after the
// backward, adds 1e-3 x max|grad| of that tensor to its middle element's gradient and records it
// in the manifest; the checker must then report that tensor as a mismatch.
// Exit status: 0 written; 1 error.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "kernels/context.hpp"
#include "kernels/gemm.hpp"
#include "src/model/config.hpp"
#include "src/model/model.hpp"

using namespace dmpi;

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "dump_model: " << why << "\n"
            << "usage: dump_model --out DIR [--model PRESET] [--batch B] [--seq T] [--seed S] [--jitter A] "
               "[--kernels fast|ref] [--recompute none|selective|uniform:N|block:N] [--set KEY=JSON]...\npresets:\n"
            << model::preset_help();
  std::exit(1);
}

// little-endian, whatever the host's byte order
void put_le32(std::vector<unsigned char>& out, uint32_t u) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<unsigned char>(u >> (8 * i)));
}
template <class T>
void write_le32(const std::filesystem::path& path, const T* data, size_t n) {
  static_assert(sizeof(T) == 4);
  std::vector<unsigned char> bytes;
  bytes.reserve(4 * n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, data + i, 4);
    put_le32(bytes, u);
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  DMPI_REQUIRE(f.good(), "cannot write " << path.string());
}

// splitmix64: a fixed stream, independent of the standard library
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

// Tokens from the stream; the target of a row is the next token (the last row of a sequence
// gets a token of its own), with some rows ignored: every 7th row, and the last 3 rows of the
// last sequence (as padding would be).
void make_batch(int V, int B, int T, uint64_t seed, std::vector<int32_t>& tok, std::vector<int32_t>& tgt) {
  SplitMix r{seed ^ 0xB47C4ull};
  const int n = B * T;
  tok.resize(n);
  tgt.resize(n);
  for (int i = 0; i < n; ++i) tok[i] = static_cast<int32_t>(r.next() % static_cast<uint64_t>(V));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const int i = b * T + t;
      tgt[i] = t + 1 < T ? tok[i + 1] : static_cast<int32_t>(r.next() % static_cast<uint64_t>(V));
      if (i % 7 == 3 || (b == B - 1 && t >= T - 3)) tgt[i] = model::kIgnoreIndex;
    }
}

// a whole-string number, or an error naming the flag
template <class T>
T number(const std::string& flag, const std::string& text) {
  size_t used = 0;
  T v{};
  try {
    if constexpr (std::is_same_v<T, int>) v = std::stoi(text, &used);
    else if constexpr (std::is_same_v<T, uint64_t>) v = std::stoull(text, &used);
    else v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DMPI_REQUIRE(used == text.size() && !text.empty(), flag << " " << text << ": not a number");
  return v;
}

int run(int argc, char** argv) {
  std::string preset = "tiny", out, kernels_path = "fast", recompute = "none";
  int B = 4, T = 0;
  uint64_t seed = 1234;
  double jitter = 0.0;
  std::vector<std::string> sets;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") preset = value();
    else if (a == "--out") out = value();
    else if (a == "--batch") B = number<int>(a, value());
    else if (a == "--seq") T = number<int>(a, value());
    else if (a == "--seed") seed = number<uint64_t>(a, value());
    else if (a == "--jitter") jitter = number<double>(a, value());
    else if (a == "--kernels") kernels_path = value();
    else if (a == "--recompute") recompute = value();
    else if (a == "--set") sets.push_back(value());
    else if (a == "-h" || a == "--help") usage("help");
    else usage("unknown argument '" + a + "'");
  }
  if (out.empty()) usage("--out DIR is required");
  DMPI_REQUIRE(B >= 1, "--batch must be >= 1 (got " << B << ")");
  DMPI_REQUIRE(kernels_path == "fast" || kernels_path == "ref", "--kernels " << kernels_path << ": fast or ref");

  nlohmann::json mj = model::preset(preset).to_json();
  for (const auto& s : sets) {
    const auto eq = s.find('=');
    DMPI_REQUIRE(eq != std::string::npos && eq > 0, "--set " << s << ": expected KEY=JSON");
    const std::string key = s.substr(0, eq);
    DMPI_REQUIRE(mj.contains(key), "--set " << s << ": '" << key << "' is not a key of the model description "
                                            << mj.dump());
    const std::string v = s.substr(eq + 1);
    const auto parsed = nlohmann::json::parse(v, nullptr, /*allow_exceptions=*/false);
    mj[key] = parsed.is_discarded() ? nlohmann::json(v) : parsed;  // not JSON: the text as a string
  }
  if (T > 0) {
    mj["seq_length"] = T;
    if (mj["max_position_embeddings"].get<int>() < T) mj["max_position_embeddings"] = T;
  }
  const model::ModelConfig cfg = model::ModelConfig::from_json(mj);
  cfg.validate();
  T = cfg.seq_len;

  model::RecomputeConfig rc;
  if (recompute == "selective") {
    rc.granularity = model::RecomputeConfig::Granularity::Selective;
  } else if (recompute.rfind("uniform:", 0) == 0 || recompute.rfind("block:", 0) == 0) {
    rc.granularity = model::RecomputeConfig::Granularity::Full;
    rc.method = recompute[0] == 'u' ? model::RecomputeConfig::Method::Uniform : model::RecomputeConfig::Method::Block;
    rc.num_layers = number<int>("--recompute", recompute.substr(recompute.find(':') + 1));
  } else {
    DMPI_REQUIRE(recompute == "none", "--recompute " << recompute << ": none, selective, uniform:N or block:N");
  }

  model::LocalModel<float> m(cfg, B, T, /*fast=*/kernels_path == "fast", rc);
  m.init_weights(seed);
  if (jitter != 0.0) {
    SplitMix r{seed ^ 0x7157E6ull};
    for (size_t i = 0; i < m.num_params(); ++i) m.params()[i] += static_cast<float>(jitter * (2.0 * r.uniform() - 1.0));
  }
  std::vector<int32_t> tok, tgt;
  make_batch(cfg.vocab, B, T, seed, tok, tgt);

  const std::string backend_name = kernels::default_gemm_backend_name();
  auto backend = kernels::make_gemm_backend(backend_name);
  const kernels::Context ctx = kernels::host_context(*backend);
  m.zero_grad();
  const double loss = m.forward(ctx, tok.data(), tgt.data());
  m.backward(ctx, 1.0);
  const int64_t valid = m.runner().valid_rows(0);

  const auto& mdl = m.model();
  nlohmann::json perturbed = nullptr;
  if (const char* p = std::getenv("DEEPMPI_REF_PERTURB"); p && *p) {
    const int t = mdl.find_tensor(p);
    if (t < 0) {
      std::vector<std::string> names;
      for (int k = 0; k < mdl.num_tensors(); ++k) names.push_back(mdl.spec(k).name);
      const std::string hint = closest_match(p, names);
      DMPI_FAIL("DEEPMPI_REF_PERTURB=" << p << ": no such tensor" << (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    }
    float* g = m.grads() + m.offset(t);
    const size_t n = mdl.spec(t).numel, j = n / 2;
    float mx = 0.f;
    for (size_t k = 0; k < n; ++k) mx = std::max(mx, std::fabs(g[k]));
    const float delta = 1e-3f * (mx > 0.f ? mx : 1.f);
    g[j] += delta;
    perturbed = {{"tensor", p}, {"element", j}, {"added", delta}};
    std::cerr << "dump_model: DEEPMPI_REF_PERTURB: added " << delta << " (1e-3 x max|grad|) to the gradient of " << p << "["
              << j << "]\n";
  }

  nlohmann::json tensors = nlohmann::json::array();
  for (int t = 0; t < mdl.num_tensors(); ++t) {
    const auto& s = mdl.spec(t);
    tensors.push_back({{"name", s.name}, {"shape", s.shape}, {"offset", m.offset(t)}, {"numel", s.numel}});
  }
  nlohmann::json man = {{"format", "deepmpi-reference-dump"},
                        {"version", 1},
                        {"preset", preset},
                        {"model", cfg.to_json()},
                        {"B", B},
                        {"T", T},
                        {"seed", seed},
                        {"jitter", jitter},
                        {"kernels", kernels_path + " fp32"},
                        {"gemm_backend", backend_name},
                        {"recompute", rc.describe()},
                        {"loss", loss},
                        {"valid_rows", valid},
                        {"num_params", m.num_params()},
                        {"dtype", "float32"},
                        {"byte_order", "little"},
                        {"perturbed", perturbed},
                        {"tensors", tensors}};

  const std::filesystem::path dir(out);
  std::filesystem::create_directories(dir);
  write_le32(dir / "params.f32", m.params(), m.num_params());
  write_le32(dir / "grads.f32", m.grads(), m.num_params());
  write_le32(dir / "losses.f32", m.losses(), static_cast<size_t>(B) * T);
  write_le32(dir / "tokens.i32", tok.data(), tok.size());
  write_le32(dir / "targets.i32", tgt.data(), tgt.size());
  {
    std::ofstream f(dir / "manifest.json", std::ios::trunc);
    f << man.dump(1) << "\n";  // nlohmann writes doubles with enough digits to round-trip
    DMPI_REQUIRE(f.good(), "cannot write " << (dir / "manifest.json").string());
  }
  std::printf("dump_model: %s B=%d T=%d seed=%llu jitter=%g kernels=%s recompute=%s: loss %.17g over %lld rows, %zu parameters in %d tensors -> %s\n",
              cfg.describe().c_str(), B, T, static_cast<unsigned long long>(seed), jitter, kernels_path.c_str(), recompute.c_str(), loss,
              static_cast<long long>(valid), m.num_params(), mdl.num_tensors(), dir.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "dump_model: " << e.what() << "\n";
    return 1;
  }
}
