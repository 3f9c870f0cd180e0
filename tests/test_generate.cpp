// Sampler, .npy files, batched generation and scoring.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/file_io.h"
#include "core/npy.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "decode_trace.h"
#include "model/config.h"
#include "model/model.h"
#include "serve/generate.h"
#include "serve/sampler.h"
#include "tokenizer/tokenizer.h"

namespace seekr {
namespace {

std::vector<float> log_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

std::vector<float> random_logits(int V, uint64_t seed, double scale = 3.0) {
  Rng rng(seed);
  std::vector<float> l(V);
  for (auto& x : l) x = static_cast<float>(scale * rng.normal());
  return l;
}

std::vector<int32_t> kept_tokens(const std::vector<std::pair<int32_t, double>>& d) {
  std::vector<int32_t> t;
  for (auto& [tok, p] : d) t.push_back(tok);
  return t;
}

// ---- Sampler ------------------------------------------------------------------------------

TEST(Sampler, GreedyIsArgmaxWithLowestIndexOnTies) {
  Sampler s;
  Rng rng(1);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto l = random_logits(1000, seed);
    const int32_t want = std::max_element(l.begin(), l.end()) - l.begin();
    const SampledToken t = s.sample(l.data(), 1000, greedy, rng);
    EXPECT_EQ(t.token, want);
    EXPECT_EQ(t.logprob, 0.0f);
  }
  std::vector<float> tie = {0.0f, 2.0f, 1.0f, 2.0f};
  EXPECT_EQ(s.sample(tie.data(), 4, greedy, rng).token, 1);
  // Greedy draws nothing from the stream.
  Rng a(5), b(5);
  s.sample(tie.data(), 4, greedy, a);
  EXPECT_EQ(a.next_u64(), b.next_u64());
}

TEST(Sampler, TopKOneIsGreedy) {
  Sampler s;
  Rng rng(2);
  SamplingParams greedy, k1;
  greedy.temperature = 0.0f;
  k1.top_k = 1;
  for (float temp : {0.3f, 1.0f, 5.0f}) {
    k1.temperature = temp;
    for (uint64_t seed = 0; seed < 20; ++seed) {
      auto l = random_logits(5000, 100 + seed, 0.5);
      const SampledToken g = s.sample(l.data(), 5000, greedy, rng);
      const SampledToken k = s.sample(l.data(), 5000, k1, rng);
      EXPECT_EQ(k.token, g.token);
      EXPECT_FLOAT_EQ(k.logprob, 0.0f);
      EXPECT_FLOAT_EQ(k.raw_logprob, g.raw_logprob);
    }
  }
}

TEST(Sampler, TopPKeepsSmallestSetReachingP) {
  Sampler s;
  // probs: 0.1, 0.4, 0.2, 0.3 -> order 1, 3, 2, 0.
  const auto l = log_of({0.1, 0.4, 0.2, 0.3});
  SamplingParams p;
  p.top_p = 0.35f;
  EXPECT_EQ(kept_tokens(s.distribution(l.data(), 4, p)), (std::vector<int32_t>{1}));
  p.top_p = 0.65f;
  auto d = s.distribution(l.data(), 4, p);
  EXPECT_EQ(kept_tokens(d), (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(d[0].second, 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(d[1].second, 0.3 / 0.7, 1e-6);
  p.top_p = 0.75f;
  EXPECT_EQ(kept_tokens(s.distribution(l.data(), 4, p)), (std::vector<int32_t>{1, 3, 2}));
  p.top_p = 0.95f;
  EXPECT_EQ(kept_tokens(s.distribution(l.data(), 4, p)), (std::vector<int32_t>{1, 3, 2, 0}));

  // Equal probabilities: lower index first.
  const auto flat = log_of({0.25, 0.25, 0.25, 0.25});
  p.top_p = 0.5f;
  EXPECT_EQ(kept_tokens(s.distribution(flat.data(), 4, p)), (std::vector<int32_t>{0, 1}));

  // top-k then top-p renormalised over the top-k mass: top-2 = {1 (0.4), 3 (0.3)};
  // 0.4 / 0.7 = 0.571 < 0.6, so both stay.
  p.top_k = 2;
  p.top_p = 0.6f;
  EXPECT_EQ(kept_tokens(s.distribution(l.data(), 4, p)), (std::vector<int32_t>{1, 3}));
  p.top_p = 0.55f;
  EXPECT_EQ(kept_tokens(s.distribution(l.data(), 4, p)), (std::vector<int32_t>{1}));
}

TEST(Sampler, TopPOnLargeVocabularyMatchesFullSort) {
  // Exercises the growing partial sort: a flat distribution needs a large nucleus.
  Sampler s;
  const int V = 50000;
  for (double scale : {0.1, 1.0, 4.0}) {
    auto l = random_logits(V, 7, scale);
    for (float top_p : {0.1f, 0.5f, 0.9f, 0.99f}) {
      SamplingParams p;
      p.top_p = top_p;
      p.temperature = 0.7f;
      std::vector<int32_t> order(V);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
      std::vector<double> q(V);
      double z = 0;
      for (int i = 0; i < V; ++i) z += q[i] = std::exp((l[i] - l[order[0]]) / 0.7);
      std::vector<int32_t> want;
      double cum = 0;
      for (int t : order) {
        want.push_back(t);
        cum += q[t];
        if (cum >= top_p * z) break;
      }
      EXPECT_EQ(kept_tokens(s.distribution(l.data(), V, p)), want)
          << "scale " << scale << " top_p " << top_p;
    }
  }
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  Sampler s;
  const auto l = log_of({0.5, 0.05, 0.3, 0.15});
  SamplingParams p;
  p.min_p = 0.2f;  // floor 0.1: drops token 1
  auto d = s.distribution(l.data(), 4, p);
  EXPECT_EQ(kept_tokens(d), (std::vector<int32_t>{0, 2, 3}));
  EXPECT_NEAR(d[0].second, 0.5 / 0.95, 1e-6);
}

// Pearson chi-square of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double x2 = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double e = probs[i] * n;
    if (e > 0) {
      x2 += (counts[i] - e) * (counts[i] - e) / e;
    } else {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
    }
  }
  return x2;
}

TEST(Sampler, FrequenciesMatchTheDistribution) {
  Sampler s;
  const int V = 10, N = 200000;
  const auto l = random_logits(V, 11, 1.0);
  struct Case {
    float temp;
    int top_k;
    float top_p;
  };
  for (const Case c :
       {Case{1.0f, 0, 1.0f}, Case{0.5f, 0, 1.0f}, Case{1.5f, 4, 1.0f}, Case{1.0f, 0, 0.8f}}) {
    // Expected probabilities computed here from the definition, not from the sampler.
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
    std::vector<double> q(V, 0.0);
    const int k = c.top_k > 0 ? c.top_k : V;
    double z = 0;
    for (int i = 0; i < k; ++i) z += q[order[i]] = std::exp(l[order[i]] / c.temp);
    double cum = 0;
    int keep = 0;
    while (keep < k) {
      cum += q[order[keep++]];
      if (cum >= c.top_p * z) break;
    }
    for (int i = keep; i < V; ++i) q[order[i]] = 0;
    const double zk = std::accumulate(q.begin(), q.end(), 0.0);
    for (auto& x : q) x /= zk;

    SamplingParams p;
    p.temperature = c.temp;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    Rng rng(42);
    std::vector<int> counts(V, 0);
    for (int i = 0; i < N; ++i) {
      const SampledToken t = s.sample(l.data(), V, p, rng);
      ++counts[t.token];
      if (i < 50) {
        EXPECT_NEAR(t.logprob, std::log(q[t.token]), 1e-5);
      }
    }
    // df <= 9: P(chi2_9 > 33.7) = 1e-4.
    EXPECT_LT(chi_square(counts, q, N), 33.7)
        << "temperature " << c.temp << " top_k " << c.top_k << " top_p " << c.top_p;
  }
}

TEST(Sampler, SameSeedSameTokens) {
  Sampler s;
  const int V = 300;
  SamplingParams p;
  p.temperature = 1.2f;
  p.top_p = 0.9f;
  auto run = [&](uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto l = random_logits(V, i, 0.5);
      out.push_back(s.sample(l.data(), V, p, rng).token);
    }
    return out;
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));
}

