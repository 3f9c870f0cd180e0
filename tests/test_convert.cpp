// Checkpoint dtypes: DeepSeek's block-FP8 layout (F8_E4M3 + weight_scale_inv, quantization_config)
// loaded into Model, and `seekr convert` between f32, bf16, f16 and fp8 (src/model/convert.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "kernels/fp8.h"
#include "model/config.h"
#include "model/convert.h"
#include "model/model.h"

namespace seekr {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

// hidden_size 200 gives partial 128-blocks (200 = 128 + 72) in every Linear weight touching it.
std::string config_json(const std::string& extra = "") {
  return R"({
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 37, "hidden_size": 200, "intermediate_size": 136,
    "moe_intermediate_size": 24, "num_hidden_layers": 2, "first_k_dense_replace": 1,
    "moe_layer_freq": 1, "num_attention_heads": 2, "q_lora_rank": 12, "kv_lora_rank": 8,
    "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6, "n_routed_experts": 4,
    "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1,
    "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true,
    "routed_scaling_factor": 2.5, "num_nextn_predict_layers": 1, "rms_norm_eps": 1e-6,
    "rope_theta": 10000, "max_position_embeddings": 64, "initializer_range": 0.3,
    "torch_dtype": "float32")" +
         extra + "}";
}

ModelConfig test_config() {
  return ModelConfig::from_json_text(config_json(), "test config");
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A tensor of a model by HF name (float* or const float*, as the model).
template <class M>
auto tensor_of(M& m, const std::string& name) {
  const int i = m.layout().find(name);
  SEEKR_CHECK(i >= 0, name);
  const TensorSpec& s = m.layout().specs()[i];
  return (s.kind == TensorKind::kParam ? m.params().data() : m.buffers().data()) +
         m.layout().offsets()[i];
}

bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

// Per-element float of a stored tensor, for checking dtypes and values after conversion.
std::vector<float> stored_f32(const TensorView& t) {
  std::vector<float> x(static_cast<size_t>(t.numel()));
  copy_to_f32(t, x.data());
  return x;
}

std::vector<int32_t> prompt() {
  return {3, 17, 5, 36, 0, 22, 9};
}

std::vector<float> logits_of(const Model& m) {
  const std::vector<int32_t> tokens = prompt();
  const int n = static_cast<int>(tokens.size());
  std::vector<int32_t> slots(n, 0), pos(n);
  for (int i = 0; i < n; ++i) pos[i] = i;
  InferenceSession s(m, 1, 16);
  std::vector<float> logits(static_cast<size_t>(n) * m.config().vocab_size);
  s.forward(tokens.data(), slots.data(), pos.data(), n, logits.data());
  return logits;
}

class Convert : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "seekr_convert_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    original_ = std::make_unique<Model>(test_config());
    original_->init_weights(7);
    // Nonzero correction biases, so keeping them F32 is visible.
    Rng rng(9);
    for (const TensorSpec& s : original_->layout().specs()) {
      if (s.kind != TensorKind::kBuffer) continue;
      float* b = tensor_of(*original_, s.name);
      for (int64_t i = 0; i < s.numel(); ++i) b[i] = static_cast<float>(rng.normal() * 0.1);
    }
    write_model(path("f32"), *original_);
    write_file_atomic(path("f32") + "/tokenizer.json", "{\"model\": {}}\n");
    write_file_atomic(path("f32") + "/trainer_state.json", "{}\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  static void write_model(const std::string& dir, const Model& m,
                          const std::string& config = config_json()) {
    make_dirs(dir);
    write_file_atomic(dir + "/config.json", config);
    SafetensorsWriter w;
    m.add_to(w);
    w.write(dir + "/model.safetensors");
  }

  static ConvertResult convert(const std::string& in, const std::string& out, CheckpointDType t,
                               uint64_t shard_bytes = 0) {
    ConvertOptions opt;
    opt.dtype = t;
    opt.shard_bytes = shard_bytes;
    opt.threads = 2;
    return convert_checkpoint(in, out, opt);
  }

  std::unique_ptr<Model> load(const std::string& dir) const {
    auto m = std::make_unique<Model>(test_config());
    m->load(TensorSource::open(dir));
    return m;
  }

  // The original with every FP8 Linear weight fake-quantised in memory.
  std::unique_ptr<Model> fake_quantised() const {
    auto m = std::make_unique<Model>(test_config());
    m->params() = original_->params();
    m->buffers() = original_->buffers();
    for (const TensorSpec& s : m->layout().specs()) {
      if (!is_fp8_linear_name(s.name)) continue;
      float* p = tensor_of(*m, s.name);
      fp8_fake_quant(p, static_cast<int>(s.shape[0]), static_cast<int>(s.shape[1]),
                     Fp8Tiling::k128x128);
    }
    return m;
  }

  // Copies checkpoint `from` to `to` (config.json too, or `config` when given); `hook` may add
  // replacements itself and return true to skip the default copy of a tensor.
  static void rewrite(const std::string& from, const std::string& to,
                      const std::function<bool(const TensorView&, SafetensorsWriter&)>& hook,
                      const std::string& config = "") {
    const TensorSource src = TensorSource::open(from);
    make_dirs(to);
    write_file_atomic(to + "/config.json",
                      config.empty() ? read_file(from + "/config.json") : config);
    SafetensorsWriter w;
    for (const std::string& name : src.names()) {
      const TensorView& t = src.get(name);
      if (!hook(t, w)) w.add(name, t.dtype, t.shape, t.data, t.nbytes);
    }
    w.write(to + "/model.safetensors");
  }

  std::string dir_;
  std::unique_ptr<Model> original_;
};

