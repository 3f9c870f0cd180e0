// The model's tensors: one flat float block for parameters (and one of the same layout for
// gradients and optimizer moments), one for non-trainable buffers (the routers' correction
// biases). for_each_tensor() is the only list of tensors: layout, binding, loading, saving,
// zeroing and initialising all walk it, so no pointer table can drift from another.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"

namespace seekr {

enum class TensorInit { kNormal, kOnes, kZeros };
enum class TensorKind { kParam, kBuffer };

struct TensorSpec {
  std::string name;            // HF name, e.g. model.layers.3.mlp.gate.weight
  std::vector<int64_t> shape;  // HF shape: Linear weights are [out, in]
  TensorInit init = TensorInit::kNormal;
  TensorKind kind = TensorKind::kParam;
  bool weight_decay = false;  // matrices yes; norms and biases no
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
};

struct AttentionWeights {
  float* q_proj = nullptr;     // [H*(dn+dr), d]          (no q-LoRA)
  float* q_a_proj = nullptr;   // [rq, d]                 (q-LoRA)
  float* q_a_norm = nullptr;   // [rq]
  float* q_b_proj = nullptr;   // [H*(dn+dr), rq]
  float* kv_a_proj = nullptr;  // [rkv+dr, d]   kv_a_proj_with_mqa
  float* kv_a_norm = nullptr;  // [rkv]
  float* kv_b_proj = nullptr;  // [H*(dn+dv), rkv]
  float* o_proj = nullptr;     // [d, H*dv]
};

struct MlpWeights {
  float* gate = nullptr;  // [I, d]
  float* up = nullptr;    // [I, d]
  float* down = nullptr;  // [d, I]
};

struct LayerWeights {
  float* input_norm = nullptr;      // [d]
  float* post_attn_norm = nullptr;  // [d]
  AttentionWeights attn;
  bool is_moe = false;
  MlpWeights mlp;                   // dense layers
  float* router = nullptr;          // [E, d]  mlp.gate.weight
  float* correction_bias = nullptr; // [E]     buffer, noaux_tc only
  std::vector<MlpWeights> experts;  // E routed experts, [Im, d] / [d, Im]
  MlpWeights shared;                // n_shared*Im wide; null when n_shared_experts == 0
  // MTP modules only:
  float* enorm = nullptr;      // [d]
  float* hnorm = nullptr;      // [d]
  float* eh_proj = nullptr;    // [d, 2d]  input: [enorm(emb); hnorm(h)]
  float* head_norm = nullptr;  // [d]      shared_head.norm
};

struct ModelWeights {
  float* embed = nullptr;       // [V, d]
  float* final_norm = nullptr;  // [d]
  float* lm_head = nullptr;     // [V, d] (== embed when tied)
  std::vector<LayerWeights> layers;  // num_hidden_layers main layers, then the MTP modules
};

// Calls fn(spec, slot) for every tensor of the model in a fixed order; slot is the pointer
// field of `w` that holds that tensor.
void for_each_tensor(const ModelConfig& c, ModelWeights& w,
                     const std::function<void(const TensorSpec&, float*& slot)>& fn);

// Offsets of every tensor inside the flat blocks.
class ModelLayout {
 public:
  explicit ModelLayout(const ModelConfig& c);
  const std::vector<TensorSpec>& specs() const { return specs_; }
  const std::vector<size_t>& offsets() const { return offsets_; }  // within its own block
  size_t param_count() const { return param_count_; }
  size_t buffer_count() const { return buffer_count_; }
  // Pointers into `params` and `buffers` (buffers may be null: their slots stay null).
  ModelWeights bind(float* params, float* buffers) const;
  int find(const std::string& name) const;  // index into specs(), -1 if absent

 private:
  ModelConfig config_;
  std::vector<TensorSpec> specs_;
  std::vector<size_t> offsets_;
  size_t param_count_ = 0;
  size_t buffer_count_ = 0;
};

}  // namespace seekr
