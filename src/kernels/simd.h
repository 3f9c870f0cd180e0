// Internal AVX-512 helpers shared by the kernel .cpp files (not part of the ops.h contract).
// Every helper has a scalar fallback so the library still builds without -march=native.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#define SEEKR_AVX512 1
#else
#define SEEKR_AVX512 0
#endif

namespace seekr::simd {

#if SEEKR_AVX512
// exp(x) for 16 lanes: x = n·ln2 + r with |r| <= ln2/2, a degree-7 polynomial for e^r (Cephes
// expf coefficients, ~1 ulp), and scalef for 2^n so huge/tiny inputs saturate to inf/0 without
// integer-exponent overflow tricks.
inline __m512 exp_ps(__m512 x) {
  // Below -104 the result is 0 in fp32 anyway; clamping keeps -inf from turning into NaN in the
  // range reduction (-inf - -inf).
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(89.0f));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// Mask selecting the first `rem` lanes (rem in [0, 16]).
inline __mmask16 tail_mask(int64_t rem) {
  return rem >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << rem) - 1u);
}
#endif

// max over x[0..n)
inline float max(const float* x, int64_t n) {
  float m = -INFINITY;
  int64_t i = 0;
#if SEEKR_AVX512
  __m512 vm = _mm512_set1_ps(-INFINITY);
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
  m = _mm512_reduce_max_ps(vm);
#endif
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Σ exp(x[i] - shift), accumulated in float lanes then reduced in double.
inline double sum_exp(const float* x, int64_t n, float shift) {
  double s = 0.0;
  int64_t i = 0;
#if SEEKR_AVX512
  const __m512 vs = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
  }
  s = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) s += std::exp(x[i] - shift);
  return s;
}

// y[i] = exp(x[i] - shift) * mul (y may alias x).
inline void exp_scale(const float* x, float* y, int64_t n, float shift, float mul) {
  int64_t i = 0;
#if SEEKR_AVX512
  const __m512 vs = _mm512_set1_ps(shift), vmul = _mm512_set1_ps(mul);
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(e, vmul));
  }
#endif
  for (; i < n; ++i) y[i] = std::exp(x[i] - shift) * mul;
}

// Σ x[i]·y[i] with float lanes.
inline float dot(const float* x, const float* y, int64_t n) {
  float s = 0.0f;
  int64_t i = 0;
#if SEEKR_AVX512
  __m512 acc = _mm512_setzero_ps();
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), acc);
  }
  s = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

}  // namespace seekr::simd
