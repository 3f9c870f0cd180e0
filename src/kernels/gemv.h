// Few-row matrix products for decoding: y[i, :] = x[i, :] · wᵀ for 1 to 3 rows of x, the
// products a batch-1 decode step (1 row) or a speculative verify pass (2-3 rows) makes. They
// are bound by reading the weights, so each weight row is streamed once for all rows of x.
//
// Exactness contract: every y[i][j] is computed by the same operations whatever the number of
// rows n is and however the output rows are split into ranges, so a verify pass equals 1-token
// steps bit for bit and the rows can be shared among threads freely. Each output is two 8-lane
// FMA chains (even and odd 8-float blocks of the row) summed, reduced by a fixed
// horizontal-add tree, then the in % 8 tail added with scalar FMAs.
#pragma once

namespace seekr {

constexpr int kGemvMaxRows = 3;

// Output rows [j0, j1) of y[i, :out] (=|+=) x[i, :in] · w[out, in]ᵀ for i < n <= kGemvMaxRows,
// rows of x and y at strides ldx and ldy (beta: 0 overwrites, else y = x·wᵀ + beta·y).
void gemv_xwt(const float* x, int ldx, const float* w, int in, int out, int j0, int j1, float* y,
              int ldy, int n, float beta = 0.0f);

// Output rows [j0, j1) of a[i, :] = silu(x[i]·gateᵀ) ⊙ (x[i]·upᵀ), gate and up [out, in]: the
// two products of a SwiGLU MLP and its activation in one pass over the rows, each product
// computed as gemv_xwt computes it, the activation in a vector lane whatever j is.
void gemv_swiglu(const float* x, int ldx, const float* gate, const float* up, int in, int out,
                 int j0, int j1, float* a, int lda, int n);

// a[k] = silu(g[k])·u[k] for k < m <= 8, each computed in a vector lane whatever m is (the
// activation of gemv_swiglu, for other few-row SwiGLU products to compute it the same way).
void swiglu_lanes(const float* g, const float* u, float* a, int m);

namespace ref {
// Scalar reference of gemv_xwt over all rows (double accumulation).
void gemv_xwt(const float* x, int ldx, const float* w, int in, int out, float* y, int ldy, int n,
              float beta = 0.0f);
}  // namespace ref

}  // namespace seekr
