#include "rl/answer.h"

#include <cctype>
#include <cstdint>
#include <vector>

#include "rl/text.h"

namespace seekr::rl {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// An integer, plain or with comma groups of three after a first group of one to three digits.
std::optional<std::string> parse_grouped_int(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::string digits;
  size_t i = 0;
  while (i < s.size() && is_digit(s[i])) digits += s[i++];
  if (digits.empty()) return std::nullopt;
  if (i == s.size()) return digits;
  if (digits.size() > 3) return std::nullopt;
  while (i < s.size()) {
    if (s[i] != ',' || i + 4 > s.size()) return std::nullopt;
    for (size_t k = 1; k <= 3; ++k)
      if (!is_digit(s[i + k])) return std::nullopt;
    digits.append(s.substr(i + 1, 3));
    i += 4;
  }
  return digits;
}

// Position just past the brace that closes the one opened at s[open]; npos when unbalanced.
size_t match_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1;
  }
  return std::string_view::npos;
}

// "\boxed{X}" spanning all of s -> X.
std::optional<std::string_view> unwrap_whole(std::string_view s, std::string_view head) {
  if (s.substr(0, head.size()) != head) return std::nullopt;
  const size_t end = match_brace(s, head.size() - 1);
  if (end != s.size()) return std::nullopt;
  return s.substr(head.size(), s.size() - head.size() - 1);
}

std::optional<BigRational> parse_frac_command(std::string_view s) {
  for (std::string_view head : {"\\frac{", "\\dfrac{", "\\tfrac{"}) {
    if (s.substr(0, head.size()) != head) continue;
    const size_t end1 = match_brace(s, head.size() - 1);
    if (end1 == std::string_view::npos || end1 >= s.size() || s[end1] != '{') return std::nullopt;
    const size_t end2 = match_brace(s, end1);
    if (end2 != s.size()) return std::nullopt;
    auto num = parse_grouped_int(trim(s.substr(head.size(), end1 - 1 - head.size())));
    auto den = parse_grouped_int(trim(s.substr(end1 + 1, end2 - end1 - 2)));
    if (!num || !den) return std::nullopt;
    BigRational r{*BigInt::parse(*num), *BigInt::parse(*den)};
    if (r.den.is_zero()) return std::nullopt;
    return r;
  }
  return std::nullopt;
}

}  // namespace

