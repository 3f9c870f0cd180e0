// Held-out evaluation and rejection sampling: exact metrics on hand-made responses, and both
// run end to end on a micro model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/file_io.h"
#include "model/config.h"
#include "model/model.h"
#include "r1/evaluate.h"
#include "r1/sampling.h"
#include "rl/format.h"
#include "rl/rewards.h"
#include "rl/stats.h"
#include "rl/tasks.h"
#include "serve/generate.h"
#include "tokenizer/tokenizer.h"

namespace seekr::r1 {
namespace {

const Tokenizer& micro_tokenizer() {
  static const Tokenizer tok = [] {
    std::vector<std::string> texts;
    for (int i = 0; i < 40; ++i)
      texts.push_back("Q: what is " + std::to_string(i * 37) + " + " + std::to_string(i * 11) +
                      "?\nA: one plus two is three, 三加四等于七, the answer " +
                      std::to_string(i * 48));
    BpeTrainConfig cfg;
    cfg.vocab_size = 300;
    cfg.special_tokens = {"<bos>", "<eos>", "<think>", "</think>", "<answer>", "</answer>"};
    cfg.bos_token = "<bos>";
    cfg.max_digits = 1;
    return train_bpe(texts, cfg);
  }();
  return tok;
}

ModelConfig micro_config() {
  ModelConfig c =
      ModelConfig::from_file(std::string(SEEKR_SHARED_DIR) + "/bench-configs/tiny.json");
  c.vocab_size = micro_tokenizer().vocab_size();
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.moe_intermediate_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.kv_lora_rank = 16;
  c.qk_nope_head_dim = 8;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 8;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.n_group = 2;
  c.topk_group = 1;
  c.max_position_embeddings = 128;
  c.num_nextn_predict_layers = 0;
  c.eos_token_id = 1;
  c.bos_token_id = 0;
  return c;
}

const Model& micro_model() {
  static const Model* m = [] {
    auto* model = new Model(micro_config());
    model->init_weights(7);
    return model;
  }();
  return *m;
}

rl::Problem number_problem(std::string prompt, std::string answer, rl::Lang lang) {
  rl::Problem p;
  p.task = "add";
  p.lang = lang;
  p.prompt = std::move(prompt);
  p.answer = std::move(answer);
  p.key = p.prompt;
  return p;
}

ProblemResponses responses(std::vector<std::string> samples, std::vector<int> tokens,
                           std::string greedy) {
  ProblemResponses r;
  r.samples = std::move(samples);
  r.sample_tokens = std::move(tokens);
  r.has_greedy = true;
  r.greedy = std::move(greedy);
  r.greedy_tokens = 3;
  return r;
}

void expect_interval(const rl::Interval& got, const rl::Interval& want, const char* what) {
  EXPECT_NEAR(got.mean, want.mean, 1e-12) << what;
  EXPECT_NEAR(got.lo, want.lo, 1e-12) << what;
  EXPECT_NEAR(got.hi, want.hi, 1e-12) << what;
}

double reasoning_tokens(const std::string& text) {
  return double(micro_tokenizer().encode(rl::reasoning_text(text)).size());
}

// Three problems, k = 4, with every outcome known by construction (see the comments).
struct HandMade {
  std::vector<rl::Problem> problems = {number_problem("1+2", "3", rl::Lang::En),
                                       number_problem("4+6", "10", rl::Lang::En),
                                       number_problem("三加四", "7", rl::Lang::Zh)};
  std::vector<ProblemResponses> sets = {
      responses({"<think>one plus two</think><answer>3</answer>",  // correct, formatted
                 "<answer>3</answer>",  // correct, no reasoning, not formatted
                 "the answer is 3",     // lenient only
                 "<think>一 plus</think><answer>4</answer>"},  // wrong, formatted, mixed
                {10, 20, 30, 40}, "<answer>3</answer>"),       // greedy: correct
      responses({"<think>x</think><answer>9</answer>",         // wrong
                 "<think>x</think><answer>9</answer>",         // wrong
                 "<think>y</think><answer>10</answer>",        // correct
                 "<answer>10.0</answer>"},  // correct; votes with "10": 2-2 tie, 9 came first
                {5, 5, 5, 5}, "10"),        // greedy: lenient only
      responses({"<think>三加四</think><answer>7</answer>",           // correct, formatted
                 "<think>three plus four</think><answer>7</answer>",  // correct, mixed
                 "<think>三加四</think>",                             // reasons, no answer
                 ""},
                {1, 2, 3, 4}, "<answer>8</answer>"),  // greedy: wrong
  };
};

TEST(ScoreResponses, ExactMetricsOnHandMadeResponses) {
  HandMade h;
  EvalOptions opt;
  opt.k = 4;
  const EvalReport r = score_responses(h.problems, h.sets, micro_tokenizer(), opt);
  EXPECT_EQ(r.k, 4);
  const EvalMetrics& a = r.all;
  EXPECT_EQ(a.problems, 3u);
  EXPECT_EQ(a.responses, 12u);
  // Per problem c/k: strict (2, 2, 2)/4, lenient (3, 2, 2)/4; normal interval over problems.
  expect_interval(a.pass1_strict, rl::mean_interval({0.5, 0.5, 0.5}), "pass1 strict");
  expect_interval(a.pass1_lenient, rl::mean_interval({0.75, 0.5, 0.5}), "pass1 lenient");
  expect_interval(a.pass_at_k, rl::mean_interval({1, 1, 1}), "pass@k");
  expect_interval(a.maj_at_k, rl::mean_interval({1, 0, 1}), "maj@k");
  ASSERT_TRUE(a.has_greedy);
  expect_interval(a.greedy_strict, rl::wilson_interval(1, 3), "greedy strict");
  expect_interval(a.greedy_lenient, rl::wilson_interval(2, 3), "greedy lenient");
  EXPECT_DOUBLE_EQ(a.format_rate, 7.0 / 12);
  EXPECT_DOUBLE_EQ(a.reasons_first_rate, 8.0 / 12);
  EXPECT_EQ(a.reasoning_responses, 8u);
  EXPECT_DOUBLE_EQ(a.mixed_rate, 2.0 / 8);
  EXPECT_DOUBLE_EQ(a.mean_response_tokens, 130.0 / 12);
  double want_reasoning = 0;
  for (const ProblemResponses& s : h.sets)
    for (const std::string& t : s.samples)
      if (rl::reasons_first(t)) want_reasoning += reasoning_tokens(t);
  EXPECT_GT(want_reasoning, 8.0);
  EXPECT_DOUBLE_EQ(a.mean_reasoning_tokens, want_reasoning / 8);

  ASSERT_EQ(r.by_lang.size(), 2u);
  EXPECT_EQ(r.by_lang[0].first, rl::Lang::En);
  EXPECT_EQ(r.by_lang[1].first, rl::Lang::Zh);
  const EvalMetrics& en = r.by_lang[0].second;
  const EvalMetrics& zh = r.by_lang[1].second;
  EXPECT_EQ(en.problems, 2u);
  EXPECT_EQ(zh.problems, 1u);
  EXPECT_DOUBLE_EQ(en.pass1_lenient.mean, 0.625);
  EXPECT_DOUBLE_EQ(en.maj_at_k.mean, 0.5);
  EXPECT_DOUBLE_EQ(zh.maj_at_k.mean, 1.0);
  expect_interval(en.greedy_strict, rl::wilson_interval(1, 2), "en greedy");
  expect_interval(zh.greedy_lenient, rl::wilson_interval(0, 1), "zh greedy lenient");
  EXPECT_DOUBLE_EQ(en.format_rate, 5.0 / 8);
  EXPECT_DOUBLE_EQ(zh.format_rate, 2.0 / 4);
  EXPECT_DOUBLE_EQ(en.mixed_rate, 1.0 / 5);
  EXPECT_DOUBLE_EQ(zh.mixed_rate, 1.0 / 3);
  EXPECT_DOUBLE_EQ(en.mean_response_tokens, 120.0 / 8);
  EXPECT_DOUBLE_EQ(zh.mean_response_tokens, 10.0 / 4);

  // The JSON carries the same numbers under the documented keys.
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["k"], 4);
  EXPECT_DOUBLE_EQ(j["maj_at_k"]["mean"].get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(j["by_lang"]["zh"]["mixed_rate"].get<double>(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(j["greedy_lenient"]["lo"].get<double>(), rl::wilson_interval(2, 3).lo);
  for (const char* key : {"pass1_strict", "pass1_lenient", "pass_at_k", "reasons_first_rate",
                          "mean_reasoning_tokens", "format_rate", "tokens_per_second"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_NE(r.to_table().find("maj@4"), std::string::npos);
  EXPECT_NE(r.markdown_row("base").find("| base | "), std::string::npos);
}

TEST(ScoreResponses, OneSampleUsesWilsonAndPassAtKIsUnbiased) {
  HandMade h;
  EvalOptions opt;
  opt.k = 1;
  opt.greedy = false;
  std::vector<ProblemResponses> first(3);
  for (size_t i = 0; i < 3; ++i) {
    first[i].samples = {h.sets[i].samples[i == 1 ? 2 : 0]};  // correct
    first[i].sample_tokens = {4};
  }
  first[2].samples = {"<answer>6</answer>"};  // wrong: 2 of 3 correct
  EvalReport r = score_responses(h.problems, first, micro_tokenizer(), opt);
  expect_interval(r.all.pass1_strict, rl::wilson_interval(2, 3), "k = 1");
  EXPECT_FALSE(r.all.has_greedy);
  EXPECT_TRUE(r.to_json()["greedy_strict"].is_null());

  // k = 4 with c of the samples correct (they come first): pass@1 = c/4, pass@4 as
  // rl::pass_at_k, maj@4 correct from c = 2 on (a 2-2 tie goes to the class seen first).
  opt.k = 4;
  opt.greedy = true;
  for (int c = 0; c <= 4; ++c) {
    std::vector<ProblemResponses> sets = {h.sets[0]};
    for (int j = 0; j < 4; ++j)
      sets[0].samples[j] = j < c ? "<answer>3</answer>" : "<answer>5</answer>";
    r = score_responses({h.problems[0]}, sets, micro_tokenizer(), opt);
    EXPECT_DOUBLE_EQ(r.all.pass_at_k.mean, rl::pass_at_k(4, c, 4)) << c;
    EXPECT_DOUBLE_EQ(r.all.pass1_strict.mean, c / 4.0) << c;
    EXPECT_DOUBLE_EQ(r.all.maj_at_k.mean, c >= 2 ? 1.0 : 0.0) << c;
  }
}

TEST(Evaluate, RunsEndToEndAndIsDeterministic) {
  const std::vector<rl::Problem> problems =
      rl::make_split(rl::named_mix("add"), rl::Split::Eval, 6, 1);
  EvalOptions opt;
  opt.k = 2;
  opt.max_new_tokens = 8;
  opt.seed = 3;
  opt.max_batch = 5;  // fewer slots than sequences: admission as slots free up
  const EvalReport a = evaluate(micro_model(), micro_tokenizer(), problems, opt);
  const EvalReport b = evaluate(micro_model(), micro_tokenizer(), problems, opt);
  EXPECT_EQ(a.all.problems, 6u);
  EXPECT_EQ(a.all.responses, 12u);
  EXPECT_GT(a.generated_tokens, 0);
  EXPECT_LE(a.generated_tokens, 6 * 3 * 8);
  EXPECT_GT(a.tokens_per_second, 0);
  auto metrics = [](const EvalReport& r) {
    nlohmann::json j = r.to_json();
    for (const char* timing : {"generation_seconds", "seconds", "tokens_per_second"})
      j.erase(timing);
    return j;
  };
  EXPECT_EQ(metrics(a), metrics(b));

  const std::vector<ProblemResponses> r1 =
      generate_responses(micro_model(), micro_tokenizer(), problems, opt);
  const std::vector<ProblemResponses> r2 =
      generate_responses(micro_model(), micro_tokenizer(), problems, opt);
  opt.seed = 4;
  const std::vector<ProblemResponses> r3 =
      generate_responses(micro_model(), micro_tokenizer(), problems, opt);
  bool any_differs = false;
  for (size_t i = 0; i < problems.size(); ++i) {
    EXPECT_EQ(r1[i].samples, r2[i].samples);
    EXPECT_EQ(r1[i].greedy, r3[i].greedy);  // greedy does not depend on the seed
    any_differs |= r1[i].samples != r3[i].samples;
  }
  EXPECT_TRUE(any_differs) << "another seed should change some sample";
}

TEST(Evaluate, ForcedReasoningPrependsTheTag) {
  const std::vector<rl::Problem> problems =
      rl::make_split(rl::named_mix("add"), rl::Split::Eval, 3, 2);
  EvalOptions opt;
  opt.k = 2;
  opt.max_new_tokens = 6;
  opt.force_reasoning = true;
  GenerationStats forced_stats, plain_stats;
  const std::vector<ProblemResponses> forced =
      generate_responses(micro_model(), micro_tokenizer(), problems, opt, &forced_stats);
  for (const ProblemResponses& r : forced) {
    for (const std::string& t : r.samples) EXPECT_EQ(t.rfind("<think>", 0), 0u) << t;
    EXPECT_EQ(r.greedy.rfind("<think>", 0), 0u) << r.greedy;
  }
  opt.force_reasoning = false;
  generate_responses(micro_model(), micro_tokenizer(), problems, opt, &plain_stats);
  // The tag is one special token of the prompt, in both the sampled and the greedy request.
  EXPECT_EQ(forced_stats.prompt_tokens, plain_stats.prompt_tokens + 2 * 3);
}

TEST(Evaluate, ProblemSetFromFileOrMix) {
  const std::vector<rl::Problem> held_out = load_problem_set("", "add", 5, 9, rl::Split::Eval);
  ASSERT_EQ(held_out.size(), 5u);
  for (const rl::Problem& p : held_out) EXPECT_TRUE(rl::is_held_out(p, 0.1)) << p.prompt;
  const std::string path =
      ::testing::TempDir() + "/problems_" + std::to_string(::getpid()) + ".jsonl";
  write_file_atomic(path, rl::problem_to_json(held_out[0]) + "\n");
  const std::vector<rl::Problem> from_file = load_problem_set(path, "", 0, 0, rl::Split::Eval);
  std::remove(path.c_str());
  ASSERT_EQ(from_file.size(), 1u);
  EXPECT_EQ(from_file[0].prompt, held_out[0].prompt);
  EXPECT_THROW(load_problem_set(path, "add", 5, 9, rl::Split::Eval), seekr::Error);
  EXPECT_THROW(load_problem_set("", "", 5, 9, rl::Split::Eval), seekr::Error);
}

// One English problem answered six ways, the same problem again, and a Chinese problem.
struct FilterCase {
  rl::Problem en = number_problem("1+2", "3", rl::Lang::En);
  rl::Problem zh = number_problem("三加四", "7", rl::Lang::Zh);
  std::vector<rl::Problem> problems = {en, en, zh};
  std::vector<ProblemResponses> sets;
  FilterCase() {
    const std::string good = "<think>one plus two</think><answer>3</answer>";
    auto set = [](std::vector<std::string> texts) {
      ProblemResponses r;
      for (size_t j = 0; j < texts.size(); ++j) r.sample_tokens.push_back(int(10 + j));
      r.samples = std::move(texts);
      return r;
    };
    sets = {set({good,
                 good,                                              // duplicate
                 "<answer>3</answer>",                              // correct, not formatted
                 "<think>一 plus two</think><answer>3</answer>",    // correct, mixed
                 "<think>add</think><answer>4</answer>",            // wrong
                 "<think>one and two</think><answer>3</answer>"}),  // correct, new text
            set({good}),  // the same problem again: a duplicate of its first response
            set({"<think>三加四</think><answer>8</answer>"})};  // wrong
  }
};

TEST(RejectionSampling, KeepsVerifiedWellFormedConsistentDistinctResponses) {
  FilterCase f;
  SampleOptions opt;
  SampleReport rep;
  std::vector<AcceptedSample> kept = filter_samples(f.problems, f.sets, opt, &rep);
  EXPECT_EQ(rep.problems, 2u);
  EXPECT_EQ(rep.generated, 8u);
  EXPECT_EQ(rep.generated_tokens, 10 + 11 + 12 + 13 + 14 + 15 + 10 + 10);
  EXPECT_EQ(rep.correct, 6u);
  EXPECT_EQ(rep.well_formed, 7u);
  EXPECT_EQ(rep.language_ok, 7u);
  EXPECT_EQ(rep.passed, 4u);
  EXPECT_EQ(rep.duplicates, 2u);
  EXPECT_EQ(rep.over_limit, 1u);
  EXPECT_EQ(rep.accepted, 1u);
  EXPECT_EQ(rep.problems_accepted, 1u);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].completion, f.sets[0].samples[0]);
  EXPECT_EQ(kept[0].prompt, rl::apply_template(rl::Template::QA, "1+2"));
  EXPECT_EQ(kept[0].tokens, 10);
  EXPECT_EQ(kept[0].problem.answer, "3");

  // Without the format and language checks, and up to three per problem: the unformatted and
  // the mixed responses join; the sixth is over the limit.
  opt.require_format = false;
  opt.require_language = false;
  opt.max_per_problem = 3;
  kept = filter_samples(f.problems, f.sets, opt, &rep);
  EXPECT_EQ(rep.passed, 6u);
  EXPECT_EQ(rep.duplicates, 2u);
  EXPECT_EQ(rep.over_limit, 1u);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[1].completion, "<answer>3</answer>");
  EXPECT_EQ(kept[2].completion, f.sets[0].samples[3]);
}

TEST(RejectionSampling, JsonlRoundTrip) {
  FilterCase f;
  std::vector<AcceptedSample> samples = {
      {f.en, "Q: 1+2\nA:", "<think>one plus two</think><answer>3</answer>", 9},
      {f.zh, rl::apply_template(rl::Template::QA, f.zh.prompt),
       "<think>三加四 \"quoted\"\nnext</think><answer>7</answer>", 12}};
  samples[1].problem.task = "add-zh";
  const std::string path =
      ::testing::TempDir() + "/samples_" + std::to_string(::getpid()) + ".jsonl";
  write_samples_jsonl(path, samples);
  const std::vector<nlohmann::json> lines = read_json_lines(path);
  std::remove(path.c_str());
  ASSERT_EQ(lines.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(lines[i].at("prompt"), samples[i].prompt);
    EXPECT_EQ(lines[i].at("completion"), samples[i].completion);
    EXPECT_EQ(lines[i].at("question"), samples[i].problem.prompt);
    EXPECT_EQ(lines[i].at("answer"), samples[i].problem.answer);
    EXPECT_EQ(lines[i].at("task"), samples[i].problem.task);
    EXPECT_EQ(lines[i].size(), 6u);
  }
  EXPECT_EQ(lines[0].at("lang"), "en");
  EXPECT_EQ(lines[1].at("lang"), "zh");
}

TEST(RejectionSampling, RunsEndToEnd) {
  const std::vector<rl::Problem> problems =
      rl::make_split(rl::named_mix("add"), rl::Split::Train, 4, 5);
  SampleOptions opt;
  opt.n = 3;
  opt.max_new_tokens = 6;
  SampleReport rep;
  const std::vector<AcceptedSample> kept =
      rejection_sample(micro_model(), micro_tokenizer(), problems, opt, &rep);
  EXPECT_EQ(rep.generated, 12u);
  EXPECT_GT(rep.generated_tokens, 0);
  EXPECT_LE(rep.generated_tokens, 12 * 6);
  EXPECT_GT(rep.seconds, 0);
  // Whatever an untrained model produced, every kept sample passed the checks.
  EXPECT_EQ(kept.size(), rep.accepted);
  for (const AcceptedSample& s : kept) {
    EXPECT_EQ(rl::accuracy_reward(s.problem, s.completion), 1.0);
    EXPECT_EQ(rl::format_reward(s.completion), 1.0);
  }
}

}  // namespace
}  // namespace seekr::r1
