// The GRPO trainer: micro-batching gives the full-batch gradient, the on-policy ratio is 1,
// KL against the frozen reference, dynamic sampling, learning on an easy reward, determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "r1/grpo_trainer.h"
#include "tokenizer/tokenizer.h"
#include "train/optimizer.h"

namespace seekr::r1 {
namespace {

// Single-token tags keep the answer format short enough for a micro model.
rl::Tags short_tags() {
  return {"<t>", "</t>", "<a>", "</a>"};
}

const Tokenizer& micro_tokenizer() {
  static const Tokenizer tok = [] {
    std::vector<std::string> texts;
    for (int i = 0; i < 30; ++i)
      texts.push_back("Q: pick a digit " + std::to_string(i) + "\nA:<a>" + std::to_string(i % 10) +
                      "</a> the digit seven and three");
    BpeTrainConfig cfg;
    cfg.vocab_size = 290;
    cfg.special_tokens = {"<bos>", "<eos>", "<t>", "</t>", "<a>", "</a>"};
    cfg.bos_token = "<bos>";
    return train_bpe(texts, cfg);
  }();
  return tok;
}

ModelConfig micro_config() {
  // tiny.json (noaux_tc routing, sigmoid scores), shrunk so every test runs in a second or so.
  ModelConfig c =
      ModelConfig::from_file(std::string(SEEKR_SHARED_DIR) + "/bench-configs/tiny.json");
  c.vocab_size = micro_tokenizer().vocab_size();
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.moe_intermediate_size = 16;
  c.num_hidden_layers = 2;
  c.first_k_dense_replace = 1;
  c.num_attention_heads = 2;
  c.q_lora_rank = 0;
  c.kv_lora_rank = 16;
  c.qk_nope_head_dim = 8;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 8;
  c.n_routed_experts = 4;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 2;
  c.n_group = 1;
  c.topk_group = 1;
  c.num_nextn_predict_layers = 0;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.1;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  return c;
}

rl::Problem digit_problem(const std::string& answer = "7") {
  rl::Problem p;
  p.task = "digit";
  p.prompt = "pick a digit";
  p.answer = answer;
  p.verifier = rl::Verifier::Exact;
  p.key = "digit";
  return p;
}

std::vector<int32_t> sft_sequence(const std::string& digit) {
  const Tokenizer& tok = micro_tokenizer();
  std::vector<int32_t> s = encode_prompt(tok, digit_problem(), rl::Template::QA);
  for (int32_t t : tok.encode("<a>" + digit + "</a>")) s.push_back(t);
  s.push_back(1);  // eos
  return s;
}

// A micro model that answers in the tagged format, "7" about a fifth of the time and "3"
// otherwise: a policy with something to learn and a reward signal from the first step. Made by
// a few supervised steps on a fixed batch (cross-entropy on the completion tokens).
const Model& shaped_model() {
  static const Model* model = [] {
    auto* m = new Model(micro_config());
    m->init_weights(7);
    std::vector<std::vector<int32_t>> seqs;
    for (int i = 0; i < 10; ++i) seqs.push_back(sft_sequence(i < 2 ? "7" : "3"));
    const int P = static_cast<int>(
        encode_prompt(micro_tokenizer(), digit_problem(), rl::Template::QA).size());
    const int B = static_cast<int>(seqs.size()), T = static_cast<int>(seqs[0].size()) - 1;
    const int V = m->config().vocab_size;
    std::vector<int32_t> inputs, targets;  // [B, T]
    for (const auto& s : seqs)
      for (int t = 0; t < T; ++t) {
        inputs.push_back(s[t]);
        targets.push_back(t + 1 >= P ? s[t + 1] : -1);
      }
    TrainGraph graph(*m);
    AdamWConfig cfg;
    cfg.weight_decay = 0;
    AdamW adam(param_segments(m->layout()), m->params().size(), cfg);
    TrainOptions fwd;
    fwd.mtp = false;
    for (int step = 0; step < 60; ++step) {
      m->zero_grads();
      graph.forward(inputs.data(), B, T, fwd);
      cross_entropy_forward_backward(graph.logits(), targets.data(), graph.logits(), B * T, V,
                                     1.0f / (B * (T + 1 - P)));
      graph.backward(graph.logits(), {});
      adam.step(m->params().data(), m->grads().data(), 1e-2);
    }
    return m;
  }();
  return *model;
}

std::unique_ptr<Model> copy_of(const Model& src) {
  auto m = std::make_unique<Model>(src.config());
  m->params() = src.params();
  m->buffers() = src.buffers();
  return m;
}

GrpoOptions micro_options() {
  GrpoOptions o;
  o.steps = 30;
  o.prompts_per_step = 4;
  o.group = 8;
  o.max_new_tokens = 8;
  o.lr = 3e-3;
  o.format.tmpl = rl::Template::QA;
  o.format.tags = short_tags();
  o.progress = false;
  o.seed = 99;
  return o;
}

std::function<rl::Problem()> always(const rl::Problem& p) {
  return [p] { return p; };
}

// A hand-made rollout: random prompts and responses of different lengths, advantages of both
// signs; response tokens avoid the special ids so any of them is a valid target.
GrpoRollout random_rollout(int groups, int G, uint64_t seed) {
  Rng rng(seed);
  const int V = micro_config().vocab_size;
  GrpoRollout r;
  r.group = G;
  for (int g = 0; g < groups; ++g) {
    r.problems.push_back(digit_problem());
    std::vector<int32_t> prompt{0};
    const int P = 2 + int(rng.next_u64() % 6);
    for (int i = 1; i < P; ++i) prompt.push_back(6 + int(rng.next_u64() % (V - 6)));
    r.prompts.push_back(prompt);
    for (int i = 0; i < G; ++i) {
      std::vector<int32_t> resp;
      const int L = 1 + int(rng.next_u64() % 12);
      for (int k = 0; k < L; ++k) resp.push_back(6 + int(rng.next_u64() % (V - 6)));
      r.responses.push_back(resp);
      r.rewards.push_back(float(rng.next_u64() % 3));
    }
  }
  r.advantages = group_advantages(r.rewards, G, true);
  return r;
}

std::vector<float> gradient_with_micro_batch(Model& model, const GrpoRollout& rollout,
                                             GrpoMode mode, int micro_batch, GrpoUpdateStats* stats,
                                             int workers = 1) {
  GrpoOptions o = micro_options();
  o.loss.mode = mode;
  o.loss.max_completion_length = 16;
  o.max_new_tokens = 12;
  o.micro_batch = micro_batch;
  o.workers = workers;
  GrpoTrainer trainer(model, micro_tokenizer(), o, always(digit_problem()));
  trainer.prepare(rollout);
  // Old log-probs from a perturbed copy of the policy, so ratios spread on both sides of the
  // clip band and clipping is exercised too.
  const std::vector<float> params = model.params();
  Rng rng(11);
  for (float& p : model.params()) p += 0.05f * static_cast<float>(rng.uniform() - 0.5);
  const std::vector<float> old = trainer.compute_old_logp();
  model.params() = params;
  model.zero_grads();
  *stats = trainer.accumulate_gradient(old.data());
  return model.grads();
}

TEST(GrpoTrainer, MicroBatchesGiveTheFullBatchGradient) {
  auto model = copy_of(shaped_model());
  const GrpoRollout rollout = random_rollout(3, 4, 5);
  for (GrpoMode mode : {GrpoMode::kGrpo, GrpoMode::kDrGrpo, GrpoMode::kDapo}) {
    SCOPED_TRACE(grpo_mode_name(mode));
    GrpoUpdateStats full, split;
    const std::vector<float> g_full = gradient_with_micro_batch(*model, rollout, mode, 0, &full);
    const std::vector<float> g_split = gradient_with_micro_batch(*model, rollout, mode, 5, &split);
    double norm = 0, diff = 0;
    for (size_t i = 0; i < g_full.size(); ++i) {
      norm += double(g_full[i]) * g_full[i];
      diff += double(g_full[i] - g_split[i]) * (g_full[i] - g_split[i]);
    }
    EXPECT_GT(std::sqrt(norm), 1e-4);
    EXPECT_LT(std::sqrt(diff), 1e-5 * std::sqrt(norm));
    EXPECT_NEAR(full.loss, split.loss, 1e-6 * (1 + std::abs(full.loss)));
    EXPECT_NEAR(full.ratio, split.ratio, 1e-6);
    EXPECT_NEAR(full.clip_fraction, split.clip_fraction, 1e-12);
    EXPECT_GT(full.clip_fraction, 0.0);
  }
}

TEST(GrpoTrainer, WorkersGiveTheFullBatchGradient) {
  auto model = copy_of(shaped_model());
  const GrpoRollout rollout = random_rollout(3, 4, 5);
  for (GrpoMode mode : {GrpoMode::kGrpo, GrpoMode::kDrGrpo, GrpoMode::kDapo}) {
    SCOPED_TRACE(grpo_mode_name(mode));
    GrpoUpdateStats one, two, three;
    const std::vector<float> g1 = gradient_with_micro_batch(*model, rollout, mode, 0, &one, 1);
    // micro_batch 0 with 2 workers: one micro-batch each; 2 with 3 workers: uneven shares.
    const std::vector<float> g2 = gradient_with_micro_batch(*model, rollout, mode, 0, &two, 2);
    const std::vector<float> g3 = gradient_with_micro_batch(*model, rollout, mode, 2, &three, 3);
    for (const auto* g : {&g2, &g3}) {
      double norm = 0, diff = 0;
      for (size_t i = 0; i < g1.size(); ++i) {
        norm += double(g1[i]) * g1[i];
        diff += double(g1[i] - (*g)[i]) * (g1[i] - (*g)[i]);
      }
      EXPECT_GT(std::sqrt(norm), 1e-4);
      EXPECT_LT(std::sqrt(diff), 1e-5 * std::sqrt(norm));
    }
    for (const GrpoUpdateStats* u : {&two, &three}) {
      EXPECT_NEAR(u->loss, one.loss, 1e-6 * (1 + std::abs(one.loss)));
      EXPECT_NEAR(u->ratio, one.ratio, 1e-6 * (1 + one.ratio));
      EXPECT_NEAR(u->clip_fraction, one.clip_fraction, 1e-12);
    }
  }
}

// Rollouts split between workers sample exactly the same tokens (each sequence depends only on
// its seed), so the step's rewards and lengths are equal; the update differs only by rounding.
TEST(GrpoTrainer, WorkersSampleTheSameRollouts) {
  auto run = [](int workers) {
    auto model = copy_of(shaped_model());
    GrpoOptions o = micro_options();
    o.workers = workers;
    o.micro_batch = 3;
    GrpoTrainer trainer(*model, micro_tokenizer(), o, always(digit_problem()));
    std::vector<GrpoStepStats> steps;
    for (int i = 0; i < 2; ++i) steps.push_back(trainer.step());
    return std::make_pair(steps, model->params());
  };
  const auto one = run(1), two = run(2);
  // Step 1 samples from the same weights: identical tokens.
  EXPECT_EQ(two.first[0].rollout_tokens, one.first[0].rollout_tokens);
  EXPECT_EQ(two.first[0].reward, one.first[0].reward);
  EXPECT_EQ(two.first[0].response_tokens, one.first[0].response_tokens);
  EXPECT_EQ(two.first[0].update_tokens, one.first[0].update_tokens);
  double norm = 0, diff = 0;
  for (size_t i = 0; i < one.second.size(); ++i) {
    norm += double(one.second[i]) * one.second[i];
    diff += double(one.second[i] - two.second[i]) * (one.second[i] - two.second[i]);
  }
  EXPECT_LT(std::sqrt(diff), 1e-5 * std::sqrt(norm));
}

TEST(GrpoTrainer, OnPolicyRatioIsOneAndSecondInnerUpdateMovesIt) {
  {
    auto model = copy_of(shaped_model());
    GrpoTrainer trainer(*model, micro_tokenizer(), micro_options(), always(digit_problem()));
    const GrpoStepStats st = trainer.step();
    ASSERT_EQ(st.updates.size(), 1u);
    EXPECT_NEAR(st.update.ratio, 1.0, 1e-6);
    EXPECT_EQ(st.update.clip_fraction, 0.0);
    EXPECT_GT(st.update.grad_norm, 0.0);
    EXPECT_GT(st.reward_std, 0.0);  // the shaped model answers both ways
  }
  {
    auto model = copy_of(shaped_model());
    GrpoOptions o = micro_options();
    o.mu = 2;
    GrpoTrainer trainer(*model, micro_tokenizer(), o, always(digit_problem()));
    const GrpoStepStats st = trainer.step();
    ASSERT_EQ(st.updates.size(), 2u);
    EXPECT_NEAR(st.updates[0].ratio, 1.0, 1e-6);  // stored old log-probs = current policy
    EXPECT_GT(std::abs(st.updates[1].ratio - 1.0), 1e-5);
  }
}

TEST(GrpoTrainer, KlAgainstTheReferenceAndItsRefresh) {
  auto model = copy_of(shaped_model());
  GrpoOptions o = micro_options();
  o.loss.beta = 0.04f;
  o.ref_refresh_every = 2;
  GrpoTrainer trainer(*model, micro_tokenizer(), o, always(digit_problem()));
  ASSERT_TRUE(trainer.has_reference());
  EXPECT_EQ(trainer.reference().params(), model->params());
  const double kl1 = trainer.step().update.kl;
  const double kl2 = trainer.step().update.kl;  // policy moved once; refreshed after this step
  const double kl3 = trainer.step().update.kl;
  // 0 up to the float rounding of the stored reference log-probs (k3 ~ delta^2 / 2).
  EXPECT_LT(std::abs(kl1), 1e-12);
  EXPECT_GT(kl2, 1e-7);
  EXPECT_LT(std::abs(kl3), 1e-12);
}

TEST(GrpoTrainer, DynamicSamplingDropsGroupsOfEqualRewards) {
  auto model = copy_of(shaped_model());
  GrpoOptions o = micro_options();
  o.dynamic_sampling = true;
  o.max_sampling_rounds = 3;
  // Nobody answers "nine": every reward is 0, every group is dropped, there is no update.
  GrpoTrainer trainer(*model, micro_tokenizer(), o, always(digit_problem("9")));
  const std::vector<float> before = model->params();
  const GrpoStepStats st = trainer.step();
  EXPECT_EQ(st.groups_kept, 0);
  EXPECT_EQ(st.groups_dropped, 3 * o.prompts_per_step);
  EXPECT_EQ(st.sampling_rounds, 3);
  EXPECT_TRUE(st.updates.empty());
  EXPECT_EQ(model->params(), before);
  EXPECT_EQ(st.to_json().at("groups_dropped"), 3 * o.prompts_per_step);

  // With the right answer most groups are mixed and kept; the batch fills up.
  auto model2 = copy_of(shaped_model());
  GrpoTrainer trainer2(*model2, micro_tokenizer(), o, always(digit_problem("7")));
  const GrpoStepStats st2 = trainer2.step();
  EXPECT_EQ(st2.groups_kept, o.prompts_per_step);
  EXPECT_EQ(st2.sampling_rounds > 1, st2.groups_dropped > 0);
  EXPECT_EQ(st2.updates.size(), 1u);
}

TEST(GrpoTrainer, LearnsAnEasyReward) {
  auto model = copy_of(shaped_model());
  GrpoOptions o = micro_options();
  o.steps = 20;
  std::vector<double> acc;
  const GrpoSummary sum =
      run_grpo(*model, micro_tokenizer(), o, always(digit_problem("7")), nullptr, "test",
               [&](const GrpoStepStats& st) { acc.push_back(st.accuracy); });
  ASSERT_EQ(acc.size(), size_t(o.steps));
  EXPECT_EQ(sum.steps, o.steps);
  EXPECT_LT(acc[0], 0.4);  // the shaped model's prior: "7" about a fifth of the time
  EXPECT_GT(sum.last_accuracy, sum.first_accuracy + 0.3)
      << "first " << sum.first_accuracy << " last " << sum.last_accuracy;
}

TEST(GrpoTrainer, SameSeedSameSteps) {
  for (int workers : {1, 2}) {
    SCOPED_TRACE(workers);
    auto run = [workers] {
      auto model = copy_of(shaped_model());
      GrpoOptions o = micro_options();
      o.loss.beta = 0.02f;
      o.workers = workers;
      GrpoTrainer trainer(*model, micro_tokenizer(), o, always(digit_problem()));
      std::vector<nlohmann::json> out;
      for (int i = 0; i < 3; ++i) {
        nlohmann::json j = trainer.step().to_json();
        for (const char* timing : {"rollout_seconds", "update_seconds", "rollout_tok_s",
                                   "update_tok_s", "rollout_share"})
          j.erase(timing);
        out.push_back(j);
      }
      return std::make_pair(out, model->params());
    };
    const auto a = run(), b = run();
    EXPECT_EQ(a.first, b.first);
    EXPECT_EQ(a.second, b.second);
  }
}

TEST(GrpoTrainer, RejectsBadOptions) {
  auto model = copy_of(shaped_model());
  GrpoOptions o = micro_options();
  o.group = 1;
  EXPECT_THROW(GrpoTrainer(*model, micro_tokenizer(), o, always(digit_problem())), seekr::Error);
  EXPECT_THROW(parse_grpo_mode("ppo"), seekr::Error);
  EXPECT_EQ(parse_grpo_mode("dr_grpo"), GrpoMode::kDrGrpo);
}

}  // namespace
}  // namespace seekr::r1
