// Training forward/backward over a batch [B, T]: embedding → main blocks → final norm → head,
// then the MTP modules chained on the main model's last hidden state.
#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "kernels/ops.h"
#include "model/block.h"
#include "model/model.h"

namespace seekr {

struct TrainGraph::Impl {
  Model& model;
  const ModelConfig& c;
  Dims D;
  RopeTables rope;
  int B = 0, T = 0;
  TrainOptions opt;
  std::vector<int32_t> tokens;   // [B, T]
  std::vector<int32_t> pos;      // [B*T] positions 0..T-1 per row
  std::vector<BlockActs> acts;   // main layers then MTP blocks
  std::vector<float> x_last;     // [B*T, d] output of the last main block
  std::vector<float> hN, rstdN;  // final norm
  std::vector<float> logits;     // [B*T, V]
  struct Mtp {
    int rows = 0;
    std::vector<float> h_prev;         // [rows, d] gathered previous hidden state
    std::vector<float> e, en, e_rstd;  // embedding of t[i+k] and its norm
    std::vector<float> hn, h_rstd;     // hnorm(h_prev)
    std::vector<float> cat;            // [rows, 2d]
    std::vector<float> h_in;           // [rows, d] eh_proj output = block input
    std::vector<float> h_out;          // [rows, d] block output
    std::vector<float> ho_n, ho_rstd;  // shared_head.norm
    std::vector<float> logits;         // [rows, V]
    std::vector<int32_t> ids, posk;    // [rows] tokens t[i+k], positions i
    // backward scratch, [rows, d] each (dcat [rows, 2d]); dprev_full is the gradient this
    // module sends to the previous module's output, [B, T-k+1, d]
    std::vector<float> dho, dh_out, dh_in, dcat, den, dhn, de, dprev, dprev_full;
  };
  std::vector<Mtp> mtp;
  std::vector<std::vector<int64_t>> load;
  double balance = 0;
  // backward scratch
  BlockScratch scratch;
  std::vector<float> dx, dx2, dh, dcat, dx_last, dprev;

  explicit Impl(Model& m) : model(m), c(m.config()), D(m.config()), rope(m.config()) {}

