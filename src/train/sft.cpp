#include "train/sft.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/workers.h"
#include "kernels/ops.h"
#include "kernels/simd.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/metrics.h"
#include "train/schedule.h"

namespace seekr {

// ---- examples --------------------------------------------------------------------------------

SftExample make_sft_example(const Tokenizer& tokenizer, std::string_view prompt,
                            std::string_view completion, int32_t eos_id, bool train_on_prompt) {
  SftExample ex;
  ex.tokens = tokenizer.encode(prompt, /*add_special_tokens=*/true);
  const size_t prompt_len = ex.tokens.size();
  const std::vector<int32_t> completion_ids = tokenizer.encode(completion);
  ex.tokens.insert(ex.tokens.end(), completion_ids.begin(), completion_ids.end());
  if (eos_id >= 0) ex.tokens.push_back(eos_id);
  ex.loss_mask.assign(ex.tokens.size(), 1);
  if (!train_on_prompt) std::fill_n(ex.loss_mask.begin(), prompt_len, uint8_t{0});
  if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;  // nothing predicts the first token
  return ex;
}

namespace {

// DeepSeek-R1's chat markers (the strings rl/prompt.h's R1Chat template uses).
constexpr const char* kUserMarker = "<｜User｜>";
constexpr const char* kAssistantMarker = "<｜Assistant｜>";

const std::string& string_field(const nlohmann::json& j, const char* field,
                                const std::string& where) {
  const auto it = j.find(field);
  SEEKR_REQUIRE(it != j.end(), where, ": missing field \"", field, "\"");
  SEEKR_REQUIRE(it->is_string(), where, ": field \"", field, "\" must be a string");
  return it->get_ref<const std::string&>();
}

// {"messages": [...]} as (prompt, completion) under the template.
std::pair<std::string, std::string> render_messages(const nlohmann::json& messages,
                                                    bool r1chat, const std::string& where) {
  SEEKR_REQUIRE(messages.is_array(), where, ": field \"messages\" must be an array");
  std::string system;
  size_t first = 0;
  if (!messages.empty() && messages[0].is_object() && messages[0].value("role", "") == "system") {
    system = string_field(messages[0], "content", where + ": messages[0]");
    first = 1;
  }
  SEEKR_REQUIRE(messages.size() == first + 2, where,
                ": field \"messages\" must hold [system,] user, assistant; got ", messages.size(),
                " messages");
  const char* roles[2] = {"user", "assistant"};
  std::string contents[2];
  for (int m = 0; m < 2; ++m) {
    const nlohmann::json& msg = messages[first + m];
    const std::string at = where + ": messages[" + std::to_string(first + m) + "]";
    SEEKR_REQUIRE(msg.is_object(), at, " must be an object");
    SEEKR_REQUIRE(string_field(msg, "role", at) == roles[m], at, ": field \"role\" must be \"",
                  roles[m], "\"");
    contents[m] = string_field(msg, "content", at);
  }
  if (r1chat) return {system + kUserMarker + contents[0] + kAssistantMarker, contents[1]};
  return {system + contents[0], contents[1]};
}

}  // namespace

std::vector<SftExample> load_sft_jsonl(const std::string& path, const Tokenizer& tokenizer,
                                       int32_t eos_id, const std::string& template_name,
                                       bool train_on_prompt) {
  SEEKR_REQUIRE(template_name == "r1chat" || template_name == "plain", "unknown chat template \"",
                template_name, "\" for ", path, " (expected r1chat or plain)");
  const bool r1chat = template_name == "r1chat";
  const std::string text = read_file(path);
  std::vector<SftExample> out;
  size_t start = 0;
  for (int64_t line_no = 1; start < text.size(); ++line_no) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(where + ": invalid JSON: " + e.what());
    }
    SEEKR_REQUIRE(j.is_object(), where, ": expected a JSON object");
    if (j.contains("messages")) {
      const auto [prompt, completion] = render_messages(j["messages"], r1chat, where);
      out.push_back(make_sft_example(tokenizer, prompt, completion, eos_id, train_on_prompt));
    } else if (j.contains("prompt") || j.contains("completion")) {
      out.push_back(make_sft_example(tokenizer, string_field(j, "prompt", where),
                                     string_field(j, "completion", where), eos_id,
                                     train_on_prompt));
    } else if (j.contains("text")) {
      // A document: everything after the BOS is a target.
      out.push_back(make_sft_example(tokenizer, "", string_field(j, "text", where), eos_id));
    } else {
      throw Error(where + ": expected \"prompt\" and \"completion\", \"messages\" or \"text\"");
    }
  }
  SEEKR_REQUIRE(!out.empty(), path, ": no examples");
  return out;
}

