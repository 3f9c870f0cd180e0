#include "r1/pipeline.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include "core/check.h"
#include "core/file_io.h"
#include "model/model.h"
#include "r1/common.h"
#include "r1/evaluate.h"
#include "r1/grpo_trainer.h"
#include "r1/report.h"
#include "r1/sampling.h"
#include "rl/format.h"
#include "rl/tasks.h"
#include "serve/generate.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/sft.h"

namespace seekr::r1 {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- configuration ------------------------------------------------------------------------

json R1Config::to_json() const {
  return {{"preset", preset},
          {"teacher_config", teacher_config.empty() ? json(nullptr) : json::parse(teacher_config)},
          {"student_config", student_config.empty() ? json(nullptr) : json::parse(student_config)},
          {"seed", seed},
          {"threads", threads},
          {"workers", workers},
          {"mix", mix},
          {"corpus_docs", corpus_docs},
          {"reasoning_share", reasoning_share},
          {"student_reasoning_share", student_reasoning_share},
          {"wrong_share", wrong_share},
          {"foreign_reasoning", foreign_reasoning},
          {"eval_problems", eval_problems},
          {"tokenizer_vocab", tokenizer_vocab},
          {"base_steps", base_steps},
          {"student_steps", student_steps},
          {"pretrain_batch", pretrain_batch},
          {"pretrain_seq", pretrain_seq},
          {"pretrain_lr", pretrain_lr},
          {"eval_k", eval_k},
          {"max_new_tokens", max_new_tokens},
          {"r1zero_steps", r1zero_steps},
          {"reasoning_steps", reasoning_steps},
          {"final_steps", final_steps},
          {"student_rl_steps", student_rl_steps},
          {"prompts_per_step", prompts_per_step},
          {"group", group},
          {"rl_lr", rl_lr},
          {"language_weight", language_weight},
          {"format_weight", format_weight},
          {"coldstart_examples", coldstart_examples},
          {"coldstart_steps", coldstart_steps},
          {"rs_sft_steps", rs_sft_steps},
          {"sft_lr", sft_lr},
          {"rejection_problems", rejection_problems},
          {"rejection_samples", rejection_samples}};
}

R1Config r1_preset(const std::string& name) {
  R1Config c;
  c.preset = name;
  if (name == "quick") return c;
  if (name == "full") {  // the quick preset's task, longer at every stage
    c.corpus_docs = 200000;
    c.base_steps = 5000;
    c.student_steps = 1500;
    c.eval_problems = 1000;
    c.eval_k = 8;
    c.r1zero_steps = 300;
    c.reasoning_steps = 200;
    c.final_steps = 150;
    c.student_rl_steps = 200;
    c.coldstart_examples = 2000;
    c.coldstart_steps = 150;
    c.rs_sft_steps = 400;
    c.rejection_problems = 4000;
    return c;
  }
  if (name == "smoke") {  // every stage, minutes shrunk to seconds: for tests
    c.corpus_docs = 3000;
    c.base_steps = 30;
    c.student_steps = 20;
    c.pretrain_batch = 8;
    c.pretrain_seq = 128;
    c.eval_problems = 48;
    c.eval_k = 2;
    c.max_new_tokens = 48;
    c.r1zero_steps = 3;
    c.reasoning_steps = 2;
    c.final_steps = 2;
    c.student_rl_steps = 2;
    c.prompts_per_step = 4;
    c.group = 4;
    c.coldstart_examples = 64;
    c.coldstart_steps = 4;
    c.rs_sft_steps = 4;
    c.rejection_problems = 48;
    c.rejection_samples = 2;
    return c;
  }
  throw Error("unknown preset \"" + name + "\" (expected quick, full or smoke)");
}

const std::vector<std::string>& r1_stage_names() {
  static const std::vector<std::string> names = {
      "data",         "base",   "r1zero", "r1zero_lang",  "coldstart",  "reasoning_rl",
      "rejection",    "rs_sft", "final_rl", "student_base", "student_rl", "student_distill"};
  return names;
}

namespace {

// The teacher: about 0.85M parameters, the size of the R1-Zero prototype's model, with MLA and
// DeepSeekMoE (8 routed experts of which 2 are active, 1 shared expert, sigmoid gates with the
// aux-loss-free bias).
const char* kTeacherConfig = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
  "vocab_size": 384, "hidden_size": 128, "intermediate_size": 384,
  "moe_intermediate_size": 64, "num_hidden_layers": 3, "first_k_dense_replace": 1,
  "moe_layer_freq": 1, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": null,
  "kv_lora_rank": 32, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32,
  "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 1,
  "topk_group": 1, "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true,
  "routed_scaling_factor": 1.0, "num_nextn_predict_layers": 0, "hidden_act": "silu",
  "rms_norm_eps": 1e-06, "rope_theta": 10000, "rope_scaling": null,
  "max_position_embeddings": 256, "tie_word_embeddings": false, "bos_token_id": 0,
  "eos_token_id": 1, "initializer_range": 0.02, "torch_dtype": "float32"
})";

