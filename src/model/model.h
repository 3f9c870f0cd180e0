// A DeepSeek-V3-architecture model: parameters, gradients, training forward/backward and
// inference with the MLA cache. Training and serving drive it through the classes below;
// the model knows nothing of losses, optimizers or requests.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "model/config.h"
#include "model/quantized_weights.h"
#include "model/weights.h"

namespace seekr {

class TensorSource;       // core/safetensors.h
class SafetensorsWriter;  // core/safetensors.h

class Model {
 public:
  explicit Model(const ModelConfig& config);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const ModelLayout& layout() const { return layout_; }

  // Flat blocks (layout().offsets() index into them).
  std::vector<float>& params() { return params_; }
  const std::vector<float>& params() const { return params_; }
  // The gradient block is allocated at the first call of grads(), g() or zero_grads() (a model
  // that only serves never holds it; thread-safe).
  std::vector<float>& grads();
  std::vector<float>& buffers() { return buffers_; }
  const std::vector<float>& buffers() const { return buffers_; }

  // Views of the blocks as named tensors.
  const ModelWeights& w() const { return w_; }
  const ModelWeights& g();

  // normal(0, initializer_range) for matrices, 1 for norms, 0 for correction biases.
  void init_weights(uint64_t seed);
  void zero_grads();
  // Copies every tensor from `src` (F32/F16/BF16, and F8_E4M3 with its 128x128 weight_scale_inv
  // dequantised; see model/convert.h, all converted to F32); throws seekr::Error naming
  // a missing tensor or a shape mismatch. MTP tensors are optional when `allow_missing_mtp`.
  void load(const TensorSource& src, bool allow_missing_mtp = false);
  // The same for inference. With Fp8WeightMode::kKeep, the checkpoint's F8_E4M3 Linear weights
  // (is_fp8_linear_name) stay codes + scales in fp8_weights(), which InferenceSession reads;
  // their FP32 slots in params() stay zero and their whole pages go back to the OS, so such a
  // model serves InferenceSession only (training or exporting it would read zeros).
  // kv_b_proj is the exception: attention uses it per head (the absorbed q_nope·W_k and o·W_v,
  // and the naive expansion), and it is small (H·(dn+dv) × kv_lora_rank), so it is dequantised.
  void load(const TensorSource& src, bool allow_missing_mtp, Fp8WeightMode fp8);
  // The FP8-kept Linear weights of the last load; null when none were kept.
  const Fp8LinearWeights* fp8_weights() const { return fp8_.get(); }
  // Adds every parameter and buffer under its HF name (F32). The model must outlive `out`'s write.
  void add_to(SafetensorsWriter& out) const;

  // Bias update of auxiliary-loss-free balancing (V3 eq. 16): for every MoE layer,
  // bias_e -= gamma * sign(load_e - mean(load)). `load[layer]` is [E] counts (empty for dense).
  void update_correction_bias(const std::vector<std::vector<int64_t>>& load, float gamma);

 private:
  ModelConfig config_;
  ModelLayout layout_;
  std::vector<float> params_, grads_, buffers_;
  ModelWeights w_, g_;
  std::once_flag grads_once_;
  std::unique_ptr<Fp8LinearWeights> fp8_;
};

// Activations of one training forward for a fixed [B, T]; reused across steps so the training
// step does not allocate once the shapes are known.
struct TrainOptions {
  float balance_alpha = 0.0f;  // sequence-wise balance loss weight (0: off)
  bool mtp = true;             // run the MTP modules (when the config has them)
  // Linear-layer GEMM precision (FP8 / BF16 mixed-precision training; kernels/linear.h).
  GemmPrecision precision = GemmPrecision::kF32;
};

class TrainGraph {
 public:
  explicit TrainGraph(Model& model);
  ~TrainGraph();