// ---- the tensors that become FP8 ----------------------------------------------------------------

TEST(Fp8Names, ExactlyTheReleaseLinearWeights) {
  for (const char* n :
       {"model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.q_b_proj.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
        "model.layers.0.self_attn.kv_b_proj.weight", "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight", "model.layers.3.mlp.experts.255.down_proj.weight",
        "model.layers.3.mlp.shared_experts.gate_proj.weight", "model.layers.61.eh_proj.weight"})
    EXPECT_TRUE(is_fp8_linear_name(n)) << n;
  for (const char* n :
       {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
        "model.layers.3.mlp.gate.weight", "model.layers.3.mlp.gate.e_score_correction_bias",
        "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.kv_a_layernorm.weight",
        "model.layers.61.shared_head.head.weight", "model.layers.61.shared_head.norm.weight",
        "model.layers.61.embed_tokens.weight", "model.layers.61.enorm.weight",
        "model.layers.0.self_attn.o_proj.weight_scale_inv"})
    EXPECT_FALSE(is_fp8_linear_name(n)) << n;
  EXPECT_TRUE(is_scale_inv_name("model.layers.0.self_attn.o_proj.weight_scale_inv"));
  EXPECT_FALSE(is_scale_inv_name("model.layers.0.self_attn.o_proj.weight"));
}

// ---- quantization_config ------------------------------------------------------------------------

