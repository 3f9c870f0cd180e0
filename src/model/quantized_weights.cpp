#include "model/quantized_weights.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "kernels/fp8.h"
#include "kernels/gemv.h"
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

// y[i, r - yoff] for weight row r and N activation rows. The row is streamed front to back, one
// sequential stream as gemv_xwt reads FP32 rows (reading four rows side by side ran at a third
// of this speed): each 16 codes are decoded once, multiplied by their block scale (value/256 ·
// 256·s is exactly the dequantised weight: both factors are exact, so the one rounding is that
// of e4m3·s) and FMA'd into two accumulators per row of x (codes 0-7 and 8-15 of each 16).
// Every output's operations depend only on its own row of w and of x, never on N or on which
// rows are computed with it.
template <int N>
void fused_row(const float* x, int ldx, const Fp8Matrix& w, int r, float* y, int ldy, float beta,
               int yoff) {
  const int in = w.cols, nkb = (in + kB - 1) / kB;
  const uint8_t* codes = w.codes.data() + size_t(r) * in;          // [in]
  const float* scale = w.scale_inv.data() + size_t(r / kB) * nkb;  // [nkb]
  float tail[N] = {};
#if SEEKR_FP8_DOT_SIMD
  __m256 a0[N], a1[N];
#pragma GCC unroll 4
  for (int i = 0; i < N; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
#endif
  for (int kb = 0; kb < nkb; ++kb) {
    const int c0 = kb * kB, c1 = std::min(in, c0 + kB);
    const float s = scale[kb];
    int t = c0;
#if SEEKR_FP8_DOT_SIMD
    const __m256 sv = _mm256_set1_ps(s * 256.0f);
    for (; t + 16 <= c1; t += 16) {
      __m256 lo, hi;
      decode16_div256(codes + t, lo, hi);
      lo = _mm256_mul_ps(lo, sv);
      hi = _mm256_mul_ps(hi, sv);
#pragma GCC unroll 4
      for (int i = 0; i < N; ++i) {
        a0[i] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + size_t(i) * ldx + t), a0[i]);
        a1[i] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + size_t(i) * ldx + t + 8), a1[i]);
      }
    }
#endif
    for (; t < c1; ++t) {
      const float wt = e4m3_to_f32(codes[t]) * s;
#pragma GCC unroll 4
      for (int i = 0; i < N; ++i) tail[i] = std::fma(wt, x[size_t(i) * ldx + t], tail[i]);
    }
  }
  for (int i = 0; i < N; ++i) {
    float v = tail[i];
#if SEEKR_FP8_DOT_SIMD
    v += simd::hsum(_mm256_add_ps(a0[i], a1[i]));
#endif
    float& out = y[size_t(i) * ldy + r - yoff];
    out = beta == 0.0f ? v : v + beta * out;
  }
}

// Weight rows [j0, j1), row r's outputs at column r - yoff of y.
template <int N>
void fused_range(const float* x, int ldx, const Fp8Matrix& w, int j0, int j1, float* y, int ldy,
                 float beta, int yoff = 0) {
  for (int r = j0; r < j1; ++r) fused_row<N>(x, ldx, w, r, y, ldy, beta, yoff);
}

void fused_range_n(int n, const float* x, int ldx, const Fp8Matrix& w, int j0, int j1, float* y,
                   int ldy, float beta, int yoff) {
  switch (n) {
    case 0:
      return;
    case 1:
      return fused_range<1>(x, ldx, w, j0, j1, y, ldy, beta, yoff);
    case 2:
      return fused_range<2>(x, ldx, w, j0, j1, y, ldy, beta, yoff);
    case 3:
      return fused_range<3>(x, ldx, w, j0, j1, y, ldy, beta, yoff);
  }
  SEEKR_CHECK(false, "fp8 few-row product: ", n, " rows");
}

template <int N>
void fused_rows(const float* x, int ldx, const Fp8Matrix& w, float* y, int ldy, float beta) {
  const int groups = (w.rows + 3) / 4;
#pragma omp parallel for schedule(static) if (int64_t(w.rows) * w.cols >= kParallelMinElems)
  for (int g = 0; g < groups; ++g)
    fused_range<N>(x, ldx, w, 4 * g, std::min(w.rows, 4 * g + 4), y, ldy, beta);
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

void fp8_gemv_rows(const float* x, int ldx, const Fp8Matrix& w, int j0, int j1, float* y, int ldy,
                   int n, float beta) {
  SEEKR_CHECK(0 <= j0 && j0 <= j1 && j1 <= w.rows, "fp8_gemv_rows: rows ", j0, "..", j1, " of ",
              w.rows);
  fused_range_n(n, x, ldx, w, j0, j1, y, ldy, beta, 0);
}

void fp8_gemv_swiglu(const float* x, int ldx, const Fp8Matrix& gate, const Fp8Matrix& up, int j0,
                     int j1, float* a, int lda, int n) {
  SEEKR_CHECK(gate.rows == up.rows && gate.cols == up.cols, "fp8_gemv_swiglu: gate ", gate.rows,
              "x", gate.cols, " and up ", up.rows, "x", up.cols);
  SEEKR_CHECK(n >= 0 && n <= kFewRows && 0 <= j0 && j0 <= j1 && j1 <= gate.rows,
              "fp8_gemv_swiglu: ", n, " rows, outputs ", j0, "..", j1, " of ", gate.rows);
  // Chunks of 32 output rows: both products into the stack, then the activation.
  constexpr int C = 32;
  float g[kFewRows][C], u[kFewRows][C];
  for (int c0 = j0; c0 < j1; c0 += C) {
    const int c1 = std::min(j1, c0 + C), m = c1 - c0;
    fused_range_n(n, x, ldx, gate, c0, c1, g[0], C, 0.0f, c0);  // row c0 in column 0
    fused_range_n(n, x, ldx, up, c0, c1, u[0], C, 0.0f, c0);
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < m; k += 8)
        swiglu_lanes(g[i] + k, u[i] + k, a + size_t(i) * lda + c0 + k, std::min(8, m - k));
  }
}

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
