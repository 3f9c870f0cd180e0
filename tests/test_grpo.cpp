// GRPO / Dr. GRPO / DAPO losses at the logits (src/train/grpo.h): against the PyTorch autograd
// reference (tests/reference/grpo_twin.py, run by the CTest fixture grpo_reference), against
// central finite differences in double precision, and on hand-computed cases.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "kernels/ops.h"
#include "train/grpo.h"

namespace seekr {
namespace {

// A batch with its own storage; view() points a GrpoBatch at it.
struct Batch {
  int N = 0, V = 0, S = 0;
  std::vector<int32_t> targets, sequence;
  std::vector<uint8_t> mask;
  std::vector<float> old_logp, ref_logp, advantages;
  GrpoBatch view(bool with_ref = true) const {
    return {N,
            V,
            S,
            targets.data(),
            mask.data(),
            sequence.data(),
            old_logp.data(),
            with_ref ? ref_logp.data() : nullptr,
            advantages.data()};
  }
};

GrpoLossConfig config_for(GrpoMode mode, float beta, int max_len) {
  GrpoLossConfig c;
  c.mode = mode;
  c.eps_low = 0.2f;
  c.eps_high = mode == GrpoMode::kDapo ? 0.28f : 0.2f;
  c.beta = beta;
  c.max_completion_length = max_len;
  return c;
}

const char* mode_name(GrpoMode m) {
  return m == GrpoMode::kGrpo ? "grpo" : m == GrpoMode::kDrGrpo ? "dr_grpo" : "dapo";
}

// ‖a − b‖ / ‖b‖ and max |a − b| / max |b|.
template <typename T>
std::pair<double, double> rel_errors(const T* a, const std::vector<double>& b) {
  double num = 0, den = 0, mx = 0, bmax = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = double(a[i]) - b[i];
    num += d * d;
    den += b[i] * b[i];
    mx = std::max(mx, std::fabs(d));
    bmax = std::max(bmax, std::fabs(b[i]));
  }
  return {std::sqrt(num) / std::max(std::sqrt(den), 1e-300), mx / std::max(bmax, 1e-300)};
}

double rel(double a, double b) {
  return std::fabs(a - b) / std::max(std::fabs(b), 1e-12);
}

// ---- against the PyTorch reference --------------------------------------------------------

class GrpoReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* dir = std::getenv("SEEKR_GRPO_REFERENCE_DIR");
    if (!dir) return;
    const std::string path = std::string(dir) + "/grpo.safetensors";
    if (file_exists(path)) file_ = new SafetensorsFile(SafetensorsFile::open(path));
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  void SetUp() override {
    const char* dir = std::getenv("SEEKR_GRPO_REFERENCE_DIR");
    // Fail, not skip: a missing reference must not look like a pass.
    ASSERT_NE(dir, nullptr) << "SEEKR_GRPO_REFERENCE_DIR is not set: run through ctest, whose "
                               "fixture grpo_reference runs tests/reference/grpo_twin.py first";
    ASSERT_NE(file_, nullptr) << "missing " << dir << "/grpo.safetensors: the PyTorch twin "
                              << "did not run (needs /usr/bin/python3 with python3-torch)";
  }
  template <typename T>
  static std::vector<T> get(const std::string& name) {
    const TensorView& t = file_->get(name);
    std::vector<T> v(t.numel());
    SEEKR_CHECK(t.nbytes == v.size() * sizeof(T), name, ": unexpected dtype");
    std::memcpy(v.data(), t.data, t.nbytes);
    return v;
  }
  static double scalar(const std::string& name) { return get<double>(name)[0]; }

  static Batch batch(const std::string& mode) {
    Batch b;
    const TensorView& logits = file_->get("logits");
    b.N = int(logits.shape[0]);
    b.V = int(logits.shape[1]);
    b.targets = get<int32_t>("targets");
    b.sequence = get<int32_t>("sequence");
    b.mask = get<uint8_t>("mask");
    b.old_logp = get<float>("old_logp");
    b.ref_logp = get<float>("ref_logp");
    b.advantages = get<float>(mode + "/advantages");
    b.S = int(b.advantages.size());
    return b;
  }

