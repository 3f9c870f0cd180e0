#include "model/block.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "kernels/linear.h"
#include "kernels/ops.h"

namespace seekr {

Dims::Dims(const ModelConfig& c)
    : d(c.hidden_size),
      H(c.num_attention_heads),
      dn(c.qk_nope_head_dim),
      dr(c.qk_rope_head_dim),
      dv(c.v_head_dim),
      dqk(c.qk_nope_head_dim + c.qk_rope_head_dim),
      rq(c.q_lora_rank),
      rkv(c.kv_lora_rank),
      I(c.intermediate_size),
      E(c.n_routed_experts),
      K(c.num_experts_per_tok),
      Im(c.moe_intermediate_size),
      Is(c.n_shared_experts * c.moe_intermediate_size),
      V(c.vocab_size),
      eps(static_cast<float>(c.rms_norm_eps)),
      scale(c.softmax_scale()) {}

RoutingParams routing_params(const ModelConfig& c) {
  RoutingParams p;
  p.E = c.n_routed_experts;
  p.K = c.num_experts_per_tok;
  p.n_group = c.n_group;
  p.topk_group = c.topk_group;
  p.group_top2_sum = c.topk_method == TopkMethod::kNoauxTc;
  p.sigmoid = c.scoring_func == ScoringFunc::kSigmoid;
  p.norm_topk = c.norm_topk_prob;
  p.scale = static_cast<float>(c.routed_scaling_factor);
  return p;
}

RopeTables::RopeTables(const ModelConfig& c) {
  const int half = c.qk_rope_head_dim / 2;
  const auto inv = c.rope_inv_freq();
  cos.resize(size_t(c.max_position_embeddings) * half);
  sin.resize(cos.size());
  rope_tables(inv.data(), half, c.max_position_embeddings, c.rope_mscale(), cos.data(), sin.data());
}

namespace {

template <typename T>
void ensure(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

void add_into(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

// Sorts each token's K grouped rows ([N, K]) ascending: rows are grouped by expert, so this is
// increasing expert order.
void sort_rows_by_expert(int32_t* row_of, int N, int K) {
  for (int t = 0; t < N; ++t) std::sort(row_of + size_t(t) * K, row_of + size_t(t + 1) * K);
}

// SwiGLU MLP over N rows: g, u, a are [N, inter] saved for backward; out[N, d] (+)= a·downᵀ.
void mlp_forward(GemmPrecision p, const MlpWeights& w, const float* h, float* out, int N, int d,
                 int inter, float* g, float* u, float* a, float beta) {
  linear_forward(p, h, w.gate, g, N, d, inter);  // [N, inter]
  linear_forward(p, h, w.up, u, N, d, inter);    // [N, inter]
  swiglu_forward(g, u, a, int64_t(N) * inter);
  linear_forward(p, a, w.down, out, N, inter, d, beta);  // [N, d]
}

// dout[N, d] → dh[N, d] (beta: overwrite 0 / accumulate 1); scratch ≥ 2·N·inter floats.
void mlp_backward(GemmPrecision p, const MlpWeights& w, const MlpWeights& gw, const float* h,
                  const float* dout, float* dh, int N, int d, int inter, const float* g,
                  const float* u, const float* a, float* scratch, float beta) {
  float* da = scratch;                       // [N, inter]
  float* dgu = scratch + size_t(N) * inter;  // [N, inter] dg, then du reuses da
  linear_wgrad(p, dout, a, gw.down, N, inter, d);
  linear_dgrad(p, dout, w.down, da, N, inter, d);
  swiglu_backward(da, g, u, dgu, da, int64_t(N) * inter);  // dg → dgu, du → da (in place)
  linear_wgrad(p, dgu, h, gw.gate, N, d, inter);
  linear_wgrad(p, da, h, gw.up, N, d, inter);
  linear_dgrad(p, dgu, w.gate, dh, N, d, inter, beta);
  linear_dgrad(p, da, w.up, dh, N, d, inter, 1.0f);
}

}  // namespace

void ffn_forward(const Dims& D, const ModelConfig& c, const LayerWeights& w, const float* h,
                 float* out, int N, int B, int Tb, float balance_alpha, FfnActs& a) {
  const int d = D.d;
  if (!w.is_moe) {
    ensure(a.g, size_t(N) * D.I);
    ensure(a.u, size_t(N) * D.I);
    ensure(a.a, size_t(N) * D.I);
    mlp_forward(D.linear, w.mlp, h, out, N, d, D.I, a.g.data(), a.u.data(), a.a.data(), 0.0f);
    return;
  }
  const int E = D.E, K = D.K, Im = D.Im;
  ensure(a.rlogits, size_t(N) * E);
  ensure(a.scores, size_t(N) * E);
  ensure(a.weights, size_t(N) * K);
  ensure(a.idx, size_t(N) * K);
  matmul_xwt(h, w.router, a.rlogits.data(), N, d, E);  // [N, E]
  const RoutingParams rp = routing_params(c);
  route_forward(rp, a.rlogits.data(), w.correction_bias, a.scores.data(), a.idx.data(),
                a.weights.data(), N);

  // Group the (token, slot) pairs by expert: a counting sort keeps token order inside an expert.
  a.offset.assign(E + 1, 0);
  a.load.assign(E, 0);
  for (int64_t i = 0; i < int64_t(N) * K; ++i) a.load[a.idx[i]]++;
  for (int e = 0; e < E; ++e) a.offset[e + 1] = a.offset[e] + static_cast<int32_t>(a.load[e]);
  ensure(a.row_token, size_t(N) * K);
  ensure(a.row_slot, size_t(N) * K);
  ensure(a.row_of, size_t(N) * K);
  {
    a.fill.assign(a.offset.begin(), a.offset.end() - 1);
    std::vector<int32_t>& fill = a.fill;
    for (int t = 0; t < N; ++t)
      for (int k = 0; k < K; ++k) {
        const int r = fill[a.idx[size_t(t) * K + k]]++;
        a.row_token[r] = t;
        a.row_slot[r] = k;
        a.row_of[size_t(t) * K + k] = r;  // sorted below
      }
  }
  const int64_t rows = int64_t(N) * K;
  ensure(a.xe, rows * d);
  ensure(a.ge, rows * Im);
  ensure(a.ue, rows * Im);
  ensure(a.ae, rows * Im);
  ensure(a.ye, rows * d);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&a.xe[r * d], h + size_t(a.row_token[r]) * d, sizeof(float) * d);
  if (D.Is > 0) {
    ensure(a.gs, size_t(N) * D.Is);
    ensure(a.us, size_t(N) * D.Is);
    ensure(a.as, size_t(N) * D.Is);
  }
  // The shared experts (task 0, the largest) and every routed expert are independent products:
  // threads take whole tasks, each running single-threaded sgemm, instead of splitting every
  // small product over the threads with a barrier after each.
  {
    const SingleThreadedBlas blas_guard;
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task <= E; ++task) {
      if (task == 0) {
        // Shared experts write `out`; routed outputs are added below with their gate weights.
        if (D.Is > 0)
          mlp_forward(D.linear, w.shared, h, out, N, d, D.Is, a.gs.data(), a.us.data(), a.as.data(),
                      0.0f);  // [N, d]
        else
          std::fill(out, out + size_t(N) * d, 0.0f);
        continue;
      }
      const int e = task - 1;
      const int n = a.offset[e + 1] - a.offset[e];
      if (n == 0) continue;
      const size_t r0 = a.offset[e];
      mlp_forward(D.linear, w.experts[e], &a.xe[r0 * d], &a.ye[r0 * d], n, d, Im, &a.ge[r0 * Im],
                  &a.ue[r0 * Im], &a.ae[r0 * Im], 0.0f);  // [n, d]
    }
  }
  // Each token's routed outputs are added in increasing expert order (InferenceSession adds
  // them in the same order, so the two paths agree bit for bit).
  sort_rows_by_expert(a.row_of.data(), N, K);
#pragma omp parallel for schedule(static)
  for (int t = 0; t < N; ++t) {
    float* o = out + size_t(t) * d;
    for (int k = 0; k < K; ++k) {
      const int r = a.row_of[size_t(t) * K + k];
      const float wt = a.weights[size_t(t) * K + a.row_slot[r]];
      const float* y = &a.ye[size_t(r) * d];
      for (int j = 0; j < d; ++j) o[j] += wt * y[j];
    }
  }

