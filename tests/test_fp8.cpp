// FP8 and BF16 kernels: the fp8 codecs over all 256 codes, at every rounding midpoint and against
// the scalar reference on millions of floats; E8M0 scales; the fine-grained quantisation (tiles,
// scales, edges, round-trip bounds); the FP8 GEMM against its reference and against sgemm on the
// dequantised operands; the BF16 GEMM paths against their reference.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/fp8.h"
#include "kernels/ops.h"

namespace seekr {
namespace {

using Vec = std::vector<float>;
using Bytes = std::vector<uint8_t>;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Vec randn(size_t n, uint64_t seed, double stdev = 1.0) {
  Rng rng(seed);
  Vec v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal() * stdev);
  return v;
}

// max|a − b| / max|b|, infinite when either holds a non-finite value.
double rel_err(const Vec& a, const Vec& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / std::max(den, 1e-30);
}

// Both NaN, or the same float including the sign of zero.
bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) ||
         std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

// ---- codecs --------------------------------------------------------------------------------

// One fp8 format's entry points, so every codec test runs on both.
struct Codec {
  const char* name;
  uint8_t (*enc)(float);
  float (*dec)(uint8_t);
  void (*bulk_enc)(const float*, uint8_t*, int64_t);
  void (*bulk_dec)(const uint8_t*, float*, int64_t);
  void (*ref_enc)(const float*, uint8_t*, int64_t);
  void (*ref_dec)(const uint8_t*, float*, int64_t);
  uint8_t max_code;  // largest finite magnitude
  float max;
  bool has_inf;
};
const Codec kCodecs[] = {
    {"e4m3", f32_to_e4m3, e4m3_to_f32, encode_e4m3, decode_e4m3, ref::encode_e4m3, ref::decode_e4m3,
     0x7E, kE4M3Max, false},
    {"e5m2", f32_to_e5m2, e5m2_to_f32, encode_e5m2, decode_e5m2, ref::encode_e5m2, ref::decode_e5m2,
     0x7B, kE5M2Max, true},
};

// Encodes xs with the scalar call, the bulk kernel and the reference; all three must agree.
Bytes encode_all_ways(const Codec& c, const Vec& xs) {
  Bytes bulk(xs.size()), want(xs.size());
  c.bulk_enc(xs.data(), bulk.data(), int64_t(xs.size()));
  c.ref_enc(xs.data(), want.data(), int64_t(xs.size()));
  size_t bad = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const uint8_t scalar = c.enc(xs[i]);
    if ((bulk[i] != want[i] || scalar != want[i]) && ++bad <= 10)
      ADD_FAILURE() << c.name << " x=" << xs[i] << " (0x" << std::hex
                    << std::bit_cast<uint32_t>(xs[i]) << "): bulk 0x" << int(bulk[i])
                    << " scalar 0x" << int(scalar) << " ref 0x" << int(want[i]);
  }
  EXPECT_EQ(bad, 0u) << c.name;
  return want;
}

TEST(Fp8Codec, E4M3KnownValues) {
  EXPECT_TRUE(same_float(e4m3_to_f32(0x00), 0.0f));
  EXPECT_TRUE(same_float(e4m3_to_f32(0x80), -0.0f));
  EXPECT_EQ(e4m3_to_f32(0x01), 0x1p-9f);  // smallest subnormal
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * 0x1p-9f);
  EXPECT_EQ(e4m3_to_f32(0x08), 0x1p-6f);  // smallest normal
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0xFE), -448.0f);
  int nans = 0;
  for (int c = 0; c < 256; ++c) nans += std::isnan(e4m3_to_f32(uint8_t(c)));
  EXPECT_EQ(nans, 2);  // S.1111.111 only: no infinities
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7F)) && std::isnan(e4m3_to_f32(0xFF)));
  for (int c = 0; c < 0x7E; ++c) EXPECT_LT(e4m3_to_f32(uint8_t(c)), e4m3_to_f32(uint8_t(c + 1)));
}

TEST(Fp8Codec, E5M2KnownValues) {
  EXPECT_EQ(e5m2_to_f32(0x01), 0x1p-16f);
  EXPECT_EQ(e5m2_to_f32(0x04), 0x1p-14f);
  EXPECT_EQ(e5m2_to_f32(0x3C), 1.0f);
  EXPECT_EQ(e5m2_to_f32(0x7B), 57344.0f);
  EXPECT_EQ(e5m2_to_f32(0x7C), kInf);
  EXPECT_EQ(e5m2_to_f32(0xFC), -kInf);
  int nans = 0;
  for (int c = 0; c < 256; ++c) nans += std::isnan(e5m2_to_f32(uint8_t(c)));
  EXPECT_EQ(nans, 6);  // S.11111.{01,10,11}
  for (int c = 0; c < 0x7C; ++c) EXPECT_LT(e5m2_to_f32(uint8_t(c)), e5m2_to_f32(uint8_t(c + 1)));
  // E5M2 is the top byte of an IEEE half.
  for (int c = 0; c < 256; ++c)
    EXPECT_TRUE(same_float(e5m2_to_f32(uint8_t(c)), f16_to_f32(uint16_t(c << 8)))) << c;
}

TEST(Fp8Codec, DecodeOfEveryCodeMatchesRefAndBulk) {
  // The codes three times at an odd offset: the vector body and the scalar tail both see them.
  Bytes codes(3 * 256 + 5);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint8_t(i - 5);
  for (const Codec& c : kCodecs) {
    Vec bulk(codes.size()), want(codes.size());
    c.bulk_dec(codes.data(), bulk.data(), int64_t(codes.size()));
    c.ref_dec(codes.data(), want.data(), int64_t(codes.size()));
    for (size_t i = 0; i < codes.size(); ++i) {
      EXPECT_TRUE(same_float(bulk[i], want[i])) << c.name << " code " << int(codes[i]);
      EXPECT_TRUE(same_float(c.dec(codes[i]), want[i])) << c.name << " code " << int(codes[i]);
    }
  }
}