// The student: a dense model about a third of the teacher's size (all layers dense).
const char* kStudentConfig = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
  "vocab_size": 384, "hidden_size": 96, "intermediate_size": 256,
  "moe_intermediate_size": 64, "num_hidden_layers": 2, "first_k_dense_replace": 2,
  "moe_layer_freq": 1, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": null,
  "kv_lora_rank": 32, "qk_nope_head_dim": 24, "qk_rope_head_dim": 8, "v_head_dim": 24,
  "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 1,
  "topk_group": 1, "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true,
  "routed_scaling_factor": 1.0, "num_nextn_predict_layers": 0, "hidden_act": "silu",
  "rms_norm_eps": 1e-06, "rope_theta": 10000, "rope_scaling": null,
  "max_position_embeddings": 256, "tie_word_embeddings": false, "bos_token_id": 0,
  "eos_token_id": 1, "initializer_range": 0.02, "torch_dtype": "float32"
})";

const std::vector<std::string> kSpecialTokens = {
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<think>", "</think>",
    "<answer>", "</answer>", "<｜User｜>", "<｜Assistant｜>"};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Creates the run directory first: the metrics log opens inside it.
std::string metrics_path(const std::string& run_dir) {
  make_dirs(run_dir);
  return run_dir + "/metrics.jsonl";
}

class Pipeline {
 public:
  explicit Pipeline(const R1RunOptions& opt)
      : opt_(opt), c_(opt_.config), run_(opt.run_dir), log_(metrics_path(run_)) {}

  json run();

 private:
  std::string stage_dir(const std::string& s) const { return run_ + "/stages/" + s; }
  std::string model_dir(const std::string& s) const { return stage_dir(s) + "/model"; }
  bool done(const std::string& s) const { return fs::exists(stage_dir(s) + "/done.json"); }
  json result(const std::string& s) const {
    return json::parse(read_file(stage_dir(s) + "/done.json"));
  }
  void finish_stage(const std::string& s, json r, double t0) {
    r["stage"] = s;
    r["seconds"] = now_seconds() - t0;
    write_file_atomic(stage_dir(s) + "/done.json", r.dump(2) + "\n");
    log_.append({{"type", "stage_done"}, {"stage", s}, {"seconds", r["seconds"]}});
    std::fprintf(stderr, "[r1] stage %s done in %s\n", s.c_str(),
                 format_duration(r["seconds"].get<double>()).c_str());
  }
  uint64_t seed_for(const std::string& s) const {
    const auto& names = r1_stage_names();
    uint64_t i = std::find(names.begin(), names.end(), s) - names.begin();
    return c_.seed * 1000003ULL + i * 7919ULL;
  }

  void load_data();
  std::unique_ptr<Model> new_model(const char* config_json, uint64_t seed) const;
  std::unique_ptr<Model> load_model(const std::string& stage) const {
    return std::move(load_inference_model(model_dir(stage)).model);
  }
  void save_model(const std::string& stage, const Model& m) const {
    save_model_dir(model_dir(stage), m, tokenizer_->to_json());
  }
  PolicyFormat format() const { return PolicyFormat{rl::Template::QA, rl::Tags{}}; }

