// deepmpi generate: sample text from a checkpoint (any dp size or ZeRO stage it was saved with)
// on one rank, with a key/value cache (each new token costs one position, not a re-forward).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "base/error.hpp"
#include "base/rng.hpp"
#include "base/system.hpp"
#include "comm/mpi_env.hpp"
#include "io/tokenizer.hpp"
#include "kernels/gemm.hpp"
#include "src/cli/commands.hpp"
#include "src/engine/inference.hpp"
#include "src/model/sampling.hpp"

namespace dmpi::cli {

namespace {

std::vector<FlagSpec> generate_flags() {
  return {
      {"load", true, "checkpoint directory (what `deepmpi train --save DIR` wrote)"},
      {"load-tag", true, "the tag to load (default: the one DIR/latest names)"},
      {"prompt", true, "the text to continue (byte-level tokens: models with the 257-token byte vocabulary)"},
      {"prompt-tokens", true, "the prompt as token ids, comma-separated (any vocabulary)"},
      {"max-new-tokens", true, "tokens to generate (default 64)"},
      {"temperature", true, "sampling temperature (default 0.8; 0 = greedy)"},
      {"top-k", true, "sample from the k most likely tokens (default 0 = all)"},
      {"top-p", true, "sample from the smallest set of tokens whose probability reaches p (default 1 = all)"},
      {"seed", true, "the sampling seed (default 1234): the same seed gives the same text"},
      {"gemm-backend", true, "onednn | openblas"},
      {"help", false, "show this help"},
  };
}

std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    DMPI_CLI_REQUIRE(!item.empty() && end && *end == '\0' && v >= 0 && v < (1L << 31),
                     "--prompt-tokens: '" << item << "' is not a token id (write ids separated by commas, e.g. 12,7,301)");
    out.push_back(static_cast<int32_t>(v));
  }
  DMPI_CLI_REQUIRE(!out.empty(), "--prompt-tokens is empty");
  return out;
}

}  // namespace

