#include "model/quantized_weights.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "kernels/fp8.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

#if SEEKR_AVX2 && defined(__F16C__)
#define SEEKR_FP8_DOT_SIMD 1
#else
#define SEEKR_FP8_DOT_SIMD 0
#endif

namespace seekr {

Fp8WeightMode parse_fp8_weight_mode(std::string_view s) {
  if (s == "keep") return Fp8WeightMode::kKeep;
  if (s == "dequantize") return Fp8WeightMode::kDequantize;
  throw Error(str_cat("unknown FP8 weight mode '", s, "' (expected keep or dequantize)"));
}

const char* fp8_weight_mode_name(Fp8WeightMode m) {
  return m == Fp8WeightMode::kKeep ? "keep" : "dequantize";
}

void Fp8LinearWeights::add(const float* slot, Fp8Matrix m) {
  SEEKR_CHECK(m.codes.size() == size_t(m.rows) * m.cols, "FP8 weight codes do not match its shape");
  bytes_ += m.bytes();
  f32_bytes_ += m.codes.size() * sizeof(float);
  const bool fresh = map_.emplace(slot, std::move(m)).second;
  SEEKR_CHECK(fresh, "FP8 weight added twice for one slot");
}

const Fp8Matrix* Fp8LinearWeights::find(const float* slot) const {
  const auto it = map_.find(slot);
  return it == map_.end() ? nullptr : &it->second;
}

namespace {

constexpr int kB = kFp8Block;
// As the FP32 path in inference.cpp: up to this many rows are row-by-row products.
constexpr int kFewRows = 3;
// Smaller weights are not worth waking the thread team for.
constexpr int64_t kParallelMinElems = int64_t{1} << 16;

#if SEEKR_FP8_DOT_SIMD
// 16 E4M3 codes as floats of value / 256 (lo: codes 0..7, hi: 8..15). S.EEEE.MMM with
// EEEE.MMM put at half-precision bits 13..7 and S at bit 15 is a half with the same exponent
// field and mantissa: the bias is 15 instead of 7, hence the 2^-8, and subnormals map to
// subnormals. The NaN codes (S.1111.111) would be finite halves, so they get the half's
// all-ones exponent and stay NaN. 16 at a time: decoding, not memory, bounds a decode step.
inline void decode16_div256(const uint8_t* p, __m256& lo, __m256& hi) {
  const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i mag = _mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x7F)), 7);
  const __m256i sign = _mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x80)), 8);
  const __m256i nan = _mm256_cmpeq_epi16(mag, _mm256_set1_epi16(0x3F80));
  const __m256i h =
      _mm256_or_si256(_mm256_or_si256(mag, sign), _mm256_and_si256(nan, _mm256_set1_epi16(0x7C00)));
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}
#endif

