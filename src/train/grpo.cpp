#include "train/grpo.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/simd.h"

namespace seekr {

std::vector<float> group_advantages(const std::vector<float>& rewards, int G, bool scale_by_std,
                                    float eps) {
  SEEKR_REQUIRE(G >= 2, "group_advantages: group size G = ", G, " (needs at least 2)");
  SEEKR_REQUIRE(rewards.size() % G == 0, "group_advantages: ", rewards.size(),
                " rewards are not a whole number of groups of ", G);
  std::vector<float> adv(rewards.size());
  for (size_t g0 = 0; g0 < rewards.size(); g0 += G) {
    const float* r = rewards.data() + g0;
    double mean = 0.0;
    for (int i = 0; i < G; ++i) mean += r[i];
    mean /= G;
    double var = 0.0;
    for (int i = 0; i < G; ++i) var += (r[i] - mean) * (r[i] - mean);
    const double denom = scale_by_std ? std::sqrt(var / (G - 1)) + eps : 1.0;
    for (int i = 0; i < G; ++i) adv[g0 + i] = static_cast<float>((r[i] - mean) / denom);
  }
  return adv;
}

bool dapo_keep_group(const float* rewards, int G) {
  for (int i = 1; i < G; ++i)
    if (rewards[i] != rewards[0]) return true;
  return false;
}

namespace {

// Per row: m = max x, s = Σ exp(x − m), sx = Σ exp(x − m)·(x − m). Then
//   log Z = m + log s,  logp_t = (x_t − m) − log s,  entropy = log s − sx / s.
struct RowSums {
  double m, s, sx;
};

RowSums row_sums(const float* x, int V) {
  const float m = simd::max(x, V);
  double s = 0.0, sx = 0.0;
  int64_t i = 0;
#if SEEKR_AVX2
  const __m256 vm = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps(), accx = _mm256_setzero_ps();
  for (; i + 8 <= V; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
    const __m256 e = simd::exp_ps(d);
    acc = _mm256_add_ps(acc, e);
    accx = _mm256_fmadd_ps(e, d, accx);
  }
  s = simd::hsum(acc);
  sx = simd::hsum(accx);
#endif
  for (; i < V; ++i) {
    const float d = x[i] - m;
    const float e = std::exp(d);
    s += e;
    sx += double(e) * d;
  }
  return {m, s, sx};
}

RowSums row_sums(const double* x, int V) {
  double m = -INFINITY;
  for (int i = 0; i < V; ++i) m = std::max(m, x[i]);
  double s = 0.0, sx = 0.0;
  for (int i = 0; i < V; ++i) {
    const double e = std::exp(x[i] - m);
    s += e;
    sx += e * (x[i] - m);
  }
  return {m, s, sx};
}

// d[i] = coef · (softmax(x)_i − [i = t]); d may alias x.
void write_grad(const float* x, float* d, int V, int t, const RowSums& r, double coef) {
  simd::exp_store_sum(x, d, V, static_cast<float>(r.m));
  simd::scale(d, V, static_cast<float>(coef / r.s));
  d[t] -= static_cast<float>(coef);
}

void write_grad(const double* x, double* d, int V, int t, const RowSums& r, double coef) {
  for (int i = 0; i < V; ++i) d[i] = coef * std::exp(x[i] - r.m) / r.s;
  d[t] -= coef;
}

// What one counted token contributes, before the aggregation weight.
struct TokenTerms {
  double loss = 0, kl = 0, entropy = 0, ratio = 0;
  uint8_t clip_low = 0, clip_high = 0;
};

template <typename T>
GrpoLossStats grpo_impl(const GrpoLossConfig& c, const GrpoBatch& b, const T* logits, T* dlogits) {
  const int N = b.N, V = b.V, S = b.num_sequences;
  SEEKR_REQUIRE(N >= 0 && V > 0 && S > 0, "grpo loss: bad shape N = ", N, ", V = ", V,
                ", num_sequences = ", S);
  SEEKR_REQUIRE(b.targets && b.mask && b.sequence && b.old_logp && b.advantages,
                "grpo loss: targets, mask, sequence, old_logp and advantages are required");
  SEEKR_REQUIRE(c.beta == 0.0f || b.ref_logp, "grpo loss: beta = ", c.beta,
                " needs reference log-probs (ref_logp is null)");
  SEEKR_REQUIRE(c.beta >= 0.0f && c.eps_low >= 0.0f && c.eps_high >= 0.0f,
                "grpo loss: beta, eps_low and eps_high must be >= 0");
  SEEKR_REQUIRE(c.mode != GrpoMode::kDrGrpo || c.max_completion_length > 0,
                "grpo loss: dr_grpo needs max_completion_length > 0");

  // Validation and token counts up front: nothing may throw inside the parallel loop.
  std::vector<int64_t> count(S, 0);
  int64_t total = 0;
  for (int n = 0; n < N; ++n) {
    if (!b.mask[n]) continue;
    SEEKR_REQUIRE(b.targets[n] >= 0 && b.targets[n] < V, "grpo loss: row ", n, ": target ",
                  b.targets[n], " out of range for vocab ", V);
    SEEKR_REQUIRE(b.sequence[n] >= 0 && b.sequence[n] < S, "grpo loss: row ", n,
                  ": sequence index ", b.sequence[n], " out of range [0, ", S, ")");
    ++count[b.sequence[n]];
    ++total;
  }
  if (c.mode == GrpoMode::kDrGrpo)
    for (int s = 0; s < S; ++s)
      SEEKR_REQUIRE(count[s] <= c.max_completion_length, "grpo loss: sequence ", s, " counts ",
                    count[s], " tokens, more than max_completion_length ", c.max_completion_length);

  // Aggregation weight of each sequence's tokens (clamps at 1 token as TRL does).
  std::vector<double> weight(S);
  for (int s = 0; s < S; ++s) {
    switch (c.mode) {
      case GrpoMode::kGrpo:
        weight[s] = 1.0 / (double(S) * double(std::max<int64_t>(count[s], 1)));
        break;
      case GrpoMode::kDrGrpo:
        weight[s] = 1.0 / (double(S) * c.max_completion_length);
        break;
      case GrpoMode::kDapo:
        weight[s] = 1.0 / double(std::max<int64_t>(total, 1));
        break;
    }
  }

  const double lo = 1.0 - double(c.eps_low), hi = 1.0 + double(c.eps_high);
  const double beta = c.beta;
  std::vector<TokenTerms> terms(N);
  // Each row costs O(V) exps; below a few thousand elements the thread start-up costs more.
  const bool parallel = int64_t(N) * V >= (int64_t(1) << 16);
#pragma omp parallel for schedule(static) if (parallel)
  for (int n = 0; n < N; ++n) {
    const T* x = logits + int64_t(n) * V;
    T* d = dlogits + int64_t(n) * V;
    if (!b.mask[n]) {
      std::memset(d, 0, sizeof(T) * V);
      continue;
    }
    const int t = b.targets[n];
    const double A = b.advantages[b.sequence[n]];
    const RowSums r = row_sums(x, V);
    const double log_s = std::log(r.s);
    const double logp = (double(x[t]) - r.m) - log_s;
    const double ratio = std::exp(logp - double(b.old_logp[n]));
    const double clipped = std::clamp(ratio, lo, hi);
    TokenTerms& tt = terms[n];
    tt.loss = -std::min(ratio * A, clipped * A);
    tt.ratio = ratio;
    tt.entropy = log_s - r.sx / r.s;
    tt.clip_low = ratio < lo && A < 0;
    tt.clip_high = ratio > hi && A > 0;
    // d term / d logp: the unclipped branch gives −A·ρ; the clipped one is constant in logp.
    double dterm = (tt.clip_low || tt.clip_high) ? 0.0 : -A * ratio;
    if (b.ref_logp) {
      const double delta = double(b.ref_logp[n]) - logp;  // log(π_ref / π_θ)
      const double e = std::exp(delta);
      tt.kl = e - delta - 1.0;
      tt.loss += beta * tt.kl;
      dterm += beta * (1.0 - e);
    }
    // d logp / d x = onehot(t) − softmax(x), so d loss / d x = −g · (softmax − onehot).
    write_grad(x, d, V, t, r, -weight[b.sequence[n]] * dterm);
  }

  // Serial sums in row order: the result does not depend on the thread count.
  GrpoLossStats st;
  int64_t low = 0, high = 0;
  for (int n = 0; n < N; ++n) {
    if (!b.mask[n]) continue;
    const TokenTerms& tt = terms[n];
    st.loss += weight[b.sequence[n]] * tt.loss;
    st.mean_kl += tt.kl;
    st.mean_entropy += tt.entropy;
    st.mean_ratio += tt.ratio;
    low += tt.clip_low;
    high += tt.clip_high;
  }
  st.counted_tokens = total;
  if (total > 0) {
    const double inv = 1.0 / double(total);
    st.mean_kl *= inv;
    st.mean_entropy *= inv;
    st.mean_ratio *= inv;
    st.clip_low_fraction = double(low) * inv;
    st.clip_high_fraction = double(high) * inv;
    st.clip_fraction = double(low + high) * inv;  // disjoint: they need A of opposite signs
  }
  return st;
}

}  // namespace

GrpoLossStats grpo_loss_forward_backward(const GrpoLossConfig& config, const GrpoBatch& batch,
                                         const float* logits, float* dlogits) {
  return grpo_impl(config, batch, logits, dlogits);
}

GrpoLossStats grpo_loss_forward_backward(const GrpoLossConfig& config, const GrpoBatch& batch,
                                         const double* logits, double* dlogits) {
  return grpo_impl(config, batch, logits, dlogits);
}

}  // namespace seekr
