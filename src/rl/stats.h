// Evaluation statistics for `seekr eval`: pass@k, maj@k and confidence intervals.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace seekr::rl {

// Unbiased pass@k from n samples of which c are correct (Chen et al. 2021):
// 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i) to avoid huge binomials.
// Requires 0 <= c <= n and 1 <= k <= n.
double pass_at_k(size_t n, size_t c, size_t k);

// Majority vote over extracted answers (nullopt = no answer, which never votes). `same` decides
// when two answers are one (e.g. numbers_equal, so "1.5" and "3/2" pool their votes). Returns
// the index of the first sample of the largest class (ties: the class seen first), or nullopt
// when no sample has an answer. maj@k of a problem is correct[index] over its first k samples.
std::optional<size_t> majority_vote(
    const std::vector<std::optional<std::string>>& answers,
    const std::function<bool(const std::string&, const std::string&)>& same);

struct Interval {
  double mean = 0;
  double lo = 0;
  double hi = 0;
};

inline constexpr double kZ95 = 1.959963984540054;

// Wilson score interval for a proportion: for pass@1 with one sample per problem.
Interval wilson_interval(size_t successes, size_t trials, double z = kZ95);

// Normal interval for the mean of per-problem scores (e.g. c_j/n_j, or pass@k_j), using the
// sample variance across problems: mean +- z * sd / sqrt(m), clamped to [0, 1] when
// clamp01. With several samples per problem this is the right unit: samples of one problem are
// not independent. m = 1 gives a zero-width interval.
Interval mean_interval(const std::vector<double>& per_problem, double z = kZ95,
                       bool clamp01 = true);

// Two intervals overlap when neither lies wholly above the other.
bool intervals_overlap(const Interval& a, const Interval& b);

}  // namespace seekr::rl
