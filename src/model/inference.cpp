// Inference over the MLA cache. Absorbed mode caches the normalised latent c (kv_lora_rank)
// and the shared RoPE key (qk_rope_head_dim) per token and folds kv_b_proj into the query and
// the output; naive mode caches expanded per-head keys and values. Both must agree.
//
// The MTP module's block is one more cache layer after the main ones and runs through the same
// block code; only its input (eh_proj of the normalised embedding and hidden state) and its
// head norm differ.
//
// A model loaded with FP8-kept weights (Model::fp8_weights()) runs every Linear product it keeps
// through fp8_linear, including the FFN's, which then runs here (ffn_fp8) instead of through
// ffn_forward; without FP8 weights the FP32 code below runs unchanged.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/ops.h"
#include "kernels/routing.h"
#include "kernels/simd.h"
#include "model/block.h"
#include "model/model.h"

namespace seekr {

namespace {

template <typename T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// Up to this many rows take the row-by-row products below; more go to BLAS gemm.
constexpr int kFewRows = 3;

// Finishes output (i, j) of the products below: adds the scalar tail t0..in of its dot
// product to the vector part `v`, then stores it (beta: 0 overwrites, else y = v + beta·y).
inline void xwt_finish(float v, const float* x, const float* w, int t0, int in, float* y,
                       float beta) {
  for (int t = t0; t < in; ++t) v = std::fma(w[t], x[t], v);
  *y = beta == 0.0f ? v : v + beta * *y;
}

// y[i, r] = x[i]·w[r] for 4·G weight rows of w and N rows of x: 4·G·N independent 8-lane
// accumulators, so the FMAs pipeline instead of waiting on one chain, and each weight load
// serves all N rows. Every group of four accumulators is reduced by one hadd tree, which sums
// each output's lanes in the same order whatever G and N are.
template <int G, int N>
void xwt_tile(const float* x, int ldx, const float* w, int in, float* y, int ldy, float beta) {
  constexpr int R = 4 * G;
  int t = 0;
#if SEEKR_AVX2
  __m256 acc[N][R];
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[i][r] = _mm256_setzero_ps();
  for (; t + 8 <= in; t += 8) {
    __m256 wv[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) wv[r] = _mm256_loadu_ps(w + size_t(r) * in + t);
#pragma GCC unroll 16
    for (int i = 0; i < N; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + size_t(i) * ldx + t);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[i][r] = _mm256_fmadd_ps(wv[r], xv, acc[i][r]);
    }
  }
#endif
  for (int i = 0; i < N; ++i)
    for (int g = 0; g < G; ++g) {
      float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#if SEEKR_AVX2
      const __m256* a = acc[i] + 4 * g;
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
      _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
#endif
      for (int k = 0; k < 4; ++k)
        xwt_finish(s[k], x + size_t(i) * ldx, w + size_t(4 * g + k) * in, t, in,
                   y + size_t(i) * ldy + 4 * g + k, beta);
    }
}

// One weight row for N rows of x (the out % 4 rows after the tiles).
template <int N>
void xwt_row(const float* x, int ldx, const float* w, int in, float* y, int ldy, float beta) {
  for (int i = 0; i < N; ++i) {
    const float v = simd::dot(w, x + size_t(i) * ldx, in);
    float& out = y[size_t(i) * ldy];
    out = beta == 0.0f ? v : v + beta * out;
  }
}

// All `out` weight rows for N rows of x: tiles of 4·G rows, one of 4, then single rows. Row j
// is reduced by a hadd tree when j < out - out % 4, else by hsum, for every N.
template <int G, int N>
void xwt_rows(const float* x, int ldx, const float* w, float* y, int ldy, int in, int out,
              float beta) {
  int j = 0;
  for (; j + 4 * G <= out; j += 4 * G)
    xwt_tile<G, N>(x, ldx, w + size_t(j) * in, in, y + j, ldy, beta);
  for (; j + 4 <= out; j += 4) xwt_tile<1, N>(x, ldx, w + size_t(j) * in, in, y + j, ldy, beta);
  for (; j < out; ++j) xwt_row<N>(x, ldx, w + size_t(j) * in, in, y + j, ldy, beta);
}

// y[i, :out] (=|+=) x[i, :in] · wᵀ for i < n <= kFewRows, w: [out, in], rows of x and y at
// strides ldx and ldy. The weights are streamed once for all n rows (a 2-token verify pass
// reads them once, like a 1-token step), and every y[i][j] is computed by the same operations
// whatever n is, so the rows of a verify pass equal 1-token decode steps bit for bit and
// speculative decoding reproduces greedy decoding exactly.
void few_rows_xwt(const float* x, int ldx, const float* w, float* y, int ldy, int n, int in,
                  int out, float beta) {
  switch (n) {
    case 1:
      return xwt_rows<2, 1>(x, ldx, w, y, ldy, in, out, beta);
    case 2:
      return xwt_rows<1, 2>(x, ldx, w, y, ldy, in, out, beta);
    case 3:
      return xwt_rows<1, 3>(x, ldx, w, y, ldy, in, out, beta);
  }
  SEEKR_CHECK(n == 0, "few_rows_xwt: ", n, " rows");
}

// y[n, out] (=|+=) x[n, in] · w[out, in]ᵀ
void xwt(const float* x, const float* w, float* y, int n, int in, int out, float beta = 0.0f) {
  if (n <= kFewRows) return few_rows_xwt(x, in, w, y, out, n, in, out, beta);
  matmul_xwt(x, w, y, n, in, out, beta);
}

}  // namespace