// ---- batches ---------------------------------------------------------------------------------

namespace {

// A sequence to place in a batch row: `len` tokens with their mask.
struct RowSource {
  const int32_t* tokens;
  const uint8_t* mask;
  int len;
};

// Rows padded with id 0 and mask 0 to T+1 = max(longest, min_T + 1) tokens.
void fill_batch(std::span<const RowSource> rows, int min_T, SftBatch& out) {
  int longest = 0;
  for (const RowSource& r : rows) longest = std::max(longest, r.len);
  out.B = static_cast<int>(rows.size());
  out.T = std::max(longest - 1, min_T);
  const size_t width = size_t(out.T) + 1;
  out.tokens.assign(out.B * width, 0);
  out.mask.assign(out.B * width, 0);
  for (int b = 0; b < out.B; ++b) {
    std::copy_n(rows[b].tokens, rows[b].len, out.tokens.begin() + b * width);
    std::copy_n(rows[b].mask, rows[b].len, out.mask.begin() + b * width);
  }
}

RowSource truncated(const SftExample& ex, int max_len) {
  return {ex.tokens.data(), ex.loss_mask.data(),
          static_cast<int>(std::min<size_t>(ex.tokens.size(), size_t(max_len)))};
}

}  // namespace

void make_padded_batch(std::span<const SftExample* const> examples, int max_len, int min_T,
                       SftBatch& out) {
  SEEKR_CHECK(!examples.empty() && max_len >= 1);
  std::vector<RowSource> rows;
  rows.reserve(examples.size());
  for (const SftExample* ex : examples) rows.push_back(truncated(*ex, max_len));
  fill_batch(rows, min_T, out);
}

void pack_rows(std::span<const SftExample* const> examples, int row_len,
               std::vector<int32_t>& tokens, std::vector<uint8_t>& mask) {
  SEEKR_CHECK(row_len >= 2);
  size_t n = 0;  // stream length
  for (const SftExample* ex : examples) n += ex->tokens.size();
  const size_t stride = size_t(row_len) - 1;
  const size_t rows = n > 1 ? (n - 1 + stride - 1) / stride : 0;
  tokens.assign(rows * row_len, 0);
  mask.assign(rows * row_len, 0);
  // Stream position p lands in row p / stride at column p % stride and, when it starts a row
  // (p % stride == 0, p > 0), also as the last column of the previous row.
  size_t p = 0;
  auto put = [&](size_t row, size_t col, int32_t t, uint8_t m) {
    if (row >= rows) return;
    tokens[row * row_len + col] = t;
    mask[row * row_len + col] = m;
  };
  for (const SftExample* ex : examples)
    for (size_t i = 0; i < ex->tokens.size(); ++i, ++p) {
      const size_t row = p / stride, col = p % stride;
      put(row, col, ex->tokens[i], ex->loss_mask[i]);
      if (col == 0 && row > 0) put(row - 1, stride, ex->tokens[i], ex->loss_mask[i]);
    }
}

// ---- trainer ---------------------------------------------------------------------------------

