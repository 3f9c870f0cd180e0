// Optimizer, schedule, metrics, checkpoints and the pretraining loop.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "core/dtype.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/pretrain.h"
#include "train/schedule.h"

namespace seekr {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = (fs::temp_directory_path() /
             (std::string("seekr_train_") + info->name() + "_" + std::to_string(::getpid())))
                .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Two tensors with padding between and after them, as the model layout pads to 16 floats:
// a [2, 3] matrix (decayed) at 0 and a [4] vector (not decayed) at 8; block size 16.
std::vector<ParamSegment> two_segments() {
  return {{"w", {2, 3}, 0, 6, true}, {"b", {4}, 8, 4, false}};
}

// ---- AdamW ---------------------------------------------------------------------------------

// torch 1.13: torch.optim.AdamW([{w, wd 0.1}, {b, wd 0}], betas (0.9, 0.95), eps 1e-8), three
// steps at lr 1e-2, 5e-3, 2e-2 with the gradients below (float32; script in the commit log of
// this test: see AdamWMatchesTorch's values printed with %.9g).
TEST(AdamW, MatchesTorchOverThreeSteps) {
  AdamW opt(two_segments(), 16, AdamWConfig{});
  std::vector<float> p(16, 0.0f), g(16, 0.0f);
  const float w0[6] = {0.5f, -1.0f, 0.25f, 2.0f, -0.125f, 0.0f};
  const float b0[4] = {1.0f, -2.0f, 0.75f, 0.0f};
  std::copy(w0, w0 + 6, p.begin());
  std::copy(b0, b0 + 4, p.begin() + 8);
  p[6] = 7.0f;  // padding: must stay as it is
  p[15] = -3.0f;
  const float gw[3][6] = {{0.1f, -0.2f, 0.3f, -0.4f, 0.5f, 0.0f},
                          {1.5f, 0.25f, -0.75f, 0.0f, 2.0f, -1.0f},
                          {-0.3f, 0.6f, 0.9f, 0.2f, -0.1f, 0.05f}};
  const float gb[3][4] = {
      {0.01f, -0.02f, 0.5f, 0.0f}, {-1.0f, 0.3f, 0.2f, 0.0f}, {0.7f, -0.6f, 0.0f, 1e-3f}};
  const double lrs[3] = {1e-2, 5e-3, 2e-2};
  for (int s = 0; s < 3; ++s) {
    std::copy(gw[s], gw[s] + 6, g.begin());
    std::copy(gb[s], gb[s] + 4, g.begin() + 8);
    g[6] = 100.0f;  // gradients in the padding are ignored too
    opt.step(p.data(), g.data(), lrs[s]);
  }
  EXPECT_EQ(opt.steps(), 3);
  const float want_w[6] = {0.474970967f, -0.999583125f, 0.236452088f,
                           2.0099678f,   -0.151963666f, 0.0145232035f};
  const float want_b[4] = {0.995634794f, -1.98698461f, 0.721264064f, -0.0124642504f};
  const float want_m[6] = {0.113100007f,   0.0663000047f, 0.0468000025f,
                           -0.0124000004f, 0.210499987f,  -0.0849999934f};
  const float want_v[6] = {0.111826248f,   0.022773752f, 0.0712799951f,
                           0.00922000036f, 0.201781243f, 0.0476249978f};
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(p[i], want_w[i], 2e-7 * (1 + std::fabs(want_w[i]))) << "w[" << i << "]";
    // torch rounds m·β1 before adding; a fused multiply-add here may differ by an ulp.
    EXPECT_NEAR(opt.exp_avg()[i], want_m[i], 2.5e-7 * std::fabs(want_m[i]) + 1e-9) << i;
    EXPECT_NEAR(opt.exp_avg_sq()[i], want_v[i], 2.5e-7 * std::fabs(want_v[i]) + 1e-9) << i;
  }
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(p[8 + i], want_b[i], 2e-7 * (1 + std::fabs(want_b[i]))) << "b[" << i << "]";
  EXPECT_EQ(p[6], 7.0f);
  EXPECT_EQ(p[15], -3.0f);
  EXPECT_EQ(opt.exp_avg()[6], 0.0f);
}