struct InferenceSession::Impl {
  const Model& model;
  const ModelConfig& c;
  Dims D;
  RopeTables rope;
  int max_seqs, max_len;
  AttentionMode mode;
  const Fp8LinearWeights* fp8;            // null: every weight is FP32
  int width;                              // cache floats per token per layer
  int mtp_layer;                          // cache layer of the MTP module; -1 without one
  std::vector<std::vector<float>> cache;  // per main layer, then MTP: [max_seqs, max_len, width]
  std::vector<int> len, mtp_len;          // positions held per slot
  // scratch, grown on demand: once warm, a decode step allocates nothing here
  std::vector<float> x, h, q, kva, cn, qcat, olat, att, tmp, hN, rstd, probs, cat;
  std::vector<int> next, rows;
  std::vector<int32_t> kept_slots, kept_pos;
  FfnActs ffn;

  Impl(const Model& m, int seqs, int length, AttentionMode md)
      : model(m), c(m.config()), D(m.config()), rope(m.config()), max_seqs(seqs),
        max_len(length), mode(md),
        fp8(m.fp8_weights() && m.fp8_weights()->size() > 0 ? m.fp8_weights() : nullptr) {
    SEEKR_REQUIRE(seqs > 0 && length > 0, "inference session needs positive slots and length");
    SEEKR_REQUIRE(length <= c.max_position_embeddings, "max length ", length,
                  " exceeds the model's max_position_embeddings ", c.max_position_embeddings);
    width = mode == AttentionMode::kAbsorbed ? D.rkv + D.dr : D.H * (D.dqk + D.dv);
    mtp_layer = c.num_nextn_predict_layers > 0 ? c.num_hidden_layers : -1;
    cache.resize(c.num_hidden_layers + (mtp_layer >= 0 ? 1 : 0));
    for (auto& layer : cache) layer.assign(size_t(seqs) * length * width, 0.0f);
    len.assign(seqs, 0);
    mtp_len.assign(seqs, 0);
  }

  float* row(int layer, int slot, int pos) {
    return cache[layer].data() + (size_t(slot) * max_len + pos) * width;
  }

  // Throws unless every token is in the vocabulary and every row's slot exists and its
  // positions continue `held` in order.
  void check_rows(const int32_t* tokens, const int32_t* slots, const int32_t* pos, int n,
                  const std::vector<int>& held);
  void grow_scratch(int n);
  // y[n, out] (=|+=) x[n, in] · wᵀ for the Linear weight whose FP32 slot is w: its FP8 form
  // when the model keeps one, else xwt.
  void linear(const float* x, const float* w, float* y, int n, int in, int out,
              float beta = 0.0f);
  // ffn_forward's computation (no balance loss) with every MLP/expert Linear through linear();
  // the router stays FP32. h [n, d] -> out [n, d] (overwritten).
  void ffn_fp8(const LayerWeights& w, const float* h, float* out, int n);
  // One decoder block over the residual stream x [n, d] (in place), cache layer `layer`. With
  // `keep` (n flags), only the rows with keep[i] != 0 go on past writing their cache entries:
  // x is packed to those rows and their count returned (the MTP module needs the block's
  // output only for the rows it drafts from; the others just join its cache).
  int block(int layer, const LayerWeights& w, const int32_t* slots, const int32_t* pos, int n,
            const uint8_t* keep = nullptr);
  void attention(int layer, const LayerWeights& w, const int32_t* slots, const int32_t* pos,
                 int n, float* att_out);
  // norm(x) · lm_headᵀ for the rows with logits_rows[i] != 0 (all when null), packed.
  void head(const float* norm, int n, const uint8_t* logits_rows, float* logits);
};