TEST(Sampler, RawLogprobIsLogSoftmax) {
  Sampler s;
  const int V = 777;
  auto l = random_logits(V, 9);
  double m = *std::max_element(l.begin(), l.end()), z = 0;
  for (float x : l) z += std::exp(x - m);
  SamplingParams p;
  Rng rng(0);
  for (float temp : {1.0f, 0.6f}) {
    p.temperature = temp;
    p.top_k = temp == 1.0f ? 0 : 20;
    for (int i = 0; i < 20; ++i) {
      const SampledToken t = s.sample(l.data(), V, p, rng);
      EXPECT_NEAR(t.raw_logprob, l[t.token] - m - std::log(z), 1e-5);
      EXPECT_NEAR(token_logprob(l.data(), V, t.token), l[t.token] - m - std::log(z), 1e-5);
    }
  }
}

TEST(Sampler, RejectsBadParams) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(p.validate(), Error);
  p = {};
  p.temperature = -1.0f;
  EXPECT_THROW(p.validate(), Error);
  p = {};
  p.top_k = -2;
  EXPECT_THROW(p.validate(), Error);
}

// ---- .npy ---------------------------------------------------------------------------------

std::string temp_path(const std::string& name) {
  return (::testing::TempDir().empty() ? "/tmp/" : ::testing::TempDir()) + "seekr_gen_" +
         std::to_string(::getpid()) + "_" + name;
}

TEST(Npy, HeaderBytesAreExact) {
  const std::string h = npy_header("<f4", {3, 4});
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
  ASSERT_EQ(h.size(), 128u);  // 10 + 60 + 1 rounded up to 64
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<unsigned char>(h[8]) | (static_cast<unsigned char>(h[9]) << 8), 118);
  EXPECT_EQ(h.substr(10, dict.size()), dict);
  EXPECT_EQ(h.substr(10 + dict.size()), std::string(128 - 10 - dict.size() - 1, ' ') + "\n");
  EXPECT_NE(npy_header("<i4", {5}).find("'shape': (5,), }"), std::string::npos);
  EXPECT_NE(npy_header("<f4", {}).find("'shape': (), }"), std::string::npos);
  EXPECT_EQ(npy_header("<f4", {123456789, 2, 3, 4, 5, 6, 7, 8, 9}).size() % 64, 0u);
}

TEST(Npy, RoundTripAndNumpyLoads) {
  const std::string fpath = temp_path("f.npy"), ipath = temp_path("i.npy");
  std::vector<float> f(2 * 3 * 5);
  for (size_t i = 0; i < f.size(); ++i) f[i] = 0.5f * i - 3.25f;
  std::vector<int32_t> ints = {7, -1, 1 << 30, 0};
  write_npy(fpath, f.data(), {2, 3, 5});
  write_npy(ipath, ints.data(), {4});
  NpyArray a = read_npy(fpath);
  EXPECT_EQ(a.descr, "<f4");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 5}));
  EXPECT_EQ(a.f32, f);
  NpyArray b = read_npy(ipath);
  EXPECT_EQ(b.descr, "<i4");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(b.i32, ints);

  write_file_atomic(temp_path("bad.npy"), npy_header("<f4", {3}) + std::string(8, '\0'));
  EXPECT_THROW(read_npy(temp_path("bad.npy")), Error);

  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
    std::remove(fpath.c_str());
    std::remove(ipath.c_str());
    GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  }
  const std::string cmd = "/usr/bin/python3 -c \"import numpy as np; a = np.load('" + fpath +
                          "'); b = np.load('" + ipath +
                          "'); import sys; ok = a.dtype == np.float32 and a.shape == (2, 3, 5) and "
                          "float(a[1, 2, 4]) == 0.5 * 29 - 3.25 and b.dtype == np.int32 and "
                          "b.tolist() == [7, -1, 1 << 30, 0]; sys.exit(0 if ok else 1)\"";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::remove(fpath.c_str());
  std::remove(ipath.c_str());
}

// ---- Generation and scoring on a small random model ---------------------------------------

