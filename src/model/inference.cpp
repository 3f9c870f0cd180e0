// Inference over the MLA cache. Absorbed mode caches the normalised latent c (kv_lora_rank)
// and the shared RoPE key (qk_rope_head_dim) per token and folds kv_b_proj into the query and
// the output; naive mode caches expanded per-head keys and values. Both must agree.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "model/block.h"
#include "model/model.h"

namespace seekr {

struct InferenceSession::Impl {
  const Model& model;
  const ModelConfig& c;
  Dims D;
  RopeTables rope;
  int max_seqs, max_len;
  AttentionMode mode;
  int width;                            // cache floats per token per layer
  std::vector<std::vector<float>> cache;  // per main layer: [max_seqs, max_len, width]
  std::vector<int> len;                 // positions held per slot
  // scratch, grown on demand
  std::vector<float> x, h, q, kva, cn, kv, qcat, olat, att, tmp, hN, lg;
  FfnActs ffn;

  Impl(const Model& m, int seqs, int length, AttentionMode md)
      : model(m), c(m.config()), D(m.config()), rope(m.config()), max_seqs(seqs),
        max_len(length), mode(md) {
    SEEKR_REQUIRE(seqs > 0 && length > 0, "inference session needs positive slots and length");
    SEEKR_REQUIRE(length <= c.max_position_embeddings, "max length ", length,
                  " exceeds the model's max_position_embeddings ", c.max_position_embeddings);
    width = mode == AttentionMode::kAbsorbed ? D.rkv + D.dr : D.H * (D.dqk + D.dv);
    cache.resize(c.num_hidden_layers);
    for (auto& layer : cache) layer.assign(size_t(seqs) * length * width, 0.0f);
    len.assign(seqs, 0);
  }

  float* row(int layer, int slot, int pos) {
    return cache[layer].data() + (size_t(slot) * max_len + pos) * width;
  }

  void attention(int layer, const LayerWeights& w, const int32_t* slots, const int32_t* pos,
                 int n, float* att_out);
};

template <typename T>
static void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
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
    for (int hh = 0; hh < H; ++hh)
      gemm(false, false, n, rkv, dn, D.scale, q.data() + hh * dqk, qw,
           wkvb + size_t(hh) * (dn + dv) * rkv, rkv, 0.0f, qcat.data() + hh * cw, H * cw);
    for (int i = 0; i < n; ++i)
      for (int hh = 0; hh < H; ++hh) {
        const float* qp = q.data() + size_t(i) * qw + hh * dqk + dn;
        float* dst = qcat.data() + (size_t(i) * H + hh) * cw + rkv;
        for (int j = 0; j < dr; ++j) dst[j] = D.scale * qp[j];
      }
  }
  const int score_dim = absorbed ? rkv + dr : dqk;  // floats in each score's dot product
  const int out_dim = absorbed ? rkv : dv;
#pragma omp parallel
  {
    std::vector<float> p(size_t(H) * max_len);  // [H, len] scores, then probabilities
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
        float* ph = p.data() + size_t(hh) * max_len;
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
    for (int hh = 0; hh < H; ++hh)
      gemm(false, true, n, dv, rkv, 1.0f, olat.data() + hh * rkv, H * rkv,
           wkvb + (size_t(hh) * (dn + dv) + dn) * rkv, rkv, 0.0f, att_out + hh * dv, H * dv);
  }
}

InferenceSession::InferenceSession(const Model& model, int max_seqs, int max_len,
                                   AttentionMode mode)
    : impl_(std::make_unique<Impl>(model, max_seqs, max_len, mode)) {}
InferenceSession::~InferenceSession() = default;

void InferenceSession::reset_slot(int slot) {
  SEEKR_CHECK(slot >= 0 && slot < impl_->max_seqs);
  impl_->len[slot] = 0;
}
void InferenceSession::copy_slot(int src, int dst) {
  Impl& m = *impl_;
  SEEKR_REQUIRE(src >= 0 && src < m.max_seqs && dst >= 0 && dst < m.max_seqs,
                "copy_slot: slots ", src, " -> ", dst, " out of range (", m.max_seqs, ")");
  if (src == dst) return;
  const size_t n = size_t(m.len[src]) * m.width;
  for (int l = 0; l < m.c.num_hidden_layers; ++l)
    std::copy(m.row(l, src, 0), m.row(l, src, 0) + n, m.row(l, dst, 0));
  m.len[dst] = m.len[src];
}

int InferenceSession::length(int slot) const { return impl_->len.at(slot); }
int InferenceSession::max_seqs() const { return impl_->max_seqs; }
int InferenceSession::max_len() const { return impl_->max_len; }
int InferenceSession::cache_floats_per_token_per_layer() const { return impl_->width; }
size_t InferenceSession::cache_bytes_per_token() const {
  return size_t(impl_->width) * sizeof(float) * impl_->c.num_hidden_layers;
}