TEST(QuantizationConfig, AcceptsTheReleaseAndNamesBadFields) {
  EXPECT_FALSE(parse_quantization_config(config_json(), "c.json").has_value());
  EXPECT_FALSE(
      parse_quantization_config(config_json(R"(, "quantization_config": null)"), "c.json"));
  const std::string release =
      R"(, "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
           "quant_method": "fp8", "weight_block_size": [128, 128]})";
  auto q = parse_quantization_config(config_json(release), "c.json");
  ASSERT_TRUE(q.has_value());
  EXPECT_FALSE(q->ue8m0_activation_scales);
  q = parse_quantization_config(
      config_json(R"(, "quantization_config": {"quant_method": "fp8", "scale_fmt": "ue8m0"})"),
      "c.json");
  ASSERT_TRUE(q.has_value());
  EXPECT_TRUE(q->ue8m0_activation_scales);
  // What seekr writes is what it accepts, and is the release's object.
  EXPECT_EQ(json::parse(fp8_quantization_config_json()),
            json::parse(R"({"activation_scheme": "dynamic", "fmt": "e4m3",
                            "quant_method": "fp8", "weight_block_size": [128, 128]})"));

  auto bad = [](const std::string& q) {
    return error_of([&] {
      parse_quantization_config(config_json(", \"quantization_config\": " + q), "c.json");
    });
  };
  const std::string block = bad(R"({"quant_method": "fp8", "weight_block_size": [64, 64]})");
  EXPECT_THAT(block, HasSubstr("c.json"));
  EXPECT_THAT(block, HasSubstr("quantization_config.weight_block_size"));
  EXPECT_THAT(block, HasSubstr("[64,64]"));
  EXPECT_THAT(bad(R"({"quant_method": "fp8", "weight_block_size": [128]})"),
              HasSubstr("quantization_config.weight_block_size"));
  EXPECT_THAT(bad(R"({"quant_method": "fp8", "fmt": "e5m2"})"),
              HasSubstr("quantization_config.fmt' is \"e5m2\""));
  EXPECT_THAT(bad(R"({"quant_method": "awq"})"), HasSubstr("quantization_config.quant_method"));
  EXPECT_THAT(bad(R"({"fmt": "e4m3"})"), HasSubstr("quantization_config.quant_method' is missing"));
  EXPECT_THAT(bad(R"({"quant_method": "fp8", "activation_scheme": "static"})"),
              HasSubstr("quantization_config.activation_scheme"));
  EXPECT_THAT(bad(R"({"quant_method": "fp8", "scale_fmt": "e8m0x"})"),
              HasSubstr("quantization_config.scale_fmt"));
  EXPECT_THAT(bad("[1]"), HasSubstr("'quantization_config' must be an object"));
}

TEST(ConvertArgs, DtypesAndSizes) {
  EXPECT_EQ(parse_checkpoint_dtype("fp8"), CheckpointDType::kFP8);
  EXPECT_EQ(parse_checkpoint_dtype("bf16"), CheckpointDType::kBF16);
  EXPECT_THAT(error_of([] { parse_checkpoint_dtype("int4"); }), HasSubstr("\"int4\""));
  EXPECT_EQ(parse_byte_size("5GB"), 5000000000ull);
  EXPECT_EQ(parse_byte_size("500MB"), 500000000ull);
  EXPECT_EQ(parse_byte_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("1.5KiB"), 1536ull);
  EXPECT_EQ(parse_byte_size("4096"), 4096ull);
  for (const char* bad : {"", "GB", "-1GB", "5 GB", "5XB", "0"})
    EXPECT_THAT(error_of([&] { parse_byte_size(bad); }), HasSubstr("is not a positive size"))
        << bad;
}

// ---- f32 -> fp8 -> f32 --------------------------------------------------------------------------