TEST(Fp8Codec, EveryCodeRoundTrips) {
  for (const Codec& c : kCodecs) {
    Vec xs;
    Bytes expect;
    for (int code = 0; code < 256; ++code) {
      const float v = c.dec(uint8_t(code));
      if (std::isnan(v)) continue;
      xs.push_back(v);
      // Satfinite: E5M2's ±inf come back as ±max.
      expect.push_back(std::isinf(v) ? uint8_t((code & 0x80) | c.max_code) : uint8_t(code));
    }
    EXPECT_EQ(xs.size(), c.has_inf ? 250u : 254u);
    EXPECT_EQ(encode_all_ways(c, xs), expect) << c.name;
    EXPECT_EQ(c.enc(0.0f), 0x00) << c.name;
    EXPECT_EQ(c.enc(-0.0f), 0x80) << c.name;
  }
}

TEST(Fp8Codec, MidpointsRoundToEvenAndNeighboursToNearest) {
  for (const Codec& c : kCodecs) {
    Vec xs;
    Bytes expect;
    for (int code = 0; code < c.max_code; ++code) {
      const float lo = c.dec(uint8_t(code)), hi = c.dec(uint8_t(code + 1));
      const float mid = (lo + hi) / 2;  // exact: a few significant bits
      ASSERT_TRUE(mid > lo && mid < hi);
      // The mantissa's last bit is the code's last bit, also across a binade boundary.
      const uint8_t even = uint8_t(code % 2 == 0 ? code : code + 1);
      for (uint8_t sign : {0x00, 0x80}) {
        const float s = sign ? -1.0f : 1.0f;
        xs.insert(xs.end(),
                  {s * mid, s * std::nextafter(mid, kInf), s * std::nextafter(mid, 0.0f)});
        expect.insert(expect.end(),
                      {uint8_t(sign | even), uint8_t(sign | (code + 1)), uint8_t(sign | code)});
      }
    }
    EXPECT_EQ(encode_all_ways(c, xs), expect) << c.name;
  }
}

TEST(Fp8Codec, SubnormalRangeAndUnderflow) {
  const Vec xs = {0x1p-10f,  // half the smallest subnormal: ties to 0
                  std::nextafter(0x1p-10f, 1.0f),
                  3 * 0x1p-10f,                   // between codes 1 and 2: to 2
                  5 * 0x1p-10f,                   // between 2 and 3: to 2
                  std::nextafter(0x1p-6f, 0.0f),  // just below the smallest normal
                  15 * 0x1p-10f,                  // between 7·2^-9 and 2^-6 (code 8, even)
                  1e-30f,
                  -1e-30f,
                  1e-45f /* f32 subnormal */,
                  -0x1p-10f};
  EXPECT_EQ(encode_all_ways(kCodecs[0], xs),
            (Bytes{0x00, 0x01, 0x02, 0x02, 0x08, 0x08, 0x00, 0x80, 0x00, 0x80}));
  const Vec ys = {0x1p-17f, 3 * 0x1p-17f, 0x1p-14f - 0x1p-17f, std::nextafter(0x1p-17f, 1.0f)};
  EXPECT_EQ(encode_all_ways(kCodecs[1], ys), (Bytes{0x00, 0x02, 0x04, 0x01}));
}

TEST(Fp8Codec, SaturatesFiniteOverflowAndInfinityAndKeepsNaN) {
  const float big[] = {
      1.0f, std::nextafter(1.0f, kInf), 1.0001f, 1.0338f, 1.0714f, 1.1f, 2.0f, 1e6f, 3e38f, kInf};
  for (const Codec& c : kCodecs) {
    Vec xs;
    Bytes expect;
    // E4M3: 448·{1, .., 464/448 (the midpoint to a would-be 480), 480/448, ...}; E5M2 likewise
    // up to 61440, the midpoint to a would-be 65536, whose tie would go to the even infinity.
    for (float f : big) {
      xs.insert(xs.end(), {c.max * f, -c.max * f});
      expect.insert(expect.end(), {c.max_code, uint8_t(0x80 | c.max_code)});
    }
    xs.insert(xs.end(), {std::nextafter(c.max, 0.0f), kNaN, -kNaN});
    const uint8_t nan = c.has_inf ? 0x7E : 0x7F;
    expect.insert(expect.end(), {c.max_code, nan, uint8_t(0x80 | nan)});
    EXPECT_EQ(encode_all_ways(c, xs), expect) << c.name;
  }
  EXPECT_EQ(f32_to_e4m3(464.0f), 0x7E);
  EXPECT_EQ(f32_to_e5m2(61440.0f), 0x7B);
}

TEST(Fp8Codec, BulkMatchesScalarAndRefOnMillionsOfFloats) {
  Rng rng(7);
  Vec xs;
  // Arbitrary bit patterns: every class (NaN payloads, infinities, f32 subnormals).
  for (int i = 0; i < 1'000'000; ++i) xs.push_back(std::bit_cast<float>(uint32_t(rng.next_u64())));
  // Log-uniform magnitudes over both formats' ranges and a little beyond.
  for (int i = 0; i < 1'000'000; ++i) {
    const double mag = std::exp2(-26.0 + 44.0 * rng.uniform());
    xs.push_back(float(rng.uniform() < 0.5 ? -mag : mag));
  }
  // Every f32 exponent × the top 6 mantissa bits × low bits at and around each format's rounding
  // position (bit 19 for E4M3, bit 20 for E5M2), NaN/inf included.
  const uint32_t lows[] = {0,       1,        0x3ffff,  0x40000,  0x7ffff,  0x80000, 0x80001,
                           0xfffff, 0x100000, 0x17ffff, 0x180000, 0x180001, 0x1fffff};
  for (uint32_t e = 0; e < 256; ++e)
    for (uint32_t top = 0; top < 64; ++top)
      for (uint32_t low : lows)
        for (uint32_t sign : {0u, 1u})
          xs.push_back(std::bit_cast<float>(sign << 31 | e << 23 | top << 17 | (low & 0x1fffff)));
  for (const Codec& c : kCodecs) encode_all_ways(c, xs);
}

// ---- E8M0 scales ---------------------------------------------------------------------------