TEST(AdamW, FirstStepByHand) {
  // Step 1: m̂ = g and v̂ = g², so the update is lr·g/(|g| + eps) ≈ lr·sign(g), after the
  // decoupled decay p·(1 − lr·wd) on decayed tensors only.
  AdamWConfig cfg;
  cfg.weight_decay = 0.5;
  AdamW opt(two_segments(), 16, cfg);
  std::vector<float> p(16, 1.0f), g(16, 0.0f);
  for (int i = 0; i < 6; ++i) g[i] = (i % 2 ? -1.0f : 1.0f) * 0.25f;
  for (int i = 8; i < 12; ++i) g[i] = (i % 2 ? -1.0f : 1.0f) * 4.0f;
  const double lr = 0.1;
  opt.step(p.data(), g.data(), lr);
  for (int i = 0; i < 6; ++i) {
    const double sign = i % 2 ? -1.0 : 1.0;
    EXPECT_NEAR(p[i], 1.0 * (1 - lr * 0.5) - lr * sign * 0.25 / (0.25 + 1e-8), 1e-6) << i;
    EXPECT_NEAR(opt.exp_avg()[i], 0.1 * g[i], 1e-8);
    EXPECT_NEAR(opt.exp_avg_sq()[i], 0.05 * g[i] * g[i], 1e-9);
  }
  for (int i = 8; i < 12; ++i) {
    const double sign = i % 2 ? -1.0 : 1.0;
    EXPECT_NEAR(p[i], 1.0 - lr * sign, 1e-6) << i;  // no decay on this segment
  }
}

