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
//
// Decode steps (absorbed cache, 1 to kGemvMaxRows rows: batch-1 decoding and speculative verify
// passes) take a faster path (the fast_* functions): the whole step runs in one parallel region,
// every weight matrix's output rows shared among the threads (so all of them stream weights at
// once), in phases of tasks the threads claim (PhaseCursor) instead of a parallel region per
// product. Its products are the gemv.h kernels for FP32 weights and fp8_gemv_rows /
// fp8_gemv_swiglu for FP8-kept ones, whose results do not depend on the row count or on the
// split, so the step gives the same bits whatever the thread count and a verify pass equals
// 1-token steps exactly.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

#include "core/check.h"
#include "kernels/gemv.h"
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
constexpr int kFewRows = kGemvMaxRows;

// y[i, :out] (=|+=) x[i, :in] · wᵀ for i < n <= kFewRows (gemv.h): the weights are streamed
// once for all n rows (a 2-token verify pass reads them once, like a 1-token step), and every
// y[i][j] is computed by the same operations whatever n is, so the rows of a verify pass equal
// 1-token decode steps bit for bit and speculative decoding reproduces greedy decoding exactly.
void few_rows_xwt(const float* x, int ldx, const float* w, float* y, int ldy, int n, int in,
                  int out, float beta) {
  gemv_xwt(x, ldx, w, in, out, 0, out, y, ldy, n, beta);
}

// y[n, out] (=|+=) x[n, in] · w[out, in]ᵀ
void xwt(const float* x, const float* w, float* y, int n, int in, int out, float beta = 0.0f) {
  if (n <= kFewRows) return few_rows_xwt(x, in, w, y, out, n, in, out, beta);
  matmul_xwt(x, w, y, n, in, out, beta);
}

// Absorbed attention scores of heads [h0, h1) of one query row qi ([H, cw]) against cache rows
// 0..len-1 of base (at stride width), into p[h·ld + t]. Every head scores the same cache rows:
// four heads at a time (from h0) share each row's loads.
void absorbed_scores(const float* qi, int cw, const float* base, int width, int len, int h0, int h1,
                     float* p, int ld) {
  for (int t = 0; t < len; ++t) {
    const float* r = base + size_t(t) * width;
    int hh = h0;
    for (; hh + 4 <= h1; hh += 4) {
      const float* qs[4] = {qi + size_t(hh) * cw, qi + size_t(hh + 1) * cw,
                            qi + size_t(hh + 2) * cw, qi + size_t(hh + 3) * cw};
      float s4[4];
      simd::dot4(qs, r, cw, s4);
      for (int k = 0; k < 4; ++k) p[size_t(hh + k) * ld + t] = s4[k];
    }
    for (; hh < h1; ++hh) p[size_t(hh) * ld + t] = simd::dot(qi + size_t(hh) * cw, r, cw);
  }
}

// p[0..len) = softmax(p), then o[:dim] = Σ_t p[t]·values[t] (value rows at stride width).
void softmax_mix(float* p, int len, const float* values, int width, float* o, int dim) {
  const double z = simd::exp_store_sum(p, p, len, simd::max(p, len));
  const float inv = static_cast<float>(1.0 / z);
  std::fill(o, o + dim, 0.0f);
  for (int t = 0; t < len; ++t) simd::axpy(p[t] * inv, values + size_t(t) * width, o, dim);
}

// Work sharing inside the decode step's parallel region. The step is a fixed sequence of
// phases, each a number of independent tasks (ranges of output rows, groups of heads); a thread
// claims the next task of its phase with an atomic counter and counts it done when finished,
// and starts on a phase only once every task of the one before is done. No thread waits for
// another to arrive: one that is late (asleep under OMP_WAIT_POLICY=PASSIVE, or preempted on a
// busy machine) finds the tasks taken and catches up, so a step is never much slower than one
// thread alone would make it. Which thread computes a task does not change its bits.
struct PhaseCounter {
  alignas(64) std::atomic<int> next{0};  // tasks claimed
  alignas(64) std::atomic<int> done{0};  // tasks finished
};

