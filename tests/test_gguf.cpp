// GGUF writer and the deepseek2 export, read back by an independent minimal GGUF reader.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/file_io.h"
#include "core/gguf.h"
#include "core/safetensors.h"
#include "model/gguf_export.h"
#include "model/model.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using seekr::GgmlType;
using seekr::GgufWriter;
using ::testing::HasSubstr;

// ---- an independent GGUF reader (from the format description, not from the writer) ------

struct Value {
  uint32_t type = 0;       // GGUF value type; 9 = array
  uint32_t elem_type = 0;  // arrays only
  std::vector<double> nums;
  std::vector<std::string> strs;
  double num() const { return nums.at(0); }
  const std::string& str() const { return strs.at(0); }
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: innermost first
  uint32_t type = 0;
  uint64_t offset = 0;
};

struct Gguf {
  uint32_t version = 0;
  std::vector<std::string> key_order;
  std::map<std::string, Value> kv;
  std::vector<TensorInfo> tensors;
  uint64_t alignment = 32;
  uint64_t infos_end = 0;  // first byte after the tensor infos
  uint64_t data_start = 0;
  std::string bytes;

  const TensorInfo& tensor(const std::string& name) const {
    for (const auto& t : tensors)
      if (t.name == name) return t;
    throw std::runtime_error("no tensor " + name);
  }
  const Value& at(const std::string& key) const {
    auto it = kv.find(key);
    if (it == kv.end()) throw std::runtime_error("no key " + key);
    return it->second;
  }
  const uint8_t* data(const TensorInfo& t) const {
    return reinterpret_cast<const uint8_t*>(bytes.data()) + data_start + t.offset;
  }
  // Element i of a tensor as float (F32 / F16 / BF16).
  std::vector<float> floats(const std::string& name) const {
    const TensorInfo& t = tensor(name);
    int64_t n = 1;
    for (int64_t s : t.ne) n *= s;
    std::vector<float> out(n);
    const uint8_t* p = data(t);
    for (int64_t i = 0; i < n; ++i) {
      if (t.type == 0) {
        std::memcpy(&out[i], p + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = t.type == 30 ? seekr::bf16_to_f32(h) : seekr::f16_to_f32(h);
      }
    }
    return out;
  }
};

class Cursor {
 public:
  explicit Cursor(const std::string& b) : b_(b) {}
  template <typename T>
  T get() {
    if (at_ + sizeof(T) > b_.size()) throw std::runtime_error("truncated GGUF");
    T v;
    std::memcpy(&v, b_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t n = get<uint64_t>();
    if (at_ + n > b_.size()) throw std::runtime_error("truncated GGUF string");
    std::string s = b_.substr(at_, n);
    at_ += n;
    return s;
  }
  size_t pos() const { return at_; }

 private:
  const std::string& b_;
  size_t at_ = 0;
};

double read_number(Cursor& c, uint32_t type) {
  switch (type) {
    case 0:
      return c.get<uint8_t>();
    case 1:
      return c.get<int8_t>();
    case 2:
      return c.get<uint16_t>();
    case 3:
      return c.get<int16_t>();
    case 4:
      return c.get<uint32_t>();
    case 5:
      return c.get<int32_t>();
    case 6:
      return c.get<float>();
    case 7:
      return c.get<uint8_t>();
    case 10:
      return static_cast<double>(c.get<uint64_t>());
    case 11:
      return static_cast<double>(c.get<int64_t>());
    case 12:
      return c.get<double>();
  }
  throw std::runtime_error("bad GGUF value type " + std::to_string(type));
}

void read_value(Cursor& c, uint32_t type, Value& v) {
  if (type == 8) {
    v.strs.push_back(c.str());
  } else {
    v.nums.push_back(read_number(c, type));
  }
}

Gguf read_gguf(const std::string& path) {
  Gguf g;
  g.bytes = seekr::read_file(path);
  Cursor c(g.bytes);
  if (g.bytes.compare(0, 4, "GGUF") != 0) throw std::runtime_error("bad magic");
  c.get<uint32_t>();
  g.version = c.get<uint32_t>();
  const int64_t n_tensors = c.get<int64_t>(), n_kv = c.get<int64_t>();
  for (int64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str();
    Value v;
    v.type = c.get<uint32_t>();
    if (v.type == 9) {
      v.elem_type = c.get<uint32_t>();
      const uint64_t n = c.get<uint64_t>();
      for (uint64_t j = 0; j < n; ++j) read_value(c, v.elem_type, v);
    } else {
      read_value(c, v.type, v);
    }
    if (g.kv.count(key)) throw std::runtime_error("duplicate key " + key);
    g.key_order.push_back(key);
    g.kv[key] = v;
  }
  if (g.kv.count("general.alignment"))
    g.alignment = static_cast<uint64_t>(g.at("general.alignment").num());
  for (int64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = c.str();
    const uint32_t dims = c.get<uint32_t>();
    for (uint32_t d = 0; d < dims; ++d) t.ne.push_back(c.get<int64_t>());
    t.type = c.get<uint32_t>();
    t.offset = c.get<uint64_t>();
    g.tensors.push_back(t);
  }
  g.infos_end = c.pos();
  g.data_start = (c.pos() + g.alignment - 1) / g.alignment * g.alignment;
  return g;
}

uint64_t type_size(uint32_t t) {
  return t == 0 ? 4 : 2;
}
uint64_t nbytes(const TensorInfo& t) {
  uint64_t n = type_size(t.type);
  for (int64_t s : t.ne) n *= s;
  return n;
}

// Offsets start at 0, follow each other in info order, padded to the alignment, and the file
// ends with the last tensor's padding; the header padding is zeros.
void expect_layout(const Gguf& g) {
  uint64_t at = 0;
  for (const TensorInfo& t : g.tensors) {
    EXPECT_EQ(t.offset, at) << t.name;
    EXPECT_EQ(t.offset % g.alignment, 0u) << t.name;
    at += (nbytes(t) + g.alignment - 1) / g.alignment * g.alignment;
  }
  EXPECT_EQ(g.bytes.size(), g.data_start + at);
  for (uint64_t i = g.infos_end; i < g.data_start; ++i) EXPECT_EQ(g.bytes[i], '\0') << i;
}

// ---- fixtures -----------------------------------------------------------------------------

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "seekr_gguf_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

// A small DeepSeek-V3 config: q-LoRA, YaRN, group-limited noaux_tc routing, one MTP module.
json small_config() {
  return json::parse(R"({
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 260, "hidden_size": 32, "intermediate_size": 48,
    "moe_intermediate_size": 16, "num_hidden_layers": 2, "first_k_dense_replace": 1,
    "moe_layer_freq": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
    "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
    "v_head_dim": 6, "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2,
    "n_group": 4, "topk_group": 2, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
    "norm_topk_prob": true, "routed_scaling_factor": 2.5, "num_nextn_predict_layers": 1,
    "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "max_position_embeddings": 256, "tie_word_embeddings": false,
    "bos_token_id": 0, "eos_token_id": 1, "initializer_range": 0.02, "torch_dtype": "float32"
  })");
}

// A byte-level-BPE-shaped tokenizer.json of exactly `n` tokens with DeepSeek-V3's pre-tokenizer.
json tokenizer_json(int n) {
  json vocab = json::object();
  for (int i = 2; i < n; ++i) vocab["t" + std::to_string(i)] = i;
  json splits = json::array();
  for (const char* re :
       {"\\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}"
        "\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"})
    splits.push_back({{"type", "Split"},
                      {"pattern", {{"Regex", re}}},
                      {"behavior", "Isolated"},
                      {"invert", false}});
  splits.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}});
  return {{"version", "1.0"},
          {"added_tokens",
           {{{"id", 0}, {"content", "<bos>"}, {"special", true}},
            {{"id", 1}, {"content", "<eos>"}, {"special", true}}}},
          {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", splits}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}},
          {"model",
           {{"type", "BPE"}, {"vocab", vocab}, {"merges", {json::array({"t2", "t3"}), "t4 t5"}}}}};
}

