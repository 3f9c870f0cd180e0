// seekr score: log-probability of given text under a checkpoint, and raw logits dumps.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "args.h"
#include "command.h"
#include "core/file_io.h"
#include "core/npy.h"
#include "serve/generate.h"

namespace {

const char* kUsage =
    R"(usage: seekr score --model DIR (--text TEXT | --file F | --tokens F.jsonl) [options]

Scores each token given its prefix: log p(token_t | tokens_<t) for t >= 1, the total
log-probability, mean negative log-likelihood (nats/token) and perplexity.

input:
  --model DIR            checkpoint directory (config.json, model.safetensors, tokenizer.json)
  --text TEXT            text to score (encoded with the tokenizer, BOS added if it has one)
  --file F               the whole file as one text
  --tokens F.jsonl       token ids, one sequence per line: [1, 2, 3] or {"tokens": [...]}
  --no-bos               do not add special tokens (BOS) when encoding text

output:
  --per-token            print every token: position, id, text, log-prob
  --dump-logits OUT.npy  write the full logits [T, V] float32 (one sequence only)
  --json                 print the summary of each sequence as one JSON object

engine:
  --backend B            train (the training forward, default) | session (inference cache)
                         | both (runs both and prints their largest logit difference)
  --attention MODE       absorbed (default) | naive, for the session backend
  --threads N            OpenMP/BLAS threads (default: the library default)
)";

std::vector<std::vector<int32_t>> read_token_file(const std::string& path) {
  std::vector<std::vector<int32_t>> out;
  for (const nlohmann::json& line : seekr::read_json_lines(path)) {
    const nlohmann::json& j = line.is_object() && line.contains("tokens") ? line["tokens"] : line;
    SEEKR_REQUIRE(j.is_array() && std::all_of(j.begin(), j.end(),
                                              [](const auto& x) { return x.is_number_integer(); }),
                  path, ": sequence ", out.size(), " is not [ids...] or {\"tokens\": [ids...]}");
    out.push_back(j.get<std::vector<int32_t>>());
  }
  SEEKR_REQUIRE(!out.empty(), path, ": no token sequences");
  return out;
}

int run_score(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage);
  const std::string dir = args.required("model");
  const bool has_text = args.has("text"), has_file = args.has("file"),
             has_tokens = args.has("tokens");
  SEEKR_REQUIRE(has_text + has_file + has_tokens == 1,
                "give exactly one of --text, --file, --tokens");
  const std::string text = has_text   ? args.str("text", "")
                           : has_file ? read_file(args.required("file"))
                                      : std::string();
  const std::string tokens_path = has_tokens ? args.required("tokens") : "";
  const bool no_bos = args.flag("no-bos");
  const bool per_token = args.flag("per-token");
  const std::string dump = args.str("dump-logits", "");
  const bool json = args.flag("json");
  const std::string backend = args.str("backend", "train");
  const std::string attention = args.str("attention", "absorbed");
  const int threads = static_cast<int>(args.i64("threads", 0));
  args.finish();
  SEEKR_REQUIRE(backend == "train" || backend == "session" || backend == "both",
                "--backend must be train, session or both; got '", backend, "'");
  SEEKR_REQUIRE(attention == "absorbed" || attention == "naive",
                "--attention must be absorbed or naive; got '", attention, "'");
  const AttentionMode mode =
      attention == "naive" ? AttentionMode::kNaive : AttentionMode::kAbsorbed;
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }

  InferenceModel im = load_inference_model(dir);
  Model& model = *im.model;
  const int V = model.config().vocab_size;
  std::vector<std::vector<int32_t>> seqs;
  if (has_tokens) {
    seqs = read_token_file(tokens_path);
  } else {
    SEEKR_REQUIRE(im.tokenizer.has_value(), dir,
                  "/tokenizer.json is missing; score text needs it (or use --tokens)");
    seqs.push_back(im.tokenizer->encode(text, /*add_special_tokens=*/!no_bos));
  }
  SEEKR_REQUIRE(dump.empty() || seqs.size() == 1, "--dump-logits takes one sequence; ", tokens_path,
                " has ", seqs.size());
  const int max_pos = model.config().max_position_embeddings;

  double all_total = 0;
  int64_t all_count = 0;
  for (size_t k = 0; k < seqs.size(); ++k) {
    const std::vector<int32_t>& toks = seqs[k];
    SEEKR_REQUIRE(!toks.empty(), "sequence ", k, " has no tokens");
    SEEKR_REQUIRE(static_cast<int>(toks.size()) <= max_pos, "sequence ", k, " has ", toks.size(),
                  " tokens; the model's max_position_embeddings is ", max_pos);
    for (int32_t t : toks)
      SEEKR_REQUIRE(t >= 0 && t < V, "sequence ", k, ": token id ", t,
                    " outside the vocabulary [0, ", V, ")");
    std::vector<float> logits =
        backend == "session" ? logits_session(model, toks, mode) : logits_train(model, toks);
    double max_diff = -1;
    if (backend == "both") {
      const std::vector<float> other = logits_session(model, toks, mode);
      max_diff = 0;
      for (size_t i = 0; i < logits.size(); ++i)
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(logits[i] - other[i])));
    }
    const ScoreResult r = score_from_logits(logits.data(), V, toks);
    if (!dump.empty()) write_npy(dump, logits.data(), {static_cast<int64_t>(toks.size()), V});
    if (per_token) {
      for (size_t t = 1; t < toks.size(); ++t) {
        const std::string piece =
            im.tokenizer ? nlohmann::json(im.tokenizer->id_to_token(toks[t]))
                               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                         : "";
        std::printf("%zu\t%d\t%s\t%.6f\n", t, toks[t], piece.c_str(), r.logprobs[t - 1]);
      }
    }
    const size_t n = r.logprobs.size();
    if (json) {
      nlohmann::json j = {{"sequence", k},
                          {"tokens", toks.size()},
                          {"scored", n},
                          {"total_logprob", r.total_logprob},
                          {"mean_nll", r.mean_nll()},
                          {"perplexity", r.perplexity()}};
      if (max_diff >= 0) j["max_logit_diff_train_vs_session"] = max_diff;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf(
          "sequence %zu: %zu tokens, %zu scored, total log-prob %.4f, mean NLL %.4f "
          "nats/token, perplexity %.3f",
          k, toks.size(), n, r.total_logprob, r.mean_nll(), r.perplexity());
      if (max_diff >= 0) std::printf(", max |logit train - session| %.3g", max_diff);
      std::printf("\n");
    }
    all_total += r.total_logprob;
    all_count += static_cast<int64_t>(n);
  }
  if (seqs.size() > 1 && !json && all_count > 0)
    std::printf("all: %lld scored, total log-prob %.4f, mean NLL %.4f, perplexity %.3f\n",
                static_cast<long long>(all_count), all_total, -all_total / all_count,
                std::exp(-all_total / all_count));
  if (!dump.empty())
    std::fprintf(stderr, "wrote logits [%zu, %d] float32 to %s\n", seqs[0].size(), V, dump.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("score", "log-probabilities, NLL and perplexity of text; dump logits as .npy",
              run_score);
