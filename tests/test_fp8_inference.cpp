// FP8 weights kept FP8 in memory for inference (model/quantized_weights.h): the fused and the
// panel products against dequantise-then-matmul, and a converted FP8 checkpoint loaded keeping
// FP8 against the same checkpoint dequantised at load: prefill, decode, MTP and generation.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "decode_trace.h"
#include "kernels/fp8.h"
#include "kernels/gemv.h"
#include "kernels/ops.h"
#include "model/convert.h"
#include "model/model.h"
#include "model/quantized_weights.h"
#include "serve/generate.h"

namespace seekr {
namespace {

namespace fs = std::filesystem;

// max |a - b| / max |b|: the products differ only in summation order, so the error is relative
// to the size of the outputs, not of each (possibly cancelling) element.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

std::vector<float> normal(size_t n, uint64_t seed, double sd) {
  Rng rng(seed);
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(rng.normal() * sd);
  return x;
}

// A weight [rows, cols] quantised as the converter does, and its dequantised FP32 form.
struct QuantizedWeight {
  Fp8Matrix q;
  std::vector<float> f32;  // [rows, cols]
};
QuantizedWeight quantized(int rows, int cols, uint64_t seed) {
  QuantizedWeight w;
  const std::vector<float> x = normal(size_t(rows) * cols, seed, 0.5);
  const Fp8ScaleShape ss = fp8_scale_shape(Fp8Tiling::k128x128, rows, cols);
  w.q = {std::vector<uint8_t>(x.size()), std::vector<float>(size_t(ss.rows) * ss.cols), rows, cols};
  fp8_quantize(x.data(), w.q.codes.data(), w.q.scale_inv.data(), rows, cols, Fp8Tiling::k128x128);
  w.f32.resize(x.size());
  fp8_dequantize(w.q.codes.data(), w.q.scale_inv.data(), w.f32.data(), rows, cols,
                 Fp8Tiling::k128x128);
  return w;
}

// 133 rows: a partial 4-row tile and a partial 128-row block; 203 columns: a partial 128-column
// block whose length (75) is not a multiple of 8, so the scalar tail runs too.
TEST(Fp8Linear, MatchesDequantizedProductForFewAndManyRows) {
  const int rows = 133, cols = 203;
  const QuantizedWeight w = quantized(rows, cols, 1);
  for (int n : {1, 2, 3, 4, 9}) {
    for (float beta : {0.0f, 1.0f}) {
      const std::vector<float> x = normal(size_t(n) * cols, 2 + n, 1.0);
      std::vector<float> want = normal(size_t(n) * rows, 3, 1.0), got = want;
      matmul_xwt(x.data(), w.f32.data(), want.data(), n, cols, rows, beta);
      fp8_linear(x.data(), cols, w.q, got.data(), rows, n, beta);
      EXPECT_LT(rel_err(got, want), 1e-6) << "n=" << n << " beta=" << beta;
    }
  }
}

// A verify pass (2-3 rows) must equal 1-row decode steps bit for bit, as the FP32 path does, so
// speculative decoding reproduces greedy decoding.
TEST(Fp8Linear, FewRowsEqualSingleRowsBitForBit) {
  const int rows = 130, cols = 256;
  const QuantizedWeight w = quantized(rows, cols, 4);
  const std::vector<float> x = normal(size_t(3) * cols, 5, 1.0);
  for (int n : {2, 3}) {
    std::vector<float> many(size_t(n) * rows), one(rows);
    fp8_linear(x.data(), cols, w.q, many.data(), rows, n);
    for (int i = 0; i < n; ++i) {
      fp8_linear(x.data() + size_t(i) * cols, cols, w.q, one.data(), rows, 1);
      EXPECT_EQ(std::memcmp(one.data(), many.data() + size_t(i) * rows, rows * sizeof(float)), 0)
          << "n=" << n << " row " << i;
    }
  }
}

// The fast decode path's forms: any split of the output rows (ranges not at multiples of the
// 4-row tiles either) gives fp8_linear's bits, and the SwiGLU form is the lane-wise activation
// of the two products.
TEST(Fp8Linear, RowRangesAndSwigluEqualTheWholeProducts) {
  const int rows = 133, cols = 203;
  const QuantizedWeight gate = quantized(rows, cols, 7), up = quantized(rows, cols, 8);
  for (int n : {1, 2, 3}) {
    const std::vector<float> x = normal(size_t(n) * cols, 9 + n, 1.0);
    for (float beta : {0.0f, 1.0f}) {
      std::vector<float> want = normal(size_t(n) * rows, 3, 1.0), got = want;
      fp8_linear(x.data(), cols, gate.q, want.data(), rows, n, beta);
      for (int j = 0; j < rows; j += 7)
        fp8_gemv_rows(x.data(), cols, gate.q, j, std::min(rows, j + 7), got.data(), rows, n, beta);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << "n=" << n << " beta=" << beta;
    }
    std::vector<float> g(size_t(n) * rows), u(g.size()), want(g.size()), got(g.size(), NAN);
    fp8_linear(x.data(), cols, gate.q, g.data(), rows, n);
    fp8_linear(x.data(), cols, up.q, u.data(), rows, n);
    for (size_t k = 0; k < g.size(); k += 8)
      swiglu_lanes(&g[k], &u[k], &want[k], int(std::min<size_t>(8, g.size() - k)));
    // Lanes are per element, so 8-wide groups across row ends give the same values.
    for (int j = 0; j < rows; j += 37)
      fp8_gemv_swiglu(x.data(), cols, gate.q, up.q, j, std::min(rows, j + 37), got.data(), rows, n);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "n=" << n;
  }
}

TEST(Fp8Linear, NanCodesPropagate) {
  QuantizedWeight w = quantized(8, 16, 6);
  w.q.codes[3 * 16 + 5] = 0x7F;  // E4M3 NaN in row 3 (SIMD part)
  const std::vector<float> x(16, 1.0f);
  std::vector<float> y(8);
  fp8_linear(x.data(), 16, w.q, y.data(), 8, 1);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(std::isnan(y[r]), r == 3) << r;
}

TEST(Fp8WeightMode, ParsesAndNames) {
  EXPECT_EQ(parse_fp8_weight_mode("keep"), Fp8WeightMode::kKeep);
  EXPECT_EQ(parse_fp8_weight_mode("dequantize"), Fp8WeightMode::kDequantize);
  EXPECT_STREQ(fp8_weight_mode_name(Fp8WeightMode::kKeep), "keep");
  EXPECT_THROW(parse_fp8_weight_mode("fp8"), Error);
}

// hidden 272 = 2·128 + 16 and intermediate 150 = 128 + 22 give partial 128-blocks whose
// lengths exercise the 16-wide SIMD loop and the scalar tail; q_b_proj's 20 input columns too.
// Layer 0 is dense, layer 1 MoE with a shared expert, and the MTP module's eh_proj is FP8.
std::string config_json() {
  const nlohmann::json c = {{"architectures", {"DeepseekV3ForCausalLM"}},
                            {"model_type", "deepseek_v3"},
                            {"vocab_size", 53},
                            {"hidden_size", 272},
                            {"intermediate_size", 150},
                            {"moe_intermediate_size", 40},
                            {"num_hidden_layers", 2},
                            {"first_k_dense_replace", 1},
                            {"moe_layer_freq", 1},
                            {"num_attention_heads", 2},
                            {"q_lora_rank", 20},
                            {"kv_lora_rank", 16},
                            {"qk_nope_head_dim", 8},
                            {"qk_rope_head_dim", 4},
                            {"v_head_dim", 8},
                            {"n_routed_experts", 6},
                            {"n_shared_experts", 1},
                            {"num_experts_per_tok", 2},
                            {"n_group", 2},
                            {"topk_group", 1},
                            {"topk_method", "noaux_tc"},
                            {"scoring_func", "sigmoid"},
                            {"norm_topk_prob", true},
                            {"routed_scaling_factor", 2.5},
                            {"num_nextn_predict_layers", 1},
                            {"rms_norm_eps", 1e-6},
                            {"rope_theta", 10000},
                            {"max_position_embeddings", 64},
                            {"initializer_range", 0.3},
                            {"eos_token_id", -1},
                            {"torch_dtype", "float32"}};
  return c.dump();
}

// One random model written as F32, converted to FP8, and loaded both ways.
class Fp8Inference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::temp_directory_path() / "seekr_fp8_inference_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = new std::string(tmpl);
    Model m(ModelConfig::from_json_text(config_json(), "test config"));
    m.init_weights(11);
    make_dirs(*dir_ + "/f32");
    write_file_atomic(*dir_ + "/f32/config.json", config_json());
    SafetensorsWriter w;
    m.add_to(w);
    w.write(*dir_ + "/f32/model.safetensors");
    ConvertOptions opt;
    opt.dtype = CheckpointDType::kFP8;
    convert_checkpoint(*dir_ + "/f32", *dir_ + "/fp8", opt);
    InferenceLoadOptions keep, deq;
    keep.fp8_weights = Fp8WeightMode::kKeep;
    deq.fp8_weights = Fp8WeightMode::kDequantize;
    kept_ = new InferenceModel(load_inference_model(*dir_ + "/fp8", keep));
    deq_ = new InferenceModel(load_inference_model(*dir_ + "/fp8", deq));
  }
  static void TearDownTestSuite() {
    delete kept_;
    delete deq_;
    fs::remove_all(*dir_);
    delete dir_;
  }
  static const Model& kept() { return *kept_->model; }
  static const Model& deq() { return *deq_->model; }

