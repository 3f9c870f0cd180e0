#include "r1/grpo_trainer.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/check.h"
#include "core/rng.h"
#include "core/workers.h"
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "rl/format.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace seekr::r1 {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A request seed that depends on (seed, step, round, prompt index) only, so a run is
// reproducible and no two prompts of a run share a sampling stream (sample j of a request draws
// from Rng(request seed + j); the 64-bit mix keeps those ranges apart).
uint64_t request_seed(uint64_t seed, int64_t step, int round, int index) {
  Rng mix(seed ^ (uint64_t(step) * 0x9E3779B97F4A7C15ULL) ^ (uint64_t(round) << 56) ^
          (uint64_t(index) * 0xBF58476D1CE4E5B9ULL));
  return mix.next_u64();
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

}  // namespace

GrpoMode parse_grpo_mode(const std::string& name) {
  if (name == "grpo") return GrpoMode::kGrpo;
  if (name == "dr_grpo") return GrpoMode::kDrGrpo;
  if (name == "dapo") return GrpoMode::kDapo;
  throw Error(str_cat("unknown GRPO loss '", name, "' (expected grpo, dr_grpo or dapo)"));
}

const char* grpo_mode_name(GrpoMode mode) {
  switch (mode) {
    case GrpoMode::kGrpo:
      return "grpo";
    case GrpoMode::kDrGrpo:
      return "dr_grpo";
    case GrpoMode::kDapo:
      return "dapo";
  }
  return "?";
}

void GrpoOptions::validate() const {
  SEEKR_REQUIRE(steps >= 1, "grpo: steps must be >= 1 (got ", steps, ")");
  SEEKR_REQUIRE(prompts_per_step >= 1, "grpo: prompts per step must be >= 1");
  SEEKR_REQUIRE(group >= 2, "grpo: group size G must be >= 2 (got ", group, ")");
  SEEKR_REQUIRE(mu >= 1, "grpo: mu must be >= 1 (got ", mu, ")");
  SEEKR_REQUIRE(lr > 0, "grpo: lr must be > 0");
  SEEKR_REQUIRE(warmup >= 0 && weight_decay >= 0 && clip >= 0,
                "grpo: warmup, weight decay and clip must be >= 0");
  SEEKR_REQUIRE(ref_refresh_every >= 0, "grpo: ref refresh must be >= 0");
  SEEKR_REQUIRE(max_sampling_rounds >= 1, "grpo: max sampling rounds must be >= 1");
  SEEKR_REQUIRE(max_new_tokens >= 1, "grpo: max new tokens must be >= 1");
  SEEKR_REQUIRE(temperature > 0, "grpo: temperature must be > 0 (RL needs sampling)");
  SEEKR_REQUIRE(micro_batch >= 0 && threads >= 0 && log_every >= 1,
                "grpo: micro batch and threads must be >= 0, log every >= 1");
  SEEKR_REQUIRE(workers >= 1, "grpo: workers must be >= 1 (got ", workers, ")");
  SEEKR_REQUIRE(loss.beta >= 0 && loss.eps_low >= 0 && loss.eps_high >= 0,
                "grpo: beta, eps low and eps high must be >= 0");
  SEEKR_REQUIRE(loss.mode != GrpoMode::kDrGrpo || loss.max_completion_length == 0 ||
                    loss.max_completion_length >= max_new_tokens,
                "grpo: dr_grpo's max completion length ", loss.max_completion_length,
                " is below max new tokens ", max_new_tokens);
}

nlohmann::json GrpoOptions::to_json() const {
  return {{"steps", steps},
          {"prompts_per_step", prompts_per_step},
          {"group", group},
          {"mu", mu},
          {"lr", lr},
          {"warmup", warmup},
          {"weight_decay", weight_decay},
          {"clip", clip},
          {"loss", grpo_mode_name(loss.mode)},
          {"eps_low", loss.eps_low},
          {"eps_high", loss.eps_high},
          {"beta", loss.beta},
          {"max_completion_length", loss.max_completion_length},
          {"ref_refresh_every", ref_refresh_every},
          {"dynamic_sampling", dynamic_sampling},
          {"workers", workers},
          {"max_sampling_rounds", max_sampling_rounds},
          {"max_new_tokens", max_new_tokens},
          {"temperature", temperature},
          {"rewards",
           {{"accuracy", rewards.accuracy},
            {"format", rewards.format},
            {"language", rewards.language},
            {"overlong", rewards.overlong},
            {"max_len", rewards.max_len},
            {"cache_len", rewards.cache_len}}},
          {"template", rl::template_name(format.tmpl)},
          {"micro_batch", micro_batch},
          {"seed", seed},
          {"threads", threads}};
}

