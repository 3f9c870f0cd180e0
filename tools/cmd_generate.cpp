// seekr generate: sample text from a checkpoint, one sequence streamed or many batched.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "args.h"
#include "command.h"
#include "core/file_io.h"
#include "serve/generate.h"

namespace {

const char* kUsage =
    R"(usage: seekr generate --model DIR (--prompt TEXT | --prompt-file F) [options]

Generates from a checkpoint directory (config.json, model.safetensors, tokenizer.json). One
prompt and one sample: the text streams to stdout as it is produced. Several prompts or
samples: they are decoded together as one batch and each result is printed at the end.
A final line on stderr gives prefill and decode throughput and the cache size per token.

input:
  --model DIR             checkpoint directory
  --prompt TEXT           a prompt (repeat for several)
  --prompt-file F         the whole file is one prompt; F.jsonl: one prompt per line, as a
                          JSON string or an object with a "prompt" field
  --prompt-ids LIST       a prompt given as comma-separated token ids, used as is (no BOS
                          added, no --chat); repeat for several
  --chat                  wrap each prompt in the chat template (DeepSeek's User/Assistant
                          tokens when the tokenizer has them, else the R1-Zero template)

sampling:
  --max-new-tokens N      per sample (default 128)
  --temperature X         0 = greedy (default 0.8)
  --top-k K               0 = off (default 0)
  --top-p P               1 = off (default 1.0)
  --min-p P               0 = off (default 0)
  --seed S                sample j of prompt i uses seed S + 1000003*i + j (default 0)
  --num-samples N         samples per prompt (default 1)
  --stop TEXT             stop string, cut from the output (repeat for several)
  --ignore-eos            do not stop at the config's eos_token_id

engine:
  --attention MODE        absorbed (compressed latent cache, default) | naive (expanded K/V)
  --speculative MODE      none (default) | mtp: the checkpoint's MTP module drafts the token
                          after next and the main model verifies it in the same forward call
                          (DeepSeek-V3 5.4.3); the output is exactly greedy decoding's. Needs
                          --temperature 0 and MTP weights; the stderr line adds the drafts'
                          acceptance rate
  --max-batch N           sequences decoded together (default: all)
  --threads N             OpenMP/BLAS threads (default: the library default)
  --fp8-weights MODE      FP8 checkpoints: keep (default: Linear weights stay E4M3 + block
                          scales in memory, about 1/4 of FP32, dequantised on the fly) |
                          dequantize (to FP32 at load); the stderr line gives their size
  --json                  print one JSON object per result (tokens, log-probs, text, finish)
)";

// Args keeps the last of repeated options; --prompt and --stop may be given many times.
std::vector<std::string> repeated(int argc, char** argv, const std::string& name) {
  std::vector<std::string> out;
  const std::string flag = "--" + name, eq = flag + "=";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind(eq, 0) == 0) {
      out.push_back(a.substr(eq.size()));
    } else if (a == flag && i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) {
      out.push_back(argv[++i]);
    }
  }
  return out;
}

std::vector<std::string> prompts_from_file(const std::string& path) {
  const bool jsonl = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  if (!jsonl) return {seekr::read_file(path)};
  std::vector<std::string> out;
  for (nlohmann::json j : seekr::read_json_lines(path)) {
    if (j.is_object() && j.contains("prompt")) j = j["prompt"];
    SEEKR_REQUIRE(j.is_string(), path, ": prompt ", out.size(),
                  " is not a JSON string or an object with a string \"prompt\"");
    out.push_back(j.get<std::string>());
  }
  SEEKR_REQUIRE(!out.empty(), path, ": no prompts");
  return out;
}

seekr::Speculation parse_speculation(const std::string& s) {
  if (s == "none") return seekr::Speculation::kNone;
  if (s == "mtp") return seekr::Speculation::kMtp;
  throw seekr::Error("--speculative must be 'none' or 'mtp', got '" + s + "'");
}

std::vector<int32_t> parse_ids(const std::string& list) {
  std::vector<int32_t> ids;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t end = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, end - at);
    char* stop = nullptr;
    const long long v = std::strtoll(item.c_str(), &stop, 10);
    SEEKR_REQUIRE(!item.empty() && *stop == 0 && v >= 0 && v <= INT32_MAX,
                  "--prompt-ids expects comma-separated token ids; got '", item, "' in '", list,
                  "'");
    ids.push_back(static_cast<int32_t>(v));
    at = end + 1;
  }
  return ids;
}

seekr::AttentionMode parse_attention(const std::string& s) {
  if (s == "absorbed") return seekr::AttentionMode::kAbsorbed;
  if (s == "naive") return seekr::AttentionMode::kNaive;
  throw seekr::Error("--attention must be 'absorbed' or 'naive', got '" + s + "'");
}