  json evaluate_model(const Model& m, const std::string& stage, bool forced = false) const;
  json pretrain(const std::string& stage, const char* config_json, double reasoning_share,
                int64_t steps);
  json sft(const std::string& stage, const std::string& from,
           const std::vector<rl::TextPair>& pairs, int64_t steps, double max_seconds = 0);
  json grpo(const std::string& stage, const std::string& from, int64_t steps,
            const rl::RewardWeights& rewards, bool track_heldout);

  // A teacher that solves little leaves few samples; below kMinSftExamples the set is topped up
  // with cold-start examples (counted in the stage's result) so the stage still trains.
  void top_up_with_cold_start(std::vector<rl::TextPair>& pairs, const std::string& stage) const {
    constexpr size_t kMinSftExamples = 64;
    if (pairs.size() >= kMinSftExamples) return;
    const auto problems = rl::make_split(rl::named_mix(c_.mix), rl::Split::Train,
                                         kMinSftExamples - pairs.size(), seed_for(stage) + 5);
    for (auto& p : rl::cold_start_examples(problems, format().tmpl)) pairs.push_back(std::move(p));
  }

  void stage_data();
  json run_stage(const std::string& s);

  R1RunOptions opt_;
  const R1Config& c_;
  std::string run_;
  mutable MetricsLog log_;
  std::optional<Tokenizer> tokenizer_;
  std::vector<rl::Problem> eval_set_;
};

std::unique_ptr<Model> Pipeline::new_model(const char* config_json, uint64_t seed) const {
  ModelConfig cfg = ModelConfig::from_json_text(config_json, "built-in R1 config");
  // Exactly the trained tokenizer's vocabulary, so the policy can never sample an id that does
  // not decode.
  cfg.vocab_size = tokenizer_->vocab_size();
  auto m = std::make_unique<Model>(cfg);
  m->init_weights(seed);
  return m;
}

void Pipeline::load_data() {
  if (!tokenizer_) tokenizer_ = Tokenizer::from_file(run_ + "/data/tokenizer.json");
  if (eval_set_.empty()) eval_set_ = rl::load_problems_jsonl(run_ + "/data/eval.jsonl");
}

void Pipeline::stage_data() {
  const double t0 = now_seconds();
  const std::string dir = run_ + "/data";
  make_dirs(dir);
  rl::CorpusSpec spec;
  spec.reasoning_share = c_.reasoning_share;
  spec.wrong_share = c_.wrong_share;
  spec.foreign_reasoning_share = c_.foreign_reasoning;
  const auto corpus = rl::make_corpus(rl::named_mix(c_.mix), 20000, seed_for("data"), spec);
  std::vector<std::string> texts;
  for (const auto& d : corpus) texts.push_back(d.prompt + d.completion);
  BpeTrainConfig tc;
  tc.vocab_size = c_.tokenizer_vocab;
  tc.special_tokens = kSpecialTokens;
  tc.bos_token = kSpecialTokens[0];
  tc.max_digits = 1;
  Tokenizer tok = train_bpe(texts, tc);
  tok.save(dir + "/tokenizer.json");
  const auto eval = rl::make_split(rl::named_mix(c_.mix), rl::Split::Eval, c_.eval_problems,
                                   seed_for("data") + 1);
  std::string lines;
  for (const auto& p : eval) lines += rl::problem_to_json(p) + "\n";
  write_file_atomic(dir + "/eval.jsonl", lines);
  std::string sample;
  for (size_t i = 0; i < 50 && i < corpus.size(); ++i)
    sample += json{{"prompt", corpus[i].prompt}, {"completion", corpus[i].completion}}.dump() + "\n";
  write_file_atomic(dir + "/corpus-sample.jsonl", sample);
  make_dirs(stage_dir("data"));
  finish_stage("data",
               {{"tokenizer_vocab", tok.vocab_size()}, {"eval_problems", eval.size()}}, t0);
}