namespace {
nlohmann::json update_json(const GrpoUpdateStats& u) {
  return {{"loss", u.loss},
          {"kl", u.kl},
          {"entropy", u.entropy},
          {"ratio", u.ratio},
          {"clip_fraction", u.clip_fraction},
          {"clip_low_fraction", u.clip_low_fraction},
          {"clip_high_fraction", u.clip_high_fraction},
          {"grad_norm", u.grad_norm}};
}
}  // namespace

nlohmann::json GrpoStepStats::to_json() const {
  nlohmann::json j = {{"type", "grpo"},
                      {"step", step},
                      {"total_steps", total_steps},
                      {"reward", reward},
                      {"reward_std", reward_std},
                      {"accuracy", accuracy},
                      {"format", format},
                      {"language", language},
                      {"overlong", overlong},
                      {"response_tokens", response_tokens},
                      {"reasoning_tokens", reasoning_tokens},
                      {"reasoning_share", reasoning_share},
                      {"reasons_first", reasons_first},
                      {"language_mixed", language_mixed},
                      {"truncated", truncated},
                      {"lr", lr},
                      {"groups_kept", groups_kept},
                      {"groups_dropped", groups_dropped},
                      {"sampling_rounds", sampling_rounds},
                      {"rollout_tokens", rollout_tokens},
                      {"update_tokens", update_tokens},
                      {"rollout_seconds", rollout_seconds},
                      {"update_seconds", update_seconds},
                      {"rollout_tok_s", rollout_tok_s()},
                      {"update_tok_s", update_tok_s()},
                      {"rollout_share", rollout_share()}};
  j.update(update_json(update));
  if (updates.size() > 1) {
    nlohmann::json inner = nlohmann::json::array();
    for (const GrpoUpdateStats& u : updates) inner.push_back(update_json(u));
    j["updates"] = inner;
  }
  return j;
}

nlohmann::json GrpoSummary::to_json() const {
  return {{"type", "grpo_summary"},
          {"steps", steps},
          {"seconds", seconds},
          {"rollout_seconds", rollout_seconds},
          {"update_seconds", update_seconds},
          {"first_reward", first_reward},
          {"last_reward", last_reward},
          {"first_accuracy", first_accuracy},
          {"last_accuracy", last_accuracy}};
}

// Sequences [first, first + B) of the length-sorted order, as a right-padded [B, T] batch whose
// rows start at `row_offset` in the trainer's flat row arrays.
struct GrpoTrainer::MicroBatch {
  int B = 0, T = 0;
  size_t row_offset = 0;
  int64_t counted = 0;      // completion targets
  int64_t real_tokens = 0;  // non-padding inputs
};

GrpoTrainer::GrpoTrainer(Model& policy, const Tokenizer& tokenizer, const GrpoOptions& options,
                         std::function<rl::Problem()> next_problem)
    : policy_(policy),
      tokenizer_(tokenizer),
      opt_(options),
      next_problem_(std::move(next_problem)),
      stop_tokens_(stop_tokens(policy.config(), tokenizer)),
      optimizer_(param_segments(policy.layout()), policy.params().size(),
                 AdamWConfig{.weight_decay = options.weight_decay}) {
  opt_.validate();
  SEEKR_REQUIRE(next_problem_, "grpo: no problem source");
  SEEKR_REQUIRE(tokenizer.vocab_size() <= policy.config().vocab_size, "grpo: the tokenizer has ",
                tokenizer.vocab_size(), " tokens but the model's vocab_size is ",
                policy.config().vocab_size);
  // Dr. GRPO divides by a constant completion budget: by default the generation budget.
  if (opt_.loss.mode == GrpoMode::kDrGrpo && opt_.loss.max_completion_length == 0)
    opt_.loss.max_completion_length = opt_.max_new_tokens;
  graphs_.push_back(std::make_unique<TrainGraph>(policy_));
  for (int w = 1; w < opt_.workers; ++w) {
    replicas_.push_back(std::make_unique<Model>(policy_.config()));
    graphs_.push_back(std::make_unique<TrainGraph>(*replicas_.back()));
  }
  graph_ = graphs_[0].get();
  if (opt_.loss.beta > 0) {
    reference_ = std::make_unique<Model>(policy_.config());
    copy_policy_to_reference();
    reference_graph_ = std::make_unique<TrainGraph>(*reference_);
  }
}