  static SafetensorsFile* file_;
};
SafetensorsFile* GrpoReference::file_ = nullptr;

TEST_F(GrpoReference, GroupAdvantagesMatchTorch) {
  const std::vector<float> rewards = get<float>("rewards");
  for (GrpoMode mode : {GrpoMode::kGrpo, GrpoMode::kDrGrpo, GrpoMode::kDapo}) {
    const std::string name = mode_name(mode);
    const std::vector<float> want = get<float>(name + "/advantages");
    const std::vector<float> got = group_advantages(rewards, 3, mode == GrpoMode::kGrpo);
    ASSERT_EQ(got.size(), want.size());
    bool both_signs[2] = {false, false};
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 2e-6 * std::max(1.0f, std::fabs(want[i]))) << name << " " << i;
      both_signs[want[i] > 0] |= want[i] != 0;
    }
    EXPECT_TRUE(both_signs[0] && both_signs[1]) << "reference advantages lack a sign";
  }
}

TEST_F(GrpoReference, LossGradientAndStatsMatchTorch) {
  const std::vector<float> logits32 = get<float>("logits");
  const std::vector<double> logits64(logits32.begin(), logits32.end());
  const int max_len = get<int32_t>("max_completion_length")[0];
  double worst_loss[2] = {0, 0}, worst_grad[2] = {0, 0}, worst_stat[2] = {0, 0};
  for (GrpoMode mode : {GrpoMode::kGrpo, GrpoMode::kDrGrpo, GrpoMode::kDapo}) {
    const Batch b = batch(mode_name(mode));
    for (float beta : {0.0f, 0.04f}) {
      const std::string key = std::string(mode_name(mode)) + (beta == 0 ? "/beta0" : "/beta0.04");
      SCOPED_TRACE(key);
      const GrpoLossConfig cfg = config_for(mode, beta, max_len);
      const std::vector<double> want = get<double>(key + "/dlogits");
      const double want_loss = scalar(key + "/loss");

      std::vector<float> d32(logits32.size());
      std::vector<double> d64(logits64.size());
      const GrpoLossStats s32 =
          grpo_loss_forward_backward(cfg, b.view(), logits32.data(), d32.data());
      const GrpoLossStats s64 =
          grpo_loss_forward_backward(cfg, b.view(), logits64.data(), d64.data());
      const GrpoLossStats* stats[2] = {&s64, &s32};
      const auto g64 = rel_errors(d64.data(), want);
      const auto g32 = rel_errors(d32.data(), want);
      const double gerr[2] = {std::max(g64.first, g64.second), std::max(g32.first, g32.second)};
      const double tol_val[2] = {1e-12, 2e-6}, tol_grad[2] = {1e-11, 1e-5};
      for (int p = 0; p < 2; ++p) {
        const GrpoLossStats& s = *stats[p];
        const double lerr = rel(s.loss, want_loss);
        const double serr = std::max({rel(s.mean_kl, scalar(key + "/mean_kl")),
                                      rel(s.mean_entropy, scalar(key + "/entropy")),
                                      rel(s.mean_ratio, scalar(key + "/ratio")),
                                      rel(s.clip_low_fraction, scalar(key + "/clip_low")),
                                      rel(s.clip_high_fraction, scalar(key + "/clip_high"))});
        EXPECT_LT(lerr, tol_val[p])
            << (p ? "float" : "double") << " loss " << s.loss << " vs torch " << want_loss;
        EXPECT_LT(gerr[p], tol_grad[p]) << (p ? "float" : "double") << " dlogits";
        EXPECT_LT(serr, tol_val[p]) << (p ? "float" : "double") << " diagnostics";
        EXPECT_DOUBLE_EQ(s.clip_fraction, s.clip_low_fraction + s.clip_high_fraction);
        EXPECT_GT(s.clip_low_fraction, 0.0);
        EXPECT_GT(s.clip_high_fraction, 0.0);
        worst_loss[p] = std::max(worst_loss[p], lerr);
        worst_grad[p] = std::max(worst_grad[p], gerr[p]);
        worst_stat[p] = std::max(worst_stat[p], serr);
      }
    }
  }
  for (int p = 0; p < 2; ++p)
    std::printf("[grpo vs torch, %s path] max rel err: loss %.3g, dlogits %.3g, stats %.3g\n",
                p ? "float" : "double", worst_loss[p], worst_grad[p], worst_stat[p]);
}