void InferenceSession::Impl::check_rows(const int32_t* tokens, const int32_t* slots,
                                        const int32_t* pos, int n, const std::vector<int>& held) {
  next.assign(held.begin(), held.end());
  for (int i = 0; i < n; ++i) {
    SEEKR_REQUIRE(tokens[i] >= 0 && tokens[i] < D.V, "token id ", tokens[i],
                  " outside the vocabulary (", D.V, ")");
    SEEKR_REQUIRE(slots[i] >= 0 && slots[i] < max_seqs, "slot ", slots[i], " out of range");
    SEEKR_REQUIRE(pos[i] == next[slots[i]], "slot ", slots[i], " expects position ",
                  next[slots[i]], ", got ", pos[i]);
    SEEKR_REQUIRE(pos[i] < max_len, "slot ", slots[i], " is full (max length ", max_len, ")");
    next[slots[i]]++;
  }
}

void InferenceSession::Impl::grow_scratch(int n) {
  const int d = D.d, qw = D.H * D.dqk, kvw = D.H * (D.dn + D.dv);
  grow(x, size_t(n) * d);
  grow(h, size_t(n) * d);
  grow(q, size_t(n) * qw);
  grow(kva, size_t(n) * (D.rkv + D.dr));
  grow(cn, size_t(n) * D.rkv);
  grow(att, size_t(n) * D.H * D.dv);
  grow(tmp, size_t(n) * std::max({d, D.rq, kvw}));
  grow(rstd, size_t(n));
}

void InferenceSession::Impl::linear(const float* x, const float* w, float* y, int n, int in,
                                    int out, float beta) {
  if (const Fp8Matrix* q = fp8 ? fp8->find(w) : nullptr) {
    SEEKR_CHECK(q->rows == out && q->cols == in, "FP8 weight shape mismatch");
    return fp8_linear(x, in, *q, y, out, n, beta);
  }
  xwt(x, w, y, n, in, out, beta);
}

void InferenceSession::Impl::ffn_fp8(const LayerWeights& w, const float* hin, float* out, int n) {
  const int d = D.d;
  // SwiGLU MLP of `inter` channels over `rows` rows: y [rows, d] (=|+=) down(silu(gate)·up).
  const auto mlp = [&](const MlpWeights& m, const float* xin, float* y, int rows, int inter) {
    grow(ffn.g, size_t(rows) * inter);
    grow(ffn.u, size_t(rows) * inter);
    grow(ffn.a, size_t(rows) * inter);
    linear(xin, m.gate, ffn.g.data(), rows, d, inter);  // [rows, inter]
    linear(xin, m.up, ffn.u.data(), rows, d, inter);    // [rows, inter]
    swiglu_forward(ffn.g.data(), ffn.u.data(), ffn.a.data(), int64_t(rows) * inter);
    linear(ffn.a.data(), m.down, y, rows, inter, d);  // [rows, d]
  };
  if (!w.is_moe) return mlp(w.mlp, hin, out, n, D.I);
  const int E = D.E, K = D.K;
  grow(ffn.rlogits, size_t(n) * E);
  grow(ffn.scores, size_t(n) * E);
  grow(ffn.weights, size_t(n) * K);
  grow(ffn.idx, size_t(n) * K);
  matmul_xwt(hin, w.router, ffn.rlogits.data(), n, d, E);  // [n, E]
  route_forward(routing_params(c), ffn.rlogits.data(), w.correction_bias, ffn.scores.data(),
                ffn.idx.data(), ffn.weights.data(), n);
  if (D.Is > 0)
    mlp(w.shared, hin, out, n, D.Is);
  else
    std::fill(out, out + size_t(n) * d, 0.0f);
  // Expert by expert, its tokens gathered in token order: each token's routed outputs are
  // added in increasing expert order, as ffn_forward adds them.
  grow(ffn.xe, size_t(n) * d);
  grow(ffn.ye, size_t(n) * d);
  grow(ffn.row_token, size_t(n));
  grow(ffn.row_slot, size_t(n));
  for (int e = 0; e < E; ++e) {
    int rows = 0;
    for (int t = 0; t < n; ++t)
      for (int k = 0; k < K; ++k)
        if (ffn.idx[size_t(t) * K + k] == e) {
          std::memcpy(&ffn.xe[size_t(rows) * d], hin + size_t(t) * d, sizeof(float) * d);
          ffn.row_token[rows] = t;
          ffn.row_slot[rows++] = k;
        }
    if (rows == 0) continue;
    mlp(w.experts[e], ffn.xe.data(), ffn.ye.data(), rows, D.Im);  // [rows, d]
    for (int r = 0; r < rows; ++r) {
      const int t = ffn.row_token[r];
      const float wt = ffn.weights[size_t(t) * K + ffn.row_slot[r]];
      simd::axpy(wt, &ffn.ye[size_t(r) * d], out + size_t(t) * d, d);
    }
  }
}

