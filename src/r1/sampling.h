// Rejection sampling (DeepSeek-R1 §2.3.3): sample several responses per problem, keep only the
// verified, well-formed, language-consistent ones, deduplicated, as SFT data ("prompt" /
// "completion" pairs that `seekr sft` trains on).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.h"
#include "r1/common.h"
#include "r1/evaluate.h"
#include "rl/tasks.h"
#include "tokenizer/tokenizer.h"

namespace seekr::r1 {

struct SampleOptions {
  int n = 4;  // responses sampled per problem
  float temperature = 1.0f;
  int max_new_tokens = 96;
  uint64_t seed = 0;
  PolicyFormat format;
  bool require_format = true;    // rl::format_reward == 1
  bool require_language = true;  // rl::language_reward == 1 (no mixing in the reasoning)
  int max_per_problem = 1;       // distinct accepted responses kept per problem
  int max_batch = 512;           // sequences in flight (per worker)
  int workers = 1;               // data-parallel generation (GenerateOptions::workers)
};

struct AcceptedSample {
  rl::Problem problem;
  std::string prompt;      // rl::apply_template(format.tmpl, problem.prompt)
  std::string completion;  // the response text (no stop token)
  int tokens = 0;          // generated tokens, a final stop token included
};

// Counts over every generated response; a response may count in several of the first four.
struct SampleReport {
  size_t problems = 0;           // distinct templated prompts
  size_t generated = 0;          // responses sampled
  size_t correct = 0;            // rl::accuracy_reward == 1
  size_t well_formed = 0;        // rl::format_reward == 1
  size_t language_ok = 0;        // rl::language_reward == 1
  size_t passed = 0;             // correct and every required check
  size_t duplicates = 0;         // passed, but the same text as an earlier one for the same prompt
  size_t over_limit = 0;         // passed and new, but the prompt already had max_per_problem
  size_t accepted = 0;           // kept
  size_t problems_accepted = 0;  // distinct prompts with at least one kept response
  int64_t generated_tokens = 0;
  double seconds = 0;            // the whole rejection_sample() call
  double tokens_per_second = 0;  // generated_tokens / generation wall time

  nlohmann::json to_json() const;
};

// The filter alone: responses[i] (texts and token counts; greedy ignored) belong to
// problems[i]. Sets *report to the counts (timing fields 0). Problems with the
// same templated prompt share their dedup set and their max_per_problem budget; responses are
// taken in order, so the kept ones are the first that pass.
std::vector<AcceptedSample> filter_samples(const std::vector<rl::Problem>& problems,
                                           const std::vector<ProblemResponses>& responses,
                                           const SampleOptions& options, SampleReport* report);

// generate_responses (n samples per problem, no greedy) + filter_samples.
std::vector<AcceptedSample> rejection_sample(const Model& model, const Tokenizer& tokenizer,
                                             const std::vector<rl::Problem>& problems,
                                             const SampleOptions& options,
                                             SampleReport* report = nullptr);

// One JSON object per line: {"prompt", "completion", "question", "answer", "lang", "task"},
// written atomically. Invalid UTF-8 in a text is written as U+FFFD.
void write_samples_jsonl(const std::string& path, const std::vector<AcceptedSample>& samples);

}  // namespace seekr::r1
