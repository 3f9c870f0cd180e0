// MoE routing: the fast kernel against a brute-force reference, and its backward against
// finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/rng.h"
#include "kernels/routing.h"

namespace seekr {
namespace {

// Brute force, written from the definition: full sorts, double precision.
void reference_route(const RoutingParams& p, const std::vector<float>& logits,
                     const std::vector<float>& bias, std::vector<int>& idx,
                     std::vector<double>& weights, int N) {
  const int E = p.E, per = E / p.n_group;
  idx.assign(size_t(N) * p.K, -1);
  weights.assign(size_t(N) * p.K, 0);
  for (int n = 0; n < N; ++n) {
    std::vector<double> s(E), c(E);
    double z = 0, m = -1e300;
    for (int e = 0; e < E; ++e) m = std::max(m, double(logits[n * E + e]));
    for (int e = 0; e < E; ++e) {
      const double l = logits[n * E + e];
      s[e] = p.sigmoid ? 1 / (1 + std::exp(-l)) : std::exp(l - m);
      z += s[e];
    }
    if (!p.sigmoid)
      for (auto& v : s) v /= z;
    for (int e = 0; e < E; ++e) c[e] = s[e] + (bias.empty() ? 0 : bias[e]);
    auto by_value = [](const std::vector<double>& v) {
      std::vector<int> o(v.size());
      std::iota(o.begin(), o.end(), 0);
      std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return v[a] > v[b]; });
      return o;
    };
    if (p.n_group > 1) {
      std::vector<double> gs(p.n_group);
      for (int g = 0; g < p.n_group; ++g) {
        std::vector<double> members(c.begin() + g * per, c.begin() + (g + 1) * per);
        std::sort(members.rbegin(), members.rend());
        gs[g] = p.group_top2_sum ? members[0] + members[1] : members[0];
      }
      auto order = by_value(gs);
      for (int i = p.topk_group; i < p.n_group; ++i)
        for (int e = order[i] * per; e < (order[i] + 1) * per; ++e) c[e] = -INFINITY;
    }
    auto order = by_value(c);
    double sum = 0;
    for (int k = 0; k < p.K; ++k) sum += s[order[k]];
    for (int k = 0; k < p.K; ++k) {
      idx[n * p.K + k] = order[k];
      weights[n * p.K + k] = s[order[k]] * p.scale / (p.norm_topk ? sum + 1e-20 : 1.0);
    }
  }
}

struct Case {
  RoutingParams p;
  bool with_bias;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (bool sigmoid : {true, false})
    for (bool norm : {true, false})
      for (int groups : {1, 4}) {
        RoutingParams p;
        p.E = 16;
        p.K = 4;
        p.n_group = groups;
        p.topk_group = groups > 1 ? 2 : 1;
        p.group_top2_sum = sigmoid;
        p.sigmoid = sigmoid;
        p.norm_topk = norm;
        p.scale = 2.5f;
        out.push_back({p, sigmoid});
      }
  return out;
}

TEST(Routing, MatchesBruteForceReference) {
  Rng rng(1);
  for (const Case& c : cases()) {
    const int N = 64, E = c.p.E, K = c.p.K;
    std::vector<float> logits(N * E), bias;
    for (auto& l : logits) l = static_cast<float>(rng.normal() * 2);
    // Exact ties: the lower expert index must win.
    logits[3] = logits[5];
    if (c.with_bias)
      for (int e = 0; e < E; ++e) bias.push_back(static_cast<float>(rng.uniform() * 0.2 - 0.1));
    std::vector<float> scores(N * E), weights(N * K);
    std::vector<int32_t> idx(N * K);
    route_forward(c.p, logits.data(), bias.empty() ? nullptr : bias.data(), scores.data(),
                  idx.data(), weights.data(), N);
    std::vector<int> ref_idx;
    std::vector<double> ref_w;
    reference_route(c.p, logits, bias, ref_idx, ref_w, N);
    for (int i = 0; i < N * K; ++i) {
      ASSERT_EQ(idx[i], ref_idx[i]) << "row " << i / K << " sigmoid " << c.p.sigmoid;
      ASSERT_NEAR(weights[i], ref_w[i], 1e-5 * std::max(1.0, std::fabs(ref_w[i])));
    }
  }
}

TEST(Routing, BackwardMatchesFiniteDifferences) {
  Rng rng(2);
  for (const Case& c : cases()) {
    const int N = 6, E = c.p.E, K = c.p.K;
    std::vector<float> logits(N * E);
    for (auto& l : logits) l = static_cast<float>(rng.normal());
    std::vector<float> dw(N * K), extra(N * E);
    for (auto& v : dw) v = static_cast<float>(rng.normal());
    for (auto& v : extra) v = static_cast<float>(rng.normal() * 0.3);
    // L = Σ dw·weights + Σ extra·scores
    auto loss = [&](const std::vector<float>& lg, std::vector<int32_t>* sel) {
      std::vector<float> s(N * E), w(N * K);
      std::vector<int32_t> id(N * K);
      route_forward(c.p, lg.data(), nullptr, s.data(), id.data(), w.data(), N);
      double L = 0;
      for (int i = 0; i < N * K; ++i) L += double(dw[i]) * w[i];
      for (int i = 0; i < N * E; ++i) L += double(extra[i]) * s[i];
      if (sel) *sel = id;
      return L;
    };
    std::vector<float> s(N * E), w(N * K), dl(N * E);
    std::vector<int32_t> id(N * K);
    route_forward(c.p, logits.data(), nullptr, s.data(), id.data(), w.data(), N);
    route_backward(c.p, s.data(), id.data(), dw.data(), extra.data(), dl.data(), N);
    int checked = 0;
    for (int i = 0; i < N * E; ++i) {
      const float h = 1e-3f;
      std::vector<float> lp = logits, lm = logits;
      lp[i] += h;
      lm[i] -= h;
      std::vector<int32_t> sp, sm;
      const double fd = (loss(lp, &sp) - loss(lm, &sm)) / (2 * h);
      if (sp != id || sm != id) continue;  // selection flipped: not differentiable here
      EXPECT_NEAR(dl[i], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << "logit " << i;
      ++checked;
    }
    EXPECT_GT(checked, N * E * 3 / 4);
  }
}

}  // namespace
}  // namespace seekr
