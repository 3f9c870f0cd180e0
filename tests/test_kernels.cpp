// Kernels: fast paths against the scalar references on awkward shapes, and every backward
// against central finite differences of a double-precision forward on L = Σ y·r.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/rng.h"
#include "kernels/gemv.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seekr {
namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

Vec randn(size_t n, uint64_t seed, double stdev = 1.0) {
  Rng rng(seed);
  Vec v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal() * stdev);
  return v;
}

DVec to_double(const Vec& v) {
  return DVec(v.begin(), v.end());
}

// max|a − b| / max|b|: one number per array, scale-free.
template <typename A, typename B>
double rel_err(const A& a, const B& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    // NaN would slip through std::max; an unwritten (NaN-initialised) output must fail.
    if (!std::isfinite(double(a[i])) || !std::isfinite(double(b[i]))) return INFINITY;
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return num / std::max(den, 1e-30);
}

// Central differences of a scalar function of x (double), entry by entry.
DVec numeric_grad(DVec x, const std::function<double(const DVec&)>& f, double h = 1e-5) {
  DVec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

double dot(const DVec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---- vector exp (used by softmax, SwiGLU and the losses) --------------------------------

TEST(Simd, ExpIsAccurateAcrossTheRange) {
  Vec x;
  for (double v = -87.0; v <= 88.0; v += 0.01237) x.push_back(float(v));
  Vec y(x.size());
  simd::exp_store_sum(x.data(), y.data(), int64_t(x.size()), 0.0f);
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(double(x[i]));
    worst = std::max(worst, std::abs(y[i] - e) / e);
  }
  EXPECT_LT(worst, 3e-7);  // a few ulp
  // The sums, shifted so that they cannot overflow float lanes.
  double want = 0.0;
  for (float v : x) want += std::exp(double(v) - 88.0);
  EXPECT_NEAR(simd::sum_exp(x.data(), int64_t(x.size()), 88.0f), want, 1e-6 * want);
  EXPECT_NEAR(simd::exp_store_sum(x.data(), y.data(), int64_t(x.size()), 88.0f), want, 1e-6 * want);
  // Far below the range the result is negligible (not NaN), and -inf gives ~0.
  const float low[8] = {-1e4f, -INFINITY, -200, -100, -90, -88, -87.5f, -1e30f};
  float out[8];
  simd::exp_store_sum(low, out, 8, 0.0f);
  for (float v : out) EXPECT_TRUE(v >= 0.0f && v < 1e-37f) << v;
}

// ---- matrix products -------------------------------------------------------------------

struct MM {
  int N, in, out;
};
const MM kMatmulShapes[] = {{1, 1, 1}, {1, 17, 5}, {7, 33, 19}, {65, 48, 130}, {3, 256, 8}};

TEST(Matmul, XwtMatchesRef) {
  for (const MM& s : kMatmulShapes) {
    const Vec x = randn(size_t(s.N) * s.in, 1), w = randn(size_t(s.out) * s.in, 2);
    for (float beta : {0.0f, 1.0f}) {
      Vec y = randn(size_t(s.N) * s.out, 3), yr = y;
      matmul_xwt(x.data(), w.data(), y.data(), s.N, s.in, s.out, beta);
      ref::matmul_xwt(x.data(), w.data(), yr.data(), s.N, s.in, s.out, beta);
      EXPECT_LT(rel_err(y, yr), 1e-5) << s.N << "x" << s.in << "x" << s.out << " beta " << beta;
    }
  }
}

// ---- few-row products (gemv.h) -----------------------------------------------------------

// Shapes with every tail: in % 16 == 8, in % 8 != 0, out % 4 != 0, fewer than 8 inputs.
struct GemvShape {
  int in, out;
};
const GemvShape kGemvShapes[] = {{1, 1}, {7, 5}, {8, 9}, {24, 4}, {33, 19}, {64, 30}, {256, 130}};

bool same_bits(const Vec& a, const Vec& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

TEST(Gemv, XwtMatchesRef) {
  for (const GemvShape& s : kGemvShapes)
    for (int n = 1; n <= kGemvMaxRows; ++n)
      for (float beta : {0.0f, 1.0f}) {
        const int ldx = s.in + 3, ldy = s.out + 2;  // padded rows
        const Vec x = randn(size_t(n) * ldx, 1), w = randn(size_t(s.out) * s.in, 2);
        Vec y = randn(size_t(n) * ldy, 3), yr = y;
        gemv_xwt(x.data(), ldx, w.data(), s.in, s.out, 0, s.out, y.data(), ldy, n, beta);
        ref::gemv_xwt(x.data(), ldx, w.data(), s.in, s.out, yr.data(), ldy, n, beta);
        EXPECT_LT(rel_err(y, yr), 1e-5) << n << "x" << s.in << "x" << s.out << " beta " << beta;
        // The padding between rows is not touched.
        const Vec y0 = randn(size_t(n) * ldy, 3);
        for (int i = 0; i < n; ++i)
          for (int j = s.out; j < ldy; ++j)
            EXPECT_EQ(y[size_t(i) * ldy + j], y0[size_t(i) * ldy + j]);
      }
}

// Speculative verify and thread sharing rely on this: each output has the same bits whatever
// the row count is and however the output rows are split.
TEST(Gemv, XwtIsExactAcrossRowCountsAndSplits) {
  for (const GemvShape& s : kGemvShapes) {
    const Vec x = randn(size_t(kGemvMaxRows) * s.in, 4), w = randn(size_t(s.out) * s.in, 5);
    Vec one(size_t(kGemvMaxRows) * s.out);  // row by row
    for (int i = 0; i < kGemvMaxRows; ++i)
      gemv_xwt(x.data() + size_t(i) * s.in, s.in, w.data(), s.in, s.out, 0, s.out,
               one.data() + size_t(i) * s.out, s.out, 1);
    for (int n = 1; n <= kGemvMaxRows; ++n) {
      const Vec want(one.begin(), one.begin() + size_t(n) * s.out);
      Vec all(size_t(n) * s.out);
      gemv_xwt(x.data(), s.in, w.data(), s.in, s.out, 0, s.out, all.data(), s.out, n);
      EXPECT_TRUE(same_bits(all, want)) << n << " rows, " << s.in << "x" << s.out;
      for (int parts : {2, 3, 5}) {
        Vec split(size_t(n) * s.out, NAN);
        for (int p = 0; p < parts; ++p)
          gemv_xwt(x.data(), s.in, w.data(), s.in, s.out, s.out * p / parts,
                   s.out * (p + 1) / parts, split.data(), s.out, n);
        EXPECT_TRUE(same_bits(split, want)) << n << " rows in " << parts << " parts";
      }
      Vec odd(size_t(n) * s.out, NAN);  // ranges not at multiples of 4
      for (int j = 0; j < s.out; j += 3)
        gemv_xwt(x.data(), s.in, w.data(), s.in, s.out, j, std::min(j + 3, s.out), odd.data(),
                 s.out, n);
      EXPECT_TRUE(same_bits(odd, want)) << n << " rows in threes";
    }
  }
}

TEST(Gemv, SwigluMatchesRefAndIsExact) {
  for (const GemvShape& s : kGemvShapes) {
    const Vec x = randn(size_t(kGemvMaxRows) * s.in, 6), g = randn(size_t(s.out) * s.in, 7),
              u = randn(size_t(s.out) * s.in, 8);
    Vec one(size_t(kGemvMaxRows) * s.out);
    for (int i = 0; i < kGemvMaxRows; ++i)
      gemv_swiglu(x.data() + size_t(i) * s.in, s.in, g.data(), u.data(), s.in, s.out, 0, s.out,
                  one.data() + size_t(i) * s.out, s.out, 1);
    for (int n = 1; n <= kGemvMaxRows; ++n) {
      Vec gr(size_t(n) * s.out), ur(gr.size()), ar(gr.size());
      ref::gemv_xwt(x.data(), s.in, g.data(), s.in, s.out, gr.data(), s.out, n);
      ref::gemv_xwt(x.data(), s.in, u.data(), s.in, s.out, ur.data(), s.out, n);
      ref::swiglu_forward(gr.data(), ur.data(), ar.data(), int64_t(gr.size()));
      Vec a(gr.size(), NAN);
      for (int j = 0; j < s.out; j += 36)  // chunks across the kernel's 32-row blocks
        gemv_swiglu(x.data(), s.in, g.data(), u.data(), s.in, s.out, j, std::min(j + 36, s.out),
                    a.data(), s.out, n);
      EXPECT_LT(rel_err(a, ar), 1e-5) << n << "x" << s.in << "x" << s.out;
      EXPECT_TRUE(same_bits(a, Vec(one.begin(), one.begin() + a.size())))
          << n << " rows, " << s.in << "x" << s.out;
    }
  }
}

TEST(Matmul, GemmAllTransposesWithLeadingDimsMatchRef) {
  const int M = 13, N = 17, K = 9, pad = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      const Vec A = randn(size_t(ta ? K : M) * lda, 4), B = randn(size_t(tb ? N : K) * ldb, 5);
      Vec C = randn(size_t(M) * ldc, 6), Cr = C;
      gemm(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, 0.5f, C.data(), ldc);
      ref::gemm(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, 0.5f, Cr.data(), ldc);
      EXPECT_LT(rel_err(C, Cr), 1e-5) << "ta=" << ta << " tb=" << tb;
      // The padding columns of C are not part of the product and must survive.
      const Vec C0 = randn(size_t(M) * ldc, 6);
      for (int i = 0; i < M; ++i)
        for (int j = N; j < ldc; ++j) EXPECT_EQ(C[size_t(i) * ldc + j], C0[size_t(i) * ldc + j]);
    }
  }
}