TEST(Fp8Scale, E8M0CodesAndRoundingUp) {
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(0), 0x1p-127f);
  EXPECT_EQ(e8m0_to_f32(254), 0x1p127f);
  EXPECT_TRUE(std::isnan(e8m0_to_f32(0xFF)));
  EXPECT_EQ(f32_to_e8m0(1.0f), 127);
  EXPECT_EQ(f32_to_e8m0(0.75f), 127);  // rounds up to 1
  EXPECT_EQ(f32_to_e8m0(std::nextafter(1.0f, 2.0f)), 128);
  EXPECT_EQ(f32_to_e8m0(0.5f), 126);
  EXPECT_EQ(f32_to_e8m0(0x1p-127f), 0);
  EXPECT_EQ(f32_to_e8m0(1e-40f), 0);  // below 2^-127: the smallest code, still >= s
  EXPECT_EQ(f32_to_e8m0(0x1p127f), 254);
  EXPECT_EQ(f32_to_e8m0(3e38f), 254);  // past 2^127: saturates
  EXPECT_EQ(f32_to_e8m0(kInf), 254);
  for (float bad : {0.0f, -0.0f, -1.0f, kNaN}) EXPECT_EQ(f32_to_e8m0(bad), 0xFF) << bad;
  // ue8m0 rounding: the smallest power of two >= s.
  Rng rng(3);
  for (int i = 0; i < 100000; ++i) {
    const float s = float(std::exp2(-120.0 + 240.0 * rng.uniform()));
    const float r = ue8m0_round_up(s);
    ASSERT_EQ(std::bit_cast<uint32_t>(r) & 0x7fffff, 0u) << s;
    ASSERT_GE(r, s);
    ASSERT_LT(r / 2, s);
    ASSERT_EQ(r, e8m0_to_f32(f32_to_e8m0(s)));
  }
}

// ---- quantisation ------------------------------------------------------------------------

struct Quantized {
  Bytes q;
  Vec s;
};

Quantized quantize(const Vec& x, int rows, int cols, Fp8Tiling t,
                   Fp8ScaleFmt f = Fp8ScaleFmt::kF32) {
  const Fp8ScaleShape ss = fp8_scale_shape(t, rows, cols);
  Quantized r{Bytes(x.size()), Vec(size_t(ss.rows) * ss.cols, kNaN)};
  fp8_quantize(x.data(), r.q.data(), r.s.data(), rows, cols, t, f);
  return r;
}

Vec dequantize(const Quantized& z, int rows, int cols, Fp8Tiling t) {
  Vec x(z.q.size(), kNaN);
  fp8_dequantize(z.q.data(), z.s.data(), x.data(), rows, cols, t);
  return x;
}

// Where the scale of element (i, j) is under tiling t.
size_t tile_of(Fp8Tiling t, int rows, int cols, int i, int j) {
  const Fp8ScaleShape ss = fp8_scale_shape(t, rows, cols);
  const int ti = t == Fp8Tiling::k1x128 ? i : i / kFp8Block;
  const int tj = t == Fp8Tiling::k128x1 ? j : j / kFp8Block;
  return size_t(ti) * ss.cols + tj;
}
float scale_at(const Vec& s, Fp8Tiling t, int rows, int cols, int i, int j) {
  return s[tile_of(t, rows, cols, i, j)];
}

// Activations with a different magnitude in every 128-wide column block and 64-row band, so
// neighbouring tiles get different scales.
Vec uneven(int rows, int cols, uint64_t seed) {
  Vec x = randn(size_t(rows) * cols, seed);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j)
      x[size_t(i) * cols + j] *= float(std::exp2(((i / 64) * 5 + (j / 128) * 3) % 11 - 5));
  return x;
}

struct Shape {
  int rows, cols;
};
const Shape kQuantShapes[] = {{1, 1}, {5, 300}, {130, 257}, {256, 128}, {3, 1000}};
const Fp8Tiling kTilings[] = {Fp8Tiling::k1x128, Fp8Tiling::k128x1, Fp8Tiling::k128x128};
const Fp8ScaleFmt kFmts[] = {Fp8ScaleFmt::kF32, Fp8ScaleFmt::kUE8M0};

// Runs fn(shape, x, tiling, fmt) for every shape, tiling and scale format, x = uneven(.., seed).
template <class Fn>
void for_each_quant_case(uint64_t seed, Fn fn) {
  for (const Shape& sh : kQuantShapes) {
    const Vec x = uneven(sh.rows, sh.cols, seed);
    for (Fp8Tiling t : kTilings) {
      for (Fp8ScaleFmt f : kFmts) {
        SCOPED_TRACE(testing::Message()
                     << sh.rows << "x" << sh.cols << " tiling " << int(t) << " fmt " << int(f));
        fn(sh, x, t, f);
      }
    }
  }
}

TEST(Fp8Quant, ScaleShapes) {
  auto eq = [](Fp8ScaleShape a, int r, int c) { return a.rows == r && a.cols == c; };
  EXPECT_TRUE(eq(fp8_scale_shape(Fp8Tiling::k1x128, 5, 300), 5, 3));
  EXPECT_TRUE(eq(fp8_scale_shape(Fp8Tiling::k128x1, 300, 5), 3, 5));
  EXPECT_TRUE(eq(fp8_scale_shape(Fp8Tiling::k128x128, 200, 300), 2, 3));
  EXPECT_TRUE(eq(fp8_scale_shape(Fp8Tiling::k128x128, 1536, 7168), 12, 56));  // V3 q_a_proj
  EXPECT_TRUE(eq(fp8_scale_shape(Fp8Tiling::k128x128, 2048, 7168), 16, 56));  // routed expert
}