json Pipeline::evaluate_model(const Model& m, const std::string& stage, bool forced) const {
  EvalOptions eo;
  eo.k = c_.eval_k;
  eo.temperature = 1.0f;
  eo.greedy = true;
  eo.max_new_tokens = c_.max_new_tokens;
  eo.seed = seed_for(stage) + (forced ? 17 : 0);
  eo.force_reasoning = forced;
  eo.format = format();
  eo.workers = c_.workers;
  EvalReport r = evaluate(m, *tokenizer_, eval_set_, eo);
  std::fprintf(stderr, "[%s] held-out%s: pass@1 %.1f%% (lenient %.1f%%), greedy %.1f%%, "
               "reasons first %.1f%%, mixed %.1f%%, %.0f tok/s\n",
               stage.c_str(), forced ? " (forced to reason)" : "",
               100 * r.all.pass1_strict.mean, 100 * r.all.pass1_lenient.mean,
               100 * r.all.greedy_strict.mean, 100 * r.all.reasons_first_rate,
               100 * r.all.mixed_rate, r.tokens_per_second);
  json j = r.to_json();
  log_.append({{"type", "heldout"}, {"stage", stage}, {"forced", forced}, {"eval", j}});
  return j;
}

json Pipeline::pretrain(const std::string& stage, const char* config_json,
                        double reasoning_share, int64_t steps) {
  rl::CorpusSpec spec;
  spec.reasoning_share = reasoning_share;
  spec.wrong_share = c_.wrong_share;
  spec.foreign_reasoning_share = c_.foreign_reasoning;
  const auto corpus = rl::make_corpus(rl::named_mix(c_.mix), c_.corpus_docs, seed_for(stage), spec);
  const int32_t eos = 1;
  std::vector<SftExample> docs;
  docs.reserve(corpus.size());
  for (const auto& d : corpus)
    docs.push_back(make_sft_example(*tokenizer_, d.prompt, d.completion, eos,
                                    /*train_on_prompt=*/true));
  auto model = new_model(config_json, seed_for(stage));
  SftOptions so;
  so.steps = steps;
  so.batch = c_.pretrain_batch;
  so.max_len = c_.pretrain_seq;
  so.pack = true;
  so.lr = c_.pretrain_lr;
  // The copy and column skills arrive late (a loss plateau, then a drop after ~1,000 steps), so
  // the rate stays high: cosine to a third of the peak.
  so.min_lr = c_.pretrain_lr / 3;
  so.warmup = std::min<int64_t>(20, steps);
  so.weight_decay = 0.1;
  so.seed = seed_for(stage);
  so.threads = c_.threads;
  so.workers = c_.workers;
  so.log_every = 5;
  SftSummary s = run_sft(*model, docs, nullptr, so, &log_, stage);
  save_model(stage, *model);
  json r;
  r["params"] = model->params().size();
  r["train"] = {{"steps", s.steps_done},
                {"seconds", s.seconds},
                {"tokens", s.tokens_processed},
                {"tokens_per_second", s.seconds > 0 ? s.tokens_processed / s.seconds : 0},
                {"first_loss", s.losses.empty() ? 0 : s.losses.front()},
                {"last_loss", s.losses.empty() ? 0 : s.losses.back()}};
  r["eval"] = evaluate_model(*model, stage);
  r["eval_forced"] = evaluate_model(*model, stage, /*forced=*/true);
  return r;
}