TEST_F(Convert, Fp8RoundTripIsFakeQuantOfLinearWeightsOnly) {
  const ConvertResult r = convert(path("f32"), path("fp8"), CheckpointDType::kFP8);
  const ModelLayout& layout = original_->layout();
  size_t linear = 0;
  for (const TensorSpec& s : layout.specs()) linear += is_fp8_linear_name(s.name);
  ASSERT_GT(linear, 20u);
  EXPECT_EQ(r.quantized, linear);
  EXPECT_EQ(r.in.tensors, layout.specs().size());
  EXPECT_EQ(r.out.tensors, layout.specs().size() + linear);
  EXPECT_EQ(r.out.by_dtype.at("F8_E4M3"), linear);
  EXPECT_LT(r.out.bytes, r.in.bytes / 2);
  EXPECT_EQ(r.copied_files, std::vector<std::string>{"tokenizer.json"});  // not trainer_state

  // The fp8 directory: Linear weights as E4M3 + F32 scale_inv, the rest untouched F32.
  const TensorSource fp8 = TensorSource::open(path("fp8"));
  for (const TensorSpec& s : layout.specs()) {
    const TensorView& t = fp8.get(s.name);
    EXPECT_EQ(t.shape, s.shape) << s.name;
    if (is_fp8_linear_name(s.name)) {
      EXPECT_EQ(t.dtype, DType::F8_E4M3) << s.name;
      const TensorView& sc = fp8.get(s.name + "_scale_inv");
      EXPECT_EQ(sc.dtype, DType::F32);
      EXPECT_EQ(sc.shape,
                (std::vector<int64_t>{(s.shape[0] + 127) / 128, (s.shape[1] + 127) / 128}))
          << s.name;
    } else {
      EXPECT_EQ(t.dtype, DType::F32) << s.name;
      EXPECT_EQ(fp8.find(s.name + "_scale_inv"), nullptr) << s.name;
      EXPECT_TRUE(same_bits(stored_f32(t).data(), tensor_of(*original_, s.name), s.numel()))
          << s.name;
    }
  }
  const json cfg = json::parse(read_file(path("fp8/config.json")));
  EXPECT_EQ(cfg["quantization_config"], json::parse(fp8_quantization_config_json()));
  EXPECT_EQ(cfg["vocab_size"], 37);
  EXPECT_EQ(read_file(path("fp8/tokenizer.json")), read_file(path("f32/tokenizer.json")));
  EXPECT_FALSE(file_exists(path("fp8/trainer_state.json")));

  // Back to f32: Linear weights are fp8_fake_quant of the original, bit for bit; others equal.
  const ConvertResult back = convert(path("fp8"), path("back"), CheckpointDType::kF32);
  EXPECT_EQ(back.out.tensors, layout.specs().size());
  EXPECT_EQ(back.out.by_dtype.size(), 1u);
  EXPECT_EQ(back.out.bytes, r.in.bytes);
  const json back_cfg = json::parse(read_file(path("back/config.json")));
  EXPECT_FALSE(back_cfg.contains("quantization_config"));
  EXPECT_EQ(back_cfg["torch_dtype"], "float32");
  const TensorSource src = TensorSource::open(path("back"));
  const auto fq = fake_quantised();
  size_t changed = 0;
  for (const TensorSpec& s : layout.specs()) {
    const TensorView& t = src.get(s.name);
    ASSERT_EQ(t.dtype, DType::F32);
    const std::vector<float> x = stored_f32(t);
    EXPECT_TRUE(same_bits(x.data(), tensor_of(*fq, s.name), s.numel())) << s.name;
    changed += !same_bits(x.data(), tensor_of(*original_, s.name), s.numel());
  }
  EXPECT_EQ(changed, linear);  // quantisation did change every Linear weight
}

