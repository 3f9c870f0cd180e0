// MoE router: scores, group-limited top-k selection and gate weights, with the backward of the
// gate weights into the router logits. The selection itself carries no gradient.
#pragma once

#include <cstdint>

namespace seekr {

struct RoutingParams {
  int E = 0;              // routed experts
  int K = 0;              // experts per token
  int n_group = 1;        // expert groups
  int topk_group = 1;     // groups kept per token
  bool group_top2_sum = false;  // group score: sum of its top-2 (noaux_tc) or max
  bool sigmoid = true;    // scoring: sigmoid or softmax over experts
  bool norm_topk = false; // normalise selected weights to sum 1 (+1e-20)
  float scale = 1.0f;     // routed_scaling_factor
};

// logits [N, E] → scores [N, E]; idx [N, K] chosen by scores + bias (bias [E] may be null),
// ties broken toward the lower index; weights [N, K] from the unbiased scores.
void route_forward(const RoutingParams& p, const float* logits, const float* bias, float* scores,
                   int32_t* idx, float* weights, int N);

// dweights [N, K] (and optional dscores_extra [N, E] on the scores) → dlogits [N, E]
// (overwritten).
void route_backward(const RoutingParams& p, const float* scores, const int32_t* idx,
                    const float* dweights, const float* dscores_extra, float* dlogits, int N);

}  // namespace seekr