TEST(Fp8Quant, FastMatchesRefAndTheScaleFormula) {
  for_each_quant_case(11, [](const Shape& sh, const Vec& x, Fp8Tiling t, Fp8ScaleFmt f) {
    const Quantized z = quantize(x, sh.rows, sh.cols, t, f);
    Quantized want{Bytes(z.q.size()), Vec(z.s.size())};
    ref::fp8_quantize(x.data(), want.q.data(), want.s.data(), sh.rows, sh.cols, t, f);
    EXPECT_EQ(z.q, want.q);
    for (size_t i = 0; i < z.s.size(); ++i) ASSERT_TRUE(same_float(z.s[i], want.s[i])) << i;
    // The scales from the formula, tile amax computed here.
    Vec amax(z.s.size(), 0.0f);
    for (int i = 0; i < sh.rows; ++i) {
      for (int j = 0; j < sh.cols; ++j) {
        float& a = amax[tile_of(t, sh.rows, sh.cols, i, j)];
        a = std::max(a, std::fabs(x[size_t(i) * sh.cols + j]));
      }
    }
    for (size_t i = 0; i < z.s.size(); ++i) {
      const float s = std::max(amax[i], 1e-4f) / 448.0f;
      EXPECT_EQ(z.s[i], f == Fp8ScaleFmt::kF32 ? s : ue8m0_round_up(s)) << i;
    }
    // Every code is the E4M3 encoding of x / s.
    for (int i = 0; i < sh.rows; ++i)
      for (int j = 0; j < sh.cols; ++j)
        ASSERT_EQ(
            z.q[size_t(i) * sh.cols + j],
            f32_to_e4m3(x[size_t(i) * sh.cols + j] / scale_at(z.s, t, sh.rows, sh.cols, i, j)));
  });
}

TEST(Fp8Quant, RoundTripErrorIsBoundedByTheTileScale) {
  for_each_quant_case(12, [](const Shape& sh, const Vec& x, Fp8Tiling t, Fp8ScaleFmt f) {
    const Quantized z = quantize(x, sh.rows, sh.cols, t, f);
    const Vec d = dequantize(z, sh.rows, sh.cols, t);
    for (int i = 0; i < sh.rows; ++i) {
      for (int j = 0; j < sh.cols; ++j) {
        const size_t at = size_t(i) * sh.cols + j;
        const float s = scale_at(z.s, t, sh.rows, sh.cols, i, j);
        // 3 mantissa bits: half an ulp is 2^-4 relative for normals; below 2^-6·s the
        // subnormal quantum 2^-9·s rules (plus the f32 roundings of x/s and q·s).
        const double bound = std::max(0x1p-4 * std::fabs(x[at]), 0x1p-10 * s) * (1 + 1e-6);
        ASSERT_LE(std::abs(double(d[at]) - x[at]), bound) << i << "," << j << " x=" << x[at];
        // Power-of-two scales are never below amax/448: no element saturates.
        if (f == Fp8ScaleFmt::kUE8M0) {
          ASSERT_LE(std::fabs(x[at] / s), 448.0f);
        }
      }
    }
  });
}

TEST(Fp8Quant, TileMaximumSurvivesAlmostExactly) {
  // With f32 scales the largest element of a tile maps to ±448 and comes back within a few ulp.
  const int rows = 3, cols = 256;
  const Vec x = randn(size_t(rows) * cols, 13);
  const Quantized z = quantize(x, rows, cols, Fp8Tiling::k1x128);
  const Vec d = dequantize(z, rows, cols, Fp8Tiling::k1x128);
  for (int i = 0; i < rows; ++i) {
    for (int b = 0; b < 2; ++b) {
      const auto first = x.begin() + i * cols + b * 128;
      const auto it = std::max_element(
          first, first + 128, [](float p, float q) { return std::fabs(p) < std::fabs(q); });
      const size_t at = size_t(it - x.begin());
      EXPECT_EQ(std::fabs(e4m3_to_f32(z.q[at])), 448.0f);
      EXPECT_NEAR(d[at], x[at], 4e-7 * std::fabs(x[at]));
    }
  }
}

TEST(Fp8Quant, DequantizeIsExactlyCodeTimesScaleAndMatchesRef) {
  for_each_quant_case(14, [](const Shape& sh, const Vec& x, Fp8Tiling t, Fp8ScaleFmt f) {
    const Quantized z = quantize(x, sh.rows, sh.cols, t, f);
    const Vec d = dequantize(z, sh.rows, sh.cols, t);
    Vec want(d.size());
    ref::fp8_dequantize(z.q.data(), z.s.data(), want.data(), sh.rows, sh.cols, t);
    for (int i = 0; i < sh.rows; ++i) {
      for (int j = 0; j < sh.cols; ++j) {
        const size_t at = size_t(i) * sh.cols + j;
        ASSERT_TRUE(
            same_float(d[at], e4m3_to_f32(z.q[at]) * scale_at(z.s, t, sh.rows, sh.cols, i, j)));
        ASSERT_TRUE(same_float(d[at], want[at]));
      }
    }
  });
}

TEST(Fp8Quant, WeightEdgeBlocksUseOnlyTheirOwnElements) {
  // out = 200, in = 300: scale_inv [2, 3] with partial blocks on both edges.
  const int out = 200, in = 300;
  Vec w = randn(size_t(out) * in, 15, 0.02);
  const Quantized z = quantize(w, out, in, Fp8Tiling::k128x128);
  ASSERT_EQ(z.s.size(), 6u);
  float amax = 0.0f;  // block (1, 2): rows 128..199, columns 256..299
  for (int i = 128; i < out; ++i)
    for (int j = 256; j < in; ++j) amax = std::max(amax, std::fabs(w[size_t(i) * in + j]));
  EXPECT_EQ(z.s[5], amax / 448.0f);
  // A huge value in block (0, 2) changes that block only.
  w[size_t(5) * in + 290] = 1000.0f;
  const Quantized z2 = quantize(w, out, in, Fp8Tiling::k128x128);
  for (int b = 0; b < 6; ++b) EXPECT_EQ(z2.s[b] != z.s[b], b == 2) << b;
  for (int i = 0; i < out; ++i)
    for (int j = 0; j < in; ++j)
      if (i >= 128 || j < 256) {
        ASSERT_EQ(z2.q[size_t(i) * in + j], z.q[size_t(i) * in + j]);
      }
}