// Writes a checkpoint whose every value is distinct (norms and biases too) and returns the model.
std::unique_ptr<seekr::Model> write_checkpoint(const std::string& dir, const json& cfg_json,
                                               bool with_tokenizer, int tokens = 260) {
  fs::create_directories(dir);
  const seekr::ModelConfig cfg = seekr::ModelConfig::from_json_text(cfg_json.dump(), "test");
  auto m = std::make_unique<seekr::Model>(cfg);
  m->init_weights(7);
  for (size_t i = 0; i < m->params().size(); ++i) m->params()[i] = 0.05f * std::sin(0.37f * i + 1);
  for (size_t i = 0; i < m->buffers().size(); ++i) m->buffers()[i] = 0.01f * std::cos(0.11f * i);
  seekr::SafetensorsWriter w;
  m->add_to(w);
  w.write(dir + "/model.safetensors");
  seekr::write_file_atomic(dir + "/config.json", cfg.to_json_text());
  if (with_tokenizer)
    seekr::write_file_atomic(dir + "/tokenizer.json", tokenizer_json(tokens).dump());
  return m;
}

std::vector<float> copy(const float* p, size_t n) {
  return std::vector<float>(p, p + n);
}

// ---- the writer ---------------------------------------------------------------------------

using GgufWriterTest = TempDir;

