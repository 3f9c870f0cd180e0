// Fast kernels: OpenBLAS for the matrix products, AVX-512 for the row-wise ops. The scalar
// references live in ops_ref.cpp; tests/test_kernels.cpp holds the two together.
#include "kernels/ops.h"

#include <cblas.h>

#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/simd.h"

namespace seekr {

// ---- matrix products ---------------------------------------------------------------------

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  SEEKR_CHECK(M >= 0 && N >= 0 && K >= 0, "M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // OpenBLAS rejects lda = 0 (xerbla) even though the product is empty: C = beta·C.
    for (int i = 0; i < M; ++i) {
      float* c = C + static_cast<int64_t>(i) * ldc;
      for (int j = 0; j < N; ++j) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out, float beta) {
  gemm(false, true, N, out, in, 1.0f, x, in, w, in, beta, y, out);
}

void matmul_dy_w(const float* dy, const float* w, float* dx, int N, int in, int out, float beta) {
  gemm(false, false, N, in, out, 1.0f, dy, out, w, in, beta, dx, in);
}

void matmul_dyt_x(const float* dy, const float* x, float* dw, int N, int in, int out) {
  gemm(true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
}

// ---- RMSNorm -----------------------------------------------------------------------------

void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int N, int d,
                     float eps) {
  for (int n = 0; n < N; ++n) {
    const float* xr = x + static_cast<int64_t>(n) * d;
    float* yr = y + static_cast<int64_t>(n) * d;
    const float r = 1.0f / std::sqrt(simd::dot(xr, xr, d) / static_cast<float>(d) + eps);
    rstd[n] = r;
    int j = 0;
#if SEEKR_AVX512
    const __m512 vr = _mm512_set1_ps(r);
    for (; j < d; j += 16) {
      const __mmask16 m = simd::tail_mask(d - j);
      const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + j), vr);
      _mm512_mask_storeu_ps(yr + j, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + j)));
    }
#endif
    for (; j < d; ++j) yr[j] = xr[j] * r * w[j];
  }
}

// With y = x·r·w and r = (mean(x²)+eps)^-½:  dx = r·(dy⊙w) − x·r³·Σ(dy⊙w⊙x)/d,  dw += dy⊙x·r.
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd,
                      float* dx, float* dw, int N, int d, float beta) {
  for (int n = 0; n < N; ++n) {
    const int64_t off = static_cast<int64_t>(n) * d;
    const float *dyr = dy + off, *xr = x + off;
    float* dxr = dx + off;
    const float r = rstd[n];
    int j = 0;
#if SEEKR_AVX512
    __m512 acc = _mm512_setzero_ps();
    for (; j < d; j += 16) {
      const __mmask16 m = simd::tail_mask(d - j);
      const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dyr + j), _mm512_maskz_loadu_ps(m, w + j));
      acc = _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, xr + j), acc);
    }
    const float sum = _mm512_reduce_add_ps(acc);
    const float c = r * r * r * sum / static_cast<float>(d);
    const __m512 vr = _mm512_set1_ps(r), vc = _mm512_set1_ps(c), vb = _mm512_set1_ps(beta);
    for (j = 0; j < d; j += 16) {
      const __mmask16 m = simd::tail_mask(d - j);
      const __m512 vdy = _mm512_maskz_loadu_ps(m, dyr + j), vx = _mm512_maskz_loadu_ps(m, xr + j);
      __m512 g = _mm512_mul_ps(_mm512_mul_ps(vdy, _mm512_maskz_loadu_ps(m, w + j)), vr);
      g = _mm512_fnmadd_ps(vx, vc, g);
      if (beta != 0.0f) g = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, dxr + j), g);
      _mm512_mask_storeu_ps(dxr + j, m, g);
      const __m512 vdw = _mm512_fmadd_ps(_mm512_mul_ps(vdy, vx), vr, _mm512_maskz_loadu_ps(m, dw + j));
      _mm512_mask_storeu_ps(dw + j, m, vdw);
    }
#else
    float sum = 0.0f;
    for (; j < d; ++j) sum += dyr[j] * w[j] * xr[j];
    const float c = r * r * r * sum / static_cast<float>(d);
    for (j = 0; j < d; ++j) {
      const float g = dyr[j] * w[j] * r - xr[j] * c;
      dxr[j] = beta == 0.0f ? g : g + beta * dxr[j];
      dw[j] += dyr[j] * xr[j] * r;
    }
#endif
  }
}

// ---- RoPE --------------------------------------------------------------------------------

void rope_tables(const float* inv_freq, int half_dim, int max_pos, float mscale, float* cos_out,
                 float* sin_out) {
  for (int p = 0; p < max_pos; ++p) {
    for (int i = 0; i < half_dim; ++i) {
      // The angle is rounded to float first, as the reference implementation (torch.outer in
      // fp32) does, so tables match the checkpoints' numerics at large positions.
      const float angle = static_cast<float>(p) * inv_freq[i];
      const int64_t idx = static_cast<int64_t>(p) * half_dim + i;
      cos_out[idx] = static_cast<float>(std::cos(static_cast<double>(angle)) * mscale);
      sin_out[idx] = static_cast<float>(std::sin(static_cast<double>(angle)) * mscale);
    }
  }
}