json Pipeline::sft(const std::string& stage, const std::string& from,
                   const std::vector<rl::TextPair>& pairs, int64_t steps, double max_seconds) {
  SEEKR_REQUIRE(!pairs.empty(), "stage ", stage, ": no SFT examples");
  auto model = load_model(from);
  std::vector<SftExample> ex;
  for (const auto& p : pairs) ex.push_back(make_sft_example(*tokenizer_, p.prompt, p.completion, 1));
  SftOptions so;
  so.steps = steps;
  so.batch = 16;
  so.max_len = model->config().max_position_embeddings;
  so.lr = c_.sft_lr;
  so.min_lr = c_.sft_lr / 10;
  so.warmup = std::min<int64_t>(5, steps);
  so.weight_decay = 0.0;
  so.bias_gamma = 0;
  so.seed = seed_for(stage);
  so.threads = c_.threads;
  so.workers = c_.workers;
  so.max_seconds = max_seconds;
  so.log_every = 5;
  SftSummary s = run_sft(*model, ex, nullptr, so, &log_, stage);
  save_model(stage, *model);
  json r;
  r["train"] = {{"examples", ex.size()},
                {"steps", s.steps_done},
                {"stopped_by_time", s.stopped_by_time},
                {"seconds", s.seconds},
                {"tokens", s.tokens_processed},
                {"first_loss", s.losses.empty() ? 0 : s.losses.front()},
                {"last_loss", s.losses.empty() ? 0 : s.losses.back()}};
  r["eval"] = evaluate_model(*model, stage);
  return r;
}

json Pipeline::grpo(const std::string& stage, const std::string& from, int64_t steps,
                    const rl::RewardWeights& rewards, bool track_heldout) {
  auto model = load_model(from);
  GrpoOptions go;
  go.steps = steps;
  go.prompts_per_step = c_.prompts_per_step;
  go.group = c_.group;
  go.lr = c_.rl_lr;
  go.loss.mode = GrpoMode::kDapo;  // token-level, as the prototype
  go.loss.eps_low = 0.2f;
  go.loss.eps_high = 0.28f;
  go.loss.beta = 0.0f;
  go.max_new_tokens = c_.max_new_tokens;
  go.temperature = 1.0f;
  go.rewards = rewards;
  go.format = format();
  go.seed = seed_for(stage);
  go.threads = c_.threads;
  go.workers = c_.workers;
  go.micro_batch = 8;  // length-sorted: little padding (measured 1.9x faster than one batch)
  rl::ProblemSampler sampler(rl::named_mix(c_.mix), rl::Split::Train, seed_for(stage));
  // Held-out accuracy along the way (a quarter of the eval set, one sample each), for the
  // R1-Zero figure; its time is not counted in the stage's RL time.
  std::vector<rl::Problem> probe(eval_set_.begin(),
                                 eval_set_.begin() + std::min<size_t>(eval_set_.size(), 128));
  json curve = json::array();
  json steps_json = json::array();
  double probe_seconds = 0;
  auto probe_eval = [&](int64_t step) {
    const double t = now_seconds();
    EvalOptions eo;
    eo.k = 1;
    eo.greedy = false;
    eo.max_new_tokens = c_.max_new_tokens;
    eo.seed = seed_for(stage) + step;
    eo.format = format();
    eo.workers = c_.workers;
    EvalReport r = evaluate(*model, *tokenizer_, probe, eo);
    curve.push_back({{"step", step},
                     {"pass1_strict", r.all.pass1_strict.mean},
                     {"pass1_lenient", r.all.pass1_lenient.mean},
                     {"reasons_first", r.all.reasons_first_rate},
                     {"response_tokens", r.all.mean_response_tokens},
                     {"mixed", r.all.mixed_rate}});
    probe_seconds += now_seconds() - t;
  };
  const int64_t probe_every = std::max<int64_t>(1, steps / 6);
  if (track_heldout) probe_eval(0);
  int64_t rollout_tokens = 0, update_tokens = 0;
  GrpoSummary s = run_grpo(*model, *tokenizer_, go, [&sampler] { return sampler.next(); }, &log_,
                           stage, [&](const GrpoStepStats& st) {
                             rollout_tokens += st.rollout_tokens;
                             update_tokens += st.update_tokens;
                             steps_json.push_back({{"step", st.step},
                                                   {"reward", st.reward},
                                                   {"accuracy", st.accuracy},
                                                   {"reasons_first", st.reasons_first},
                                                   {"response_tokens", st.response_tokens},
                                                   {"reasoning_tokens", st.reasoning_tokens},
                                                   {"language_mixed", st.language_mixed}});
                             if (track_heldout && (st.step % probe_every == 0 || st.step == steps))
                               probe_eval(st.step);
                           });
  save_model(stage, *model);
  json r;
  const double rl_seconds = s.rollout_seconds + s.update_seconds;
  r["rl"] = s.to_json();
  r["rl_seconds"] = rl_seconds;
  r["rollout_tokens"] = rollout_tokens;
  r["update_tokens"] = update_tokens;
  r["rollout_tok_s"] = s.rollout_seconds > 0 ? rollout_tokens / s.rollout_seconds : 0;
  r["update_tok_s"] = s.update_seconds > 0 ? update_tokens / s.update_seconds : 0;
  r["probe_seconds"] = probe_seconds;
  r["steps"] = steps_json;
  r["heldout_curve"] = curve;
  r["eval"] = evaluate_model(*model, stage);
  return r;
}

