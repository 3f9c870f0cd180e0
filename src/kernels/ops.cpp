// Fast kernels: OpenBLAS for the matrix products, AVX2/FMA for the row-wise ops. The scalar
// references live in ops_ref.cpp; tests/test_kernels.cpp holds the two together.
#include "kernels/ops.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/simd.h"

namespace seekr {

// ---- matrix products ---------------------------------------------------------------------

SingleThreadedBlas::SingleThreadedBlas()
    : saved_(omp_get_max_threads() > 1 ? openblas_get_num_threads() : 1) {
  if (saved_ > 1) openblas_set_num_threads(1);
}

SingleThreadedBlas::~SingleThreadedBlas() {
  if (saved_ > 1) openblas_set_num_threads(saved_);
}

// Products of at least this many multiply-adds run as one single-threaded sgemm per OpenMP
// thread on a panel of C, instead of on OpenBLAS's own threads: OpenBLAS's idle workers spin
// in sched_yield on the core the OpenMP workers need.
constexpr double kGemmSplitMinMacs = 1 << 20;

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
  // OpenBLAS clears C for beta = 0 with its own scaling kernel (sgemm_beta), which profiled at
  // ~7% of a GRPO step; memset does the same clearing faster, and beta = 1 then skips it.
  const auto clear = [](float* c, int m, int n, int ldc) {
    if (ldc == n) {
      std::memset(c, 0, sizeof(float) * static_cast<size_t>(m) * n);
    } else {
      for (int i = 0; i < m; ++i)
        std::memset(c + static_cast<int64_t>(i) * ldc, 0, sizeof(float) * n);
    }
  };
  const bool zero = beta == 0.0f;
  if (zero) beta = 1.0f;
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads > 1 && double(M) * N * K >= kGemmSplitMinMacs) {
    // Split C into column or row panels, one single-threaded sgemm per OpenMP thread (see
    // kGemmSplitMinMacs). Each C element is still one product over the whole of K.
    const SingleThreadedBlas blas_guard;
    const bool by_rows = M >= N;
    const int len = by_rows ? M : N;
    const int chunk = (len + threads - 1) / threads;
    const int step = (chunk + 15) / 16 * 16;
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int i = 0; i < threads; ++i) {
      const int b0 = std::min(len, i * step), b1 = std::min(len, b0 + step);
      if (b0 >= b1) continue;
      if (by_rows) {
        const float* a = trans_a ? A + b0 : A + int64_t(b0) * lda;
        float* c = C + int64_t(b0) * ldc;
        if (zero) clear(c, b1 - b0, N, ldc);
        cblas_sgemm(CblasRowMajor, ta, tb, b1 - b0, N, K, alpha, a, lda, B, ldb, beta, c, ldc);
      } else {
        const float* b = trans_b ? B + int64_t(b0) * ldb : B + b0;
        if (zero) clear(C + b0, M, b1 - b0, ldc);
        cblas_sgemm(CblasRowMajor, ta, tb, M, b1 - b0, K, alpha, A, lda, b, ldb, beta, C + b0, ldc);
      }
    }
    return;
  }
  if (zero) clear(C, M, N, ldc);
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out, float beta) {
  // A few rows (batch-1 decode): sgemm would repack the whole weight matrix for each call,
  // which costs more than the product; matrix-vector products stream it once per row.
  if (N > 0 && N < 4 && in > 0) {
    for (int n = 0; n < N; ++n)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in,
                  x + static_cast<int64_t>(n) * in, 1, beta, y + static_cast<int64_t>(n) * out, 1);
    return;
  }
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
#if SEEKR_AVX2
    const __m256 vr = _mm256_set1_ps(r);
    for (; j + 8 <= d; j += 8) {
      const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xr + j), vr);
      _mm256_storeu_ps(yr + j, _mm256_mul_ps(v, _mm256_loadu_ps(w + j)));
    }
#endif
    for (; j < d; ++j) yr[j] = xr[j] * r * w[j];
  }
}