SftTrainer::SftTrainer(Model& model, const SftOptions& options)
    : model_(model),
      options_(options),
      optimizer_(param_segments(model.layout()), model.params().size(),
                 AdamWConfig{.weight_decay = options.weight_decay}) {
  SEEKR_REQUIRE(options.workers >= 1, "--workers must be >= 1; got ", options.workers);
  workers_.resize(size_t(options.workers));
  workers_[0].graph = std::make_unique<TrainGraph>(model);
  for (int w = 1; w < options.workers; ++w) {
    replicas_.push_back(std::make_unique<Model>(model.config()));
    workers_[size_t(w)].graph = std::make_unique<TrainGraph>(*replicas_.back());
  }
}

SftTrainer::~SftTrainer() = default;

namespace {

// Targets of rows [b0, b1) for module k (k = 0: the main head) into out ([b1-b0, T-k]); -1
// where not counted. Row (b, i) of module k predicts token i + k + 1. Returns counted targets.
int64_t fill_targets(const SftBatch& batch, int k, int b0, int b1, std::vector<int32_t>& out) {
  const int T = batch.T, Tk = T - k;
  const size_t width = size_t(T) + 1;
  out.resize(size_t(b1 - b0) * Tk);
  int64_t counted = 0;
  for (int b = b0; b < b1; ++b)
    for (int i = 0; i < Tk; ++i) {
      const size_t src = b * width + i + k + 1;
      const bool counts = batch.mask[src] != 0;
      out[size_t(b - b0) * Tk + i] = counts ? batch.tokens[src] : -1;
      counted += counts;
    }
  return counted;
}

void fill_inputs(const SftBatch& batch, int b0, int b1, std::vector<int32_t>& out) {
  const int T = batch.T;
  out.resize(size_t(b1 - b0) * T);
  for (int b = b0; b < b1; ++b)
    std::copy_n(batch.tokens.begin() + b * (size_t(T) + 1), T, out.begin() + size_t(b - b0) * T);
}

}  // namespace

SftStepStats SftTrainer::compute_gradients(const SftBatch& batch) {
  const ModelConfig& c = model_.config();
  const int B = batch.B, T = batch.T, V = c.vocab_size, D = c.num_nextn_predict_layers;
  const bool run_mtp = D > 0 && options_.mtp_lambda > 0;
  SEEKR_CHECK(B > 0 && T > (run_mtp ? D : 0));
  SEEKR_CHECK(batch.tokens.size() == size_t(B) * (T + 1) && batch.mask.size() == batch.tokens.size());
  const int W = std::min<int>(static_cast<int>(workers_.size()), B);

  // Every loss is normalised by the whole batch's counts, so the workers' gradients add up.
  std::vector<int64_t> counted(size_t(run_mtp ? D : 0) + 1);
  for (size_t k = 0; k < counted.size(); ++k)
    counted[k] = fill_targets(batch, int(k), 0, B, workers_[0].targets);

  model_.zero_grads();
  for (int w = 1; w < W; ++w) {  // same-size assignments: the replica's views stay valid
    Model& r = *replicas_[size_t(w) - 1];
    r.params() = model_.params();
    r.buffers() = model_.buffers();
    r.zero_grads();
  }
  std::vector<SftStepStats> parts(static_cast<size_t>(W));
  run_workers(W, [&](int w) {
    const int b0 = int(int64_t(B) * w / W), b1 = int(int64_t(B) * (w + 1) / W), Bw = b1 - b0;
    Worker& wk = workers_[size_t(w)];
    SftStepStats& s = parts[size_t(w)];
    TrainOptions topt;
    // The sequence-wise balance loss averages over the graph's rows: weighted by this worker's
    // share of the batch it sums to the whole batch's.
    topt.balance_alpha = static_cast<float>(options_.balance_alpha * Bw / B);
    topt.mtp = run_mtp;
    fill_inputs(batch, b0, b1, wk.inputs);
    wk.graph->forward(wk.inputs.data(), Bw, T, topt);

    fill_targets(batch, 0, b0, b1, wk.targets);
    float* logits = wk.graph->logits();  // [Bw*T, V], overwritten by its gradient
    const double scale = counted[0] > 0 ? 1.0 / double(counted[0]) : 0.0;
    s.loss = cross_entropy_forward_backward(logits, wk.targets.data(), logits, Bw * T, V,
                                            static_cast<float>(scale)) *
             scale;
    wk.dmtp.assign(D, nullptr);
    if (run_mtp) {
      const double weight = options_.mtp_lambda / D;
      for (int k = 1; k <= D; ++k) {
        fill_targets(batch, k, b0, b1, wk.targets);
        SEEKR_CHECK(wk.graph->mtp_rows(k) == Bw * (T - k));
        float* lk = wk.graph->mtp_logits(k);  // [Bw*(T-k), V]
        const double scale_k = counted[size_t(k)] > 0 ? weight / double(counted[size_t(k)]) : 0.0;
        s.mtp += cross_entropy_forward_backward(lk, wk.targets.data(), lk, Bw * (T - k), V,
                                                static_cast<float>(scale_k)) *
                 scale_k;
        wk.dmtp[k - 1] = lk;
      }
    }
    s.balance = wk.graph->balance_loss();
    wk.graph->backward(logits, wk.dmtp);
  });

  SftStepStats s;
  s.counted = counted[0];
  std::vector<float>& grads = model_.grads();
  for (int w = 0; w < W; ++w) {
    s.loss += parts[size_t(w)].loss;
    s.mtp += parts[size_t(w)].mtp;
    s.balance += parts[size_t(w)].balance;
    if (w > 0) {
      const std::vector<float>& g = replicas_[size_t(w) - 1]->grads();
      simd::axpy(1.0f, g.data(), grads.data(), int64_t(grads.size()));
    }
  }
  load_ = workers_[0].graph->expert_load();
  for (int w = 1; w < W; ++w) {
    const auto& l = workers_[size_t(w)].graph->expert_load();
    for (size_t i = 0; i < load_.size(); ++i)
      for (size_t e = 0; e < load_[i].size(); ++e) load_[i][e] += l[i][e];
  }
  return s;
}