TEST(AdamW, Bf16MomentsRoundEveryUpdate) {
  // The BF16 variant must be the FP32 update with both moments rounded to BF16 (RNE) after
  // every step: replay that by hand on one element per segment and compare bit for bit.
  AdamWConfig cfg;
  cfg.bf16_moments = true;
  AdamW opt(two_segments(), 16, cfg);
  EXPECT_DEATH(opt.exp_avg(), "FP32 moments");
  Rng rng(7);
  std::vector<float> p(16), g(16);
  for (auto& x : p) x = static_cast<float>(rng.uniform() - 0.5);
  std::vector<float> want_p = p;
  std::vector<float> m(16, 0.0f), v(16, 0.0f);
  const double lr = 3e-3;
  for (int step = 1; step <= 20; ++step) {
    for (auto& x : g) x = static_cast<float>(rng.uniform() - 0.5) * 0.01f;
    opt.step(p.data(), g.data(), lr);
    const double bc1 = 1.0 - std::pow(0.9, step), bc2 = 1.0 - std::pow(0.95, step);
    for (int i : {0, 5, 8, 11}) {
      const float mul = i < 6 ? static_cast<float>(1.0 - lr * cfg.weight_decay) : 1.0f;
      const float mi = m[i] * 0.9f + static_cast<float>(1.0 - 0.9) * g[i];
      const float vi = v[i] * 0.95f + static_cast<float>(1.0 - 0.95) * g[i] * g[i];
      const float denom = std::sqrt(vi) / static_cast<float>(std::sqrt(bc2)) + 1e-8f;
      want_p[i] = want_p[i] * mul + static_cast<float>(-(lr / bc1)) * (mi / denom);
      m[i] = bf16_to_f32(f32_to_bf16(mi));
      v[i] = bf16_to_f32(f32_to_bf16(vi));
      ASSERT_EQ(opt.exp_avg_at(i), m[i]) << "step " << step << " i " << i;
      ASSERT_EQ(opt.exp_avg_sq_at(i), v[i]) << "step " << step << " i " << i;
      ASSERT_NEAR(p[i], want_p[i], 1e-7f * (1 + std::fabs(want_p[i]))) << step << " " << i;
    }
  }
  // Saved as BF16 tensors; an FP32-moment optimizer restores them exactly (BF16 widens
  // exactly), and a BF16 one restores them bit for bit.
  auto dir = fs::temp_directory_path() / ("seekr_bf16_moments_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "opt.safetensors").string();
  {
    SafetensorsWriter w;
    opt.add_to(w);
    w.write(path);
  }
  const TensorSource src = TensorSource::open(path);
  EXPECT_EQ(src.find("exp_avg.w")->dtype, DType::BF16);
  AdamW f32(two_segments(), 16, AdamWConfig{});
  f32.load(src);
  AdamW bf(two_segments(), 16, cfg);
  bf.load(src);
  for (int i : {0, 1, 2, 3, 4, 5, 8, 9, 10, 11}) {
    EXPECT_EQ(f32.exp_avg()[i], opt.exp_avg_at(i));
    EXPECT_EQ(bf.exp_avg_sq_at(i), opt.exp_avg_sq_at(i));
  }
  EXPECT_EQ(bf.steps(), 20);
  fs::remove_all(dir);
}

TEST(AdamW, AgreesWithDoubleFormulaOverManySteps) {
  const AdamWConfig cfg;
  std::vector<ParamSegment> segs = {{"a", {37}, 0, 37, true}, {"c", {5, 7}, 48, 35, false}};
  const size_t total = 96;
  AdamW opt(segs, total, cfg);
  Rng rng(7);
  std::vector<float> p(total), g(total);
  std::vector<double> pd(total), md(total, 0), vd(total, 0);
  for (size_t i = 0; i < total; ++i) pd[i] = p[i] = static_cast<float>(rng.normal());
  for (int t = 1; t <= 20; ++t) {
    const double lr = 1e-2 * (1 + 0.1 * t);
    for (size_t i = 0; i < total; ++i) g[i] = static_cast<float>(rng.normal() * 0.1 * t);
    opt.step(p.data(), g.data(), lr);
    for (const auto& s : segs)
      for (size_t i = s.offset; i < s.offset + s.numel; ++i) {
        if (s.decay) pd[i] *= 1 - lr * cfg.weight_decay;
        md[i] = cfg.beta1 * md[i] + (1 - cfg.beta1) * g[i];
        vd[i] = cfg.beta2 * vd[i] + (1 - cfg.beta2) * double(g[i]) * g[i];
        const double mh = md[i] / (1 - std::pow(cfg.beta1, t));
        const double vh = vd[i] / (1 - std::pow(cfg.beta2, t));
        pd[i] -= lr * mh / (std::sqrt(vh) + cfg.eps);
      }
  }
  for (const auto& s : segs)
    for (size_t i = s.offset; i < s.offset + s.numel; ++i)
      EXPECT_NEAR(p[i], pd[i], 2e-5 * (1 + std::fabs(pd[i]))) << s.name << " " << i;
}

TEST(AdamW, ZeroGradientOnlyDecays) {
  AdamWConfig cfg;
  cfg.weight_decay = 0.1;
  AdamW opt(two_segments(), 16, cfg);
  std::vector<float> p(16, 2.0f), g(16, 0.0f);
  opt.step(p.data(), g.data(), 0.5);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(p[i], 2.0f * static_cast<float>(1 - 0.5 * 0.1));
  for (int i = 8; i < 12; ++i) EXPECT_EQ(p[i], 2.0f);
}

TEST(AdamW, SegmentsOfModelLayoutFollowSpecs) {
  ModelConfig c = ModelConfig::from_file(SEEKR_SHARED_DIR "/bench-configs/tiny.json");
  const ModelLayout layout(c);
  const auto segs = param_segments(layout);
  size_t params = 0, decayed = 0;
  for (size_t i = 0; i < layout.specs().size(); ++i)
    if (layout.specs()[i].kind == TensorKind::kParam) ++params;
  ASSERT_EQ(segs.size(), params);
  for (const auto& s : segs) {
    const int i = layout.find(s.name);
    ASSERT_GE(i, 0) << s.name;
    EXPECT_EQ(s.decay, layout.specs()[i].weight_decay) << s.name;
    EXPECT_EQ(s.offset, layout.offsets()[i]);
    decayed += s.decay;
    if (s.shape.size() < 2) {
      EXPECT_FALSE(s.decay) << s.name << ": norms never decay";
    }
  }
  EXPECT_GT(decayed, 0u);
  EXPECT_LT(decayed, segs.size());
}

// ---- clipping ------------------------------------------------------------------------------

TEST(Clip, MatchesTorchClipGradNorm) {
  // torch.nn.utils.clip_grad_norm_([p1, p2], 1.0) with grads [3, 4] and [12]: norm 13,
  // grads become [0.23076921701431274, 0.307692289352417], [0.923076868057251].
  std::vector<float> g = {3.0f, 4.0f, 12.0f};
  const double norm = clip_grad_norm(g.data(), g.size(), 1.0);
  EXPECT_DOUBLE_EQ(norm, 13.0);
  EXPECT_FLOAT_EQ(g[0], 0.23076921701431274f);
  EXPECT_FLOAT_EQ(g[1], 0.307692289352417f);
  EXPECT_FLOAT_EQ(g[2], 0.923076868057251f);
  EXPECT_NEAR(std::sqrt(sum_of_squares(g.data(), 3)), 1.0 * 13 / (13 + 1e-6), 1e-6);
}

TEST(Clip, BelowTheLimitLeavesGradientsAlone) {
  std::vector<float> g = {0.3f, -0.4f};
  EXPECT_NEAR(clip_grad_norm(g.data(), 2, 1.0), 0.5, 1e-7);
  EXPECT_EQ(g[0], 0.3f);
  EXPECT_EQ(g[1], -0.4f);
}

TEST(Clip, NormDoesNotDependOnThreadCount) {
  Rng rng(3);
  std::vector<float> g(300001);
  for (auto& x : g) x = static_cast<float>(rng.normal());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = sum_of_squares(g.data(), g.size());
  omp_set_num_threads(3);
  const double three = sum_of_squares(g.data(), g.size());
  omp_set_num_threads(saved);
  EXPECT_EQ(one, three);
  double ref = 0;
  for (float x : g) ref += double(x) * x;
  EXPECT_NEAR(one, ref, 1e-9 * ref);
}

// ---- schedules -----------------------------------------------------------------------------

TEST(Schedule, CosineWarmupThenDecay) {
  LrSchedule s;
  s.kind = ScheduleKind::kCosine;
  s.peak_lr = 1e-3;
  s.min_lr = 1e-4;
  s.warmup_steps = 10;
  s.total_steps = 101;
  s.validate();
  EXPECT_DOUBLE_EQ(s.lr(0), 1e-4);  // warmup start: peak/W, not zero
  EXPECT_DOUBLE_EQ(s.lr(4), 5e-4);
  EXPECT_DOUBLE_EQ(s.lr(9), 1e-3);      // warmup end reaches the peak
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);     // cosine starts at the peak
  EXPECT_DOUBLE_EQ(s.lr(55), 5.5e-4);   // halfway: (peak + min)/2
  EXPECT_NEAR(s.lr(100), 1e-4, 1e-18);  // last step at min_lr
  EXPECT_NEAR(s.lr(200), 1e-4, 1e-18);  // beyond: stays there
  for (int64_t t = 10; t < 100; ++t) EXPECT_GT(s.lr(t), s.lr(t + 1)) << t;
}