TEST(Fp8Quant, AllZeroAndTinyTilesGetTheFloorScale) {
  for (Fp8Tiling t : kTilings) {
    Vec x(size_t(130) * 200, 0.0f);
    x[7] = -0.0f;
    x[size_t(129) * 200 + 150] = 5e-5f;  // tile amax below the 1e-4 floor
    const Quantized z = quantize(x, 130, 200, t);
    for (float s : z.s) EXPECT_EQ(s, 1e-4f / 448.0f);
    const Vec d = dequantize(z, 130, 200, t);
    for (size_t i = 0; i < x.size(); ++i) {
      if (i == size_t(129) * 200 + 150) continue;
      ASSERT_EQ(z.q[i], i == 7 ? 0x80 : 0x00) << i;
      ASSERT_TRUE(same_float(d[i], x[i])) << i;
    }
    const size_t tiny = size_t(129) * 200 + 150;
    EXPECT_EQ(z.q[tiny], f32_to_e4m3(5e-5f / (1e-4f / 448.0f)));  // 224: exact
    EXPECT_NEAR(d[tiny], 5e-5f, 1e-10);
  }
}

TEST(Fp8Quant, Tiling128x1IsTheTransposeOf1x128) {
  const int rows = 300, cols = 130;
  const Vec x = uneven(rows, cols, 16);
  Vec xt(x.size());
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) xt[size_t(j) * rows + i] = x[size_t(i) * cols + j];
  const Quantized z = quantize(x, rows, cols, Fp8Tiling::k128x1);
  const Quantized zt = quantize(xt, cols, rows, Fp8Tiling::k1x128);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) ASSERT_EQ(z.q[size_t(i) * cols + j], zt.q[size_t(j) * rows + i]);
  for (int b = 0; b < 3; ++b)
    for (int j = 0; j < cols; ++j) ASSERT_EQ(z.s[size_t(b) * cols + j], zt.s[size_t(j) * 3 + b]);
}

TEST(Fp8Quant, NaNIsSkippedByTheAmaxAndEncodedAsNaN) {
  Vec x = randn(300, 17);
  Vec without = x;
  x[140] = kNaN;
  without[140] = 0.0f;
  for (Fp8Tiling t : kTilings) {
    const Quantized z = quantize(x, 1, 300, t), zw = quantize(without, 1, 300, t);
    EXPECT_EQ(z.q[140] & 0x7F, 0x7F);
    for (size_t i = 0; i < x.size(); ++i)
      if (i != 140) {
        ASSERT_EQ(z.q[i], zw.q[i]) << i;
      }
    EXPECT_EQ(z.s, zw.s);
  }
}

TEST(Fp8Quant, FakeQuantEqualsDequantizedQuantization) {
  for_each_quant_case(18, [](const Shape& sh, const Vec& x, Fp8Tiling t, Fp8ScaleFmt f) {
    Vec y = x;
    fp8_fake_quant(y.data(), sh.rows, sh.cols, t, f);
    const Vec want = dequantize(quantize(x, sh.rows, sh.cols, t, f), sh.rows, sh.cols, t);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_TRUE(same_float(y[i], want[i])) << i;
  });
}

// Operands large enough to be quantised on several threads give the one-thread result.
TEST(Fp8Quant, ThreadsChangeNothing) {
  const int rows = 700, cols = 333;  // partial tiles on both axes
  const Vec x = uneven(rows, cols, 19);
  const int saved = omp_get_max_threads();
  for (Fp8Tiling t : {Fp8Tiling::k1x128, Fp8Tiling::k128x1, Fp8Tiling::k128x128}) {
    SCOPED_TRACE(int(t));
    omp_set_num_threads(1);
    const Quantized one = quantize(x, rows, cols, t);
    Vec fake_one = x;
    fp8_fake_quant(fake_one.data(), rows, cols, t);
    omp_set_num_threads(2);
    const Quantized two = quantize(x, rows, cols, t);
    Vec fake_two = x;
    fp8_fake_quant(fake_two.data(), rows, cols, t);
    EXPECT_EQ(two.q, one.q);
    EXPECT_EQ(two.s, one.s);
    EXPECT_EQ(fake_two, fake_one);
  }
  omp_set_num_threads(saved);
}

// ---- FP8 GEMM ------------------------------------------------------------------------------

struct GemmCase {
  int M, N, K;
};
const GemmCase kGemmShapes[] = {{1, 1, 1},       {1, 37, 300},  {2, 19, 129},   {3, 5, 7},
                                {4, 33, 200},    {7, 19, 129},  {13, 200, 384}, {64, 256, 256},
                                {100, 130, 520}, {6, 1100, 140}};

// A [M, K] as 1×128-quantised activations and B [N, K] with the given tiling.
struct GemmOperands {
  Quantized a, b;
  Vec da, db;  // dequantised
};
GemmOperands gemm_operands(const GemmCase& g, Fp8Tiling bt, uint64_t seed) {
  GemmOperands o;
  const Vec a = uneven(g.M, g.K, seed), b = uneven(g.N, g.K, seed + 1);
  o.a = quantize(a, g.M, g.K, Fp8Tiling::k1x128);
  o.b = quantize(b, g.N, g.K, bt);
  o.da = dequantize(o.a, g.M, g.K, Fp8Tiling::k1x128);
  o.db = dequantize(o.b, g.N, g.K, bt);
  return o;
}

Vec run_fp8_gemm(const GemmOperands& o, Fp8Tiling bt, const GemmCase& g, Vec c, float beta,
                 bool reference) {
  auto* fn = reference ? ref::fp8_gemm : fp8_gemm;
  fn(o.a.q.data(), o.a.s.data(), o.b.q.data(), o.b.s.data(), bt, c.data(), g.M, g.N, g.K, beta);
  return c;
}

