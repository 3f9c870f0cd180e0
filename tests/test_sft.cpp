// Supervised fine-tuning: example masks, the masked loss against a brute-force computation,
// overfitting a micro model, packing, determinism, JSONL errors and the wall-time stop.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "core/rng.h"
#include "model/model.h"
#include "serve/generate.h"
#include "tokenizer/tokenizer.h"
#include "train/sft.h"

namespace seekr {
namespace {

const Tokenizer& test_tokenizer() {
  static const Tokenizer tok = [] {
    std::vector<std::string> texts;
    for (int i = 0; i < 40; ++i)
      texts.push_back("question: what is " + std::to_string(i * 37) + " plus " +
                      std::to_string(i) + "? answer: the sum is " + std::to_string(i * 38) +
                      ", said the cat to the dog.");
    BpeTrainConfig cfg;
    cfg.vocab_size = 300;
    cfg.special_tokens = {"<bos>", "<eos>"};
    cfg.bos_token = "<bos>";
    cfg.max_digits = 1;
    return train_bpe(texts, cfg);
  }();
  return tok;
}
constexpr int32_t kBos = 0, kEos = 1;

// A ~100k-parameter DeepSeek-V3 model with MoE layers and one MTP module.
ModelConfig micro_config() {
  ModelConfig c =
      ModelConfig::from_file(std::string(SEEKR_SHARED_DIR) + "/bench-configs/tiny.json");
  c.vocab_size = test_tokenizer().vocab_size();
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.moe_intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.kv_lora_rank = 32;
  c.qk_nope_head_dim = 16;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 16;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.n_group = 2;
  c.topk_group = 1;
  c.max_position_embeddings = 64;
  c.bos_token_id = kBos;
  c.eos_token_id = kEos;
  return c;
}

TEST(SftExample, MasksExactlyTheCompletionAndEos) {
  const Tokenizer& tok = test_tokenizer();
  const std::vector<int32_t> p = tok.encode("question: what is 3 plus 4?", true);
  const std::vector<int32_t> q = tok.encode(" answer: the sum is 7");
  ASSERT_EQ(p.front(), kBos);
  const SftExample ex = make_sft_example(tok, "question: what is 3 plus 4?",
                                         " answer: the sum is 7", kEos);
  ASSERT_EQ(ex.tokens.size(), p.size() + q.size() + 1);
  ASSERT_EQ(ex.loss_mask.size(), ex.tokens.size());
  for (size_t i = 0; i < ex.tokens.size(); ++i) {
    const int32_t want = i < p.size() ? p[i] : i < p.size() + q.size() ? q[i - p.size()] : kEos;
    EXPECT_EQ(ex.tokens[i], want) << i;
    EXPECT_EQ(ex.loss_mask[i], i >= p.size() ? 1 : 0) << i;
  }
  // Without eos; with the prompt counted (but never position 0).
  const SftExample no_eos = make_sft_example(tok, "question:", " x", -1);
  EXPECT_NE(no_eos.tokens.back(), kEos);
  const SftExample all = make_sft_example(tok, "question: what", " x", kEos, true);
  EXPECT_EQ(all.loss_mask[0], 0);
  for (size_t i = 1; i < all.loss_mask.size(); ++i) EXPECT_EQ(all.loss_mask[i], 1) << i;
}

// Brute force in double from the logits: the main CE over counted targets / their number plus
// (λ/D)·CE of the MTP module over its counted targets / their number. The gradient at the logits
// is (softmax − onehot) times those weights on counted rows and exactly 0 elsewhere; pushed
// through TrainGraph::backward it must give the same parameter gradients as SftTrainer.
TEST(SftTrainer, MaskedLossAndGradientMatchBruteForce) {
  const ModelConfig c = micro_config();
  const int V = c.vocab_size, D = c.num_nextn_predict_layers;
  ASSERT_EQ(D, 1);
  const Tokenizer& tok = test_tokenizer();
  const std::vector<SftExample> examples = {
      make_sft_example(tok, "question: what is 12 plus 3?", " answer: the sum is 15", kEos),
      make_sft_example(tok, "question: what is 5 plus 1?", " the sum is 6", kEos),
      make_sft_example(tok, "question:", " the dog", kEos)};
  std::vector<const SftExample*> ptrs;
  for (const auto& e : examples) ptrs.push_back(&e);
  SftBatch batch;
  make_padded_batch(ptrs, 64, 1, batch);
  const int B = batch.B, T = batch.T;
  ASSERT_EQ(B, 3);
  ASSERT_EQ(size_t(T) + 1, examples[0].tokens.size());  // the longest sets T

  SftOptions opt;
  opt.mtp_lambda = 0.5;
  opt.balance_alpha = 0;  // the balance loss is the graph's own, checked elsewhere
  Model model(c);
  model.init_weights(7);
  SftTrainer trainer(model, opt);
  const SftStepStats got = trainer.compute_gradients(batch);
  const std::vector<float> got_grads = model.grads();

  // Reference: a fresh graph on the same inputs.
  std::vector<int32_t> inputs(size_t(B) * T, 0);  // [B, T], pads 0 as make_padded_batch
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < T && i < int(examples[b].tokens.size()); ++i)
      inputs[size_t(b) * T + i] = examples[b].tokens[i];
  TrainGraph graph(model);
  TrainOptions topt;
  topt.balance_alpha = 0;
  topt.mtp = true;
  graph.forward(inputs.data(), B, T, topt);
  // Target of row (b, i) at depth k (0 = main): position i + k + 1 of example b, when it
  // exists and its mask is 1.
  auto brute = [&](float* logits, int k, double weight, double* loss) {
    const int Tk = T - k;
    int64_t counted = 0;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Tk; ++i) {
        const size_t p = size_t(i) + k + 1;
        counted += p < examples[b].tokens.size() && examples[b].loss_mask[p];
      }
    double sum = 0;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Tk; ++i) {
        float* row = logits + (size_t(b) * Tk + i) * V;
        const size_t p = size_t(i) + k + 1;
        if (!(p < examples[b].tokens.size() && examples[b].loss_mask[p])) {
          std::fill_n(row, V, 0.0f);
          continue;
        }
        double mx = row[0];
        for (int v = 1; v < V; ++v) mx = std::max(mx, double(row[v]));
        double z = 0;
        for (int v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
        const int32_t t = examples[b].tokens[p];
        sum += mx + std::log(z) - row[t];
        for (int v = 0; v < V; ++v)
          row[v] = static_cast<float>(weight / counted *
                                      (std::exp(double(row[v]) - mx) / z - (v == t)));
      }
    *loss = weight * sum / counted;
  };
  double main_loss = 0, mtp_loss = 0;
  brute(graph.logits(), 0, 1.0, &main_loss);
  brute(graph.mtp_logits(1), 1, opt.mtp_lambda, &mtp_loss);
  EXPECT_NEAR(got.loss, main_loss, 1e-5 * main_loss);
  EXPECT_NEAR(got.mtp, mtp_loss, 1e-5 * mtp_loss);
  int64_t want_counted = 0;
  for (const auto& e : examples)
    for (size_t i = 1; i < e.loss_mask.size(); ++i) want_counted += e.loss_mask[i];
  EXPECT_EQ(got.counted, want_counted);

