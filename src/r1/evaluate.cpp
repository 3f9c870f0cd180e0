#include "r1/evaluate.h"

#include <chrono>
#include <cstdio>
#include <optional>

#include "core/check.h"
#include "core/rng.h"
#include "rl/format.h"
#include "rl/rewards.h"

namespace seekr::r1 {

namespace {

// Two strict answers are one vote class when they are the same text after collapsing spaces
// or, for numeric problems, the same number ("1.5" and "3/2").
bool same_answer(const rl::Problem& p, const std::string& a, const std::string& b) {
  if (rl::collapse_spaces(a) == rl::collapse_spaces(b)) return true;
  return p.verifier == rl::Verifier::Number && rl::numbers_equal(a, b);
}

// Fraction of `hits` in `total`, 0 for an empty set.
double rate(size_t hits, size_t total) {
  return total ? double(hits) / double(total) : 0.0;
}

// Per-problem scores -> interval: the normal interval over problems, except a 0/1 score per
// problem from one sample each, where Wilson's interval over those samples is the right one.
rl::Interval interval_of(const std::vector<double>& per_problem, bool one_sample_each) {
  if (per_problem.empty()) return {};
  if (!one_sample_each) return rl::mean_interval(per_problem);
  size_t successes = 0;
  for (double x : per_problem) successes += x > 0.5;
  return rl::wilson_interval(successes, per_problem.size());
}

// Running sums of one problem set's metrics.
struct Accumulator {
  std::vector<double> pass1_strict, pass1_lenient, pass_at_k, maj_at_k;  // [problems]
  std::vector<double> greedy_strict, greedy_lenient;                     // [problems]
  size_t responses = 0, well_formed = 0, reasoning = 0, mixed = 0;
  double response_tokens = 0, reasoning_tokens = 0;

  EvalMetrics finish(int k, bool has_greedy) const {
    EvalMetrics m;
    m.problems = pass1_strict.size();
    m.responses = responses;
    m.pass1_strict = interval_of(pass1_strict, k == 1);
    m.pass1_lenient = interval_of(pass1_lenient, k == 1);
    m.pass_at_k = interval_of(pass_at_k, false);
    m.maj_at_k = interval_of(maj_at_k, false);
    m.has_greedy = has_greedy;
    if (has_greedy) {
      m.greedy_strict = interval_of(greedy_strict, true);
      m.greedy_lenient = interval_of(greedy_lenient, true);
    }
    m.format_rate = rate(well_formed, responses);
    m.reasons_first_rate = rate(reasoning, responses);
    m.mean_response_tokens = responses ? response_tokens / double(responses) : 0.0;
    m.reasoning_responses = reasoning;
    m.mean_reasoning_tokens = reasoning ? reasoning_tokens / double(reasoning) : 0.0;
    m.mixed_rate = rate(mixed, reasoning);
    return m;
  }
};

nlohmann::json interval_json(const rl::Interval& i) {
  return {{"mean", i.mean}, {"lo", i.lo}, {"hi", i.hi}};
}

std::string percent_with_interval(const rl::Interval& i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%5.1f%% [%4.1f, %4.1f]", 100 * i.mean, 100 * i.lo, 100 * i.hi);
  return buf;
}

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%5.1f%%", 100 * x);
  return buf;
}

std::string decimal(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", x);
  return buf;
}

}  // namespace

nlohmann::json EvalMetrics::to_json() const {
  nlohmann::json j = {{"problems", problems},
                      {"responses", responses},
                      {"pass1_strict", interval_json(pass1_strict)},
                      {"pass1_lenient", interval_json(pass1_lenient)},
                      {"pass_at_k", interval_json(pass_at_k)},
                      {"maj_at_k", interval_json(maj_at_k)},
                      {"greedy_strict", nullptr},
                      {"greedy_lenient", nullptr},
                      {"format_rate", format_rate},
                      {"reasons_first_rate", reasons_first_rate},
                      {"mean_response_tokens", mean_response_tokens},
                      {"reasoning_responses", reasoning_responses},
                      {"mean_reasoning_tokens", mean_reasoning_tokens},
                      {"mixed_rate", mixed_rate}};
  if (has_greedy) {
    j["greedy_strict"] = interval_json(greedy_strict);
    j["greedy_lenient"] = interval_json(greedy_lenient);
  }
  return j;
}

