// Internal SIMD helpers shared by the kernel .cpp files (not part of the ops.h contract).
//
// AVX2 + FMA, 8 lanes: the build VM reports no AVX-512 (-march=native resolves to znver3), and
// Zen 4 executes 512-bit ops as two 256-bit halves, so 256-bit code loses little there. Every
// loop is "vector body + scalar tail"; the tail loop is also the whole path when AVX2 is off.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SEEKR_AVX2 1
#else
#define SEEKR_AVX2 0
#endif

namespace seekr::simd {

#if SEEKR_AVX2
// exp(x) for 8 lanes: x = n·ln2 + r with |r| <= ln2/2, Cephes' expf polynomial for e^r
// (~1 ulp), and 2^n built in the exponent field. Inputs are clamped to [-87.3, 88.3] so n stays a
// normal exponent: below, the result is ~1e-38 instead of a denormal or 0, which no caller can
// tell apart after a sum or a product. NaN is kept (it is the second operand of min/max).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x);
  x = _mm256_min_ps(_mm256_set1_ps(88.37626f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// 1 / (1 + exp(-x))
inline __m256 sigmoid_ps(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

inline float sigmoid(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

// max over x[0..n)
inline float max(const float* x, int64_t n) {
  float m = -INFINITY;
  int64_t i = 0;
#if SEEKR_AVX2
  if (n >= 8) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    m = hmax(vm);
  }
#endif
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Σ exp(x[i] - shift): float lanes, one double for the total.
inline double sum_exp(const float* x, int64_t n, float shift) {
  double s = 0.0;
  int64_t i = 0;
#if SEEKR_AVX2
  const __m256 vs = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8)
    acc = _mm256_add_ps(acc, exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs)));
  s = hsum(acc);
#endif
  for (; i < n; ++i) s += std::exp(x[i] - shift);
  return s;
}

// y[i] = exp(x[i] - shift), returning Σ y[i] (y may alias x). Softmax-style callers store the
// exponentials once and rescale with scale() instead of evaluating exp twice per element.
inline double exp_store_sum(const float* x, float* y, int64_t n, float shift) {
  double s = 0.0;
  int64_t i = 0;
#if SEEKR_AVX2
  const __m256 vs = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  s = hsum(acc);
#endif
  for (; i < n; ++i) s += (y[i] = std::exp(x[i] - shift));
  return s;
}

// y[i] *= a
inline void scale(float* y, int64_t n, float a) {
  int64_t i = 0;
#if SEEKR_AVX2
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), va));
#endif
  for (; i < n; ++i) y[i] *= a;
}

// y[i] += a·x[i]
inline void axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if SEEKR_AVX2
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] += a * x[i];
}

// out[k] = Σ q[k][i]·x[i] for k = 0..3: four independent accumulation chains share each load
// of x, and one horizontal-add tree reduces all four (decode attention: four heads per row).
inline void dot4(const float* const q[4], const float* x, int64_t n, float out[4]) {
  int64_t i = 0;
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#if SEEKR_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q[0] + i), v, a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q[1] + i), v, a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q[2] + i), v, a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q[3] + i), v, a3);
  }
  // hadd pairs lanes within 128-bit halves: [a0 a0 a1 a1 | ...] then [a0 a1 a2 a3 | ...].
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
#endif
  for (; i < n; ++i)
    for (int k = 0; k < 4; ++k) s[k] += q[k][i] * x[i];
  for (int k = 0; k < 4; ++k) out[k] = s[k];
}

// Σ x[i]·y[i]
inline float dot(const float* x, const float* y, int64_t n) {
  float s = 0.0f;
  int64_t i = 0;
#if SEEKR_AVX2
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
  s = hsum(acc);
#endif
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

}  // namespace seekr::simd