SftStepStats SftTrainer::step(const SftBatch& batch, double lr) {
  SftStepStats s = compute_gradients(batch);
  std::vector<float>& grads = model_.grads();
  s.grad_norm = options_.clip > 0 ? clip_grad_norm(grads.data(), grads.size(), options_.clip)
                                  : std::sqrt(sum_of_squares(grads.data(), grads.size()));
  SEEKR_REQUIRE(std::isfinite(s.grad_norm) && std::isfinite(s.loss), "fine-tuning diverged: loss ",
                s.loss, ", gradient norm ", s.grad_norm, " at step ", optimizer_.steps() + 1,
                " (try a lower --lr)");
  optimizer_.step(model_.params().data(), grads.data(), lr);
  if (options_.bias_gamma > 0)
    model_.update_correction_bias(load_, static_cast<float>(options_.bias_gamma));
  return s;
}

double SftTrainer::eval_sum(const SftBatch& batch, int64_t* counted) {
  const int B = batch.B, T = batch.T;
  Worker& wk = workers_[0];
  fill_inputs(batch, 0, B, wk.inputs);
  TrainOptions topt;
  topt.balance_alpha = 0.0f;
  topt.mtp = false;
  wk.graph->forward(wk.inputs.data(), B, T, topt);
  *counted += fill_targets(batch, 0, 0, B, wk.targets);
  float* logits = wk.graph->logits();  // [B*T, V]
  return cross_entropy_forward_backward(logits, wk.targets.data(), logits, B * T,
                                        model_.config().vocab_size, 0.0f);
}

// ---- options ---------------------------------------------------------------------------------