  // tokens: [B, T] inputs. Fills logits() [B*T, V] and, for MTP module k = 1..D,
  // mtp_logits(k) [B*(T-k), V] where row (b, i) predicts token (b, i+k+1) from inputs up to
  // (b, i+k).
  void forward(const int32_t* tokens, int B, int T, const TrainOptions& opt);
  float* logits();
  float* mtp_logits(int k);
  int mtp_rows(int k) const;
  int B() const;
  int T() const;
  // Sum over MoE layers of the mean-over-sequences balance loss (already times alpha).
  double balance_loss() const;
  // Per layer (main then MTP) expert selection counts of the last forward ([E], empty if dense).
  const std::vector<std::vector<int64_t>>& expert_load() const;

  // Gradients at the logits in, parameter gradients out (accumulated into model.grads()).
  // dlogits [B*T, V] and dmtp[k-1] [B*(T-k), V]; they may point to logits()/mtp_logits(k) and
  // are clobbered. The balance loss gradient is added when alpha > 0.
  void backward(float* dlogits, const std::vector<float*>& dmtp);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Inference with the compressed MLA cache. A session owns `max_seqs` cache slots of up to
// `max_len` positions each; forward() takes any mix of tokens from any slots (prefill: many
// tokens of one slot; batched decode: one token of each of many slots). Tokens of the same slot
// must come in increasing position order, and positions must follow what the slot already holds.
//
// When the config has MTP modules, the first one (k = 1) also runs here, with its own cache per
// slot, so it can draft the token after next for speculative decoding (V3 §5.4.3). MTP row p of
// a slot joins the main model's last hidden state at position p with the token at p + 1 and
// predicts the token at p + 2, exactly as TrainGraph::mtp_logits(1) does.
enum class AttentionMode {
  kAbsorbed,  // cache holds kv_lora_rank + qk_rope_head_dim floats per token per layer
  kNaive,     // cache holds expanded per-head K (dn+dr) and V (dv)
};

class InferenceSession {
 public:
  InferenceSession(const Model& model, int max_seqs, int max_len,
                   AttentionMode mode = AttentionMode::kAbsorbed);
  ~InferenceSession();

  // tokens[n], slots[n], positions[n]. Writes logits [n, V] for every token when `logits_rows`
  // is null, else only for the rows i with logits_rows[i] != 0 (packed in order). `hidden`, when
  // given, receives [n, d]: every row's output of the last main block before the final norm,
  // the input mtp_forward() needs.
  void forward(const int32_t* tokens, const int32_t* slots, const int32_t* positions, int n,
               float* logits, const uint8_t* logits_rows = nullptr, float* hidden = nullptr);
  // The MTP module over n rows: row i joins hidden[i] ([n, d], as forward() wrote it for
  // position positions[i] of slot slots[i]) with the token at the next position,
  // next_tokens[i]; its logits predict the token after that one. Rows enter the slot's MTP
  // cache at positions[i], in the same order rules as forward() against mtp_length(slot).
  // Logits as in forward(). Requires has_mtp().
  void mtp_forward(const float* hidden, const int32_t* next_tokens, const int32_t* slots,
                   const int32_t* positions, int n, float* logits,
                   const uint8_t* logits_rows = nullptr);
  bool has_mtp() const;       // the config has an MTP module
  void reset_slot(int slot);  // forget a slot's cache (main and MTP)
  // Makes `dst` hold the same positions as `src` (e.g. one prefilled prompt shared by G
  // samples); dst's previous contents are dropped. The MTP cache is copied too.
  void copy_slot(int src, int dst);
  // Forgets the positions >= `length` of a slot in the main and the MTP caches (a rejected
  // draft token); a cache already shorter is left as it is.
  void truncate(int slot, int length);
  int length(int slot) const;      // positions held
  int mtp_length(int slot) const;  // positions held by the MTP cache
  int max_seqs() const;
  int max_len() const;
  // Cache floats per token per layer (absorbed: rkv+dr; naive: H*(dn+dr+dv)).
  int cache_floats_per_token_per_layer() const;
  size_t cache_bytes_per_token() const;  // over all main layers, float32

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace seekr