// Products large enough to be split into panels over the OpenMP threads (rows when M >= N,
// columns otherwise), at 1 to 3 threads: equal to the reference, the same bits when repeated,
// the padding of C untouched, and NaNs in C ignored for beta = 0. (Not bit-equal across thread
// counts: OpenBLAS's edge kernels sum some rows in another order when a panel ends there.)
TEST(Matmul, GemmSplitOverThreadsMatchesRef) {
  struct Shape {
    int M, N, K;
  };
  const int pad = 5;
  const int saved = omp_get_max_threads();
  for (const Shape s : {Shape{301, 67, 97}, Shape{45, 389, 113}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (float beta : {0.0f, 1.0f, 0.5f}) {
          const int lda = (ta ? s.M : s.K) + pad, ldb = (tb ? s.K : s.N) + pad, ldc = s.N + pad;
          const Vec A = randn(size_t(ta ? s.K : s.M) * lda, 4);
          const Vec B = randn(size_t(tb ? s.N : s.K) * ldb, 5);
          Vec C0 = randn(size_t(s.M) * ldc, 6);
          Vec Cr = C0;
          ref::gemm(ta, tb, s.M, s.N, s.K, 0.7f, A.data(), lda, B.data(), ldb, beta, Cr.data(),
                    ldc);
          if (beta == 0.0f)
            for (int i = 0; i < s.M; ++i) C0[size_t(i) * ldc] = std::nanf("");
          for (int threads : {1, 2, 3}) {
            omp_set_num_threads(threads);
            Vec C = C0, again = C0;
            gemm(ta, tb, s.M, s.N, s.K, 0.7f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
            gemm(ta, tb, s.M, s.N, s.K, 0.7f, A.data(), lda, B.data(), ldb, beta, again.data(),
                 ldc);
            const std::string what = std::to_string(s.M) + "x" + std::to_string(s.N) + "x" +
                                     std::to_string(s.K) + " ta=" + std::to_string(ta) +
                                     " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta) +
                                     " threads=" + std::to_string(threads);
            EXPECT_TRUE(same_bits(C, again)) << what;
            EXPECT_LT(rel_err(C, Cr), 1e-5) << what;
            for (int i = 0; i < s.M; ++i)
              for (int j = s.N; j < ldc; ++j)
                ASSERT_TRUE(same_bits(Vec{C[size_t(i) * ldc + j]}, Vec{C0[size_t(i) * ldc + j]}))
                    << what;
          }
          omp_set_num_threads(saved);
        }
      }
    }
  }
}

