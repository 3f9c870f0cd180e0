#include "kernels/routing.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/scratch.h"

namespace seekr {
namespace {

// Order by value descending, then index ascending: deterministic ties.
inline bool ranks_before(float a, int ia, float b, int ib) {
  return a > b || (a == b && ia < ib);
}

}  // namespace

void route_forward(const RoutingParams& p, const float* logits, const float* bias, float* scores,
                   int32_t* idx, float* weights, int N) {
  const int E = p.E, K = p.K, G = p.n_group, per_group = E / p.n_group;
  SEEKR_CHECK(E % G == 0 && K <= E && p.topk_group <= G);
#pragma omp parallel
  {
    // Per-thread scratch, every entry rewritten for each row.
    thread_local std::vector<float> choice_buf, group_buf;
    thread_local std::vector<int> order_buf;
    thread_local std::vector<char> keep_buf;
    float* choice = grown(choice_buf, E);
    float* group_score = grown(group_buf, G);
    int* order = grown(order_buf, std::max(E, G));
    char* keep = grown(keep_buf, G);
#pragma omp for
    for (int n = 0; n < N; ++n) {
      const float* l = logits + int64_t(n) * E;
      float* s = scores + int64_t(n) * E;
      if (p.sigmoid) {
        for (int e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + std::exp(-l[e]));
      } else {
        float m = l[0];
        for (int e = 1; e < E; ++e) m = std::max(m, l[e]);
        double z = 0;
        for (int e = 0; e < E; ++e) z += s[e] = std::exp(l[e] - m);
        const float inv = static_cast<float>(1.0 / z);
        for (int e = 0; e < E; ++e) s[e] *= inv;
      }
      for (int e = 0; e < E; ++e) choice[e] = s[e] + (bias ? bias[e] : 0.0f);
      if (G > 1) {
        for (int g = 0; g < G; ++g) {
          const float* c = choice + g * per_group;
          float top1 = -INFINITY, top2 = -INFINITY;
          for (int j = 0; j < per_group; ++j) {
            if (c[j] > top1) {
              top2 = top1;
              top1 = c[j];
            } else if (c[j] > top2) {
              top2 = c[j];
            }
          }
          group_score[g] = p.group_top2_sum ? top1 + top2 : top1;
        }
        for (int g = 0; g < G; ++g) order[g] = g;
        std::partial_sort(order, order + p.topk_group, order + G,
                          [&](int a, int b) {
                            return ranks_before(group_score[a], a, group_score[b], b);
                          });
        std::fill(keep, keep + G, 0);
        for (int i = 0; i < p.topk_group; ++i) keep[order[i]] = 1;
        for (int e = 0; e < E; ++e)
          if (!keep[e / per_group]) choice[e] = -INFINITY;
      }
      for (int e = 0; e < E; ++e) order[e] = e;
      std::partial_sort(order, order + K, order + E, [&](int a, int b) {
        return ranks_before(choice[a], a, choice[b], b);
      });
      int32_t* id = idx + int64_t(n) * K;
      float* w = weights + int64_t(n) * K;
      double sum = 0;
      for (int k = 0; k < K; ++k) {
        id[k] = order[k];
        w[k] = s[order[k]];
        sum += w[k];
      }
      const float mul = p.norm_topk ? static_cast<float>(p.scale / (sum + 1e-20)) : p.scale;
      for (int k = 0; k < K; ++k) w[k] *= mul;
    }
  }
}

void route_backward(const RoutingParams& p, const float* scores, const int32_t* idx,
                    const float* dweights, const float* dscores_extra, float* dlogits, int N) {
  const int E = p.E, K = p.K;
#pragma omp parallel
  {
    thread_local std::vector<float> ds_buf;
    float* ds = grown(ds_buf, E);
#pragma omp for
    for (int n = 0; n < N; ++n) {
      const float* s = scores + int64_t(n) * E;
      const int32_t* id = idx + int64_t(n) * K;
      const float* dw = dweights + int64_t(n) * K;
      if (dscores_extra) {
        std::copy(dscores_extra + int64_t(n) * E, dscores_extra + int64_t(n + 1) * E, ds);
      } else {
        std::fill(ds, ds + E, 0.0f);
      }
      // w_k = scale * s_k / S (normalised) or scale * s_k.
      if (p.norm_topk) {
        double S = 1e-20, dot = 0;
        for (int k = 0; k < K; ++k) S += s[id[k]];
        for (int k = 0; k < K; ++k) dot += double(dw[k]) * s[id[k]];
        for (int k = 0; k < K; ++k)
          ds[id[k]] += static_cast<float>(p.scale * (dw[k] / S - dot / (S * S)));
      } else {
        for (int k = 0; k < K; ++k) ds[id[k]] += p.scale * dw[k];
      }
      float* dl = dlogits + int64_t(n) * E;
      if (p.sigmoid) {
        for (int e = 0; e < E; ++e) dl[e] = ds[e] * s[e] * (1.0f - s[e]);
      } else {
        double dot = 0;
        for (int e = 0; e < E; ++e) dot += double(ds[e]) * s[e];
        for (int e = 0; e < E; ++e) dl[e] = s[e] * static_cast<float>(ds[e] - dot);
      }
    }
  }
}

}  // namespace seekr
