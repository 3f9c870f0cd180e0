// Model-level tests: config validation, whole-model gradient check against finite differences,
// absorbed vs naive attention, inference vs training forward.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/model.h"

namespace seekr {
namespace {

using ::testing::HasSubstr;

// A micro model exercising every feature: q-LoRA, YaRN, groups, shared experts, 2 MTP modules.
std::string micro_config_json(const std::string& overrides = "") {
  std::string j = R"({
    "model_type": "deepseek_v3", "vocab_size": 37, "hidden_size": 16,
    "intermediate_size": 24, "moe_intermediate_size": 8, "num_hidden_layers": 2,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "num_attention_heads": 2,
    "q_lora_rank": 12, "kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 4,
    "v_head_dim": 6, "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 3,
    "n_group": 4, "topk_group": 2, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
    "norm_topk_prob": true, "routed_scaling_factor": 2.5, "num_nextn_predict_layers": 2,
    "rms_norm_eps": 1e-6, "rope_theta": 10000, "max_position_embeddings": 64,
    "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8},
    "initializer_range": 0.3)";
  return j + overrides + "}";
}

ModelConfig micro(const std::string& overrides = "") {
  return ModelConfig::from_json_text(micro_config_json(overrides), "micro.json");
}

TEST(Config, ReadsBenchConfigs) {
  for (const char* name : {"tiny.json", "small.json"}) {
    ModelConfig c = ModelConfig::from_file(std::string(SEEKR_SHARED_DIR) + "/bench-configs/" + name);
    EXPECT_EQ(c.model_type, "deepseek_v3");
    EXPECT_GT(c.num_parameters(), c.num_active_parameters());
    ModelConfig again = ModelConfig::from_json_text(c.to_json_text(), "roundtrip");
    EXPECT_EQ(again.to_json_text(), c.to_json_text());
  }
}

TEST(Config, ErrorsNameTheField) {
  auto expect_error = [](const std::string& json, const std::string& field) {
    try {
      ModelConfig::from_json_text(json, "bad.json");
      FAIL() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("bad.json"));
      EXPECT_THAT(e.what(), HasSubstr(field));
    }
  };
  expect_error(R"({"model_type": "llama"})", "model_type");
  expect_error("{not json", "not valid JSON");
  std::string c = micro_config_json();
  expect_error(micro_config_json(R"(, "n_group": 3)"), "n_group");
  expect_error(micro_config_json(R"(, "topk_group": 5)"), "topk_group");
  expect_error(micro_config_json(R"(, "num_experts_per_tok": 9)"), "num_experts_per_tok");
  expect_error(micro_config_json(R"(, "scoring_func": "relu")"), "scoring_func");
  expect_error(micro_config_json(R"(, "qk_rope_head_dim": 5)"), "qk_rope_head_dim");
  expect_error(micro_config_json(R"(, "hidden_size": "big")"), "hidden_size");
  // Missing required field.
  std::string missing = c;
  missing.replace(missing.find("\"kv_lora_rank\": 8,"), 18, "");
  expect_error(missing, "kv_lora_rank");
}

TEST(Config, YarnMatchesV3Formula) {
  // V3: d=64, base 1e4, L0 4096 → low 10, high 23 (facts file §1.2); check the ramp ends.
  ModelConfig c = micro();
  c.qk_rope_head_dim = 64;
  c.qk_nope_head_dim = 128;
  c.yarn = {true, 40.0, 4096, 32, 1, 1.0, 1.0};
  auto inv = c.rope_inv_freq();
  for (int i = 0; i < 32; ++i) {
    const double extra = 1.0 / std::pow(10000.0, 2.0 * i / 64);
    if (i <= 10) {
      EXPECT_NEAR(inv[i], extra, 1e-6 * extra) << i;
    } else if (i >= 23) {
      EXPECT_NEAR(inv[i], extra / 40, 1e-6 * extra) << i;
    } else {
      EXPECT_LT(inv[i], extra);
      EXPECT_GT(inv[i], extra / 40);
    }
  }
  EXPECT_NEAR(c.softmax_scale(), 0.13523, 1e-5) << "V3: 192^-0.5 * mscale^2 (facts §1.3)";
}

