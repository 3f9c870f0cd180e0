#include "serve/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"

namespace seekr {

void SamplingParams::validate() const {
  SEEKR_REQUIRE(std::isfinite(temperature) && temperature >= 0.0f,
                "sampling: temperature must be >= 0, got ", temperature);
  SEEKR_REQUIRE(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", top_k);
  SEEKR_REQUIRE(top_p > 0.0f && top_p <= 1.0f, "sampling: top_p must be in (0, 1], got ", top_p);
  SEEKR_REQUIRE(min_p >= 0.0f && min_p <= 1.0f, "sampling: min_p must be in [0, 1], got ",
                min_p);
}

namespace {

int32_t argmax(const float* x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// log sum exp(x - m) with m = max(x), in double.
double log_sum_exp_shifted(const float* x, int n, float m) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - m);
  return std::log(s);
}

}  // namespace

float token_logprob(const float* logits, int vocab, int32_t token) {
  SEEKR_CHECK(token >= 0 && token < vocab, "token ", token, " vocab ", vocab);
  const float m = logits[argmax(logits, vocab)];
  return static_cast<float>(static_cast<double>(logits[token]) - m -
                            log_sum_exp_shifted(logits, vocab, m));
}

double Sampler::prepare(const float* logits, int vocab, const SamplingParams& p) {
  SEEKR_CHECK(vocab > 0);
  const float m = max_logit_ = logits[argmax(logits, vocab)];
  SEEKR_CHECK(std::isfinite(m), "non-finite max logit ", m);
  const double inv_t = 1.0 / p.temperature;
  probs_.resize(vocab);
  for (int i = 0; i < vocab; ++i) probs_[i] = std::exp((static_cast<double>(logits[i]) - m) * inv_t);

  cand_.resize(vocab);
  std::iota(cand_.begin(), cand_.end(), 0);
  // Most likely first, lower index first on equal logits: a strict total order, so the kept
  // set never depends on the sort algorithm.
  auto before = [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  auto begin = cand_.begin();
  int n = vocab;
  bool sorted = false;
  if (p.top_k > 0 && p.top_k < vocab) {
    n = p.top_k;
    std::nth_element(begin, begin + n, cand_.end(), before);
  }
  if (p.top_p < 1.0f) {
    double base = 0.0;
    for (int i = 0; i < n; ++i) base += probs_[cand_[i]];
    const double target = static_cast<double>(p.top_p) * base;
    // The nucleus is usually a small fraction of the vocabulary: sort a growing head of the
    // candidates instead of all of them.
    int c = std::min(n, 64);
    for (;;) {
      if (c < n) std::nth_element(begin, begin + c, begin + n, before);
      std::sort(begin, begin + c, before);
      double cum = 0.0;
      int j = 0;
      while (j < c) {
        cum += probs_[cand_[j++]];
        if (cum >= target) break;
      }
      if (cum >= target || c == n) {
        n = j;  // c == n without reaching target only by rounding: keep everything
        break;
      }
      c = static_cast<int>(std::min<int64_t>(n, int64_t{c} * 4));
    }
    sorted = true;
  } else if (n < vocab) {
    std::sort(begin, begin + n, before);
    sorted = true;
  }
  if (p.min_p > 0.0f) {
    // probs_ are relative to the most likely token (its value is 1).
    const double floor = p.min_p;
    if (sorted) {
      while (n > 1 && probs_[cand_[n - 1]] < floor) --n;
    } else {
      int w = 0;
      for (int i = 0; i < n; ++i)
        if (probs_[cand_[i]] >= floor) cand_[w++] = cand_[i];
      n = w;
    }
  }
  cand_.resize(n);
  double kept = 0.0;
  for (int32_t t : cand_) kept += probs_[t];
  return kept;
}

SampledToken Sampler::sample(const float* logits, int vocab, const SamplingParams& p, Rng& rng) {
  SampledToken out;
  if (p.greedy()) {
    out.token = argmax(logits, vocab);
    out.logprob = 0.0f;
    out.raw_logprob = token_logprob(logits, vocab, out.token);
    return out;
  }
  const double kept = prepare(logits, vocab, p);
  const double u = rng.uniform() * kept;
  double cum = 0.0;
  out.token = cand_.back();
  for (int32_t t : cand_) {
    cum += probs_[t];
    if (u < cum) {
      out.token = t;
      break;
    }
  }
  out.logprob = static_cast<float>(std::log(probs_[out.token] / kept));
  if (p.temperature == 1.0f) {
    // probs_ already hold exp(l - max): reuse their sum for the raw normaliser.
    double s = 0.0;
    for (double q : probs_) s += q;
    out.raw_logprob =
        static_cast<float>(static_cast<double>(logits[out.token]) - max_logit_ - std::log(s));
  } else {
    out.raw_logprob = token_logprob(logits, vocab, out.token);
  }
  return out;
}

std::vector<std::pair<int32_t, double>> Sampler::distribution(const float* logits, int vocab,
                                                              const SamplingParams& p) {
  std::vector<std::pair<int32_t, double>> out;
  if (p.greedy()) {
    out.emplace_back(argmax(logits, vocab), 1.0);
    return out;
  }
  const double kept = prepare(logits, vocab, p);
  for (int32_t t : cand_) out.emplace_back(t, probs_[t] / kept);
  return out;
}

}  // namespace seekr