// ---- finite differences ----------------------------------------------------------------------

// S sequences of T rows, V classes: prompt rows and padding masked out, old log-probs pushed
// off the current ones so that both clip edges are crossed, advantages of both signs.
struct RandomProblem {
  Batch b;
  std::vector<double> logits;
};
RandomProblem random_problem(int S, int T, int V, uint64_t seed, double spread = 0.4) {
  Rng rng(seed);
  RandomProblem p;
  Batch& b = p.b;
  b.N = S * T;
  b.V = V;
  b.S = S;
  p.logits.resize(size_t(b.N) * V);
  for (double& x : p.logits) x = 1.5 * rng.normal();
  b.targets.resize(b.N);
  b.sequence.resize(b.N);
  b.mask.resize(b.N);
  for (int s = 0; s < S; ++s) {
    const int prompt = 1 + s % 2, len = 1 + int(rng.below(T - prompt));
    for (int t = 0; t < T; ++t) {
      const int n = s * T + t;
      b.sequence[n] = s;
      b.mask[n] = t >= prompt && t < prompt + len;
      b.targets[n] = b.mask[n] ? int32_t(rng.below(V)) : -1;
    }
  }
  std::vector<float> logits32(p.logits.begin(), p.logits.end());
  std::vector<float> logp(b.N);
  log_prob_of_targets(logits32.data(), b.targets.data(), logp.data(), b.N, V);
  for (int n = 0; n < b.N; ++n) {
    b.old_logp.push_back(float(logp[n] + spread * rng.normal()));
    b.ref_logp.push_back(float(logp[n] + spread * rng.normal()));
  }
  for (int s = 0; s < S; ++s) b.advantages.push_back(float(s % 2 ? -1.0 : 1.0) * (0.3f + s));
  return p;
}

TEST(GrpoFiniteDifference, EveryModeWithKlAndClipping) {
  const int S = 4, T = 6, V = 9;
  for (GrpoMode mode : {GrpoMode::kGrpo, GrpoMode::kDrGrpo, GrpoMode::kDapo}) {
    SCOPED_TRACE(mode_name(mode));
    RandomProblem p = random_problem(S, T, V, 7);
    const GrpoLossConfig cfg = config_for(mode, 0.04f, T);
    std::vector<double> grad(p.logits.size()), scratch(p.logits.size());
    const GrpoLossStats st =
        grpo_loss_forward_backward(cfg, p.b.view(), p.logits.data(), grad.data());
    ASSERT_GT(st.clip_fraction, 0.0) << "no clipped token: the check would miss the clip branch";
    ASSERT_LT(st.clip_fraction, 1.0);
    const double h = 1e-6;
    double worst = 0, gmax = 0;
    for (size_t i = 0; i < p.logits.size(); ++i) {
      const double x0 = p.logits[i];
      p.logits[i] = x0 + h;
      const double up =
          grpo_loss_forward_backward(cfg, p.b.view(), p.logits.data(), scratch.data()).loss;
      p.logits[i] = x0 - h;
      const double dn =
          grpo_loss_forward_backward(cfg, p.b.view(), p.logits.data(), scratch.data()).loss;
      p.logits[i] = x0;
      worst = std::max(worst, std::fabs((up - dn) / (2 * h) - grad[i]));
      gmax = std::max(gmax, std::fabs(grad[i]));
    }
    ASSERT_GT(gmax, 1e-3);
    EXPECT_LT(worst / gmax, 1e-7) << "max |fd − analytic| = " << worst << ", max |grad| " << gmax;
  }
}