void SftOptions::validate() const {
  SEEKR_REQUIRE(steps >= 0, "--steps must be >= 0; got ", steps);
  SEEKR_REQUIRE(steps > 0 || (std::isfinite(epochs) && epochs > 0),
                "--epochs must be positive when --steps is 0; got ", epochs);
  SEEKR_REQUIRE(batch >= 1, "--batch must be at least 1; got ", batch);
  SEEKR_REQUIRE(max_len == 0 || max_len >= 2, "--max-len must be 0 (the model's) or >= 2; got ",
                max_len);
  SEEKR_REQUIRE(lr > 0 && min_lr >= 0 && min_lr <= lr, "need --lr > 0 and 0 <= --min-lr <= --lr; got ",
                lr, " and ", min_lr);
  SEEKR_REQUIRE(warmup >= 0, "--warmup must be >= 0; got ", warmup);
  SEEKR_REQUIRE(weight_decay >= 0, "--weight-decay must be >= 0");
  SEEKR_REQUIRE(mtp_lambda >= 0, "mtp_lambda must be >= 0");
  SEEKR_REQUIRE(balance_alpha >= 0, "balance_alpha must be >= 0");
  SEEKR_REQUIRE(bias_gamma >= 0, "bias_gamma must be >= 0");
  SEEKR_REQUIRE(workers >= 1, "--workers must be >= 1; got ", workers);
  SEEKR_REQUIRE(threads >= 0, "--threads must be >= 0");
  SEEKR_REQUIRE(max_seconds >= 0, "--max-seconds must be >= 0");
  SEEKR_REQUIRE(log_every >= 1, "log_every must be at least 1");
}

// ---- the run ---------------------------------------------------------------------------------

namespace {

// "[stage] step 12/120 · loss 1.234 · 25.1k tok/s · ETA 1m02s" on stderr: rewritten in place
// on a terminal, else a new line at most every 10 s (and for the first and last step).
class ProgressLine {
 public:
  ProgressLine(std::string stage, int64_t total)
      : stage_(std::move(stage)), total_(total), tty_(::isatty(STDERR_FILENO) != 0) {}

  void show(int64_t step, double loss, double tokens_per_second, double elapsed,
            double eta_seconds) {
    const bool last = step >= total_;
    if (!tty_ && !last && step > 1 && elapsed - last_print_ < 10.0) return;
    last_print_ = elapsed;
    const double k = tokens_per_second / 1e3;
    std::fprintf(stderr, "%s[%s] step %lld/%lld · loss %.3f · %.*fk tok/s · ETA %s%s",
                 tty_ ? "\r\033[K" : "", stage_.c_str(), static_cast<long long>(step),
                 static_cast<long long>(total_), loss, k < 10 ? 2 : 1, k,
                 format_duration(eta_seconds).c_str(), tty_ ? "" : "\n");
    std::fflush(stderr);
    open_ = tty_;
  }
  ~ProgressLine() {
    if (open_) std::fprintf(stderr, "\n");
  }

 private:
  std::string stage_;
  int64_t total_;
  bool tty_;
  bool open_ = false;
  double last_print_ = -1e300;
};

// Examples (padded mode) or packed rows (pack mode), epoch after epoch, each epoch in a fresh
// shuffle of the examples.
class BatchStream {
 public:
  BatchStream(const std::vector<SftExample>& examples, bool pack, int max_len, int min_T,
              uint64_t seed)
      : examples_(examples), pack_(pack), max_len_(max_len), min_T_(min_T), rng_(seed) {
    order_.resize(examples.size());
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = &examples[i];
    if (pack_) {
      pack_rows(order_, max_len_, rows_, row_mask_);  // only to count the rows per epoch
      SEEKR_REQUIRE(!rows_.empty(), "the packed data holds no target (fewer than 2 tokens)");
    }
    next_ = items_per_epoch();  // the first draw starts epoch 1
  }

  int64_t items_per_epoch() const {
    return pack_ ? int64_t(rows_.size() / size_t(max_len_)) : int64_t(examples_.size());
  }