nlohmann::json EvalReport::to_json() const {
  nlohmann::json j = all.to_json();
  j["k"] = k;
  nlohmann::json langs = nlohmann::json::object();
  for (const auto& [lang, m] : by_lang) langs[rl::lang_name(lang)] = m.to_json();
  j["by_lang"] = langs;
  j["generated_tokens"] = generated_tokens;
  j["generation_seconds"] = generation_seconds;
  j["seconds"] = seconds;
  j["tokens_per_second"] = tokens_per_second;
  return j;
}

std::string EvalReport::to_table() const {
  std::vector<std::pair<std::string, const EvalMetrics*>> columns = {{"all", &all}};
  for (const auto& [lang, m] : by_lang) columns.push_back({rl::lang_name(lang), &m});
  const std::string k_text = std::to_string(k);
  using Cell = std::string (*)(const EvalMetrics&);
  std::vector<std::pair<std::string, Cell>> rows = {
      {"problems", [](const EvalMetrics& m) { return std::to_string(m.problems); }},
      {"pass@1 strict", [](const EvalMetrics& m) { return percent_with_interval(m.pass1_strict); }},
      {"pass@1 lenient",
       [](const EvalMetrics& m) { return percent_with_interval(m.pass1_lenient); }},
      {"pass@" + k_text, [](const EvalMetrics& m) { return percent_with_interval(m.pass_at_k); }},
      {"maj@" + k_text, [](const EvalMetrics& m) { return percent_with_interval(m.maj_at_k); }}};
  if (all.has_greedy) {
    rows.push_back({"greedy strict",
                    [](const EvalMetrics& m) { return percent_with_interval(m.greedy_strict); }});
    rows.push_back({"greedy lenient",
                    [](const EvalMetrics& m) { return percent_with_interval(m.greedy_lenient); }});
  }
  rows.push_back({"format", [](const EvalMetrics& m) { return percent(m.format_rate); }});
  rows.push_back(
      {"reasons first", [](const EvalMetrics& m) { return percent(m.reasons_first_rate); }});
  rows.push_back({"language mixed", [](const EvalMetrics& m) { return percent(m.mixed_rate); }});
  rows.push_back(
      {"response tokens", [](const EvalMetrics& m) { return decimal(m.mean_response_tokens); }});
  rows.push_back(
      {"reasoning tokens", [](const EvalMetrics& m) { return decimal(m.mean_reasoning_tokens); }});

  std::string out;
  char buf[128];
  std::snprintf(buf, sizeof buf, "%-18s", "metric (95% CI)");
  out += buf;
  for (const auto& [name, m] : columns) {
    std::snprintf(buf, sizeof buf, "  %-22s", name.c_str());
    out += buf;
  }
  out += "\n";
  for (const auto& [name, cell] : rows) {
    std::snprintf(buf, sizeof buf, "%-18s", name.c_str());
    out += buf;
    for (const auto& [col, m] : columns) {
      std::snprintf(buf, sizeof buf, "  %-22s", cell(*m).c_str());
      out += buf;
    }
    out += "\n";
  }
  std::snprintf(buf, sizeof buf, "generated %lld tokens in %.2fs (%.0f tok/s); total %.2fs\n",
                static_cast<long long>(generated_tokens), generation_seconds, tokens_per_second,
                seconds);
  out += buf;
  return out;
}

std::string EvalReport::markdown_header() {
  return "| model | pass@1 | pass@k | maj@k | greedy | format | reasons first | mixed | tokens |\n"
         "|---|---|---|---|---|---|---|---|---|\n";
}

std::string EvalReport::markdown_row(std::string_view label) const {
  std::string greedy_cell = all.has_greedy ? percent(all.greedy_strict.mean) : "-";
  char buf[512];
  std::snprintf(
      buf, sizeof buf, "| %.*s | %s ± %.1f | %s | %s | %s | %s | %s | %s | %.1f |\n",
      static_cast<int>(label.size()), label.data(), percent(all.pass1_strict.mean).c_str(),
      100 * (all.pass1_strict.hi - all.pass1_strict.lo) / 2, percent(all.pass_at_k.mean).c_str(),
      percent(all.maj_at_k.mean).c_str(), greedy_cell.c_str(), percent(all.format_rate).c_str(),
      percent(all.reasons_first_rate).c_str(), percent(all.mixed_rate).c_str(),
      all.mean_response_tokens);
  return buf;
}

