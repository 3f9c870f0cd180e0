#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/file_io.h"

namespace seekr {
namespace {

using nlohmann::json;

// Field readers that name the config and the field in every error.
class Reader {
 public:
  Reader(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  const json* find(const char* field) const {
    auto it = j_.find(field);
    return it == j_.end() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const char* field, const std::string& what) const {
    throw Error(str_cat(origin_, ": field '", field, "' ", what));
  }
  int integer(const char* field) const {
    const json* v = find(field);
    if (!v) fail(field, "is missing");
    if (!v->is_number_integer()) fail(field, "must be an integer");
    return v->get<int>();
  }
  int integer_or(const char* field, int def) const {
    const json* v = find(field);
    if (!v || v->is_null()) return def;
    if (!v->is_number_integer()) fail(field, "must be an integer or null");
    return v->get<int>();
  }
  double number_or(const char* field, double def) const {
    const json* v = find(field);
    if (!v || v->is_null()) return def;
    if (!v->is_number()) fail(field, "must be a number");
    return v->get<double>();
  }
  bool boolean_or(const char* field, bool def) const {
    const json* v = find(field);
    if (!v || v->is_null()) return def;
    if (!v->is_boolean()) fail(field, "must be true or false");
    return v->get<bool>();
  }
  std::string string_or(const char* field, const std::string& def) const {
    const json* v = find(field);
    if (!v || v->is_null()) return def;
    if (!v->is_string()) fail(field, "must be a string");
    return v->get<std::string>();
  }

 private:
  const json& j_;
  std::string origin_;
};

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// Dimension index whose wavelength completes `rotations` turns within the original context.
double yarn_correction_dim(double rotations, int dim, double base, int max_pos) {
  return dim * std::log(max_pos / (rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
}

}  // namespace

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(str_cat(origin, ": not valid JSON: ", e.what()));
  }
  SEEKR_REQUIRE(j.is_object(), origin, ": a config must be a JSON object");
  Reader r(j, origin);
  ModelConfig c;
  c.model_type = r.string_or("model_type", "");
  if (c.model_type != "deepseek_v3" && c.model_type != "deepseek_v2")
    r.fail("model_type", str_cat("is '", c.model_type, "'; seekr supports deepseek_v3 and deepseek_v2"));
  const bool v3 = c.model_type == "deepseek_v3";

  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.intermediate_size = r.integer("intermediate_size");
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.num_attention_heads = r.integer("num_attention_heads");
  c.q_lora_rank = r.integer_or("q_lora_rank", 0);
  c.kv_lora_rank = r.integer("kv_lora_rank");
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim");
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim");
  c.v_head_dim = r.integer("v_head_dim");
  c.n_routed_experts = r.integer_or("n_routed_experts", 0);
  c.n_shared_experts = r.integer_or("n_shared_experts", 0);
  c.moe_intermediate_size = c.n_routed_experts > 0 ? r.integer("moe_intermediate_size")
                                                   : r.integer_or("moe_intermediate_size", 0);
  c.num_experts_per_tok = c.n_routed_experts > 0 ? r.integer("num_experts_per_tok") : 0;
  c.first_k_dense_replace = r.integer_or("first_k_dense_replace", 0);
  c.moe_layer_freq = r.integer_or("moe_layer_freq", 1);
  c.n_group = r.integer_or("n_group", 1);
  c.topk_group = r.integer_or("topk_group", 1);

  const std::string topk_method = r.string_or("topk_method", v3 ? "noaux_tc" : "greedy");
  if (topk_method == "greedy") c.topk_method = TopkMethod::kGreedy;
  else if (topk_method == "group_limited_greedy") c.topk_method = TopkMethod::kGroupLimitedGreedy;
  else if (topk_method == "noaux_tc") c.topk_method = TopkMethod::kNoauxTc;
  else r.fail("topk_method", str_cat("is '", topk_method, "'; expected greedy, group_limited_greedy or noaux_tc"));

  const std::string scoring = r.string_or("scoring_func", v3 ? "sigmoid" : "softmax");
  if (scoring == "sigmoid") c.scoring_func = ScoringFunc::kSigmoid;
  else if (scoring == "softmax") c.scoring_func = ScoringFunc::kSoftmax;
  else r.fail("scoring_func", str_cat("is '", scoring, "'; expected sigmoid or softmax"));

