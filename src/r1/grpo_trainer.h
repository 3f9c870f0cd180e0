// The GRPO trainer of the R1 pipeline (DeepSeek-R1-Zero's reinforcement learning): each step
// samples G responses for each of a batch of prompts with batched generation, scores them with
// the rule-based rewards, turns the rewards into group-relative advantages and takes `mu`
// clipped policy-gradient updates (train/grpo.h) on them. The step is described in docs/grpo.md,
// section "The trainer".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.h"
#include "r1/common.h"
#include "rl/rewards.h"
#include "rl/tasks.h"
#include "serve/generate.h"
#include "tokenizer/tokenizer.h"
#include "train/grpo.h"
#include "train/optimizer.h"

namespace seekr {
class MetricsLog;
}

namespace seekr::r1 {

struct GrpoOptions {
  int64_t steps = 120;
  int prompts_per_step = 16;
  int group = 8;  // G: responses sampled per prompt
  int mu = 1;     // policy updates per rollout batch, all against the stored old log-probs
  double lr = 5e-5;
  int warmup = 0;  // linear warmup steps, then a constant rate
  double weight_decay = 0.0;
  double clip = 1.0;  // max global gradient norm; 0 = no clipping
  GrpoLossConfig loss;
  int ref_refresh_every = 0;  // copy the policy into the frozen reference every N steps; 0 = never
  // DAPO: drop groups whose G rewards are all equal (they give no gradient) and draw fresh
  // prompts for the missing groups, up to `max_sampling_rounds` rollouts per step.
  bool dynamic_sampling = false;
  int max_sampling_rounds = 3;
  int max_new_tokens = 96;
  float temperature = 1.0f;
  rl::RewardWeights rewards;
  PolicyFormat format;
  // Sequences per update forward (length-sorted, so small micro-batches waste little padding);
  // 0 = all of the step's sequences, split evenly between the workers.
  int micro_batch = 0;
  // Data-parallel replicas, one per core: the rollout's prompts and the update's micro-batches
  // are split between them and their gradients summed, with single-threaded kernels inside
  // each. The sampled tokens do not depend on it; the gradient differs only by float summation
  // order (and is the same from run to run for a given count).
  int workers = 1;
  uint64_t seed = 1234;
  int threads = 0;  // OpenMP/BLAS threads set by run_grpo; 0 = leave as is
  int log_every = 1;
  bool progress = true;

  // Throws seekr::Error naming the bad option.
  void validate() const;
  nlohmann::json to_json() const;
};

// The diagnostics of one policy update (one of the mu inner updates).
struct GrpoUpdateStats {
  double loss = 0, kl = 0, entropy = 0, ratio = 0;
  double clip_fraction = 0, clip_low_fraction = 0, clip_high_fraction = 0;
  double grad_norm = 0;
};

struct GrpoStepStats {
  int64_t step = 0;  // 1-based
  int64_t total_steps = 0;
  // Means over the responses of the step's first sampling round: a fair sample of the policy on
  // the problem stream (later dynamic-sampling rounds only refill dropped groups).
  double reward = 0, reward_std = 0;
  double accuracy = 0, format = 0, language = 0, overlong = 0;  // reward parts
  double response_tokens = 0;
  double reasoning_tokens = 0;  // tokens of rl::reasoning_text when the response reasons, else 0
  double reasoning_share = 0;   // responses with a non-blank <think> block
  double reasons_first = 0;     // rl::reasons_first
  double language_mixed = 0;    // rl::is_language_mixed
  double truncated = 0;         // responses cut at max_new_tokens
  // Means over the mu updates (updates holds each one).
  GrpoUpdateStats update;
  std::vector<GrpoUpdateStats> updates;
  double lr = 0;
  int groups_kept = 0, groups_dropped = 0, sampling_rounds = 0;
  int64_t rollout_tokens = 0;  // generated tokens, every round
  int64_t update_tokens = 0;   // non-padding tokens through forward+backward, all mu updates
  double rollout_seconds = 0, update_seconds = 0;

  double rollout_tok_s() const {
    return rollout_seconds > 0 ? rollout_tokens / rollout_seconds : 0;
  }
  double update_tok_s() const { return update_seconds > 0 ? update_tokens / update_seconds : 0; }
  double rollout_share() const {
    const double total = rollout_seconds + update_seconds;
    return total > 0 ? rollout_seconds / total : 0;
  }
  nlohmann::json to_json() const;  // {"type": "grpo", ...}
};

// One scored rollout: `groups` prompts with G responses each, response-major within a group.
struct GrpoRollout {
  std::vector<rl::Problem> problems;            // [groups]
  std::vector<std::vector<int32_t>> prompts;    // [groups] prompt tokens
  std::vector<std::vector<int32_t>> responses;  // [groups * G] sampled tokens (final stop included)
  std::vector<float> rewards;                   // [groups * G]
  std::vector<float> advantages;                // [groups * G]
  int group = 0;
  int num_groups() const { return static_cast<int>(problems.size()); }
  int num_sequences() const { return static_cast<int>(responses.size()); }
};

class GrpoTrainer {
 public:
  GrpoTrainer(Model& policy, const Tokenizer& tokenizer, const GrpoOptions& options,
              std::function<rl::Problem()> next_problem);
  ~GrpoTrainer();
  GrpoTrainer(const GrpoTrainer&) = delete;
  GrpoTrainer& operator=(const GrpoTrainer&) = delete;