  model.zero_grads();
  graph.backward(graph.logits(), {graph.mtp_logits(1)});
  const std::vector<float>& want_grads = model.grads();
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < want_grads.size(); ++i) {
    max_abs = std::max(max_abs, double(std::fabs(want_grads[i])));
    max_diff = std::max(max_diff, double(std::fabs(want_grads[i] - got_grads[i])));
  }
  EXPECT_GT(max_abs, 0.0);
  EXPECT_LT(max_diff, 1e-5 * max_abs);
}

// Data-parallel workers split the batch's rows; every loss keeps the whole batch's
// normalisation (the balance loss its share of the rows), so the gradient, the losses and the
// expert loads that steer the correction bias are the single worker's.
TEST(SftTrainer, WorkersGiveTheWholeBatchGradient) {
  const ModelConfig c = micro_config();
  const Tokenizer& tok = test_tokenizer();
  std::vector<SftExample> examples;
  for (int i = 0; i < 5; ++i)
    examples.push_back(make_sft_example(tok, "question: what is " + std::to_string(i * 7) + "?",
                                        std::string(" the sum is ") + std::to_string(i * 38) +
                                            (i % 2 ? ", said the cat" : ""),
                                        kEos));
  std::vector<const SftExample*> ptrs;
  for (const auto& e : examples) ptrs.push_back(&e);
  SftBatch batch;
  make_padded_batch(ptrs, 64, 2, batch);
  ASSERT_EQ(batch.B, 5);

  struct Run {
    SftStepStats stats;
    std::vector<float> grads, buffers_after_step;
  };
  auto run = [&](int workers) {
    SftOptions opt;
    opt.mtp_lambda = 0.5;
    opt.balance_alpha = 0.01;  // large enough to matter in the gradient
    opt.bias_gamma = 0.01;
    opt.workers = workers;
    Model model(c);
    model.init_weights(7);
    SftTrainer trainer(model, opt);
    Run r;
    r.stats = trainer.compute_gradients(batch);
    r.grads = model.grads();
    trainer.step(batch, 1e-3);
    r.buffers_after_step = model.buffers();
    return r;
  };
  const Run one = run(1);
  for (int workers : {2, 3}) {
    SCOPED_TRACE(workers);
    const Run many = run(workers);
    EXPECT_EQ(many.stats.counted, one.stats.counted);
    EXPECT_NEAR(many.stats.loss, one.stats.loss, 1e-6 * one.stats.loss);
    EXPECT_NEAR(many.stats.mtp, one.stats.mtp, 1e-6 * one.stats.mtp);
    EXPECT_GT(one.stats.balance, 0.0);
    EXPECT_NEAR(many.stats.balance, one.stats.balance, 1e-6 * one.stats.balance);
    double norm = 0, diff = 0;
    for (size_t i = 0; i < one.grads.size(); ++i) {
      norm += double(one.grads[i]) * one.grads[i];
      diff += double(one.grads[i] - many.grads[i]) * (one.grads[i] - many.grads[i]);
    }
    EXPECT_GT(norm, 0.0);
    EXPECT_LT(std::sqrt(diff), 1e-5 * std::sqrt(norm));
    // The correction bias moves by gamma * sign(mean load - load): the same loads, the same bias.
    EXPECT_EQ(many.buffers_after_step, one.buffers_after_step);
  }
  // And the same again for the same count.
  EXPECT_EQ(run(2).grads, run(2).grads);
}

