// The Linear-layer GEMMs at FP32, BF16 and FP8 (kernels/linear.h) against plain double-precision
// products of the operands each mode is defined to use.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "kernels/fp8.h"
#include "kernels/linear.h"
#include "kernels/ops.h"

namespace seekr {
namespace {

std::vector<float> random_matrix(int rows, int cols, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> m(size_t(rows) * cols);
  for (auto& x : m) x = static_cast<float>(rng.normal()) * scale;
  return m;
}

// C[M, N] = A[M, K]·B[N, K]ᵀ in double (or with A given as [K, M] when a_km).
std::vector<double> product(const std::vector<float>& A, const std::vector<float>& B, int M, int N,
                            int K, bool a_km = false, bool b_kn = false) {
  std::vector<double> C(size_t(M) * N, 0.0);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) {
        const double a = a_km ? A[size_t(k) * M + m] : A[size_t(m) * K + k];
        const double b = b_kn ? B[size_t(k) * N + n] : B[size_t(n) * K + k];
        acc += a * b;
      }
      C[size_t(m) * N + n] = acc;
    }
  return C;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double rel,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * scale) << what << " element " << i;
}

std::vector<float> bf16_rounded(std::vector<float> x) {
  for (auto& v : x) v = bf16_to_f32(f32_to_bf16(v));
  return x;
}

std::vector<float> fp8_fake(std::vector<float> x, int rows, int cols, Fp8Tiling t) {
  fp8_fake_quant(x.data(), rows, cols, t);
  return x;
}

// Shapes with partial 128-tiles on every axis.
constexpr int N = 150, IN = 200, OUT = 72;

TEST(Linear, Fp32IsThePlainProduct) {
  const auto x = random_matrix(N, IN, 1), w = random_matrix(OUT, IN, 2),
             dy = random_matrix(N, OUT, 3);
  std::vector<float> y(size_t(N) * OUT), y2 = y, dx(size_t(N) * IN), dx2 = dx;
  std::vector<float> dw(size_t(OUT) * IN, 0.5f), dw2 = dw;
  linear_forward(GemmPrecision::kF32, x.data(), w.data(), y.data(), N, IN, OUT);
  matmul_xwt(x.data(), w.data(), y2.data(), N, IN, OUT);
  linear_dgrad(GemmPrecision::kF32, dy.data(), w.data(), dx.data(), N, IN, OUT);
  matmul_dy_w(dy.data(), w.data(), dx2.data(), N, IN, OUT);
  linear_wgrad(GemmPrecision::kF32, dy.data(), x.data(), dw.data(), N, IN, OUT);
  matmul_dyt_x(dy.data(), x.data(), dw2.data(), N, IN, OUT);
  EXPECT_EQ(y, y2);
  EXPECT_EQ(dx, dx2);
  EXPECT_EQ(dw, dw2);
}

// Both BF16 implementations (the bf16 kernel reading transposed operands in place, and sgemm on
// rounded copies) give the product of the rounded operands with FP32 accumulation.
TEST(Linear, Bf16RoundsBothOperandsAndAccumulatesInFp32) {
  const auto x = random_matrix(N, IN, 4), w = random_matrix(OUT, IN, 5, 0.05f);
  const auto dy = random_matrix(N, OUT, 6, 0.01f);
  const Bf16Gemm saved = bf16_gemm();
  for (Bf16Gemm impl : {Bf16Gemm::kKernel, Bf16Gemm::kSgemm}) {
    SCOPED_TRACE(impl == Bf16Gemm::kKernel ? "bf16 kernel" : "sgemm");
    set_bf16_gemm(impl);
    std::vector<float> y(size_t(N) * OUT, 1.0f), dx(size_t(N) * IN, 2.0f);
    std::vector<float> dw(size_t(OUT) * IN, 0.25f);
    linear_forward(GemmPrecision::kBF16, x.data(), w.data(), y.data(), N, IN, OUT, 1.0f);
    auto want_y = product(bf16_rounded(x), bf16_rounded(w), N, OUT, IN);
    for (auto& v : want_y) v += 1.0;  // beta = 1 accumulates
    expect_close(y, want_y, 1e-6, "forward");
    linear_dgrad(GemmPrecision::kBF16, dy.data(), w.data(), dx.data(), N, IN, OUT);  // beta 0
    expect_close(dx, product(bf16_rounded(dy), bf16_rounded(w), N, IN, OUT, false, true), 1e-6,
                 "dgrad");
    linear_wgrad(GemmPrecision::kBF16, dy.data(), x.data(), dw.data(), N, IN, OUT);
    auto want_dw = product(bf16_rounded(dy), bf16_rounded(x), OUT, IN, N, true, true);
    for (auto& v : want_dw) v += 0.25;  // the weight gradient accumulates
    expect_close(dw, want_dw, 1e-6, "wgrad");
    // And the rounding is real: the result differs from FP32 by about BF16's 2^-8.
    std::vector<float> y32(size_t(N) * OUT);
    linear_forward(GemmPrecision::kF32, x.data(), w.data(), y32.data(), N, IN, OUT);
    double diff = 0;
    for (size_t i = 0; i < y32.size(); ++i)
      diff = std::max(diff, double(std::fabs(y32[i] + 1 - y[i])));
    EXPECT_GT(diff, 1e-5);
  }
  set_bf16_gemm(saved);
}