// A tokenizer small enough that the model's vocabulary can equal it (so every sampled id
// decodes).
const Tokenizer& test_tokenizer() {
  static const Tokenizer tok = [] {
    std::vector<std::string> texts;
    for (int i = 0; i < 40; ++i)
      texts.push_back("the quick brown fox jumps over the lazy dog " + std::to_string(i * 37) +
                      " and then the cat sat on the mat, said the man to the other man.");
    BpeTrainConfig cfg;
    cfg.vocab_size = 320;
    cfg.special_tokens = {"<bos>", "<eos>"};
    cfg.bos_token = "<bos>";
    return train_bpe(texts, cfg);
  }();
  return tok;
}

// tiny.json, shrunk so tests run in seconds, with sharper random logits than the default
// initialisation (near-uniform logits would make greedy choices hinge on rounding).
ModelConfig test_config() {
  ModelConfig c =
      ModelConfig::from_file(std::string(SEEKR_SHARED_DIR) + "/bench-configs/tiny.json");
  c.vocab_size = test_tokenizer().vocab_size();
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.moe_intermediate_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.kv_lora_rank = 32;
  c.qk_nope_head_dim = 16;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 16;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.max_position_embeddings = 256;
  c.initializer_range = 0.2;
  c.eos_token_id = 1;
  c.bos_token_id = 0;
  return c;
}

Model& test_model() {
  static Model* m = [] {
    auto* model = new Model(test_config());
    model->init_weights(1234);
    return model;
  }();
  return *m;
}

std::vector<int32_t> random_prompt(int len, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> p;
  for (int i = 0; i < len; ++i) p.push_back(static_cast<int32_t>(2 + rng.below(300)));
  return p;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

TEST(Score, SessionLogitsMatchTrainGraph) {
  Model& model = test_model();
  const auto tokens = random_prompt(40, 5);
  const auto train = logits_train(model, tokens);
  const auto absorbed = logits_session(model, tokens, AttentionMode::kAbsorbed);
  const auto naive = logits_session(model, tokens, AttentionMode::kNaive);
  ASSERT_EQ(train.size(), tokens.size() * model.config().vocab_size);
  const double scale = max_abs(train);
  ASSERT_GT(scale, 0.1);  // the logits are not trivially zero
  EXPECT_LT(max_abs_diff(train, absorbed), 1e-4 * scale);
  EXPECT_LT(max_abs_diff(train, naive), 1e-4 * scale);

  // Per-token log-probs from the logits, against a direct log-softmax.
  const int V = model.config().vocab_size;
  const ScoreResult r = score_from_logits(train.data(), V, tokens);
  ASSERT_EQ(r.logprobs.size(), tokens.size() - 1);
  double total = 0;
  for (size_t t = 1; t < tokens.size(); ++t) {
    const float* row = train.data() + (t - 1) * V;
    double m = *std::max_element(row, row + V), z = 0;
    for (int v = 0; v < V; ++v) z += std::exp(row[v] - m);
    const double want = row[tokens[t]] - m - std::log(z);
    EXPECT_NEAR(r.logprobs[t - 1], want, 1e-5);
    total += want;
  }
  EXPECT_NEAR(r.total_logprob, total, 1e-3);
  EXPECT_NEAR(r.mean_nll(), -total / (tokens.size() - 1), 1e-4);
  EXPECT_NEAR(r.perplexity(), std::exp(-total / (tokens.size() - 1)), 1e-3 * r.perplexity());
}

TEST(Score, DecodingOneTokenAtATimeMatchesPrefill) {
  // Logits for the same tokens fed one per call (decode) vs all at once (prefill).
  Model& model = test_model();
  const int V = model.config().vocab_size;
  const auto tokens = random_prompt(24, 6);
  const auto full = logits_session(model, tokens);
  InferenceSession s(model, 2, 32);
  std::vector<float> step(static_cast<size_t>(tokens.size()) * V);
  for (int i = 0; i < static_cast<int>(tokens.size()); ++i) {
    const int32_t slot = 1;
    s.forward(&tokens[i], &slot, &i, 1, step.data() + static_cast<size_t>(i) * V);
  }
  EXPECT_LT(max_abs_diff(full, step), 1e-4 * max_abs(full));
}

GenerationRequest request(int prompt_len, uint64_t prompt_seed, int max_new, float temperature,
                          uint64_t seed = 0) {
  GenerationRequest r;
  r.prompt = random_prompt(prompt_len, prompt_seed);
  r.max_new_tokens = max_new;
  r.sampling.temperature = temperature;
  r.seed = seed;
  return r;
}

std::vector<GenerationRequest> mixed_requests(const SamplingParams& sp) {
  std::vector<GenerationRequest> reqs;
  const int lens[] = {5, 17, 1, 9, 30};
  const int news[] = {12, 7, 20, 15, 3};
  for (int i = 0; i < 5; ++i) {
    reqs.push_back(request(lens[i], 100 + i, news[i], 0.0f, 1000 + 17 * i));
    reqs.back().sampling = sp;
  }
  return reqs;
}

void expect_same_results(const GenerationResult& a, const GenerationResult& b, int i) {
  EXPECT_EQ(a.tokens, b.tokens) << "sequence " << i;
  EXPECT_EQ(a.finish, b.finish) << "sequence " << i;
  ASSERT_EQ(a.raw_logprobs.size(), b.raw_logprobs.size());
  for (size_t t = 0; t < a.raw_logprobs.size(); ++t) {
    EXPECT_NEAR(a.raw_logprobs[t], b.raw_logprobs[t], 1e-4) << "sequence " << i << " token " << t;
    EXPECT_NEAR(a.logprobs[t], b.logprobs[t], 1e-4) << "sequence " << i << " token " << t;
  }
}

TEST(Generate, BatchedEqualsOneByOne) {
  Model& model = test_model();
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SamplingParams sampled;
  sampled.temperature = 0.9f;
  sampled.top_k = 50;
  sampled.top_p = 0.95f;
  for (const SamplingParams& sp : {greedy, sampled}) {
    const auto reqs = mixed_requests(sp);
    GenerateOptions all;
    const GenerationOutput batched = generate(model, reqs, all);
    GenerateOptions two;  // slots are reused as sequences finish
    two.max_batch = 2;
    two.max_prefill_tokens = 1;
    const GenerationOutput pairs = generate(model, reqs, two);
    ASSERT_EQ(batched.results.size(), reqs.size());
    EXPECT_EQ(batched.stats.max_batch, 5);
    EXPECT_EQ(pairs.stats.max_batch, 2);
    EXPECT_EQ(pairs.stats.prefill_calls, 5);
    EXPECT_EQ(batched.stats.prefill_calls, 1);
    int64_t generated = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
      const GenerationOutput alone = generate(model, {reqs[i]});
      ASSERT_EQ(alone.results.size(), 1u);
      EXPECT_EQ(static_cast<int>(alone.results[0].tokens.size()), reqs[i].max_new_tokens);
      EXPECT_EQ(alone.results[0].finish, FinishReason::kLength);
      expect_same_results(batched.results[i], alone.results[0], i);
      expect_same_results(pairs.results[i], alone.results[0], i);
      generated += reqs[i].max_new_tokens;
      // Greedy's first token is the argmax of the prompt's last logits row.
      if (sp.greedy()) {
        const auto lg = logits_session(model, reqs[i].prompt);
        const int V = model.config().vocab_size;
        const float* last = lg.data() + (reqs[i].prompt.size() - 1) * V;
        EXPECT_EQ(alone.results[0].tokens[0], std::max_element(last, last + V) - last);
      }
    }
    EXPECT_EQ(batched.stats.generated_tokens, generated);
    EXPECT_EQ(batched.stats.decode_tokens, generated - 5);  // each first token comes from prefill
  }
}

