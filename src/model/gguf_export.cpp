#include "model/gguf_export.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "model/config.h"
#include "model/convert.h"
#include "model/weights.h"

namespace seekr {

namespace {

using nlohmann::json;

constexpr const char* kArch = "deepseek2";
// llama.cpp's token types (llama.h: llama_token_type).
constexpr int32_t kTokenNormal = 1, kTokenControl = 3, kTokenUserDefined = 4, kTokenUnused = 5;
// llama.cpp's expert gating functions (llama-hparams.h).
constexpr uint32_t kGatingSoftmax = 1, kGatingSigmoid = 2;
// llama.cpp's file types (llama.h: llama_ftype) for all-F32, mostly-F16 and mostly-BF16.
uint32_t file_type(GgmlType t) {
  return t == GgmlType::kF32 ? 0 : t == GgmlType::kF16 ? 1 : 32;
}
// The Split regexes of DeepSeek-V3's pre-tokenizer, which llama.cpp calls "deepseek-v3".
const std::vector<std::string> kDeepseekV3Splits = {
    "\\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};

std::string key(const char* suffix) {
  return std::string(kArch) + "." + suffix;
}

double yarn_mscale(double factor, double mscale) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

// ---- what llama.cpp can compute -----------------------------------------------------------

void require_representable(const ModelConfig& c, const std::string& cfg) {
  auto refuse = [&](const char* field, const std::string& why) {
    throw Error(str_cat(cfg, ": field '", field, "': ", why));
  };
  if (c.has_moe() && c.moe_layer_freq != 1)
    refuse("moe_layer_freq", str_cat("is ", c.moe_layer_freq,
                                     "; llama.cpp's deepseek2 makes every layer after the leading "
                                     "dense ones a MoE layer (needs 1)"));
  if (c.has_moe() && c.topk_group < c.n_group) {
    if (c.topk_method != TopkMethod::kNoauxTc)
      refuse("topk_method",
             "group-limited routing scores a group by its best expert here; llama.cpp scores "
             "groups by the sum of their top-2 (noaux_tc) only");
    if (c.n_routed_experts / c.n_group < 2)
      refuse("n_group", "llama.cpp's group scores need at least 2 experts per group");
  }
  if (c.yarn.enabled) {
    if (c.yarn.beta_fast != 32.0 || c.yarn.beta_slow != 1.0)
      refuse("rope_scaling",
             str_cat("beta_fast ", c.yarn.beta_fast, " / beta_slow ", c.yarn.beta_slow,
                     ": llama.cpp's deepseek2 always uses YaRN betas 32 / 1"));
    if (c.yarn.factor < 1.0)
      refuse("rope_scaling", str_cat("factor ", c.yarn.factor, " < 1 is not a YaRN extension"));
    if (c.yarn.mscale_all_dim < 0) refuse("rope_scaling", "mscale_all_dim must not be negative");
  }
  // llama.cpp takes these layer counts for DeepSeek-V2-Lite-like models and then never reads
  // q_lora_rank, expecting a plain attn_q.
  const bool lite = c.num_hidden_layers == 26 || c.num_hidden_layers == 27 ||
                    (c.num_hidden_layers == 48 && c.vocab_size == 128256);
  if (lite && c.q_lora_rank > 0)
    refuse("q_lora_rank", str_cat("llama.cpp ignores q-LoRA for ", c.num_hidden_layers,
                                  "-layer deepseek2 models (it takes them for V2-Lite)"));
  if (c.qk_nope_head_dim < 1)
    refuse("qk_nope_head_dim", "llama.cpp's deepseek2 needs at least one non-rotary dimension");
}

// ---- vocabulary ---------------------------------------------------------------------------

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;  // "left right"
  std::string pre = "deepseek-v3";
  bool add_bos = true;
};

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the rest map to U+0100...
std::string byte_token(int b) {
  static const std::vector<uint32_t> table = [] {
    std::vector<uint32_t> t(256);
    uint32_t next = 256;
    for (int i = 0; i < 256; ++i) {
      const bool printable = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174;
      t[i] = printable ? static_cast<uint32_t>(i) : next++;
    }
    return t;
  }();
  const uint32_t cp = table[b];
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Control tokens at the config's BOS/EOS ids, the 256 byte tokens in the next free ids, and
// "<|synthetic_N|>" placeholders after them: loads in llama.cpp and detokenizes bytes.
Vocab synthetic_vocab(const ModelConfig& c) {
  const int V = c.vocab_size;
  Vocab v;
  v.tokens.resize(V);
  v.types.assign(V, kTokenNormal);
  std::vector<bool> used(V, false);
  auto special = [&](int id, const char* text) {
    if (id < 0 || id >= V || used[id]) return;
    v.tokens[id] = text;
    v.types[id] = kTokenControl;
    used[id] = true;
  };
  special(c.bos_token_id, "<\uff5cbegin\u2581of\u2581sentence\uff5c>");
  special(c.eos_token_id, "<\uff5cend\u2581of\u2581sentence\uff5c>");
  int next_byte = 0;
  for (int id = 0; id < V; ++id) {
    if (used[id]) continue;
    v.tokens[id] = next_byte < 256 ? byte_token(next_byte++) : str_cat("<|synthetic_", id, "|>");
  }
  v.add_bos = c.bos_token_id >= 0 && c.bos_token_id < V;
  return v;
}

std::string pre_tokenizer_name(const json& t, const std::string& origin,
                               std::vector<std::string>& warnings) {
  const json* pre = t.contains("pre_tokenizer") ? &t["pre_tokenizer"] : nullptr;
  std::vector<std::string> splits;
  if (pre && pre->is_object() && pre->value("type", "") == "Sequence" &&
      pre->contains("pretokenizers") && (*pre)["pretokenizers"].is_array()) {
    for (const json& p : (*pre)["pretokenizers"])
      if (p.is_object() && p.value("type", "") == "Split" && p.contains("pattern") &&
          p["pattern"].is_object() && p["pattern"].contains("Regex") &&
          p["pattern"]["Regex"].is_string())
        splits.push_back(p["pattern"]["Regex"].get<std::string>());
  }
  if (splits == kDeepseekV3Splits) return "deepseek-v3";
  if (pre && pre->is_object() && pre->value("type", "") == "ByteLevel" &&
      pre->value("use_regex", false))
    return "gpt-2";
  warnings.push_back(str_cat(
      origin,
      ": pre_tokenizer is not DeepSeek-V3's (e.g. another digit grouping); writing "
      "tokenizer.ggml.pre 'deepseek-v3', so llama.cpp may split text differently (token ids "
      "given directly are unaffected)"));
  return "deepseek-v3";
}

// The checkpoint's byte-level BPE tokenizer.json, padded with unused tokens up to vocab_size.
// Returns false (with a warning) when it cannot stand for the model's vocabulary.
bool vocab_from_tokenizer(const std::string& path, const ModelConfig& c, Vocab& v,
                          std::vector<std::string>& warnings) {
  json t;
  try {
    t = json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw Error(str_cat(path, ": invalid JSON: ", e.what()));
  }
  auto field_error = [&](const std::string& field, const std::string& why) {
    return Error(str_cat(path, ": field '", field, "' ", why));
  };
  if (!t.is_object() || !t.contains("model") || !t["model"].is_object())
    throw field_error("model", "is missing or not an object");
  const json& m = t["model"];
  if (m.value("type", "") != "BPE") {
    warnings.push_back(str_cat(path,
                               ": model.type is not BPE; llama.cpp's 'gpt2' vocabulary "
                               "needs byte-level BPE"));
    return false;
  }
  if (!m.contains("vocab") || !m["vocab"].is_object())
    throw field_error("model.vocab", "is missing or not an object");
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;  // id -> (token, type)
  for (const auto& [tok, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      throw field_error("model.vocab", str_cat("maps '", tok, "' to a non-id"));
    by_id[id.get<int64_t>()] = {tok, kTokenNormal};
  }
  if (t.contains("added_tokens")) {
    if (!t["added_tokens"].is_array()) throw field_error("added_tokens", "is not an array");
    for (const json& a : t["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          a["id"].get<int64_t>() < 0 || !a.contains("content") || !a["content"].is_string())
        throw field_error("added_tokens", "holds an entry without an integer id and content");
      by_id[a["id"].get<int64_t>()] = {a["content"].get<std::string>(), a.value("special", false)
                                                                            ? kTokenControl
                                                                            : kTokenUserDefined};
    }
  }
  const int64_t n = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  if (n > c.vocab_size) {
    warnings.push_back(
        str_cat(path, ": holds ", n, " tokens but config.json's vocab_size is ", c.vocab_size));
    return false;
  }
  v.tokens.assign(c.vocab_size, "");
  v.types.assign(c.vocab_size, kTokenUnused);
  std::set<std::string> seen;
  for (const auto& [id, entry] : by_id) {
    v.tokens[id] = entry.first;
    v.types[id] = entry.second;
    if (!seen.insert(entry.first).second)
      throw field_error("model.vocab", str_cat("holds the token '", entry.first, "' twice"));
  }
  int64_t padded = 0;
  for (int64_t id = 0; id < c.vocab_size; ++id) {
    if (v.types[id] != kTokenUnused) continue;
    std::string pad = str_cat("[PAD", id, "]");
    while (seen.count(pad)) pad += "_";
    seen.insert(pad);
    v.tokens[id] = pad;
    ++padded;
  }
  if (padded > 0)
    warnings.push_back(str_cat(path, ": ", n, " tokens for vocab_size ", c.vocab_size, "; ", padded,
                               " ids written as unused [PAD<id>] tokens"));
  if (m.contains("merges")) {
    if (!m["merges"].is_array()) throw field_error("model.merges", "is not an array");
    for (const json& mg : m["merges"]) {
      if (mg.is_string()) {
        v.merges.push_back(mg.get<std::string>());
      } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
        v.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
      } else {
        throw field_error("model.merges", "holds an entry that is neither \"a b\" nor [a, b]");
      }
    }
  }
  v.pre = pre_tokenizer_name(t, path, warnings);
  // A TemplateProcessing post-processor that starts with a special token prepends BOS.
  const json* post = t.contains("post_processor") ? &t["post_processor"] : nullptr;
  v.add_bos = post && post->is_object() && post->contains("single") &&
              (*post)["single"].is_array() && !(*post)["single"].empty() &&
              (*post)["single"][0].is_object() && (*post)["single"][0].contains("SpecialToken");
  return true;
}

// ---- tensors ------------------------------------------------------------------------------

// The checkpoint's tensors, each checked against the shape config.json implies.
class Source {
 public:
  Source(const std::string& dir, const ModelConfig& c)
      : dir_(dir), layout_(c), src_(TensorSource::open(dir)) {}

  bool has(const std::string& name) const { return src_.find(name) != nullptr; }

  const TensorView& view(const std::string& name) const {
    const int i = layout_.find(name);
    SEEKR_CHECK(i >= 0, "no spec for ", name);
    const TensorView& t = src_.get(name);
    const std::vector<int64_t>& want = layout_.specs()[i].shape;
    if (t.shape != want)
      throw Error(str_cat(dir_, ": tensor '", name, "' has shape ", json(t.shape).dump(),
                          "; config.json implies ", json(want).dump()));
    return t;
  }
  const std::vector<int64_t>& shape(const std::string& name) const { return view(name).shape; }
  // The tensor as F32 (an F8_E4M3 weight dequantised with its weight_scale_inv).
  void read(const std::string& name, float* dst) const { read_tensor_f32(src_, view(name), dst); }

 private:
  std::string dir_;
  ModelLayout layout_;
  TensorSource src_;
};

class Exporter {
 public:
  Exporter(const ModelConfig& c, const Source& src, const GgufExportOptions& opt, GgufWriter& w)
      : c_(c), src_(src), opt_(opt), w_(w) {}

  // An HF tensor as it is (dimensions reversed by the writer), times `scale`.
  void plain(const std::string& gguf_name, const std::string& hf_name, float scale = 1.0f) {
    const TensorView& t = src_.view(hf_name);
    const Source& s = src_;
    w_.add_tensor(gguf_name, t.shape, type_for(gguf_name, t.shape.size()),
                  [&s, hf_name, scale](float* dst) {
                    s.read(hf_name, dst);
                    if (scale != 1.0f)
                      for (int64_t i = 0; i < s.view(hf_name).numel(); ++i) dst[i] *= scale;
                  });
  }

  // E experts' `proj` ([out, in] each) stacked into [E, out, in].
  void experts(const std::string& gguf_name, const std::string& prefix, const std::string& proj) {
    std::vector<std::string> names;
    for (int e = 0; e < c_.n_routed_experts; ++e)
      names.push_back(str_cat(prefix, ".mlp.experts.", e, ".", proj, ".weight"));
    std::vector<int64_t> shape = src_.shape(names[0]);
    for (const std::string& n : names) src_.view(n);  // every expert present, right shape
    shape.insert(shape.begin(), c_.n_routed_experts);
    const Source& s = src_;
    w_.add_tensor(gguf_name, shape, opt_.type, [&s, names](float* dst) {
      for (const std::string& n : names) {
        s.read(n, dst);
        dst += s.view(n).numel();
      }
    });
  }

  // kv_b_proj [H*(nope+v), rkv] split per head into attn_k_b [H, rkv, nope] (transposed) and
  // attn_v_b [H, v, rkv].
  void kv_b(const std::string& blk, const std::string& hf_name) {
    src_.view(hf_name);
    const int64_t H = c_.num_attention_heads, dn = c_.qk_nope_head_dim, dv = c_.v_head_dim,
                  r = c_.kv_lora_rank;
    const Source& s = src_;
    auto load = [&s, hf_name] {
      std::vector<float> kvb(s.view(hf_name).numel());
      s.read(hf_name, kvb.data());
      return kvb;
    };
    w_.add_tensor(blk + ".attn_k_b.weight", {H, r, dn}, opt_.type, [=](float* dst) {
      const std::vector<float> kvb = load();
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < r; ++i)
          for (int64_t d = 0; d < dn; ++d)
            dst[(h * r + i) * dn + d] = kvb[(h * (dn + dv) + d) * r + i];
    });
    w_.add_tensor(blk + ".attn_v_b.weight", {H, dv, r}, opt_.type, [=](float* dst) {
      const std::vector<float> kvb = load();
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < dv; ++j)
          for (int64_t i = 0; i < r; ++i)
            dst[(h * dv + j) * r + i] = kvb[(h * (dn + dv) + dn + j) * r + i];
    });
  }

  // One decoder layer (main or MTP) as blk.<il>.
  void layer(int il, bool mtp, float q_scale) {
    const std::string p = str_cat("model.layers.", il), a = p + ".self_attn";
    const std::string b = str_cat("blk.", il);
    if (mtp) {
      plain(b + ".nextn.enorm.weight", p + ".enorm.weight");
      plain(b + ".nextn.hnorm.weight", p + ".hnorm.weight");
      plain(b + ".nextn.eh_proj.weight", p + ".eh_proj.weight");
      plain(b + ".nextn.shared_head_norm.weight", p + ".shared_head.norm.weight");
    }
    plain(b + ".attn_norm.weight", p + ".input_layernorm.weight");
    if (c_.q_lora_rank > 0) {
      plain(b + ".attn_q_a.weight", a + ".q_a_proj.weight");
      plain(b + ".attn_q_a_norm.weight", a + ".q_a_layernorm.weight");
      plain(b + ".attn_q_b.weight", a + ".q_b_proj.weight", q_scale);
    } else {
      plain(b + ".attn_q.weight", a + ".q_proj.weight", q_scale);
    }
    plain(b + ".attn_kv_a_mqa.weight", a + ".kv_a_proj_with_mqa.weight");
    plain(b + ".attn_kv_a_norm.weight", a + ".kv_a_layernorm.weight");
    kv_b(b, a + ".kv_b_proj.weight");
    plain(b + ".attn_output.weight", a + ".o_proj.weight");
    plain(b + ".ffn_norm.weight", p + ".post_attention_layernorm.weight");
    if (!c_.is_moe_layer(il)) {
      for (const char* proj : {"gate", "up", "down"})
        plain(str_cat(b, ".ffn_", proj, ".weight"), str_cat(p, ".mlp.", proj, "_proj.weight"));
      return;
    }
    plain(b + ".ffn_gate_inp.weight", p + ".mlp.gate.weight");
    if (c_.has_correction_bias())
      plain(b + ".exp_probs_b.bias", p + ".mlp.gate.e_score_correction_bias");
    for (const char* proj : {"gate", "up", "down"})
      experts(str_cat(b, ".ffn_", proj, "_exps.weight"), p, str_cat(proj, "_proj"));
    if (c_.n_shared_experts > 0)
      for (const char* proj : {"gate", "up", "down"})
        plain(str_cat(b, ".ffn_", proj, "_shexp.weight"),
              str_cat(p, ".mlp.shared_experts.", proj, "_proj.weight"));
  }

 private:
  // Matrices take the requested type; vectors and the router stay F32.
  GgmlType type_for(const std::string& gguf_name, size_t dims) const {
    const bool router = gguf_name.find(".ffn_gate_inp.") != std::string::npos;
    return dims >= 2 && !router ? opt_.type : GgmlType::kF32;
  }

  const ModelConfig& c_;
  const Source& src_;
  const GgufExportOptions& opt_;
  GgufWriter& w_;
};

// Why the MTP module cannot go into the file ("" when it can).
std::string mtp_obstacle(const ModelConfig& c, const Source& src) {
  const int L = c.num_hidden_layers, D = c.num_nextn_predict_layers;
  if (D != 1) return str_cat("llama.cpp runs one MTP module; the config has ", D);
  if (c.q_lora_rank <= 0) return "llama.cpp's deepseek2 MTP graph needs q-LoRA (q_lora_rank > 0)";
  if (!c.is_moe_layer(L)) return "llama.cpp's deepseek2 MTP graph needs a MoE MTP layer";
  ModelLayout layout(c);
  for (const TensorSpec& s : layout.specs())
    if (s.name.rfind(str_cat("model.layers.", L, "."), 0) == 0 && !src.has(s.name))
      return str_cat("the checkpoint lacks ", s.name);
  return "";
}

// YaRN: llama.cpp's cos/sin magnitude is rope.scaling.attn_factor (its default mscale equals
// mscale_all_dim, or 1 without it) and its attention scale is (magnitude *
// mscale(mscale_all_dim))^2 / sqrt(qk_head_dim). Matching seekr's magnitude m leaves the scores
// m^2 too large; 1/m^2 folded into the query projection undoes that exactly.
struct YarnFix {
  double attn_factor = 1.0;
  float q_scale = 1.0f;
};

YarnFix yarn_fix(const ModelConfig& c) {
  YarnFix y;
  if (!c.yarn.enabled) return y;
  const double magnitude = c.rope_mscale();
  y.attn_factor =
      c.yarn.mscale_all_dim != 0.0 ? magnitude : magnitude / yarn_mscale(c.yarn.factor, 1.0);
  y.q_scale = static_cast<float>(1.0 / (magnitude * magnitude));
  return y;
}

// The deepseek2 hyper-parameters (`blocks` counts the MTP module when it is written).
void add_hparams(GgufWriter& w, const ModelConfig& c, int blocks, const YarnFix& yarn) {
  w.add_uint32(key("block_count"), blocks);
  if (blocks > c.num_hidden_layers)
    w.add_uint32(key("nextn_predict_layers"), blocks - c.num_hidden_layers);
  w.add_uint32(key("context_length"), c.max_position_embeddings);
  w.add_uint32(key("embedding_length"), c.hidden_size);
  w.add_uint32(key("feed_forward_length"), c.intermediate_size);
  w.add_uint32(key("attention.head_count"), c.num_attention_heads);
  // MLA runs as multi-query attention over the compressed cache (one shared K/V "head").
  w.add_uint32(key("attention.head_count_kv"), 1);
  w.add_float32(key("rope.freq_base"), static_cast<float>(c.rope_theta));
  w.add_float32(key("attention.layer_norm_rms_epsilon"), static_cast<float>(c.rms_norm_eps));
  w.add_uint32(key("vocab_size"), c.vocab_size);
  w.add_uint32(key("leading_dense_block_count"),
               c.has_moe() ? c.first_k_dense_replace : c.num_hidden_layers);
  w.add_uint32(key("attention.q_lora_rank"), c.q_lora_rank);
  w.add_uint32(key("attention.kv_lora_rank"), c.kv_lora_rank);
  w.add_uint32(key("attention.key_length"), c.kv_lora_rank + c.qk_rope_head_dim);
  w.add_uint32(key("attention.value_length"), c.kv_lora_rank);
  w.add_uint32(key("attention.key_length_mla"), c.qk_head_dim());
  w.add_uint32(key("attention.value_length_mla"), c.v_head_dim);
  w.add_uint32(key("rope.dimension_count"), c.qk_rope_head_dim);
  w.add_uint32(key("expert_feed_forward_length"),
               c.has_moe() ? c.moe_intermediate_size : c.intermediate_size);
  w.add_uint32(key("expert_shared_count"), c.has_moe() ? c.n_shared_experts : 0);
  if (c.has_moe()) {
    w.add_uint32(key("expert_count"), c.n_routed_experts);
    w.add_uint32(key("expert_used_count"), c.num_experts_per_tok);
    if (c.topk_group < c.n_group) {
      w.add_uint32(key("expert_group_count"), c.n_group);
      w.add_uint32(key("expert_group_used_count"), c.topk_group);
    }
    w.add_float32(key("expert_weights_scale"), static_cast<float>(c.routed_scaling_factor));
    w.add_bool(key("expert_weights_norm"), c.norm_topk_prob);
    w.add_uint32(key("expert_gating_func"),
                 c.scoring_func == ScoringFunc::kSigmoid ? kGatingSigmoid : kGatingSoftmax);
  }
  if (c.yarn.enabled) {
    w.add_string(key("rope.scaling.type"), "yarn");
    w.add_float32(key("rope.scaling.factor"), static_cast<float>(c.yarn.factor));
    w.add_uint32(key("rope.scaling.original_context_length"),
                 c.yarn.original_max_position_embeddings);
    // llama.cpp divides this by 0.1 when loading deepseek2 (as its converter writes it).
    if (c.yarn.mscale_all_dim != 0.0)
      w.add_float32(key("rope.scaling.yarn_log_multiplier"),
                    static_cast<float>(0.1 * c.yarn.mscale_all_dim));
    if (yarn.attn_factor != 1.0)
      w.add_float32(key("rope.scaling.attn_factor"), static_cast<float>(yarn.attn_factor));
  }
}

// The checkpoint's vocabulary, or a synthetic one (with the warnings that say why).
Vocab load_vocab(const std::string& dir, const ModelConfig& c, GgufExportResult& res) {
  Vocab vocab;
  const std::string tok_path = dir + "/tokenizer.json";
  const bool have_tokenizer = file_exists(tok_path);
  if (!have_tokenizer) res.warnings.push_back(str_cat(dir, " has no tokenizer.json"));
  if (have_tokenizer && vocab_from_tokenizer(tok_path, c, vocab, res.warnings)) return vocab;
  res.synthetic_vocab = true;
  res.warnings.push_back(str_cat(
      "wrote a synthetic vocabulary of ", c.vocab_size,
      " tokens (BOS/EOS, the 256 byte tokens, then <|synthetic_N|> placeholders, no merges): "
      "llama.cpp loads it, but its text tokenization is not the model's"));
  return synthetic_vocab(c);
}

void add_vocab(GgufWriter& w, const ModelConfig& c, const Vocab& vocab) {
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", vocab.pre);
  w.add_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.add_int32_array("tokenizer.ggml.token_type", vocab.types);
  w.add_string_array("tokenizer.ggml.merges", vocab.merges);
  if (c.bos_token_id >= 0) w.add_uint32("tokenizer.ggml.bos_token_id", c.bos_token_id);
  if (c.eos_token_id >= 0) w.add_uint32("tokenizer.ggml.eos_token_id", c.eos_token_id);
  w.add_bool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  w.add_bool("tokenizer.ggml.add_eos_token", false);
}

std::string model_name(const std::string& dir, const std::string& given) {
  if (!given.empty()) return given;
  const std::filesystem::path d = std::filesystem::path(dir).lexically_normal();
  const std::string name = (d.has_filename() ? d.filename() : d.parent_path().filename()).string();
  return name.empty() ? "seekr" : name;
}

}  // namespace

GgufExportResult export_gguf(const std::string& dir, const std::string& out_path,
                             const GgufExportOptions& opt) {
  const std::string cfg_path = dir + "/config.json";
  const ModelConfig c = ModelConfig::from_file(cfg_path);
  require_representable(c, cfg_path);
  const Source src(dir, c);
  GgufExportResult res;

  const int L = c.num_hidden_layers;
  bool mtp = false;
  if (c.num_nextn_predict_layers > 0) {
    const std::string why = opt.mtp ? mtp_obstacle(c, src) : "--no-mtp was given";
    mtp = why.empty();
    if (!mtp)
      res.warnings.push_back(
          str_cat("MTP module dropped: ", why, "; the main model is exported in full"));
  }
  const Vocab vocab = load_vocab(dir, c, res);
  const YarnFix yarn = yarn_fix(c);
  if (yarn.q_scale != 1.0f)
    res.warnings.push_back(str_cat("YaRN mscale ", c.yarn.mscale, " vs mscale_all_dim ",
                                   c.yarn.mscale_all_dim, ": query projections scaled by ",
                                   yarn.q_scale, " to match llama.cpp's attention scale"));

  GgufWriter w;
  w.add_string("general.architecture", kArch);
  w.add_string("general.name", model_name(dir, opt.name));
  w.add_uint32("general.file_type", file_type(opt.type));
  w.add_uint32("general.quantization_version", 2);
  add_hparams(w, c, L + (mtp ? 1 : 0), yarn);
  add_vocab(w, c, vocab);

  Exporter ex(c, src, opt, w);
  ex.plain("token_embd.weight", "model.embed_tokens.weight");
  for (int il = 0; il < L + (mtp ? 1 : 0); ++il) ex.layer(il, il >= L, yarn.q_scale);
  ex.plain("output_norm.weight", "model.norm.weight");
  if (!c.tie_word_embeddings) ex.plain("output.weight", "lm_head.weight");

  w.write(out_path);
  res.tensors = w.tensor_count();
  res.kv = w.kv_count();
  res.bytes = w.file_size();
  res.mtp_included = mtp;
  return res;
}

}  // namespace seekr