// y[i, r0 + r] for R weight rows from r0 and N activation rows. Each weight vector is decoded
// once, multiplied by its block scale (value/256 · 256·s is exactly the dequantised weight:
// both factors are exact, so the one rounding is that of e4m3·s) and FMA'd into N·R
// independent accumulators. Every output's operations depend only on its own rows, never on N
// or R.
template <int N, int R>
void fused_tile(const float* x, int ldx, const Fp8Matrix& w, int r0, float* y, int ldy,
                float beta) {
  const int in = w.cols, nkb = (in + kB - 1) / kB;
  const uint8_t* codes = w.codes.data() + size_t(r0) * in;  // [R, in]
  float tail[N][R] = {};
#if SEEKR_FP8_DOT_SIMD
  __m256 acc[N][R];
  for (int i = 0; i < N; ++i)
    for (int r = 0; r < R; ++r) acc[i][r] = _mm256_setzero_ps();
#endif
  for (int kb = 0; kb < nkb; ++kb) {
    const int c0 = kb * kB, c1 = std::min(in, c0 + kB);
    float s[R];
    for (int r = 0; r < R; ++r) s[r] = w.scale_inv[size_t((r0 + r) / kB) * nkb + kb];
    int t = c0;
#if SEEKR_FP8_DOT_SIMD
    __m256 sv[R];
    for (int r = 0; r < R; ++r) sv[r] = _mm256_set1_ps(s[r] * 256.0f);
    for (; t + 16 <= c1; t += 16) {
      __m256 lo[R], hi[R];
      for (int r = 0; r < R; ++r) {
        decode16_div256(codes + size_t(r) * in + t, lo[r], hi[r]);
        lo[r] = _mm256_mul_ps(lo[r], sv[r]);
        hi[r] = _mm256_mul_ps(hi[r], sv[r]);
      }
      for (int i = 0; i < N; ++i) {
        const __m256 xlo = _mm256_loadu_ps(x + size_t(i) * ldx + t);
        const __m256 xhi = _mm256_loadu_ps(x + size_t(i) * ldx + t + 8);
        for (int r = 0; r < R; ++r)
          acc[i][r] = _mm256_fmadd_ps(hi[r], xhi, _mm256_fmadd_ps(lo[r], xlo, acc[i][r]));
      }
    }
#endif
    for (; t < c1; ++t)
      for (int r = 0; r < R; ++r) {
        const float wt = e4m3_to_f32(codes[size_t(r) * in + t]) * s[r];
        for (int i = 0; i < N; ++i) tail[i][r] = std::fma(wt, x[size_t(i) * ldx + t], tail[i][r]);
      }
  }
  for (int i = 0; i < N; ++i)
    for (int r = 0; r < R; ++r) {
      float v = tail[i][r];
#if SEEKR_FP8_DOT_SIMD
      v += simd::hsum(acc[i][r]);
#endif
      float& out = y[size_t(i) * ldy + r0 + r];
      out = beta == 0.0f ? v : v + beta * out;
    }
}

template <int N>
void fused_rows(const float* x, int ldx, const Fp8Matrix& w, float* y, int ldy, float beta) {
  const int groups = (w.rows + 3) / 4;
#pragma omp parallel for schedule(static) if (int64_t(w.rows) * w.cols >= kParallelMinElems)
  for (int g = 0; g < groups; ++g) {
    const int r0 = 4 * g;
    if (r0 + 4 <= w.rows) {
      fused_tile<N, 4>(x, ldx, w, r0, y, ldy, beta);
    } else {
      for (int r = r0; r < w.rows; ++r) fused_tile<N, 1>(x, ldx, w, r, y, ldy, beta);
    }
  }
}

// Prefill: a GEMM reuses each weight across many rows, so dequantising a 128-row block once
// into cache-sized scratch and handing it to sgemm beats decoding inside the dot products.
void panel_rows(const float* x, int ldx, const Fp8Matrix& w, float* y, int ldy, int n, float beta) {
  thread_local std::vector<float> panel;  // [128, cols], per thread, only grows
  const int nkb = (w.cols + kB - 1) / kB;
  if (panel.size() < size_t(kB) * w.cols) panel.resize(size_t(kB) * w.cols);
  for (int r0 = 0; r0 < w.rows; r0 += kB) {
    const int rb = std::min(kB, w.rows - r0);
    fp8_dequantize(w.codes.data() + size_t(r0) * w.cols, w.scale_inv.data() + size_t(r0 / kB) * nkb,
                   panel.data(), rb, w.cols, Fp8Tiling::k128x128);
    gemm(false, true, n, rb, w.cols, 1.0f, x, ldx, panel.data(), w.cols, beta, y + r0, ldy);
  }
}

}  // namespace

void fp8_linear(const float* x, int ldx, const Fp8Matrix& w, float* y, int ldy, int n, float beta) {
  switch (n) {
    case 0:
      return;
    case 1:
      return fused_rows<1>(x, ldx, w, y, ldy, beta);
    case 2:
      return fused_rows<2>(x, ldx, w, y, ldy, beta);
    case 3:
      return fused_rows<3>(x, ldx, w, y, ldy, beta);
  }
  static_assert(kFewRows == 3, "the cases above cover 1..kFewRows rows");
  panel_rows(x, ldx, w, y, ldy, n, beta);
}

}  // namespace seekr
