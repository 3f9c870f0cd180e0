// Model hyper-parameters, read from an HF config.json of model_type deepseek_v3 / deepseek_v2.
#pragma once

#include <string>
#include <vector>

namespace seekr {

enum class ScoringFunc { kSigmoid, kSoftmax };
// greedy: plain top-k; group_limited_greedy: group score = max (V2);
// noaux_tc: group score = sum of top-2 biased scores, with e_score_correction_bias (V3).
enum class TopkMethod { kGreedy, kGroupLimitedGreedy, kNoauxTc };

struct YarnScaling {
  bool enabled = false;
  double factor = 1.0;
  int original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  std::string model_type;  // "deepseek_v3" | "deepseek_v2"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int moe_intermediate_size = 0;
  int num_hidden_layers = 0;
  int first_k_dense_replace = 0;
  int moe_layer_freq = 1;
  int num_attention_heads = 0;
  int q_lora_rank = 0;  // 0: plain q_proj (config null)
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  int n_routed_experts = 0;
  int n_shared_experts = 0;
  int num_experts_per_tok = 0;
  int n_group = 1;
  int topk_group = 1;
  TopkMethod topk_method = TopkMethod::kGreedy;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int num_nextn_predict_layers = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  YarnScaling yarn;
  int max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  int bos_token_id = -1;
  int eos_token_id = -1;
  double initializer_range = 0.02;

  // Parses and validates; throws seekr::Error naming `origin` and the field at fault.
  static ModelConfig from_json_text(const std::string& text, const std::string& origin);
  static ModelConfig from_file(const std::string& path);
  // HF-compatible config.json text (round-trips through from_json_text).
  std::string to_json_text() const;

  // Derived quantities.
  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool has_moe() const { return n_routed_experts > 0; }
  // Layer index in the checkpoint numbering: main layers 0..L-1, MTP modules L..L+D-1.
  bool is_moe_layer(int layer) const {
    return has_moe() && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  bool has_correction_bias() const { return topk_method == TopkMethod::kNoauxTc; }
  float softmax_scale() const;                // (nope+rope)^-0.5, times YaRN mscale²
  float rope_mscale() const;                  // YaRN cos/sin magnitude (1 without YaRN)
  std::vector<float> rope_inv_freq() const;   // [rope/2], YaRN-corrected when enabled
  long long num_parameters() const;           // trainable, shared embedding/head counted once
  long long num_active_parameters() const;    // per token: routed experts counted K of E
};

}  // namespace seekr