  int num_mtp() const { return opt.mtp ? c.num_nextn_predict_layers : 0; }
};

TrainGraph::TrainGraph(Model& model) : impl_(std::make_unique<Impl>(model)) {
  // A model loaded with FP8 weights kept for inference has zeros in those FP32 slots.
  SEEKR_REQUIRE(!model.fp8_weights(),
                "cannot train a model whose FP8 weights were kept as codes for inference; load "
                "it with the FP8 weights dequantised");
  model.grads();  // allocated here, before any worker thread accumulates into it
}
TrainGraph::~TrainGraph() = default;

float* TrainGraph::logits() {
  return impl_->logits.data();
}
float* TrainGraph::mtp_logits(int k) {
  return impl_->mtp.at(k - 1).logits.data();
}
int TrainGraph::mtp_rows(int k) const {
  return impl_->mtp.at(k - 1).rows;
}
int TrainGraph::B() const {
  return impl_->B;
}
int TrainGraph::T() const {
  return impl_->T;
}
double TrainGraph::balance_loss() const {
  return impl_->balance;
}
const std::vector<std::vector<int64_t>>& TrainGraph::expert_load() const {
  return impl_->load;
}

namespace {

void embed_rows(const float* table, const int32_t* ids, float* out, int n, int d, int V) {
  for (int i = 0; i < n; ++i) {
    SEEKR_CHECK(ids[i] >= 0 && ids[i] < V, "token id ", ids[i], " outside vocab ", V);
    std::memcpy(out + size_t(i) * d, table + size_t(ids[i]) * d, sizeof(float) * d);
  }
}

void embed_backward(float* dtable, const int32_t* ids, const float* dout, int n, int d) {
  for (int i = 0; i < n; ++i) {
    float* g = dtable + size_t(ids[i]) * d;
    const float* x = dout + size_t(i) * d;
    for (int j = 0; j < d; ++j) g[j] += x[j];
  }
}

}  // namespace

void TrainGraph::forward(const int32_t* tokens, int B, int T, const TrainOptions& opt) {
  Impl& m = *impl_;
  const ModelConfig& c = m.c;
  const ModelWeights& w = m.model.w();
  const Dims& D = m.D;
  SEEKR_CHECK(B > 0 && T > 0);
  SEEKR_CHECK(T <= c.max_position_embeddings, "sequence ", T, " exceeds max_position_embeddings");
  m.B = B;
  m.T = T;
  m.opt = opt;
  m.D.linear = opt.precision;
  const int N = B * T, d = D.d, L = c.num_hidden_layers, nm = m.num_mtp();
  m.tokens.assign(tokens, tokens + size_t(N));
  m.pos.resize(N);
  for (int i = 0; i < N; ++i) m.pos[i] = i % T;
  m.acts.resize(L + c.num_nextn_predict_layers);
  m.load.assign(L + c.num_nextn_predict_layers, {});
  m.balance = 0;

  m.x_last.resize(size_t(N) * d);
  std::vector<float>& x = m.dx;  // reuse as the running residual: [N, d]
  x.resize(size_t(N) * d);
  embed_rows(w.embed, tokens, x.data(), N, d, D.V);
  m.dx2.resize(size_t(N) * d);
  for (int l = 0; l < L; ++l) {
    float* out = (l == L - 1) ? m.x_last.data() : m.dx2.data();
    block_forward(D, c, m.rope, w.layers[l], x.data(), out, B, T, m.pos.data(), opt.balance_alpha,
                  m.acts[l]);
    if (l != L - 1) std::swap(x, m.dx2);
    if (w.layers[l].is_moe) {
      m.load[l] = m.acts[l].ffn.load;
      m.balance += m.acts[l].ffn.balance_loss;
    }
  }
  m.hN.resize(size_t(N) * d);
  m.rstdN.resize(N);
  rmsnorm_forward(m.x_last.data(), w.final_norm, m.hN.data(), m.rstdN.data(), N, d, D.eps);
  m.logits.resize(size_t(N) * D.V);
  matmul_xwt(m.hN.data(), w.lm_head, m.logits.data(), N, d, D.V);  // [N, V]

  m.mtp.resize(nm);
  for (int k = 1; k <= nm; ++k) {
    Impl::Mtp& mt = m.mtp[k - 1];
    const LayerWeights& lw = w.layers[L + k - 1];
    const int Tk = T - k;
    SEEKR_CHECK(Tk > 0, "MTP depth ", k, " needs sequences longer than ", k);
    const int rows = B * Tk;
    mt.rows = rows;
    mt.h_prev.resize(size_t(rows) * d);
    mt.e.resize(size_t(rows) * d);
    std::vector<int32_t>& ids = mt.ids;
    ids.resize(rows);
    const float* prev = k == 1 ? m.x_last.data() : m.mtp[k - 2].h_out.data();
    const int prev_T = T - (k - 1);
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Tk; ++i) {
        std::memcpy(&mt.h_prev[(size_t(b) * Tk + i) * d], prev + (size_t(b) * prev_T + i) * d,
                    sizeof(float) * d);
        ids[b * Tk + i] = tokens[b * T + i + k];
      }
    embed_rows(w.embed, ids.data(), mt.e.data(), rows, d, D.V);
    mt.en.resize(size_t(rows) * d);
    mt.e_rstd.resize(rows);
    mt.hn.resize(size_t(rows) * d);
    mt.h_rstd.resize(rows);
    rmsnorm_forward(mt.e.data(), lw.enorm, mt.en.data(), mt.e_rstd.data(), rows, d, D.eps);
    rmsnorm_forward(mt.h_prev.data(), lw.hnorm, mt.hn.data(), mt.h_rstd.data(), rows, d, D.eps);
    mt.cat.resize(size_t(rows) * 2 * d);
    for (int r = 0; r < rows; ++r) {
      std::memcpy(&mt.cat[size_t(r) * 2 * d], &mt.en[size_t(r) * d], sizeof(float) * d);
      std::memcpy(&mt.cat[size_t(r) * 2 * d + d], &mt.hn[size_t(r) * d], sizeof(float) * d);
    }
    mt.h_in.resize(size_t(rows) * d);
    linear_forward(D.linear, mt.cat.data(), lw.eh_proj, mt.h_in.data(), rows, 2 * d,
                   d);  // [rows, d]
    mt.h_out.resize(size_t(rows) * d);
    std::vector<int32_t>& posk = mt.posk;
    posk.resize(rows);
    for (int r = 0; r < rows; ++r) posk[r] = r % Tk;
    block_forward(D, c, m.rope, lw, mt.h_in.data(), mt.h_out.data(), B, Tk, posk.data(),
                  opt.balance_alpha, m.acts[L + k - 1]);
    if (lw.is_moe) {
      m.load[L + k - 1] = m.acts[L + k - 1].ffn.load;
      m.balance += m.acts[L + k - 1].ffn.balance_loss;
    }
    mt.ho_n.resize(size_t(rows) * d);
    mt.ho_rstd.resize(rows);
    rmsnorm_forward(mt.h_out.data(), lw.head_norm, mt.ho_n.data(), mt.ho_rstd.data(), rows, d,
                    D.eps);
    mt.logits.resize(size_t(rows) * D.V);
    matmul_xwt(mt.ho_n.data(), w.lm_head, mt.logits.data(), rows, d, D.V);  // [rows, V]
  }
}