// One thread's walk through the phases of a step.
class PhaseCursor {
 public:
  explicit PhaseCursor(PhaseCounter* phases) : p_(phases) {}
  // The next phase, of `tasks` tasks: waits for the previous one, then runs prep() before the
  // first task this thread claims (only then are the phase's inputs sure to be current) and
  // f(task) for each.
  template <typename Prep, typename F>
  void run(int tasks, Prep&& prep, F&& f) {
    if (ph_ > 0) {
      const std::atomic<int>& done = p_[ph_ - 1].done;
      for (int spin = 0; done.load(std::memory_order_acquire) < prev_; ++spin) {
        if (spin < (1 << 14)) {
#if SEEKR_AVX2
          _mm_pause();
#endif
        } else {
          std::this_thread::yield();
        }
      }
    }
    PhaseCounter& c = p_[ph_];
    bool first = true;
    for (int t; (t = c.next.fetch_add(1, std::memory_order_relaxed)) < tasks;) {
      if (first) prep();
      first = false;
      f(t);
      c.done.fetch_add(1, std::memory_order_release);
    }
    prev_ = tasks;
    ++ph_;
  }
  template <typename F>
  void run(int tasks, F&& f) {
    run(
        tasks, [] {}, f);
  }

 private:
  PhaseCounter* p_;
  int ph_ = 0, prev_ = 0;
};

// Tasks of kChunk output rows over `count` products of out(m) rows each: their number, and
// task t's product and rows [*j0, *j1).
constexpr int kChunk = 32;
template <typename Out>
int chunk_count(int count, Out&& out, int chunk = kChunk) {
  int tasks = 0;
  for (int m = 0; m < count; ++m) tasks += (out(m) + chunk - 1) / chunk;
  return tasks;
}
template <typename Out>
int chunk_rows(int count, Out&& out, int t, int* j0, int* j1, int chunk = kChunk) {
  for (int m = 0; m < count; ++m) {
    const int rows = out(m), tasks = (rows + chunk - 1) / chunk;
    if (t < tasks) {
      *j0 = t * chunk;
      *j1 = std::min(rows, *j0 + chunk);
      return m;
    }
    t -= tasks;
  }
  return -1;
}

// Most experts per token the fast decode path takes (DeepSeek-V3: 8).
constexpr int kMaxTopK = 64;

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
  // Fast decode path: per-thread scratch; the step's MLPs (shared (-1) first, then the routed
  // experts, ascending), their SwiGLU activations and down products ([mlps, n, inter] and
  // [mlps, n, d]); the phase counters.
  struct ThreadScratch {
    std::vector<float> h, qn, rstd;  // [n, d], [n, rq], [n]
  };
  std::vector<ThreadScratch> ts;
  std::vector<int> experts;
  int mlps = 0;
  std::vector<float> act, ye;
  std::unique_ptr<PhaseCounter[]> phases;
  int phase_capacity = 0;

  Impl(const Model& m, int seqs, int length, AttentionMode md)
      : model(m),
        c(m.config()),
        D(m.config()),
        rope(m.config()),
        max_seqs(seqs),
        max_len(length),
        mode(md),
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
  void linear(const float* x, const float* w, float* y, int n, int in, int out, float beta = 0.0f);
  // The fast path's products (gemv_xwt, gemv_swiglu) of output rows [j0, j1), through the
  // weights' FP8 forms where the model keeps them.
  void rows_xwt(const float* x, int ldx, const float* w, int in, int out, int j0, int j1, float* y,
                int ldy, int n, float beta = 0.0f) const;
  void rows_swiglu(const float* x, int ldx, const MlpWeights& mw, int in, int out, int j0, int j1,
                   float* a, int lda, int n) const;
  // ffn_forward's computation (no balance loss) with every MLP/expert Linear through linear();
  // the router stays FP32. h [n, d] -> out [n, d] (overwritten).
  void ffn_fp8(const LayerWeights& w, const float* h, float* out, int n);
  // One decoder block over the residual stream x [n, d] (in place), cache layer `layer`. With
  // `keep` (n flags), only the rows with keep[i] != 0 go on past writing their cache entries:
  // x is packed to those rows and their count returned (the MTP module needs the block's
  // output only for the rows it drafts from; the others just join its cache).
  int block(int layer, const LayerWeights& w, const int32_t* slots, const int32_t* pos, int n,
            const uint8_t* keep = nullptr);
  void attention(int layer, const LayerWeights& w, const int32_t* slots, const int32_t* pos, int n,
                 float* att_out);
  // norm(x) · lm_headᵀ for the rows with logits_rows[i] != 0 (all when null), packed.
  void head(const float* norm, int n, const uint8_t* logits_rows, float* logits);

  // The fast decode path (see the top of the file): whether n rows take it, and the setup of
  // a step (scratch for n rows, `phase_count` phase counters cleared). Its parts are run by
  // every thread of the region, `tid` with its cursor; fast_block is block() (the same rows
  // kept), fast_head is head().
  bool fast(int n) const { return mode == AttentionMode::kAbsorbed && n <= kGemvMaxRows; }
  void fast_setup(int n, int phase_count);
  int fast_block(int tid, PhaseCursor& cur, int layer, const LayerWeights& w, const int32_t* slots,
                 const int32_t* pos, int n, const uint8_t* keep);
  void fast_heads(int tid, int layer, const LayerWeights& w, const int32_t* slots,
                  const int32_t* pos, int n, int h0, int h1);
  void fast_ffn(PhaseCursor& cur, const LayerWeights& w, int n);
  void fast_head(int tid, PhaseCursor& cur, const float* norm, int n, const uint8_t* logits_rows,
                 float* logits);
};