json Pipeline::run_stage(const std::string& s) {
  const double t0 = now_seconds();
  make_dirs(stage_dir(s));
  json r;
  rl::RewardWeights accuracy_only;  // R1-Zero: the accuracy reward alone
  rl::RewardWeights with_language = accuracy_only;
  with_language.language = c_.language_weight;
  rl::RewardWeights r1_rewards = with_language;
  r1_rewards.format = c_.format_weight;
  if (s == "base") {
    r = pretrain(s, c_.teacher_config.empty() ? kTeacherConfig : c_.teacher_config.c_str(),
                 c_.reasoning_share, c_.base_steps);
  } else if (s == "r1zero") {
    r = grpo(s, "base", c_.r1zero_steps, accuracy_only, /*track_heldout=*/true);
    auto model = load_model(s);
    r["eval_forced"] = evaluate_model(*model, s, /*forced=*/true);
  } else if (s == "r1zero_lang") {
    r = grpo(s, "base", c_.r1zero_steps, with_language, /*track_heldout=*/true);
  } else if (s == "coldstart") {
    const auto problems =
        rl::make_split(rl::named_mix(c_.mix), rl::Split::Train, c_.coldstart_examples, seed_for(s));
    r = sft(s, "base", rl::cold_start_examples(problems, format().tmpl), c_.coldstart_steps);
  } else if (s == "reasoning_rl") {
    r = grpo(s, "coldstart", c_.reasoning_steps, r1_rewards, /*track_heldout=*/false);
  } else if (s == "rejection") {
    auto model = load_model("reasoning_rl");
    SampleOptions so;
    so.n = c_.rejection_samples;
    so.max_new_tokens = c_.max_new_tokens;
    so.seed = seed_for(s);
    so.format = format();
    so.workers = c_.workers;
    SampleReport rep;
    const auto problems = rl::make_split(rl::named_mix(c_.mix), rl::Split::Train,
                                         c_.rejection_problems, seed_for(s));
    auto kept = rejection_sample(*model, *tokenizer_, problems, so, &rep);
    write_samples_jsonl(stage_dir(s) + "/samples.jsonl", kept);
    r["report"] = rep.to_json();
  } else if (s == "rs_sft") {
    std::vector<rl::TextPair> pairs;
    for (const json& j : read_json_lines(stage_dir("rejection") + "/samples.jsonl"))
      pairs.push_back({j.at("prompt").get<std::string>(), j.at("completion").get<std::string>()});
    const size_t sampled = pairs.size();
    top_up_with_cold_start(pairs, s);
    r = sft(s, "base", pairs, c_.rs_sft_steps);
    r["rejection_samples"] = sampled;
    r["cold_start_top_up"] = pairs.size() - sampled;
  } else if (s == "final_rl") {
    r = grpo(s, "rs_sft", c_.final_steps, r1_rewards, /*track_heldout=*/false);
  } else if (s == "student_base") {
    r = pretrain(s, c_.student_config.empty() ? kStudentConfig : c_.student_config.c_str(),
                 c_.student_reasoning_share, c_.student_steps);
  } else if (s == "student_rl") {
    r = grpo(s, "student_base", c_.student_rl_steps, accuracy_only, /*track_heldout=*/false);
  } else if (s == "student_distill") {
    // The teacher's verified samples (the final R1 model), then SFT of the student for the
    // same compute as its RL took.
    auto teacher = load_model("final_rl");
    SampleOptions so;
    so.n = 2;
    so.max_new_tokens = c_.max_new_tokens;
    so.seed = seed_for(s);
    so.format = format();
    so.workers = c_.workers;
    SampleReport rep;
    const auto problems = rl::make_split(rl::named_mix(c_.mix), rl::Split::Train,
                                         c_.rejection_problems, seed_for(s));
    auto kept = rejection_sample(*teacher, *tokenizer_, problems, so, &rep);
    write_samples_jsonl(stage_dir(s) + "/teacher_samples.jsonl", kept);
    std::vector<rl::TextPair> pairs;
    for (const auto& k : kept) pairs.push_back({k.prompt, k.completion});
    top_up_with_cold_start(pairs, s);
    r["cold_start_top_up"] = pairs.size() - kept.size();
    // Same compute, counted in tokens so that the run stays deterministic: the student's RL
    // generated and trained on `budget` tokens; SFT gets as many steps as process about as many.
    const json& rl = result("student_rl");
    const int64_t budget =
        rl.at("rollout_tokens").get<int64_t>() + rl.at("update_tokens").get<int64_t>();
    int64_t example_tokens = 0;
    for (const auto& p : pairs)
      example_tokens += static_cast<int64_t>(tokenizer_->encode(p.prompt, true).size() +
                                             tokenizer_->encode(p.completion).size() + 1);
    const double per_step = 16.0 * example_tokens / std::max<size_t>(1, pairs.size());
    const int64_t steps = std::max<int64_t>(1, static_cast<int64_t>(budget / per_step + 0.5));
    r.update(sft(s, "student_base", pairs, steps));
    r["teacher_samples"] = rep.to_json();
    r["budget_tokens"] = budget;
  } else {
    throw Error("unknown stage " + s);
  }
  finish_stage(s, r, t0);
  return r;
}

