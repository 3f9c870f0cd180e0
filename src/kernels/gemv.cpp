// Few-row matrix products (gemv.h): the weight rows streamed one at a time, each load serving
// all rows of x, two 8-lane accumulators per (row of x, weight row).
#include "kernels/gemv.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "kernels/simd.h"

namespace seekr {

namespace {

// Stores output (i, j): adds the scalar tail t0..in of its dot product to the vector part v.
inline void finish(float v, const float* x, const float* w, int t0, int in, float* y, float beta) {
  for (int t = t0; t < in; ++t) v = std::fma(w[t], x[t], v);
  *y = beta == 0.0f ? v : v + beta * *y;
}

#if SEEKR_AVX2
// The 8-lane part of weight row w's dot products with N rows of x: two accumulators per row of
// x (the even and the odd 8-float blocks), summed at the end. One weight row is read at a time,
// front to back: a single sequential stream is what the memory system serves fastest (several
// rows side by side measured 30-40% slower from DRAM and 3-5x slower from L3).
template <int N>
inline void row_dot(const float* x, int ldx, const float* w, int in, __m256 out[N]) {
  __m256 a0[N], a1[N];
#pragma GCC unroll 4
  for (int i = 0; i < N; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
  int t = 0;
  for (; t + 16 <= in; t += 16) {
    const __m256 w0 = _mm256_loadu_ps(w + t), w1 = _mm256_loadu_ps(w + t + 8);
#pragma GCC unroll 4
    for (int i = 0; i < N; ++i) {
      a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + size_t(i) * ldx + t), a0[i]);
      a1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + size_t(i) * ldx + t + 8), a1[i]);
    }
  }
  if (t + 8 <= in) {
    const __m256 w0 = _mm256_loadu_ps(w + t);
#pragma GCC unroll 4
    for (int i = 0; i < N; ++i)
      a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + size_t(i) * ldx + t), a0[i]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < N; ++i) out[i] = _mm256_add_ps(a0[i], a1[i]);
}
#endif

// Outputs j .. j+m-1 (m <= 4) for N rows of x: the m weight rows one after another, then one
// horizontal-add tree reduces the four accumulators of each row of x (zeros for missing rows:
// each output's lanes are summed in the same order whatever m is), then the scalar tails.
template <int N>
void quad(const float* x, int ldx, const float* w, int in, int m, float* y, int ldy, float beta) {
  const int tv = in - in % 8;  // floats in the vector part
  float s[N][4] = {};
#if SEEKR_AVX2
  __m256 acc[4][N];
  for (int r = 0; r < 4; ++r) {
    if (r < m) {
      row_dot<N>(x, ldx, w + size_t(r) * in, in, acc[r]);
    } else {
#pragma GCC unroll 4
      for (int i = 0; i < N; ++i) acc[r][i] = _mm256_setzero_ps();
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < N; ++i) {
    const __m256 h =
        _mm256_hadd_ps(_mm256_hadd_ps(acc[0][i], acc[1][i]), _mm256_hadd_ps(acc[2][i], acc[3][i]));
    _mm_storeu_ps(s[i], _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
#else
  // Without AVX2 the "vector part" is empty and every product is the scalar tail.
  (void)tv;
#endif
  for (int i = 0; i < N; ++i)
    for (int r = 0; r < m; ++r)
      finish(s[i][r], x + size_t(i) * ldx, w + size_t(r) * in, SEEKR_AVX2 ? tv : 0, in,
             y + size_t(i) * ldy + r, beta);
}

template <int N>
void rows(const float* x, int ldx, const float* w, int in, int j0, int j1, float* y, int ldy,
          float beta) {
  for (int j = j0; j < j1; j += 4)
    quad<N>(x, ldx, w + size_t(j) * in, in, std::min(4, j1 - j), y + j, ldy, beta);
}

}  // namespace

void swiglu_lanes(const float* g, const float* u, float* a, int m) {
  SEEKR_CHECK(m >= 0 && m <= 8, "swiglu_lanes: ", m, " values");
#if SEEKR_AVX2
  float gb[8] = {}, ub[8] = {}, ab[8];
  std::copy(g, g + m, gb);
  std::copy(u, u + m, ub);
  const __m256 vg = _mm256_loadu_ps(gb);
  _mm256_storeu_ps(ab, _mm256_mul_ps(_mm256_mul_ps(vg, simd::sigmoid_ps(vg)), _mm256_loadu_ps(ub)));
  std::copy(ab, ab + m, a);
#else
  for (int k = 0; k < m; ++k) a[k] = g[k] * simd::sigmoid(g[k]) * u[k];
#endif
}

void gemv_xwt(const float* x, int ldx, const float* w, int in, int out, int j0, int j1, float* y,
              int ldy, int n, float beta) {
  SEEKR_CHECK(0 <= j0 && j0 <= j1 && j1 <= out, "gemv_xwt: rows ", j0, "..", j1, " of ", out);
  switch (n) {
    case 0:
      return;
    case 1:
      return rows<1>(x, ldx, w, in, j0, j1, y, ldy, beta);
    case 2:
      return rows<2>(x, ldx, w, in, j0, j1, y, ldy, beta);
    case 3:
      return rows<3>(x, ldx, w, in, j0, j1, y, ldy, beta);
  }
  SEEKR_CHECK(false, "gemv_xwt: ", n, " rows");
}

void gemv_swiglu(const float* x, int ldx, const float* gate, const float* up, int in, int out,
                 int j0, int j1, float* a, int lda, int n) {
  // Chunks of 32 output rows: both products into the stack, then the activation.
  constexpr int C = 32;
  float g[kGemvMaxRows][C], u[kGemvMaxRows][C];
  SEEKR_CHECK(n >= 0 && n <= kGemvMaxRows, "gemv_swiglu: ", n, " rows");
  for (int c0 = j0; c0 < j1; c0 += C) {
    const int c1 = std::min(j1, c0 + C), m = c1 - c0;
    gemv_xwt(x, ldx, gate + size_t(c0) * in, in, out - c0, 0, m, g[0], C, n);
    gemv_xwt(x, ldx, up + size_t(c0) * in, in, out - c0, 0, m, u[0], C, n);
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < m; k += 8)
        swiglu_lanes(g[i] + k, u[i] + k, a + size_t(i) * lda + c0 + k, std::min(8, m - k));
  }
}

namespace ref {
void gemv_xwt(const float* x, int ldx, const float* w, int in, int out, float* y, int ldy, int n,
              float beta) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < out; ++j) {
      double s = 0;
      for (int t = 0; t < in; ++t) s += double(x[size_t(i) * ldx + t]) * w[size_t(j) * in + t];
      float& o = y[size_t(i) * ldy + j];
      o = static_cast<float>(beta == 0.0f ? s : s + double(beta) * o);
    }
}
}  // namespace ref

}  // namespace seekr