GrpoTrainer::~GrpoTrainer() = default;

const Model& GrpoTrainer::reference() const {
  SEEKR_REQUIRE(reference_, "grpo: there is no reference model (beta = 0)");
  return *reference_;
}

void GrpoTrainer::copy_policy_to_reference() {
  // Buffers too: the MoE correction bias decides the routing, so it is part of the policy.
  reference_->params() = policy_.params();
  reference_->buffers() = policy_.buffers();
}

void GrpoTrainer::rollout_round(int num_prompts, int round, GrpoRollout& out,
                                GrpoStepStats& step_stats) {
  // The response statistics describe the first round only (see GrpoStepStats).
  GrpoStepStats* stats = round == 0 ? &step_stats : nullptr;
  const ModelConfig& c = policy_.config();
  const int G = opt_.group;
  std::vector<GenerationRequest> requests(num_prompts);
  const size_t first_group = out.problems.size();
  int longest_prompt = 0;
  for (int i = 0; i < num_prompts; ++i) {
    out.problems.push_back(next_problem_());
    out.prompts.push_back(encode_prompt(tokenizer_, out.problems.back(), opt_.format.tmpl));
    GenerationRequest& r = requests[i];
    r.prompt = out.prompts.back();
    r.max_new_tokens = opt_.max_new_tokens;
    r.sampling.temperature = opt_.temperature;
    r.seed = request_seed(opt_.seed, step_, round, i);
    r.n = G;
    r.stop_tokens = stop_tokens_;
    longest_prompt = std::max<int>(longest_prompt, r.prompt.size());
  }
  SEEKR_REQUIRE(longest_prompt < c.max_position_embeddings, "grpo: a prompt of ", longest_prompt,
                " tokens leaves no room under max_position_embeddings ", c.max_position_embeddings);
  // Worker w generates prompts [w * per, (w + 1) * per) in its own session; the sessions live
  // for the whole run and grow (rarely) when a longer prompt comes along. A sequence's tokens
  // depend only on its seed, so the split does not change them.
  const int W = std::min(opt_.workers, num_prompts);
  const int per = (num_prompts + W - 1) / W;
  const int per_worker_capacity = (opt_.prompts_per_step + opt_.workers - 1) / opt_.workers;
  const int needed = std::min(longest_prompt + opt_.max_new_tokens, c.max_position_embeddings);
  sessions_.resize(std::max<size_t>(sessions_.size(), size_t(W)));
  for (int w = 0; w < W; ++w) {
    if (sessions_[w] && sessions_[w]->max_len() >= needed) continue;
    const int max_len = std::min(needed + 16, c.max_position_embeddings);
    sessions_[w] = std::make_unique<InferenceSession>(policy_, per_worker_capacity * G, max_len);
  }
  GenerateOptions gen;
  gen.tokenizer = &tokenizer_;
  std::vector<GenerationOutput> outputs(W);
  run_workers(W, [&](int w) {
    const int first = std::min(num_prompts, w * per), last = std::min(num_prompts, first + per);
    if (first == last) return;
    const std::vector<GenerationRequest> part(requests.begin() + first, requests.begin() + last);
    outputs[w] = generate(policy_, *sessions_[w], part, gen);
  });
  GenerationOutput output;
  for (GenerationOutput& o : outputs)
    for (GenerationResult& r : o.results) output.results.push_back(std::move(r));
  SEEKR_CHECK(output.results.size() == size_t(num_prompts) * G);

  const size_t n_before = out.rewards.size();
  double sum = 0, sum_sq = 0;
  for (size_t k = 0; k < output.results.size(); ++k) {
    GenerationResult& res = output.results[k];
    const rl::Problem& problem = out.problems[first_group + k / G];
    const rl::RewardParts parts =
        rl::combined_reward(problem, res.text, res.tokens.size(), opt_.rewards, opt_.format.tags);
    out.rewards.push_back(static_cast<float>(parts.total));
    if (stats) {
      stats->accuracy += parts.accuracy;
      stats->format += parts.format;
      stats->language += parts.language;
      stats->overlong += parts.overlong;
      sum += parts.total;
      sum_sq += parts.total * parts.total;
      stats->response_tokens += res.tokens.size();
      const rl::Tags& tags = opt_.format.tags;
      if (res.text.find(tags.think_open) != std::string::npos) {
        const std::string reasoning = rl::reasoning_text(res.text, tags);
        if (!is_blank(reasoning)) {
          stats->reasoning_share += 1;
          stats->reasoning_tokens += tokenizer_.encode(reasoning).size();
        }
      }
      stats->reasons_first += rl::reasons_first(res.text, tags);
      stats->language_mixed += rl::is_language_mixed(res.text, problem.lang, tags);
      stats->truncated +=
          res.finish == FinishReason::kLength || res.finish == FinishReason::kContextFull;
    }
    step_stats.rollout_tokens += res.tokens.size();
    out.responses.push_back(std::move(res.tokens));
  }
  if (stats) {
    const double n = double(out.rewards.size() - n_before);
    for (double* f : {&stats->accuracy, &stats->format, &stats->language, &stats->overlong,
                      &stats->response_tokens, &stats->reasoning_tokens, &stats->reasoning_share,
                      &stats->reasons_first, &stats->language_mixed, &stats->truncated})
      *f /= n;
    stats->reward = sum / n;
    stats->reward_std = std::sqrt(std::max(0.0, sum_sq / n - stats->reward * stats->reward));
  }
}

