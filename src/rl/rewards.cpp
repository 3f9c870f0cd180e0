#include "rl/rewards.h"

#include <cmath>
#include <cstdlib>
#include <vector>

#include "core/check.h"
#include "rl/text.h"

namespace seekr::rl {
namespace {

bool blank(std::string_view s) {
  return collapse_spaces(s).empty();
}

}  // namespace

double accuracy_reward(const Problem& p, std::string_view output, const Tags& tags) {
  const auto answer = extract_strict(output, tags);
  return answer && verify(p, *answer) ? 1.0 : 0.0;
}

bool lenient_correct(const Problem& p, std::string_view output, const Tags& tags) {
  if (p.verifier == Verifier::Number) {
    const auto answer = extract_lenient(output, tags);
    return answer && verify(p, *answer);
  }
  if (auto strict = extract_strict(output, tags)) return verify(p, *strict);
  const size_t c = output.rfind(tags.answer_close);
  if (c != std::string_view::npos) {
    const size_t o = output.rfind(tags.answer_open, c);
    if (o != std::string_view::npos)
      return verify(p, output.substr(o + tags.answer_open.size(), c - o - tags.answer_open.size()));
  }
  std::string_view rest = output;
  while (!rest.empty()) {
    const size_t nl = rest.rfind('\n');
    const std::string_view line = nl == std::string_view::npos ? rest : rest.substr(nl + 1);
    if (!blank(line)) return verify(p, line);
    if (nl == std::string_view::npos) break;
    rest = rest.substr(0, nl);
  }
  return false;
}

double format_reward(std::string_view output, const Tags& tags) {
  for (const std::string* t :
       {&tags.think_open, &tags.think_close, &tags.answer_open, &tags.answer_close})
    if (count_occurrences(output, *t) != 1) return 0.0;
  const size_t to = output.find(tags.think_open);
  const size_t tc = output.find(tags.think_close);
  const size_t ao = output.find(tags.answer_open);
  const size_t ac = output.find(tags.answer_close);
  if (!(to < tc && tc < ao && ao < ac)) return 0.0;
  const size_t think_end = tc + tags.think_close.size();
  const size_t answer_start = ao + tags.answer_open.size();
  const bool ok = blank(output.substr(0, to)) && blank(output.substr(think_end, ao - think_end)) &&
                  blank(output.substr(ac + tags.answer_close.size())) &&
                  !blank(output.substr(answer_start, ac - answer_start));
  return ok ? 1.0 : 0.0;
}

std::string reasoning_text(std::string_view output, const Tags& tags) {
  std::string_view region = output;
  const size_t to = output.find(tags.think_open);
  if (to != std::string_view::npos) {
    region = output.substr(to + tags.think_open.size());
    region = region.substr(0, region.find(tags.think_close));
  }
  std::string text(region);
  for (const std::string* t :
       {&tags.think_open, &tags.think_close, &tags.answer_open, &tags.answer_close}) {
    if (t->empty()) continue;
    for (size_t p = text.find(*t); p != std::string::npos; p = text.find(*t, p))
      text.replace(p, t->size(), " ");
  }
  return text;
}

double language_reward(std::string_view output, Lang lang, const Tags& tags) {
  return language_share(reasoning_text(output, tags), lang);
}

bool is_language_mixed(std::string_view output, Lang lang, const Tags& tags) {
  return language_reward(output, lang, tags) < 1.0;
}

double overlong_penalty(size_t length, size_t max_len, size_t cache_len) {
  SEEKR_CHECK(cache_len <= max_len, "cache_len ", cache_len, " > max_len ", max_len);
  const size_t safe = max_len - cache_len;
  if (length <= safe) return 0.0;
  if (length > max_len) return -1.0;
  return (static_cast<double>(safe) - static_cast<double>(length)) / static_cast<double>(cache_len);
}

RewardWeights parse_reward_weights(std::string_view spec) {
  RewardWeights w;
  std::string s = collapse_spaces(spec);
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    const std::string item = collapse_spaces(s.substr(start, end - start));
    start = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    SEEKR_REQUIRE(eq != std::string::npos, "reward weights: \"", item, "\" is not key=value");
    const std::string key = collapse_spaces(item.substr(0, eq));
    const std::string val = collapse_spaces(item.substr(eq + 1));
    char* endp = nullptr;
    const double v = std::strtod(val.c_str(), &endp);
    SEEKR_REQUIRE(!val.empty() && endp == val.c_str() + val.size() && std::isfinite(v),
                  "reward weights: value of \"", key, "\" is not a number: \"", val, "\"");
    if (key == "accuracy") {
      w.accuracy = v;
    } else if (key == "format") {
      w.format = v;
    } else if (key == "language") {
      w.language = v;
    } else if (key == "overlong") {
      w.overlong = v;
    } else if (key == "max_len" || key == "cache_len") {
      SEEKR_REQUIRE(v >= 0 && v == static_cast<double>(static_cast<size_t>(v)),
                    "reward weights: \"", key, "\" must be a non-negative integer");
      (key == "max_len" ? w.max_len : w.cache_len) = static_cast<size_t>(v);
    } else {
      throw Error("reward weights: unknown key \"" + key +
                  "\" (expected accuracy, format, language, overlong, max_len, cache_len)");
    }
  }
  SEEKR_REQUIRE(w.cache_len <= w.max_len, "reward weights: cache_len ", w.cache_len,
                " exceeds max_len ", w.max_len);
  SEEKR_REQUIRE(w.overlong == 0 || w.max_len > 0,
                "reward weights: overlong needs max_len (and cache_len)");
  return w;
}

RewardParts combined_reward(const Problem& p, std::string_view output, size_t length_tokens,
                            const RewardWeights& w, const Tags& tags) {
  RewardParts r;
  r.accuracy = accuracy_reward(p, output, tags);
  r.format = format_reward(output, tags);
  r.language = language_reward(output, p.lang, tags);
  r.overlong = w.max_len > 0 ? overlong_penalty(length_tokens, w.max_len, w.cache_len) : 0.0;
  r.total = w.accuracy * r.accuracy + w.format * r.format + w.language * r.language +
            w.overlong * r.overlong;
  return r;
}

}  // namespace seekr::rl