TEST(Linear, Fp8QuantisesAsTheV3Recipe) {
  const auto x = random_matrix(N, IN, 7), w = random_matrix(OUT, IN, 8, 0.05f);
  const auto dy = random_matrix(N, OUT, 9, 0.01f);
  std::vector<float> y(size_t(N) * OUT), dx(size_t(N) * IN, 2.0f), dw(size_t(OUT) * IN, 0.0f);
  // Forward: x in 1×128 tiles along `in`, W in 128×128 blocks.
  linear_forward(GemmPrecision::kFP8, x.data(), w.data(), y.data(), N, IN, OUT);
  const auto xq = fp8_fake(x, N, IN, Fp8Tiling::k1x128);
  const auto wq = fp8_fake(w, OUT, IN, Fp8Tiling::k128x128);
  expect_close(y, product(xq, wq, N, OUT, IN), 1e-6, "forward");
  // ... which is the blockwise-promoted FP8 GEMM of the E4M3 codes.
  std::vector<uint8_t> xc(x.size()), wc(w.size());
  std::vector<float> xs(size_t(N) * 2), ws(1 * 2), yg(y.size());
  ref::fp8_quantize(x.data(), xc.data(), xs.data(), N, IN, Fp8Tiling::k1x128, Fp8ScaleFmt::kF32);
  ref::fp8_quantize(w.data(), wc.data(), ws.data(), OUT, IN, Fp8Tiling::k128x128,
                    Fp8ScaleFmt::kF32);
  ref::fp8_gemm(xc.data(), xs.data(), wc.data(), ws.data(), Fp8Tiling::k128x128, yg.data(), N, OUT,
                IN, 0.0f);
  std::vector<double> ygd(yg.begin(), yg.end());
  expect_close(y, ygd, 1e-6, "forward vs fp8_gemm");
  // Dgrad: dy in 1×128 tiles along `out` (its K), the same 128×128 weight blocks.
  linear_dgrad(GemmPrecision::kFP8, dy.data(), w.data(), dx.data(), N, IN, OUT, 1.0f);
  auto want_dx = product(fp8_fake(dy, N, OUT, Fp8Tiling::k1x128), wq, N, IN, OUT, false, true);
  for (auto& v : want_dx) v += 2.0;
  expect_close(dx, want_dx, 1e-6, "dgrad");
  // Wgrad: K is the token axis, so dy and x are both tiled 128×1 along it.
  linear_wgrad(GemmPrecision::kFP8, dy.data(), x.data(), dw.data(), N, IN, OUT);
  expect_close(dw,
               product(fp8_fake(dy, N, OUT, Fp8Tiling::k128x1),
                       fp8_fake(x, N, IN, Fp8Tiling::k128x1), OUT, IN, N, true, true),
               1e-6, "wgrad");
  // FP8's error against FP32 is of E4M3's order (3 mantissa bits), far above BF16's.
  std::vector<float> y32(y.size());
  linear_forward(GemmPrecision::kF32, x.data(), w.data(), y32.data(), N, IN, OUT);
  double err = 0, norm = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    err += (y[i] - y32[i]) * double(y[i] - y32[i]);
    norm += double(y32[i]) * y32[i];
  }
  EXPECT_GT(std::sqrt(err / norm), 1e-3);
  EXPECT_LT(std::sqrt(err / norm), 0.1);
}

TEST(Linear, PrecisionNames) {
  for (GemmPrecision p : {GemmPrecision::kF32, GemmPrecision::kBF16, GemmPrecision::kFP8})
    EXPECT_EQ(parse_precision(precision_name(p)), p);
  try {
    parse_precision("fp16");
    FAIL() << "fp16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp16"), std::string::npos);
  }
}

}  // namespace
}  // namespace seekr