TEST(Matmul, EmptyInnerDimensionScalesC) {
  Vec C = {1, 2, 3, 4, 5, 6};
  gemm(false, true, 2, 3, 0, 1.0f, nullptr, 0, nullptr, 0, 0.5f, C.data(), 3);
  EXPECT_EQ(C, (Vec{0.5f, 1, 1.5f, 2, 2.5f, 3}));
  C.assign(6, std::numeric_limits<float>::quiet_NaN());
  gemm(false, true, 2, 3, 0, 1.0f, nullptr, 0, nullptr, 0, 0.0f, C.data(), 3);
  EXPECT_EQ(C, Vec(6, 0.0f));
}

// y = x·wᵀ with L = Σ y⊙r: dL/dx = r·w (matmul_dy_w), dL/dw = rᵀ·x (matmul_dyt_x).
TEST(Matmul, BackwardHelpersMatchFiniteDifferences) {
  for (const MM& s : kMatmulShapes) {
    if (size_t(s.N) * s.in * s.out > 20000) continue;
    const Vec x = randn(size_t(s.N) * s.in, 7), w = randn(size_t(s.out) * s.in, 8);
    const Vec r = randn(size_t(s.N) * s.out, 9);
    auto loss = [&](const DVec& xd, const DVec& wd) {
      double L = 0.0;
      for (int n = 0; n < s.N; ++n)
        for (int o = 0; o < s.out; ++o) {
          double y = 0.0;
          for (int i = 0; i < s.in; ++i) y += xd[size_t(n) * s.in + i] * wd[size_t(o) * s.in + i];
          L += y * r[size_t(n) * s.out + o];
        }
      return L;
    };
    const DVec xd = to_double(x), wd = to_double(w);
    const DVec gx = numeric_grad(xd, [&](const DVec& v) { return loss(v, wd); });
    const DVec gw = numeric_grad(wd, [&](const DVec& v) { return loss(xd, v); });
    Vec dx(x.size(), std::numeric_limits<float>::quiet_NaN());
    matmul_dy_w(r.data(), w.data(), dx.data(), s.N, s.in, s.out);
    EXPECT_LT(rel_err(dx, gx), 1e-6);
    // dw accumulates: start from a known value and subtract it back.
    const Vec dw0 = randn(w.size(), 10);
    Vec dw = dw0;
    matmul_dyt_x(r.data(), x.data(), dw.data(), s.N, s.in, s.out);
    for (size_t i = 0; i < dw.size(); ++i) dw[i] -= dw0[i];
    EXPECT_LT(rel_err(dw, gw), 1e-5);
    // beta = 1 accumulates into dx
    Vec dx2 = dx;
    matmul_dy_w(r.data(), w.data(), dx2.data(), s.N, s.in, s.out, 1.0f);
    for (size_t i = 0; i < dx.size(); ++i) EXPECT_FLOAT_EQ(dx2[i], 2 * dx[i]);
  }
}

// ---- RMSNorm -----------------------------------------------------------------------------

const int kNormShapes[][2] = {{1, 1}, {1, 16}, {3, 17}, {5, 33}, {4, 256}, {2, 515}};