TEST(Schedule, WsdPhases) {
  LrSchedule s;
  s.kind = ScheduleKind::kWsd;
  s.peak_lr = 2e-3;
  s.min_lr = 0.0;
  s.warmup_steps = 5;
  s.total_steps = 100;
  s.decay_fraction = 0.2;
  s.validate();
  EXPECT_EQ(s.decay_start(), 80);
  EXPECT_DOUBLE_EQ(s.lr(0), 4e-4);
  EXPECT_DOUBLE_EQ(s.lr(4), 2e-3);
  EXPECT_DOUBLE_EQ(s.lr(5), 2e-3);   // stable
  EXPECT_DOUBLE_EQ(s.lr(79), 2e-3);  // last stable step
  EXPECT_DOUBLE_EQ(s.lr(80), 2e-3 * 19 / 20);
  EXPECT_DOUBLE_EQ(s.lr(89), 2e-3 * 10 / 20);
  EXPECT_DOUBLE_EQ(s.lr(99), 0.0);
}

TEST(Schedule, JsonRoundTripAndErrors) {
  LrSchedule s;
  s.kind = ScheduleKind::kWsd;
  s.peak_lr = 3e-4;
  s.min_lr = 1e-5;
  s.warmup_steps = 7;
  s.total_steps = 70;
  s.decay_fraction = 0.3;
  const LrSchedule r = LrSchedule::from_json(s.to_json());
  for (int64_t t = 0; t < 70; ++t) EXPECT_EQ(r.lr(t), s.lr(t));
  EXPECT_THROW(parse_schedule_kind("linear"), Error);
  s.min_lr = 1.0;
  EXPECT_THROW(s.validate(), Error);
}

// ---- metrics -------------------------------------------------------------------------------

TEST(Metrics, MaxViolation) {
  const std::vector<std::vector<int64_t>> load = {{}, {10, 10, 10, 10}, {40, 0, 0, 0}, {0, 0}};
  const LoadBalance b = max_violation(load);
  ASSERT_EQ(b.layers, (std::vector<int>{1, 2, 3}));
  EXPECT_DOUBLE_EQ(b.max_vio[0], 0.0);
  EXPECT_DOUBLE_EQ(b.max_vio[1], 3.0);  // 40 / mean 10 − 1
  EXPECT_DOUBLE_EQ(b.max_vio[2], 0.0);  // nothing routed
  EXPECT_DOUBLE_EQ(b.mean_max_vio, 1.0);
}

TEST(Metrics, FlopsPerTokenDenseAndMoe) {
  ModelConfig c = ModelConfig::from_file(SEEKR_SHARED_DIR "/bench-configs/tiny.json");
  const int T = 64;
  const double d = c.hidden_size, V = c.vocab_size;
  const int L = c.num_hidden_layers, D = c.num_nextn_predict_layers;
  const double attn = 6.0 * (L + D) * T * c.num_attention_heads * (48 + 32);
  // tiny: layers 1..3 and the MTP layer are MoE, 16 experts of which 4 active.
  int moe = 0;
  for (int l = 0; l < L + D; ++l) moe += c.is_moe_layer(l);
  EXPECT_EQ(moe, 4);
  const double inactive = moe * 3.0 * d * c.moe_intermediate_size * (16 - 4);
  EXPECT_DOUBLE_EQ(train_flops_per_token(c, T),
                   6.0 * (double(c.num_parameters()) - inactive - V * d + D * V * d) + attn);
  c.tie_word_embeddings = true;  // a tied table is the head: it stays counted
  EXPECT_DOUBLE_EQ(train_flops_per_token(c, T),
                   6.0 * (double(c.num_parameters()) - inactive + D * V * d) + attn);
}