std::vector<ProblemResponses> generate_responses(const Model& model, const Tokenizer& tokenizer,
                                                 const std::vector<rl::Problem>& problems,
                                                 const EvalOptions& options,
                                                 GenerationStats* stats) {
  SEEKR_REQUIRE(options.k >= 1, "evaluation needs k >= 1 samples per problem; got ", options.k);
  SEEKR_REQUIRE(options.max_new_tokens >= 1, "max_new_tokens must be >= 1; got ",
                options.max_new_tokens);
  SEEKR_REQUIRE(options.max_batch >= 1, "max_batch must be >= 1; got ", options.max_batch);
  const std::vector<int32_t> stops = stop_tokens(model.config(), tokenizer);
  const std::string forced = options.force_reasoning ? options.format.tags.think_open : "";
  // Distinct evaluation seeds give unrelated streams; sample j of problem i draws from
  // Rng(base + i * k + j), so no two samples of one evaluation share a stream.
  const uint64_t base = Rng(options.seed).next_u64();

  std::vector<GenerationRequest> requests;  // per problem: sampled (n = k), then greedy
  requests.reserve(problems.size() * 2);
  for (size_t i = 0; i < problems.size(); ++i) {
    GenerationRequest r;
    r.prompt =
        options.force_reasoning
            ? tokenizer.encode(rl::apply_template(options.format.tmpl, problems[i].prompt) + forced,
                               /*add_special_tokens=*/true)
            : encode_prompt(tokenizer, problems[i], options.format.tmpl);
    r.max_new_tokens = options.max_new_tokens;
    r.sampling.temperature = options.temperature;
    r.sampling.top_p = options.top_p;
    r.seed = base + i * static_cast<uint64_t>(options.k);
    r.n = options.k;
    r.stop_tokens = stops;
    requests.push_back(r);
    if (options.greedy) {
      r.sampling = SamplingParams{};
      r.sampling.temperature = 0.0f;
      r.n = 1;
      requests.push_back(std::move(r));
    }
  }

  if (options.progress)
    std::fprintf(stderr, "[eval] generating %zu problems x (%d samples%s), up to %d tokens each\n",
                 problems.size(), options.k, options.greedy ? " + greedy" : "",
                 options.max_new_tokens);
  GenerateOptions gen;
  gen.tokenizer = &tokenizer;
  gen.max_batch = options.max_batch;
  gen.workers = options.workers;
  GenerationOutput out = generate(model, requests, gen);
  if (stats) *stats = out.stats;

  // Results are request-major: problem i's k samples, then its greedy sample.
  std::vector<ProblemResponses> responses(problems.size());
  size_t next = 0;
  for (ProblemResponses& pr : responses) {
    for (int j = 0; j < options.k; ++j) {
      GenerationResult& g = out.results[next++];
      pr.samples.push_back(forced + g.text);
      pr.sample_tokens.push_back(static_cast<int>(g.tokens.size()));
    }
    if (options.greedy) {
      GenerationResult& g = out.results[next++];
      pr.has_greedy = true;
      pr.greedy = forced + g.text;
      pr.greedy_tokens = static_cast<int>(g.tokens.size());
    }
  }
  SEEKR_CHECK(next == out.results.size(), "generate returned ", out.results.size(),
              " results; expected ", next);
  return responses;
}

