// What every stage of the R1 pipeline shares: how a problem becomes prompt tokens, which tokens
// end a response, and the live progress line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "rl/answer.h"
#include "rl/prompt.h"
#include "rl/tasks.h"
#include "tokenizer/tokenizer.h"

namespace seekr::r1 {

// How problems are put to the model and how its responses are read.
struct PolicyFormat {
  rl::Template tmpl = rl::Template::QA;
  rl::Tags tags;
};

// encode(apply_template(tmpl, p.prompt), add_special_tokens = true): the BOS comes from the
// tokenizer's post-processor, exactly as in the SFT and pretraining documents.
std::vector<int32_t> encode_prompt(const Tokenizer& tokenizer, const rl::Problem& p,
                                   rl::Template tmpl);

// The tokens that end a response: the config's eos_token_id (when the vocabulary has it) and the
// tokenizer's <｜end▁of▁sentence｜> if present.
std::vector<int32_t> stop_tokens(const ModelConfig& config, const Tokenizer& tokenizer);

// A one-line live status on stderr: "[stage] step 12/120 · <fields> · ETA 1m02s". On a terminal
// the line is rewritten in place; otherwise a full line is printed at most every
// `interval_seconds` (and always for the last step), so logs stay short but never silent.
class Progress {
 public:
  Progress(std::string stage, int64_t total_steps, double interval_seconds = 10.0);
  // `fields` e.g. "reward 0.53 · acc 41.0% · 2.1k tok/s".
  void update(int64_t step, const std::string& fields);
  void finish();  // ends the line on a terminal
  double elapsed_seconds() const;

 private:
  std::string stage_;
  int64_t total_;
  double interval_;
  bool tty_;
  bool open_line_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t first_step_ = -1;
};

// "12.3k" style counts for progress lines.
std::string human_count(double x);

}  // namespace seekr::r1
