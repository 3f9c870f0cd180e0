// Next-token sampling: greedy, temperature, top-k, top-p (nucleus) and min-p, applied in that
// order (the order Hugging Face's logits processors use). Every draw takes its randomness from
// a per-sequence seekr::Rng, so a sequence's samples depend only on its own seed and logits,
// never on which other sequences share its batch.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace seekr {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy (argmax, lowest index on ties)
  int top_k = 0;             // keep the k most likely tokens; 0: off
  float top_p = 1.0f;        // keep the smallest most-likely set with probability >= p; 1: off
  float min_p = 0.0f;        // drop tokens with prob < min_p * max prob; 0: off

  bool greedy() const { return temperature <= 0.0f; }
  // Throws seekr::Error naming the field for out-of-range values.
  void validate() const;
};

struct SampledToken {
  int32_t token = -1;
  // log-prob of `token` under the distribution it was drawn from (after temperature and
  // truncation); 0 for greedy.
  float logprob = 0.0f;
  // log softmax of the unmodified logits at `token`: the policy log-prob RL needs.
  float raw_logprob = 0.0f;
};

// log softmax(logits)[token], by the same kernel the training side uses.
float token_logprob(const float* logits, int vocab, int32_t token);

// Holds scratch buffers so that sampling allocates nothing once warmed up; one per thread.
class Sampler {
 public:
  // Exactly one rng.uniform() is drawn per call unless params are greedy (then none), so a
  // sequence's random stream advances the same way whatever else happens around it.
  SampledToken sample(const float* logits, int vocab, const SamplingParams& params, Rng& rng);

  // The truncated, renormalised sampling distribution as (token, prob) pairs, most likely
  // first (ties: lower index first); for the full distribution (no top-k/top-p) in index
  // order. For tests and diagnostics, not on the hot path.
  std::vector<std::pair<int32_t, double>> distribution(const float* logits, int vocab,
                                                       const SamplingParams& params);

 private:
  // Fills probs_ with exp((l - max)/T) and the kept tokens: all_ (every token, in index
  // order) or cand_ (most likely first after top-k/top-p; index order after min-p alone).
  // Returns their unnormalised mass.
  double prepare(const float* logits, int vocab, const SamplingParams& params);

  std::vector<float> probs_;
  std::vector<int32_t> cand_;
  bool all_ = false;
};

}  // namespace seekr