// Workers generate contiguous shares of the requests, each in its own session: every
// sequence depends only on its seed, so the results are the same for any worker count.
TEST(Generate, WorkersGiveTheSameResults) {
  Model& model = test_model();
  SamplingParams sampled;
  sampled.temperature = 0.9f;
  std::vector<GenerationRequest> reqs = mixed_requests(sampled);
  reqs[1].n = 3;  // shares balance sequences, not requests
  const GenerationOutput one = generate(model, reqs, GenerateOptions{});
  for (int workers : {2, 3, 8}) {
    SCOPED_TRACE(workers);
    GenerateOptions o;
    o.workers = workers;
    const GenerationOutput many = generate(model, reqs, o);
    ASSERT_EQ(many.results.size(), one.results.size());
    for (size_t i = 0; i < one.results.size(); ++i)
      expect_same_results(many.results[i], one.results[i], i);
    EXPECT_EQ(many.stats.generated_tokens, one.stats.generated_tokens);
    EXPECT_EQ(many.stats.prompt_tokens, one.stats.prompt_tokens);
  }
  GenerateOptions streaming;
  streaming.workers = 2;
  streaming.on_text = [](int, std::string_view) {};
  EXPECT_THROW(generate(model, reqs, streaming), Error);
}

TEST(Generate, SampledTokensFollowTheirLogprobs) {
  // Generated tokens re-scored by the training forward give the same raw log-probs.
  Model& model = test_model();
  const GenerationRequest r = request(8, 77, 20, 1.0f, 5);
  const GenerationResult g = generate(model, {r}).results[0];
  std::vector<int32_t> all = r.prompt;
  all.insert(all.end(), g.tokens.begin(), g.tokens.end());
  const auto lg = logits_train(model, all);
  const ScoreResult s = score_from_logits(lg.data(), model.config().vocab_size, all);
  for (size_t t = 0; t < g.tokens.size(); ++t) {
    EXPECT_NEAR(g.raw_logprobs[t], s.logprobs[r.prompt.size() - 1 + t], 1e-4) << t;
    EXPECT_FLOAT_EQ(g.logprobs[t], g.raw_logprobs[t]);  // temperature 1, no truncation
  }
}

TEST(Generate, NSamplesEqualSeparateSeeds) {
  Model& model = test_model();
  GenerationRequest r = request(6, 3, 10, 1.0f, 40);
  r.n = 3;
  const GenerationOutput out = generate(model, {r});
  ASSERT_EQ(out.results.size(), 3u);
  for (int j = 0; j < 3; ++j) {
    GenerationRequest one = r;
    one.n = 1;
    one.seed = 40 + j;
    EXPECT_EQ(out.results[j].sample, j);
    expect_same_results(out.results[j], generate(model, {one}).results[0], j);
  }
  EXPECT_NE(out.results[0].tokens, out.results[1].tokens);
  // The three samples share one prefill of the prompt (copied into their cache slots).
  EXPECT_EQ(out.stats.prompt_tokens, static_cast<int64_t>(r.prompt.size()));
}

TEST(Generate, AbsorbedEqualsNaive) {
  Model& model = test_model();
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  const auto reqs = mixed_requests(greedy);
  GenerateOptions naive;
  naive.attention = AttentionMode::kNaive;
  const GenerationOutput a = generate(model, reqs);
  const GenerationOutput b = generate(model, reqs, naive);
  EXPECT_LT(a.stats.cache_bytes_per_token, b.stats.cache_bytes_per_token);
  for (size_t i = 0; i < reqs.size(); ++i) expect_same_results(a.results[i], b.results[i], i);
}

// The smallest number of leading tokens whose decoded bytes contain `needle`.
size_t tokens_until(const std::vector<int32_t>& toks, const std::string& needle) {
  std::string bytes;
  for (size_t i = 0; i < toks.size(); ++i) {
    bytes += test_tokenizer().decode_bytes(std::span<const int32_t>(&toks[i], 1));
    if (bytes.find(needle) != std::string::npos) return i + 1;
  }
  return toks.size() + 1;
}