  static std::string* dir_;
  static InferenceModel* kept_;
  static InferenceModel* deq_;
};
std::string* Fp8Inference::dir_ = nullptr;
InferenceModel* Fp8Inference::kept_ = nullptr;
InferenceModel* Fp8Inference::deq_ = nullptr;

TEST_F(Fp8Inference, KeepsLinearWeightsFp8AtAQuarterOfTheirSize) {
  ASSERT_TRUE(kept_->mtp_weights);
  EXPECT_EQ(deq().fp8_weights(), nullptr);
  const Fp8LinearWeights* fp8 = kept().fp8_weights();
  ASSERT_NE(fp8, nullptr);
  size_t expected = 0;
  const auto& specs = kept().layout().specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string& name = specs[i].name;
    const float* slot = kept().params().data() + kept().layout().offsets()[i];
    const bool kv_b = name.ends_with(".kv_b_proj.weight");
    const bool keeps = specs[i].kind == TensorKind::kParam && is_fp8_linear_name(name) && !kv_b;
    expected += keeps;
    EXPECT_EQ(fp8->find(slot) != nullptr, keeps) << name;
    // kv_b_proj (dequantised at load) and every non-Linear tensor are the same FP32 values.
    if (!keeps && specs[i].kind == TensorKind::kParam) {
      const float* other = deq().params().data() + deq().layout().offsets()[i];
      EXPECT_EQ(std::memcmp(slot, other, size_t(specs[i].numel()) * sizeof(float)), 0) << name;
    }
  }
  EXPECT_EQ(fp8->size(), expected);
  // Codes are 1 byte of 4; the block scales add 4 bytes per 128×128 block (more, relatively,
  // for these tiny partial blocks than for real ones).
  const double ratio = double(fp8->bytes()) / double(fp8->f32_bytes());
  std::printf("[fp8 kept: %zu weights, %zu bytes vs %zu as FP32, ratio %.4f]\n", fp8->size(),
              fp8->bytes(), fp8->f32_bytes(), ratio);
  EXPECT_GT(ratio, 0.25);
  EXPECT_LT(ratio, 0.26);
}