TEST(Fp8Gemm, FastMatchesRef) {
  for (const GemmCase& g : kGemmShapes) {
    for (Fp8Tiling bt : {Fp8Tiling::k1x128, Fp8Tiling::k128x128}) {
      const GemmOperands o = gemm_operands(g, bt, 20);
      for (float beta : {0.0f, 1.0f, 0.5f}) {
        // beta = 0 must overwrite whatever C held, NaN included.
        const Vec c0 = beta == 0.0f ? Vec(size_t(g.M) * g.N, kNaN) : randn(size_t(g.M) * g.N, 21);
        const Vec fast = run_fp8_gemm(o, bt, g, c0, beta, false);
        const Vec want = run_fp8_gemm(o, bt, g, c0, beta, true);
        EXPECT_LT(rel_err(fast, want), 1e-6)
            << g.M << "x" << g.N << "x" << g.K << " tiling " << int(bt) << " beta " << beta;
      }
    }
  }
}

// Per element, within the sum of both sides' worst-case f32 summation error: (K + 4)·2^-24 of
// Σ|a·b| each (K additions, the promotion's products and adds). Typical errors are far smaller.
void expect_within_f32_rounding(const Vec& got, const Vec& want, const Vec& da, const Vec& db,
                                const GemmCase& g) {
  for (int m = 0; m < g.M; ++m) {
    for (int n = 0; n < g.N; ++n) {
      double abs_sum = 0.0;
      for (int k = 0; k < g.K; ++k)
        abs_sum += std::fabs(double(da[size_t(m) * g.K + k]) * db[size_t(n) * g.K + k]);
      const size_t at = size_t(m) * g.N + n;
      ASSERT_LE(std::abs(double(got[at]) - want[at]), 2 * (g.K + 4) * 0x1p-24 * abs_sum + 1e-30)
          << m << "," << n;
    }
  }
}

TEST(Fp8Gemm, EqualsSgemmOnDequantizedOperands) {
  for (const GemmCase& g : kGemmShapes) {
    for (Fp8Tiling bt : {Fp8Tiling::k1x128, Fp8Tiling::k128x128}) {
      SCOPED_TRACE(testing::Message() << g.M << "x" << g.N << "x" << g.K << " tiling " << int(bt));
      const GemmOperands o = gemm_operands(g, bt, 22);
      const Vec fast = run_fp8_gemm(o, bt, g, Vec(size_t(g.M) * g.N), 0.0f, false);
      Vec sg(fast.size()), exact(fast.size());
      matmul_xwt(o.da.data(), o.db.data(), sg.data(), g.M, g.K, g.N);
      ref::matmul_xwt(o.da.data(), o.db.data(), exact.data(), g.M, g.K, g.N, 0.0f);  // double
      EXPECT_LT(rel_err(fast, sg), 1e-6);
      expect_within_f32_rounding(fast, exact, o.da, o.db, g);
      expect_within_f32_rounding(run_fp8_gemm(o, bt, g, Vec(fast.size()), 0.0f, true), exact, o.da,
                                 o.db, g);
      // Emulated FP8 training: fake-quantised operands and an ordinary sgemm give the same.
      Vec fa = uneven(g.M, g.K, 22), fb = uneven(g.N, g.K, 23), fy(fast.size());
      fp8_fake_quant(fa.data(), g.M, g.K, Fp8Tiling::k1x128);
      fp8_fake_quant(fb.data(), g.N, g.K, bt);
      EXPECT_EQ(fa, o.da);
      EXPECT_EQ(fb, o.db);
      matmul_xwt(fa.data(), fb.data(), fy.data(), g.M, g.K, g.N);
      EXPECT_EQ(fy, sg);
    }
  }
}

TEST(Fp8Gemm, BlockScalesEqualTheSameScalesPerRow) {
  // 128×128 scales for B equal 1×128 scales that repeat the block's scale on each of its rows.
  const GemmCase g{9, 300, 260};
  const GemmOperands o = gemm_operands(g, Fp8Tiling::k128x128, 24);
  const int KB = 3;
  GemmOperands per_row = o;
  per_row.b.s.resize(size_t(g.N) * KB);
  for (int n = 0; n < g.N; ++n)
    for (int kb = 0; kb < KB; ++kb)
      per_row.b.s[size_t(n) * KB + kb] = o.b.s[size_t(n / 128) * KB + kb];
  for (bool reference : {false, true}) {
    const Vec c0(size_t(g.M) * g.N);
    EXPECT_EQ(run_fp8_gemm(o, Fp8Tiling::k128x128, g, c0, 0.0f, reference),
              run_fp8_gemm(per_row, Fp8Tiling::k1x128, g, c0, 0.0f, reference));
  }
}

TEST(Fp8Gemm, PromotionAppliesEachBlocksScales) {
  // One row, two K blocks with codes 1.0 everywhere and scales 1/3 and 1000: the block sums 128
  // are exact, and C = (128·sa0)·sb0 + (128·sa1)·sb1 in f32, in that order.
  const int K = 256;
  const Bytes b(K, 0x38);  // 0x38 = 1.0
  const float a_s[2] = {1.0f / 3.0f, 1000.0f}, b_s[2] = {0.25f, 3.0f};
  const float want = 128.0f * a_s[0] * b_s[0] + 128.0f * a_s[1] * b_s[1];
  for (auto* fn : {fp8_gemm, ref::fp8_gemm}) {
    for (int M : {1, 2, 3, 4, 7}) {  // the row path (M <= 4) and the packed path
      const Bytes am(size_t(M) * K, 0x38);
      Vec as(size_t(M) * 2), c(M, kNaN);
      for (int m = 0; m < M; ++m) std::copy(a_s, a_s + 2, as.begin() + 2 * m);
      fn(am.data(), as.data(), b.data(), b_s, Fp8Tiling::k1x128, c.data(), M, 1, K, 0.0f);
      for (float v : c) EXPECT_EQ(v, want);
    }
  }
}

TEST(Fp8Gemm, NaNCodesPropagate) {
  for (int M : {1, 3, 9}) {
    const GemmCase g{M, 20, 300};
    GemmOperands o = gemm_operands(g, Fp8Tiling::k128x128, 25);
    o.b.q[size_t(5) * g.K + 200] = 0xFF;    // B row 5, second K block
    o.a.q[size_t(M - 1) * g.K + 3] = 0x7F;  // A's last row, first K block
    const Vec c = run_fp8_gemm(o, Fp8Tiling::k128x128, g, Vec(size_t(M) * g.N), 0.0f, false);
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < g.N; ++n)
        EXPECT_EQ(std::isnan(c[size_t(m) * g.N + n]), n == 5 || m == M - 1) << m << "," << n;
  }
}