TEST(RmsNorm, ForwardMatchesRef) {
  for (auto [N, d] : kNormShapes) {
    const Vec x = randn(size_t(N) * d, 11, 3.0), w = randn(d, 12);
    Vec y(x.size()), yr(x.size()), rs(N), rsr(N);
    rmsnorm_forward(x.data(), w.data(), y.data(), rs.data(), N, d, 1e-6f);
    ref::rmsnorm_forward(x.data(), w.data(), yr.data(), rsr.data(), N, d, 1e-6f);
    EXPECT_LT(rel_err(y, yr), 2e-6) << N << "x" << d;
    EXPECT_LT(rel_err(rs, rsr), 2e-6) << N << "x" << d;
  }
}

TEST(RmsNorm, BackwardMatchesRef) {
  for (auto [N, d] : kNormShapes) {
    if (d == 1) continue;  // dx is pure cancellation there (y ≈ sign(x)·w); FD test covers it
    const Vec x = randn(size_t(N) * d, 13), w = randn(d, 14), dy = randn(x.size(), 15);
    Vec y(x.size()), rs(N);
    ref::rmsnorm_forward(x.data(), w.data(), y.data(), rs.data(), N, d, 1e-6f);
    for (float beta : {0.0f, 1.0f}) {
      Vec dx = randn(x.size(), 16), dxr = dx, dw = randn(d, 17), dwr = dw;
      rmsnorm_backward(dy.data(), x.data(), w.data(), rs.data(), dx.data(), dw.data(), N, d, beta);
      ref::rmsnorm_backward(dy.data(), x.data(), w.data(), rs.data(), dxr.data(), dwr.data(), N, d,
                            beta);
      EXPECT_LT(rel_err(dx, dxr), 1e-5) << N << "x" << d << " beta " << beta;
      EXPECT_LT(rel_err(dw, dwr), 1e-5) << N << "x" << d << " beta " << beta;
    }
  }
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  const int N = 3, d = 21;
  const double eps = 1e-3;  // large enough to matter in the derivative
  const Vec x = randn(size_t(N) * d, 18), w = randn(d, 19), r = randn(x.size(), 20);
  auto loss = [&](const DVec& xd, const DVec& wd) {
    double L = 0.0;
    for (int n = 0; n < N; ++n) {
      double ss = 0.0;
      for (int j = 0; j < d; ++j) ss += xd[n * d + j] * xd[n * d + j];
      const double rstd = 1.0 / std::sqrt(ss / d + eps);
      for (int j = 0; j < d; ++j) L += xd[n * d + j] * rstd * wd[j] * r[n * d + j];
    }
    return L;
  };
  const DVec xd = to_double(x), wd = to_double(w);
  const DVec gx = numeric_grad(xd, [&](const DVec& v) { return loss(v, wd); });
  const DVec gw = numeric_grad(wd, [&](const DVec& v) { return loss(xd, v); });
  Vec y(x.size()), rs(N), dx(x.size(), std::numeric_limits<float>::quiet_NaN()), dw(d, 0.0f);
  rmsnorm_forward(x.data(), w.data(), y.data(), rs.data(), N, d, static_cast<float>(eps));
  rmsnorm_backward(r.data(), x.data(), w.data(), rs.data(), dx.data(), dw.data(), N, d);
  EXPECT_LT(rel_err(dx, gx), 1e-5);
  EXPECT_LT(rel_err(dw, gw), 1e-5);
}

// ---- RoPE --------------------------------------------------------------------------------

struct RopeTables {
  int half, max_pos;
  Vec inv_freq, cos_t, sin_t;
  RopeTables(int d, int max_pos, float mscale, float theta = 10000.0f)
      : half(d / 2),
        max_pos(max_pos),
        inv_freq(half),
        cos_t(size_t(max_pos) * half),
        sin_t(cos_t.size()) {
    for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(theta, -2.0f * i / d);
    rope_tables(inv_freq.data(), half, max_pos, mscale, cos_t.data(), sin_t.data());
  }
};

TEST(Rope, TablesFollowTheFormula) {
  const RopeTables t(8, 40, 1.3f);
  for (int p = 0; p < 40; ++p)
    for (int i = 0; i < 4; ++i) {
      const double a = double(float(p) * t.inv_freq[i]);
      EXPECT_NEAR(t.cos_t[p * 4 + i], 1.3 * std::cos(a), 1e-6);
      EXPECT_NEAR(t.sin_t[p * 4 + i], 1.3 * std::sin(a), 1e-6);
    }
}

TEST(Rope, HandComputedExample) {
  // d = 4, theta = 100: inv_freq = {1, 0.1}. Position 2 rotates pair 0 by 2 rad, pair 1 by 0.2.
  const RopeTables t(4, 3, 1.0f, 100.0f);
  Vec x = {1, 2, 3, 4};
  const int32_t pos = 2;
  rope_forward(x.data(), &pos, 1, 1, 4, 4, 4, t.cos_t.data(), t.sin_t.data());
  const double c0 = std::cos(2.0), s0 = std::sin(2.0), c1 = std::cos(0.2), s1 = std::sin(0.2);
  EXPECT_NEAR(x[0], 1 * c0 - 2 * s0, 1e-6);
  EXPECT_NEAR(x[1], 1 * s0 + 2 * c0, 1e-6);
  EXPECT_NEAR(x[2], 3 * c1 - 4 * s1, 1e-6);
  EXPECT_NEAR(x[3], 3 * s1 + 4 * c1, 1e-6);
}