// Loss L = Σ logits·r + Σ mtp_logits·r_k + balance loss, so dL/dlogits = r.
struct Probe {
  Model& model;
  TrainGraph graph;
  std::vector<int32_t> tokens;
  int B, T;
  std::vector<float> r;
  std::vector<std::vector<float>> rk;
  TrainOptions opt;
  explicit Probe(Model& m, int B_, int T_) : model(m), graph(m), B(B_), T(T_) {
    Rng rng(7);
    for (int i = 0; i < B * T; ++i) tokens.push_back(rng.below(m.config().vocab_size));
    const int V = m.config().vocab_size;
    for (int i = 0; i < B * T * V; ++i) r.push_back(rng.normal());
    for (int k = 1; k <= m.config().num_nextn_predict_layers; ++k) {
      rk.emplace_back();
      for (int i = 0; i < B * (T - k) * V; ++i) rk.back().push_back(rng.normal());
    }
    opt.balance_alpha = 0.3f;
  }
  double loss(std::vector<std::vector<int64_t>>* load = nullptr) {
    graph.forward(tokens.data(), B, T, opt);
    const int V = model.config().vocab_size;
    double L = graph.balance_loss();
    for (size_t i = 0; i < r.size(); ++i) L += double(graph.logits()[i]) * r[i];
    for (size_t k = 0; k < rk.size(); ++k)
      for (size_t i = 0; i < rk[k].size(); ++i) L += double(graph.mtp_logits(k + 1)[i]) * rk[k][i];
    (void)V;
    if (load) *load = graph.expert_load();
    return L;
  }
  void grad() {
    loss();
    model.zero_grads();
    std::vector<float> dl = r;
    std::vector<std::vector<float>> dk = rk;
    std::vector<float*> ptrs;
    for (auto& v : dk) ptrs.push_back(v.data());
    graph.backward(dl.data(), ptrs);
  }
};

TEST(ModelGradient, EveryTensorMatchesFiniteDifferences) {
  std::vector<std::string> variants = {"", R"(, "q_lora_rank": null, "scoring_func": "softmax",
                                   "topk_method": "group_limited_greedy", "norm_topk_prob": false,
                                   "tie_word_embeddings": true, "rope_scaling": null)"};
  if (const char* v = std::getenv("SEEKR_GRAD_VARIANT")) variants = {v};
  for (const std::string& variant : variants) {
    Model model(micro(variant));
    model.init_weights(3);
    // Non-zero correction biases so selection differs from the unbiased ranking.
    Rng rng(11);
    for (auto& b : model.buffers()) b = static_cast<float>(rng.uniform() * 0.1 - 0.05);
    Probe probe(model, 2, 7);
    probe.grad();
    const std::vector<float> analytic = model.grads();
    const auto& specs = model.layout().specs();
    int checked = 0, skipped = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (specs[i].kind != TensorKind::kParam) continue;
      float* p = model.params().data() + model.layout().offsets()[i];
      Rng pick(i);
      for (int trial = 0; trial < 3; ++trial) {
        const int64_t j = pick.below(specs[i].numel());
        const float saved = p[j];
        const float h = 1e-2f * std::max(1.0f, std::fabs(saved));
        std::vector<std::vector<int64_t>> load_plus, load_minus, load0;
        probe.loss(&load0);
        p[j] = saved + h;
        const double lp = probe.loss(&load_plus);
        p[j] = saved - h;
        const double lm = probe.loss(&load_minus);
        p[j] = saved;
        if (load_plus != load0 || load_minus != load0) {  // a routing flip: not differentiable
          ++skipped;
          continue;
        }
        const double fd = (lp - lm) / (2.0 * h);
        const double an = analytic[model.layout().offsets()[i] + j];
        EXPECT_NEAR(an, fd, 2e-2 * std::max(1.0, std::fabs(fd)))
            << specs[i].name << "[" << j << "] variant " << variant;
        ++checked;
      }
    }
    EXPECT_GT(checked, 3 * 40) << "skipped " << skipped;
  }
}

