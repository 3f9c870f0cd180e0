#include "model/weights.h"

#include "core/check.h"

namespace seekr {

void for_each_tensor(const ModelConfig& c, ModelWeights& w,
                     const std::function<void(const TensorSpec&, float*& slot)>& fn) {
  const int64_t d = c.hidden_size, H = c.num_attention_heads;
  const int64_t dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim, dv = c.v_head_dim;
  auto matrix = [&](std::string name, int64_t out, int64_t in, float*& slot) {
    fn(TensorSpec{std::move(name), {out, in}, TensorInit::kNormal, TensorKind::kParam, true}, slot);
  };
  auto norm = [&](std::string name, int64_t n, float*& slot) {
    fn(TensorSpec{std::move(name), {n}, TensorInit::kOnes, TensorKind::kParam, false}, slot);
  };
  auto mlp = [&](const std::string& p, int64_t inter, MlpWeights& m) {
    matrix(p + ".gate_proj.weight", inter, d, m.gate);
    matrix(p + ".up_proj.weight", inter, d, m.up);
    matrix(p + ".down_proj.weight", d, inter, m.down);
  };

  const int L = c.num_hidden_layers, D = c.num_nextn_predict_layers;
  w.layers.resize(L + D);
  fn(TensorSpec{"model.embed_tokens.weight", {c.vocab_size, d}, TensorInit::kNormal,
                TensorKind::kParam, true},
     w.embed);
  for (int l = 0; l < L + D; ++l) {
    LayerWeights& lw = w.layers[l];
    const std::string p = "model.layers." + std::to_string(l);
    if (l >= L) {  // MTP module: its projection and norms come first in the official layout
      norm(p + ".enorm.weight", d, lw.enorm);
      norm(p + ".hnorm.weight", d, lw.hnorm);
      matrix(p + ".eh_proj.weight", d, 2 * d, lw.eh_proj);
    }
    norm(p + ".input_layernorm.weight", d, lw.input_norm);
    const std::string a = p + ".self_attn";
    if (c.q_lora_rank > 0) {
      matrix(a + ".q_a_proj.weight", c.q_lora_rank, d, lw.attn.q_a_proj);
      norm(a + ".q_a_layernorm.weight", c.q_lora_rank, lw.attn.q_a_norm);
      matrix(a + ".q_b_proj.weight", H * (dn + dr), c.q_lora_rank, lw.attn.q_b_proj);
    } else {
      matrix(a + ".q_proj.weight", H * (dn + dr), d, lw.attn.q_proj);
    }
    matrix(a + ".kv_a_proj_with_mqa.weight", c.kv_lora_rank + dr, d, lw.attn.kv_a_proj);
    norm(a + ".kv_a_layernorm.weight", c.kv_lora_rank, lw.attn.kv_a_norm);
    matrix(a + ".kv_b_proj.weight", H * (dn + dv), c.kv_lora_rank, lw.attn.kv_b_proj);
    matrix(a + ".o_proj.weight", d, H * dv, lw.attn.o_proj);
    norm(p + ".post_attention_layernorm.weight", d, lw.post_attn_norm);
    lw.is_moe = c.is_moe_layer(l);
    if (!lw.is_moe) {
      mlp(p + ".mlp", c.intermediate_size, lw.mlp);
    } else {
      matrix(p + ".mlp.gate.weight", c.n_routed_experts, d, lw.router);
      if (c.has_correction_bias())
        fn(TensorSpec{p + ".mlp.gate.e_score_correction_bias", {c.n_routed_experts},
                      TensorInit::kZeros, TensorKind::kBuffer, false},
           lw.correction_bias);
      lw.experts.resize(c.n_routed_experts);
      for (int e = 0; e < c.n_routed_experts; ++e)
        mlp(p + ".mlp.experts." + std::to_string(e), c.moe_intermediate_size, lw.experts[e]);
      if (c.n_shared_experts > 0)
        mlp(p + ".mlp.shared_experts", int64_t(c.n_shared_experts) * c.moe_intermediate_size,
            lw.shared);
    }
    if (l >= L) norm(p + ".shared_head.norm.weight", d, lw.head_norm);
  }
  norm("model.norm.weight", d, w.final_norm);
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    matrix("lm_head.weight", c.vocab_size, d, w.lm_head);
  }
}

ModelLayout::ModelLayout(const ModelConfig& c) : config_(c) {
  ModelWeights scratch;
  for_each_tensor(c, scratch, [&](const TensorSpec& spec, float*&) {
    specs_.push_back(spec);
    size_t& count = spec.kind == TensorKind::kParam ? param_count_ : buffer_count_;
    offsets_.push_back(count);
    // Keep every tensor 64-byte aligned for vector loads.
    count += (static_cast<size_t>(spec.numel()) + 15) / 16 * 16;
  });
}

ModelWeights ModelLayout::bind(float* params, float* buffers) const {
  ModelWeights w;
  size_t i = 0;
  for_each_tensor(config_, w, [&](const TensorSpec& spec, float*& slot) {
    SEEKR_CHECK(spec.name == specs_[i].name);
    float* base = spec.kind == TensorKind::kParam ? params : buffers;
    slot = base ? base + offsets_[i] : nullptr;
    ++i;
  });
  if (config_.tie_word_embeddings) w.lm_head = w.embed;
  return w;
}

int ModelLayout::find(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return static_cast<int>(i);
  return -1;
}

}  // namespace seekr