TEST_F(GgufWriterTest, WritesEveryValueTypeAndTensorTypeAligned) {
  GgufWriter w;
  w.add_uint32("general.alignment", 64);
  w.add_uint8("u8", 200);
  w.add_int8("i8", -100);
  w.add_uint16("u16", 60000);
  w.add_int16("i16", -30000);
  w.add_uint32("u32", 4000000000u);
  w.add_int32("i32", -2000000000);
  w.add_float32("f32", 1.5f);
  w.add_uint64("u64", 1ull << 40);
  w.add_int64("i64", -(1ll << 40));
  w.add_float64("f64", 0.1);
  w.add_bool("yes", true);
  w.add_bool("no", false);
  w.add_string("s", "héllo");
  const std::vector<int32_t> ints = {-1, 2, 3};
  w.add_int32_array("ai32", ints);
  const std::vector<uint32_t> uints = {7, 8};
  w.add_uint32_array("au32", uints);
  const std::vector<float> fl = {0.25f};
  w.add_float32_array("af32", fl);
  const std::vector<std::string> strs = {"a b", "", "c"};
  w.add_string_array("astr", strs);
  w.add_string_array("empty", std::vector<std::string>{});

  std::vector<float> a(2 * 3 * 5);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.1f * i - 1.0f;
  w.add_tensor("a", {2, 3, 5}, GgmlType::kF32, a.data());
  w.add_tensor("b", {3, 5}, GgmlType::kF16, [&](float* dst) {
    for (int i = 0; i < 15; ++i) dst[i] = a[i] * 3;
  });
  w.add_tensor("c", {7}, GgmlType::kBF16, [&](float* dst) {
    for (int i = 0; i < 7; ++i) dst[i] = a[i] + 0.001f;
  });
  w.write(path("w.gguf"));

  const Gguf g = read_gguf(path("w.gguf"));
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.alignment, 64u);
  EXPECT_EQ(g.kv.size(), 19u);
  EXPECT_EQ(g.key_order.front(), "general.alignment");
  EXPECT_EQ(g.at("general.alignment").type, 4u);
  EXPECT_EQ(g.at("u8").type, 0u);
  EXPECT_EQ(g.at("u8").num(), 200);
  EXPECT_EQ(g.at("i8").num(), -100);
  EXPECT_EQ(g.at("u16").num(), 60000);
  EXPECT_EQ(g.at("i16").num(), -30000);
  EXPECT_EQ(g.at("u32").num(), 4000000000.0);
  EXPECT_EQ(g.at("i32").num(), -2000000000.0);
  EXPECT_EQ(g.at("f32").type, 6u);
  EXPECT_EQ(g.at("f32").num(), 1.5);
  EXPECT_EQ(g.at("u64").num(), std::ldexp(1.0, 40));
  EXPECT_EQ(g.at("i64").num(), -std::ldexp(1.0, 40));
  EXPECT_EQ(g.at("f64").type, 12u);
  EXPECT_EQ(g.at("f64").num(), 0.1);
  EXPECT_EQ(g.at("yes").type, 7u);
  EXPECT_EQ(g.at("yes").num(), 1);
  EXPECT_EQ(g.at("no").num(), 0);
  EXPECT_EQ(g.at("s").str(), "héllo");
  EXPECT_EQ(g.at("ai32").elem_type, 5u);
  EXPECT_EQ(g.at("ai32").nums, (std::vector<double>{-1, 2, 3}));
  EXPECT_EQ(g.at("au32").nums, (std::vector<double>{7, 8}));
  EXPECT_EQ(g.at("af32").nums, (std::vector<double>{0.25}));
  EXPECT_EQ(g.at("astr").elem_type, 8u);
  EXPECT_EQ(g.at("astr").strs, strs);
  EXPECT_TRUE(g.at("empty").strs.empty());

  ASSERT_EQ(g.tensors.size(), 3u);
  EXPECT_EQ(g.tensors[0].ne, (std::vector<int64_t>{5, 3, 2}));  // reversed
  EXPECT_EQ(g.tensors[1].ne, (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(g.tensors[1].type, 1u);
  EXPECT_EQ(g.tensors[2].type, 30u);
  expect_layout(g);
  EXPECT_EQ(g.data_start % 64, 0u);
  EXPECT_EQ(g.bytes.size(), w.file_size());
  EXPECT_EQ(g.floats("a"), a);
  const std::vector<float> b = g.floats("b"), c = g.floats("c");
  for (int i = 0; i < 15; ++i) EXPECT_EQ(b[i], seekr::f16_to_f32(seekr::f32_to_f16(a[i] * 3))) << i;
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(c[i], seekr::bf16_to_f32(seekr::f32_to_bf16(a[i] + 0.001f))) << i;
}

TEST_F(GgufWriterTest, RefusesWhatGgmlWouldReject) {
  GgufWriter w;
  w.add_uint32("k", 1);
  EXPECT_THAT([&] { w.add_string("k", "x"); },
              ::testing::ThrowsMessage<seekr::Error>(HasSubstr("'k' added twice")));
  EXPECT_THROW(w.add_uint32("general.alignment", 48), seekr::Error);
  EXPECT_THAT([&] { w.add_int32("general.alignment", 64); },
              ::testing::ThrowsMessage<seekr::Error>(HasSubstr("general.alignment")));
  const float x[4] = {};
  w.add_tensor("t", {4}, GgmlType::kF32, x);
  EXPECT_THAT([&] { w.add_tensor("t", {4}, GgmlType::kF32, x); },
              ::testing::ThrowsMessage<seekr::Error>(HasSubstr("'t' added twice")));
  const std::string long_name(64, 'n');
  EXPECT_THAT([&] { w.add_tensor(long_name, {4}, GgmlType::kF32, x); },
              ::testing::ThrowsMessage<seekr::Error>(HasSubstr("at most 63")));
  EXPECT_THAT(
      [&] {
        w.add_tensor("five", {1, 1, 1, 1, 4}, GgmlType::kF32, x);
      },
      ::testing::ThrowsMessage<seekr::Error>(HasSubstr("'five'")));
  EXPECT_THAT(
      [&] {
        w.add_tensor("zero", {0, 4}, GgmlType::kF32, x);
      },
      ::testing::ThrowsMessage<seekr::Error>(HasSubstr("positive")));
  EXPECT_EQ(seekr::parse_ggml_type("bf16"), GgmlType::kBF16);
  EXPECT_THAT([] { seekr::parse_ggml_type("q8_0"); },
              ::testing::ThrowsMessage<seekr::Error>(HasSubstr("'q8_0'")));
}

TEST_F(GgufWriterTest, FailedWriteLeavesNoFile) {
  GgufWriter w;
  w.add_tensor("t", {2}, GgmlType::kF32, [](float*) { throw seekr::Error("fill failed"); });
  EXPECT_THROW(w.write(path("x.gguf")), seekr::Error);
  EXPECT_TRUE(fs::is_empty(dir_));
}

// ---- the deepseek2 export -----------------------------------------------------------------

using GgufExport = TempDir;

// Every tensor name llama.cpp's deepseek2 loader asks for, given the config's structure.
std::set<std::string> expected_names(int layers, bool q_lora, bool mtp) {
  std::set<std::string> s = {"token_embd.weight", "output_norm.weight", "output.weight"};
  for (int l = 0; l < layers + (mtp ? 1 : 0); ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_norm", "attn_kv_a_mqa", "attn_kv_a_norm", "attn_k_b", "attn_v_b",
                          "attn_output", "ffn_norm"})
      s.insert(b + n + ".weight");
    if (q_lora) {
      for (const char* n : {"attn_q_a", "attn_q_a_norm", "attn_q_b"}) s.insert(b + n + ".weight");
    } else {
      s.insert(b + "attn_q.weight");
    }
    if (l == 0) {
      for (const char* n : {"ffn_gate", "ffn_up", "ffn_down"}) s.insert(b + n + ".weight");
    } else {
      for (const char* n : {"ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
                            "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"})
        s.insert(b + n + ".weight");
      s.insert(b + "exp_probs_b.bias");
    }
    if (l == layers)
      for (const char* n :
           {"nextn.enorm", "nextn.hnorm", "nextn.eh_proj", "nextn.shared_head_norm"})
        s.insert(b + n + ".weight");
  }
  return s;
}