TEST(Generate, StopStringsAndStopTokens) {
  Model& model = test_model();
  const Tokenizer& tok = test_tokenizer();
  GenerateOptions opt;
  opt.tokenizer = &tok;
  GenerationRequest r;
  r.prompt = tok.encode("the quick brown", true);
  r.max_new_tokens = 60;
  r.sampling.temperature = 0.0f;
  const GenerationResult full = generate(model, {r}, opt).results[0];
  ASSERT_EQ(full.tokens.size(), 60u);
  EXPECT_EQ(full.text, tok.decode(full.tokens));

  // A 3-byte printable stop string from the middle of the text; it may span tokens.
  std::string bytes;
  for (int32_t t : full.tokens) bytes += tok.decode_bytes(std::span<const int32_t>(&t, 1));
  std::string stop;
  for (size_t a = 8; a + 3 <= bytes.size() && stop.empty(); ++a)
    if (std::all_of(bytes.begin() + a, bytes.begin() + a + 3,
                    [](char c) { return c >= 0x20 && c < 0x7f; }))
      stop = bytes.substr(a, 3);
  ASSERT_FALSE(stop.empty()) << "no printable text in the greedy output";
  const size_t n_stop = tokens_until(full.tokens, stop);
  ASSERT_LE(n_stop, full.tokens.size());

  GenerationRequest rs = r;
  rs.stop_strings = {"this never occurs \x01", stop};
  std::string streamed;
  GenerateOptions sopt = opt;
  sopt.on_text = [&](int seq, std::string_view piece) {
    EXPECT_EQ(seq, 0);
    streamed += piece;
  };
  const GenerationResult cut = generate(model, {rs}, sopt).results[0];
  EXPECT_EQ(cut.finish, FinishReason::kStopString);
  EXPECT_EQ(cut.stop_string, stop);
  EXPECT_EQ(cut.tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + n_stop));
  const std::string full_text = tok.decode(full.tokens);
  EXPECT_EQ(cut.text, full_text.substr(0, full_text.find(stop)));
  EXPECT_EQ(streamed, bytes.substr(0, bytes.find(stop)));

  // Streaming without stop strings gives exactly the decoded bytes.
  streamed.clear();
  generate(model, {r}, sopt);
  EXPECT_EQ(streamed, bytes);

  // Stop token: the 6th generated token, at its first occurrence.
  GenerationRequest rt = r;
  const int32_t stop_tok = full.tokens[5];
  rt.stop_tokens = {stop_tok};
  const size_t first =
      std::find(full.tokens.begin(), full.tokens.end(), stop_tok) - full.tokens.begin();
  const GenerationResult st = generate(model, {rt}, opt).results[0];
  EXPECT_EQ(st.finish, FinishReason::kStopToken);
  EXPECT_EQ(st.stop_token, stop_tok);
  const std::vector<int32_t> want(full.tokens.begin(), full.tokens.begin() + first + 1);
  EXPECT_EQ(st.tokens, want);
  EXPECT_EQ(st.text, tok.decode(std::span<const int32_t>(want).first(first)));
}

TEST(Generate, ContextFullAndBadRequests) {
  Model& model = test_model();
  const GenerationRequest r = request(10, 1, 50, 0.0f);
  GenerateOptions opt;
  opt.max_len = 16;  // room for 10 prompt + 6 fed tokens: 7 sampled
  const GenerationResult g = generate(model, {r}, opt).results[0];
  EXPECT_EQ(g.finish, FinishReason::kContextFull);
  EXPECT_EQ(g.tokens.size(), 7u);
  const std::vector<int32_t> unbounded = generate(model, {r}).results[0].tokens;
  EXPECT_EQ(g.tokens, std::vector<int32_t>(unbounded.begin(), unbounded.begin() + 7));

  GenerationRequest zero = r;
  zero.max_new_tokens = 0;
  const GenerationOutput z = generate(model, {zero});
  EXPECT_TRUE(z.results[0].tokens.empty());
  EXPECT_EQ(z.stats.prompt_tokens, 0);

  GenerationRequest bad = r;
  bad.prompt.clear();
  EXPECT_THROW(generate(model, {bad}), Error);
  bad = r;
  bad.prompt[3] = model.config().vocab_size;
  EXPECT_THROW(generate(model, {bad}), Error);
  bad = r;
  bad.stop_strings = {"x"};
  EXPECT_THROW(generate(model, {bad}), Error);  // no tokenizer
  bad = r;
  bad.prompt = random_prompt(20, 2);
  EXPECT_THROW(generate(model, {bad}, opt), Error);  // longer than max_len
}

TEST(Generate, LoadsCheckpointDirectory) {
  Model& model = test_model();
  const std::string dir = temp_path("ckpt");
  make_dirs(dir);
  write_file_atomic(dir + "/config.json", model.config().to_json_text());
  SafetensorsWriter w;
  model.add_to(w);
  w.write(dir + "/model.safetensors");
  test_tokenizer().save(dir + "/tokenizer.json");
  const InferenceModel im = load_inference_model(dir);
  ASSERT_TRUE(im.tokenizer.has_value());
  EXPECT_EQ(im.tokenizer->encode("the lazy cat", true),
            test_tokenizer().encode("the lazy cat", true));
  const auto toks = random_prompt(12, 8);
  EXPECT_EQ(logits_session(*im.model, toks), logits_session(model, toks));
  std::filesystem::remove_all(dir);
  EXPECT_THROW(load_inference_model(dir), Error);
}

// ---- MTP module and speculative decoding ---------------------------------------------------

