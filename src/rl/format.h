// The response format the rewards read, and the synthetic documents a base model is pretrained
// on so that it sometimes reasons before answering (the R1-Zero precondition: RL amplifies what
// the base model can already sometimes do).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rl/answer.h"
#include "rl/prompt.h"
#include "rl/tasks.h"

namespace seekr::rl {

// think_open reasoning think_close answer_open answer answer_close (no spaces between).
std::string reasoned_completion(std::string_view reasoning, std::string_view answer,
                                const Tags& tags = {});
// answer_open answer answer_close.
std::string direct_completion(std::string_view answer, const Tags& tags = {});

// True when the response reasons before it answers: after leading whitespace it begins with
// think_open, the reasoning (reasoning_text) is not blank, and no answer_open comes before the
// first think_close.
bool reasons_first(std::string_view output, const Tags& tags = {});

struct CorpusSpec {
  double reasoning_share = 0.3;  // documents that solve step by step before answering
  double wrong_share = 0.1;      // documents whose answer (and trace's answer) has a wrong digit
  // Of the reasoned documents with a non-English prompt, the share whose reasoning is written in
  // English: language mixing present in the pretraining data.
  double foreign_reasoning_share = 0.0;
  Template tmpl = Template::QA;
  Tags tags;
};

// A prompt (the template applied to the question) and the completion that follows it.
struct TextPair {
  std::string prompt;
  std::string completion;
  bool reasoned = false;
  bool wrong = false;
};

// n documents from the training split of `mix` (never a held-out problem), deterministic in
// seed. A document reasons only when its problem has a reference solution.
std::vector<TextPair> make_corpus(const TaskMix& mix, size_t n, uint64_t seed,
                                  const CorpusSpec& spec);

// Cold-start data (DeepSeek-R1 §2.3.1): readable, correct, language-consistent reasoning in the
// tagged format, one per problem with a reference solution.
std::vector<TextPair> cold_start_examples(const std::vector<Problem>& problems, Template tmpl,
                                          const Tags& tags = {});

}  // namespace seekr::rl