// A q_pe-like slice: 3 heads of 6 rope dims at offset 5 inside rows of 40 floats, heads 11 apart.
constexpr int kRN = 4, kRH = 3, kRD = 6, kRStride = 40, kRHeadStride = 11, kROff = 5;
const int32_t kRPos[kRN] = {0, 7, 3, 19};

TEST(Rope, BackwardIsExactInverseAndTouchesOnlyTheSlice) {
  const RopeTables t(kRD, 20, 1.0f);
  const Vec x0 = randn(size_t(kRN) * kRStride, 21);
  Vec x = x0;
  rope_forward(x.data() + kROff, kRPos, kRN, kRH, kRD, kRStride, kRHeadStride, t.cos_t.data(),
               t.sin_t.data());
  int changed = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const int col = int(i % kRStride) - kROff;
    const bool in_slice = col >= 0 && col % kRHeadStride < kRD && col / kRHeadStride < kRH;
    if (!in_slice) {
      EXPECT_EQ(x[i], x0[i]) << i;
    }
    changed += x[i] != x0[i];
  }
  EXPECT_GT(changed, (kRN - 1) * kRH * kRD / 2);  // row 0 is position 0: identity
  rope_backward(x.data() + kROff, kRPos, kRN, kRH, kRD, kRStride, kRHeadStride, t.cos_t.data(),
                t.sin_t.data());
  EXPECT_LT(rel_err(x, x0), 1e-6);
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  const float mscale = 1.25f;  // backward is the transpose, not the inverse, when mscale != 1
  const RopeTables t(kRD, 20, mscale);
  const Vec x = randn(size_t(kRN) * kRStride, 22), r = randn(x.size(), 23);
  auto loss = [&](const DVec& xd) {
    double L = 0.0;
    for (int n = 0; n < kRN; ++n)
      for (int h = 0; h < kRH; ++h)
        for (int i = 0; i < kRD / 2; ++i) {
          const size_t o = size_t(n) * kRStride + kROff + h * kRHeadStride + 2 * i;
          const double a = double(float(kRPos[n]) * t.inv_freq[i]);
          const double c = mscale * std::cos(a), s = mscale * std::sin(a);
          L += (xd[o] * c - xd[o + 1] * s) * r[o] + (xd[o] * s + xd[o + 1] * c) * r[o + 1];
        }
    return L;
  };
  const DVec g = numeric_grad(to_double(x), loss);
  // Outside the slice the gradient is zero; rope_backward must leave r's values there, so
  // compare only the slice.
  Vec dx = r;
  rope_backward(dx.data() + kROff, kRPos, kRN, kRH, kRD, kRStride, kRHeadStride, t.cos_t.data(),
                t.sin_t.data());
  DVec got, want;
  for (size_t i = 0; i < dx.size(); ++i) {
    if (g[i] != 0.0) {
      got.push_back(dx[i]);
      want.push_back(g[i]);
    } else {
      EXPECT_EQ(dx[i], r[i]);
    }
  }
  EXPECT_EQ(got.size(), size_t(kRN) * kRH * kRD);
  EXPECT_LT(rel_err(got, want), 1e-5);
}

// ---- SwiGLU ------------------------------------------------------------------------------

Vec swiglu_inputs(size_t n, uint64_t seed) {
  Vec g = randn(n, seed, 3.0);
  // Saturated sigmoid on both sides, and exp's clamp range.
  const float extremes[] = {-120.0f, -90.0f, -30.0f, 0.0f, 30.0f, 90.0f};
  for (size_t i = 0; i < std::min(n, std::size(extremes)); ++i) g[i * 3 % n] = extremes[i];
  return g;
}

TEST(Swiglu, ForwardAndBackwardMatchRef) {
  for (int64_t n : {1, 15, 16, 17, 100, 1001}) {
    const Vec g = swiglu_inputs(n, 24), u = randn(n, 25), da = randn(n, 26);
    Vec a(n), ar(n), dg(n), dgr(n), du(n), dur(n);
    swiglu_forward(g.data(), u.data(), a.data(), n);
    ref::swiglu_forward(g.data(), u.data(), ar.data(), n);
    EXPECT_LT(rel_err(a, ar), 2e-6) << n;
    swiglu_backward(da.data(), g.data(), u.data(), dg.data(), du.data(), n);
    ref::swiglu_backward(da.data(), g.data(), u.data(), dgr.data(), dur.data(), n);
    EXPECT_LT(rel_err(dg, dgr), 2e-6) << n;
    EXPECT_LT(rel_err(du, dur), 2e-6) << n;
    for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(a[i]) && std::isfinite(dg[i]));
  }
}

TEST(Swiglu, BackwardMatchesFiniteDifferences) {
  const int n = 37;
  const Vec g = randn(n, 27, 2.0), u = randn(n, 28), r = randn(n, 29);
  auto loss = [&](const DVec& gd, const DVec& ud) {
    double L = 0.0;
    for (int i = 0; i < n; ++i) L += gd[i] / (1.0 + std::exp(-gd[i])) * ud[i] * r[i];
    return L;
  };
  const DVec gd = to_double(g), ud = to_double(u);
  const DVec gg = numeric_grad(gd, [&](const DVec& v) { return loss(v, ud); });
  const DVec gu = numeric_grad(ud, [&](const DVec& v) { return loss(gd, v); });
  Vec dg(n), du(n);
  swiglu_backward(r.data(), g.data(), u.data(), dg.data(), du.data(), n);
  EXPECT_LT(rel_err(dg, gg), 1e-5);
  EXPECT_LT(rel_err(du, gu), 1e-5);
}