int cmd_generate(int* argc, char*** argv, const std::vector<std::string>& argl) {
  Args a(generate_flags(), argl);
  if (a.has("help")) {
    std::printf("usage: deepmpi generate --load DIR [--prompt TEXT | --prompt-tokens IDS] [flags]   (one rank)\n\n%s",
                a.usage().c_str());
    return 0;
  }
  DMPI_CLI_REQUIRE(a.positional().empty(), "unexpected argument '" << a.positional().front() << "' (flags start with --)");
  DMPI_CLI_REQUIRE(a.has("load"), "deepmpi generate needs --load DIR (a checkpoint directory)");
  DMPI_CLI_REQUIRE(!(a.has("prompt") && a.has("prompt-tokens")), "give --prompt or --prompt-tokens, not both");
  comm::MpiEnv mpi(argc, argv);
  DMPI_CLI_REQUIRE(mpi.size() == 1, "deepmpi generate runs on one rank (this job has " << mpi.size()
                                                                                     << "): run it without mpirun/srun, or with -n 1");
  const int64_t max_new = a.integer("max-new-tokens", 64);
  DMPI_CLI_REQUIRE(max_new >= 1 && max_new <= (1 << 20), "--max-new-tokens must be in [1, 2^20] (got " << max_new << ")");
  model::SamplingConfig sc;
  sc.temperature = a.real("temperature", 0.8);
  sc.top_k = static_cast<int>(a.integer("top-k", 0));
  sc.top_p = a.real("top-p", 1.0);
  DMPI_CLI_REQUIRE(sc.temperature >= 0, "--temperature must be >= 0 (0 is greedy)");
  DMPI_CLI_REQUIRE(sc.top_k >= 0, "--top-k must be >= 0 (0 keeps every token)");
  DMPI_CLI_REQUIRE(sc.top_p > 0 && sc.top_p <= 1, "--top-p must be in (0, 1]");
  const int64_t seed = a.integer("seed", 1234);
  DMPI_CLI_REQUIRE(seed >= 0, "--seed must be >= 0");

  auto backend = kernels::make_gemm_backend(a.str("gemm-backend", kernels::default_gemm_backend_name()));
  const kernels::Context ctx = kernels::host_context(*backend);
  const double t_load = now_seconds();
  engine::LoadedModel lm = engine::load_for_inference(MPI_COMM_WORLD, a.str("load"), a.str("load-tag"));
  for (const auto& n : lm.notes) std::printf("[deepmpi] %s\n", n.c_str());
  const model::ModelConfig& cfg = lm.model->config();
  const bool bytes = cfg.vocab == static_cast<int>(io::ByteTokenizer::kVocab);
  std::vector<int32_t> prompt;
  if (a.has("prompt-tokens")) {
    prompt = parse_tokens(a.str("prompt-tokens"));
  } else {
    DMPI_CLI_REQUIRE(bytes, "the model's vocabulary has " << cfg.vocab << " tokens, not the " << io::ByteTokenizer::kVocab
                                                          << "-token byte vocabulary --prompt encodes: give --prompt-tokens");
    const std::string text = a.str("prompt", "\n");
    for (uint32_t t : io::ByteTokenizer::encode(text)) prompt.push_back(static_cast<int32_t>(t));
    if (prompt.size() > 1 && prompt.back() == static_cast<int32_t>(io::ByteTokenizer::kEod)) prompt.pop_back();  // continue the text
  }
  for (int32_t t : prompt)
    DMPI_CLI_REQUIRE(t < cfg.vocab, "prompt token " << t << " is outside the model's vocabulary [0, " << cfg.vocab << ")");
  DMPI_CLI_REQUIRE(static_cast<int64_t>(prompt.size()) < cfg.max_pos,
                   "the prompt has " << prompt.size() << " tokens; the model's context is " << cfg.max_pos
                                     << " positions (--max-position-embeddings): shorten it");
  // Beyond the context the window slides: when the cache is full, its last half is fed again and
  // generation goes on from there (one re-forward of half the context every half-context tokens).
  const int window = cfg.max_pos;
  const bool slides = static_cast<int64_t>(prompt.size()) + max_new > window;
  std::printf("[deepmpi] generate: %s from %s (step %lld), loaded in %.2f s; temperature %g, top-k %d, top-p %g, seed %lld\n",
              cfg.describe().c_str(), lm.path.c_str(), static_cast<long long>(lm.global_steps), now_seconds() - t_load,
              sc.temperature, sc.top_k, sc.top_p, static_cast<long long>(seed));
  std::fflush(stdout);

  if (slides)
    std::printf("[deepmpi] note: %lld tokens exceed the model's %d positions: the context window slides (the last %d tokens "
                "are fed again when it is full)\n",
                static_cast<long long>(static_cast<int64_t>(prompt.size()) + max_new), window, window / 2);
  model::Decoder<float> dec(*lm.model, 1, window);
  Rng rng(static_cast<uint64_t>(seed), 0x5eed);
  const double t0 = now_seconds();
  const float* logits = dec.feed(ctx, prompt.data(), static_cast<int>(prompt.size()));
  const double t_prompt = now_seconds() - t0;
  logits += (prompt.size() - 1) * static_cast<size_t>(cfg.vocab);  // the last prompt position
  std::vector<uint32_t> generated;
  const double t1 = now_seconds();
  std::vector<int32_t> context(prompt);
  for (int64_t i = 0; i < max_new; ++i) {
    const int32_t next = model::sample_token(logits, cfg.vocab, sc, rng);
    generated.push_back(static_cast<uint32_t>(next));
    context.push_back(next);
    if (i + 1 == max_new) break;
    if (dec.position() == dec.capacity()) {  // slide: feed the last half of the context again
      const int keep = window / 2;
      dec.reset();
      logits = dec.feed(ctx, context.data() + context.size() - static_cast<size_t>(keep), keep) +
               static_cast<size_t>(keep - 1) * static_cast<size_t>(cfg.vocab);
    } else {
      logits = dec.feed(ctx, &next, 1);
    }
  }
  const double t_gen = now_seconds() - t1;
  std::vector<uint32_t> all(prompt.begin(), prompt.end());
  all.insert(all.end(), generated.begin(), generated.end());
  std::printf("---\n");
  if (bytes) {
    std::printf("%s", io::ByteTokenizer::decode(all).c_str());
  } else {
    for (size_t i = 0; i < all.size(); ++i) std::printf("%s%u", i ? "," : "", all[i]);
  }
  std::printf("\n---\n");
  std::printf("[deepmpi] generate: prompt %zu tokens in %.1f ms; %lld new tokens in %.2f s = %.1f tokens/s (KV cache)\n",
              prompt.size(), t_prompt * 1e3, static_cast<long long>(max_new), t_gen,
              static_cast<double>(max_new) / std::max(t_gen, 1e-9));
  return 0;
}

}  // namespace dmpi::cli
