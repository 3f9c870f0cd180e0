#include "rl/format.h"

#include "core/check.h"
#include "core/rng.h"
#include "rl/rewards.h"

namespace seekr::rl {

std::string reasoned_completion(std::string_view reasoning, std::string_view answer,
                                const Tags& tags) {
  std::string s;
  s.reserve(reasoning.size() + answer.size() + 48);
  s += tags.think_open;
  s += reasoning;
  s += tags.think_close;
  s += tags.answer_open;
  s += answer;
  s += tags.answer_close;
  return s;
}

std::string direct_completion(std::string_view answer, const Tags& tags) {
  return tags.answer_open + std::string(answer) + tags.answer_close;
}

namespace {

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  return true;
}

// One digit of `answer` replaced by another digit (the answer must hold a digit).
std::string corrupt_digit(const std::string& answer, Rng& rng) {
  std::vector<size_t> digits;
  for (size_t i = 0; i < answer.size(); ++i)
    if (answer[i] >= '0' && answer[i] <= '9') digits.push_back(i);
  if (digits.empty()) return answer;
  std::string out = answer;
  size_t pos = digits[rng.below(digits.size())];
  char old = out[pos];
  char repl = static_cast<char>('0' + rng.below(9));
  if (repl >= old) ++repl;  // uniform over the nine other digits
  out[pos] = repl;
  return out;
}

// Replaces the last occurrence of `from` in `text` by `to`.
std::string replace_last(const std::string& text, const std::string& from, const std::string& to) {
  size_t at = text.rfind(from);
  if (at == std::string::npos) return text;
  return text.substr(0, at) + to + text.substr(at + from.size());
}

}  // namespace

bool reasons_first(std::string_view output, const Tags& tags) {
  size_t i = 0;
  while (i < output.size() && (output[i] == ' ' || output[i] == '\n' || output[i] == '\t' ||
                               output[i] == '\r'))
    ++i;
  if (output.substr(i, tags.think_open.size()) != tags.think_open) return false;
  size_t close = output.find(tags.think_close, i);
  size_t ans = output.find(tags.answer_open, i);
  if (ans != std::string_view::npos && (close == std::string_view::npos || ans < close))
    return false;
  return !is_blank(reasoning_text(output, tags));
}

std::vector<TextPair> make_corpus(const TaskMix& mix, size_t n, uint64_t seed,
                                  const CorpusSpec& spec) {
  SEEKR_CHECK(!mix.entries.empty());
  double total = 0;
  for (const auto& e : mix.entries) total += e.weight;
  Rng rng(seed);
  std::vector<TextPair> out;
  out.reserve(n);
  while (out.size() < n) {
    // Pick an entry, then draw a problem; redraw held-out ones (with the same entry).
    double u = rng.uniform() * total;
    size_t k = 0;
    for (; k + 1 < mix.entries.size(); ++k) {
      if (u < mix.entries[k].weight) break;
      u -= mix.entries[k].weight;
    }
    const TaskSpec& spec_k = mix.entries[k].spec;
    Rng before = rng;
    Problem p = generate(spec_k, rng);
    if (is_held_out(p, 0.1)) continue;
    TextPair doc;
    doc.prompt = apply_template(spec.tmpl, p.prompt);
    std::string answer = p.answer;
    std::string trace = p.solution;
    doc.reasoned = !trace.empty() && rng.uniform() < spec.reasoning_share;
    if (doc.reasoned && p.lang != Lang::En && rng.uniform() < spec.foreign_reasoning_share) {
      // The same problem drawn in English: the generators consume the RNG identically for
      // every language, so the numbers (and the key) are the same.
      TaskSpec en = spec_k;
      en.lang = Lang::En;
      Problem pe = generate(en, before);
      SEEKR_CHECK(pe.key == p.key);
      trace = pe.solution;
    }
    doc.wrong = rng.uniform() < spec.wrong_share;
    if (doc.wrong) {
      std::string bad = corrupt_digit(answer, rng);
      trace = replace_last(trace, answer, bad);
      answer = bad;
    }
    doc.completion = doc.reasoned ? reasoned_completion(trace, answer, spec.tags)
                                  : direct_completion(answer, spec.tags);
    out.push_back(std::move(doc));
  }
  return out;
}

std::vector<TextPair> cold_start_examples(const std::vector<Problem>& problems, Template tmpl,
                                          const Tags& tags) {
  std::vector<TextPair> out;
  for (const Problem& p : problems) {
    if (p.solution.empty()) continue;
    TextPair t;
    t.prompt = apply_template(tmpl, p.prompt);
    t.completion = reasoned_completion(p.solution, p.answer, tags);
    t.reasoned = true;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace seekr::rl