  c.norm_topk_prob = r.boolean_or("norm_topk_prob", false);
  c.routed_scaling_factor = r.number_or("routed_scaling_factor", 1.0);
  c.num_nextn_predict_layers = r.integer_or("num_nextn_predict_layers", 0);
  c.rms_norm_eps = r.number_or("rms_norm_eps", 1e-6);
  c.rope_theta = r.number_or("rope_theta", 10000.0);
  c.max_position_embeddings = r.integer("max_position_embeddings");
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.bos_token_id = r.integer_or("bos_token_id", -1);
  c.eos_token_id = r.integer_or("eos_token_id", -1);
  c.initializer_range = r.number_or("initializer_range", 0.02);

  if (const json* rs = r.find("rope_scaling"); rs && !rs->is_null()) {
    SEEKR_REQUIRE(rs->is_object(), origin, ": field 'rope_scaling' must be an object or null");
    Reader y(*rs, origin + " rope_scaling");
    std::string type = y.string_or("type", y.string_or("rope_type", ""));
    if (type != "yarn")
      y.fail("type", str_cat("is '", type, "'; seekr supports rope_scaling of type yarn"));
    c.yarn.enabled = true;
    c.yarn.factor = y.number_or("factor", 1.0);
    c.yarn.original_max_position_embeddings = y.integer("original_max_position_embeddings");
    c.yarn.beta_fast = y.number_or("beta_fast", 32.0);
    c.yarn.beta_slow = y.number_or("beta_slow", 1.0);
    c.yarn.mscale = y.number_or("mscale", 1.0);
    c.yarn.mscale_all_dim = y.number_or("mscale_all_dim", 0.0);
    if (!(c.yarn.factor >= 1.0)) y.fail("factor", "must be >= 1");
    if (c.yarn.original_max_position_embeddings <= 0)
      y.fail("original_max_position_embeddings", "must be positive");
  }