TEST_F(Fp8Inference, PrefillDecodeAndMtpMatchTheDequantizedModel) {
  const std::vector<int32_t> prompt = {3, 17, 5, 36, 0, 52, 9};  // 7 rows: the panel path
  const int n = static_cast<int>(prompt.size()), V = kept().config().vocab_size;
  const int d = kept().config().hidden_size;
  double worst = 0;  // reported, so the margin under the bound is visible
  const auto err = [&](const std::vector<float>& a, const std::vector<float>& b) {
    const double e = rel_err(a, b);
    worst = std::max(worst, e);
    return e;
  };
  for (AttentionMode mode : {AttentionMode::kAbsorbed, AttentionMode::kNaive}) {
    InferenceSession a(kept(), 1, 32, mode), b(deq(), 1, 32, mode);
    std::vector<int32_t> slots(n, 0), pos(n);
    for (int i = 0; i < n; ++i) pos[i] = i;
    std::vector<float> la(size_t(n) * V), lb(la.size()), ha(size_t(n) * d), hb(ha.size());
    a.forward(prompt.data(), slots.data(), pos.data(), n, la.data(), nullptr, ha.data());
    b.forward(prompt.data(), slots.data(), pos.data(), n, lb.data(), nullptr, hb.data());
    EXPECT_LT(err(la, lb), 1e-5) << "prefill";
    // The MTP module over the prompt (eh_proj and its block's Linear weights are FP8 too).
    std::vector<float> ma(size_t(n - 1) * V), mb(ma.size());
    a.mtp_forward(ha.data(), prompt.data() + 1, slots.data(), pos.data(), n - 1, ma.data());
    b.mtp_forward(hb.data(), prompt.data() + 1, slots.data(), pos.data(), n - 1, mb.data());
    EXPECT_LT(err(ma, mb), 1e-5) << "mtp prefill";
    // Decode steps (1 row: the fused kernel), each feeding the dequantised model's argmax.
    std::vector<float> da(V), db(V), hda(d), hdb(d);
    int32_t tok = prompt.back();
    for (int step = 0; step < 6; ++step) {
      const int32_t p = n + step, slot = 0;
      a.forward(&tok, &slot, &p, 1, da.data(), nullptr, hda.data());
      b.forward(&tok, &slot, &p, 1, db.data(), nullptr, hdb.data());
      EXPECT_LT(err(da, db), 1e-5) << "decode step " << step;
      tok = static_cast<int32_t>(std::max_element(db.begin(), db.end()) - db.begin());
      if (step == 0) {
        // The MTP row of the last prompt position joins its hidden state with this token.
        const int32_t mp = n - 1;
        a.mtp_forward(ha.data() + size_t(n - 1) * d, &tok, &slot, &mp, 1, da.data());
        b.mtp_forward(hb.data() + size_t(n - 1) * d, &tok, &slot, &mp, 1, db.data());
        EXPECT_LT(err(da, db), 1e-5) << "mtp decode";
      }
    }
  }
  std::printf("[worst relative logit difference, FP8-kept vs dequantised: %.2e]\n", worst);
}