TEST_F(GgufExport, Deepseek2MetadataTensorsAndValues) {
  const std::string ck = path("ck");
  const auto m = write_checkpoint(ck, small_config(), /*with_tokenizer=*/true);
  const seekr::ModelConfig& c = m->config();
  const seekr::GgufExportResult r = seekr::export_gguf(ck, path("m.gguf"));
  EXPECT_TRUE(r.warnings.empty()) << r.warnings.front();
  EXPECT_TRUE(r.mtp_included);
  EXPECT_FALSE(r.synthetic_vocab);

  const Gguf g = read_gguf(path("m.gguf"));
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(r.tensors, g.tensors.size());
  EXPECT_EQ(r.kv, g.kv.size());
  EXPECT_EQ(r.bytes, g.bytes.size());
  expect_layout(g);

  // Metadata, with the exact GGUF types llama.cpp's loader insists on.
  auto u32 = [&](const std::string& k) {
    EXPECT_EQ(g.at(k).type, 4u) << k;
    return g.at(k).num();
  };
  auto f32 = [&](const std::string& k) {
    EXPECT_EQ(g.at(k).type, 6u) << k;
    return g.at(k).num();
  };
  EXPECT_EQ(g.at("general.architecture").str(), "deepseek2");
  EXPECT_EQ(g.at("general.name").str(), "ck");
  EXPECT_EQ(u32("general.file_type"), 0);
  EXPECT_EQ(u32("deepseek2.block_count"), 3);  // 2 layers + the MTP module
  EXPECT_EQ(u32("deepseek2.nextn_predict_layers"), 1);
  EXPECT_EQ(u32("deepseek2.context_length"), 256);
  EXPECT_EQ(u32("deepseek2.embedding_length"), 32);
  EXPECT_EQ(u32("deepseek2.feed_forward_length"), 48);
  EXPECT_EQ(u32("deepseek2.attention.head_count"), 2);
  EXPECT_EQ(u32("deepseek2.attention.head_count_kv"), 1);
  EXPECT_EQ(u32("deepseek2.attention.q_lora_rank"), 24);
  EXPECT_EQ(u32("deepseek2.attention.kv_lora_rank"), 16);
  EXPECT_EQ(u32("deepseek2.attention.key_length"), 16 + 4);
  EXPECT_EQ(u32("deepseek2.attention.value_length"), 16);
  EXPECT_EQ(u32("deepseek2.attention.key_length_mla"), 8 + 4);
  EXPECT_EQ(u32("deepseek2.attention.value_length_mla"), 6);
  EXPECT_EQ(u32("deepseek2.rope.dimension_count"), 4);
  EXPECT_EQ(u32("deepseek2.leading_dense_block_count"), 1);
  EXPECT_EQ(u32("deepseek2.expert_count"), 8);
  EXPECT_EQ(u32("deepseek2.expert_used_count"), 2);
  EXPECT_EQ(u32("deepseek2.expert_shared_count"), 1);
  EXPECT_EQ(u32("deepseek2.expert_feed_forward_length"), 16);
  EXPECT_EQ(u32("deepseek2.expert_group_count"), 4);
  EXPECT_EQ(u32("deepseek2.expert_group_used_count"), 2);
  EXPECT_EQ(u32("deepseek2.expert_gating_func"), 2);  // sigmoid
  EXPECT_EQ(u32("deepseek2.vocab_size"), 260);
  EXPECT_EQ(g.at("deepseek2.expert_weights_norm").type, 7u);
  EXPECT_EQ(g.at("deepseek2.expert_weights_norm").num(), 1);
  EXPECT_FLOAT_EQ(f32("deepseek2.expert_weights_scale"), 2.5);
  EXPECT_FLOAT_EQ(f32("deepseek2.rope.freq_base"), 10000);
  EXPECT_FLOAT_EQ(f32("deepseek2.attention.layer_norm_rms_epsilon"), 1e-6);
  EXPECT_EQ(g.at("deepseek2.rope.scaling.type").str(), "yarn");
  EXPECT_FLOAT_EQ(f32("deepseek2.rope.scaling.factor"), 4);
  EXPECT_EQ(u32("deepseek2.rope.scaling.original_context_length"), 64);
  EXPECT_FLOAT_EQ(f32("deepseek2.rope.scaling.yarn_log_multiplier"), 0.1);
  EXPECT_EQ(g.kv.count("deepseek2.rope.scaling.attn_factor"), 0u);  // mscale == mscale_all_dim

  // Vocabulary from tokenizer.json.
  EXPECT_EQ(g.at("tokenizer.ggml.model").str(), "gpt2");
  EXPECT_EQ(g.at("tokenizer.ggml.pre").str(), "deepseek-v3");
  const Value& toks = g.at("tokenizer.ggml.tokens");
  ASSERT_EQ(toks.strs.size(), 260u);
  EXPECT_EQ(toks.strs[0], "<bos>");
  EXPECT_EQ(toks.strs[259], "t259");
  EXPECT_EQ(g.at("tokenizer.ggml.token_type").elem_type, 5u);
  EXPECT_EQ(g.at("tokenizer.ggml.token_type").nums[1], 3);    // control
  EXPECT_EQ(g.at("tokenizer.ggml.token_type").nums[100], 1);  // normal
  EXPECT_EQ(g.at("tokenizer.ggml.merges").strs, (std::vector<std::string>{"t2 t3", "t4 t5"}));
  EXPECT_EQ(u32("tokenizer.ggml.bos_token_id"), 0);
  EXPECT_EQ(u32("tokenizer.ggml.eos_token_id"), 1);
  EXPECT_EQ(g.at("tokenizer.ggml.add_bos_token").num(), 1);

  // Tensor names and ggml shapes.
  std::set<std::string> names;
  for (const auto& t : g.tensors) names.insert(t.name);
  EXPECT_EQ(names, expected_names(2, /*q_lora=*/true, /*mtp=*/true));
  const int64_t d = 32, H = 2, dn = 8, dr = 4, dv = 6, rkv = 16, E = 8, Im = 16, V = 260;
  EXPECT_EQ(g.tensor("token_embd.weight").ne, (std::vector<int64_t>{d, V}));
  EXPECT_EQ(g.tensor("blk.1.attn_q_b.weight").ne, (std::vector<int64_t>{24, H * (dn + dr)}));
  EXPECT_EQ(g.tensor("blk.1.attn_kv_a_mqa.weight").ne, (std::vector<int64_t>{d, rkv + dr}));
  EXPECT_EQ(g.tensor("blk.1.attn_k_b.weight").ne, (std::vector<int64_t>{dn, rkv, H}));
  EXPECT_EQ(g.tensor("blk.1.attn_v_b.weight").ne, (std::vector<int64_t>{rkv, dv, H}));
  EXPECT_EQ(g.tensor("blk.1.ffn_gate_exps.weight").ne, (std::vector<int64_t>{d, Im, E}));
  EXPECT_EQ(g.tensor("blk.1.ffn_down_exps.weight").ne, (std::vector<int64_t>{Im, d, E}));
  EXPECT_EQ(g.tensor("blk.1.ffn_gate_inp.weight").ne, (std::vector<int64_t>{d, E}));
  EXPECT_EQ(g.tensor("blk.1.exp_probs_b.bias").ne, (std::vector<int64_t>{E}));
  EXPECT_EQ(g.tensor("blk.2.nextn.eh_proj.weight").ne, (std::vector<int64_t>{2 * d, d}));
  for (const auto& t : g.tensors) EXPECT_EQ(t.type, 0u) << t.name;

  // Values.
  const seekr::ModelWeights& w = m->w();
  EXPECT_EQ(g.floats("token_embd.weight"), copy(w.embed, V * d));
  EXPECT_EQ(g.floats("output.weight"), copy(w.lm_head, V * d));
  EXPECT_EQ(g.floats("output_norm.weight"), copy(w.final_norm, d));
  const seekr::LayerWeights& l1 = w.layers[1];
  EXPECT_EQ(g.floats("blk.1.attn_q_a_norm.weight"), copy(l1.attn.q_a_norm, 24));
  EXPECT_EQ(g.floats("blk.1.attn_q_b.weight"), copy(l1.attn.q_b_proj, 24 * H * (dn + dr)));
  EXPECT_EQ(g.floats("blk.0.ffn_down.weight"), copy(w.layers[0].mlp.down, d * 48));
  EXPECT_EQ(g.floats("blk.1.exp_probs_b.bias"), copy(l1.correction_bias, E));
  const std::vector<float> kb = g.floats("blk.1.attn_k_b.weight");
  const std::vector<float> vb = g.floats("blk.1.attn_v_b.weight");
  const float* kvb = l1.attn.kv_b_proj;  // [H*(dn+dv), rkv]
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < rkv; ++i) {
      for (int64_t j = 0; j < dn; ++j)
        ASSERT_EQ(kb[(h * rkv + i) * dn + j], kvb[(h * (dn + dv) + j) * rkv + i]);
      for (int64_t j = 0; j < dv; ++j)
        ASSERT_EQ(vb[(h * dv + j) * rkv + i], kvb[(h * (dn + dv) + dn + j) * rkv + i]);
    }
  const std::vector<float> up = g.floats("blk.1.ffn_up_exps.weight");
  const std::vector<float> down = g.floats("blk.1.ffn_down_exps.weight");
  for (int e = 0; e < E; ++e) {
    EXPECT_EQ(std::vector<float>(up.begin() + e * Im * d, up.begin() + (e + 1) * Im * d),
              copy(l1.experts[e].up, Im * d));
    EXPECT_EQ(std::vector<float>(down.begin() + e * Im * d, down.begin() + (e + 1) * Im * d),
              copy(l1.experts[e].down, Im * d));
  }
  EXPECT_EQ(g.floats("blk.1.ffn_gate_shexp.weight"), copy(l1.shared.gate, Im * d));
  const seekr::LayerWeights& mtp = w.layers[2];
  EXPECT_EQ(g.floats("blk.2.nextn.eh_proj.weight"), copy(mtp.eh_proj, 2 * d * d));
  EXPECT_EQ(g.floats("blk.2.nextn.enorm.weight"), copy(mtp.enorm, d));
  EXPECT_EQ(g.floats("blk.2.nextn.shared_head_norm.weight"), copy(mtp.head_norm, d));
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
}