  // Sequence-wise balance loss (V3 eqs. 17-20) and its gradient on the scores.
  a.balance_loss = 0;
  if (balance_alpha > 0) {
    SEEKR_CHECK(B * Tb == N);
    ensure(a.dscores_balance, size_t(N) * E);
    a.bal_f.resize(E);
    a.bal_P.resize(E);
    std::vector<double>& f = a.bal_f;
    std::vector<double>& P = a.bal_P;
    for (int b = 0; b < B; ++b) {
      std::fill(f.begin(), f.end(), 0.0);
      std::fill(P.begin(), P.end(), 0.0);
      for (int t = b * Tb; t < (b + 1) * Tb; ++t) {
        const float* s = &a.scores[size_t(t) * E];
        double S = 0;
        for (int e = 0; e < E; ++e) S += s[e];
        for (int e = 0; e < E; ++e) P[e] += s[e] / S / Tb;
        for (int k = 0; k < K; ++k) f[a.idx[size_t(t) * K + k]] += double(E) / (double(K) * Tb);
      }
      double loss = 0;
      for (int e = 0; e < E; ++e) loss += f[e] * P[e];
      a.balance_loss += balance_alpha * loss / B;
      // dL/ds'_{e,t} = alpha f_e / (Tb B); through s' = s / S.
      for (int t = b * Tb; t < (b + 1) * Tb; ++t) {
        const float* s = &a.scores[size_t(t) * E];
        float* ds = &a.dscores_balance[size_t(t) * E];
        double S = 0, dot = 0;
        for (int e = 0; e < E; ++e) S += s[e];
        for (int e = 0; e < E; ++e) dot += f[e] * s[e] / S;
        const double coef = balance_alpha / (double(Tb) * B);
        for (int e = 0; e < E; ++e) ds[e] = static_cast<float>(coef * (f[e] - dot) / S);
      }
    }
  } else {
    a.dscores_balance.clear();
  }
}

void ffn_backward(const Dims& D, const ModelConfig& c, const LayerWeights& w, const LayerWeights& g,
                  const float* h, const float* dout, float* dh, int N, FfnActs& a,
                  std::vector<float>& scratch) {
  const int d = D.d;
  if (!w.is_moe) {
    ensure(scratch, size_t(2) * N * D.I);
    mlp_backward(D.linear, w.mlp, g.mlp, h, dout, dh, N, d, D.I, a.g.data(), a.u.data(), a.a.data(),
                 scratch.data(), 0.0f);
    return;
  }
  const int E = D.E, K = D.K, Im = D.Im;
  const int64_t rows = int64_t(N) * K;
  // Routed experts. dye = w·dout[token]; dweight = dout[token]·ye.
  ensure(a.dweights, size_t(N) * K);
  float* dweights = a.dweights.data();
  const size_t need = rows * d + 2 * rows * Im + rows * d + size_t(2) * N * D.Is;
  ensure(scratch, need);
  float* dye = scratch.data();        // [rows, d]
  float* sc = dye + rows * d;         // [rows, 2*Im] per-expert mlp scratch
  float* dxe = sc + 2 * rows * Im;    // [rows, d]
  float* shared_sc = dxe + rows * d;  // [N, 2*Is]
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int t = a.row_token[r];
    const float* dy = dout + size_t(t) * d;
    const float* y = &a.ye[r * d];
    const float wt = a.weights[size_t(t) * K + a.row_slot[r]];
    double dot = 0;
    for (int j = 0; j < d; ++j) {
      dye[r * d + j] = wt * dy[j];
      dot += double(dy[j]) * y[j];
    }
    dweights[size_t(t) * K + a.row_slot[r]] = static_cast<float>(dot);  // every slot is written
  }
  // As in the forward: the shared experts and each routed expert are one task each.
  {
    const SingleThreadedBlas blas_guard;
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task <= E; ++task) {
      if (task == 0) {
        if (D.Is > 0)
          mlp_backward(D.linear, w.shared, g.shared, h, dout, dh, N, d, D.Is, a.gs.data(),
                       a.us.data(), a.as.data(), shared_sc, 0.0f);
        else
          std::fill(dh, dh + size_t(N) * d, 0.0f);
        continue;
      }
      const int e = task - 1;
      const int n = a.offset[e + 1] - a.offset[e];
      if (n == 0) continue;
      const size_t r0 = a.offset[e];
      mlp_backward(D.linear, w.experts[e], g.experts[e], &a.xe[r0 * d], &dye[r0 * d], &dxe[r0 * d],
                   n, d, Im, &a.ge[r0 * Im], &a.ue[r0 * Im], &a.ae[r0 * Im], sc + 2 * r0 * Im,
                   0.0f);
    }
  }