void InferenceSession::Impl::check_rows(const int32_t* tokens, const int32_t* slots,
                                        const int32_t* pos, int n, const std::vector<int>& held) {
  next.assign(held.begin(), held.end());
  for (int i = 0; i < n; ++i) {
    SEEKR_REQUIRE(tokens[i] >= 0 && tokens[i] < D.V, "token id ", tokens[i],
                  " outside the vocabulary (", D.V, ")");
    SEEKR_REQUIRE(slots[i] >= 0 && slots[i] < max_seqs, "slot ", slots[i], " out of range");
    SEEKR_REQUIRE(pos[i] == next[slots[i]], "slot ", slots[i], " expects position ", next[slots[i]],
                  ", got ", pos[i]);
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

void InferenceSession::Impl::rows_xwt(const float* x, int ldx, const float* w, int in, int out,
                                      int j0, int j1, float* y, int ldy, int n, float beta) const {
  if (const Fp8Matrix* q = fp8 ? fp8->find(w) : nullptr) {
    SEEKR_CHECK(q->rows == out && q->cols == in, "FP8 weight shape mismatch");
    return fp8_gemv_rows(x, ldx, *q, j0, j1, y, ldy, n, beta);
  }
  gemv_xwt(x, ldx, w, in, out, j0, j1, y, ldy, n, beta);
}

void InferenceSession::Impl::rows_swiglu(const float* x, int ldx, const MlpWeights& mw, int in,
                                         int out, int j0, int j1, float* a, int lda, int n) const {
  const Fp8Matrix* g = fp8 ? fp8->find(mw.gate) : nullptr;
  const Fp8Matrix* u = fp8 ? fp8->find(mw.up) : nullptr;
  if (g || u) {
    SEEKR_CHECK(g && u && g->rows == out && g->cols == in,
                "FP8 gate and up weights must be kept together, of one shape");
    return fp8_gemv_swiglu(x, ldx, *g, *u, j0, j1, a, lda, n);
  }
  gemv_swiglu(x, ldx, mw.gate, mw.up, in, out, j0, j1, a, lda, n);
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
    grow(qcat, size_t(n) * H * cw);   // [n, H, rkv+dr]
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
        absorbed_scores(qcat.data() + size_t(i) * H * score_dim, score_dim, base, width, len, 0, H,
                        p, max_len);
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
        softmax_mix(ph, len, values, width, o, out_dim);
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
    rmsnorm_forward(&kva[size_t(i) * ckw], lw.attn.kv_a_norm, &cn[size_t(i) * D.rkv], &rstd[i], 1,
                    D.rkv, D.eps);
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
  rope_forward(q.data() + D.dn, positions, n, H, D.dr, qw, D.dqk, rope.cos.data(), rope.sin.data());
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

void InferenceSession::Impl::fast_setup(int n, int phase_count) {
  const int threads = omp_get_max_threads(), d = D.d;
  if (ts.size() < size_t(threads)) ts.resize(threads);
  for (ThreadScratch& s : ts) {
    grow(s.h, size_t(n) * d);
    grow(s.qn, size_t(n) * std::max(D.rq, 1));
    grow(s.rstd, size_t(n));
  }
  grow(qcat, size_t(n) * D.H * (D.rkv + D.dr));
  grow(olat, size_t(n) * D.H * D.rkv);
  grow(probs, size_t(threads) * D.H * max_len);
  grow(ffn.rlogits, size_t(n) * D.E);
  grow(ffn.scores, size_t(n) * D.E);
  grow(ffn.weights, size_t(n) * D.K);
  grow(ffn.idx, size_t(n) * D.K);
  grow(experts, size_t(D.E + 1));
  // The most MLPs a step runs: the dense one, or the shared one and n·K routed ones.
  const int routed = std::min(D.E, n * D.K);
  grow(act, size_t(n) * std::max(D.I, routed * D.Im + D.Is));
  grow(ye, size_t(n) * d * (routed + 1));
  SEEKR_CHECK(D.K <= kMaxTopK, "fast decode: ", D.K, " experts per token");
  if (phase_capacity < phase_count) {
    phases = std::make_unique<PhaseCounter[]>(phase_count);
    phase_capacity = phase_count;
  }
  for (int p = 0; p < phase_count; ++p) {
    phases[p].next.store(0, std::memory_order_relaxed);
    phases[p].done.store(0, std::memory_order_relaxed);
  }
}

int InferenceSession::Impl::fast_block(int tid, PhaseCursor& cur, int l, const LayerWeights& lw,
                                       const int32_t* slots, const int32_t* positions, int n,
                                       const uint8_t* keep) {
  ThreadScratch& s = ts[tid];
  const int d = D.d, H = D.H, qw = H * D.dqk, ckw = D.rkv + D.dr, rkv = D.rkv;
  // 1. h = norm(x); kv_a and q_a (or q) by rows.
  {
    const float* mats[2] = {lw.attn.kv_a_proj, D.rq > 0 ? lw.attn.q_a_proj : lw.attn.q_proj};
    float* ys[2] = {kva.data(), D.rq > 0 ? tmp.data() : q.data()};
    const int outs[2] = {ckw, D.rq > 0 ? D.rq : qw};
    const auto out = [&](int m) { return outs[m]; };
    cur.run(
        chunk_count(2, out),
        [&] { rmsnorm_forward(x.data(), lw.input_norm, s.h.data(), s.rstd.data(), n, d, D.eps); },
        [&](int t) {
          int j0 = 0, j1 = 0;
          const int m = chunk_rows(2, out, t, &j0, &j1);
          rows_xwt(s.h.data(), d, mats[m], d, outs[m], j0, j1, ys[m], outs[m], n);
        });
  }
  // 2. Task 0 writes the cache entries (and packs the kept rows of x); the others are q_b by
  // rows, on the kept rows' normalised q_a.
  int kept[kGemvMaxRows], nk = 0;
  for (int i = 0; i < n; ++i)
    if (!keep || keep[i]) kept[nk++] = i;
  cur.run(
      1 + (D.rq > 0 ? (qw + kChunk - 1) / kChunk : 0),
      [&] {
        for (int k = 0; D.rq > 0 && k < nk; ++k)
          rmsnorm_forward(&tmp[size_t(kept[k]) * D.rq], lw.attn.q_a_norm, &s.qn[size_t(k) * D.rq],
                          &s.rstd[k], 1, D.rq, D.eps);
      },
      [&](int t) {
        if (t > 0) {
          const int j0 = (t - 1) * kChunk, j1 = std::min(qw, j0 + kChunk);
          rows_xwt(s.qn.data(), D.rq, lw.attn.q_b_proj, D.rq, qw, j0, j1, q.data(), qw, nk);
          return;
        }
        rope_forward(kva.data() + rkv, positions, n, 1, D.dr, ckw, D.dr, rope.cos.data(),
                     rope.sin.data());
        float r_std;
        for (int i = 0; i < n; ++i) {
          float* r = row(l, slots[i], positions[i]);
          rmsnorm_forward(&kva[size_t(i) * ckw], lw.attn.kv_a_norm, r, &r_std, 1, rkv, D.eps);
          std::memcpy(r + rkv, &kva[size_t(i) * ckw + rkv], sizeof(float) * D.dr);
        }
        for (int k = 0; k < nk; ++k)
          if (kept[k] != k) {
            std::memcpy(&x[size_t(k) * d], &x[size_t(kept[k]) * d], sizeof(float) * d);
            if (D.rq == 0)
              std::memcpy(&q[size_t(k) * qw], &q[size_t(kept[k]) * qw], sizeof(float) * qw);
          }
      });
  int32_t ks[kGemvMaxRows], kp[kGemvMaxRows];
  for (int k = 0; k < nk; ++k) {
    ks[k] = slots[kept[k]];
    kp[k] = positions[kept[k]];
  }
  n = nk;
  // 3. Attention by groups of four heads (the score groups of attention()); 4. o_proj into the
  // residual by rows.
  cur.run((H + 3) / 4,
          [&](int t) { fast_heads(tid, l, lw, ks, kp, n, 4 * t, std::min(H, 4 * t + 4)); });
  cur.run((d + kChunk - 1) / kChunk, [&](int t) {
    const int j0 = t * kChunk, j1 = std::min(d, j0 + kChunk);
    rows_xwt(att.data(), H * D.dv, lw.attn.o_proj, H * D.dv, d, j0, j1, x.data(), d, n, 1.0f);
  });
  // 5-7. The FFN, added into the residual.
  fast_ffn(cur, lw, n);
  return n;
}

void InferenceSession::Impl::fast_heads(int tid, int layer, const LayerWeights& w,
                                        const int32_t* slots, const int32_t* pos, int n, int h0,
                                        int h1) {
  // attention()'s absorbed computation for heads [h0, h1).
  const int H = D.H, dn = D.dn, dr = D.dr, dv = D.dv, dqk = D.dqk, rkv = D.rkv;
  const int qw = H * dqk, cw = rkv + dr;
  const float* wkvb = w.attn.kv_b_proj;  // [H*(dn+dv), rkv]
  for (int hh = h0; hh < h1; ++hh) {
    const float* wk = wkvb + size_t(hh) * (dn + dv) * rkv;  // [dn, rkv]
    for (int i = 0; i < n; ++i) {
      float* qh = q.data() + size_t(i) * qw + hh * dqk;
      rope_forward(qh + dn, pos + i, 1, 1, dr, qw, dqk, rope.cos.data(), rope.sin.data());
      float* dst = qcat.data() + (size_t(i) * H + hh) * cw;
      std::fill_n(dst, rkv, 0.0f);
      for (int j = 0; j < dr; ++j) dst[rkv + j] = D.scale * qh[dn + j];
    }
    for (int t = 0; t < dn; ++t)
      for (int i = 0; i < n; ++i)
        simd::axpy(D.scale * q[size_t(i) * qw + hh * dqk + t], wk + size_t(t) * rkv,
                   qcat.data() + (size_t(i) * H + hh) * cw, rkv);
  }
  float* p = probs.data() + size_t(tid) * H * max_len;  // [H, len]
  for (int i = 0; i < n; ++i) {
    const int len = pos[i] + 1;
    const float* base = row(layer, slots[i], 0);  // [len, width]
    const float* qi = qcat.data() + size_t(i) * H * cw;
    absorbed_scores(qi, cw, base, width, len, h0, h1, p, max_len);
    for (int hh = h0; hh < h1; ++hh) {
      float* ph = p + size_t(hh) * max_len;
      softmax_mix(ph, len, base, width, olat.data() + (size_t(i) * H + hh) * rkv, rkv);
    }
  }
  for (int hh = h0; hh < h1; ++hh) {
    const float* wv = wkvb + (size_t(hh) * (dn + dv) + dn) * rkv;  // [dv, rkv]
    gemv_xwt(olat.data() + hh * rkv, H * rkv, wv, rkv, dv, 0, dv, att.data() + hh * dv, H * dv, n);
  }
}

void InferenceSession::Impl::fast_ffn(PhaseCursor& cur, const LayerWeights& w, int n) {
  // ffn_forward's computation. One task normalises x and routes; the SwiGLU activations of the
  // step's MLPs go by rows, then their down products by output columns, each task adding its
  // columns into the residual. Every MLP runs on all n rows (the weights are read once either
  // way); a row uses the experts it was routed to.
  const int d = D.d, K = D.K;
  cur.run(1, [&](int) {
    rmsnorm_forward(x.data(), w.post_attn_norm, h.data(), rstd.data(), n, d, D.eps);
    mlps = 0;
    if (!w.is_moe) {
      experts[mlps++] = -1;
      return;
    }
    gemv_xwt(h.data(), d, w.router, d, D.E, 0, D.E, ffn.rlogits.data(), D.E, n);
    route_forward(routing_params(c), ffn.rlogits.data(), w.correction_bias, ffn.scores.data(),
                  ffn.idx.data(), ffn.weights.data(), n);
    if (D.Is > 0) experts[mlps++] = -1;
    for (int i = 0; i < n; ++i) {
      // Each row's experts in increasing order, as ffn_forward adds them.
      int32_t* id = &ffn.idx[size_t(i) * K];
      float* wt = &ffn.weights[size_t(i) * K];
      for (int a = 1; a < K; ++a)
        for (int b = a; b > 0 && id[b] < id[b - 1]; --b) {
          std::swap(id[b], id[b - 1]);
          std::swap(wt[b], wt[b - 1]);
        }
    }
    for (int e = 0; e < D.E; ++e)
      for (int k = 0; k < n * K; ++k)
        if (ffn.idx[k] == e) {
          experts[mlps++] = e;
          break;
        }
  });
  const auto mlp = [&](int m) -> const MlpWeights& {
    const int e = experts[m];
    return !w.is_moe ? w.mlp : e < 0 ? w.shared : w.experts[e];
  };
  const auto inter = [&](int m) { return !w.is_moe ? D.I : experts[m] < 0 ? D.Is : D.Im; };
  // MLP m's activations, [n, inter(m)], follow those of the MLPs before it.
  const auto act_at = [&](int m) {
    size_t off = 0;
    for (int k = 0; k < m; ++k) off += size_t(n) * inter(k);
    return act.data() + off;
  };
  // The phase's tasks cannot depend on the routing (a late thread could read the next
  // layer's): they cover the most MLPs a step can run, and those beyond `mlps` do nothing.
  // (Shared state is read only inside a task: the phase is not done, so it is current.)
  const int most = !w.is_moe ? 1 : (D.Is > 0) + std::min(D.E, n * K);
  const auto most_inter = [&](int m) { return !w.is_moe ? D.I : D.Is > 0 && m == 0 ? D.Is : D.Im; };
  cur.run(chunk_count(most, most_inter), [&](int t) {
    int j0 = 0, j1 = 0;
    const int m = chunk_rows(most, most_inter, t, &j0, &j1);
    if (m >= mlps) return;
    const MlpWeights& mw = mlp(m);
    rows_swiglu(h.data(), d, mw, d, inter(m), j0, j1, act_at(m), inter(m), n);
  });
  cur.run((d + kChunk - 1) / kChunk, [&](int t) {
    const int j0 = t * kChunk, j1 = std::min(d, j0 + kChunk);
    for (int m = 0; m < mlps; ++m)
      rows_xwt(act_at(m), inter(m), mlp(m).down, inter(m), d, j0, j1, ye.data() + size_t(m) * n * d,
               d, n);
    const bool has0 = !w.is_moe || D.Is > 0;  // ye[0] is the dense or shared MLP's
    for (int i = 0; i < n; ++i) {
      float* xi = x.data() + size_t(i) * d;
      const float* y0 = ye.data() + size_t(i) * d;
      const int32_t* id = &ffn.idx[size_t(i) * K];
      const float* wt = &ffn.weights[size_t(i) * K];
      int ms[kMaxTopK];  // MLP index of each routed expert
      for (int k = 0; w.is_moe && k < K; ++k) {
        int m = has0 ? 1 : 0;
        while (experts[m] != id[k]) ++m;
        ms[k] = m;
      }
      for (int j = j0; j < j1; ++j) {
        float o = has0 ? y0[j] : 0.0f;
        for (int k = 0; w.is_moe && k < K; ++k)
          o = std::fma(wt[k], ye[(size_t(ms[k]) * n + i) * d + j], o);
        xi[j] += o;
      }
    }
  });
}

void InferenceSession::Impl::fast_head(int tid, PhaseCursor& cur, const float* norm, int n,
                                       const uint8_t* logits_rows, float* logits) {
  ThreadScratch& s = ts[tid];
  const int d = D.d;
  int nr = 0;
  for (int i = 0; i < n; ++i) nr += !logits_rows || logits_rows[i];
  constexpr int kHeadChunk = 4 * kChunk;
  cur.run((D.V + kHeadChunk - 1) / kHeadChunk,
          [&] {
            for (int i = 0, r = 0; i < n; ++i)
              if (!logits_rows || logits_rows[i])
                rmsnorm_forward(&x[size_t(i) * d], norm, &s.h[size_t(r++) * d], s.rstd.data(), 1, d,
                                D.eps);
          },
          [&](int t) {
            const int j0 = t * kHeadChunk, j1 = std::min(D.V, j0 + kHeadChunk);
            gemv_xwt(s.h.data(), d, model.w().lm_head, d, D.V, j0, j1, logits, D.V, nr);
          });
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
  SEEKR_REQUIRE(src >= 0 && src < m.max_seqs && dst >= 0 && dst < m.max_seqs, "copy_slot: slots ",
                src, " -> ", dst, " out of range (", m.max_seqs, ")");
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

bool InferenceSession::has_mtp() const {
  return impl_->mtp_layer >= 0;
}
int InferenceSession::length(int slot) const {
  return impl_->len.at(slot);
}
int InferenceSession::mtp_length(int slot) const {
  return impl_->mtp_len.at(slot);
}
int InferenceSession::max_seqs() const {
  return impl_->max_seqs;
}
int InferenceSession::max_len() const {
  return impl_->max_len;
}
int InferenceSession::cache_floats_per_token_per_layer() const {
  return impl_->width;
}
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
  if (m.fast(n)) {
    // Phases: 7 per layer, then the head.
    m.fast_setup(n, 7 * m.c.num_hidden_layers + 1);
#pragma omp parallel
    {
      const int tid = omp_get_thread_num();
      PhaseCursor cur(m.phases.get());
      for (int l = 0; l < m.c.num_hidden_layers; ++l)
        m.fast_block(tid, cur, l, w.layers[l], slots, positions, n, nullptr);
      m.fast_head(tid, cur, w.final_norm, n, logits_rows, logits);
    }
    // After the region: x holds the last block's output (the head only reads it).
    if (hidden) std::memcpy(hidden, m.x.data(), sizeof(float) * size_t(n) * d);
    for (int i = 0; i < n; ++i) m.len[slots[i]] = positions[i] + 1;
    return;
  }
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
    rmsnorm_forward(w.embed + size_t(next_tokens[i]) * d, lw.enorm, ci, &m.rstd[i], 1, d, m.D.eps);
    rmsnorm_forward(hidden + size_t(i) * d, lw.hnorm, ci + d, &m.rstd[i], 1, d, m.D.eps);
  }
  for (int i = 0; i < n; ++i) m.mtp_len[slots[i]] = positions[i] + 1;
  if (m.fast(n)) {
    // Phases: eh_proj, the block's 7, the head.
    m.fast_setup(n, 9);
#pragma omp parallel
    {
      const int tid = omp_get_thread_num();
      PhaseCursor cur(m.phases.get());
      cur.run((d + kChunk - 1) / kChunk, [&](int t) {
        const int j0 = t * kChunk, j1 = std::min(d, j0 + kChunk);
        m.rows_xwt(m.cat.data(), 2 * d, lw.eh_proj, 2 * d, d, j0, j1, m.x.data(), d, n);
      });
      const int kept = m.fast_block(tid, cur, m.mtp_layer, lw, slots, positions, n, logits_rows);
      m.fast_head(tid, cur, lw.head_norm, kept, nullptr, logits);
    }
    return;
  }
  m.linear(m.cat.data(), lw.eh_proj, m.x.data(), n, 2 * d, d);  // [n, d]
  // One block, so rows without logits only need their cache entries.
  const int kept = m.block(m.mtp_layer, lw, slots, positions, n, logits_rows);
  m.head(lw.head_norm, kept, nullptr, logits);
}

}  // namespace seekr
