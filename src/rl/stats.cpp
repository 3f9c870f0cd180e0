#include "rl/stats.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace seekr::rl {

double pass_at_k(size_t n, size_t c, size_t k) {
  SEEKR_CHECK(c <= n && k >= 1 && k <= n, "pass_at_k(n=", n, ", c=", c, ", k=", k, ")");
  if (n - c < k) return 1.0;
  double prod = 1.0;
  for (size_t i = n - c + 1; i <= n; ++i)
    prod *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - prod;
}

std::optional<size_t> majority_vote(
    const std::vector<std::optional<std::string>>& answers,
    const std::function<bool(const std::string&, const std::string&)>& same) {
  // Classes as (representative index, votes), in order of first appearance.
  std::vector<std::pair<size_t, size_t>> classes;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (!answers[i]) continue;
    bool placed = false;
    for (auto& [rep, votes] : classes) {
      if (same(*answers[rep], *answers[i])) {
        ++votes;
        placed = true;
        break;
      }
    }
    if (!placed) classes.emplace_back(i, 1);
  }
  if (classes.empty()) return std::nullopt;
  auto best = classes.begin();
  for (auto it = classes.begin(); it != classes.end(); ++it)
    if (it->second > best->second) best = it;
  return best->first;
}

Interval wilson_interval(size_t successes, size_t trials, double z) {
  SEEKR_CHECK(successes <= trials);
  if (trials == 0) return {0, 0, 1};
  const double n = static_cast<double>(trials);
  const double p = static_cast<double>(successes) / n;
  const double z2 = z * z;
  const double denom = 1 + z2 / n;
  const double center = (p + z2 / (2 * n)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom;
  return {p, std::max(0.0, center - half), std::min(1.0, center + half)};
}

Interval mean_interval(const std::vector<double>& per_problem, double z, bool clamp01) {
  SEEKR_CHECK(!per_problem.empty());
  const double m = static_cast<double>(per_problem.size());
  double sum = 0;
  for (double v : per_problem) sum += v;
  const double mean = sum / m;
  double ss = 0;
  for (double v : per_problem) ss += (v - mean) * (v - mean);
  const double sd = per_problem.size() > 1 ? std::sqrt(ss / (m - 1)) : 0.0;
  const double half = z * sd / std::sqrt(m);
  Interval r{mean, mean - half, mean + half};
  if (clamp01) {
    r.lo = std::max(0.0, r.lo);
    r.hi = std::min(1.0, r.hi);
  }
  return r;
}

bool intervals_overlap(const Interval& a, const Interval& b) {
  return a.lo <= b.hi && b.lo <= a.hi;
}

}  // namespace seekr::rl