TEST_F(Convert, ScaleInvOfPartialEdgeBlocks) {
  convert(path("f32"), path("fp8"), CheckpointDType::kFP8);
  const TensorSource fp8 = TensorSource::open(path("fp8"));
  // eh_proj is [200, 400]: blocks of 128 rows (128 + 72) by 128 columns (3 × 128 + 16).
  const std::string name = "model.layers.2.eh_proj.weight";
  const TensorView& sc = fp8.get(name + "_scale_inv");
  ASSERT_EQ(sc.shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(fp8.get("model.layers.0.self_attn.o_proj.weight_scale_inv").shape,
            (std::vector<int64_t>{2, 1}));  // [200, 12]
  EXPECT_EQ(fp8.get("model.layers.1.mlp.experts.3.down_proj.weight_scale_inv").shape,
            (std::vector<int64_t>{2, 1}));  // [200, 24]
  const std::vector<float> s = stored_f32(sc);
  const float* w = tensor_of(*original_, name);
  for (int br = 0; br < 2; ++br)
    for (int bc = 0; bc < 4; ++bc) {
      float amax = 0;  // over the block's own elements only (the padding adds zeros)
      for (int r = br * 128; r < std::min(200, br * 128 + 128); ++r)
        for (int c = bc * 128; c < std::min(400, bc * 128 + 128); ++c)
          amax = std::max(amax, std::fabs(w[r * 400 + c]));
      EXPECT_EQ(s[br * 4 + bc], std::max(amax, kFp8AmaxFloor) / 448.0f) << br << "," << bc;
    }
  // The largest element of each block is coded as ±448 exactly.
  const TensorView& q = fp8.get(name);
  int max_codes = 0;
  for (int64_t i = 0; i < q.numel(); ++i) max_codes += (q.data[i] & 0x7F) == 0x7E;
  EXPECT_GE(max_codes, 8);
}

// ---- bf16 / f16 ---------------------------------------------------------------------------------

TEST_F(Convert, Bf16AndF16RoundTripsAreRoundings) {
  for (const CheckpointDType d : {CheckpointDType::kBF16, CheckpointDType::kF16}) {
    const std::string name = checkpoint_dtype_name(d);
    const ConvertResult r = convert(path("f32"), path(name), d);
    const DType want = d == CheckpointDType::kBF16 ? DType::BF16 : DType::F16;
    EXPECT_EQ(json::parse(read_file(path(name + "/config.json")))["torch_dtype"],
              d == CheckpointDType::kBF16 ? "bfloat16" : "float16");
    const TensorSource half = TensorSource::open(path(name));
    size_t biases = 0;
    for (const TensorSpec& s : original_->layout().specs()) {
      const bool bias = s.name.ends_with("e_score_correction_bias");
      biases += bias;
      EXPECT_EQ(half.get(s.name).dtype, bias ? DType::F32 : want) << s.name;
    }
    EXPECT_EQ(biases, 2u);  // MoE layer 1 and the MTP module
    EXPECT_EQ(r.out.by_dtype.at("F32"), biases);

    convert(path(name), path(name + "_back"), CheckpointDType::kF32);
    const auto back = load(path(name + "_back"));
    for (const TensorSpec& s : original_->layout().specs()) {
      const float* a = tensor_of(*original_, s.name);
      const float* b = tensor_of(*back, s.name);
      for (int64_t i = 0; i < s.numel(); ++i) {
        const float want_v = s.name.ends_with("e_score_correction_bias") ? a[i]
                             : d == CheckpointDType::kBF16 ? bf16_to_f32(f32_to_bf16(a[i]))
                                                           : f16_to_f32(f32_to_f16(a[i]));
        ASSERT_EQ(b[i], want_v) << s.name << "[" << i << "]";
      }
    }
  }
}

// ---- loading FP8 checkpoints --------------------------------------------------------------------

TEST_F(Convert, ModelLoadsFp8CheckpointsSingleAndSharded) {
  convert(path("f32"), path("fp8"), CheckpointDType::kFP8);
  const ConvertResult sharded =
      convert(path("f32"), path("fp8_sharded"), CheckpointDType::kFP8, 60000);
  EXPECT_GT(sharded.shards, 2);
  EXPECT_TRUE(file_exists(path("fp8_sharded/model.safetensors.index.json")));
  const auto fq = fake_quantised();
  for (const char* dir : {"fp8", "fp8_sharded"}) {
    const auto m = load(path(dir));
    EXPECT_EQ(m->params(), fq->params()) << dir;
    EXPECT_EQ(m->buffers(), original_->buffers()) << dir;
  }
}

TEST_F(Convert, LogitsFromFp8CheckpointEqualInMemoryFakeQuant) {
  convert(path("f32"), path("fp8"), CheckpointDType::kFP8);
  const auto from_file = load(path("fp8"));
  const auto in_memory = fake_quantised();
  const std::vector<float> a = logits_of(*from_file), b = logits_of(*in_memory);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(same_bits(a.data(), b.data(), static_cast<int64_t>(a.size())));
  for (float v : a) ASSERT_TRUE(std::isfinite(v));
  // ...and FP8 storage is not a no-op: the unquantised model's logits differ.
  const std::vector<float> o = logits_of(*original_);
  double diff = 0;
  for (size_t i = 0; i < o.size(); ++i) diff = std::max(diff, double(std::fabs(o[i] - a[i])));
  EXPECT_GT(diff, 1e-4);
}

// The official layout written by hand: E4M3 bytes and scale_inv chosen here, every other tensor
// BF16 as in the release (the correction biases F32), the MTP module's copies of the embedding
// and head present, config.json with the release's quantization_config.
TEST_F(Convert, HandWrittenOfficialLayoutLoads) {
  // E4M3 codes with their values worked out by hand (bias 7, 3 mantissa bits).
  const std::pair<uint8_t, float> codes[] = {
      {0x00, 0.0f},    {0x38, 1.0f}, {0x40, 2.0f},  {0xB8, -1.0f},   {0x7E, 448.0f},
      {0x01, 0x1p-9f}, {0x3C, 1.5f}, {0xC4, -3.0f}, {0x08, 0x1p-6f}, {0xFE, -448.0f}};
  const ModelConfig c = test_config();
  const ModelLayout layout(c);
  std::vector<std::vector<uint8_t>> bytes;  // keeps the data alive until write
  std::vector<std::vector<float>> expected(layout.specs().size());
  std::vector<std::vector<float>> scales;
  SafetensorsWriter w;
  for (size_t k = 0; k < layout.specs().size(); ++k) {
    const TensorSpec& s = layout.specs()[k];
    const int64_t n = s.numel();
    expected[k].resize(static_cast<size_t>(n));
    if (is_fp8_linear_name(s.name)) {
      const int64_t rows = s.shape[0], cols = s.shape[1];
      const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
      std::vector<float> sv(static_cast<size_t>(sr * sc));
      for (int64_t b = 0; b < sr * sc; ++b) sv[b] = 0.01f * static_cast<float>(1 + b + k % 3);
      std::vector<uint8_t> q(static_cast<size_t>(n));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t col = 0; col < cols; ++col) {
          const auto& [code, value] = codes[(r * 7 + col * 3 + k) % 10];
          q[r * cols + col] = code;
          expected[k][r * cols + col] = value * sv[(r / 128) * sc + col / 128];
        }
      bytes.push_back(std::move(q));
      w.add(s.name, DType::F8_E4M3, s.shape, bytes.back().data());
      scales.push_back(std::move(sv));
      w.add(s.name + "_scale_inv", DType::F32, {sr, sc}, scales.back().data());
    } else {
      const bool f32 = s.name.ends_with("e_score_correction_bias");
      std::vector<uint8_t> b(static_cast<size_t>(n) * (f32 ? 4 : 2));
      for (int64_t i = 0; i < n; ++i) {
        const float v = std::sin(static_cast<float>(i + 31 * k)) * 0.5f;
        if (f32) {
          std::memcpy(&b[i * 4], &v, 4);
          expected[k][i] = v;
        } else {
          const uint16_t h = f32_to_bf16(v);
          std::memcpy(&b[i * 2], &h, 2);
          expected[k][i] = bf16_to_f32(h);
        }
      }
      bytes.push_back(std::move(b));
      w.add(s.name, f32 ? DType::F32 : DType::BF16, s.shape, bytes.back().data());
    }
  }
  // The MTP module's stored copies of the embedding and the head (equal to the main ones).
  const std::string mtp = "model.layers." + std::to_string(c.num_hidden_layers);
  w.add(mtp + ".embed_tokens.weight", DType::BF16, {c.vocab_size, c.hidden_size},
        bytes[layout.find("model.embed_tokens.weight")].data());
  w.add(mtp + ".shared_head.head.weight", DType::BF16, {c.vocab_size, c.hidden_size},
        bytes[layout.find("lm_head.weight")].data());
  const std::string release_cfg = config_json(
      R"(, "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
           "quant_method": "fp8", "weight_block_size": [128, 128]})");
  make_dirs(path("official"));
  write_file_atomic(path("official/config.json"), release_cfg);
  w.write(path("official/model.safetensors"));

  const auto m = load(path("official"));
  for (size_t k = 0; k < layout.specs().size(); ++k) {
    const TensorSpec& s = layout.specs()[k];
    EXPECT_TRUE(same_bits(tensor_of(*m, s.name), expected[k].data(), s.numel())) << s.name;
  }
  // The raw pair is available as is, for FP8 inference.
  const TensorSource src = TensorSource::open(path("official"));
  const size_t k = static_cast<size_t>(layout.find("model.layers.2.eh_proj.weight"));
  const Fp8Weight fw = fp8_weight(src, src.get(layout.specs()[k].name));
  EXPECT_EQ(fw.rows, 200);
  EXPECT_EQ(fw.cols, 400);
  EXPECT_EQ(std::memcmp(fw.codes, bytes[k].data(), 200 * 400), 0);
  EXPECT_EQ(fw.scale_inv.size(), 8u);

  // convert: fp8 -> fp8 passes codes and scales through; fp8 -> f32 gives the loaded values;
  // fp8 -> bf16 drops scales and quantization_config.
  const ConvertResult same = convert(path("official"), path("official_fp8"), CheckpointDType::kFP8);
  EXPECT_EQ(same.quantized, 0u);
  EXPECT_EQ(same.out.bytes, same.in.bytes);
  const TensorSource again = TensorSource::open(path("official_fp8"));
  for (const std::string& name : src.names()) {
    const TensorView &a = src.get(name), &b = again.get(name);
    EXPECT_EQ(a.dtype, b.dtype) << name;
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << name;
  }
  EXPECT_EQ(json::parse(read_file(path("official_fp8/config.json"))), json::parse(release_cfg));
  convert(path("official"), path("official_f32"), CheckpointDType::kF32);
  EXPECT_EQ(load(path("official_f32"))->params(), m->params());
  const ConvertResult bf = convert(path("official"), path("official_bf16"), CheckpointDType::kBF16);
  EXPECT_EQ(bf.out.by_dtype.count("F8_E4M3"), 0u);
  EXPECT_EQ(bf.out.tensors, src.names().size() - scales.size());
  EXPECT_FALSE(
      json::parse(read_file(path("official_bf16/config.json"))).contains("quantization_config"));
  const TensorSource bsrc = TensorSource::open(path("official_bf16"));
  EXPECT_EQ(bsrc.get("model.layers.2.eh_proj.weight").dtype, DType::BF16);
  EXPECT_EQ(bsrc.get("model.layers.1.mlp.gate.e_score_correction_bias").dtype, DType::F32);
  EXPECT_EQ(bsrc.find("model.layers.2.eh_proj.weight_scale_inv"), nullptr);
}