void GrpoTrainer::prepare(const GrpoRollout& rollout) {
  const int S = rollout.num_sequences(), G = rollout.group;
  SEEKR_CHECK(S > 0 && G > 0 && S == rollout.num_groups() * G);
  SEEKR_CHECK(rollout.advantages.size() == size_t(S));
  const int max_T = policy_.config().max_position_embeddings;
  num_sequences_ = S;
  advantages_ = rollout.advantages;

  // Sequence s is prompt ++ response; its inputs are all but the last token and row t predicts
  // token t + 1, so the completion targets are rows prompt_len - 1 .. len - 2.
  auto input_len = [&](int s) {
    return int(rollout.prompts[s / G].size() + rollout.responses[s].size()) - 1;
  };
  // Without the KL term a sequence of zero advantage has zero loss and zero gradient, so it is
  // left out of the forward and backward (groups of equal rewards are common with sparse
  // rewards). The loss normalisers still count every sequence (see accumulate_gradient), so
  // the gradient is exactly the full batch's.
  const bool skip_zero = opt_.loss.beta == 0;
  std::vector<int> order;
  counted_tokens_ = 0;
  for (int s = 0; s < S; ++s) {
    counted_tokens_ += rollout.responses[s].size();
    if (!skip_zero || rollout.advantages[s] != 0.0f) order.push_back(s);
  }
  // Length-sorted micro-batches waste the least padding.
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return input_len(a) < input_len(b); });
  const int trained = static_cast<int>(order.size());
  // micro_batch 0: one micro-batch per worker.
  const int W = static_cast<int>(graphs_.size());
  const int per_batch =
      opt_.micro_batch > 0 ? std::min(opt_.micro_batch, S) : std::max(1, (trained + W - 1) / W);

  micro_.clear();
  size_t rows = 0;
  for (int first = 0; first < trained; first += per_batch) {
    MicroBatch mb;
    mb.B = std::min(per_batch, trained - first);
    for (int i = first; i < first + mb.B; ++i) mb.T = std::max(mb.T, input_len(order[i]));
    SEEKR_CHECK(mb.T <= max_T, "sequence of ", mb.T, " inputs exceeds max_position_embeddings");
    mb.row_offset = rows;
    rows += size_t(mb.B) * mb.T;
    micro_.push_back(mb);
  }
  // Capacity is kept across steps: after the first few steps nothing here allocates.
  tokens_.assign(rows, 0);
  targets_.assign(rows, -1);
  mask_.assign(rows, 0);
  sequence_.assign(rows, 0);
  old_logp_.resize(rows);
  if (reference_) ref_logp_.resize(rows);
  for (size_t m = 0; m < micro_.size(); ++m) {
    MicroBatch& mb = micro_[m];
    for (int b = 0; b < mb.B; ++b) {
      const int s = order[m * per_batch + b];
      const std::vector<int32_t>& prompt = rollout.prompts[s / G];
      const std::vector<int32_t>& response = rollout.responses[s];
      const int P = prompt.size(), len = input_len(s);
      const size_t row0 = mb.row_offset + size_t(b) * mb.T;
      auto token_at = [&](int t) { return t < P ? prompt[t] : response[t - P]; };
      for (int t = 0; t < len; ++t) {
        tokens_[row0 + t] = token_at(t);
        sequence_[row0 + t] = s;
        if (t + 1 >= P) {
          targets_[row0 + t] = token_at(t + 1);
          mask_[row0 + t] = 1;
        }
      }
      mb.counted += response.size();
      mb.real_tokens += len;
    }
  }
}