TEST(Fp8Gemm, EmptyInnerDimensionScalesC) {
  Vec c = {1, 2, 3, 4};
  fp8_gemm(nullptr, nullptr, nullptr, nullptr, Fp8Tiling::k128x128, c.data(), 2, 2, 0, 0.5f);
  EXPECT_EQ(c, (Vec{0.5f, 1, 1.5f, 2}));
  c.assign(4, kNaN);
  fp8_gemm(nullptr, nullptr, nullptr, nullptr, Fp8Tiling::k128x128, c.data(), 2, 2, 0, 0.0f);
  EXPECT_EQ(c, Vec(4, 0.0f));
}

// ---- BF16 GEMM -----------------------------------------------------------------------------

struct MM {
  int N, in, out;
};
const MM kBf16Shapes[] = {{1, 1, 1},      {1, 300, 77},  {5, 129, 33}, {37, 256, 200},
                          {64, 768, 256}, {3, 64, 1000}, {50, 17, 16}, {9, 2, 48}};

float bf16_round(float v) {
  return bf16_to_f32(f32_to_bf16(v));
}

TEST(Bf16, BulkRoundingMatchesScalar) {
  Vec x = randn(100003, 29);  // not a multiple of 8, and enough for several threads
  const float specials[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, kNaN,  -kNaN,   INFINITY,
                            -INFINITY,      0x1p-130f,          -0.0f, FLT_MAX, 0x1.fffffep-1f};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 7] = specials[i];
  Vec y(x.size());
  seekr::bf16_round(x.data(), y.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(y[i]),
              std::bit_cast<uint32_t>(bf16_to_f32(f32_to_bf16(x[i]))))
        << i << " " << x[i];
  seekr::bf16_round(x.data(), x.data(), int64_t(x.size()));  // in place
  EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin(), [](float a, float b) {
    return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
  }));
}

TEST(Bf16, PackedWeightsHoldTheRoundedValues) {
  const int out = 37, in = 19;
  Vec w = randn(size_t(out) * in, 30);
  w[0] = 1.0f + 0x1p-8f;      // tie between 1 and 1 + 2^-7: to even, 1
  w[1] = 1.0f + 3 * 0x1p-8f;  // tie between 1 + 2^-7 and 1 + 2^-6: to even, 1 + 2^-6
  w[2] = kNaN;
  const Bf16Weights p = bf16_pack_weights(w.data(), out, in);
  EXPECT_EQ(p.data.size(), size_t(3) * 10 * 16);  // ceil(37/16) tiles × ceil(19/2) pairs × 16
  Vec back(w.size());
  bf16_unpack_weights(p, back.data());
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], 1.0f + 0x1p-6f);
  EXPECT_TRUE(std::isnan(back[2]));
  for (size_t i = 3; i < w.size(); ++i) ASSERT_EQ(back[i], bf16_round(w[i])) << i;
  // Outside [out, in] the tiles are zero: rows 37..47 and the odd column's partner.
  size_t nonzero = 0;
  for (uint32_t v : p.data) nonzero += (v & 0xffff) != 0, nonzero += (v >> 16) != 0;
  EXPECT_EQ(nonzero, w.size());
}

// Runs impl and the reference on every shape, with beta = 0 (y starting as NaN, which must be
// overwritten) and beta = 1, and hands both results to check.
template <class Check>
void compare_with_ref(void (*impl)(const F32Matrix&, const Bf16Weights&, float*, float),
                      uint64_t seed, Check check) {
  for (const MM& s : kBf16Shapes) {
    const Vec x = randn(size_t(s.N) * s.in, seed), w = randn(size_t(s.out) * s.in, seed + 1);
    const Bf16Weights p = bf16_pack_weights(w.data(), s.out, s.in);
    for (float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE(testing::Message() << s.N << "x" << s.in << "x" << s.out << " beta " << beta);
      Vec y = beta == 0.0f ? Vec(size_t(s.N) * s.out, kNaN) : randn(size_t(s.N) * s.out, seed + 2);
      Vec want = y;
      impl(F32Matrix{x.data(), s.N, s.in, s.in, 1}, p, y.data(), beta);
      ref::bf16_matmul_xwt(x.data(), w.data(), want.data(), s.N, s.in, s.out, beta);
      check(y, want);
    }
  }
}

TEST(Bf16, Avx2MatchesRefBitForBit) {
  // Both sum the exact f32 products one by one in k order.
  compare_with_ref(bf16_matmul_xwt_avx2, 31,
                   [](const Vec& y, const Vec& want) { EXPECT_EQ(y, want); });
}

TEST(Bf16, Avx2WithOtherBetaAndSgemmOnRoundedOperands) {
  for (const MM& s : kBf16Shapes) {
    const Vec x = randn(size_t(s.N) * s.in, 34), w = randn(size_t(s.out) * s.in, 35);
    const Bf16Weights p = bf16_pack_weights(w.data(), s.out, s.in);
    Vec y = randn(size_t(s.N) * s.out, 36), want = y;
    bf16_matmul_xwt_avx2(F32Matrix{x.data(), s.N, s.in, s.in, 1}, p, y.data(), 0.5f);
    ref::bf16_matmul_xwt(x.data(), w.data(), want.data(), s.N, s.in, s.out, 0.5f);
    EXPECT_LT(rel_err(y, want), 1e-6) << s.N << "x" << s.in << "x" << s.out;
    // It is an f32 product of the bf16-rounded operands.
    Vec xr = x, wr = w, ys(size_t(s.N) * s.out), yb(ys.size());
    for (float& v : xr) v = bf16_round(v);
    for (float& v : wr) v = bf16_round(v);
    matmul_xwt(xr.data(), wr.data(), ys.data(), s.N, s.in, s.out);
    bf16_matmul_xwt_avx2(F32Matrix{x.data(), s.N, s.in, s.in, 1}, p, yb.data(), 0.0f);
    EXPECT_LT(rel_err(yb, ys), 1e-6) << s.N << "x" << s.in << "x" << s.out;
  }
}

