// Compares the C++ model with the independent PyTorch twin (tests/reference/twin.py): logits,
// losses, every parameter gradient, expert loads, and 10 AdamW steps with the bias update.
// The dumps are produced by the CTest fixture `reference_dumps` into SEEKR_REFERENCE_DIR.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>

#include "core/check.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace seekr {
namespace {

std::vector<float> f32(const TensorView& t) {
  std::vector<float> v(t.numel());
  copy_to_f32(t, v.data());
  return v;
}

// Norm-relative error ‖a − b‖ / max(‖b‖, floor) and the max element error relative to max|b|.
struct Diff {
  double rel_l2, rel_max;
};
Diff diff(const float* a, const std::vector<float>& b) {
  double num = 0, den = 0, mx = 0, bmax = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = double(a[i]) - b[i];
    num += d * d;
    den += double(b[i]) * b[i];
    mx = std::max(mx, std::fabs(d));
    bmax = std::max(bmax, std::fabs(double(b[i])));
  }
  const double floor = 1e-12;
  return {std::sqrt(num) / std::max(std::sqrt(den), floor), mx / std::max(bmax, floor)};
}

double meta_f64(const TensorSource& ref, const std::string& key) {
  auto it = ref.metadata().find(key);
  SEEKR_REQUIRE(it != ref.metadata().end(), "reference metadata lacks ", key);
  return std::stod(it->second);
}

class Reference : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const char* root = std::getenv("SEEKR_REFERENCE_DIR");
    ASSERT_NE(root, nullptr) << "SEEKR_REFERENCE_DIR is not set: run through ctest, which "
                                "generates the twin's dumps first (fixture reference_dumps)";
    dir_ = std::string(root) + "/" + GetParam();
    ASSERT_TRUE(file_exists(dir_ + "/reference.safetensors"))
        << "missing " << dir_ << "/reference.safetensors: the PyTorch twin did not run "
        << "(needs /usr/bin/python3 with python3-torch)";
  }
  std::string dir_;
};

// Forward + loss + backward as the trainer does it; returns {total, ce, mtp, balance}.
struct Losses {
  double total, ce, mtp, balance;
};
Losses loss_and_grad(Model& model, TrainGraph& graph, const std::vector<int32_t>& tokens, int B,
                     int T, double lambda, float alpha) {
  const ModelConfig& c = model.config();
  const int V = c.vocab_size, D = c.num_nextn_predict_layers;
  std::vector<int32_t> inputs(size_t(B) * T), targets(size_t(B) * T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      inputs[b * T + t] = tokens[b * (T + 1) + t];
      targets[b * T + t] = tokens[b * (T + 1) + t + 1];
    }
  TrainOptions opt;
  opt.balance_alpha = alpha;
  graph.forward(inputs.data(), B, T, opt);
  Losses L{};
  L.ce = cross_entropy_forward_backward(graph.logits(), targets.data(), graph.logits(), B * T, V,
                                        1.0f / (B * T)) /
         (B * T);
  std::vector<float*> dmtp;
  for (int k = 1; k <= D; ++k) {
    const int Tk = T - k, rows = B * Tk;
    std::vector<int32_t> tk(rows);
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Tk; ++i) tk[b * Tk + i] = tokens[b * (T + 1) + i + k + 1];
    const double scale = lambda / D / rows;
    L.mtp += lambda / D *
             cross_entropy_forward_backward(graph.mtp_logits(k), tk.data(), graph.mtp_logits(k),
                                            rows, V, static_cast<float>(scale)) /
             rows;
    dmtp.push_back(graph.mtp_logits(k));
  }
  L.balance = graph.balance_loss();
  L.total = L.ce + L.mtp + L.balance;
  model.zero_grads();
  graph.backward(graph.logits(), dmtp);
  return L;
}