namespace {
// Rotates every (x[2i], x[2i+1]) pair by ±angle; sign = -1 applies the transpose, which is the
// exact gradient of the forward rotation (and its inverse when mscale = 1).
void rope_apply(float* x, const int32_t* pos, int N, int heads, int d, int stride,
                int head_stride, const float* cos_t, const float* sin_t, float sign) {
  SEEKR_CHECK(d % 2 == 0, "rope dim must be even, got ", d);
  const int half = d / 2;
  for (int n = 0; n < N; ++n) {
    SEEKR_CHECK(pos[n] >= 0, "negative position ", pos[n], " at row ", n);
    const float* c = cos_t + static_cast<int64_t>(pos[n]) * half;
    const float* s = sin_t + static_cast<int64_t>(pos[n]) * half;
    for (int h = 0; h < heads; ++h) {
      float* xr = x + static_cast<int64_t>(n) * stride + static_cast<int64_t>(h) * head_stride;
      for (int i = 0; i < half; ++i) {
        const float x0 = xr[2 * i], x1 = xr[2 * i + 1], si = sign * s[i];
        xr[2 * i] = x0 * c[i] - x1 * si;
        xr[2 * i + 1] = x0 * si + x1 * c[i];
      }
    }
  }
}
}  // namespace

void rope_forward(float* x, const int32_t* pos, int N, int heads, int d, int stride,
                  int head_stride, const float* cos_t, const float* sin_t) {
  rope_apply(x, pos, N, heads, d, stride, head_stride, cos_t, sin_t, 1.0f);
}

void rope_backward(float* dx, const int32_t* pos, int N, int heads, int d, int stride,
                   int head_stride, const float* cos_t, const float* sin_t) {
  rope_apply(dx, pos, N, heads, d, stride, head_stride, cos_t, sin_t, -1.0f);
}

// ---- SwiGLU ------------------------------------------------------------------------------

void swiglu_forward(const float* g, const float* u, float* a, int64_t n) {
  int64_t i = 0;
#if SEEKR_AVX512
  const __m512 one = _mm512_set1_ps(1.0f);
  for (; i < n; i += 16) {
    const __mmask16 m = simd::tail_mask(n - i);
    const __m512 vg = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, simd::exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
    _mm512_mask_storeu_ps(a + i, m, _mm512_mul_ps(_mm512_mul_ps(vg, sig), _mm512_maskz_loadu_ps(m, u + i)));
  }
#endif
  for (; i < n; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du,
                     int64_t n) {
  int64_t i = 0;
#if SEEKR_AVX512
  const __m512 one = _mm512_set1_ps(1.0f);
  for (; i < n; i += 16) {
    const __mmask16 m = simd::tail_mask(n - i);
    const __m512 vg = _mm512_maskz_loadu_ps(m, g + i), vu = _mm512_maskz_loadu_ps(m, u + i);
    const __m512 vda = _mm512_maskz_loadu_ps(m, da + i);
    const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, simd::exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
    const __m512 dsilu = _mm512_mul_ps(sig, _mm512_fmadd_ps(vg, _mm512_sub_ps(one, sig), one));
    _mm512_mask_storeu_ps(dg + i, m, _mm512_mul_ps(_mm512_mul_ps(vda, vu), dsilu));
    _mm512_mask_storeu_ps(du + i, m, _mm512_mul_ps(vda, _mm512_mul_ps(vg, sig)));
  }
#endif
  for (; i < n; ++i) {
    const float sig = 1.0f / (1.0f + std::exp(-g[i]));
    const float gi = g[i], dai = da[i];
    dg[i] = dai * u[i] * sig * (1.0f + gi * (1.0f - sig));
    du[i] = dai * gi * sig;
  }
}

// ---- losses ------------------------------------------------------------------------------

namespace {
// Softmax statistics of one row: its max m and Σ exp(x − m). Keeping the two apart (instead of
// one float log-sum-exp) keeps x − m exact, which matters when logits are large: at |x| ~ 1e4 a
// float lse is off by ~1e-3.
struct RowStats {
  float max;
  double sum;
};
RowStats row_stats(const float* row, int V) {
  const float m = simd::max(row, V);
  return {m, simd::sum_exp(row, V, m)};
}
}  // namespace

double cross_entropy_forward_backward(const float* logits, const int32_t* targets, float* dlogits,
                                      int N, int V, float scale) {
  double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss)
  for (int n = 0; n < N; ++n) {
    const int64_t off = static_cast<int64_t>(n) * V;
    const int32_t t = targets[n];
    if (t < 0) {
      std::memset(dlogits + off, 0, sizeof(float) * V);
      continue;
    }
    SEEKR_CHECK(t < V, "target ", t, " out of range for vocab ", V, " at row ", n);
    const float* row = logits + off;
    const RowStats st = row_stats(row, V);
    loss += std::log(st.sum) - (row[t] - st.max);  // read before dlogits (may alias) is written
    simd::exp_scale(row, dlogits + off, V, st.max, static_cast<float>(scale / st.sum));
    dlogits[off + t] -= scale;
  }
  return loss;
}

void log_prob_of_targets(const float* logits, const int32_t* targets, float* logp, int N, int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const int32_t t = targets[n];
    if (t < 0) {
      logp[n] = 0.0f;
      continue;
    }
    SEEKR_CHECK(t < V, "target ", t, " out of range for vocab ", V, " at row ", n);
    const float* row = logits + static_cast<int64_t>(n) * V;
    const RowStats st = row_stats(row, V);
    logp[n] = static_cast<float>((row[t] - st.max) - std::log(st.sum));
  }
}

}  // namespace seekr