// The FP8-kept weights on the fast decode path: steps of 1, 2 and 3 rows (decode, verify
// passes) and the MTP module give the same bits at 1, 2 and 3 threads.
TEST_F(Fp8Inference, DecodeIsExactForAnyThreadCount) {
  const std::vector<int32_t> prompt = {3, 17, 5, 36, 0};
  const std::vector<float> one = decode_trace(kept(), prompt, 1);
  for (int threads : {2, 3}) {
    const std::vector<float> many = decode_trace(kept(), prompt, threads);
    ASSERT_EQ(one.size(), many.size());
    EXPECT_EQ(std::memcmp(one.data(), many.data(), sizeof(float) * one.size()), 0)
        << threads << " threads";
  }
}

TEST_F(Fp8Inference, GreedyGenerationGivesTheSameTokens) {
  GenerationRequest r;
  r.prompt = {4, 8, 15, 16, 23};
  r.max_new_tokens = 20;
  r.sampling.temperature = 0.0f;
  for (Speculation spec : {Speculation::kNone, Speculation::kMtp}) {
    GenerateOptions opt;
    opt.speculation = spec;
    const GenerationOutput a = generate(kept(), {r}, opt);
    const GenerationOutput b = generate(deq(), {r}, opt);
    ASSERT_EQ(a.results.size(), 1u);
    EXPECT_EQ(a.results[0].tokens.size(), 20u);
    EXPECT_EQ(a.results[0].tokens, b.results[0].tokens) << "speculation " << int(spec);
  }
}

// Keeping FP8 asks nothing of an F32 checkpoint: it loads as before, bit for bit.
TEST_F(Fp8Inference, KeepOnAnF32CheckpointIsThePlainLoad) {
  InferenceLoadOptions keep;
  keep.fp8_weights = Fp8WeightMode::kKeep;
  const InferenceModel f32 = load_inference_model(*dir_ + "/f32", keep);
  EXPECT_EQ(f32.model->fp8_weights(), nullptr);
  const InferenceModel plain = load_inference_model(*dir_ + "/f32");
  EXPECT_EQ(f32.model->params(), plain.model->params());
}

}  // namespace
}  // namespace seekr