void GrpoTrainer::forward_logp(TrainGraph& graph, std::vector<float>& out) {
  TrainOptions fwd;
  fwd.mtp = false;
  const int V = policy_.config().vocab_size;
  for (const MicroBatch& mb : micro_) {
    graph.forward(tokens_.data() + mb.row_offset, mb.B, mb.T, fwd);
    log_prob_of_targets(graph.logits(), targets_.data() + mb.row_offset, out.data() + mb.row_offset,
                        mb.B * mb.T, V);
  }
}

const std::vector<float>& GrpoTrainer::compute_old_logp() {
  forward_logp(*graph_, old_logp_);
  return old_logp_;
}

GrpoUpdateStats GrpoTrainer::accumulate_gradient(const float* old_logp) {
  SEEKR_CHECK(num_sequences_ > 0, "accumulate_gradient before prepare");
  TrainOptions fwd;
  fwd.mtp = false;  // RL trains the main head only; the MTP modules are not used to sample
  const int V = policy_.config().vocab_size;
  const int M = static_cast<int>(micro_.size());
  const int W = std::max(1, std::min(static_cast<int>(graphs_.size()), M));
  for (int w = 1; w < W; ++w) {  // same-size assignments: the replica's views stay valid
    Model& r = *replicas_[w - 1];
    r.params() = policy_.params();
    r.buffers() = policy_.buffers();
    r.zero_grads();
  }
  // Worker w takes micro-batches w, w + W, ...; its sums stay apart until the end so the result
  // does not depend on which worker finishes first.
  struct Partial {
    double loss = 0, kl = 0, entropy = 0, ratio = 0;
    int64_t low = 0, high = 0, trained_tokens = 0;
  };
  std::vector<Partial> parts(W);
  run_workers(W, [&](int w) {
    TrainGraph& graph = *graphs_[w];
    Partial& p = parts[w];
    for (int m = w; m < M; m += W) {
      const MicroBatch& mb = micro_[m];
      const size_t off = mb.row_offset;
      const int N = mb.B * mb.T;
      graph.forward(tokens_.data() + off, mb.B, mb.T, fwd);
      float* logits = graph.logits();  // [N, V], becomes dlogits below
      const float* old = old_logp ? old_logp + off : old_logp_.data() + off;
      // On-policy (mu = 1): the old policy is this very forward; its detached log-probs make
      // the ratio 1 up to the float rounding of the stored value (~1e-7).
      if (!old_logp)
        log_prob_of_targets(logits, targets_.data() + off, old_logp_.data() + off, N, V);
      GrpoBatch batch;
      batch.N = N;
      batch.V = V;
      // Global sequence indices and count: grpo's 1/(S·c_s) and dr_grpo's 1/(S·L) weights are
      // then already those of the full batch, so the micro-batch gradients simply add up.
      batch.num_sequences = num_sequences_;
      batch.targets = targets_.data() + off;
      batch.mask = mask_.data() + off;
      batch.sequence = sequence_.data() + off;
      batch.old_logp = old;
      batch.ref_logp = reference_ ? ref_logp_.data() + off : nullptr;
      batch.advantages = advantages_.data();
      GrpoLossStats ls = grpo_loss_forward_backward(opt_.loss, batch, logits, logits);
      if (opt_.loss.mode == GrpoMode::kDapo) {
        // DAPO divides by the micro-batch's counted tokens; the full batch by all of them.
        const double scale = double(mb.counted) / double(std::max<int64_t>(counted_tokens_, 1));
        simd::scale(logits, int64_t(N) * V, static_cast<float>(scale));
        ls.loss *= scale;
      }
      graph.backward(logits, {});
      p.loss += ls.loss;
      const double weight = double(ls.counted_tokens);
      p.trained_tokens += ls.counted_tokens;
      p.kl += ls.mean_kl * weight;
      p.entropy += ls.mean_entropy * weight;
      p.ratio += ls.mean_ratio * weight;
      p.low += std::llround(ls.clip_low_fraction * weight);
      p.high += std::llround(ls.clip_high_fraction * weight);
    }
  });
  std::vector<float>& grads = policy_.grads();
  for (int w = 1; w < W; ++w) {
    const std::vector<float>& g = replicas_[w - 1]->grads();
    simd::axpy(1.0f, g.data(), grads.data(), int64_t(grads.size()));
  }
  GrpoUpdateStats u;
  int64_t low = 0, high = 0, trained_tokens = 0;
  for (const Partial& p : parts) {
    u.loss += p.loss;
    u.kl += p.kl;
    u.entropy += p.entropy;
    u.ratio += p.ratio;
    low += p.low;
    high += p.high;
    trained_tokens += p.trained_tokens;
  }
  // Diagnostics are means over the tokens that went through the update.
  const double inv = 1.0 / double(std::max<int64_t>(trained_tokens, 1));
  u.kl *= inv;
  u.entropy *= inv;
  u.ratio *= inv;
  u.clip_low_fraction = double(low) * inv;
  u.clip_high_fraction = double(high) * inv;
  u.clip_fraction = double(low + high) * inv;
  return u;
}