#pragma omp parallel for schedule(static)
  for (int t = 0; t < N; ++t)  // row_of is in increasing expert order (ffn_forward)
    for (int k = 0; k < K; ++k)
      add_into(dh + size_t(t) * d, &dxe[size_t(a.row_of[size_t(t) * K + k]) * d], d);
  // Router: gate weights (and balance loss) → router logits → router weight and input.
  ensure(a.drouter, size_t(N) * E);
  float* drl = a.drouter.data();  // [N, E]
  route_backward(routing_params(c), a.scores.data(), a.idx.data(), dweights,
                 a.dscores_balance.empty() ? nullptr : a.dscores_balance.data(), drl, N);
  matmul_dyt_x(drl, h, g.router, N, d, E);
  matmul_dy_w(drl, w.router, dh, N, d, E, 1.0f);
}

void block_forward(const Dims& D, const ModelConfig& c, const RopeTables& rope,
                   const LayerWeights& w, const float* x_in, float* x_out, int B, int Tb,
                   const int32_t* pos, float balance_alpha, BlockActs& a) {
  const int N = B * Tb, d = D.d, H = D.H;
  const int qw = H * D.dqk, kvw = H * (D.dn + D.dv), ckw = D.rkv + D.dr;
  ensure(a.x_in, size_t(N) * d);
  ensure(a.h1, size_t(N) * d);
  ensure(a.rstd1, N);
  ensure(a.q, size_t(N) * qw);
  ensure(a.kva, size_t(N) * ckw);
  ensure(a.c_rstd, N);
  ensure(a.cn, size_t(N) * D.rkv);
  ensure(a.kv, size_t(N) * kvw);
  ensure(a.k, size_t(N) * qw);
  ensure(a.v, size_t(N) * H * D.dv);
  ensure(a.probs, size_t(B) * H * Tb * Tb);
  ensure(a.att, size_t(N) * H * D.dv);
  ensure(a.x_mid, size_t(N) * d);
  ensure(a.h2, size_t(N) * d);
  ensure(a.rstd2, N);
  std::memcpy(a.x_in.data(), x_in, sizeof(float) * N * d);

  rmsnorm_forward(x_in, w.input_norm, a.h1.data(), a.rstd1.data(), N, d, D.eps);  // [N, d]
  if (D.rq > 0) {
    ensure(a.qa, size_t(N) * D.rq);
    ensure(a.qa_rstd, N);
    ensure(a.qan, size_t(N) * D.rq);
    linear_forward(D.linear, a.h1.data(), w.attn.q_a_proj, a.qa.data(), N, d, D.rq);  // [N, rq]
    rmsnorm_forward(a.qa.data(), w.attn.q_a_norm, a.qan.data(), a.qa_rstd.data(), N, D.rq, D.eps);
    linear_forward(D.linear, a.qan.data(), w.attn.q_b_proj, a.q.data(), N, D.rq, qw);  // [N, H*dqk]
  } else {
    linear_forward(D.linear, a.h1.data(), w.attn.q_proj, a.q.data(), N, d, qw);  // [N, H*dqk]
  }
  // q_pe: [N, H, dr] inside q at offset dn of every head.
  rope_forward(a.q.data() + D.dn, pos, N, H, D.dr, qw, D.dqk, rope.cos.data(), rope.sin.data());
  linear_forward(D.linear, a.h1.data(), w.attn.kv_a_proj, a.kva.data(), N, d, ckw);  // [N, rkv+dr]
  rope_forward(a.kva.data() + D.rkv, pos, N, 1, D.dr, ckw, D.dr, rope.cos.data(),
               rope.sin.data());  // k_pe: [N, 1, dr]
  // Latent normalisation reads the first rkv columns of each kva row.
  for (int n = 0; n < N; ++n)
    rmsnorm_forward(&a.kva[size_t(n) * ckw], w.attn.kv_a_norm, &a.cn[size_t(n) * D.rkv],
                    &a.c_rstd[n], 1, D.rkv, D.eps);
  linear_forward(D.linear, a.cn.data(), w.attn.kv_b_proj, a.kv.data(), N, D.rkv,
                 kvw);  // [N, H*(dn+dv)]
  // Expand K = [k_nope | k_pe] per head and gather V contiguous per head.
  for (int n = 0; n < N; ++n) {
    const float* kvr = &a.kv[size_t(n) * kvw];
    const float* kpe = &a.kva[size_t(n) * ckw + D.rkv];
    float* kr = &a.k[size_t(n) * qw];
    float* vr = &a.v[size_t(n) * H * D.dv];
    for (int h = 0; h < H; ++h) {
      std::memcpy(kr + h * D.dqk, kvr + h * (D.dn + D.dv), sizeof(float) * D.dn);
      std::memcpy(kr + h * D.dqk + D.dn, kpe, sizeof(float) * D.dr);
      std::memcpy(vr + h * D.dv, kvr + h * (D.dn + D.dv) + D.dn, sizeof(float) * D.dv);
    }
  }
  AttentionShape s{B, Tb, H, D.dqk, D.dv, qw, qw, H * D.dv, D.scale};
  attention_forward(s, a.q.data(), a.k.data(), a.v.data(), a.probs.data(), a.att.data());
  // x_mid = x_in + o_proj(att)
  std::memcpy(a.x_mid.data(), x_in, sizeof(float) * N * d);
  linear_forward(D.linear, a.att.data(), w.attn.o_proj, a.x_mid.data(), N, H * D.dv, d, 1.0f);
  rmsnorm_forward(a.x_mid.data(), w.post_attn_norm, a.h2.data(), a.rstd2.data(), N, d, D.eps);
  ffn_forward(D, c, w, a.h2.data(), x_out, N, B, Tb, balance_alpha, a.ffn);
  add_into(x_out, a.x_mid.data(), int64_t(N) * d);
}