// ---- hand-computed cases ----------------------------------------------------------------------

// With old = current log-probs the ratio is 1 everywhere (TRL's single-iteration case), so with
// β = 0 GRPO's loss is −mean over sequences of A and DAPO's is −Σ count·A / Σ count.
TEST(GrpoHand, RatioOneGivesMinusMeanAdvantage) {
  RandomProblem p = random_problem(5, 7, 13, 3);
  std::vector<float> logits32(p.logits.begin(), p.logits.end()), d(logits32.size());
  log_prob_of_targets(logits32.data(), p.b.targets.data(), p.b.old_logp.data(), p.b.N, p.b.V);
  double mean_a = 0, weighted = 0, count = 0;
  std::vector<int> len(p.b.S, 0);
  for (int n = 0; n < p.b.N; ++n) len[p.b.sequence[n]] += p.b.mask[n];
  for (int s = 0; s < p.b.S; ++s) {
    mean_a += p.b.advantages[s] / p.b.S;
    weighted += p.b.advantages[s] * len[s];
    count += len[s];
  }
  const GrpoLossStats g = grpo_loss_forward_backward(config_for(GrpoMode::kGrpo, 0, 0),
                                                     p.b.view(false), logits32.data(), d.data());
  EXPECT_NEAR(g.loss, -mean_a, 1e-5);
  EXPECT_NEAR(g.mean_ratio, 1.0, 1e-6);
  EXPECT_EQ(g.clip_fraction, 0.0);
  const GrpoLossStats a = grpo_loss_forward_backward(config_for(GrpoMode::kDapo, 0, 0),
                                                     p.b.view(false), logits32.data(), d.data());
  EXPECT_NEAR(a.loss, -weighted / count, 1e-5);
  const GrpoLossStats r = grpo_loss_forward_backward(config_for(GrpoMode::kDrGrpo, 0, 7),
                                                     p.b.view(false), logits32.data(), d.data());
  EXPECT_NEAR(r.loss, -weighted / (p.b.S * 7.0), 1e-5);
}

// One token, V = 2, logits (0, 0): logp = log ½. Ratios 1.5 and 0.5 against ε = 0.2 and both
// advantage signs: the clipped branch is taken (zero gradient) only when it is the smaller
// objective, i.e. ρ > 1 + ε with A > 0 or ρ < 1 − ε with A < 0.
TEST(GrpoHand, ClipSelectsTheRightBranch) {
  struct Case {
    double ratio, A, loss, dloss_dlogp;
    bool low, high;
  };
  const Case cases[] = {
      {1.5, +1.0, -1.2, 0.0, false, true},  // clipped at 1 + ε
      {1.5, -1.0, 1.5, 1.5, false, false},  // unclipped: −A·ρ
      {0.5, -1.0, 0.8, 0.0, true, false},   // clipped at 1 − ε
      {0.5, +1.0, -0.5, -0.5, false, false},
      {1.1, +2.0, -2.2, -2.2, false, false},  // inside the band
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "ratio " << c.ratio << " A " << c.A);
    Batch b;
    b.N = 1;
    b.V = 2;
    b.S = 1;
    b.targets = {0};
    b.sequence = {0};
    b.mask = {1};
    b.old_logp = {float(std::log(0.5) - std::log(c.ratio))};
    b.advantages = {float(c.A)};
    const double logits[2] = {0.0, 0.0};
    double d[2];
    const GrpoLossStats s =
        grpo_loss_forward_backward(config_for(GrpoMode::kGrpo, 0, 0), b.view(false), logits, d);
    EXPECT_NEAR(s.loss, c.loss, 1e-6);
    EXPECT_NEAR(s.mean_ratio, c.ratio, 1e-6);
    EXPECT_EQ(s.clip_low_fraction, c.low ? 1.0 : 0.0);
    EXPECT_EQ(s.clip_high_fraction, c.high ? 1.0 : 0.0);
    // d logp / d logits = onehot − softmax = (½, −½)
    EXPECT_NEAR(d[0], 0.5 * c.dloss_dlogp, 1e-6);
    EXPECT_NEAR(d[1], -0.5 * c.dloss_dlogp, 1e-6);
    EXPECT_NEAR(s.mean_entropy, std::log(2.0), 1e-12);
  }
}