TEST(Metrics, DurationsAndProgressLine) {
  EXPECT_EQ(format_duration(12.4), "12s");
  EXPECT_EQ(format_duration(245), "4m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  StepMetrics m;
  m.step = 3;
  m.total_steps = 10;
  m.loss = 2.5;
  m.ce = 2.25;
  m.lr = 1e-3;
  m.tokens_per_second = 1234;
  m.mfu = 0.125;
  m.eta_seconds = 65;
  m.balance_stats = max_violation({{40, 0, 0, 0}});
  const std::string line = progress_line(m);
  EXPECT_NE(line.find("step 3/10"), std::string::npos) << line;
  EXPECT_NE(line.find("loss 2.5000"), std::string::npos) << line;
  EXPECT_NE(line.find("1234 tok/s"), std::string::npos) << line;
  EXPECT_NE(line.find("MFU 12.5%"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 1m05s"), std::string::npos) << line;
  EXPECT_NE(line.find("MaxVio 3.000"), std::string::npos) << line;
  const auto j = m.to_json();
  EXPECT_EQ(j["type"], "train");
  EXPECT_EQ(j["max_vio"][0].get<double>(), 3.0);
}

TEST(Metrics, LogAppendsAndPlots) {
  TempDir dir;
  {
    MetricsLog log(dir / "m.jsonl");
    for (int s = 1; s <= 3; ++s) {
      StepMetrics m;
      m.step = s;
      m.loss = 3.0 / s;
      m.tokens_per_second = 100 * s;
      log.append(m.to_json());
    }
    log.append({{"type", "eval"}, {"step", 3}, {"valid_loss", 1.5}});
  }
  {
    MetricsLog again(dir / "m.jsonl");  // append, never truncate
    again.append({{"type", "start"}, {"step", 3}});
  }
  std::ifstream in(dir / "m.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) ++n;
  EXPECT_EQ(n, 5);
  if (!have_gnuplot()) GTEST_SKIP() << "gnuplot not installed";
  std::string why;
  const std::string out = plot_metrics(dir / "m.jsonl", dir / "loss", &why);
  ASSERT_FALSE(out.empty()) << why;
  EXPECT_GT(fs::file_size(out), 1000u);
  EXPECT_FALSE(fs::exists(dir / "loss.train.dat"));  // temporaries cleaned up
}

// ---- model-level: checkpoints, overfitting, resume ------------------------------------------

// tiny.json made smaller still, so a training step takes milliseconds.
ModelConfig small_config() {
  auto j = nlohmann::json::parse(read_file(SEEKR_SHARED_DIR "/bench-configs/tiny.json"));
  j.update({{"vocab_size", 128},
            {"hidden_size", 64},
            {"intermediate_size", 128},
            {"moe_intermediate_size", 32},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 4},
            {"kv_lora_rank", 32},
            {"qk_nope_head_dim", 16},
            {"qk_rope_head_dim", 8},
            {"v_head_dim", 16},
            {"n_routed_experts", 8},
            {"num_experts_per_tok", 2},
            {"max_position_embeddings", 64}});
  return ModelConfig::from_json_text(j.dump(), "tiny.json shrunk");
}

TEST(Checkpoint, RoundTripsParamsMomentsAndState) {
  TempDir dir;
  const ModelConfig c = small_config();
  Model model(c);
  model.init_weights(11);
  for (size_t i = 0; i < model.buffers().size(); ++i) model.buffers()[i] = 0.001f * float(i % 7);
  AdamW opt(param_segments(model.layout()), model.params().size(), AdamWConfig{});
  Rng rng(5);
  for (int s = 0; s < 2; ++s) {
    for (auto& g : model.grads()) g = static_cast<float>(rng.normal());
    opt.step(model.params().data(), model.grads().data(), 1e-3);
  }
  TrainerState st;
  st.step = 2;
  st.tokens_seen = 4096;
  st.schedule.kind = ScheduleKind::kWsd;
  st.schedule.total_steps = 50;
  st.data_state = R"({"epoch":1,"position":9})";
  st.rng = rng.state();
  st.options = {{"batch", 4}};
  std::ofstream(dir / "tok.json") << "{\"pretend\": \"tokenizer\"}";
  const std::string ck = dir / "ckpt";
  save_checkpoint(ck, model, opt, st, dir / "tok.json");
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                        "optimizer.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::exists(ck + "/" + f)) << f;
  EXPECT_EQ(read_file(ck + "/tokenizer.json"), "{\"pretend\": \"tokenizer\"}");

  // An HF user sees the standard names.
  const TensorSource src = TensorSource::open(ck);
  EXPECT_NE(src.find("model.embed_tokens.weight"), nullptr);
  EXPECT_NE(src.find("model.layers.1.mlp.gate.e_score_correction_bias"), nullptr);

  Model back(checkpoint_config(ck));
  AdamW opt2(param_segments(back.layout()), back.params().size(), AdamWConfig{});
  const TrainerState st2 = load_checkpoint(ck, back, opt2);
  EXPECT_EQ(st2.step, 2);
  EXPECT_EQ(st2.tokens_seen, 4096);
  EXPECT_EQ(st2.schedule.kind, ScheduleKind::kWsd);
  EXPECT_EQ(st2.schedule.total_steps, 50);
  EXPECT_EQ(nlohmann::json::parse(st2.data_state), nlohmann::json::parse(st.data_state));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(st2.rng.s[i], st.rng.s[i]);
  EXPECT_EQ(st2.options["batch"], 4);
  EXPECT_EQ(opt2.steps(), 2);
  for (const auto& s : opt.segments())
    for (size_t i = s.offset; i < s.offset + s.numel; ++i) {
      ASSERT_EQ(back.params()[i], model.params()[i]) << s.name;
      ASSERT_EQ(opt2.exp_avg()[i], opt.exp_avg()[i]) << s.name;
      ASSERT_EQ(opt2.exp_avg_sq()[i], opt.exp_avg_sq()[i]) << s.name;
    }
  for (size_t i = 0; i < model.layout().specs().size(); ++i) {
    const auto& spec = model.layout().specs()[i];
    if (spec.kind != TensorKind::kBuffer) continue;
    for (int64_t j = 0; j < spec.numel(); ++j)
      ASSERT_EQ(back.buffers()[model.layout().offsets()[i] + j],
                model.buffers()[model.layout().offsets()[i] + j])
          << spec.name;
  }

  // Saving again replaces the checkpoint and leaves no temporary directory behind.
  st.step = 3;
  opt.step(model.params().data(), model.grads().data(), 1e-3);
  save_checkpoint(ck, model, opt, st, "");
  EXPECT_FALSE(fs::exists(ck + "/tokenizer.json"));
  EXPECT_EQ(nlohmann::json::parse(read_file(ck + "/trainer_state.json"))["step"], 3);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) entries += e.path() != dir / "tok.json";
  EXPECT_EQ(entries, 1);

  // A mismatch between the optimizer and the trainer state is refused.
  st.step = 9;
  write_file_atomic(ck + "/trainer_state.json", st.to_json().dump());
  EXPECT_THROW(load_checkpoint(ck, back, opt2), Error);
}

std::vector<int32_t> random_tokens(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.below(vocab));
  return t;
}

TEST(Trainer, AccumulationMatchesOneBigBatch) {
  // Two micro-batches of one sequence give the same loss and gradient norm as one batch of
  // both: every loss is a mean, scaled by 1/accum.
  const ModelConfig c = small_config();
  const int T = 12;
  const auto tokens = random_tokens(2 * (T + 1), c.vocab_size, 9);
  TrainHyper hp;
  hp.bias_gamma = 0;
  double loss[2], ce[2], mtp[2], bal[2], norm[2];
  for (int mode = 0; mode < 2; ++mode) {
    Model model(c);
    model.init_weights(1);
    Trainer tr(model, hp);
    StepResult r;
    if (mode == 0) {
      const int32_t* one[] = {tokens.data()};
      r = tr.step(one, 2, T, 1e-3);
    } else {
      const int32_t* two[] = {tokens.data(), tokens.data() + T + 1};
      r = tr.step(two, 1, T, 1e-3);
    }
    loss[mode] = r.loss;
    ce[mode] = r.ce;
    mtp[mode] = r.mtp;
    bal[mode] = r.balance;
    norm[mode] = r.grad_norm;
  }
  EXPECT_NEAR(ce[0], ce[1], 1e-5);
  EXPECT_NEAR(mtp[0], mtp[1], 1e-5);
  EXPECT_GT(mtp[0], 0.1);  // λ/D · CE_1 ≈ 0.3 · ln(128)
  EXPECT_NEAR(bal[0], bal[1], 1e-9);
  EXPECT_GT(bal[0], 0.0);
  EXPECT_NEAR(loss[0], ce[0] + mtp[0] + bal[0], 1e-12);
  EXPECT_NEAR(norm[0], norm[1], 1e-4 * norm[0]);
}

TEST(Trainer, OverfitsOneSmallBatch) {
  const ModelConfig c = small_config();
  const int B = 2, T = 16;
  const auto tokens = random_tokens(B * (T + 1), c.vocab_size, 21);
  Model model(c);
  model.init_weights(3);
  TrainHyper hp;
  hp.adamw.weight_decay = 0.0;
  Trainer tr(model, hp);
  const int32_t* micro[] = {tokens.data()};
  StepResult first, r;
  int steps = 0;
  for (; steps < 300; ++steps) {
    r = tr.step(micro, B, T, 3e-3);
    if (steps == 0) first = r;
    if (r.ce < 0.02) break;
  }
  EXPECT_NEAR(first.ce, std::log(double(c.vocab_size)), 0.3);
  EXPECT_LT(r.ce, 0.05) << "after " << steps << " steps";
  EXPECT_LT(r.mtp, 0.3 * 0.1);  // the MTP module memorises too
  EXPECT_NEAR(tr.eval_ce(tokens.data(), B, T), r.ce, 0.05);
}

double meta_number(const SafetensorsFile& f, const std::string& key, size_t index = 0) {
  std::stringstream list(f.metadata().at(key));
  std::string item;
  for (size_t i = 0; i <= index; ++i) std::getline(list, item, ',');
  return std::stod(item);
}

// Trainer::step against the independent PyTorch twin (tests/reference/twin.py, float64): the
// composed loss (CE + MTP with its shifted targets + balance), the gradient norm before
// clipping, and four AdamW steps with clipping and the correction-bias update.
TEST(Trainer, MatchesPytorchTwin) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with torch is not available";
  TempDir dir;
  write_file_atomic(dir / "config.json", small_config().to_json_text());
  const int steps = 4;
  const std::string cmd = "OMP_NUM_THREADS=1 /usr/bin/python3 " SEEKR_SOURCE_DIR
                          "/tests/reference/twin.py --config " +
                          dir / "config.json" + " --out " + dir / "twin" +
                          " --batch 2 --seq 12 --steps " + std::to_string(steps) + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const SafetensorsFile ref = SafetensorsFile::open(dir / "twin/reference.safetensors");
  const TensorView& tok = ref.get("tokens");
  ASSERT_EQ(tok.dtype, DType::I32);
  const int B = static_cast<int>(tok.shape[0]), T = static_cast<int>(tok.shape[1]) - 1;
  std::vector<int32_t> tokens(tok.numel());
  std::memcpy(tokens.data(), tok.data, tok.nbytes);

  Model model(ModelConfig::from_file(dir / "twin/config.json"));
  model.load(TensorSource::open(dir / "twin/model.safetensors"));
  TrainHyper hp;
  hp.mtp_lambda = meta_number(ref, "mtp_lambda");
  hp.balance_alpha = meta_number(ref, "balance_alpha");
  hp.bias_gamma = meta_number(ref, "bias_gamma");
  hp.clip = meta_number(ref, "clip_norm");
  hp.adamw.beta1 = meta_number(ref, "beta1");
  hp.adamw.beta2 = meta_number(ref, "beta2");
  hp.adamw.eps = meta_number(ref, "adam_eps");
  hp.adamw.weight_decay = meta_number(ref, "weight_decay");
  const double lr = meta_number(ref, "lr");
  Trainer tr(model, hp);
  std::vector<float> want_norm(steps);
  copy_to_f32(ref.get("adamw.grad_norm"), want_norm.data());
  const int32_t* micro[] = {tokens.data()};
  for (int s = 0; s < steps; ++s) {
    const StepResult r = tr.step(micro, B, T, lr);
    if (s == 0) {
      EXPECT_NEAR(r.ce, meta_number(ref, "ce_loss_f64"), 1e-5 * r.ce);
      EXPECT_NEAR(r.mtp, meta_number(ref, "mtp_loss_f64"), 1e-5 * r.mtp);
      EXPECT_NEAR(r.balance, meta_number(ref, "balance_loss_f64"), 1e-4 * r.balance);
    }
    const double want = meta_number(ref, "adamw.total_loss_f64", s);
    EXPECT_NEAR(r.loss, want, 1e-5 * want) << "step " << s;
    EXPECT_NEAR(r.grad_norm, want_norm[s], 1e-3 * want_norm[s]) << "step " << s;
  }
}