std::string fold_digits(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t len = 0;
    const int32_t cp = decode_utf8(text, i, &len);
    char mapped = 0;
    if (cp >= 0xFF10 && cp <= 0xFF19) mapped = static_cast<char>('0' + (cp - 0xFF10));
    if (cp >= 0x0660 && cp <= 0x0669) mapped = static_cast<char>('0' + (cp - 0x0660));
    if (cp >= 0x06F0 && cp <= 0x06F9) mapped = static_cast<char>('0' + (cp - 0x06F0));
    if (cp == 0xFF0B) mapped = '+';
    if (cp == 0xFF0D || cp == 0x2212) mapped = '-';
    if (cp == 0xFF0E || cp == 0x066B) mapped = '.';
    if (cp == 0xFF0F) mapped = '/';
    if (cp == 0xFF0C || cp == 0x066C) mapped = ',';
    if (mapped && len > 1) {
      out += mapped;
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::optional<BigRational> parse_number(std::string_view text) {
  const std::string folded = fold_digits(text);
  std::string_view s = trim(folded);
  while (auto inner = unwrap_whole(s, "\\boxed{")) s = trim(*inner);
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  std::optional<BigRational> r;
  if (s[0] == '\\') {
    r = parse_frac_command(s);
  } else if (const size_t slash = s.find('/'); slash != std::string_view::npos) {
    auto num = parse_grouped_int(s.substr(0, slash));
    auto den = parse_grouped_int(s.substr(slash + 1));
    if (!num || !den) return std::nullopt;
    r = BigRational{*BigInt::parse(*num), *BigInt::parse(*den)};
    if (r->den.is_zero()) return std::nullopt;
  } else {
    const size_t dot = s.find('.');
    const std::string_view int_part = s.substr(0, dot);
    const std::string_view frac_part =
        dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
    if (int_part.empty() && frac_part.empty()) return std::nullopt;
    std::string digits;
    if (!int_part.empty()) {
      auto i = parse_grouped_int(int_part);
      if (!i) return std::nullopt;
      digits = *i;
    }
    for (char c : frac_part)
      if (!is_digit(c)) return std::nullopt;
    digits += frac_part;
    r = BigRational{*BigInt::parse(digits),
                    *BigInt::parse("1" + std::string(frac_part.size(), '0'))};
  }
  if (r && neg) r->num = -r->num;
  return r;
}

bool numbers_equal(std::string_view a, std::string_view b) {
  const auto x = parse_number(a);
  const auto y = parse_number(b);
  return x && y && *x == *y;
}

std::optional<std::string> extract_boxed(std::string_view text) {
  static constexpr std::string_view kHead = "\\boxed{";
  std::optional<std::string> found;
  int count = 0;
  for (size_t p = text.find(kHead); p != std::string_view::npos; p = text.find(kHead, p)) {
    const size_t end = match_brace(text, p + kHead.size() - 1);
    if (end == std::string_view::npos) return std::nullopt;
    found = std::string(trim(text.substr(p + kHead.size(), end - 1 - p - kHead.size())));
    ++count;
    p = end;
  }
  if (count != 1 || found->empty()) return std::nullopt;
  return found;
}

std::optional<std::string> extract_strict(std::string_view output, const Tags& tags) {
  const size_t opens = count_occurrences(output, tags.answer_open);
  const size_t closes = count_occurrences(output, tags.answer_close);
  if (opens == 0 && closes == 0) {
    // No answer tag: the one \boxed{} after the reasoning, if the reasoning is closed.
    const size_t tc = output.rfind(tags.think_close);
    if (tc == std::string_view::npos) {
      if (output.find(tags.think_open) != std::string_view::npos) return std::nullopt;
      return extract_boxed(output);
    }
    const std::string_view after = output.substr(tc + tags.think_close.size());
    if (after.find(tags.think_open) != std::string_view::npos) return std::nullopt;
    return extract_boxed(after);
  }
  if (opens != 1 || closes != 1) return std::nullopt;
  const size_t o = output.find(tags.answer_open);
  const size_t c = output.find(tags.answer_close);
  if (c < o) return std::nullopt;
  // A think block opened before the answer must be closed before it.
  const size_t last_think = output.rfind(tags.think_open, o);
  if (last_think != std::string_view::npos && output.find(tags.think_close, last_think) > o)
    return std::nullopt;
  const std::string_view tail = output.substr(o);
  if (tail.find(tags.think_open) != std::string_view::npos ||
      tail.find(tags.think_close) != std::string_view::npos)
    return std::nullopt;
  const std::string_view content =
      trim(output.substr(o + tags.answer_open.size(), c - o - tags.answer_open.size()));
  if (content.empty()) return std::nullopt;
  if (content.find("\\boxed{") != std::string_view::npos) return extract_boxed(content);
  return std::string(content);
}

std::optional<std::string> last_number(std::string_view text) {
  const std::string s = fold_digits(text);
  const size_t n = s.size();
  auto digit_at = [&](size_t i) { return i < n && is_digit(s[i]); };
  std::optional<std::string> last;
  size_t i = 0;
  while (i < n) {
    if (!digit_at(i) && !(s[i] == '.' && digit_at(i + 1))) {
      ++i;
      continue;
    }
    size_t start = i;
    if (start > 0 && (s[start - 1] == '-' || s[start - 1] == '+')) {
      const char p = start >= 2 ? s[start - 2] : ' ';
      const bool operand_before =
          std::isalnum(static_cast<unsigned char>(p)) || p == ')' || p == ']' || p == '}';
      if (!operand_before) --start;
    }
    const size_t lead = i;
    while (digit_at(i)) ++i;
    if (i - lead >= 1 && i - lead <= 3) {
      while (i < n && s[i] == ',' && digit_at(i + 1) && digit_at(i + 2) && digit_at(i + 3) &&
             !digit_at(i + 4))
        i += 4;
    }
    if (i < n && s[i] == '.' && digit_at(i + 1)) {
      ++i;
      while (digit_at(i)) ++i;
    }
    if (i < n && s[i] == '/' && digit_at(i + 1)) {
      ++i;
      while (digit_at(i)) ++i;
    }
    last = s.substr(start, i - start);
  }
  return last;
}

std::optional<std::string> extract_lenient(std::string_view output, const Tags& tags) {
  if (auto strict = extract_strict(output, tags)) return strict;
  return last_number(output);
}

std::string collapse_spaces(std::string_view text) {
  std::string out;
  bool pending = false;
  for (char c : trim(text)) {
    if (is_space(c)) {
      pending = true;
      continue;
    }
    if (pending) out += ' ';
    pending = false;
    out += c;
  }
  return out;
}

}  // namespace seekr::rl