// The MTP module's logits through the session equal TrainGraph::mtp_logits(1): all rows in one
// call after a prefill, and row by row as speculative decoding drives it (2-token verify
// passes, rejected drafts rolled back with truncate()).
TEST(Mtp, SessionLogitsMatchTrainGraph) {
  Model& model = test_model();
  const ModelConfig& c = model.config();
  ASSERT_EQ(c.num_nextn_predict_layers, 1);
  const int V = c.vocab_size, d = c.hidden_size;
  const std::vector<int32_t> tokens = random_prompt(30, 21);
  const int T = static_cast<int>(tokens.size());
  TrainGraph graph(model);
  graph.forward(tokens.data(), 1, T, TrainOptions{});
  ASSERT_EQ(graph.mtp_rows(1), T - 1);
  const std::vector<float> want(graph.mtp_logits(1), graph.mtp_logits(1) + size_t(T - 1) * V);
  const std::vector<float> want_main(graph.logits(), graph.logits() + size_t(T) * V);
  const double scale = max_abs(want);
  ASSERT_GT(scale, 0.1);

  for (AttentionMode mode : {AttentionMode::kAbsorbed, AttentionMode::kNaive}) {
    SCOPED_TRACE(mode == AttentionMode::kAbsorbed ? "absorbed" : "naive");
    std::vector<int32_t> slot1(T, 1), slot0(T, 0), pos(T);
    std::iota(pos.begin(), pos.end(), 0);
    std::vector<float> logits(size_t(T) * V), hidden(size_t(T) * d), got(size_t(T - 1) * V);
    {
      InferenceSession s(model, 2, T, mode);
      ASSERT_TRUE(s.has_mtp());
      s.forward(tokens.data(), slot1.data(), pos.data(), T, logits.data(), nullptr, hidden.data());
      s.mtp_forward(hidden.data(), tokens.data() + 1, slot1.data(), pos.data(), T - 1, got.data());
      EXPECT_LT(max_abs_diff(want, got), 1e-4 * scale);
      EXPECT_EQ(s.length(1), T);
      EXPECT_EQ(s.mtp_length(1), T - 1);
      EXPECT_EQ(s.mtp_length(0), 0);
      // Logits for some rows only (the others just join the MTP cache), in slot 0.
      std::vector<uint8_t> some(T - 1, 0);
      for (int i = 0; i < T - 1; i += 3) some[i] = 1;
      s.forward(tokens.data(), slot0.data(), pos.data(), T, logits.data(), nullptr, hidden.data());
      s.mtp_forward(hidden.data(), tokens.data() + 1, slot0.data(), pos.data(), T - 1, got.data(),
                    some.data());
      for (int i = 0, k = 0; i < T - 1; ++i) {
        if (!some[i]) continue;
        const std::vector<float> a(want.begin() + size_t(i) * V, want.begin() + size_t(i + 1) * V);
        const std::vector<float> b(got.begin() + size_t(k) * V, got.begin() + size_t(k + 1) * V);
        EXPECT_LT(max_abs_diff(a, b), 1e-4 * scale) << "row " << i;
        ++k;
      }
      EXPECT_EQ(s.mtp_length(0), T - 1);
      // Positions must follow what the MTP cache holds.
      EXPECT_THROW(
          s.mtp_forward(hidden.data(), tokens.data(), slot1.data(), pos.data(), 1, got.data()),
          Error);
    }

    // Prefill 10 tokens, feed 3 more in one call, then verify passes of [token, guess]: the
    // guess is right on even steps (both rows kept, two MTP rows) and wrong on odd ones
    // (truncated, one MTP row).
    InferenceSession s(model, 1, T, mode);
    std::fill(got.begin(), got.end(), 0.0f);
    std::vector<float> got_main(size_t(T) * V);
    const int P = 10;
    s.forward(tokens.data(), slot0.data(), pos.data(), P, got_main.data(), nullptr, hidden.data());
    s.mtp_forward(hidden.data(), tokens.data() + 1, slot0.data(), pos.data(), P, got.data());
    s.forward(tokens.data() + P, slot0.data(), pos.data() + P, 3, got_main.data() + size_t(P) * V,
              nullptr, hidden.data());
    s.mtp_forward(hidden.data(), tokens.data() + P + 1, slot0.data(), pos.data() + P, 3,
                  got.data() + size_t(P) * V);
    std::vector<float> pair_logits(2 * size_t(V));
    for (int p = P + 3, step = 0; p <= T - 2; ++step) {
      const bool right = step % 2 == 0;
      const int32_t pair[2] = {tokens[p], right ? tokens[p + 1] : (tokens[p + 1] + 7) % V};
      s.forward(pair, slot0.data(), pos.data() + p, 2, pair_logits.data(), nullptr, hidden.data());
      std::copy_n(pair_logits.data(), V, got_main.data() + size_t(p) * V);
      const int rows = right ? std::min(2, T - 1 - p) : 1;
      if (right) {
        std::copy_n(pair_logits.data() + V, V, got_main.data() + size_t(p + 1) * V);
      } else {
        s.truncate(0, p + 1);
        EXPECT_EQ(s.length(0), p + 1);
        EXPECT_EQ(s.mtp_length(0), p);
      }
      s.mtp_forward(hidden.data(), tokens.data() + p + 1, slot0.data(), pos.data() + p, rows,
                    got.data() + size_t(p) * V);
      p += right ? 2 : 1;
    }
    EXPECT_LT(max_abs_diff(want, got), 1e-4 * scale);
    EXPECT_LT(max_abs_diff(want_main, got_main), 1e-4 * max_abs(want_main));
  }
}

// The tokens of a cycle through 24 distinct ids, the language cycle_model() learns.
const std::vector<int32_t>& token_cycle() {
  static const std::vector<int32_t> cycle = [] {
    std::vector<int32_t> ids(300);
    std::iota(ids.begin(), ids.end(), 2);
    Rng rng(17);
    for (int i = 0; i < 24; ++i) std::swap(ids[i], ids[i + rng.below(ids.size() - i)]);
    return std::vector<int32_t>(ids.begin(), ids.begin() + 24);
  }();
  return cycle;
}

// `len` tokens of the cycle from index `start`.
std::vector<int32_t> cycle_prompt(int len, int start) {
  const auto& cyc = token_cycle();
  std::vector<int32_t> p;
  for (int i = 0; i < len; ++i) p.push_back(cyc[(start + i) % cyc.size()]);
  return p;
}