// Shards of random tokens for the end-to-end runs.
void write_shards(const TempDir& dir, int vocab) {
  Rng rng(17);
  for (int s = 0; s < 2; ++s) {
    ShardWriter w(dir / ("train-" + std::to_string(s) + ".bin"), vocab);
    for (int d = 0; d < 20; ++d) {
      std::vector<int32_t> doc(20 + rng.below(40));
      for (auto& x : doc) x = static_cast<int32_t>(rng.below(vocab));
      w.add_document(doc);
    }
    w.finish();
  }
  ShardWriter v(dir / "valid.bin", vocab);
  v.add_document(random_tokens(400, vocab, 99));
  v.finish();
}

PretrainOptions run_options(const TempDir& dir, const std::string& out) {
  write_file_atomic(dir / "config.json", small_config().to_json_text());
  PretrainOptions o;
  o.config_path = dir / "config.json";
  o.train_shards = expand_glob(dir / "train-*.bin");
  o.valid_shards = {dir / "valid.bin"};
  o.out_dir = out;
  o.steps = 6;
  o.batch = 2;
  o.seq = 16;
  o.accum = 2;
  o.schedule.peak_lr = 2e-3;
  o.schedule.min_lr = 2e-4;
  o.schedule.warmup_steps = 2;
  o.eval_every = 2;
  o.eval_batches = 2;
  o.seed = 42;
  o.progress = false;
  o.plot = false;
  return o;
}