TEST_P(Reference, MatchesPyTorchTwin) {
  const ModelConfig config = ModelConfig::from_file(dir_ + "/config.json");
  Model model(config);
  model.load(TensorSource::open(dir_ + "/model.safetensors"));
  const TensorSource ref = TensorSource::open(dir_ + "/reference.safetensors");
  const TensorView& tok = ref.get("tokens");
  const int B = static_cast<int>(tok.shape[0]), T = static_cast<int>(tok.shape[1]) - 1;
  std::vector<int32_t> tokens(tok.numel());
  std::memcpy(tokens.data(), tok.data, tok.nbytes);
  const double lambda = meta_f64(ref, "mtp_lambda");
  const float alpha = static_cast<float>(meta_f64(ref, "balance_alpha"));
  const float gamma = static_cast<float>(meta_f64(ref, "bias_gamma"));
  const double lr = meta_f64(ref, "lr"), clip = meta_f64(ref, "clip_norm");
  const int steps = static_cast<int>(meta_f64(ref, "steps"));

  TrainGraph graph(model);
  // Logits before the loss overwrites them with gradients.
  {
    std::vector<int32_t> inputs(size_t(B) * T);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) inputs[b * T + t] = tokens[b * (T + 1) + t];
    TrainOptions opt;
    opt.balance_alpha = alpha;
    graph.forward(inputs.data(), B, T, opt);
    Diff d = diff(graph.logits(), f32(ref.get("logits")));
    EXPECT_LT(d.rel_max, 1e-4) << "logits rel_l2 " << d.rel_l2;
    for (int k = 1; k <= config.num_nextn_predict_layers; ++k) {
      Diff dk = diff(graph.mtp_logits(k), f32(ref.get("mtp_logits." + std::to_string(k))));
      EXPECT_LT(dk.rel_max, 1e-4) << "mtp_logits." << k;
    }
    for (size_t l = 0; l < graph.expert_load().size(); ++l) {
      if (graph.expert_load()[l].empty()) continue;
      const TensorView& lt = ref.get("expert_load." + std::to_string(l));
      std::vector<int32_t> want(lt.numel());
      std::memcpy(want.data(), lt.data, lt.nbytes);
      for (size_t e = 0; e < want.size(); ++e)
        EXPECT_EQ(graph.expert_load()[l][e], want[e]) << "layer " << l << " expert " << e;
    }
  }
  Losses L = loss_and_grad(model, graph, tokens, B, T, lambda, alpha);
  auto near_rel = [](double a, double b, double tol) {
    return std::fabs(a - b) <= tol * std::max(std::fabs(b), 1e-12);
  };
  EXPECT_PRED3(near_rel, L.ce, meta_f64(ref, "ce_loss_f64"), 1e-5);
  EXPECT_PRED3(near_rel, L.mtp, meta_f64(ref, "mtp_loss_f64"), 1e-5);
  EXPECT_PRED3(near_rel, L.balance, meta_f64(ref, "balance_loss_f64"), 1e-4);
  EXPECT_PRED3(near_rel, L.total, meta_f64(ref, "loss_f64"), 1e-5);

  // Every parameter gradient, per tensor, norm-relative.
  int compared = 0;
  double worst = 0;
  std::string worst_name;
  const auto& specs = model.layout().specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].kind != TensorKind::kParam) continue;
    const TensorView* g = ref.find("grad." + specs[i].name);
    ASSERT_NE(g, nullptr) << "reference lacks grad." << specs[i].name;
    const std::vector<float> want = f32(*g);
    double norm = 0;
    for (float x : want) norm += double(x) * x;
    if (norm == 0) {  // unused expert: ours must be exactly zero too
      const float* ours = model.grads().data() + model.layout().offsets()[i];
      for (size_t j = 0; j < want.size(); ++j) ASSERT_EQ(ours[j], 0.0f) << specs[i].name;
      continue;
    }
    Diff d = diff(model.grads().data() + model.layout().offsets()[i], want);
    EXPECT_LT(d.rel_l2, 2e-4) << "grad." << specs[i].name << " rel_max " << d.rel_max;
    if (d.rel_l2 > worst) {
      worst = d.rel_l2;
      worst_name = specs[i].name;
    }
    ++compared;
  }
  EXPECT_GT(compared, 20);
  std::printf("[reference %s] %d gradients compared; worst rel L2 %.2e (%s)\n", GetParam(),
              compared, worst, worst_name.c_str());

  // 10 AdamW steps with clipping and the bias update, as the twin ran them.
  AdamWConfig ac;
  ac.beta1 = meta_f64(ref, "beta1");
  ac.beta2 = meta_f64(ref, "beta2");
  ac.eps = meta_f64(ref, "adam_eps");
  ac.weight_decay = meta_f64(ref, "weight_decay");
  AdamW opt(param_segments(model.layout()), model.params().size(), ac);
  const std::vector<float> want_total = f32(ref.get("adamw.total_loss"));
  const std::vector<float> want_norm = f32(ref.get("adamw.grad_norm"));
  ASSERT_EQ(static_cast<int>(want_total.size()), steps);
  for (int s = 0; s < steps; ++s) {
    Losses Ls = loss_and_grad(model, graph, tokens, B, T, lambda, alpha);
    const double norm = clip_grad_norm(model.grads().data(), model.grads().size(), clip);
    EXPECT_PRED3(near_rel, Ls.total, want_total[s], 1e-4) << "step " << s;
    EXPECT_PRED3(near_rel, norm, want_norm[s], 1e-3) << "step " << s;
    opt.step(model.params().data(), model.grads().data(), lr);
    model.update_correction_bias(graph.expert_load(), gamma);
  }
  for (const std::string& name : ref.names()) {
    if (name.rfind("final.", 0) != 0) continue;
    const std::string pname = name.substr(6);
    const int idx = model.layout().find(pname);
    ASSERT_GE(idx, 0) << pname;
    const TensorSpec& s = specs[idx];
    const float* ours = (s.kind == TensorKind::kParam ? model.params() : model.buffers()).data() +
                        model.layout().offsets()[idx];
    Diff d = diff(ours, f32(ref.get(name)));
    EXPECT_LT(d.rel_l2, 1e-4) << name << " rel_max " << d.rel_max;
    EXPECT_LT(d.rel_max, 1e-3) << name << " rel_l2 " << d.rel_l2;
  }
}

INSTANTIATE_TEST_SUITE_P(Twin, Reference, ::testing::Values("tiny", "tiny_qlora_yarn_softmax"));

}  // namespace
}  // namespace seekr