// KL (k3) is zero, with zero gradient, when the reference agrees with the policy; and positive
// with the gradient β·(1 − π_ref/π_θ) otherwise.
TEST(GrpoHand, KlTermValueAndGradient) {
  RandomProblem p = random_problem(3, 5, 11, 5);
  std::vector<float> logits32(p.logits.begin(), p.logits.end());
  log_prob_of_targets(logits32.data(), p.b.targets.data(), p.b.ref_logp.data(), p.b.N, p.b.V);
  std::vector<float> d_kl(logits32.size()), d_nokl(logits32.size());
  const GrpoLossStats with = grpo_loss_forward_backward(
      config_for(GrpoMode::kDapo, 0.5f, 0), p.b.view(true), logits32.data(), d_kl.data());
  const GrpoLossStats without = grpo_loss_forward_backward(
      config_for(GrpoMode::kDapo, 0, 0), p.b.view(false), logits32.data(), d_nokl.data());
  EXPECT_NEAR(with.mean_kl, 0.0, 1e-12);
  EXPECT_NEAR(with.loss, without.loss, 1e-12);
  for (size_t i = 0; i < d_kl.size(); ++i) ASSERT_NEAR(d_kl[i], d_nokl[i], 1e-7) << i;

  // One token with π_ref/π_θ = 2: k3 = 2 − log 2 − 1, d/dlogp = β(1 − 2).
  Batch b;
  b.N = 1, b.V = 2, b.S = 1;
  b.targets = {1}, b.sequence = {0}, b.mask = {1};
  b.old_logp = {float(std::log(0.5))};
  b.ref_logp = {float(std::log(0.5) + std::log(2.0))};
  b.advantages = {0.0f};
  const double logits[2] = {0.0, 0.0};
  double d[2];
  const GrpoLossStats s =
      grpo_loss_forward_backward(config_for(GrpoMode::kGrpo, 0.5f, 0), b.view(), logits, d);
  EXPECT_NEAR(s.mean_kl, 1.0 - std::log(2.0), 1e-6);
  EXPECT_NEAR(s.loss, 0.5 * (1.0 - std::log(2.0)), 1e-6);
  EXPECT_NEAR(d[1], 0.5 * -1.0 * 0.5, 1e-6);  // β(1 − 2) · (1 − ½)
  EXPECT_NEAR(d[0], 0.5 * -1.0 * -0.5, 1e-6);
}

TEST(GrpoHand, MaskedRowsGetZeroGradientAndIgnoreTheirFields) {
  RandomProblem p = random_problem(3, 6, 10, 11);
  std::vector<double> d(p.logits.size(), 123.0);
  // Garbage in masked rows must not matter (targets −1 are already there).
  for (int n = 0; n < p.b.N; ++n)
    if (!p.b.mask[n]) p.b.sequence[n] = -5, p.b.old_logp[n] = NAN;
  const GrpoLossStats s = grpo_loss_forward_backward(config_for(GrpoMode::kGrpo, 0.04f, 0),
                                                     p.b.view(), p.logits.data(), d.data());
  EXPECT_TRUE(std::isfinite(s.loss));
  for (int n = 0; n < p.b.N; ++n)
    for (int v = 0; v < p.b.V; ++v)
      if (!p.b.mask[n]) {
        ASSERT_EQ(d[size_t(n) * p.b.V + v], 0.0);
      }
}

