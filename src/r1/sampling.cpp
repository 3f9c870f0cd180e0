#include "r1/sampling.h"

#include <chrono>
#include <map>
#include <set>

#include "core/check.h"
#include "core/file_io.h"
#include "rl/prompt.h"
#include "rl/rewards.h"

namespace seekr::r1 {

nlohmann::json SampleReport::to_json() const {
  return {{"problems", problems},
          {"generated", generated},
          {"correct", correct},
          {"well_formed", well_formed},
          {"language_ok", language_ok},
          {"passed", passed},
          {"duplicates", duplicates},
          {"over_limit", over_limit},
          {"accepted", accepted},
          {"problems_accepted", problems_accepted},
          {"generated_tokens", generated_tokens},
          {"seconds", seconds},
          {"tokens_per_second", tokens_per_second}};
}

std::vector<AcceptedSample> filter_samples(const std::vector<rl::Problem>& problems,
                                           const std::vector<ProblemResponses>& responses,
                                           const SampleOptions& options, SampleReport* report) {
  SEEKR_REQUIRE(options.max_per_problem >= 1, "max_per_problem must be >= 1; got ",
                options.max_per_problem);
  SEEKR_CHECK(responses.size() == problems.size(), responses.size(), " response sets for ",
              problems.size(), " problems");
  const rl::Tags& tags = options.format.tags;
  SampleReport counts;
  // Per templated prompt: the texts kept so far (a problem repeated in the list is one problem).
  std::map<std::string, std::set<std::string>> kept_by_prompt;
  std::vector<AcceptedSample> accepted;
  for (size_t i = 0; i < problems.size(); ++i) {
    const rl::Problem& p = problems[i];
    const ProblemResponses& r = responses[i];
    SEEKR_CHECK(r.samples.size() == r.sample_tokens.size(), "problem ", i, ": ", r.samples.size(),
                " texts, ", r.sample_tokens.size(), " token counts");
    const std::string prompt = rl::apply_template(options.format.tmpl, p.prompt);
    std::set<std::string>& kept = kept_by_prompt[prompt];
    for (size_t j = 0; j < r.samples.size(); ++j) {
      const std::string& text = r.samples[j];
      const bool correct = rl::accuracy_reward(p, text, tags) == 1.0;
      const bool well_formed = rl::format_reward(text, tags) == 1.0;
      const bool language_ok = rl::language_reward(text, p.lang, tags) == 1.0;
      ++counts.generated;
      counts.generated_tokens += r.sample_tokens[j];
      counts.correct += correct;
      counts.well_formed += well_formed;
      counts.language_ok += language_ok;
      if (!correct || (options.require_format && !well_formed) ||
          (options.require_language && !language_ok))
        continue;
      ++counts.passed;
      if (kept.count(text)) {
        ++counts.duplicates;
      } else if (kept.size() >= static_cast<size_t>(options.max_per_problem)) {
        ++counts.over_limit;
      } else {
        kept.insert(text);
        accepted.push_back({p, prompt, text, r.sample_tokens[j]});
      }
    }
  }
  counts.problems = kept_by_prompt.size();
  counts.accepted = accepted.size();
  for (const auto& [prompt, kept] : kept_by_prompt) counts.problems_accepted += !kept.empty();
  if (report) *report = counts;
  return accepted;
}

std::vector<AcceptedSample> rejection_sample(const Model& model, const Tokenizer& tokenizer,
                                             const std::vector<rl::Problem>& problems,
                                             const SampleOptions& options, SampleReport* report) {
  SEEKR_REQUIRE(!problems.empty(), "rejection sampling needs at least one problem");
  SEEKR_REQUIRE(options.n >= 1, "rejection sampling needs n >= 1 samples per problem; got ",
                options.n);
  const auto start = std::chrono::steady_clock::now();
  EvalOptions gen;
  gen.k = options.n;
  gen.temperature = options.temperature;
  gen.greedy = false;
  gen.max_new_tokens = options.max_new_tokens;
  gen.seed = options.seed;
  gen.format = options.format;
  gen.max_batch = options.max_batch;
  gen.workers = options.workers;
  const std::vector<ProblemResponses> responses =
      generate_responses(model, tokenizer, problems, gen);
  const double generation_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  SampleReport counts;
  std::vector<AcceptedSample> accepted = filter_samples(problems, responses, options, &counts);
  counts.tokens_per_second =
      generation_seconds > 0 ? double(counts.generated_tokens) / generation_seconds : 0.0;
  counts.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (report) *report = counts;
  return accepted;
}

void write_samples_jsonl(const std::string& path, const std::vector<AcceptedSample>& samples) {
  std::string out;
  for (const AcceptedSample& s : samples) {
    const nlohmann::json line = {{"prompt", s.prompt},
                                 {"completion", s.completion},
                                 {"question", s.problem.prompt},
                                 {"answer", s.problem.answer},
                                 {"lang", rl::lang_name(s.problem.lang)},
                                 {"task", s.problem.task}};
    out += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += '\n';
  }
  write_file_atomic(path, out);
}

}  // namespace seekr::r1
