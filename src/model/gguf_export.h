// Export of a checkpoint as a GGUF file for llama.cpp's `deepseek2` architecture (the one
// llama.cpp runs DeepSeek-V2/V3/R1 with), checked against llama.cpp v0.5.0 as bundled by
// node-llama-cpp 3.22.1. docs/gguf-export.md describes the layout; in short:
//
//   * every Linear weight keeps its bytes (GGUF lists dimensions innermost first, so HF's
//     [out, in] is ne = {in, out}); routed experts are stacked into ffn_{gate,up,down}_exps
//     [E, out, in]; kv_b_proj is split into attn_k_b [H, kv_lora_rank, nope] (transposed per
//     head) and attn_v_b [H, v_head_dim, kv_lora_rank], the absorbed-MLA layout llama.cpp
//     requires; e_score_correction_bias becomes exp_probs_b.bias;
//   * RoPE needs no permutation: llama.cpp rotates deepseek2 with its "normal" RoPE, pairs of
//     consecutive values, which is seekr's interleaved layout;
//   * YaRN: llama.cpp derives the cos/sin magnitude and the attention scale itself; where the
//     config's mscale differs from mscale_all_dim the difference is written as
//     rope.scaling.attn_factor and folded into the query projection so scores stay exact;
//   * the MTP module is kept (blk.L.nextn.*, deepseek2.nextn_predict_layers) when llama.cpp can
//     run it: one module, with q-LoRA, on a MoE layer; otherwise it is dropped with a warning;
//   * the vocabulary comes from the checkpoint's byte-level BPE tokenizer.json (padded with
//     unused tokens up to vocab_size); without one, or with one larger than vocab_size, a
//     synthetic but loadable vocabulary is written and a warning says so.
//
// Configs llama.cpp cannot compute exactly (moe_layer_freq > 1, max-score group routing with
// groups dropped, YaRN betas other than 32/1, ...) are refused with a seekr::Error naming
// config.json and the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/gguf.h"

namespace seekr {

struct GgufExportOptions {
  // Type of the matrices. Norms, biases and the router stay F32, as llama.cpp's converter keeps
  // them (its CPU kernels expect F32 there).
  GgmlType type = GgmlType::kF32;
  bool mtp = true;   // keep the MTP module when llama.cpp can run it
  std::string name;  // general.name; empty: the checkpoint directory's name
};

struct GgufExportResult {
  std::vector<std::string> warnings;  // each a full sentence, for stderr
  size_t tensors = 0;
  size_t kv = 0;
  uint64_t bytes = 0;  // file size
  bool mtp_included = false;
  bool synthetic_vocab = false;
};

// Reads CKPT_DIR (config.json, safetensors weights, tokenizer.json when present) and writes
// out_path atomically. Throws seekr::Error naming the file and field or tensor at fault.
GgufExportResult export_gguf(const std::string& checkpoint_dir, const std::string& out_path,
                             const GgufExportOptions& options = {});

}  // namespace seekr
