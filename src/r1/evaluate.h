// Held-out evaluation of a policy: k samples per problem at temperature plus one greedy sample,
// scored with the pipeline's own verifiers. The metric definitions are in docs/eval.md.
//
// evaluate() = generate_responses() (one generate() call: every problem's k samples share one
// prefill, the greedy sample is a second request) + score_responses() (pure, so tests can feed it
// hand-made responses).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/model.h"
#include "r1/common.h"
#include "rl/stats.h"
#include "rl/tasks.h"
#include "serve/generate.h"
#include "tokenizer/tokenizer.h"

namespace seekr::r1 {

struct EvalOptions {
  int k = 4;  // samples per problem at `temperature` (>= 1)
  float temperature = 1.0f;
  float top_p = 1.0f;
  bool greedy = true;  // also one greedy (temperature 0) sample per problem
  int max_new_tokens = 96;
  uint64_t seed = 0;
  // Append format.tags.think_open to the prompt text before encoding (a base model "forced to
  // reason"); the scored response text is then think_open + the generated text.
  bool force_reasoning = false;
  PolicyFormat format;
  int max_batch = 512;    // sequences in flight (per worker)
  int workers = 1;        // data-parallel generation (GenerateOptions::workers): same tokens
  bool progress = false;  // a start line and a summary line on stderr
};

// What one problem's generation produced. Texts are the scored response texts (with the forced
// think_open in front when force_reasoning); token counts are the generated tokens, a final stop
// token included.
struct ProblemResponses {
  std::vector<std::string> samples;  // [k]
  std::vector<int> sample_tokens;    // [k]
  bool has_greedy = false;
  std::string greedy;
  int greedy_tokens = 0;
};

// The metrics of one set of problems (all of them, or one language).
struct EvalMetrics {
  size_t problems = 0;
  size_t responses = 0;  // sampled responses scored: problems * k
  // Mean over problems of (correct samples / k). Interval: normal interval over the per-problem
  // fractions when k > 1; Wilson over the samples when k == 1.
  rl::Interval pass1_strict, pass1_lenient;
  rl::Interval pass_at_k;  // mean of rl::pass_at_k(k, c, k) (normal interval)
  rl::Interval maj_at_k;   // majority vote over the strict answers of the k samples (normal)
  bool has_greedy = false;
  rl::Interval greedy_strict, greedy_lenient;  // Wilson over problems
  // Over the sampled responses:
  double format_rate = 0;         // rl::format_reward == 1
  double reasons_first_rate = 0;  // rl::reasons_first
  double mean_response_tokens = 0;
  size_t reasoning_responses = 0;    // responses that reason first
  double mean_reasoning_tokens = 0;  // encode(rl::reasoning_text) tokens, over those
  double mixed_rate = 0;             // rl::is_language_mixed among those (0 when none)

  nlohmann::json to_json() const;
};

struct EvalReport {
  int k = 0;
  EvalMetrics all;
  std::vector<std::pair<rl::Lang, EvalMetrics>> by_lang;  // en then zh, languages present only
  int64_t generated_tokens = 0;                           // sampled + greedy
  double generation_seconds = 0;                          // wall time of generate_responses()
  double seconds = 0;                                     // the whole evaluate() call
  double tokens_per_second = 0;                           // generated_tokens / generation_seconds

  // Stable keys: {"k", "problems", <EvalMetrics keys>, "by_lang": {"en": {...}, "zh": {...}},
  // "generated_tokens", "generation_seconds", "seconds", "tokens_per_second"}.
  nlohmann::json to_json() const;
  // A readable table: one row per metric, columns all / en / zh, "value [lo, hi]".
  std::string to_table() const;
  // One markdown table row of the key metrics (all languages), for comparison tables.
  static std::string markdown_header();
  std::string markdown_row(std::string_view label) const;
};

// Generates every problem's responses in one generate() call. `stats` (optional) receives the
// generation statistics.
std::vector<ProblemResponses> generate_responses(const Model& model, const Tokenizer& tokenizer,
                                                 const std::vector<rl::Problem>& problems,
                                                 const EvalOptions& options,
                                                 GenerationStats* stats = nullptr);

// Scores given responses (responses[i] belongs to problems[i] and holds options.k samples).
// The tokenizer counts reasoning tokens. Leaves the timing fields at 0.
EvalReport score_responses(const std::vector<rl::Problem>& problems,
                           const std::vector<ProblemResponses>& responses,
                           const Tokenizer& tokenizer, const EvalOptions& options);

// The problems of an evaluation or a sampling run: the whole JSONL file when `problems_path` is
// not empty, else n problems of `split` of the named mix (rl::make_split with `seed`). Throws
// seekr::Error naming the file, the mix or the split when that gives no problems.
std::vector<rl::Problem> load_problem_set(const std::string& problems_path, const std::string& mix,
                                          size_t n, uint64_t seed, rl::Split split);

EvalReport evaluate(const Model& model, const Tokenizer& tokenizer,
                    const std::vector<rl::Problem>& problems, const EvalOptions& options);

}  // namespace seekr::r1