// Prompt/completion pairs the micro model learns by heart.
std::vector<std::pair<std::string, std::string>> memorable_pairs() {
  return {{"question: what is 2 plus 3?", " the sum is 5"},
          {"question: what is 7 plus 1?", " the cat"},
          {"question: what is 4 plus 4?", " the dog said 8"},
          {"question: what is 9 plus 0?", " answer: 9"}};
}

std::vector<SftExample> memorable_examples() {
  std::vector<SftExample> out;
  for (const auto& [p, q] : memorable_pairs())
    out.push_back(make_sft_example(test_tokenizer(), p, q, kEos));
  return out;
}

TEST(RunSft, MicroModelOverfitsAndReproducesCompletions) {
  const Tokenizer& tok = test_tokenizer();
  const std::vector<SftExample> train = memorable_examples();
  Model model(micro_config());
  model.init_weights(3);
  SftOptions opt;
  opt.steps = 120;
  opt.batch = 4;
  opt.lr = 1e-2;
  opt.min_lr = 1e-3;
  opt.warmup = 5;
  opt.weight_decay = 0;
  opt.progress = false;
  const SftSummary s = run_sft(model, train, &train, opt, nullptr);
  EXPECT_EQ(s.steps_done, 120);
  EXPECT_GT(s.losses.front(), 3.0);
  EXPECT_LT(s.losses.back(), 0.05);
  ASSERT_TRUE(s.has_valid);
  EXPECT_LT(s.valid_loss, 0.05);

  std::vector<GenerationRequest> requests;
  for (const auto& [p, q] : memorable_pairs()) {
    GenerationRequest r;
    r.prompt = tok.encode(p, true);
    r.max_new_tokens = 16;
    r.sampling.temperature = 0;
    r.stop_tokens = {kEos};
    requests.push_back(r);
  }
  GenerateOptions gopt;
  gopt.tokenizer = &tok;
  const GenerationOutput out = generate(model, requests, gopt);
  ASSERT_EQ(out.results.size(), requests.size());
  for (const GenerationResult& r : out.results) {
    EXPECT_EQ(r.text, memorable_pairs()[r.request].second) << r.request;
    EXPECT_EQ(r.finish, FinishReason::kStopToken) << r.request;
  }
}