void block_backward(const Dims& D, const ModelConfig& c, const RopeTables& rope,
                    const LayerWeights& w, const LayerWeights& g, const float* dx_out, float* dx_in,
                    int B, int Tb, const int32_t* pos, BlockActs& a, BlockScratch& s) {
  const int N = B * Tb, d = D.d, H = D.H;
  const int qw = H * D.dqk, kvw = H * (D.dn + D.dv), ckw = D.rkv + D.dr;
  ensure(s.dh, size_t(N) * d);
  ensure(s.dx_mid, size_t(N) * d);
  // FFN half: x_out = x_mid + ffn(norm(x_mid)).
  ffn_backward(D, c, w, g, a.h2.data(), dx_out, s.dh.data(), N, a.ffn, s.ffn);
  std::memcpy(s.dx_mid.data(), dx_out, sizeof(float) * N * d);
  rmsnorm_backward(s.dh.data(), a.x_mid.data(), w.post_attn_norm, a.rstd2.data(), s.dx_mid.data(),
                   g.post_attn_norm, N, d, 1.0f);
  // Attention half: x_mid = x_in + o_proj(att).
  ensure(s.datt, size_t(N) * H * D.dv);
  linear_wgrad(D.linear, s.dx_mid.data(), a.att.data(), g.attn.o_proj, N, H * D.dv, d);
  linear_dgrad(D.linear, s.dx_mid.data(), w.attn.o_proj, s.datt.data(), N, H * D.dv, d);
  ensure(s.dq, size_t(N) * qw);
  ensure(s.dk, size_t(N) * qw);
  ensure(s.dv, size_t(N) * H * D.dv);
  AttentionShape sh{B, Tb, H, D.dqk, D.dv, qw, qw, H * D.dv, D.scale};
  attention_backward(sh, a.q.data(), a.k.data(), a.v.data(), a.probs.data(), s.datt.data(),
                     s.dq.data(), s.dk.data(), s.dv.data());
  // Fold dK, dV back into d(kv) [N, H*(dn+dv)] and d(k_pe) (summed over heads).
  ensure(s.dkv, size_t(N) * kvw);
  ensure(s.dkva, size_t(N) * ckw);
  for (int n = 0; n < N; ++n) {
    float* dkvr = &s.dkv[size_t(n) * kvw];
    const float* dkr = &s.dk[size_t(n) * qw];
    const float* dvr = &s.dv[size_t(n) * H * D.dv];
    float* dkpe = &s.dkva[size_t(n) * ckw + D.rkv];
    std::fill(dkpe, dkpe + D.dr, 0.0f);
    for (int h = 0; h < H; ++h) {
      std::memcpy(dkvr + h * (D.dn + D.dv), dkr + h * D.dqk, sizeof(float) * D.dn);
      std::memcpy(dkvr + h * (D.dn + D.dv) + D.dn, dvr + h * D.dv, sizeof(float) * D.dv);
      add_into(dkpe, dkr + h * D.dqk + D.dn, D.dr);
    }
  }
  rope_backward(s.dkva.data() + D.rkv, pos, N, 1, D.dr, ckw, D.dr, rope.cos.data(),
                rope.sin.data());
  ensure(s.dcn, size_t(N) * D.rkv);
  linear_wgrad(D.linear, s.dkv.data(), a.cn.data(), g.attn.kv_b_proj, N, D.rkv, kvw);
  linear_dgrad(D.linear, s.dkv.data(), w.attn.kv_b_proj, s.dcn.data(), N, D.rkv, kvw);  // [N, rkv]
  for (int n = 0; n < N; ++n)
    rmsnorm_backward(&s.dcn[size_t(n) * D.rkv], &a.kva[size_t(n) * ckw], w.attn.kv_a_norm,
                     &a.c_rstd[n], &s.dkva[size_t(n) * ckw], g.attn.kv_a_norm, 1, D.rkv, 0.0f);
  // dh1 from the kv path, then the query path.
  linear_wgrad(D.linear, s.dkva.data(), a.h1.data(), g.attn.kv_a_proj, N, d, ckw);
  linear_dgrad(D.linear, s.dkva.data(), w.attn.kv_a_proj, s.dh.data(), N, d, ckw);  // [N, d]
  rope_backward(s.dq.data() + D.dn, pos, N, H, D.dr, qw, D.dqk, rope.cos.data(), rope.sin.data());
  if (D.rq > 0) {
    ensure(s.dqan, size_t(N) * D.rq);
    ensure(s.dqa, size_t(N) * D.rq);
    linear_wgrad(D.linear, s.dq.data(), a.qan.data(), g.attn.q_b_proj, N, D.rq, qw);
    linear_dgrad(D.linear, s.dq.data(), w.attn.q_b_proj, s.dqan.data(), N, D.rq, qw);
    rmsnorm_backward(s.dqan.data(), a.qa.data(), w.attn.q_a_norm, a.qa_rstd.data(), s.dqa.data(),
                     g.attn.q_a_norm, N, D.rq, 0.0f);
    linear_wgrad(D.linear, s.dqa.data(), a.h1.data(), g.attn.q_a_proj, N, d, D.rq);
    linear_dgrad(D.linear, s.dqa.data(), w.attn.q_a_proj, s.dh.data(), N, d, D.rq, 1.0f);
  } else {
    linear_wgrad(D.linear, s.dq.data(), a.h1.data(), g.attn.q_proj, N, d, qw);
    linear_dgrad(D.linear, s.dq.data(), w.attn.q_proj, s.dh.data(), N, d, qw, 1.0f);
  }
  std::memcpy(dx_in, s.dx_mid.data(), sizeof(float) * N * d);
  rmsnorm_backward(s.dh.data(), a.x_in.data(), w.input_norm, a.rstd1.data(), dx_in, g.input_norm, N,
                   d, 1.0f);
}

}  // namespace seekr