// ---- float path: aliasing, threads, agreement with the double path at a realistic V --------

TEST(GrpoFloat, AliasedThreadedAndDeterministic) {
  RandomProblem p = random_problem(6, 24, 3000, 13);
  const GrpoLossConfig cfg = config_for(GrpoMode::kGrpo, 0.04f, 0);
  std::vector<double> d64(p.logits.size());
  const GrpoLossStats ref =
      grpo_loss_forward_backward(cfg, p.b.view(), p.logits.data(), d64.data());
  const std::vector<float> logits32(p.logits.begin(), p.logits.end());
  const int saved = omp_get_max_threads();
  std::vector<float> out[2];
  double loss[2];
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    std::vector<float> buf = logits32;  // dlogits aliases the logits
    loss[threads - 1] = grpo_loss_forward_backward(cfg, p.b.view(), buf.data(), buf.data()).loss;
    out[threads - 1] = std::move(buf);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(loss[0], loss[1]);
  EXPECT_EQ(out[0], out[1]);
  EXPECT_LT(rel(loss[0], ref.loss), 1e-5);
  const auto e = rel_errors(out[0].data(), d64);
  EXPECT_LT(e.first, 1e-5);
  EXPECT_LT(e.second, 1e-5);
}

// ---- advantages, dynamic sampling, input errors ------------------------------------------

TEST(GrpoAdvantages, HandValues) {
  // Group {1, 0, 0, 0}: mean ¼, unbiased std ½.
  const std::vector<float> r = {1, 0, 0, 0, 2, 2, 2, 2};
  const std::vector<float> scaled = group_advantages(r, 4, true);
  EXPECT_NEAR(scaled[0], 0.75 / (0.5 + 1e-4), 1e-6);
  EXPECT_NEAR(scaled[1], -0.25 / (0.5 + 1e-4), 1e-6);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(scaled[i], 0.0f);  // equal rewards: std 0, no NaN
  const std::vector<float> plain = group_advantages(r, 4, false);
  EXPECT_FLOAT_EQ(plain[0], 0.75f);
  EXPECT_FLOAT_EQ(plain[3], -0.25f);
  EXPECT_TRUE(dapo_keep_group(r.data(), 4));
  EXPECT_FALSE(dapo_keep_group(r.data() + 4, 4));
  EXPECT_THROW(group_advantages(r, 3, true), Error);
  EXPECT_THROW(group_advantages(r, 1, true), Error);
}

TEST(GrpoErrors, BadInputsThrow) {
  RandomProblem p = random_problem(2, 5, 7, 17);
  std::vector<double> d(p.logits.size());
  auto run = [&](const GrpoLossConfig& c, const GrpoBatch& b) {
    grpo_loss_forward_backward(c, b, p.logits.data(), d.data());
  };
  EXPECT_THROW(run(config_for(GrpoMode::kGrpo, 0.1f, 0), p.b.view(false)), Error);  // no ref
  EXPECT_THROW(run(config_for(GrpoMode::kDrGrpo, 0, 0), p.b.view()), Error);        // no constant
  EXPECT_THROW(run(config_for(GrpoMode::kDrGrpo, 0, 1), p.b.view()), Error);        // too long
  Batch bad = p.b;
  const int n = int(std::find(bad.mask.begin(), bad.mask.end(), 1) - bad.mask.begin());
  bad.targets[n] = 7;
  EXPECT_THROW(run(config_for(GrpoMode::kGrpo, 0, 0), bad.view()), Error);
  bad = p.b;
  bad.sequence[n] = 2;
  EXPECT_THROW(run(config_for(GrpoMode::kGrpo, 0, 0), bad.view()), Error);
}

}  // namespace
}  // namespace seekr