TEST(PackRows, KeepsEveryCountedTargetExactlyOnce) {
  // Examples of assorted lengths with id = stream position, so each row position is traceable.
  std::vector<SftExample> examples;
  int32_t next_id = 0;
  Rng rng(5);
  for (int e = 0; e < 9; ++e) {
    SftExample ex;
    const int len = 1 + int(rng.below(11));
    for (int i = 0; i < len; ++i) {
      ex.tokens.push_back(next_id++);
      ex.loss_mask.push_back(i > 0 && rng.below(3) != 0);
    }
    examples.push_back(ex);
  }
  std::vector<const SftExample*> ptrs;
  for (const auto& e : examples) ptrs.push_back(&e);
  const int row_len = 8;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  pack_rows(ptrs, row_len, tokens, mask);
  ASSERT_EQ(tokens.size() % row_len, 0u);
  const size_t rows = tokens.size() / row_len;
  EXPECT_EQ(rows, (size_t(next_id) - 1 + row_len - 2) / (row_len - 1));

  // Targets are positions 1.. of each row: every stream position p >= 1 appears there once.
  std::vector<int> seen(next_id, 0);
  std::vector<uint8_t> stream_mask;
  for (const auto& e : examples) stream_mask.insert(stream_mask.end(), e.loss_mask.begin(), e.loss_mask.end());
  for (size_t r = 0; r < rows; ++r) {
    EXPECT_EQ(tokens[r * row_len], int32_t(r * (row_len - 1))) << "row " << r << " start";
    for (int i = 1; i < row_len; ++i) {
      const size_t p = r * (row_len - 1) + i;
      if (p >= size_t(next_id)) {
        EXPECT_EQ(mask[r * row_len + i], 0) << "padding counts";
        continue;
      }
      EXPECT_EQ(tokens[r * row_len + i], int32_t(p));
      EXPECT_EQ(mask[r * row_len + i], stream_mask[p]);
      ++seen[p];
    }
  }
  for (int p = 1; p < next_id; ++p) EXPECT_EQ(seen[p], 1) << p;

  // And the run counts them all: one packed epoch's counted targets = the data's.
  const Tokenizer& tok = test_tokenizer();
  std::vector<SftExample> docs;
  int64_t want = 0;
  for (int i = 0; i < 6; ++i) {
    docs.push_back(make_sft_example(tok, "", "the cat sat " + std::to_string(i * 7), kEos));
    for (size_t k = 1; k < docs.back().loss_mask.size(); ++k) want += docs.back().loss_mask[k];
  }
  int64_t stream_len = 0;
  for (const auto& d : docs) stream_len += int64_t(d.tokens.size());
  Model model(micro_config());
  model.init_weights(1);
  SftOptions opt;
  opt.pack = true;
  opt.max_len = 8;
  opt.batch = int((stream_len - 1 + 6) / 7);  // one step = exactly one epoch's rows
  opt.steps = 1;
  opt.progress = false;
  const SftSummary s = run_sft(model, docs, nullptr, opt, nullptr);
  EXPECT_EQ(s.counted_tokens, want);
  EXPECT_EQ(s.tokens_processed, int64_t(opt.batch) * 7);
}

TEST(RunSft, SameSeedSameLosses) {
  const Tokenizer& tok = test_tokenizer();
  std::vector<SftExample> train;
  for (int i = 0; i < 10; ++i)
    train.push_back(make_sft_example(tok, "question: what is " + std::to_string(i) + " plus 1?",
                                     " the sum is " + std::to_string(i + 1), kEos));
  auto run = [&](uint64_t seed, bool pack) {
    Model model(micro_config());
    model.init_weights(11);
    SftOptions opt;
    opt.epochs = 3;
    opt.batch = 4;
    opt.pack = pack;
    opt.max_len = pack ? 24 : 0;
    opt.seed = seed;
    opt.progress = false;
    return run_sft(model, train, nullptr, opt, nullptr).losses;
  };
  for (bool pack : {false, true}) {
    const std::vector<double> a = run(42, pack), b = run(42, pack), other = run(43, pack);
    if (!pack) {
      EXPECT_EQ(a.size(), 8u);  // ceil(3 · 10 examples / 4)
    }
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a, b) << "pack " << pack;
    EXPECT_NE(a, other) << "pack " << pack;  // the seed sets the order
  }
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = (std::filesystem::temp_directory_path() /
             ("seekr_sft_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++) +
              ".jsonl"))
                .string();
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