GrpoStepStats GrpoTrainer::step() {
  const int G = opt_.group, wanted = opt_.prompts_per_step;
  GrpoStepStats st;
  st.step = step_ + 1;
  st.total_steps = opt_.steps;
  auto t0 = std::chrono::steady_clock::now();

  // Rollout: with dynamic sampling, groups of equal rewards are dropped and refilled.
  GrpoRollout batch;
  batch.group = G;
  for (int round = 0; round < opt_.max_sampling_rounds && batch.num_groups() < wanted; ++round) {
    GrpoRollout drawn;
    drawn.group = G;
    rollout_round(wanted - batch.num_groups(), round, drawn, st);
    ++st.sampling_rounds;
    for (int g = 0; g < drawn.num_groups(); ++g) {
      if (opt_.dynamic_sampling && !dapo_keep_group(drawn.rewards.data() + size_t(g) * G, G)) {
        ++st.groups_dropped;
        continue;
      }
      batch.problems.push_back(std::move(drawn.problems[g]));
      batch.prompts.push_back(std::move(drawn.prompts[g]));
      for (int i = 0; i < G; ++i) {
        batch.responses.push_back(std::move(drawn.responses[size_t(g) * G + i]));
        batch.rewards.push_back(drawn.rewards[size_t(g) * G + i]);
      }
    }
    if (!opt_.dynamic_sampling) break;
  }
  st.groups_kept = batch.num_groups();
  st.rollout_seconds = seconds_since(t0);

  // Update.
  t0 = std::chrono::steady_clock::now();
  st.lr = opt_.warmup > 0 ? opt_.lr * std::min(1.0, double(step_ + 1) / opt_.warmup) : opt_.lr;
  if (st.groups_kept > 0) {  // dynamic sampling may have dropped every group
    batch.advantages =
        group_advantages(batch.rewards, G, /*scale_by_std=*/opt_.loss.mode == GrpoMode::kGrpo);
    prepare(batch);
    if (reference_) forward_logp(*reference_graph_, ref_logp_);
    if (opt_.mu > 1) compute_old_logp();
    for (int k = 0; k < opt_.mu; ++k) {
      policy_.zero_grads();
      GrpoUpdateStats u = accumulate_gradient(opt_.mu > 1 ? old_logp_.data() : nullptr);
      std::vector<float>& grads = policy_.grads();
      u.grad_norm = opt_.clip > 0 ? clip_grad_norm(grads.data(), grads.size(), opt_.clip)
                                  : std::sqrt(sum_of_squares(grads.data(), grads.size()));
      SEEKR_REQUIRE(std::isfinite(u.grad_norm), "grpo: non-finite gradient norm at step ", st.step,
                    " (try a lower --lr)");
      // The MoE correction biases stay frozen: they are pretraining's load-balancing device and
      // RL's few, similar sequences would only push them around.
      optimizer_.step(policy_.params().data(), grads.data(), st.lr);
      for (const MicroBatch& mb : micro_) st.update_tokens += mb.real_tokens;
      st.updates.push_back(u);
    }
    for (const GrpoUpdateStats& u : st.updates) {
      const double w = 1.0 / double(st.updates.size());
      st.update.loss += w * u.loss;
      st.update.kl += w * u.kl;
      st.update.entropy += w * u.entropy;
      st.update.ratio += w * u.ratio;
      st.update.clip_fraction += w * u.clip_fraction;
      st.update.clip_low_fraction += w * u.clip_low_fraction;
      st.update.clip_high_fraction += w * u.clip_high_fraction;
      st.update.grad_norm += w * u.grad_norm;
    }
  }
  ++step_;
  if (reference_ && opt_.ref_refresh_every > 0 && step_ % opt_.ref_refresh_every == 0)
    copy_policy_to_reference();
  st.update_seconds = seconds_since(t0);
  return st;
}