TEST_F(GgufExport, HalfPrecisionKeepsVectorsAndRouterInF32) {
  const std::string ck = path("ck");
  const auto m = write_checkpoint(ck, small_config(), true);
  seekr::GgufExportOptions opt;
  opt.type = GgmlType::kF16;
  opt.name = "tiny";
  seekr::export_gguf(ck, path("h.gguf"), opt);
  const Gguf g = read_gguf(path("h.gguf"));
  expect_layout(g);
  EXPECT_EQ(g.at("general.file_type").num(), 1);
  EXPECT_EQ(g.at("general.name").str(), "tiny");
  for (const auto& t : g.tensors) {
    const bool f32 = t.ne.size() == 1 || t.name.find("ffn_gate_inp") != std::string::npos;
    EXPECT_EQ(t.type, f32 ? 0u : 1u) << t.name;
  }
  const std::vector<float> emb = g.floats("token_embd.weight");
  const float* want = m->w().embed;
  for (size_t i = 0; i < emb.size(); ++i)
    ASSERT_EQ(emb[i], seekr::f16_to_f32(seekr::f32_to_f16(want[i]))) << i;
  EXPECT_EQ(g.floats("blk.1.ffn_gate_inp.weight"), copy(m->w().layers[1].router, 8 * 32));
}