TEST(LoadSftJsonl, ReadsEveryFormat) {
  const Tokenizer& tok = test_tokenizer();
  const TempFile f(
      "{\"prompt\": \"question: what is 1 plus 1?\", \"completion\": \" 2\"}\n"
      "\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"what is 1 plus 1?\"}, "
      "{\"role\": \"assistant\", \"content\": \" 2\"}]}\n"
      "{\"text\": \"the cat sat\"}\n");
  const std::vector<SftExample> ex = load_sft_jsonl(f.path(), tok, kEos);
  ASSERT_EQ(ex.size(), 3u);
  const SftExample want0 = make_sft_example(tok, "question: what is 1 plus 1?", " 2", kEos);
  EXPECT_EQ(ex[0].tokens, want0.tokens);
  EXPECT_EQ(ex[0].loss_mask, want0.loss_mask);
  const SftExample want1 =
      make_sft_example(tok, "<｜User｜>what is 1 plus 1?<｜Assistant｜>", " 2", kEos);
  EXPECT_EQ(ex[1].tokens, want1.tokens);
  EXPECT_EQ(ex[1].loss_mask, want1.loss_mask);
  // A document: BOS then every token counted.
  EXPECT_EQ(ex[2].tokens.front(), kBos);
  EXPECT_EQ(ex[2].loss_mask[0], 0);
  for (size_t i = 1; i < ex[2].loss_mask.size(); ++i) EXPECT_EQ(ex[2].loss_mask[i], 1);
}

TEST(LoadSftJsonl, ErrorsNamePathLineAndField) {
  const Tokenizer& tok = test_tokenizer();
  auto message = [&](const std::string& text) {
    const TempFile f(text);
    try {
      load_sft_jsonl(f.path(), tok, kEos);
    } catch (const Error& e) {
      return std::string(e.what()) + " @" + f.path();
    }
    return std::string("no error");
  };
  const std::string good = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
  auto expect_has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg << " lacks " << part;
  };
  std::string m = message(good + "\n{\"prompt\": \"a\", \"completion\": 3}\n");
  expect_has(m, ".jsonl:3: field \"completion\" must be a string");
  m = message(good + "{not json\n");
  expect_has(m, ".jsonl:2: invalid JSON");
  m = message(good + good + "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n");
  expect_has(m, ".jsonl:3: field \"messages\"");
  m = message("{\"prompt\": \"a\"}\n");
  expect_has(m, ".jsonl:1: missing field \"completion\"");
  m = message("{\"question\": \"a\"}\n");
  expect_has(m, ".jsonl:1: expected \"prompt\" and \"completion\"");
}

TEST(RunSft, MaxSecondsStopsEarly) {
  const std::vector<SftExample> train = memorable_examples();
  Model model(micro_config());
  model.init_weights(2);
  SftOptions opt;
  opt.steps = 1000000;
  opt.batch = 2;
  opt.max_seconds = 0.2;
  opt.progress = false;
  const SftSummary s = run_sft(model, train, nullptr, opt, nullptr);
  EXPECT_TRUE(s.stopped_by_time);
  EXPECT_GE(s.steps_done, 1);
  EXPECT_LT(s.steps_done, opt.steps);
  EXPECT_EQ(s.losses.size(), size_t(s.steps_done));
  EXPECT_GE(s.seconds, 0.2);
  EXPECT_LT(s.seconds, 5.0);
}

TEST(RunSft, RejectsExamplesWithoutTargets) {
  const Tokenizer& tok = test_tokenizer();
  Model model(micro_config());
  SftOptions opt;
  opt.progress = false;
  opt.max_len = 4;  // cuts the completion away
  const std::vector<SftExample> train = {
      make_sft_example(tok, "question: what is 12 plus 3?", " 15", kEos)};
  try {
    run_sft(model, train, nullptr, opt, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training example 0 has no counted target within max_len"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace seekr
