// Answer extraction and number normalisation. The rules (docs/rl-tasks.md) are chosen so that a
// policy cannot raise its reward by hedging: an output with more than one answer tag pair, more
// than one top-level \boxed{}, or its answer inside the reasoning has NO strict answer at all.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "rl/bigint.h"

namespace seekr::rl {

// The tag strings, so a tiny model can use short single-token tags (<t>, <a>) with the same rules.
struct Tags {
  std::string think_open = "<think>";
  std::string think_close = "</think>";
  std::string answer_open = "<answer>";
  std::string answer_close = "</answer>";
};

// Maps full-width (U+FF10..), Arabic-Indic (U+0660..) and Extended Arabic-Indic (U+06F0..)
// digits to ASCII, and full-width + - . / , , U+2212 MINUS SIGN, U+066B/U+066C (Arabic decimal
// and thousands separators) to their ASCII forms. Everything else, including invalid UTF-8
// bytes, passes through unchanged.
std::string fold_digits(std::string_view text);

// Parses a whole string as one exact number: [+-]? then an integer (plain, or grouped with
// commas as 1,234,567), a decimal (1.5, .5, 5.), a fraction of integers (3/4, -12/5), or
// \frac{a}{b} / \dfrac{a}{b}; an optional \boxed{...} wrapper and surrounding whitespace are
// allowed, digits are folded first. No exponents, no internal spaces, no zero denominators.
std::optional<BigRational> parse_number(std::string_view text);

// Exact equality of two answers as numbers; false when either does not parse.
bool numbers_equal(std::string_view a, std::string_view b);

// The content of the one \boxed{...} at top level (nested braces matched); nullopt when there
// is none, more than one, or the braces are unbalanced.
std::optional<std::string> extract_boxed(std::string_view text);

// Strict extraction, the only one rewards use:
//  * the output has exactly one answer_open and exactly one answer_close, in that order, and
//    neither think tag occurs after answer_open (the answer is not inside or before reasoning):
//    the trimmed text between them, with a whole-content \boxed{X} unwrapped to X;
//  * the output has no answer tag at all: the single top-level \boxed{} outside any think block
//    (text after the last think_close, or all of it when there is no think tag);
//  * anything else (several tags, unclosed tag, empty content): nullopt.
std::optional<std::string> extract_strict(std::string_view output, const Tags& tags = {});

// Lenient extraction, for the "lenient pass@1" metric only: the strict answer when there is
// one, otherwise the last number anywhere in the output (see last_number).
std::optional<std::string> extract_lenient(std::string_view output, const Tags& tags = {});

// The last number-looking token after digit folding: digits with optional comma groups, an
// optional decimal part and an optional /denominator. A sign is taken only when the character
// before it is not a digit, letter or closing bracket, so in "5-3" the last number is 3.
std::optional<std::string> last_number(std::string_view text);

// Trims ASCII whitespace and collapses internal runs of it to one space.
std::string collapse_spaces(std::string_view text);

}  // namespace seekr::rl
