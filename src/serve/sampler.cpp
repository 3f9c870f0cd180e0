#include "serve/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seekr {

void SamplingParams::validate() const {
  SEEKR_REQUIRE(std::isfinite(temperature) && temperature >= 0.0f,
                "sampling: temperature must be >= 0, got ", temperature);
  SEEKR_REQUIRE(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", top_k);
  SEEKR_REQUIRE(top_p > 0.0f && top_p <= 1.0f, "sampling: top_p must be in (0, 1], got ", top_p);
  SEEKR_REQUIRE(min_p >= 0.0f && min_p <= 1.0f, "sampling: min_p must be in [0, 1], got ", min_p);
}

namespace {

// First index of the largest logit.
int32_t argmax(const float* x, int n) {
  const float m = simd::max(x, n);
  for (int i = 0; i < n; ++i)
    if (x[i] == m) return i;
  SEEKR_CHECK(false, "no finite maximum among ", n, " logits (NaN?)");
  return 0;
}

}  // namespace

float token_logprob(const float* logits, int vocab, int32_t token) {
  SEEKR_CHECK(token >= 0 && token < vocab, "token ", token, " vocab ", vocab);
  // The formula (and SIMD helpers) of log_prob_of_targets, which the training side uses for
  // policy log-probs, so both agree exactly on equal logits; called directly because that
  // kernel opens an OpenMP region, which costs milliseconds per token on a loaded machine.
  const float m = simd::max(logits, vocab);
  return static_cast<float>((logits[token] - m) - std::log(simd::sum_exp(logits, vocab, m)));
}

double Sampler::prepare(const float* logits, int vocab, const SamplingParams& p) {
  SEEKR_CHECK(vocab > 0);
  const float m = simd::max(logits, vocab);
  SEEKR_CHECK(std::isfinite(m), "non-finite max logit ", m);
  // probs_[i] = exp((l_i - m) / T): relative to the most likely token, whose value is 1.
  probs_.resize(vocab);
  double total;
  if (p.temperature == 1.0f) {
    total = simd::exp_store_sum(logits, probs_.data(), vocab, m);
  } else {
    const float inv_t = 1.0f / p.temperature;
    for (int i = 0; i < vocab; ++i) probs_[i] = logits[i] * inv_t;
    total = simd::exp_store_sum(probs_.data(), probs_.data(), vocab, m * inv_t);
  }
  all_ = false;
  cand_.clear();
  // Most likely first, lower index first on equal logits: a strict total order, so the kept
  // set never depends on the sort algorithm.
  auto before = [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const bool top_k = p.top_k > 0 && p.top_k < vocab;
  const bool top_p = p.top_p < 1.0f;
  if (top_k) {
    // One pass with a heap of the k best so far (its front is the worst of them): most
    // tokens are rejected by a single comparison.
    for (int i = 0; i < vocab; ++i) {
      if (static_cast<int>(cand_.size()) < p.top_k) {
        cand_.push_back(i);
        std::push_heap(cand_.begin(), cand_.end(), before);
      } else if (before(i, cand_.front())) {
        std::pop_heap(cand_.begin(), cand_.end(), before);
        cand_.back() = i;
        std::push_heap(cand_.begin(), cand_.end(), before);
      }
    }
    total = 0.0;
    for (int32_t t : cand_) total += probs_[t];
  } else if (top_p) {
    // Tokens below floor = (1 - p) * total / V hold at most (1 - p) of the mass together, so
    // the nucleus (a prefix of the sorted order reaching p) lies within the tokens at or above
    // it, which are themselves a prefix of that order. Only they need sorting.
    const double floor = (1.0 - p.top_p) * total / vocab;
    double above = 0.0;
    for (int i = 0; i < vocab; ++i)
      if (probs_[i] >= floor) {
        cand_.push_back(i);
        above += probs_[i];
      }
    if (above < p.top_p * total) {  // only by rounding: fall back to every token
      cand_.resize(vocab);
      std::iota(cand_.begin(), cand_.end(), 0);
    }
  }
  if (top_k || top_p) {
    if (top_p) {
      // The nucleus is usually a small part of the candidates: sort a growing head of them.
      const double target = static_cast<double>(p.top_p) * total;
      const size_t n = cand_.size();
      size_t c = std::min<size_t>(n, 256), sorted = 0;
      for (;;) {
        if (c < n) std::nth_element(cand_.begin() + sorted, cand_.begin() + c, cand_.end(), before);
        std::sort(cand_.begin() + sorted, cand_.begin() + c, before);
        double cum = 0.0;
        size_t j = 0;
        while (j < c) {
          cum += probs_[cand_[j++]];
          if (cum >= target) break;
        }
        if (cum >= target || c == n) {  // c == n without reaching target: rounding, keep all
          cand_.resize(j);
          break;
        }
        sorted = c;
        c = std::min(n, c * 8);
      }
    } else {
      std::sort(cand_.begin(), cand_.end(), before);
    }
    if (p.min_p > 0.0f)
      while (cand_.size() > 1 && probs_[cand_.back()] < p.min_p) cand_.pop_back();
  } else if (p.min_p > 0.0f) {
    for (int i = 0; i < vocab; ++i)
      if (probs_[i] >= p.min_p) cand_.push_back(i);
  } else {
    all_ = true;  // every token, in index order: no need to list them
  }
  double kept = 0.0;
  if (all_) {
    for (float q : probs_) kept += q;
  } else {
    for (int32_t t : cand_) kept += probs_[t];
  }
  return kept;
}

SampledToken Sampler::sample(const float* logits, int vocab, const SamplingParams& p, Rng& rng) {
  SampledToken out;
  if (p.greedy()) {
    out.token = argmax(logits, vocab);
    out.logprob = 0.0f;
  } else {
    const double kept = prepare(logits, vocab, p);
    // The scan adds in the same order as prepare() did, so it reaches `kept` exactly and
    // u < kept always lands on a token with non-zero probability.
    const double u = rng.uniform() * kept;
    double cum = 0.0;
    if (all_) {
      out.token = vocab - 1;
      for (int i = 0; i < vocab; ++i) {
        cum += probs_[i];
        if (u < cum) {
          out.token = i;
          break;
        }
      }
    } else {
      out.token = cand_.back();
      for (int32_t t : cand_) {
        cum += probs_[t];
        if (u < cum) {
          out.token = t;
          break;
        }
      }
    }
    out.logprob = static_cast<float>(std::log(probs_[out.token] / kept));
  }
  out.raw_logprob = token_logprob(logits, vocab, out.token);
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
  if (all_) {
    for (int i = 0; i < vocab; ++i) out.emplace_back(i, probs_[i] / kept);
  } else {
    for (int32_t t : cand_) out.emplace_back(t, probs_[t] / kept);
  }
  return out;
}

}  // namespace seekr