  void next(int B, SftBatch& out) {
    if (pack_) {
      // Rows are copied as they are drawn: a batch may straddle two epochs, and the next
      // epoch repacks the buffer.
      out.B = B;
      out.T = max_len_ - 1;
      out.tokens.resize(size_t(B) * max_len_);
      out.mask.resize(size_t(B) * max_len_);
      for (int b = 0; b < B; ++b) {
        if (next_ == items_per_epoch()) new_epoch();
        const size_t from = size_t(next_++) * max_len_, to = size_t(b) * max_len_;
        std::copy_n(rows_.begin() + from, max_len_, out.tokens.begin() + to);
        std::copy_n(row_mask_.begin() + from, max_len_, out.mask.begin() + to);
      }
      return;
    }
    sources_.clear();
    for (int b = 0; b < B; ++b) {
      if (next_ == items_per_epoch()) new_epoch();
      sources_.push_back(truncated(*order_[next_++], max_len_));
    }
    fill_batch(sources_, min_T_, out);
  }

 private:
  void new_epoch() {
    for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng_.below(i)]);
    if (pack_) pack_rows(order_, max_len_, rows_, row_mask_);
    next_ = 0;
  }

  const std::vector<SftExample>& examples_;
  bool pack_;
  int max_len_, min_T_;
  Rng rng_;
  std::vector<const SftExample*> order_;
  std::vector<int32_t> rows_;     // pack mode: [R, max_len] of the current epoch
  std::vector<uint8_t> row_mask_;  // [R, max_len]
  int64_t next_ = 0;
  std::vector<RowSource> sources_;  // padded mode: the examples of the batch being built
};

// Throws unless every token is a valid id and every example (as it will be cut) has a target.
void check_examples(const std::vector<SftExample>& examples, const char* which, int vocab,
                    int max_len, bool pack) {
  int64_t counted = 0;
  for (size_t e = 0; e < examples.size(); ++e) {
    const SftExample& ex = examples[e];
    SEEKR_REQUIRE(ex.tokens.size() == ex.loss_mask.size(), which, " example ", e,
                  ": tokens and loss_mask differ in length");
    for (int32_t t : ex.tokens)
      SEEKR_REQUIRE(t >= 0 && t < vocab, which, " example ", e, ": token id ", t,
                    " outside the model's vocabulary of ", vocab);
    const size_t len = pack ? ex.tokens.size() : std::min<size_t>(ex.tokens.size(), max_len);
    // Position 0 is never a target of its own example.
    const int64_t c =
        len < 2 ? 0 : std::count(ex.loss_mask.begin() + 1, ex.loss_mask.begin() + len, uint8_t{1});
    SEEKR_REQUIRE(pack || c > 0, which, " example ", e, " has no counted target",
                  ex.tokens.size() > size_t(max_len) ? " within max_len" : "");
    counted += c;
  }
  SEEKR_REQUIRE(counted > 0, "the ", which, " examples hold no counted target");
}

}  // namespace

