// Countdown: reach a target with given numbers, each used exactly once, with + - * / and
// parentheses. Division must be exact (the classic game's rule), so every intermediate value is
// an integer and checked 64-bit arithmetic is exact; an overflow makes the expression invalid.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"

namespace seekr::rl {

struct CountdownResult {
  bool ok = false;    // the expression is valid, uses the numbers exactly, and hits the target
  std::string error;  // why not, for logs and tests
  std::optional<int64_t> value;  // the expression's value when it evaluates
};

// Accepts digits (full-width and Arabic-Indic folded), + - (also U+2212) * (also U+00D7)
// / (also U+00F7), parentheses and whitespace; nothing else (no '=', no unary minus, no
// exponent). The numbers written must be exactly the multiset `numbers`.
CountdownResult check_countdown(std::string_view expr, const std::vector<int64_t>& numbers,
                                int64_t target);

// An expression over all of `numbers` that equals target, by exhaustive search (fine for up to
// six numbers); nullopt when there is none.
std::optional<std::string> solve_countdown(const std::vector<int64_t>& numbers, int64_t target);

struct CountdownSpec {
  int count = 4;        // how many numbers
  int max_number = 25;  // numbers are drawn from [1, max_number]
  int64_t max_target = 999;
};

struct CountdownPuzzle {
  std::vector<int64_t> numbers;
  int64_t target = 0;
  std::string solution;  // the expression the target was built from
};

// Solvable by construction: the target is the value of a random expression over the numbers
// with positive intermediates and exact divisions, in [1, max_target].
CountdownPuzzle generate_countdown(const CountdownSpec& spec, Rng& rng);

}  // namespace seekr::rl