TEST(Pretrain, ResumeIsBitExact) {
  TempDir dir;
  write_shards(dir, small_config().vocab_size);
  ASSERT_EQ(expand_glob(dir / "train-*.bin").size(), 2u);

  const PretrainSummary straight = run_pretrain(run_options(dir, dir / "straight"));
  ASSERT_EQ(straight.losses.size(), 6u);
  EXPECT_EQ(straight.valid_losses.size(), 3u);

  PretrainOptions first = run_options(dir, dir / "split");
  first.stop_at = 3;
  const PretrainSummary a = run_pretrain(first);
  ASSERT_EQ(a.losses.size(), 3u);
  EXPECT_EQ(a.last_step, 3);
  const auto state = nlohmann::json::parse(read_file(dir / "split/checkpoint/trainer_state.json"));
  EXPECT_EQ(state["step"], 3);
  EXPECT_EQ(state["tokens_seen"], 3 * 2 * 16 * 2);

  // What a run killed in the middle of a save leaves behind; the next run clears it.
  fs::create_directories(dir / "split/checkpoint.tmp-abc123");
  PretrainOptions second = run_options(dir, dir / "split");
  second.resume_dir = dir / "split/checkpoint";
  const PretrainSummary b = run_pretrain(second);
  EXPECT_FALSE(fs::exists(dir / "split/checkpoint.tmp-abc123"));
  EXPECT_EQ(fs::status(dir / "split/checkpoint").permissions() & fs::perms::others_read,
            fs::perms::others_read);
  EXPECT_EQ(b.first_step, 3);
  ASSERT_EQ(b.losses.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a.losses[i], straight.losses[i]) << "step " << i + 1;
    EXPECT_EQ(b.losses[i], straight.losses[i + 3]) << "step " << i + 4;
  }
  // Same final weights, bit for bit.
  const TensorSource x = TensorSource::open(dir / "straight/checkpoint");
  const TensorSource y = TensorSource::open(dir / "split/checkpoint");
  ASSERT_EQ(x.names().size(), y.names().size());
  for (const auto& name : x.names()) {
    const TensorView& u = x.get(name);
    const TensorView& v = y.get(name);
    ASSERT_EQ(u.nbytes, v.nbytes) << name;
    EXPECT_EQ(std::memcmp(u.data, v.data, u.nbytes), 0) << name;
  }
  // The metrics log holds both halves of the split run.
  std::ifstream in(dir / "split/metrics.jsonl");
  std::string line;
  int train_records = 0;
  while (std::getline(in, line)) train_records += nlohmann::json::parse(line)["type"] == "train";
  EXPECT_EQ(train_records, 6);
  // Training lowered the loss on this small random stream.
  EXPECT_LT(straight.losses.back(), straight.losses.front());
}

TEST(Pretrain, BadOptionsAreNamed) {
  PretrainOptions o;
  o.config_path = "x.json";
  o.train_shards = {"a.bin"};
  o.out_dir = "out";
  o.seq = 1;
  try {
    o.validate();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--seq"), std::string::npos) << e.what();
  }
  o.seq = 8;
  o.schedule.warmup_steps = 5000;
  EXPECT_THROW(o.validate(), Error);
  EXPECT_THROW(expand_glob("/nonexistent-dir-for-seekr/*.bin"), Error);
}

}  // namespace
}  // namespace seekr