void InferenceSession::Impl::attention(int layer, const LayerWeights& w, const int32_t* slots,
                                       const int32_t* pos, int n, float* att_out) {
  const int H = D.H, dn = D.dn, dr = D.dr, dv = D.dv, dqk = D.dqk, rkv = D.rkv;
  const int qw = H * dqk;
  const float* wkvb = w.attn.kv_b_proj;  // [H*(dn+dv), rkv]
  const bool absorbed = mode == AttentionMode::kAbsorbed;
  // Absorbed: a cache row is [c (rkv) | k_pe (dr)], so one dot product of the row with
  // qcat = scale·[q_nope·W_k[h] | q_pe] gives the score, and the output is first a mix of the
  // latents (olat) that W_v[h] expands afterwards.
  if (absorbed) {
    const int cw = rkv + dr;
    grow(qcat, size_t(n) * H * cw);  // [n, H, rkv+dr]
    grow(olat, size_t(n) * H * rkv);  // [n, H, rkv]
    // W_k[h] = wkvb rows h*(dn+dv) .. +dn: qcat[:, h, :rkv] = scale · q_nope[:, h] · W_k[h].
    for (int hh = 0; hh < H; ++hh) {
      const float* wk = wkvb + size_t(hh) * (dn + dv) * rkv;  // [dn, rkv]
      if (n <= kFewRows) {
        // Row by row, each W_k row loaded once for all rows (see few_rows_xwt).
        for (int i = 0; i < n; ++i) std::fill_n(qcat.data() + (size_t(i) * H + hh) * cw, rkv, 0.0f);
        for (int t = 0; t < dn; ++t)
          for (int i = 0; i < n; ++i)
            simd::axpy(D.scale * q[size_t(i) * qw + hh * dqk + t], wk + size_t(t) * rkv,
                       qcat.data() + (size_t(i) * H + hh) * cw, rkv);
      } else {
        gemm(false, false, n, rkv, dn, D.scale, q.data() + hh * dqk, qw, wk, rkv, 0.0f,
             qcat.data() + hh * cw, H * cw);
      }
    }
    for (int i = 0; i < n; ++i)
      for (int hh = 0; hh < H; ++hh) {
        const float* qp = q.data() + size_t(i) * qw + hh * dqk + dn;
        float* dst = qcat.data() + (size_t(i) * H + hh) * cw + rkv;
        for (int j = 0; j < dr; ++j) dst[j] = D.scale * qp[j];
      }
  }
  const int score_dim = absorbed ? rkv + dr : dqk;  // floats in each score's dot product
  const int out_dim = absorbed ? rkv : dv;
  // [threads, H, max_len] scores, then probabilities: one block per thread, sized up front.
  grow(probs, size_t(omp_get_max_threads()) * H * max_len);
#pragma omp parallel
  {
    float* p = probs.data() + size_t(omp_get_thread_num()) * H * max_len;  // [H, len]
#pragma omp for schedule(static)
    for (int i = 0; i < n; ++i) {
      const int len = pos[i] + 1;
      const float* base = row(layer, slots[i], 0);  // [len, width]
      if (absorbed) {
        // Every head scores the same cache rows: four heads at a time share each row's loads.
        const float* qi = qcat.data() + size_t(i) * H * score_dim;  // [H, rkv+dr]
        for (int t = 0; t < len; ++t) {
          const float* r = base + size_t(t) * width;
          int hh = 0;
          for (; hh + 4 <= H; hh += 4) {
            const float* qs[4] = {qi + size_t(hh) * score_dim, qi + size_t(hh + 1) * score_dim,
                                  qi + size_t(hh + 2) * score_dim, qi + size_t(hh + 3) * score_dim};
            float s4[4];
            simd::dot4(qs, r, score_dim, s4);
            for (int k = 0; k < 4; ++k) p[size_t(hh + k) * max_len + t] = s4[k];
          }
          for (; hh < H; ++hh)
            p[size_t(hh) * max_len + t] = simd::dot(qi + size_t(hh) * score_dim, r, score_dim);
        }
      } else {
        for (int hh = 0; hh < H; ++hh) {
          const float* qh = q.data() + size_t(i) * qw + hh * dqk;
          for (int t = 0; t < len; ++t)
            p[size_t(hh) * max_len + t] =
                D.scale * simd::dot(qh, base + size_t(t) * width + hh * dqk, dqk);
        }
      }
      for (int hh = 0; hh < H; ++hh) {
        float* ph = p + size_t(hh) * max_len;
        // Row t's value: the latent itself (absorbed) or head hh's expanded V (naive).
        const float* values = absorbed ? base : base + H * dqk + hh * dv;
        float* o = absorbed ? olat.data() + (size_t(i) * H + hh) * rkv
                            : att_out + size_t(i) * H * dv + hh * dv;
        const double z = simd::exp_store_sum(ph, ph, len, simd::max(ph, len));
        const float inv = static_cast<float>(1.0 / z);
        std::fill(o, o + out_dim, 0.0f);
        for (int t = 0; t < len; ++t)
          simd::axpy(ph[t] * inv, values + size_t(t) * width, o, out_dim);
      }
    }
  }
  if (absorbed) {
    // out[n, h, dv] = olat[n, h, rkv] · W_v[h]ᵀ with W_v[h] = wkvb rows h*(dn+dv)+dn .. +dv.
    for (int hh = 0; hh < H; ++hh) {
      const float* wv = wkvb + (size_t(hh) * (dn + dv) + dn) * rkv;  // [dv, rkv]
      if (n <= kFewRows)
        few_rows_xwt(olat.data() + hh * rkv, H * rkv, wv, att_out + hh * dv, H * dv, n, rkv, dv,
                     0.0f);
      else
        gemm(false, true, n, dv, rkv, 1.0f, olat.data() + hh * rkv, H * rkv, wv, rkv, 0.0f,
             att_out + hh * dv, H * dv);
    }
  }
}

