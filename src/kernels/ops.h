// Building-block kernels for the model: forward and backward of every op the model uses.
//
// Contract for every kernel here:
// - Plain row-major float32 arrays; shapes are in the comments ([rows, cols]).
// - Backward functions ACCUMULATE (+=) into parameter gradients (dw) and, unless noted,
//   OVERWRITE input gradients (dx) — see each comment.
// - Every fast kernel has a scalar reference in namespace seekr::ref with the same signature,
//   and tests/test_kernels.cpp checks fast == reference and backward == finite differences.
// Kernels never see the model: they know shapes, not layers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace seekr {

// ---- matrix products (row-major) -------------------------------------------------------
// y[N, out] = x[N, in] · w[out, in]ᵀ          (accumulate: y += ... when beta = 1)
void matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out,
                float beta = 0.0f);
// dx[N, in] (+)= dy[N, out] · w[out, in]      (beta = 0 overwrites, 1 accumulates)
void matmul_dy_w(const float* dy, const float* w, float* dx, int N, int in, int out,
                 float beta = 0.0f);
// dw[out, in] += dy[N, out]ᵀ · x[N, in]
void matmul_dyt_x(const float* dy, const float* x, float* dw, int N, int in, int out);
// General: C[M, N] = alpha * op(A) · op(B) + beta * C, row-major with leading dimensions.
// Outside an OpenMP parallel region, a product of 2^20 multiply-adds or more is split into row
// (M >= N) or column panels, one single-threaded sgemm per OpenMP thread.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

// OpenBLAS (pthread build) keeps its own worker pool. Calling a multi-threaded sgemm from inside
// an OpenMP parallel region makes the two pools fight for the cores: measured 20-30x slower
// attention (OMP=2 + OpenBLAS=2: 2140 ms vs 73 ms). A loop whose iterations each make their own
// products (heads, experts) on OpenMP threads holds one of these: while it lives, sgemm is
// single-threaded; the previous setting comes back at the end of the scope.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

// ---- RMSNorm ---------------------------------------------------------------------------
// y[N, d] = x * rstd * w, rstd[N] = 1/sqrt(mean(x²) + eps); rstd is saved for backward.
void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int N, int d,
                     float eps);
// dx[N, d] (+)= ...; dw[d] += ...   (beta = 0 overwrites dx, 1 accumulates)
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                      float* dw, int N, int d, float beta = 0.0f);

// ---- RoPE (interleaved pairs, as DeepSeek's checkpoints read) ----------------------------
// Rotary tables: cos/sin [max_pos, d/2] built from inv_freq[d/2] with an attention-independent
// magnitude factor (YaRN's cos/sin mscale; 1 otherwise).
void rope_tables(const float* inv_freq, int half_dim, int max_pos, float mscale, float* cos_out,
                 float* sin_out);
// In place on x[N, heads, d] where row n has position pos[n]: pairs (x[2i], x[2i+1]) rotate by
// angle pos·inv_freq[i]. `stride` is the distance in floats between consecutive rows n and
// `head_stride` between heads, so it can rotate a slice of a wider row (q_pe inside q).
void rope_forward(float* x, const int32_t* pos, int N, int heads, int d, int stride,
                  int head_stride, const float* cos_t, const float* sin_t);
// Backward is the inverse rotation, in place on the gradient.
void rope_backward(float* dx, const int32_t* pos, int N, int heads, int d, int stride,
                   int head_stride, const float* cos_t, const float* sin_t);

// ---- SwiGLU ------------------------------------------------------------------------------
// a[N, I] = silu(g) * u
void swiglu_forward(const float* g, const float* u, float* a, int64_t n);
// dg, du (overwrite) from da
void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du,
                     int64_t n);

// ---- causal attention (naive: K and V expanded per head) --------------------------------
// For B sequences of T tokens, H heads:
//   q[B*T, q_stride] holds per head h the dqk values at q + h*dqk (same for k),
//   v[B*T, v_stride] per head dv values at v + h*dv.
//   probs[B, H, T, T] saved softmax (upper triangle zero); out[B*T, H*dv].
struct AttentionShape {
  int B, T, H, dqk, dv;
  int q_stride, k_stride, v_stride;  // floats between rows
  float scale;                       // softmax scale
};
void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                       float* probs, float* out);
// Overwrites dq, dk, dv (same layouts as q, k, v).
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        const float* probs, const float* dout, float* dq, float* dk, float* dv);

// ---- losses at the logits ----------------------------------------------------------------
// Softmax cross-entropy over V classes for N rows; targets < 0 are ignored (masked).
// Returns the SUM of losses over unmasked rows; writes dlogits = scale * (softmax - onehot)
// for unmasked rows and 0 for masked rows (dlogits may alias logits).
double cross_entropy_forward_backward(const float* logits, const int32_t* targets, float* dlogits,
                                      int N, int V, float scale);
// log-softmax probability of targets (no gradient): logp[N]; 0 for masked rows (targets < 0).
void log_prob_of_targets(const float* logits, const int32_t* targets, float* logp, int N, int V);

namespace ref {
// Scalar references with identical signatures (see above).
void matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out, float beta);
void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int N, int d,
                     float eps);
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                      float* dw, int N, int d, float beta);
void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                       float* probs, float* out);
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        const float* probs, const float* dout, float* dq, float* dk, float* dv);
double cross_entropy_forward_backward(const float* logits, const int32_t* targets, float* dlogits,
                                      int N, int V, float scale);
// Added for the tests: references for the remaining fast paths (same contracts as above).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
void swiglu_forward(const float* g, const float* u, float* a, int64_t n);
void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du,
                     int64_t n);
void log_prob_of_targets(const float* logits, const int32_t* targets, float* logp, int N, int V);
}  // namespace ref

}  // namespace seekr