TEST_F(GgufExport, DropsMtpLlamaCppCannotRunAndSynthesizesVocab) {
  json cfg = small_config();
  cfg["q_lora_rank"] = nullptr;  // llama.cpp's MTP graph needs q-LoRA
  const std::string ck = path("ck");
  write_checkpoint(ck, cfg, /*with_tokenizer=*/false);
  const seekr::GgufExportResult r = seekr::export_gguf(ck, path("m.gguf"));
  EXPECT_FALSE(r.mtp_included);
  EXPECT_TRUE(r.synthetic_vocab);
  std::string all;
  for (const auto& w : r.warnings) all += w + "\n";
  EXPECT_THAT(all, HasSubstr("MTP module dropped"));
  EXPECT_THAT(all, HasSubstr("q-LoRA"));
  EXPECT_THAT(all, HasSubstr("synthetic vocabulary"));

  const Gguf g = read_gguf(path("m.gguf"));
  expect_layout(g);
  EXPECT_EQ(g.at("deepseek2.block_count").num(), 2);
  EXPECT_EQ(g.kv.count("deepseek2.nextn_predict_layers"), 0u);
  EXPECT_EQ(g.at("deepseek2.attention.q_lora_rank").num(), 0);
  std::set<std::string> names;
  for (const auto& t : g.tensors) names.insert(t.name);
  EXPECT_EQ(names, expected_names(2, /*q_lora=*/false, /*mtp=*/false));

  const Value& toks = g.at("tokenizer.ggml.tokens");
  ASSERT_EQ(toks.strs.size(), 260u);
  EXPECT_EQ(std::set<std::string>(toks.strs.begin(), toks.strs.end()).size(), 260u);  // unique
  EXPECT_EQ(g.at("tokenizer.ggml.token_type").nums[0], 3);
  EXPECT_EQ(g.at("tokenizer.ggml.token_type").nums[1], 3);
  EXPECT_EQ(toks.strs[2 + 'A'], "A");       // byte tokens in GPT-2's byte-level alphabet
  EXPECT_EQ(toks.strs[2 + ' '], "\u0120");  // 'Ġ'
  EXPECT_EQ(toks.strs[259], "<|synthetic_259|>");
  EXPECT_TRUE(g.at("tokenizer.ggml.merges").strs.empty());

  // --no-mtp on a config whose MTP would fit.
  const std::string ck2 = path("ck2");
  write_checkpoint(ck2, small_config(), true);
  seekr::GgufExportOptions opt;
  opt.mtp = false;
  EXPECT_FALSE(seekr::export_gguf(ck2, path("n.gguf"), opt).mtp_included);
  EXPECT_EQ(read_gguf(path("n.gguf")).at("deepseek2.block_count").num(), 2);
}