// ---- attention ---------------------------------------------------------------------------

// Inputs laid out as the model does: each of q, k, v is a slice (offset) inside wider rows.
struct AttnCase {
  AttentionShape s;
  int q_off, k_off, v_off;
  Vec q, k, v;
  AttnCase(int B, int T, int H, int dqk, int dv, int pad, uint64_t seed)
      : s{B,
          T,
          H,
          dqk,
          dv,
          H * dqk + pad,
          H * dqk + 2 * pad,
          H * dv + 3 * pad,
          1.0f / std::sqrt(float(dqk))},
        q_off(pad ? 1 : 0),
        k_off(pad ? 2 : 0),
        v_off(pad ? 3 : 0),
        q(randn(size_t(B) * T * s.q_stride, seed)),
        k(randn(size_t(B) * T * s.k_stride, seed + 1)),
        v(randn(size_t(B) * T * s.v_stride, seed + 2)) {}
  size_t probs_size() const { return size_t(s.B) * s.H * s.T * s.T; }
  size_t out_size() const { return size_t(s.B) * s.T * s.H * s.dv; }
  // Is float index i of a row of width `stride` inside one of the H heads of width `hd`?
  static bool in_heads(size_t i, int stride, int off, int H, int hd) {
    const int col = int(i % stride) - off;
    return col >= 0 && col < H * hd;
  }
};

const int kAttnShapes[][6] = {
    // B, T, H, dqk, dv, pad
    {1, 1, 1, 1, 1, 0},
    {1, 1, 2, 5, 3, 3},
    {2, 7, 3, 17, 5, 2},
    {1, 130, 2, 24, 16, 1},
    {2, 64, 4, 48, 32, 0}};

TEST(Attention, ForwardMatchesRefAndProbsAreCausalRows) {
  for (const auto& c : kAttnShapes) {
    AttnCase a(c[0], c[1], c[2], c[3], c[4], c[5], 30);
    Vec P(a.probs_size(), 7.0f), Pr(P.size()), O(a.out_size(), 7.0f), Or(O.size());
    attention_forward(a.s, a.q.data() + a.q_off, a.k.data() + a.k_off, a.v.data() + a.v_off,
                      P.data(), O.data());
    ref::attention_forward(a.s, a.q.data() + a.q_off, a.k.data() + a.k_off, a.v.data() + a.v_off,
                           Pr.data(), Or.data());
    EXPECT_LT(rel_err(P, Pr), 2e-6) << "T=" << c[1];
    EXPECT_LT(rel_err(O, Or), 2e-6) << "T=" << c[1];
    const int T = c[1];
    for (size_t row = 0; row < P.size() / T; ++row) {
      const int i = int(row % T);
      double sum = 0.0;
      for (int j = 0; j < T; ++j) {
        const float p = P[row * T + j];
        if (j > i) {
          ASSERT_EQ(p, 0.0f) << "row " << i << " col " << j;
        } else {
          ASSERT_GE(p, 0.0f);
        }
        sum += p;
      }
      ASSERT_NEAR(sum, 1.0, 1e-5) << "row " << row;
    }
  }
}

TEST(Attention, BackwardMatchesRefAndWritesOnlyHeadSlices) {
  for (const auto& c : kAttnShapes) {
    AttnCase a(c[0], c[1], c[2], c[3], c[4], c[5], 40);
    const float *q = a.q.data() + a.q_off, *k = a.k.data() + a.k_off, *v = a.v.data() + a.v_off;
    Vec P(a.probs_size()), O(a.out_size());
    ref::attention_forward(a.s, q, k, v, P.data(), O.data());
    const Vec dO = randn(O.size(), 41);
    // NaN inside the head slices checks overwrite; 5 outside checks that padding survives.
    auto init = [](const Vec& like, int stride, int off, int H, int hd) {
      Vec g(like.size());
      for (size_t i = 0; i < g.size(); ++i)
        g[i] = AttnCase::in_heads(i, stride, off, H, hd) ? std::numeric_limits<float>::quiet_NaN()
                                                         : 5.0f;
      return g;
    };
    const AttentionShape& s = a.s;
    Vec dq = init(a.q, s.q_stride, a.q_off, s.H, s.dqk),
        dk = init(a.k, s.k_stride, a.k_off, s.H, s.dqk);
    Vec dv = init(a.v, s.v_stride, a.v_off, s.H, s.dv);
    Vec dqr = dq, dkr = dk, dvr = dv;
    attention_backward(s, q, k, v, P.data(), dO.data(), dq.data() + a.q_off, dk.data() + a.k_off,
                       dv.data() + a.v_off);
    ref::attention_backward(s, q, k, v, P.data(), dO.data(), dqr.data() + a.q_off,
                            dkr.data() + a.k_off, dvr.data() + a.v_off);
    for (size_t i = 0; i < dq.size(); ++i) {
      if (!AttnCase::in_heads(i, s.q_stride, a.q_off, s.H, s.dqk)) dq[i] = dqr[i] = 0.0f;
    }
    for (size_t i = 0; i < dk.size(); ++i) {
      if (!AttnCase::in_heads(i, s.k_stride, a.k_off, s.H, s.dqk)) dk[i] = dkr[i] = 0.0f;
    }
    for (size_t i = 0; i < dv.size(); ++i) {
      if (!AttnCase::in_heads(i, s.v_stride, a.v_off, s.H, s.dv)) dv[i] = dvr[i] = 0.0f;
    }
    EXPECT_LT(rel_err(dq, dqr), 1e-5) << "T=" << c[1];
    EXPECT_LT(rel_err(dk, dkr), 1e-5) << "T=" << c[1];
    EXPECT_LT(rel_err(dv, dvr), 1e-5) << "T=" << c[1];
  }
}