void InferenceSession::forward(const int32_t* tokens, const int32_t* slots,
                               const int32_t* positions, int n, float* logits,
                               const uint8_t* logits_rows) {
  Impl& m = *impl_;
  const ModelConfig& c = m.c;
  const ModelWeights& w = m.model.w();
  const Dims& D = m.D;
  const int d = D.d, H = D.H, qw = H * D.dqk, ckw = D.rkv + D.dr, kvw = H * (D.dn + D.dv);
  // Validate the request before touching the cache.
  {
    std::vector<int> next(m.len);
    for (int i = 0; i < n; ++i) {
      SEEKR_REQUIRE(slots[i] >= 0 && slots[i] < m.max_seqs, "slot ", slots[i], " out of range");
      SEEKR_REQUIRE(tokens[i] >= 0 && tokens[i] < D.V, "token id ", tokens[i],
                    " outside the vocabulary (", D.V, ")");
      SEEKR_REQUIRE(positions[i] == next[slots[i]], "slot ", slots[i], " expects position ",
                    next[slots[i]], ", got ", positions[i]);
      SEEKR_REQUIRE(positions[i] < m.max_len, "slot ", slots[i], " is full (max length ",
                    m.max_len, ")");
      next[slots[i]]++;
    }
  }
  grow(m.x, size_t(n) * d);
  grow(m.h, size_t(n) * d);
  grow(m.q, size_t(n) * qw);
  grow(m.kva, size_t(n) * ckw);
  grow(m.cn, size_t(n) * D.rkv);
  grow(m.att, size_t(n) * H * D.dv);
  grow(m.tmp, size_t(n) * std::max({d, D.rq, kvw}));
  std::vector<float> rstd(n);
  for (int i = 0; i < n; ++i)
    std::memcpy(&m.x[size_t(i) * d], w.embed + size_t(tokens[i]) * d, sizeof(float) * d);

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    rmsnorm_forward(m.x.data(), lw.input_norm, m.h.data(), rstd.data(), n, d, D.eps);
    if (D.rq > 0) {
      matmul_xwt(m.h.data(), lw.attn.q_a_proj, m.tmp.data(), n, d, D.rq);
      rmsnorm_forward(m.tmp.data(), lw.attn.q_a_norm, m.tmp.data(), rstd.data(), n, D.rq, D.eps);
      matmul_xwt(m.tmp.data(), lw.attn.q_b_proj, m.q.data(), n, D.rq, qw);
    } else {
      matmul_xwt(m.h.data(), lw.attn.q_proj, m.q.data(), n, d, qw);  // [n, H*dqk]
    }
    rope_forward(m.q.data() + D.dn, positions, n, H, D.dr, qw, D.dqk, m.rope.cos.data(),
                 m.rope.sin.data());
    matmul_xwt(m.h.data(), lw.attn.kv_a_proj, m.kva.data(), n, d, ckw);  // [n, rkv+dr]
    rope_forward(m.kva.data() + D.rkv, positions, n, 1, D.dr, ckw, D.dr, m.rope.cos.data(),
                 m.rope.sin.data());
    for (int i = 0; i < n; ++i)
      rmsnorm_forward(&m.kva[size_t(i) * ckw], lw.attn.kv_a_norm, &m.cn[size_t(i) * D.rkv],
                      &rstd[i], 1, D.rkv, D.eps);
    if (m.mode == AttentionMode::kAbsorbed) {
      for (int i = 0; i < n; ++i) {
        float* r = m.row(l, slots[i], positions[i]);
        std::memcpy(r, &m.cn[size_t(i) * D.rkv], sizeof(float) * D.rkv);
        std::memcpy(r + D.rkv, &m.kva[size_t(i) * ckw + D.rkv], sizeof(float) * D.dr);
      }
    } else {
      matmul_xwt(m.cn.data(), lw.attn.kv_b_proj, m.tmp.data(), n, D.rkv, kvw);  // [n, H*(dn+dv)]
      for (int i = 0; i < n; ++i) {
        float* r = m.row(l, slots[i], positions[i]);
        const float* kv = &m.tmp[size_t(i) * kvw];
        const float* kpe = &m.kva[size_t(i) * ckw + D.rkv];
        for (int hh = 0; hh < H; ++hh) {
          std::memcpy(r + hh * D.dqk, kv + hh * (D.dn + D.dv), sizeof(float) * D.dn);
          std::memcpy(r + hh * D.dqk + D.dn, kpe, sizeof(float) * D.dr);
          std::memcpy(r + H * D.dqk + hh * D.dv, kv + hh * (D.dn + D.dv) + D.dn,
                      sizeof(float) * D.dv);
        }
      }
    }
    m.attention(l, lw, slots, positions, n, m.att.data());
    matmul_xwt(m.att.data(), lw.attn.o_proj, m.x.data(), n, H * D.dv, d, 1.0f);  // residual
    rmsnorm_forward(m.x.data(), lw.post_attn_norm, m.h.data(), rstd.data(), n, d, D.eps);
    ffn_forward(D, c, lw, m.h.data(), m.tmp.data(), n, 1, n, 0.0f, m.ffn);
    for (int64_t j = 0; j < int64_t(n) * d; ++j) m.x[j] += m.tmp[j];
  }
  for (int i = 0; i < n; ++i) m.len[slots[i]] = positions[i] + 1;

  // Head only for the requested rows.
  std::vector<int> rows;
  for (int i = 0; i < n; ++i)
    if (!logits_rows || logits_rows[i]) rows.push_back(i);
  const int nr = static_cast<int>(rows.size());
  grow(m.hN, size_t(nr) * d);
  for (int r = 0; r < nr; ++r)
    std::memcpy(&m.hN[size_t(r) * d], &m.x[size_t(rows[r]) * d], sizeof(float) * d);
  rmsnorm_forward(m.hN.data(), w.final_norm, m.hN.data(), rstd.data(), nr, d, D.eps);
  matmul_xwt(m.hN.data(), w.lm_head, logits, nr, d, D.V);  // [nr, V]
}

}  // namespace seekr