int run_generate(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage);
  const std::string dir = args.required("model");
  std::vector<std::string> prompts =
      args.has("prompt") ? repeated(argc, argv, "prompt") : std::vector<std::string>{};
  if (args.has("prompt-file")) {
    for (auto& p : prompts_from_file(args.required("prompt-file"))) prompts.push_back(p);
  }
  std::vector<std::vector<int32_t>> id_prompts;
  if (args.has("prompt-ids"))
    for (const std::string& list : repeated(argc, argv, "prompt-ids"))
      id_prompts.push_back(parse_ids(list));
  const bool chat = args.flag("chat");
  GenerationRequest base;
  base.max_new_tokens = static_cast<int>(args.i64("max-new-tokens", 128));
  base.sampling.temperature = static_cast<float>(args.f64("temperature", 0.8));
  base.sampling.top_k = static_cast<int>(args.i64("top-k", 0));
  base.sampling.top_p = static_cast<float>(args.f64("top-p", 1.0));
  base.sampling.min_p = static_cast<float>(args.f64("min-p", 0.0));
  const uint64_t seed = static_cast<uint64_t>(args.i64("seed", 0));
  base.n = static_cast<int>(args.i64("num-samples", 1));
  if (args.has("stop")) base.stop_strings = repeated(argc, argv, "stop");
  const bool ignore_eos = args.flag("ignore-eos");
  GenerateOptions opt;
  opt.attention = parse_attention(args.str("attention", "absorbed"));
  opt.speculation = parse_speculation(args.str("speculative", "none"));
  opt.max_batch = static_cast<int>(args.i64("max-batch", 0));
  const int threads = static_cast<int>(args.i64("threads", 0));
  InferenceLoadOptions load_opt;
  load_opt.fp8_weights = parse_fp8_weight_mode(args.str("fp8-weights", "keep"));
  const bool json = args.flag("json");
  args.finish();
  SEEKR_REQUIRE(!prompts.empty() || !id_prompts.empty(),
                "give --prompt TEXT, --prompt-file F or --prompt-ids LIST");
  SEEKR_REQUIRE(!chat || id_prompts.empty(), "--chat does not apply to --prompt-ids");
  SEEKR_REQUIRE(base.max_new_tokens >= 0, "--max-new-tokens must be >= 0");
  SEEKR_REQUIRE(base.n >= 1, "--num-samples must be >= 1");
  base.sampling.validate();
  const bool speculative = opt.speculation == Speculation::kMtp;
  SEEKR_REQUIRE(!speculative || base.sampling.greedy(),
                "--speculative mtp verifies drafts against greedy choices only: add "
                "--temperature 0 (or leave out --speculative to sample)");
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }

  InferenceModel im = load_inference_model(dir, load_opt);
  SEEKR_REQUIRE(im.tokenizer.has_value(), dir, "/tokenizer.json is missing; generate needs it");
  SEEKR_REQUIRE(!speculative || im.mtp_weights, "--speculative mtp: ", dir,
                " has no MTP module (num_nextn_predict_layers is 0 or its weights are missing)");
  const Tokenizer& tok = *im.tokenizer;
  opt.tokenizer = &tok;
  const int eos = im.model->config().eos_token_id;
  if (eos >= 0 && !ignore_eos) base.stop_tokens.push_back(eos);

  std::vector<GenerationRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r = base;
    const std::string text = chat ? chat_prompt(tok, prompts[i]) : prompts[i];
    r.prompt = tok.encode(text, /*add_special_tokens=*/true);
    SEEKR_REQUIRE(!r.prompt.empty(), "prompt ", i, " encodes to no tokens");
    r.seed = seed + 1000003ull * i;
    reqs.push_back(std::move(r));
  }
  for (auto& ids : id_prompts) {
    GenerationRequest r = base;
    r.prompt = std::move(ids);
    r.seed = seed + 1000003ull * reqs.size();
    reqs.push_back(std::move(r));
  }
  const bool single = reqs.size() == 1 && base.n == 1 && !json;
  if (single) {
    opt.on_text = [](int, std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
  }
  const GenerationOutput out = generate(*im.model, reqs, opt);

  if (single) {
    std::printf("\n");
  } else {
    for (const GenerationResult& r : out.results) {
      if (json) {
        nlohmann::json j = {{"prompt", r.request},
                            {"sample", r.sample},
                            {"text", r.text},
                            {"tokens", r.tokens},
                            {"logprobs", r.logprobs},
                            {"raw_logprobs", r.raw_logprobs},
                            {"finish", to_string(r.finish)}};
        if (r.finish == FinishReason::kStopString) j["stop"] = r.stop_string;
        std::printf("%s\n",
                    j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      } else {
        std::printf("=== prompt %d, sample %d (%zu tokens, %s) ===\n%s\n", r.request, r.sample,
                    r.tokens.size(), to_string(r.finish), r.text.c_str());
      }
    }
  }
  std::fflush(stdout);
  const GenerationStats& s = out.stats;
  std::fprintf(stderr,
               "[prefill %lld tok in %.3f s: %.1f tok/s | decode %lld tok in %d steps, %.3f s: "
               "%.1f tok/s | batch %d | %s cache %zu bytes/token]\n",
               static_cast<long long>(s.prompt_tokens), s.prefill_seconds, s.prefill_tok_s(),
               static_cast<long long>(s.decode_tokens), s.decode_steps, s.decode_seconds,
               s.decode_tok_s(), s.max_batch,
               opt.attention == AttentionMode::kAbsorbed ? "absorbed" : "naive",
               s.cache_bytes_per_token);
  if (const Fp8LinearWeights* fp8 = im.model->fp8_weights())
    std::fprintf(stderr, "[fp8 weights kept: %zu Linear weights, %.1f MiB (%.1f MiB as FP32)]\n",
                 fp8->size(), fp8->bytes() / 1048576.0, fp8->f32_bytes() / 1048576.0);
  if (speculative)
    std::fprintf(stderr,
                 "[speculative mtp: %lld of %lld drafts accepted (%.1f%%), %.2f tokens per decode "
                 "step per sequence, decode %.1f tok/s]\n",
                 static_cast<long long>(s.accepted_drafts), static_cast<long long>(s.drafts),
                 100.0 * s.acceptance_rate(),
                 s.decode_steps > 0 ? double(s.decode_tokens) / s.decode_steps / s.max_batch : 0.0,
                 s.decode_tok_s());
  return 0;
}

}  // namespace

SEEKR_COMMAND("generate", "sample text from a checkpoint (streamed, or batched prompts/samples)",
              run_generate);