namespace {
double mean_of(const std::vector<double>& v, size_t first, size_t count) {
  double s = 0;
  for (size_t i = first; i < first + count; ++i) s += v[i];
  return count ? s / double(count) : 0.0;
}
}  // namespace

GrpoSummary run_grpo(Model& policy, const Tokenizer& tokenizer, const GrpoOptions& opt,
                     std::function<rl::Problem()> next_problem, MetricsLog* log,
                     const std::string& stage_name,
                     std::function<void(const GrpoStepStats&)> on_step) {
  if (opt.threads > 0) {
    omp_set_num_threads(opt.threads);
    openblas_set_num_threads(opt.threads);
  }
  GrpoTrainer trainer(policy, tokenizer, opt, std::move(next_problem));
  Progress progress(stage_name, opt.steps);
  GrpoSummary sum;
  std::vector<double> rewards, accuracies;
  for (int64_t s = 0; s < opt.steps; ++s) {
    GrpoStepStats st = trainer.step();
    rewards.push_back(st.reward);
    accuracies.push_back(st.accuracy);
    sum.rollout_seconds += st.rollout_seconds;
    sum.update_seconds += st.update_seconds;
    if (on_step) on_step(st);
    const bool last = st.step == opt.steps;
    if (log && (st.step % opt.log_every == 0 || last)) log->append(st.to_json());
    if (opt.progress) {
      char fields[200];
      const double secs = st.rollout_seconds + st.update_seconds;
      std::snprintf(fields, sizeof fields, "reward %.2f · acc %.1f%% · len %.0f · %s tok/s",
                    st.reward, 100.0 * st.accuracy, st.response_tokens,
                    human_count(secs > 0 ? st.rollout_tokens / secs : 0).c_str());
      progress.update(st.step, fields);
    }
    sum.last = std::move(st);
  }
  if (opt.progress) progress.finish();
  sum.steps = opt.steps;
  sum.seconds = progress.elapsed_seconds();
  const size_t k = std::min<size_t>(5, rewards.size());
  sum.first_reward = mean_of(rewards, 0, k);
  sum.last_reward = mean_of(rewards, rewards.size() - k, k);
  sum.first_accuracy = mean_of(accuracies, 0, k);
  sum.last_accuracy = mean_of(accuracies, accuracies.size() - k, k);
  return sum;
}

void save_policy(const std::string& dir, const Model& policy, const Tokenizer& tokenizer) {
  save_model_dir(dir, policy, tokenizer.to_json());
}

}  // namespace seekr::r1