// Padding entries must keep their values: checked by comparing against the 5.0 sentinel.
TEST(Attention, BackwardLeavesPaddingUntouched) {
  AttnCase a(2, 9, 2, 6, 4, 3, 50);
  const AttentionShape& s = a.s;
  Vec P(a.probs_size()), O(a.out_size());
  const float *q = a.q.data() + a.q_off, *k = a.k.data() + a.k_off, *v = a.v.data() + a.v_off;
  attention_forward(s, q, k, v, P.data(), O.data());
  const Vec dO = randn(O.size(), 51);
  Vec dq(a.q.size(), 5.0f), dk(a.k.size(), 5.0f), dv(a.v.size(), 5.0f);
  attention_backward(s, q, k, v, P.data(), dO.data(), dq.data() + a.q_off, dk.data() + a.k_off,
                     dv.data() + a.v_off);
  int touched = 0;
  for (size_t i = 0; i < dq.size(); ++i) {
    if (AttnCase::in_heads(i, s.q_stride, a.q_off, s.H, s.dqk)) {
      touched += dq[i] != 5.0f;
    } else {
      EXPECT_EQ(dq[i], 5.0f) << i;
    }
  }
  for (size_t i = 0; i < dk.size(); ++i) {
    if (!AttnCase::in_heads(i, s.k_stride, a.k_off, s.H, s.dqk)) {
      EXPECT_EQ(dk[i], 5.0f) << i;
    }
  }
  for (size_t i = 0; i < dv.size(); ++i) {
    if (!AttnCase::in_heads(i, s.v_stride, a.v_off, s.H, s.dv)) {
      EXPECT_EQ(dv[i], 5.0f) << i;
    }
  }
  EXPECT_GT(touched, 2 * 9 * 2 * 6 / 2);
}

// Double-precision causal attention over the same strided layout, for finite differences.
DVec attention_double(const AttentionShape& s, const DVec& q, const DVec& k, const DVec& v, int qo,
                      int ko, int vo) {
  DVec out(size_t(s.B) * s.T * s.H * s.dv, 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.T; ++i) {
        DVec sc(i + 1);
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j <= i; ++j) {
          double d = 0.0;
          for (int c = 0; c < s.dqk; ++c)
            d += q[qo + size_t(b * s.T + i) * s.q_stride + h * s.dqk + c] *
                 k[ko + size_t(b * s.T + j) * s.k_stride + h * s.dqk + c];
          sc[j] = d * s.scale;
          mx = std::max(mx, sc[j]);
        }
        for (auto& x : sc) sum += (x = std::exp(x - mx));
        for (int c = 0; c < s.dv; ++c) {
          double acc = 0.0;
          for (int j = 0; j <= i; ++j)
            acc += sc[j] / sum * v[vo + size_t(b * s.T + j) * s.v_stride + h * s.dv + c];
          out[size_t(b * s.T + i) * s.H * s.dv + h * s.dv + c] = acc;
        }
      }
  return out;
}

TEST(Attention, BackwardMatchesFiniteDifferences) {
  for (const auto& c :
       {std::array<int, 6>{2, 5, 2, 3, 4, 2}, std::array<int, 6>{1, 70, 1, 2, 2, 1}}) {
    AttnCase a(c[0], c[1], c[2], c[3], c[4], c[5], 60);
    const AttentionShape& s = a.s;
    const Vec r = randn(a.out_size(), 61);
    const DVec qd = to_double(a.q), kd = to_double(a.k), vd = to_double(a.v);
    auto L = [&](const DVec& qq, const DVec& kk, const DVec& vv) {
      const DVec o = attention_double(s, qq, kk, vv, a.q_off, a.k_off, a.v_off);
      return dot(o, r);
    };
    const DVec gq = numeric_grad(qd, [&](const DVec& x) { return L(x, kd, vd); });
    const DVec gk = numeric_grad(kd, [&](const DVec& x) { return L(qd, x, vd); });
    const DVec gv = numeric_grad(vd, [&](const DVec& x) { return L(qd, kd, x); });
    const float *q = a.q.data() + a.q_off, *k = a.k.data() + a.k_off, *v = a.v.data() + a.v_off;
    Vec P(a.probs_size()), O(a.out_size());
    attention_forward(s, q, k, v, P.data(), O.data());
    // Padding gets zero numeric gradient; start it at zero so whole arrays compare.
    Vec dq(a.q.size(), 0.0f), dk(a.k.size(), 0.0f), dv(a.v.size(), 0.0f);
    attention_backward(s, q, k, v, P.data(), r.data(), dq.data() + a.q_off, dk.data() + a.k_off,
                       dv.data() + a.v_off);
    EXPECT_LT(rel_err(dq, gq), 1e-5) << "T=" << c[1];
    EXPECT_LT(rel_err(dk, gk), 1e-5) << "T=" << c[1];
    EXPECT_LT(rel_err(dv, gv), 1e-5) << "T=" << c[1];
  }
}