// The test model trained on windows of the cycle (cross-entropy on the main and the MTP heads,
// Adam): greedy decoding follows the cycle and the MTP module drafts it well, so speculative
// decoding meets accepted drafts as well as rejected ones (on other prompts).
Model& cycle_model() {
  static Model* m = [] {
    auto* model = new Model(test_config());
    model->init_weights(99);
    const int V = model->config().vocab_size, B = 4, T = 24;
    TrainGraph graph(*model);
    std::vector<float>& w = model->params();
    const std::vector<float>& g = model->grads();
    std::vector<float> m1(w.size(), 0.0f), m2(w.size(), 0.0f);
    Rng rng(3);
    std::vector<int32_t> tokens(size_t(B) * T);
    // dl[row] = (softmax(row) - onehot(target)) / rows, 0 for rows without a target.
    auto ce_grad = [V](float* lg, int rows, const std::vector<int32_t>& target) {
      for (int r = 0; r < rows; ++r) {
        float* row = lg + size_t(r) * V;
        if (target[r] < 0) {
          std::fill(row, row + V, 0.0f);
          continue;
        }
        const float mx = *std::max_element(row, row + V);
        double z = 0;
        for (int v = 0; v < V; ++v) z += std::exp(row[v] - mx);
        for (int v = 0; v < V; ++v)
          row[v] = static_cast<float>(std::exp(row[v] - mx) / z - (v == target[r])) / rows;
      }
    };
    std::vector<int32_t> main_target(size_t(B) * T), mtp_target(size_t(B) * (T - 1));
    for (int step = 1; step <= 150; ++step) {
      for (int b = 0; b < B; ++b) {
        const auto window = cycle_prompt(T, static_cast<int>(rng.below(24)));
        std::copy(window.begin(), window.end(), tokens.begin() + size_t(b) * T);
        for (int i = 0; i < T; ++i) main_target[b * T + i] = i + 1 < T ? window[i + 1] : -1;
        for (int i = 0; i < T - 1; ++i)
          mtp_target[b * (T - 1) + i] = i + 2 < T ? window[i + 2] : -1;
      }
      graph.forward(tokens.data(), B, T, TrainOptions{});
      ce_grad(graph.logits(), B * T, main_target);
      ce_grad(graph.mtp_logits(1), B * (T - 1), mtp_target);
      model->zero_grads();
      graph.backward(graph.logits(), {graph.mtp_logits(1)});
      const double lr = 1e-2, b1 = 0.9, b2 = 0.99;
      const double c1 = 1 - std::pow(b1, step), c2 = 1 - std::pow(b2, step);
      for (size_t i = 0; i < w.size(); ++i) {
        m1[i] = static_cast<float>(b1 * m1[i] + (1 - b1) * g[i]);
        m2[i] = static_cast<float>(b2 * m2[i] + (1 - b2) * g[i] * g[i]);
        w[i] -= static_cast<float>(lr * (m1[i] / c1) / (std::sqrt(m2[i] / c2) + 1e-8));
      }
    }
    return model;
  }();
  return *m;
}

GenerateOptions speculative_options() {
  GenerateOptions o;
  o.speculation = Speculation::kMtp;
  return o;
}

// Speculative decoding must give greedy decoding's tokens and log-probs exactly: each row of a
// 2-token verify pass is computed bit for bit as a 1-token step would compute it.
void expect_identical(const GenerationResult& plain, const GenerationResult& spec,
                      const std::string& what) {
  EXPECT_EQ(plain.tokens, spec.tokens) << what;
  EXPECT_EQ(plain.finish, spec.finish) << what;
  EXPECT_EQ(plain.raw_logprobs, spec.raw_logprobs) << what;
  EXPECT_EQ(plain.stop_token, spec.stop_token) << what;
  EXPECT_EQ(plain.text, spec.text) << what;
}

TEST(Speculative, EqualsGreedyDecoding) {
  Model& model = cycle_model();
  // On the cycle, the model continues it and the MTP module's drafts are mostly right.
  GenerationRequest on = request(1, 0, 40, 0.0f);
  on.prompt = cycle_prompt(6, 5);
  const GenerationOutput plain = generate(model, {on});
  const GenerationOutput spec = generate(model, {on}, speculative_options());
  expect_identical(plain.results[0], spec.results[0], "cycle prompt");
  EXPECT_EQ(plain.results[0].tokens[0], token_cycle()[11]) << "the model did not learn the cycle";
  EXPECT_EQ(plain.stats.drafts, 0);
  EXPECT_GT(spec.stats.acceptance_rate(), 0.8);
  EXPECT_EQ(spec.stats.decode_tokens, plain.stats.decode_tokens);
  EXPECT_EQ(spec.stats.generated_tokens, 40);
  // Each step yields its own token plus, after an accepted draft, the following one.
  EXPECT_LT(spec.stats.decode_steps, 0.7 * plain.stats.decode_steps);
  EXPECT_LE(spec.stats.decode_steps + spec.stats.accepted_drafts, plain.stats.decode_steps + 1);

  // Prompts on and off the cycle, every length limit up to 9 and a long one: the limit falls on
  // the first and on the second token of a verify pass.
  int64_t drafts = 0, accepted = 0;
  std::vector<GenerationRequest> reqs;
  for (int len : {1, 3, 8}) {
    for (int start : {0, 13}) {
      GenerationRequest r = request(len, 0, 0, 0.0f);
      r.prompt = cycle_prompt(len, start);
      reqs.push_back(r);
    }
    reqs.push_back(request(len + 2, 50 + len, 0, 0.0f));  // random tokens
  }
  for (const GenerationRequest& base : reqs)
    for (int max_new : {1, 2, 3, 4, 5, 6, 7, 8, 9, 33}) {
      GenerationRequest r = base;
      r.max_new_tokens = max_new;
      const std::string what = "prompt of " + std::to_string(r.prompt.size()) + " from " +
                               std::to_string(r.prompt[0]) + ", max_new " + std::to_string(max_new);
      const GenerationOutput a = generate(model, {r});
      const GenerationOutput b = generate(model, {r}, speculative_options());
      expect_identical(a.results[0], b.results[0], what);
      EXPECT_EQ(b.results[0].tokens.size(), size_t(max_new)) << what;
      EXPECT_LE(b.stats.accepted_drafts, b.stats.drafts);
      drafts += b.stats.drafts;
      accepted += b.stats.accepted_drafts;
    }
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, drafts);  // both paths ran
}