int InferenceSession::Impl::block(int l, const LayerWeights& lw, const int32_t* slots,
                                  const int32_t* positions, int n, const uint8_t* keep) {
  const int d = D.d, H = D.H, qw = H * D.dqk, ckw = D.rkv + D.dr, kvw = H * (D.dn + D.dv);
  rmsnorm_forward(x.data(), lw.input_norm, h.data(), rstd.data(), n, d, D.eps);
  linear(h.data(), lw.attn.kv_a_proj, kva.data(), n, d, ckw);  // [n, rkv+dr]
  rope_forward(kva.data() + D.rkv, positions, n, 1, D.dr, ckw, D.dr, rope.cos.data(),
               rope.sin.data());
  for (int i = 0; i < n; ++i)
    rmsnorm_forward(&kva[size_t(i) * ckw], lw.attn.kv_a_norm, &cn[size_t(i) * D.rkv], &rstd[i],
                    1, D.rkv, D.eps);
  if (mode == AttentionMode::kAbsorbed) {
    for (int i = 0; i < n; ++i) {
      float* r = row(l, slots[i], positions[i]);
      std::memcpy(r, &cn[size_t(i) * D.rkv], sizeof(float) * D.rkv);
      std::memcpy(r + D.rkv, &kva[size_t(i) * ckw + D.rkv], sizeof(float) * D.dr);
    }
  } else {
    matmul_xwt(cn.data(), lw.attn.kv_b_proj, tmp.data(), n, D.rkv, kvw);  // [n, H*(dn+dv)]
    for (int i = 0; i < n; ++i) {
      float* r = row(l, slots[i], positions[i]);
      const float* kv = &tmp[size_t(i) * kvw];
      const float* kpe = &kva[size_t(i) * ckw + D.rkv];
      for (int hh = 0; hh < H; ++hh) {
        std::memcpy(r + hh * D.dqk, kv + hh * (D.dn + D.dv), sizeof(float) * D.dn);
        std::memcpy(r + hh * D.dqk + D.dn, kpe, sizeof(float) * D.dr);
        std::memcpy(r + H * D.dqk + hh * D.dv, kv + hh * (D.dn + D.dv) + D.dn,
                    sizeof(float) * D.dv);
      }
    }
  }
  if (keep) {
    // Pack the kept rows of x and h (and their slots and positions) to the front.
    kept_slots.clear();
    kept_pos.clear();
    for (int i = 0; i < n; ++i) {
      if (!keep[i]) continue;
      const size_t k = kept_slots.size();
      if (k != size_t(i)) {
        std::memcpy(&x[k * d], &x[size_t(i) * d], sizeof(float) * d);
        std::memcpy(&h[k * d], &h[size_t(i) * d], sizeof(float) * d);
      }
      kept_slots.push_back(slots[i]);
      kept_pos.push_back(positions[i]);
    }
    n = static_cast<int>(kept_slots.size());
    slots = kept_slots.data();
    positions = kept_pos.data();
  }
  if (D.rq > 0) {
    linear(h.data(), lw.attn.q_a_proj, tmp.data(), n, d, D.rq);
    rmsnorm_forward(tmp.data(), lw.attn.q_a_norm, tmp.data(), rstd.data(), n, D.rq, D.eps);
    linear(tmp.data(), lw.attn.q_b_proj, q.data(), n, D.rq, qw);
  } else {
    linear(h.data(), lw.attn.q_proj, q.data(), n, d, qw);  // [n, H*dqk]
  }
  rope_forward(q.data() + D.dn, positions, n, H, D.dr, qw, D.dqk, rope.cos.data(),
               rope.sin.data());
  attention(l, lw, slots, positions, n, att.data());
  linear(att.data(), lw.attn.o_proj, x.data(), n, H * D.dv, d, 1.0f);  // residual
  rmsnorm_forward(x.data(), lw.post_attn_norm, h.data(), rstd.data(), n, d, D.eps);
  if (fp8)
    ffn_fp8(lw, h.data(), tmp.data(), n);
  else
    ffn_forward(D, c, lw, h.data(), tmp.data(), n, 1, n, 0.0f, ffn);
  for (int64_t j = 0; j < int64_t(n) * d; ++j) x[j] += tmp[j];
  return n;
}