// The bias update moves every bias by exactly ±gamma (or 0 at the mean).
TEST(ModelBalance, BiasUpdateFollowsSign) {
  Model model(micro());
  model.init_weights(1);
  std::vector<std::vector<int64_t>> load(model.w().layers.size());
  for (size_t l = 0; l < load.size(); ++l)
    if (model.w().layers[l].is_moe) load[l] = {0, 1, 2, 3, 4, 5, 6, 7};
  model.update_correction_bias(load, 0.01f);
  const float* b = model.w().layers[1].correction_bias;
  for (int e = 0; e < 8; ++e) EXPECT_FLOAT_EQ(b[e], e < 4 ? 0.01f : -0.01f) << e;
}

class InferenceAgreement : public ::testing::TestWithParam<const char*> {};

TEST_P(InferenceAgreement, SessionMatchesTrainingForwardInBothModes) {
  Model model(micro(GetParam()));
  model.init_weights(5);
  const int T = 9, V = model.config().vocab_size;
  std::vector<int32_t> tokens;
  Rng rng(2);
  for (int i = 0; i < T; ++i) tokens.push_back(rng.below(V));
  TrainGraph graph(model);
  TrainOptions opt;
  opt.mtp = false;
  graph.forward(tokens.data(), 1, T, opt);
  std::vector<float> ref(graph.logits(), graph.logits() + size_t(T) * V);
  for (AttentionMode mode : {AttentionMode::kAbsorbed, AttentionMode::kNaive}) {
    InferenceSession s(model, 2, 16, mode);
    std::vector<float> logits(size_t(T) * V);
    // Prefill 5 tokens in one call, then decode one at a time.
    std::vector<int32_t> slots(T, 1), pos(T);
    for (int i = 0; i < T; ++i) pos[i] = i;
    s.forward(tokens.data(), slots.data(), pos.data(), 5, logits.data());
    for (int i = 5; i < T; ++i)
      s.forward(&tokens[i], &slots[i], &pos[i], 1, logits.data() + size_t(i) * V);
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_NEAR(logits[i], ref[i], 1e-4 * std::max(1.0f, std::fabs(ref[i]))) << i;
    EXPECT_EQ(s.length(1), T);
  }
  InferenceSession absorbed(model, 1, 16, AttentionMode::kAbsorbed);
  InferenceSession naive(model, 1, 16, AttentionMode::kNaive);
  const ModelConfig& c = model.config();
  EXPECT_EQ(absorbed.cache_floats_per_token_per_layer(), c.kv_lora_rank + c.qk_rope_head_dim);
  EXPECT_EQ(naive.cache_floats_per_token_per_layer(),
            c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim));
}

INSTANTIATE_TEST_SUITE_P(Variants, InferenceAgreement,
                         ::testing::Values("", R"(, "q_lora_rank": null, "scoring_func": "softmax")"));

TEST(Inference, CopiedSlotContinuesLikeTheOriginal) {
  Model model(micro());
  model.init_weights(8);
  const int V = model.config().vocab_size;
  for (AttentionMode mode : {AttentionMode::kAbsorbed, AttentionMode::kNaive}) {
    InferenceSession s(model, 3, 16, mode);
    std::vector<int32_t> prompt = {3, 14, 15, 9, 2}, slots(5, 0), pos = {0, 1, 2, 3, 4};
    std::vector<float> logits(5 * V);
    s.forward(prompt.data(), slots.data(), pos.data(), 5, logits.data());
    s.copy_slot(0, 2);
    EXPECT_EQ(s.length(2), 5);
    // The same next token in both slots, decoded together, gives the same logits.
    std::vector<int32_t> tok = {7, 7}, sl = {0, 2}, ps = {5, 5};
    std::vector<float> out(2 * V);
    s.forward(tok.data(), sl.data(), ps.data(), 2, out.data());
    for (int i = 0; i < V; ++i) ASSERT_EQ(out[i], out[V + i]) << i;
  }
}

TEST(Inference, RejectsBadRequests) {
  Model model(micro());
  model.init_weights(5);
  InferenceSession s(model, 1, 4);
  std::vector<float> logits(37);
  int32_t tok = 3, slot = 0, pos = 1;
  EXPECT_THROW(s.forward(&tok, &slot, &pos, 1, logits.data()), Error);  // skips position 0
  tok = 99;
  pos = 0;
  EXPECT_THROW(s.forward(&tok, &slot, &pos, 1, logits.data()), Error);  // outside vocab
}

}  // namespace
}  // namespace seekr