  // Impossible combinations, each naming a field.
  auto positive = [&](const char* field, int v) {
    if (v <= 0) r.fail(field, str_cat("must be positive (is ", v, ")"));
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("num_hidden_layers", c.num_hidden_layers);
  positive("num_attention_heads", c.num_attention_heads);
  positive("kv_lora_rank", c.kv_lora_rank);
  positive("qk_nope_head_dim", c.qk_nope_head_dim);
  positive("qk_rope_head_dim", c.qk_rope_head_dim);
  positive("v_head_dim", c.v_head_dim);
  positive("max_position_embeddings", c.max_position_embeddings);
  positive("moe_layer_freq", c.moe_layer_freq);
  if (c.q_lora_rank < 0) r.fail("q_lora_rank", "must be null or positive");
  if (c.qk_rope_head_dim % 2) r.fail("qk_rope_head_dim", "must be even (RoPE rotates pairs)");
  if (c.num_nextn_predict_layers < 0) r.fail("num_nextn_predict_layers", "must be >= 0");
  if (c.first_k_dense_replace < 0) r.fail("first_k_dense_replace", "must be >= 0");
  if (c.n_routed_experts < 0) r.fail("n_routed_experts", "must be >= 0");
  if (c.n_shared_experts < 0) r.fail("n_shared_experts", "must be >= 0");
  if (c.n_routed_experts > 0) {
    positive("moe_intermediate_size", c.moe_intermediate_size);
    if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.n_routed_experts)
      r.fail("num_experts_per_tok", str_cat("must be in 1..n_routed_experts (", c.n_routed_experts, ")"));
    if (c.n_group <= 0 || c.n_routed_experts % c.n_group)
      r.fail("n_group", str_cat("must divide n_routed_experts (", c.n_routed_experts, ")"));
    if (c.topk_group <= 0 || c.topk_group > c.n_group)
      r.fail("topk_group", str_cat("must be in 1..n_group (", c.n_group, ")"));
    const int per_group = c.n_routed_experts / c.n_group;
    if (c.num_experts_per_tok > c.topk_group * per_group)
      r.fail("num_experts_per_tok", "exceeds the experts in the topk_group selected groups");
    if (c.topk_method == TopkMethod::kNoauxTc && c.n_group > 1 && per_group < 2)
      r.fail("n_group", "noaux_tc scores a group by its top-2 experts; groups need >= 2 experts");
  }
  if (c.routed_scaling_factor <= 0) r.fail("routed_scaling_factor", "must be positive");
  if (c.rms_norm_eps <= 0) r.fail("rms_norm_eps", "must be positive");
  if (c.rope_theta <= 1) r.fail("rope_theta", "must be > 1");
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  return from_json_text(read_file(path), path);
}

std::string ModelConfig::to_json_text() const {
  json j;
  j["architectures"] = {model_type == "deepseek_v3" ? "DeepseekV3ForCausalLM"
                                                    : "DeepseekV2ForCausalLM"};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["first_k_dense_replace"] = first_k_dense_replace;
  j["moe_layer_freq"] = moe_layer_freq;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_attention_heads;
  j["q_lora_rank"] = q_lora_rank > 0 ? json(q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = kv_lora_rank;
  j["qk_nope_head_dim"] = qk_nope_head_dim;
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["v_head_dim"] = v_head_dim;
  j["n_routed_experts"] = n_routed_experts;
  j["n_shared_experts"] = n_shared_experts;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["n_group"] = n_group;
  j["topk_group"] = topk_group;
  j["topk_method"] = topk_method == TopkMethod::kNoauxTc ? "noaux_tc"
                     : topk_method == TopkMethod::kGroupLimitedGreedy ? "group_limited_greedy"
                                                                       : "greedy";
  j["scoring_func"] = scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
  j["norm_topk_prob"] = norm_topk_prob;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["num_nextn_predict_layers"] = num_nextn_predict_layers;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (yarn.enabled) {
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", yarn.factor},
                         {"original_max_position_embeddings", yarn.original_max_position_embeddings},
                         {"beta_fast", yarn.beta_fast},
                         {"beta_slow", yarn.beta_slow},
                         {"mscale", yarn.mscale},
                         {"mscale_all_dim", yarn.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = max_position_embeddings;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["initializer_range"] = initializer_range;
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

float ModelConfig::softmax_scale() const {
  double s = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (yarn.enabled && yarn.mscale_all_dim > 0) {
    const double m = yarn_get_mscale(yarn.factor, yarn.mscale_all_dim);
    s *= m * m;
  }
  return static_cast<float>(s);
}

float ModelConfig::rope_mscale() const {
  if (!yarn.enabled) return 1.0f;
  return static_cast<float>(yarn_get_mscale(yarn.factor, yarn.mscale) /
                            yarn_get_mscale(yarn.factor, yarn.mscale_all_dim));
}

std::vector<float> ModelConfig::rope_inv_freq() const {
  const int dim = qk_rope_head_dim;
  const int half = dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    const double extra = 1.0 / std::pow(rope_theta, 2.0 * i / dim);
    if (!yarn.enabled) {
      inv[i] = static_cast<float>(extra);
      continue;
    }
    const int L0 = yarn.original_max_position_embeddings;
    double low = std::floor(yarn_correction_dim(yarn.beta_fast, dim, rope_theta, L0));
    double high = std::ceil(yarn_correction_dim(yarn.beta_slow, dim, rope_theta, L0));
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double extrapolation = 1.0 - ramp;  // 1: keep the original frequency
    const double inter = extra / yarn.factor;
    inv[i] = static_cast<float>(inter * (1.0 - extrapolation) + extra * extrapolation);
  }
  return inv;
}

long long ModelConfig::num_parameters() const {
  const long long d = hidden_size;
  auto attn = [&]() -> long long {
    const long long H = num_attention_heads;
    long long q = q_lora_rank > 0 ? d * q_lora_rank + q_lora_rank + q_lora_rank * H * qk_head_dim()
                                  : d * H * qk_head_dim();
    return q + d * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank +
           kv_lora_rank * H * (qk_nope_head_dim + v_head_dim) + H * v_head_dim * d + 2 * d;
  };
  auto ffn = [&](int layer) -> long long {
    if (!is_moe_layer(layer)) return 3 * d * intermediate_size;
    return d * n_routed_experts + 3 * d * moe_intermediate_size * (n_routed_experts + n_shared_experts);
  };
  long long n = vocab_size * d * (tie_word_embeddings ? 1 : 2) + d;
  for (int l = 0; l < num_hidden_layers + num_nextn_predict_layers; ++l) n += attn() + ffn(l);
  n += static_cast<long long>(num_nextn_predict_layers) * (3 * d + 2 * d * d);
  return n;
}

long long ModelConfig::num_active_parameters() const {
  long long n = num_parameters();
  const long long inactive = 3LL * hidden_size * moe_intermediate_size *
                             (n_routed_experts - num_experts_per_tok);
  for (int l = 0; l < num_hidden_layers; ++l)
    if (is_moe_layer(l)) n -= inactive;
  return n;
}

}  // namespace seekr