void InferenceSession::Impl::head(const float* norm, int n, const uint8_t* logits_rows,
                                  float* logits) {
  const int d = D.d;
  rows.clear();
  for (int i = 0; i < n; ++i)
    if (!logits_rows || logits_rows[i]) rows.push_back(i);
  const int nr = static_cast<int>(rows.size());
  grow(hN, size_t(nr) * d);
  for (int r = 0; r < nr; ++r)
    std::memcpy(&hN[size_t(r) * d], &x[size_t(rows[r]) * d], sizeof(float) * d);
  rmsnorm_forward(hN.data(), norm, hN.data(), rstd.data(), nr, d, D.eps);
  xwt(hN.data(), model.w().lm_head, logits, nr, d, D.V);  // [nr, V]
}

InferenceSession::InferenceSession(const Model& model, int max_seqs, int max_len,
                                   AttentionMode mode)
    : impl_(std::make_unique<Impl>(model, max_seqs, max_len, mode)) {}
InferenceSession::~InferenceSession() = default;

void InferenceSession::reset_slot(int slot) {
  SEEKR_CHECK(slot >= 0 && slot < impl_->max_seqs);
  impl_->len[slot] = 0;
  impl_->mtp_len[slot] = 0;
}
void InferenceSession::copy_slot(int src, int dst) {
  Impl& m = *impl_;
  SEEKR_REQUIRE(src >= 0 && src < m.max_seqs && dst >= 0 && dst < m.max_seqs,
                "copy_slot: slots ", src, " -> ", dst, " out of range (", m.max_seqs, ")");
  if (src == dst) return;
  for (int l = 0; l < static_cast<int>(m.cache.size()); ++l) {
    const size_t n = size_t(l == m.mtp_layer ? m.mtp_len[src] : m.len[src]) * m.width;
    std::copy(m.row(l, src, 0), m.row(l, src, 0) + n, m.row(l, dst, 0));
  }
  m.len[dst] = m.len[src];
  m.mtp_len[dst] = m.mtp_len[src];
}
void InferenceSession::truncate(int slot, int length) {
  Impl& m = *impl_;
  SEEKR_REQUIRE(slot >= 0 && slot < m.max_seqs, "truncate: slot ", slot, " out of range");
  SEEKR_REQUIRE(length >= 0, "truncate: negative length ", length);
  m.len[slot] = std::min(m.len[slot], length);
  m.mtp_len[slot] = std::min(m.mtp_len[slot], length);
}