// ---- losses ------------------------------------------------------------------------------

std::vector<int32_t> targets_with_mask(int N, int V, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(N);
  for (int n = 0; n < N; ++n) t[n] = n % 3 == 1 ? -100 : int32_t(rng.below(V));
  return t;
}

TEST(CrossEntropy, MatchesRefWithMaskAndAlias) {
  for (auto [N, V] : {std::pair{1, 1}, {1, 17}, {5, 33}, {7, 1000}, {4, 4099}}) {
    const Vec logits = randn(size_t(N) * V, 70, 4.0);
    const auto t = targets_with_mask(N, V, 71);
    Vec d(logits.size(), 9.0f), dr(logits.size());
    const double L = cross_entropy_forward_backward(logits.data(), t.data(), d.data(), N, V, 0.3f);
    const double Lr =
        ref::cross_entropy_forward_backward(logits.data(), t.data(), dr.data(), N, V, 0.3f);
    EXPECT_NEAR(L, Lr, 1e-5 * std::max(1.0, std::abs(Lr))) << N << "x" << V;
    EXPECT_LT(rel_err(d, dr), 2e-6) << N << "x" << V;
    for (int n = 0; n < N; ++n) {
      if (t[n] < 0) {
        for (int j = 0; j < V; ++j) ASSERT_EQ(d[size_t(n) * V + j], 0.0f);
      }
    }
    // dlogits written over logits gives the same answer.
    Vec inplace = logits;
    const double La =
        cross_entropy_forward_backward(inplace.data(), t.data(), inplace.data(), N, V, 0.3f);
    EXPECT_EQ(La, L);
    EXPECT_EQ(inplace, d);
  }
}

TEST(CrossEntropy, MatchesFiniteDifferences) {
  const int N = 4, V = 19;
  const Vec logits = randn(size_t(N) * V, 72, 2.0);
  const auto t = targets_with_mask(N, V, 73);
  auto loss = [&](const DVec& x) {
    double L = 0.0;
    for (int n = 0; n < N; ++n) {
      if (t[n] < 0) continue;
      double s = 0.0;
      for (int j = 0; j < V; ++j) s += std::exp(x[n * V + j]);
      L += std::log(s) - x[n * V + t[n]];
    }
    return L;
  };
  const DVec g = numeric_grad(to_double(logits), loss);
  Vec d(logits.size());
  const double L = cross_entropy_forward_backward(logits.data(), t.data(), d.data(), N, V, 1.0f);
  EXPECT_NEAR(L, loss(to_double(logits)), 1e-5);
  EXPECT_LT(rel_err(d, g), 1e-5);
  // scale multiplies the gradient only
  Vec d2(logits.size());
  cross_entropy_forward_backward(logits.data(), t.data(), d2.data(), N, V, 0.25f);
  for (size_t i = 0; i < d.size(); ++i) ASSERT_FLOAT_EQ(d2[i], 0.25f * d[i]);
}

TEST(CrossEntropy, StableForHugeLogits) {
  const int V = 40;
  Vec logits(V, -1e4f);
  logits[3] = 1e4f;
  logits[7] = 1e4f - 1.0f;
  const int32_t t = 7;
  Vec d(V);
  const double L = cross_entropy_forward_backward(logits.data(), &t, d.data(), 1, V, 1.0f);
  EXPECT_NEAR(L, std::log1p(std::exp(1.0)), 1e-5);  // = log(e^1 + e^0) − 0
  EXPECT_NEAR(d[3], std::exp(1.0) / (1 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(d[7], 1 / (1 + std::exp(1.0)) - 1, 1e-6);
  for (float x : d) ASSERT_TRUE(std::isfinite(x));
}

TEST(LogProb, MatchesRefAndCrossEntropy) {
  for (auto [N, V] : {std::pair{1, 1}, {6, 31}, {5, 4099}}) {
    const Vec logits = randn(size_t(N) * V, 80, 3.0);
    const auto t = targets_with_mask(N, V, 81);
    Vec lp(N, 9.0f), lpr(N), d(logits.size());
    log_prob_of_targets(logits.data(), t.data(), lp.data(), N, V);
    ref::log_prob_of_targets(logits.data(), t.data(), lpr.data(), N, V);
    EXPECT_LT(rel_err(lp, lpr), 2e-6);
    double sum = 0.0;
    for (int n = 0; n < N; ++n) {
      if (t[n] < 0) {
        EXPECT_EQ(lp[n], 0.0f);
      }
      sum -= lp[n];
    }
    const double L = cross_entropy_forward_backward(logits.data(), t.data(), d.data(), N, V, 1.0f);
    EXPECT_NEAR(sum, L, 1e-5 * std::max(1.0, L));
  }
}

}  // namespace
}  // namespace seekr
