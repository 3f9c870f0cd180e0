// Causal attention on top of sgemm. Each (sequence, head) is independent; within one, the T×T
// score matrix is processed in blocks of rows so the products only cover columns up to the
// block's last row (the causal lower triangle plus a diagonal block), about half the flops of a
// full T×T product.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/scratch.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seekr {
namespace {

constexpr int kRowBlock = 64;

struct HeadView {
  const float* q;  // [T, dqk] with row stride q_stride
  const float* k;
  const float* v;  // [T, dv] with row stride v_stride
  int64_t bh;      // b*H + h
};

HeadView head_view(const AttentionShape& s, const float* q, const float* k, const float* v, int b,
                   int h) {
  const int64_t row0 = static_cast<int64_t>(b) * s.T;
  return {q + row0 * s.q_stride + static_cast<int64_t>(h) * s.dqk,
          k + row0 * s.k_stride + static_cast<int64_t>(h) * s.dqk,
          v + row0 * s.v_stride + static_cast<int64_t>(h) * s.dv,
          static_cast<int64_t>(b) * s.H + h};
}

void check_shape(const AttentionShape& s) {
  SEEKR_CHECK(s.B >= 0 && s.T >= 0 && s.H >= 0 && s.dqk > 0 && s.dv > 0, "bad attention shape");
  SEEKR_CHECK(s.q_stride >= s.H * s.dqk && s.k_stride >= s.H * s.dqk && s.v_stride >= s.H * s.dv,
              "attention row strides narrower than the heads");
}

// In place on row p[0..i]: p = softmax(p) in fp32 with the max subtracted; p[i+1..T) = 0.
void causal_softmax_row(float* p, int i, int T) {
  const int n = i + 1;
  const double sum = simd::exp_store_sum(p, p, n, simd::max(p, n));
  simd::scale(p, n, static_cast<float>(1.0 / sum));
  std::fill(p + n, p + T, 0.0f);
}

}  // namespace

void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                       float* probs, float* out) {
  check_shape(s);
  const SingleThreadedBlas blas_guard;
  const int T = s.T, out_stride = s.H * s.dv;
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < s.B * s.H; ++bh) {
    const int b = bh / s.H, h = bh % s.H;
    const HeadView hv = head_view(s, q, k, v, b, h);
    float* P = probs + hv.bh * T * T;  // [T, T]
    float* O = out + static_cast<int64_t>(b) * T * out_stride + static_cast<int64_t>(h) * s.dv;
    for (int i0 = 0; i0 < T; i0 += kRowBlock) {
      const int i1 = std::min(T, i0 + kRowBlock), rows = i1 - i0;
      float* Pb = P + static_cast<int64_t>(i0) * T;  // [rows, T], columns [0, i1) computed
      // S[i0:i1, 0:i1] = scale · Q[i0:i1] · K[0:i1]ᵀ
      gemm(false, true, rows, i1, s.dqk, s.scale, hv.q + static_cast<int64_t>(i0) * s.q_stride,
           s.q_stride, hv.k, s.k_stride, 0.0f, Pb, T);
      for (int i = i0; i < i1; ++i) causal_softmax_row(P + static_cast<int64_t>(i) * T, i, T);
      // O[i0:i1] = P[i0:i1, 0:i1] · V[0:i1]   [rows, dv]
      gemm(false, false, rows, s.dv, i1, 1.0f, Pb, T, hv.v, s.v_stride, 0.0f,
           O + static_cast<int64_t>(i0) * out_stride, out_stride);
    }
  }
}

// With S = scale·QKᵀ, P = softmax(S), O = PV:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = scale·dS K,  dK = scale·dSᵀ Q.
// Row blocks run last-to-first so the first products (covering every row of dK and dV) overwrite
// and the later, shorter ones accumulate.
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        const float* probs, const float* dout, float* dq, float* dk, float* dv) {
  check_shape(s);
  const SingleThreadedBlas blas_guard;
  const int T = s.T, out_stride = s.H * s.dv;
  const int nblocks = (T + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    thread_local std::vector<float> dS_buf;  // per-thread scratch, rewritten by each gemm
    float* dS = grown(dS_buf, static_cast<size_t>(std::min(T, kRowBlock)) * T);  // [rows, i1]
#pragma omp for schedule(static)
    for (int bh = 0; bh < s.B * s.H; ++bh) {
      const int b = bh / s.H, h = bh % s.H;
      const HeadView hv = head_view(s, q, k, v, b, h);
      const int64_t row0 = static_cast<int64_t>(b) * T;
      const float* P = probs + hv.bh * T * T;
      const float* dO = dout + row0 * out_stride + static_cast<int64_t>(h) * s.dv;
      float* dQ = dq + row0 * s.q_stride + static_cast<int64_t>(h) * s.dqk;
      float* dK = dk + row0 * s.k_stride + static_cast<int64_t>(h) * s.dqk;
      float* dV = dv + row0 * s.v_stride + static_cast<int64_t>(h) * s.dv;
      for (int blk = nblocks - 1; blk >= 0; --blk) {
        const int i0 = blk * kRowBlock, i1 = std::min(T, i0 + kRowBlock), rows = i1 - i0;
        const float beta = blk == nblocks - 1 ? 0.0f : 1.0f;
        const float* Pb = P + static_cast<int64_t>(i0) * T;
        const float* dOb = dO + static_cast<int64_t>(i0) * out_stride;
        // dV[0:i1] (+)= P[i0:i1, 0:i1]ᵀ · dO[i0:i1]
        gemm(true, false, i1, s.dv, rows, 1.0f, Pb, T, dOb, out_stride, beta, dV, s.v_stride);
        // dP[i0:i1, 0:i1] = dO[i0:i1] · V[0:i1]ᵀ   -> dS, ld = i1
        gemm(false, true, rows, i1, s.dv, 1.0f, dOb, out_stride, hv.v, s.v_stride, 0.0f, dS, i1);
        for (int r = 0; r < rows; ++r) {
          const float* p = Pb + static_cast<int64_t>(r) * T;
          float* d = dS + static_cast<int64_t>(r) * i1;
          const int n = i0 + r + 1;  // causal: columns past the diagonal have p = 0
          const float c = simd::dot(p, d, n);
          for (int j = 0; j < n; ++j) d[j] = p[j] * (d[j] - c);
          std::fill(d + n, d + i1, 0.0f);
        }
        // dQ[i0:i1] = scale · dS · K[0:i1]
        gemm(false, false, rows, s.dqk, i1, s.scale, dS, i1, hv.k, s.k_stride, 0.0f,
             dQ + static_cast<int64_t>(i0) * s.q_stride, s.q_stride);
        // dK[0:i1] (+)= scale · dSᵀ · Q[i0:i1]
        gemm(true, false, i1, s.dqk, rows, s.scale, dS, i1,
             hv.q + static_cast<int64_t>(i0) * s.q_stride, s.q_stride, beta, dK, s.k_stride);
      }
    }
  }
}

}  // namespace seekr
