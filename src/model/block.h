// One decoder block (MLA attention + dense MLP or DeepSeekMoE) forward and backward, shared by
// the main layers and the MTP modules, and by training and inference (the MLP/MoE half).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/linear.h"
#include "kernels/routing.h"
#include "model/config.h"
#include "model/weights.h"

namespace seekr {

// Dimensions read once from the config.
struct Dims {
  int d, H, dn, dr, dv, dqk, rq, rkv, I, E, K, Im, Is, V;
  float eps, scale;
  // Precision of the Linear-layer GEMMs (training's mixed-precision mode; the embedding,
  // router, attention core, norms and output head always run in FP32).
  GemmPrecision linear = GemmPrecision::kF32;
  explicit Dims(const ModelConfig& c);
};

RoutingParams routing_params(const ModelConfig& c);

// Saved activations of the FFN half of a block (dense or MoE).
struct FfnActs {
  // dense
  std::vector<float> g, u, a;  // [N, I]
  // MoE
  std::vector<float> rlogits, scores, weights;  // [N, E], [N, E], [N, K]
  std::vector<int32_t> idx;                     // [N, K]
  std::vector<int32_t> offset;                  // [E+1] rows of each expert in the grouped buffers
  std::vector<int32_t> fill;                    // [E] counting-sort cursors (scratch)
  std::vector<double> bal_f, bal_P;             // [E] balance-loss f_i and P_i (scratch)
  std::vector<int32_t> row_token, row_slot;     // [N*K] token and top-k slot of each grouped row
  std::vector<int32_t> row_of;                  // [N, K] each token's grouped rows, ascending
  std::vector<float> xe, ge, ue, ae, ye;        // [N*K, d|Im|Im|Im|d] grouped by expert
  std::vector<float> gs, us, as;                // [N, Is] shared experts
  std::vector<int64_t> load;                    // [E] selections in this forward
  std::vector<float> dscores_balance;           // [N, E] balance-loss gradient on the scores
  std::vector<float> dweights, drouter;         // backward scratch: [N, K], [N, E]
  double balance_loss = 0;
};

// FFN forward: h[N, d] → out[N, d] (overwritten). For MoE layers `B`/`Tb` give the sequence
// structure for the sequence-wise balance loss (alpha > 0 computes it and its gradient).
void ffn_forward(const Dims& D, const ModelConfig& c, const LayerWeights& w, const float* h,
                 float* out, int N, int B, int Tb, float balance_alpha, FfnActs& a);
// dout[N, d] → dh[N, d] (overwritten); parameter gradients accumulate into g.
void ffn_backward(const Dims& D, const ModelConfig& c, const LayerWeights& w, const LayerWeights& g,
                  const float* h, const float* dout, float* dh, int N, FfnActs& a,
                  std::vector<float>& scratch);

struct BlockActs {
  std::vector<float> x_in, h1, rstd1;   // [N, d], [N, d], [N]
  std::vector<float> qa, qa_rstd, qan;  // q-LoRA: [N, rq], [N], [N, rq]
  std::vector<float> q;                 // [N, H*dqk], rope part rotated
  std::vector<float> kva;               // [N, rkv+dr], rope part rotated
  std::vector<float> c_rstd, cn;        // [N], [N, rkv] normalised latent
  std::vector<float> kv;                // [N, H*(dn+dv)]
  std::vector<float> k, v;              // [N, H*dqk], [N, H*dv]
  std::vector<float> probs;             // [B, H, Tb, Tb]
  std::vector<float> att;               // [N, H*dv]
  std::vector<float> x_mid, h2, rstd2;  // [N, d], [N, d], [N]
  FfnActs ffn;
};

struct RopeTables {
  std::vector<float> cos, sin;  // [max_pos, dr/2]
  explicit RopeTables(const ModelConfig& c);
};

// Training-path block over B sequences of Tb tokens (positions 0..Tb-1): x_in[N, d] is copied
// into acts; x_out[N, d] is written.
void block_forward(const Dims& D, const ModelConfig& c, const RopeTables& rope,
                   const LayerWeights& w, const float* x_in, float* x_out, int B, int Tb,
                   const int32_t* pos, float balance_alpha, BlockActs& a);

// dx_out[N, d] → dx_in[N, d] (overwritten; may not alias dx_out).
struct BlockScratch {
  std::vector<float> dh, datt, dq, dk, dv, dkv, dcn, dkva, dqa, dqan, dx_mid, ffn;
};
void block_backward(const Dims& D, const ModelConfig& c, const RopeTables& rope,
                    const LayerWeights& w, const LayerWeights& g, const float* dx_out, float* dx_in,
                    int B, int Tb, const int32_t* pos, BlockActs& a, BlockScratch& s);

}  // namespace seekr