// With y = x·r·w and r = (mean(x²)+eps)^-½:  dx = r·(dy⊙w) − x·r³·Σ(dy⊙w⊙x)/d,  dw += dy⊙x·r.
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                      float* dw, int N, int d, float beta) {
  for (int n = 0; n < N; ++n) {
    const int64_t off = static_cast<int64_t>(n) * d;
    const float *dyr = dy + off, *xr = x + off;
    float* dxr = dx + off;
    const float r = rstd[n];
    float sum = 0.0f;  // Σ dy·w·x
    int j = 0;
#if SEEKR_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= d; j += 8) {
      const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dyr + j), _mm256_loadu_ps(w + j));
      acc = _mm256_fmadd_ps(g, _mm256_loadu_ps(xr + j), acc);
    }
    sum = simd::hsum(acc);
#endif
    for (; j < d; ++j) sum += dyr[j] * w[j] * xr[j];
    const float c = r * r * r * sum / static_cast<float>(d);
    j = 0;
#if SEEKR_AVX2
    const __m256 vr = _mm256_set1_ps(r), vc = _mm256_set1_ps(c), vb = _mm256_set1_ps(beta);
    for (; j + 8 <= d; j += 8) {
      const __m256 vdy = _mm256_loadu_ps(dyr + j), vx = _mm256_loadu_ps(xr + j);
      __m256 g = _mm256_mul_ps(_mm256_mul_ps(vdy, _mm256_loadu_ps(w + j)), vr);
      g = _mm256_fnmadd_ps(vx, vc, g);
      if (beta != 0.0f) g = _mm256_fmadd_ps(vb, _mm256_loadu_ps(dxr + j), g);
      _mm256_storeu_ps(dxr + j, g);
      _mm256_storeu_ps(dw + j,
                       _mm256_fmadd_ps(_mm256_mul_ps(vdy, vx), vr, _mm256_loadu_ps(dw + j)));
    }
#endif
    for (; j < d; ++j) {
      const float g = dyr[j] * w[j] * r - xr[j] * c;
      dxr[j] = beta == 0.0f ? g : g + beta * dxr[j];
      dw[j] += dyr[j] * xr[j] * r;
    }
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
void rope_apply(float* x, const int32_t* pos, int N, int heads, int d, int stride, int head_stride,
                const float* cos_t, const float* sin_t, float sign) {
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
#if SEEKR_AVX2
  for (; i + 8 <= n; i += 8) {
    const __m256 vg = _mm256_loadu_ps(g + i);
    const __m256 silu = _mm256_mul_ps(vg, simd::sigmoid_ps(vg));
    _mm256_storeu_ps(a + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
#endif
  for (; i < n; ++i) a[i] = g[i] * simd::sigmoid(g[i]) * u[i];
}

// silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du,
                     int64_t n) {
  int64_t i = 0;
#if SEEKR_AVX2
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256 vg = _mm256_loadu_ps(g + i), vu = _mm256_loadu_ps(u + i);
    const __m256 vda = _mm256_loadu_ps(da + i);
    const __m256 sig = simd::sigmoid_ps(vg);
    const __m256 dsilu = _mm256_mul_ps(sig, _mm256_fmadd_ps(vg, _mm256_sub_ps(one, sig), one));
    _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(vda, vu), dsilu));
    _mm256_storeu_ps(du + i, _mm256_mul_ps(vda, _mm256_mul_ps(vg, sig)));
  }
#endif
  for (; i < n; ++i) {
    const float sig = simd::sigmoid(g[i]), gi = g[i], dai = da[i];
    dg[i] = dai * u[i] * sig * (1.0f + gi * (1.0f - sig));
    du[i] = dai * gi * sig;
  }
}

// ---- losses ------------------------------------------------------------------------------
// The row max m and Σ exp(x − m) are kept apart instead of one float log-sum-exp, so x − m stays
// exact: at |x| ~ 1e4 a float lse alone is off by ~1e-3.

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
    const float x_t = row[t];  // read before dlogits (may alias logits) is written
    const float m = simd::max(row, V);
    float* d = dlogits + off;
    const double sum = simd::exp_store_sum(row, d, V, m);
    loss += std::log(sum) - (x_t - m);
    simd::scale(d, V, static_cast<float>(scale / sum));
    d[t] -= scale;
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
    const float m = simd::max(row, V);
    logp[n] = static_cast<float>((row[t] - m) - std::log(simd::sum_exp(row, V, m)));
  }
}

}  // namespace seekr