EvalReport score_responses(const std::vector<rl::Problem>& problems,
                           const std::vector<ProblemResponses>& responses,
                           const Tokenizer& tokenizer, const EvalOptions& options) {
  SEEKR_REQUIRE(options.k >= 1, "evaluation needs k >= 1 samples per problem; got ", options.k);
  SEEKR_CHECK(responses.size() == problems.size(), responses.size(), " response sets for ",
              problems.size(), " problems");
  const rl::Tags& tags = options.format.tags;
  const size_t k = static_cast<size_t>(options.k);
  Accumulator all, by_lang[2];  // by_lang indexed by rl::Lang (En, Zh)

  for (size_t i = 0; i < problems.size(); ++i) {
    const rl::Problem& p = problems[i];
    const ProblemResponses& r = responses[i];
    SEEKR_CHECK(r.samples.size() == k && r.sample_tokens.size() == k, "problem ", i, " has ",
                r.samples.size(), " samples; expected k = ", k);
    SEEKR_CHECK(r.has_greedy == options.greedy, "problem ", i, ": greedy sample mismatch");
    Accumulator& lang = by_lang[p.lang == rl::Lang::Zh ? 1 : 0];

    size_t strict = 0, lenient = 0;
    std::vector<bool> correct(k);
    std::vector<std::optional<std::string>> answers(k);
    for (size_t j = 0; j < k; ++j) {
      const std::string& text = r.samples[j];
      correct[j] = rl::accuracy_reward(p, text, tags) == 1.0;
      strict += correct[j];
      lenient += rl::lenient_correct(p, text, tags);
      answers[j] = rl::extract_strict(text, tags);
      const bool well_formed = rl::format_reward(text, tags) == 1.0;
      const bool reasons = rl::reasons_first(text, tags);
      const bool mixed = reasons && rl::is_language_mixed(text, p.lang, tags);
      const double reasoning_tokens =
          reasons ? double(tokenizer.encode(rl::reasoning_text(text, tags)).size()) : 0.0;
      for (Accumulator* a : {&all, &lang}) {
        ++a->responses;
        a->well_formed += well_formed;
        a->reasoning += reasons;
        a->mixed += mixed;
        a->response_tokens += r.sample_tokens[j];
        a->reasoning_tokens += reasoning_tokens;
      }
    }
    const std::optional<size_t> vote = rl::majority_vote(
        answers, [&p](const std::string& a, const std::string& b) { return same_answer(p, a, b); });
    const double maj = vote && correct[*vote] ? 1.0 : 0.0;
    for (Accumulator* a : {&all, &lang}) {
      a->pass1_strict.push_back(double(strict) / double(k));
      a->pass1_lenient.push_back(double(lenient) / double(k));
      a->pass_at_k.push_back(rl::pass_at_k(k, strict, k));
      a->maj_at_k.push_back(maj);
      if (r.has_greedy) {
        a->greedy_strict.push_back(rl::accuracy_reward(p, r.greedy, tags) == 1.0 ? 1.0 : 0.0);
        a->greedy_lenient.push_back(rl::lenient_correct(p, r.greedy, tags) ? 1.0 : 0.0);
      }
    }
  }

  EvalReport report;
  report.k = options.k;
  report.all = all.finish(options.k, options.greedy);
  for (rl::Lang lang : {rl::Lang::En, rl::Lang::Zh}) {
    const Accumulator& a = by_lang[lang == rl::Lang::Zh ? 1 : 0];
    if (!a.pass1_strict.empty())
      report.by_lang.push_back({lang, a.finish(options.k, options.greedy)});
  }
  return report;
}

std::vector<rl::Problem> load_problem_set(const std::string& problems_path, const std::string& mix,
                                          size_t n, uint64_t seed, rl::Split split) {
  SEEKR_REQUIRE(problems_path.empty() != mix.empty(),
                "give exactly one of a problems file and a mix name");
  if (!problems_path.empty()) {
    std::vector<rl::Problem> problems = rl::load_problems_jsonl(problems_path);
    SEEKR_REQUIRE(!problems.empty(), problems_path, ": no problems");
    return problems;
  }
  SEEKR_REQUIRE(n >= 1, "a problem set from mix '", mix, "' needs n >= 1");
  return rl::make_split(rl::named_mix(mix), split, n, seed);
}

EvalReport evaluate(const Model& model, const Tokenizer& tokenizer,
                    const std::vector<rl::Problem>& problems, const EvalOptions& options) {
  SEEKR_REQUIRE(!problems.empty(), "evaluation needs at least one problem");
  const auto start = std::chrono::steady_clock::now();
  GenerationStats stats;
  const std::vector<ProblemResponses> responses =
      generate_responses(model, tokenizer, problems, options, &stats);
  const double generation_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EvalReport report = score_responses(problems, responses, tokenizer, options);
  report.generated_tokens = stats.generated_tokens;
  report.generation_seconds = generation_seconds;
  report.tokens_per_second = report.generation_seconds > 0
                                 ? double(stats.generated_tokens) / report.generation_seconds
                                 : 0.0;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.progress)
    std::fprintf(stderr, "[eval] %zu problems: pass@1 %.1f%%, %lld tokens in %.1fs (%.0f tok/s)\n",
                 problems.size(), 100 * report.all.pass1_strict.mean,
                 static_cast<long long>(report.generated_tokens), report.seconds,
                 report.tokens_per_second);
  return report;
}

}  // namespace seekr::r1
