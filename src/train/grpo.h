// The GRPO family of policy-gradient losses at the logits: GRPO (DeepSeek-R1), Dr. GRPO and
// DAPO, as TRL implements them (loss_type "grpo", "dr_grpo", "dapo"). The model produces logits;
// this file turns them, plus the rollout's stored log-probs and advantages, into a scalar loss
// and dlogits for TrainGraph::backward. The exact formulas are in docs/grpo.md.
#pragma once

#include <cstdint>
#include <vector>

namespace seekr {

// Group-relative advantages for rewards laid out group by group ([num_groups * G]):
//   A = r − mean_group(r), divided by (std_group(r) + eps) when scale_by_std,
// std being the unbiased (N − 1) standard deviation, as torch.std and TRL use it.
// GRPO scales by the std; Dr. GRPO and DAPO (TRL's scale_rewards="none") do not.
// Throws seekr::Error when G < 2 or the sizes do not match.
std::vector<float> group_advantages(const std::vector<float>& rewards, int G, bool scale_by_std,
                                    float eps = 1e-4f);

// DAPO's dynamic sampling: a group whose G rewards are all equal has zero advantage everywhere
// and gives no gradient, so it is dropped (and resampled) before the update.
bool dapo_keep_group(const float* rewards, int G);

enum class GrpoMode {
  kGrpo,    // per-sequence mean over counted tokens, then mean over sequences
  kDrGrpo,  // sum over counted tokens / (num_sequences · max_completion_length)
  kDapo,    // sum over counted tokens / number of counted tokens
};

struct GrpoLossConfig {
  GrpoMode mode = GrpoMode::kGrpo;
  float eps_low = 0.2f;           // ratio clipped below at 1 − eps_low
  float eps_high = 0.2f;          // ... and above at 1 + eps_high (DAPO's clip-higher: 0.28)
  float beta = 0.0f;              // KL coefficient; > 0 needs ref_logp
  int max_completion_length = 0;  // Dr. GRPO's constant; required (> 0) for kDrGrpo
};

// One batch of N rows of logits [N, V]; every row predicts one token of one sequence.
struct GrpoBatch {
  int N = 0, V = 0;
  int num_sequences = 0;
  const int32_t* targets = nullptr;   // [N] token the row predicts (ignored where mask is 0)
  const uint8_t* mask = nullptr;      // [N] 1 = completion token that counts, 0 = prompt/padding
  const int32_t* sequence = nullptr;  // [N] sequence index in [0, num_sequences)
  const float* old_logp = nullptr;    // [N] log-prob of the target under the rollout policy
  const float* ref_logp = nullptr;    // [N] under the frozen reference; may be null if beta = 0
  const float* advantages = nullptr;  // [num_sequences]
};

// All means are over counted tokens (mask = 1) of the whole batch; 0 when there are none.
struct GrpoLossStats {
  double loss = 0.0;
  double mean_kl = 0.0;             // k3 estimator; 0 when ref_logp is null
  double clip_fraction = 0.0;       // tokens where the clipped branch is active (no gradient)
  double clip_low_fraction = 0.0;   // ... ratio < 1 − eps_low with A < 0
  double clip_high_fraction = 0.0;  // ... ratio > 1 + eps_high with A > 0
  double mean_entropy = 0.0;        // policy entropy −Σ p log p from the logits, in nats
  double mean_ratio = 0.0;          // exp(logp − old_logp)
  int64_t counted_tokens = 0;
};

// Loss and dlogits = d loss / d logits [N, V] (OVERWRITTEN; rows with mask 0 get zeros; may
// alias logits). Throws seekr::Error on inconsistent inputs (targets or sequence indices out of
// range, beta > 0 without ref_logp, Dr. GRPO without max_completion_length or with a sequence
// longer than it). Deterministic for any thread count.
GrpoLossStats grpo_loss_forward_backward(const GrpoLossConfig& config, const GrpoBatch& batch,
                                         const float* logits, float* dlogits);
// The same in double precision throughout (scalar; for gradient checks and references).
GrpoLossStats grpo_loss_forward_backward(const GrpoLossConfig& config, const GrpoBatch& batch,
                                         const double* logits, double* dlogits);

}  // namespace seekr