json Pipeline::run() {
  make_dirs(run_);
  const std::string cfg_path = run_ + "/config.json";
  json cfg = c_.to_json();
  if (fs::exists(cfg_path)) {
    json old = json::parse(read_file(cfg_path));
    SEEKR_REQUIRE(old == cfg, run_, " holds a run made with other settings (", cfg_path,
                  "); use another --out directory or delete it");
  } else {
    write_file_atomic(cfg_path, cfg.dump(2) + "\n");
  }
  if (c_.threads > 0) omp_set_num_threads(c_.threads);
  const double t0 = now_seconds();
  for (const std::string& s : r1_stage_names()) {
    if (done(s)) {
      std::fprintf(stderr, "[r1] stage %s: already done, skipped\n", s.c_str());
    } else {
      std::fprintf(stderr, "[r1] stage %s\n", s.c_str());
      if (s == "data") {
        stage_data();
      } else {
        load_data();
        run_stage(s);
      }
    }
    if (s == opt_.stop_after) break;
  }
  std::map<std::string, json> results;
  for (const std::string& s : r1_stage_names())
    if (done(s)) results[s] = result(s);
  json summary = write_report(run_, cfg, results);
  std::fprintf(stderr, "[r1] finished in %s: %s/report.md\n",
               format_duration(now_seconds() - t0).c_str(), run_.c_str());
  return summary;
}

}  // namespace

const char* r1_teacher_config_json() { return kTeacherConfig; }
const char* r1_student_config_json() { return kStudentConfig; }

json run_r1(const R1RunOptions& options) {
  Pipeline p(options);
  return p.run();
}

}  // namespace seekr::r1