TEST_F(GgufExport, PadsASmallerTokenizerAndRejectsALargerOne) {
  const std::string ck = path("ck");
  write_checkpoint(ck, small_config(), true, /*tokens=*/200);
  seekr::GgufExportResult r = seekr::export_gguf(ck, path("a.gguf"));
  EXPECT_FALSE(r.synthetic_vocab);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_THAT(r.warnings[0], HasSubstr("60 ids written as unused"));
  Gguf g = read_gguf(path("a.gguf"));
  EXPECT_EQ(g.at("tokenizer.ggml.tokens").strs[230], "[PAD230]");
  EXPECT_EQ(g.at("tokenizer.ggml.token_type").nums[230], 5);

  seekr::write_file_atomic(ck + "/tokenizer.json", tokenizer_json(300).dump());
  r = seekr::export_gguf(ck, path("b.gguf"));
  EXPECT_TRUE(r.synthetic_vocab);
  EXPECT_THAT(r.warnings[0], HasSubstr("holds 300 tokens but config.json's vocab_size is 260"));
}

TEST_F(GgufExport, FoldsUnequalYarnMscaleIntoTheQueryProjection) {
  json cfg = small_config();
  cfg["rope_scaling"]["mscale"] = 0.5;
  cfg["rope_scaling"]["mscale_all_dim"] = 1.0;
  const std::string ck = path("ck");
  const auto m = write_checkpoint(ck, cfg, true);
  const seekr::GgufExportResult r = seekr::export_gguf(ck, path("y.gguf"));
  ASSERT_EQ(r.warnings.size(), 1u);
  const Gguf g = read_gguf(path("y.gguf"));
  // seekr's cos/sin magnitude mscale(4, 0.5) / mscale(4, 1) is llama.cpp's attn_factor ...
  const double mag = (0.1 * 0.5 * std::log(4.0) + 1) / (0.1 * std::log(4.0) + 1);
  EXPECT_FLOAT_EQ(g.at("deepseek2.rope.scaling.attn_factor").num(), mag);
  // ... and llama.cpp then scales scores by mag^2 more than seekr: q carries 1/mag^2.
  const std::vector<float> q = g.floats("blk.0.attn_q_b.weight");
  const float* want = m->w().layers[0].attn.q_b_proj;
  const float s = static_cast<float>(1.0 / (mag * mag));
  for (size_t i = 0; i < q.size(); ++i) ASSERT_FLOAT_EQ(q[i], want[i] * s) << i;
  EXPECT_EQ(g.floats("blk.0.attn_q_a.weight"), copy(m->w().layers[0].attn.q_a_proj, 24 * 32));
}