void TrainGraph::backward(float* dlogits, const std::vector<float*>& dmtp) {
  Impl& m = *impl_;
  const ModelConfig& c = m.c;
  const ModelWeights& w = m.model.w();
  const ModelWeights& g = m.model.g();
  const Dims& D = m.D;
  const int B = m.B, T = m.T, N = B * T, d = D.d, L = c.num_hidden_layers, nm = m.num_mtp();
  SEEKR_CHECK(static_cast<int>(dmtp.size()) >= nm, "need gradients for ", nm, " MTP modules");

  // d(x_last) collects the main head's gradient and the first MTP module's.
  std::vector<float>& dx_last = m.dx_last;  // [N, d]; kept across calls: no page faults
  dx_last.resize(size_t(N) * d);
  {
    m.dh.resize(size_t(N) * d);
    matmul_dyt_x(dlogits, m.hN.data(), g.lm_head, N, d, D.V);
    matmul_dy_w(dlogits, w.lm_head, m.dh.data(), N, d, D.V);  // [N, d]
    rmsnorm_backward(m.dh.data(), m.x_last.data(), w.final_norm, m.rstdN.data(), dx_last.data(),
                     g.final_norm, N, d, 0.0f);
  }
  // MTP modules, last first: module k's input gradient flows into module k-1's output.
  for (int k = nm; k >= 1; --k) {
    Impl::Mtp& mt = m.mtp[k - 1];
    const LayerWeights& lw = w.layers[L + k - 1];
    const LayerWeights& lg = g.layers[L + k - 1];
    const int rows = mt.rows, Tk = T - k;
    // Gradient on h_out from module k+1 (its input came from this module's output), if any.
    const std::vector<float>* from_next = k < nm ? &m.mtp[k].dprev_full : nullptr;
    std::vector<float>&dho = mt.dho, &dh_out = mt.dh_out;
    dho.resize(size_t(rows) * d);
    dh_out.resize(size_t(rows) * d);
    matmul_dyt_x(dmtp[k - 1], mt.ho_n.data(), g.lm_head, rows, d, D.V);
    matmul_dy_w(dmtp[k - 1], w.lm_head, dho.data(), rows, d, D.V);
    if (from_next)
      std::copy(from_next->begin(), from_next->begin() + dh_out.size(), dh_out.begin());
    rmsnorm_backward(dho.data(), mt.h_out.data(), lw.head_norm, mt.ho_rstd.data(), dh_out.data(),
                     lg.head_norm, rows, d, from_next ? 1.0f : 0.0f);
    std::vector<float>& dh_in = mt.dh_in;
    dh_in.resize(size_t(rows) * d);
    block_backward(D, c, m.rope, lw, lg, dh_out.data(), dh_in.data(), B, Tk, mt.posk.data(),
                   m.acts[L + k - 1], m.scratch);
    std::vector<float>& dcat = mt.dcat;
    dcat.resize(size_t(rows) * 2 * d);
    linear_wgrad(D.linear, dh_in.data(), mt.cat.data(), lg.eh_proj, rows, 2 * d, d);
    linear_dgrad(D.linear, dh_in.data(), lw.eh_proj, dcat.data(), rows, 2 * d, d);
    std::vector<float>&den = mt.den, &dhn = mt.dhn, &de = mt.de, &dprev = mt.dprev;
    for (auto* v : {&den, &dhn, &de, &dprev}) v->resize(size_t(rows) * d);
    for (int r = 0; r < rows; ++r) {
      std::memcpy(&den[size_t(r) * d], &dcat[size_t(r) * 2 * d], sizeof(float) * d);
      std::memcpy(&dhn[size_t(r) * d], &dcat[size_t(r) * 2 * d + d], sizeof(float) * d);
    }
    rmsnorm_backward(den.data(), mt.e.data(), lw.enorm, mt.e_rstd.data(), de.data(), lg.enorm, rows,
                     d, 0.0f);
    rmsnorm_backward(dhn.data(), mt.h_prev.data(), lw.hnorm, mt.h_rstd.data(), dprev.data(),
                     lg.hnorm, rows, d, 0.0f);
    embed_backward(g.embed, mt.ids.data(), de.data(), rows, d);  // ids: t[i+k], as forward
    // Scatter dprev into the previous stage's rows (b, i), i < Tk, of length prev_T.
    const int prev_T = T - (k - 1);
    std::vector<float>& dprev_full = mt.dprev_full;
    float* target;
    if (k == 1) {
      target = dx_last.data();
    } else {
      dprev_full.assign(size_t(B) * prev_T * d, 0.0f);
      target = dprev_full.data();
    }
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Tk; ++i) {
        float* t = target + (size_t(b) * prev_T + i) * d;
        const float* s = &dprev[(size_t(b) * Tk + i) * d];
        for (int j = 0; j < d; ++j) t[j] += s[j];
      }
  }
  // Main layers, last first.
  // dx_last and dprev take turns as the block's output and input gradient: [N, d] each.
  m.dprev.resize(size_t(N) * d);
  float* dx = dx_last.data();
  float* dprev = m.dprev.data();
  for (int l = L - 1; l >= 0; --l) {
    block_backward(D, c, m.rope, w.layers[l], g.layers[l], dx, dprev, B, T, m.pos.data(), m.acts[l],
                   m.scratch);
    std::swap(dx, dprev);
  }
  embed_backward(g.embed, m.tokens.data(), dx, N, d);
}

}  // namespace seekr