// ---- errors -------------------------------------------------------------------------------------

TEST_F(Convert, ErrorsNameTheTensorOrField) {
  convert(path("f32"), path("fp8"), CheckpointDType::kFP8);
  const std::string victim = "model.layers.1.mlp.experts.2.up_proj.weight";
  const std::string scale = victim + "_scale_inv";
  auto load_error = [&](const std::string& dir) { return error_of([&] { load(dir); }); };

  rewrite(path("fp8"), path("no_scale"),
          [&](const TensorView& t, SafetensorsWriter&) { return t.name == scale; });
  std::string e = load_error(path("no_scale"));
  EXPECT_THAT(e, HasSubstr(path("no_scale/model.safetensors")));
  EXPECT_THAT(e, HasSubstr("\"" + victim + "\" is F8_E4M3 but the checkpoint has no \"" + scale));
  EXPECT_THAT(error_of([&] { convert(path("no_scale"), path("out1"), CheckpointDType::kF32); }),
              HasSubstr(scale));
  EXPECT_FALSE(fs::exists(path("out1")));

  const std::vector<float> wrong(2, 1.0f);  // [2, 1]: the transpose of the needed [1, 2]
  rewrite(path("fp8"), path("bad_scale"), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name != scale) return false;
    w.add(scale, DType::F32, {2, 1}, wrong.data());
    return true;
  });
  e = load_error(path("bad_scale"));
  EXPECT_THAT(e, HasSubstr("\"" + scale + "\" has shape [2,1]"));
  EXPECT_THAT(e, HasSubstr("\"" + victim + "\" needs [ceil(rows/128), ceil(cols/128)] = [1,2]"));

  const std::vector<float> nan_scale(2, NAN);
  rewrite(path("fp8"), path("nan_scale"), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name != scale) return false;
    w.add(scale, DType::F32, {1, 2}, nan_scale.data());
    return true;
  });
  EXPECT_THAT(load_error(path("nan_scale")), HasSubstr("\"" + scale + "\": block 0,0"));

  // A float weight that still carries a scale (half a dequantisation) is refused.
  rewrite(path("f32"), path("stray"), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name == victim) w.add(scale, DType::F32, {1, 2}, wrong.data());
    return false;
  });
  EXPECT_THAT(load_error(path("stray")), HasSubstr("\"" + victim + "\" is F32 but has a"));

  // A bad quantization_config in the checkpoint's config.json.
  rewrite(
      path("fp8"), path("bad_cfg"), [](const TensorView&, SafetensorsWriter&) { return false; },
      config_json(R"(, "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                          "activation_scheme": "dynamic", "weight_block_size": [64, 64]})"));
  e = load_error(path("bad_cfg"));
  EXPECT_THAT(e, HasSubstr(path("bad_cfg/config.json")));
  EXPECT_THAT(e, HasSubstr("quantization_config.weight_block_size"));
  EXPECT_THAT(error_of([&] { convert(path("bad_cfg"), path("out2"), CheckpointDType::kF32); }),
              HasSubstr("quantization_config.weight_block_size"));

  // An MTP copy of the embedding that is not the main embedding.
  std::vector<float> other(37 * 200, 0.5f);
  rewrite(path("f32"), path("mtp_copy"), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name == "lm_head.weight")
      w.add("model.layers.2.shared_head.head.weight", DType::F32, {37, 200}, other.data());
    return false;
  });
  e = load_error(path("mtp_copy"));
  EXPECT_THAT(e, HasSubstr("'model.layers.2.shared_head.head.weight' differs from "
                           "'lm_head.weight' at element 0"));

  // Shape and presence checks of convert name the tensor.
  rewrite(path("f32"), path("missing"), [](const TensorView& t, SafetensorsWriter&) {
    return t.name == "model.layers.0.self_attn.o_proj.weight";
  });
  EXPECT_THAT(error_of([&] { convert(path("missing"), path("out3"), CheckpointDType::kFP8); }),
              HasSubstr("missing tensor \"model.layers.0.self_attn.o_proj.weight\""));
  const std::vector<float> small(10, 0.0f);
  rewrite(path("f32"), path("shape"), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name != "model.norm.weight") return false;
    w.add(t.name, DType::F32, {10}, small.data());
    return true;
  });
  EXPECT_THAT(error_of([&] { convert(path("shape"), path("out4"), CheckpointDType::kFP8); }),
              HasSubstr("\"model.norm.weight\" has shape [10]"));

  // The output must be new (or empty): an existing checkpoint is never overwritten.
  EXPECT_THAT(error_of([&] { convert(path("f32"), path("fp8"), CheckpointDType::kF32); }),
              HasSubstr("already exists and is not an empty directory"));
  make_dirs(path("empty"));
  convert(path("f32"), path("empty"), CheckpointDType::kBF16);
  EXPECT_TRUE(file_exists(path("empty/model.safetensors")));
  for (const auto& entry : fs::directory_iterator(dir_))
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr(".tmp-")));
}

}  // namespace
}  // namespace seekr
