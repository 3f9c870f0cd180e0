// Rule-based rewards (DeepSeek-R1 §2.2, DAPO §3.4): pure functions of the problem and the
// generated text, combined with weights. The exact rules are in docs/rl-tasks.md.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "rl/answer.h"
#include "rl/tasks.h"

namespace seekr::rl {

// 1 when extract_strict finds an answer and the problem's verifier accepts it, else 0.
double accuracy_reward(const Problem& p, std::string_view output, const Tags& tags = {});

// Correctness under the lenient extraction (metric only, never a reward): Number problems use
// extract_lenient; other verifiers use the strict answer, else the content of the last complete
// answer tag pair, else the last non-empty line.
bool lenient_correct(const Problem& p, std::string_view output, const Tags& tags = {});

// 1 when the output is, in full, ws* think_open T think_close ws* answer_open A answer_close ws*,
// each of the four tags occurs exactly once in the whole output, and A is not blank (T may be).
double format_reward(std::string_view output, const Tags& tags = {});

// The reasoning: the text after the first think_open up to the next think_close (or the end if
// unclosed); with no think_open, the whole output. All tag strings are removed from it.
std::string reasoning_text(std::string_view output, const Tags& tags = {});

// language_share(reasoning_text(output), lang): in [0, 1].
double language_reward(std::string_view output, Lang lang, const Tags& tags = {});
// A response mixes languages when its reasoning has any word outside `lang`.
bool is_language_mixed(std::string_view output, Lang lang, const Tags& tags = {});

// DAPO soft overlong punishment for a response of `length` tokens:
// 0 if length <= max_len - cache_len; ((max_len - cache_len) - length) / cache_len up to
// max_len (so -1 at max_len); -1 beyond. Requires cache_len <= max_len.
double overlong_penalty(size_t length, size_t max_len, size_t cache_len);

struct RewardWeights {
  double accuracy = 1;
  double format = 0;
  double language = 0;
  double overlong = 0;
  size_t max_len = 0;    // DAPO L_max in tokens (used when overlong != 0)
  size_t cache_len = 0;  // DAPO L_cache
};

// "accuracy=1,format=0.5,language=0.1,overlong=1,max_len=512,cache_len=128"; keys not given
// keep their defaults. Throws seekr::Error naming the bad key or value.
RewardWeights parse_reward_weights(std::string_view spec);

struct RewardParts {
  double accuracy = 0;
  double format = 0;
  double language = 0;
  double overlong = 0;
  double total = 0;  // sum of weight * part over the four parts
};

// Parts with weight 0 are still computed, so they can be logged.
RewardParts combined_reward(const Problem& p, std::string_view output, size_t length_tokens,
                            const RewardWeights& w, const Tags& tags = {});

}  // namespace seekr::rl
