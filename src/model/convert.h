// Checkpoint dtypes: reading DeepSeek's block-FP8 layout (F8_E4M3 weights, each with an F32
// `<name>_scale_inv` of 128×128 block scales, and config.json's quantization_config) and
// converting a checkpoint directory between F32, BF16, F16 and that FP8 layout (`seekr convert`).
// Format and rules: docs/checkpoint-format.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace seekr {

struct TensorView;   // core/safetensors.h
class TensorSource;  // core/safetensors.h

// ---- the FP8 layout ----------------------------------------------------------------------------

// config.json's quantization_config, as DeepSeek-V3 ships it:
//   {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
//    "weight_block_size": [128, 128]}
// plus the optional "scale_fmt": "ue8m0" of later releases (it rounds the online activation
// scales to powers of two; stored weight scales are F32 either way).
struct Fp8QuantConfig {
  bool ue8m0_activation_scales = false;
};

// The quantization_config of a config.json text: nullopt when absent or null. Anything seekr
// cannot load (another quant_method, fmt, weight_block_size or activation_scheme, wrong types)
// throws seekr::Error naming `origin` and the field, e.g. quantization_config.weight_block_size.
// fmt, weight_block_size and activation_scheme default to the values above when missing.
std::optional<Fp8QuantConfig> parse_quantization_config(const std::string& config_json,
                                                        const std::string& origin);
// The object seekr writes (compact JSON; the release's keys and values).
std::string fp8_quantization_config_json();

inline constexpr const char* kScaleInvSuffix = "_scale_inv";
// "...weight_scale_inv": a scale companion, never a model tensor.
bool is_scale_inv_name(const std::string& name);
// The tensors DeepSeek's release stores in FP8: every 2-D Linear weight, i.e. the *_proj.weight
// of attention, dense MLPs, routed and shared experts and the MTP eh_proj (kv_a_proj_with_mqa
// included). Not: embeddings, lm_head / shared_head.head, norms, the router mlp.gate.weight,
// e_score_correction_bias.
bool is_fp8_linear_name(const std::string& name);

// One stored FP8 weight: codes [rows, cols] point into the source's mapping (valid while it is
// open); scale_inv [ceil(rows/128), ceil(cols/128)] is copied to aligned F32. Exactly the (b, b_s,
// Fp8Tiling::k128x128) operands of fp8_gemm, so inference can keep them instead of dequantising.
struct Fp8Weight {
  const uint8_t* codes = nullptr;
  std::vector<float> scale_inv;
  int rows = 0, cols = 0;
};
// The validated pair of F8_E4M3 tensor `t` of `src`: throws seekr::Error naming the checkpoint
// and the tensor when t is not a 2-D F8_E4M3 tensor, its `<name>_scale_inv` is missing, or that
// scale is not a float tensor of shape [ceil(rows/128), ceil(cols/128)].
Fp8Weight fp8_weight(const TensorSource& src, const TensorView& t);

// Reads tensor `t` of `src` as FP32 into out[t.numel()]: float dtypes convert exactly,
// F8_E4M3 dequantises as (128×128 block)·scale_inv with partial edge blocks (fp8_dequantize).
// Throws naming the tensor for other dtypes, an FP8 weight without a valid scale (as
// fp8_weight), and a float tensor that carries a `_scale_inv` (only FP8 weights have scales).
void read_tensor_f32(const TensorSource& src, const TensorView& t, float* out);

// The checkpoint directory's config.json (the source's own path when it is a directory, else the
// directory holding the file or index it opened), when there is one: its quantization_config is
// validated with parse_quantization_config. Model::load calls this.
void check_checkpoint_quantization(const TensorSource& src);

// ---- conversion ---------------------------------------------------------------------------------

enum class CheckpointDType { kF32, kBF16, kF16, kFP8 };
// "f32" | "bf16" | "f16" | "fp8"; anything else throws naming the value.
CheckpointDType parse_checkpoint_dtype(const std::string& s);
const char* checkpoint_dtype_name(CheckpointDType t);
// "5GB" (10^9), "500MB", "2GiB" (2^30), "4096" (bytes), ...; throws naming the text.
uint64_t parse_byte_size(const std::string& s);

struct ConvertOptions {
  CheckpointDType dtype = CheckpointDType::kF32;
  uint64_t shard_bytes = 0;  // 0: one model.safetensors; else shards of at most this + index
  int threads = 1;           // tensors converted in parallel
};

struct TensorStats {
  size_t tensors = 0;                      // scale_inv companions included
  uint64_t bytes = 0;                      // tensor data (not headers)
  std::map<std::string, size_t> by_dtype;  // "F8_E4M3" -> count
};

struct ConvertResult {
  TensorStats in, out;
  size_t quantized = 0;       // weights written as FP8 by quantising (not passed through)
  size_t passed_through = 0;  // tensors whose bytes were copied as they were
  size_t unknown = 0;         // tensors not in the config's layout (kept, converted by dtype)
  int shards = 0;             // 0: single file
  std::vector<std::string> copied_files;
};

// Reads the checkpoint directory `in` (config.json + model.safetensors or shards + index; F32,
// F16, BF16, F64 or FP8-with-scales) and writes `out` (which must not exist, or be empty):
// config.json, the tensors, and every other regular file of `in` up to 64 MiB
// (tokenizer.json, generation_config.json, ...; not trainer_state.json). The target dtype:
//   fp8:      is_fp8_linear_name weights -> F8_E4M3 + F32 weight_scale_inv (fp8_quantize,
//             128×128, amax/448; weights already FP8 pass through); every other tensor keeps
//             its dtype; config.json gains quantization_config (the source's, when it had one).
//   bf16/f16: every float tensor in that type, except e_score_correction_bias (F32); FP8
//             weights are dequantised and their scales dropped; quantization_config removed.
//   f32:      every float tensor dequantised/widened to F32; quantization_config removed.
// Every model tensor must be present with the shape config.json implies (MTP modules may be
// absent). The directory is built under a temporary sibling and renamed into place, so `out`
// appears complete or not at all.
ConvertResult convert_checkpoint(const std::string& in, const std::string& out,
                                 const ConvertOptions& opt);

// Statistics of a checkpoint's tensors (what convert prints as "before").
TensorStats tensor_stats(const TensorSource& src);

}  // namespace seekr