TEST(Bf16, RoundsBothOperandsBeforeMultiplying) {
  const float x[2] = {1.0f + 0x1p-8f, 2.0f}, w[2] = {1.0f + 3 * 0x1p-8f, 0x1p-9f};
  float y = kNaN;
  bf16_matmul_xwt(x, w, &y, 1, 2, 1);
  EXPECT_EQ(y, 1.0f * (1.0f + 0x1p-6f) + 2.0f * 0x1p-9f);
}

TEST(Bf16, DispatchAndFloatOverloadAgree) {
  const MM s{20, 100, 70};
  const Vec x = randn(size_t(s.N) * s.in, 37), w = randn(size_t(s.out) * s.in, 38);
  const Bf16Weights p = bf16_pack_weights(w.data(), s.out, s.in);
  Vec y1(size_t(s.N) * s.out), y2(y1.size()), y3(y1.size());
  bf16_matmul_xwt(x.data(), p, y1.data(), s.N);
  bf16_matmul_xwt(x.data(), w.data(), y2.data(), s.N, s.in, s.out);
  EXPECT_EQ(y1, y2);
  if (cpu_has_avx512bf16()) {
    bf16_matmul_xwt_avx512(F32Matrix{x.data(), s.N, s.in, s.in, 1}, p, y3.data(), 0.0f);
  } else {
    bf16_matmul_xwt_avx2(F32Matrix{x.data(), s.N, s.in, s.in, 1}, p, y3.data(), 0.0f);
  }
  EXPECT_EQ(y1, y3);
}

TEST(Bf16, EmptyInnerDimensionScalesY) {
  const Bf16Weights p = bf16_pack_weights(nullptr, 2, 0);
  Vec y = {1, 2, 3, 4};
  bf16_matmul_xwt(nullptr, p, y.data(), 2, 0.5f);
  EXPECT_EQ(y, (Vec{0.5f, 1, 1.5f, 2}));
  y.assign(4, kNaN);
  bf16_matmul_xwt(nullptr, p, y.data(), 2, 0.0f);
  EXPECT_EQ(y, Vec(4, 0.0f));
}

// m transposed into a fresh row-major copy: [cols, rows].
Vec transposed(const Vec& m, int rows, int cols) {
  Vec t(m.size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[size_t(c) * rows + r] = m[size_t(r) * cols + c];
  return t;
}

// Packing reads row-major, transposed (rows adjacent: the AVX2 path for 8 rows at a time) and
// arbitrarily strided sources into the same tiles, rounding ties to even and keeping NaN.
TEST(Bf16, PackingFromTransposedAndStridedSources) {
  for (const MM& s : kBf16Shapes) {
    SCOPED_TRACE(testing::Message() << s.out << "x" << s.in);
    Vec w = randn(size_t(s.out) * s.in, 40);
    w[0] = 1.0f + 0x1p-8f;
    w.back() = kNaN;
    const Bf16Weights want = bf16_pack_weights(w.data(), s.out, s.in);
    // The transposed copy, read back through strides.
    const Vec wt = transposed(w, s.out, s.in);  // [in, out]
    Bf16Weights got;
    bf16_pack_weights(F32Matrix{wt.data(), s.out, s.in, 1, s.out}, got);
    EXPECT_EQ(got.data, want.data);
    // Every element two floats apart (neither stride 1: the scalar path).
    Vec spread(w.size() * 2, 7.0f);
    for (size_t i = 0; i < w.size(); ++i) spread[2 * i] = w[i];
    bf16_pack_weights(F32Matrix{spread.data(), s.out, s.in, 2 * s.in, 2}, got);
    EXPECT_EQ(got.data, want.data);
  }
}

// A transposed x gives the row-major result bit for bit, and splitting a product over threads
// (row blocks, or tiles when rows are few) changes no sum: each output is one kernel's.
TEST(Bf16, StridedInputAndThreadsChangeNothing) {
  const MM shapes[] = {{300, 256, 200}, {7, 1024, 1536}, {61, 77, 1000}};
  const int saved = omp_get_max_threads();
  for (const MM& s : shapes) {
    SCOPED_TRACE(testing::Message() << s.N << "x" << s.in << "x" << s.out);
    const Vec x = randn(size_t(s.N) * s.in, 41), w = randn(size_t(s.out) * s.in, 42);
    const Bf16Weights p = bf16_pack_weights(w.data(), s.out, s.in);
    omp_set_num_threads(1);
    Vec one(size_t(s.N) * s.out), two(one.size()), strided(one.size());
    bf16_matmul_xwt(x.data(), p, one.data(), s.N);
    omp_set_num_threads(2);
    bf16_matmul_xwt(x.data(), p, two.data(), s.N);
    EXPECT_EQ(two, one);
    const Vec xt = transposed(x, s.N, s.in);
    bf16_matmul_xwt(F32Matrix{xt.data(), s.N, s.in, 1, s.N}, p, strided.data());
    EXPECT_EQ(strided, one);
    Vec want(one.size());
    ref::bf16_matmul_xwt(x.data(), w.data(), want.data(), s.N, s.in, s.out, 0.0f);
    if (cpu_has_avx512bf16()) {
      EXPECT_LT(rel_err(one, want), 1e-6);  // vdpbf16ps adds each pair in its own order
    } else {
      EXPECT_EQ(one, want);
    }
  }
  omp_set_num_threads(saved);
}

TEST(Bf16, Avx512MatchesRef) {
  if (!cpu_has_avx512bf16())
    GTEST_SKIP() << "this CPU lacks AVX-512 BF16 (avx512bf16): the vdpbf16ps kernel is built "
                    "but cannot run here";
  // Pairs of products are added in the instruction's own order: f32 rounding apart.
  compare_with_ref(bf16_matmul_xwt_avx512, 39,
                   [](const Vec& y, const Vec& want) { EXPECT_LT(rel_err(y, want), 1e-6); });
}

}  // namespace
}  // namespace seekr