bool InferenceSession::has_mtp() const { return impl_->mtp_layer >= 0; }
int InferenceSession::length(int slot) const { return impl_->len.at(slot); }
int InferenceSession::mtp_length(int slot) const { return impl_->mtp_len.at(slot); }
int InferenceSession::max_seqs() const { return impl_->max_seqs; }
int InferenceSession::max_len() const { return impl_->max_len; }
int InferenceSession::cache_floats_per_token_per_layer() const { return impl_->width; }
size_t InferenceSession::cache_bytes_per_token() const {
  return size_t(impl_->width) * sizeof(float) * impl_->c.num_hidden_layers;
}

void InferenceSession::forward(const int32_t* tokens, const int32_t* slots,
                               const int32_t* positions, int n, float* logits,
                               const uint8_t* logits_rows, float* hidden) {
  Impl& m = *impl_;
  const ModelWeights& w = m.model.w();
  const int d = m.D.d;
  // Validate the request before touching the cache.
  m.check_rows(tokens, slots, positions, n, m.len);
  m.grow_scratch(n);
  for (int i = 0; i < n; ++i)
    std::memcpy(&m.x[size_t(i) * d], w.embed + size_t(tokens[i]) * d, sizeof(float) * d);
  for (int l = 0; l < m.c.num_hidden_layers; ++l) m.block(l, w.layers[l], slots, positions, n);
  for (int i = 0; i < n; ++i) m.len[slots[i]] = positions[i] + 1;
  if (hidden) std::memcpy(hidden, m.x.data(), sizeof(float) * size_t(n) * d);
  m.head(w.final_norm, n, logits_rows, logits);
}

void InferenceSession::mtp_forward(const float* hidden, const int32_t* next_tokens,
                                   const int32_t* slots, const int32_t* positions, int n,
                                   float* logits, const uint8_t* logits_rows) {
  Impl& m = *impl_;
  SEEKR_REQUIRE(m.mtp_layer >= 0, "mtp_forward: the model has no MTP module");
  const ModelWeights& w = m.model.w();
  const LayerWeights& lw = w.layers[m.mtp_layer];
  const int d = m.D.d;
  m.check_rows(next_tokens, slots, positions, n, m.mtp_len);
  m.grow_scratch(n);
  // The block's input as in training: eh_proj · [enorm(embed(next)); hnorm(hidden)].
  grow(m.cat, size_t(n) * 2 * d);  // [n, 2d]
  for (int i = 0; i < n; ++i) {
    float* ci = &m.cat[size_t(i) * 2 * d];
    rmsnorm_forward(w.embed + size_t(next_tokens[i]) * d, lw.enorm, ci, &m.rstd[i], 1, d,
                    m.D.eps);
    rmsnorm_forward(hidden + size_t(i) * d, lw.hnorm, ci + d, &m.rstd[i], 1, d, m.D.eps);
  }
  m.linear(m.cat.data(), lw.eh_proj, m.x.data(), n, 2 * d, d);  // [n, d]
  for (int i = 0; i < n; ++i) m.mtp_len[slots[i]] = positions[i] + 1;
  // One block, so rows without logits only need their cache entries.
  const int kept = m.block(m.mtp_layer, lw, slots, positions, n, logits_rows);
  m.head(lw.head_norm, kept, nullptr, logits);
}

}  // namespace seekr