TEST(Speculative, StopsLikeGreedyDecoding) {
  Model& model = cycle_model();
  const Tokenizer& tok = test_tokenizer();
  GenerationRequest r = request(1, 0, 30, 0.0f);
  r.prompt = cycle_prompt(4, 2);
  const GenerationResult full = generate(model, {r}).results[0];
  ASSERT_EQ(full.tokens.size(), 30u);

  // Each of the first 12 generated tokens as the stop token (the eos case): it lands on the
  // first and on the second token of verify passes.
  for (int i = 0; i < 12; ++i) {
    GenerationRequest rs = r;
    rs.stop_tokens = {full.tokens[i]};
    const GenerationOutput a = generate(model, {rs});
    const GenerationOutput b = generate(model, {rs}, speculative_options());
    expect_identical(a.results[0], b.results[0], "stop token " + std::to_string(i));
    EXPECT_EQ(b.results[0].finish, FinishReason::kStopToken);
  }

  // Stop strings and streaming, with a tokenizer.
  GenerateOptions plain_opt, spec_opt = speculative_options();
  plain_opt.tokenizer = spec_opt.tokenizer = &tok;
  std::string bytes;
  for (int32_t t : full.tokens) bytes += tok.decode_bytes(std::span<const int32_t>(&t, 1));
  int stops = 0;
  for (size_t from : {size_t(3), bytes.size() / 2, bytes.size() - 4}) {
    size_t at = from;
    while (at + 2 <= bytes.size() && !(std::isprint(static_cast<unsigned char>(bytes[at])) &&
                                       std::isprint(static_cast<unsigned char>(bytes[at + 1]))))
      ++at;
    if (at + 2 > bytes.size()) continue;
    ++stops;
    GenerationRequest rs = r;
    rs.stop_strings = {bytes.substr(at, 2)};
    std::string streamed_a, streamed_b;
    plain_opt.on_text = [&](int, std::string_view piece) { streamed_a += piece; };
    spec_opt.on_text = [&](int, std::string_view piece) { streamed_b += piece; };
    const GenerationResult a = generate(model, {rs}, plain_opt).results[0];
    const GenerationResult b = generate(model, {rs}, spec_opt).results[0];
    expect_identical(a, b, "stop string at byte " + std::to_string(at));
    EXPECT_EQ(b.finish, FinishReason::kStopString);
    EXPECT_EQ(streamed_a, streamed_b);
  }
  EXPECT_GT(stops, 0) << "no printable text in the greedy output";

  // A full cache slot: the last verify passes lose their room for a draft.
  for (int extra = 1; extra <= 6; ++extra) {
    GenerateOptions a_opt, b_opt = speculative_options();
    a_opt.max_len = b_opt.max_len = static_cast<int>(r.prompt.size()) + extra;
    const GenerationResult a = generate(model, {r}, a_opt).results[0];
    const GenerationResult b = generate(model, {r}, b_opt).results[0];
    expect_identical(a, b, "max_len prompt + " + std::to_string(extra));
    EXPECT_EQ(b.finish, FinishReason::kContextFull);
  }
}

TEST(Speculative, BatchesMixedRequests) {
  // Greedy and sampled sequences decode together; only the greedy ones draft, and each
  // sequence's tokens are those it gets alone without speculation (log-probs to rounding:
  // batched rows go through BLAS gemm).
  Model& model = cycle_model();
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 5; ++i) {
    GenerationRequest r = request(3 + 2 * i, 70 + i, 10 + 3 * i, i == 2 ? 1.0f : 0.0f, 9 + i);
    if (i % 2 == 0) r.prompt = cycle_prompt(3 + 2 * i, 4 * i);
    reqs.push_back(r);
  }
  reqs[3].n = 2;  // two greedy samples sharing one prefill
  GenerateOptions two = speculative_options();
  two.max_batch = 2;  // slots are reused as sequences finish
  for (const GenerateOptions& opt : {speculative_options(), two}) {
    const GenerationOutput out = generate(model, reqs, opt);
    ASSERT_EQ(out.results.size(), 6u);
    EXPECT_GT(out.stats.accepted_drafts, 0);
    for (size_t i = 0; i < out.results.size(); ++i) {
      GenerationRequest alone = reqs[out.results[i].request];
      alone.n = 1;
      alone.seed += out.results[i].sample;
      expect_same_results(generate(model, {alone}).results[0], out.results[i], i);
    }
  }
  // A sampled-only call drafts nothing.
  GenerationRequest sampled = reqs[2];
  EXPECT_EQ(generate(model, {sampled}, speculative_options()).stats.drafts, 0);
}

// Decode steps (1-3 rows) share each product's output rows among the threads: the logits,
// hidden states and MTP logits must have the same bits whatever the thread count, and
// speculative decoding must still reproduce greedy decoding with several threads.
TEST(Speculative, DecodeIsExactForAnyThreadCount) {
  Model& model = cycle_model();
  const int saved = omp_get_max_threads();
  const auto prompt = cycle_prompt(6, 3);
  const std::vector<float> one = decode_trace(model, prompt, 1);
  for (int threads : {2, 3}) {
    const std::vector<float> many = decode_trace(model, prompt, threads);
    ASSERT_EQ(one.size(), many.size());
    EXPECT_EQ(std::memcmp(one.data(), many.data(), sizeof(float) * one.size()), 0)
        << threads << " threads";
  }
  omp_set_num_threads(2);
  GenerationRequest on = request(1, 0, 24, 0.0f);
  on.prompt = cycle_prompt(6, 5);
  GenerationRequest off = request(5, 77, 17, 0.0f);
  for (const GenerationRequest& r : {on, off})
    expect_identical(generate(model, {r}).results[0],
                     generate(model, {r}, speculative_options()).results[0], "2 threads");
  omp_set_num_threads(saved);
}

TEST(Speculative, NeedsAnMtpModule) {
  ModelConfig c = test_config();
  c.num_nextn_predict_layers = 0;
  Model model(c);
  model.init_weights(5);
  InferenceSession s(model, 1, 16);
  EXPECT_FALSE(s.has_mtp());
  const std::vector<float> hidden(c.hidden_size);
  const int32_t tok = 3, slot = 0, pos = 0;
  std::vector<float> logits(c.vocab_size);
  EXPECT_THROW(s.mtp_forward(hidden.data(), &tok, &slot, &pos, 1, logits.data()), Error);
  EXPECT_THROW(generate(model, {request(4, 1, 5, 0.0f)}, speculative_options()), Error);
}

TEST(Generate, ChatPromptFallsBackToR1ZeroTemplate) {
  const std::string p = chat_prompt(test_tokenizer(), "What is 2+2?");
  EXPECT_EQ(p.rfind("A conversation between User and Assistant.", 0), 0u);
  EXPECT_NE(p.find("User: What is 2+2?. Assistant:"), std::string::npos);
}

}  // namespace
}  // namespace seekr