SftSummary run_sft(Model& model, const std::vector<SftExample>& train,
                   const std::vector<SftExample>* valid, const SftOptions& options,
                   MetricsLog* log, const std::string& stage_name) {
  options.validate();
  const auto t_start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  };
  if (options.threads > 0) {
    omp_set_num_threads(options.threads);
    openblas_set_num_threads(options.threads);
  }
  const ModelConfig& c = model.config();
  const int max_len = options.max_len > 0 ? options.max_len : c.max_position_embeddings;
  SEEKR_REQUIRE(max_len - 1 <= c.max_position_embeddings, "--max-len ", max_len,
                " exceeds the model's max_position_embeddings + 1 = ",
                c.max_position_embeddings + 1);
  const int D = c.num_nextn_predict_layers;
  const int min_T = D > 0 && options.mtp_lambda > 0 ? D + 1 : 1;
  SEEKR_REQUIRE(!options.pack || max_len - 1 >= min_T, "--max-len ", max_len,
                " is too short for the model's ", D, " MTP modules");
  SEEKR_REQUIRE(!train.empty(), "no training examples");
  check_examples(train, "training", c.vocab_size, max_len, options.pack);
  if (valid) {
    SEEKR_REQUIRE(!valid->empty(), "no validation examples");
    check_examples(*valid, "validation", c.vocab_size, max_len, options.pack);
  }

  BatchStream stream(train, options.pack, max_len, min_T, options.seed);
  SftSummary summary;
  summary.planned_steps =
      options.steps > 0
          ? options.steps
          : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(
                                     options.epochs * double(stream.items_per_epoch()) /
                                     options.batch - 1e-9)));
  LrSchedule schedule;
  schedule.kind = ScheduleKind::kCosine;
  schedule.peak_lr = options.lr;
  schedule.min_lr = options.min_lr;
  schedule.warmup_steps = options.warmup;
  schedule.total_steps = summary.planned_steps;
  schedule.validate();

  SftTrainer trainer(model, options);
  SftBatch batch;
  std::optional<ProgressLine> progress;
  if (options.progress) progress.emplace(stage_name, summary.planned_steps);
  for (int64_t step = 0; step < summary.planned_steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    stream.next(options.batch, batch);
    const double lr = schedule.lr(step);
    const SftStepStats s = trainer.step(batch, lr);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    SftStepRecord r;
    r.step = step + 1;
    r.loss = s.loss;
    r.mtp = s.mtp;
    r.balance = s.balance;
    r.lr = lr;
    r.grad_norm = s.grad_norm;
    r.counted = s.counted;
    r.tokens = int64_t(batch.B) * batch.T;
    r.seconds = dt;
    r.tokens_per_second = dt > 0 ? double(r.tokens) / dt : 0.0;
    summary.losses.push_back(r.loss);
    summary.records.push_back(r);
    summary.steps_done = r.step;
    summary.tokens_processed += r.tokens;
    summary.counted_tokens += r.counted;

    const double now = elapsed();
    const bool out_of_time = options.max_seconds > 0 && now >= options.max_seconds;
    const bool last = r.step == summary.planned_steps || out_of_time;
    if (r.step % options.log_every == 0 || last) {
      if (log)
        log->append({{"type", "sft"},
                     {"stage", stage_name},
                     {"step", r.step},
                     {"total_steps", summary.planned_steps},
                     {"loss", r.loss},
                     {"mtp_loss", r.mtp},
                     {"balance_loss", r.balance},
                     {"lr", r.lr},
                     {"grad_norm", r.grad_norm},
                     {"counted_tokens", r.counted},
                     {"tokens", r.tokens},
                     {"tokens_per_second", r.tokens_per_second},
                     {"step_seconds", r.seconds},
                     {"elapsed_seconds", now}});
      if (progress) {
        double eta = now / double(r.step) * double(summary.planned_steps - r.step);
        if (options.max_seconds > 0) eta = std::min(eta, std::max(0.0, options.max_seconds - now));
        progress->show(r.step, r.loss, r.tokens_per_second, now, eta);
      }
    }
    if (out_of_time) {
      summary.stopped_by_time = r.step < summary.planned_steps;
      break;
    }
  }
  progress.reset();

  if (valid) {
    std::vector<const SftExample*> order(valid->size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = &(*valid)[i];
    std::vector<int32_t> rows;
    std::vector<uint8_t> row_mask;
    std::vector<RowSource> sources;
    if (options.pack) {
      pack_rows(order, max_len, rows, row_mask);
      for (size_t at = 0; at < rows.size(); at += max_len)
        sources.push_back({rows.data() + at, row_mask.data() + at, max_len});
    } else {
      for (const SftExample* ex : order) sources.push_back(truncated(*ex, max_len));
    }
    double sum = 0;
    int64_t counted = 0;
    for (size_t i = 0; i < sources.size(); i += options.batch) {
      const size_t n = std::min(sources.size() - i, size_t(options.batch));
      fill_batch(std::span<const RowSource>(sources.data() + i, n), 1, batch);
      sum += trainer.eval_sum(batch, &counted);
    }
    summary.has_valid = true;
    summary.valid_loss = counted > 0 ? sum / double(counted) : 0.0;
    if (log)
      log->append({{"type", "sft_valid"},
                   {"stage", stage_name},
                   {"step", summary.steps_done},
                   {"valid_loss", summary.valid_loss},
                   {"counted_tokens", counted}});
  }
  summary.seconds = elapsed();
  return summary;
}

}  // namespace seekr