TEST_F(GgufExport, RefusesConfigsLlamaCppCannotComputeExactly) {
  auto refused = [&](json cfg, const std::string& field) {
    const std::string ck = path("bad");
    fs::remove_all(ck);
    write_checkpoint(ck, cfg, false);
    EXPECT_THAT([&] { seekr::export_gguf(ck, path("bad.gguf")); },
                ::testing::ThrowsMessage<seekr::Error>(
                    testing::AllOf(HasSubstr("config.json"), HasSubstr("'" + field + "'"))))
        << field;
    EXPECT_FALSE(fs::exists(path("bad.gguf")));
  };
  json cfg = small_config();
  cfg["moe_layer_freq"] = 2;
  cfg["num_hidden_layers"] = 3;
  refused(cfg, "moe_layer_freq");
  cfg = small_config();
  cfg["topk_method"] = "group_limited_greedy";
  refused(cfg, "topk_method");
  cfg = small_config();
  cfg["rope_scaling"]["beta_fast"] = 16;
  refused(cfg, "rope_scaling");
}

TEST_F(GgufExport, NamesTheTensorWhoseShapeDisagreesWithTheConfig) {
  const std::string ck = path("ck");
  write_checkpoint(ck, small_config(), true);
  json cfg = small_config();
  cfg["kv_lora_rank"] = 12;
  seekr::write_file_atomic(ck + "/config.json",
                           seekr::ModelConfig::from_json_text(cfg.dump(), "test").to_json_text());
  EXPECT_THAT([&] { seekr::export_gguf(ck, path("m.gguf")); },
              ::testing::ThrowsMessage<seekr::Error>(testing::AllOf(
                  HasSubstr("kv_a_proj_with_mqa.weight"), HasSubstr("config.json implies"))));
}

}  // namespace