  // Rollout, rewards, advantages, mu updates; refreshes the reference when due.
  GrpoStepStats step();
  int64_t steps_done() const { return step_; }

  // The frozen reference policy (a copy of the initial policy, refreshed every
  // ref_refresh_every steps); it exists only when beta > 0.
  const Model& reference() const;
  bool has_reference() const { return reference_ != nullptr; }

  // The update pieces, public for tests. accumulate_gradient runs forward+backward over the
  // rollout's micro-batches and adds the gradient of the full-batch loss to policy.grads()
  // (which the caller zeroes); `old_logp` holds the log-probs of every micro-batch row in the
  // layout of prepare() (nullptr: on-policy, taken from the same forward). Returns the loss
  // diagnostics of the whole batch.
  void prepare(const GrpoRollout& rollout);
  GrpoUpdateStats accumulate_gradient(const float* old_logp);
  const std::vector<float>& compute_old_logp();  // no-grad forwards of the prepared batch
  const GrpoOptions& options() const { return opt_; }

 private:
  struct MicroBatch;
  void rollout_round(int num_prompts, int round, GrpoRollout& out, GrpoStepStats& stats);
  void forward_logp(TrainGraph& graph, std::vector<float>& out);  // [rows] log-probs of targets
  void copy_policy_to_reference();

  Model& policy_;
  const Tokenizer& tokenizer_;
  GrpoOptions opt_;
  std::function<rl::Problem()> next_problem_;
  std::vector<int32_t> stop_tokens_;
  int64_t step_ = 0;

  // The update's worker w works on replicas_[w - 1] (params copied from the policy each
  // update) with graphs_[w]; worker 0 on the policy with graphs_[0]. sessions_[w]: rollout.
  std::vector<std::unique_ptr<InferenceSession>> sessions_;
  std::vector<std::unique_ptr<Model>> replicas_;
  std::vector<std::unique_ptr<TrainGraph>> graphs_;
  TrainGraph* graph_ = nullptr;  // graphs_[0]
  std::unique_ptr<Model> reference_;
  std::unique_ptr<TrainGraph> reference_graph_;
  AdamW optimizer_;

  // The prepared update batch: every micro-batch's rows laid out back to back.
  std::vector<MicroBatch> micro_;
  std::vector<int32_t> tokens_;    // [rows] inputs, right-padded per micro-batch [B, T]
  std::vector<int32_t> targets_;   // [rows] the token the row predicts; -1 where not counted
  std::vector<uint8_t> mask_;      // [rows] 1 = completion target
  std::vector<int32_t> sequence_;  // [rows] sequence index in the whole batch
  std::vector<float> advantages_;  // [num_sequences]
  std::vector<float> old_logp_;    // [rows]
  std::vector<float> ref_logp_;    // [rows] (beta > 0)
  int num_sequences_ = 0;
  int64_t counted_tokens_ = 0;
};

struct GrpoSummary {
  int64_t steps = 0;
  double seconds = 0, rollout_seconds = 0, update_seconds = 0;
  // Means over the first and the last min(5, steps) steps.
  double first_reward = 0, last_reward = 0, first_accuracy = 0, last_accuracy = 0;
  GrpoStepStats last;
  nlohmann::json to_json() const;  // {"type": "grpo_summary", ...}
};

// Runs opt.steps steps with a live progress line "[stage] step 12/120 · reward 0.53 · ...",
// appending every log_every-th step's record (and the last) to `log` when given.
GrpoSummary run_grpo(Model& policy, const Tokenizer& tokenizer, const GrpoOptions& opt,
                     std::function<rl::Problem()> next_problem, MetricsLog* log,
                     const std::string& stage_name,
                     std::function<void(const GrpoStepStats&)> on_step = {});

// Writes the policy as a model directory (config.json, model.safetensors, tokenizer.json).
void save_policy(const std::string& dir, const Model& policy, const Tokenizer& tokenizer);

// "grpo" | "dr_grpo" | "dapo"; throws seekr::Error naming the value.
GrpoMode parse_grpo_mode(const std::string& name);
const char* grpo_mode_name(GrpoMode mode);

}  // namespace seekr::r1
