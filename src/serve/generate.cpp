#include "serve/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <span>

#include "core/check.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "core/workers.h"
#include "tokenizer/tokenizer.h"

namespace seekr {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStopToken:
      return "stop_token";
    case FinishReason::kStopString:
      return "stop_string";
    case FinishReason::kContextFull:
      return "context_full";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Length of the tail of s that starts an incomplete UTF-8 character (0 if s ends cleanly).
size_t incomplete_utf8_tail(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

// Longest proper prefix of any stop string that s ends with.
size_t stop_prefix_tail(std::string_view s, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& stop : stops)
    for (size_t len = std::min(stop.size() - 1, s.size()); len > best; --len)
      if (s.compare(s.size() - len, len, stop, 0, len) == 0) {
        best = len;
        break;
      }
  return best;
}

struct Sequence {
  const GenerationRequest* req = nullptr;
  GenerationResult* res = nullptr;
  int index = 0;  // into results
  Rng rng;
  int slot = -1;
  int32_t next = -1;  // last sampled token, not yet in the cache
  bool speculate = false;  // greedy under Speculation::kMtp: drafts with the MTP module
  int32_t draft = -1;      // the MTP module's guess for the token after `next` (-1: none)
  // This sequence's first row in the last main forward and that row's position: the rows of
  // the hidden states the MTP module needs.
  int row = 0;
  int row_pos = 0;
  std::string bytes;  // decoded generated text (raw bytes), for stop strings and streaming
  size_t emitted = 0;
  bool done = false;
};

class Driver {
 public:
  Driver(const Model& model, InferenceSession& session, const GenerateOptions& opt)
      : model_(model), session_(session), opt_(opt), vocab_(model.config().vocab_size) {}

  GenerationOutput run(const std::vector<GenerationRequest>& requests);

 private:
  void validate(const GenerationRequest& r, int index) const;
  void prefill(std::vector<Sequence*> batch);
  void decode_step();
  // Whether s should draft its next-but-one token: a greedy speculating sequence with room for
  // two more tokens, both in max_new_tokens and in its cache slot.
  bool wants_draft(const Sequence& s) const;
  // The token at position `pos` of s (prompt, then generated).
  static int32_t token_at(const Sequence& s, size_t pos);
  // Runs the MTP module over every sequence of `seqs` that wants a draft, on its positions
  // that are in the main cache but not yet in the MTP cache (their hidden states are rows of
  // `hidden` from the last main forward), and drafts from the last one.
  void draft(const std::vector<Sequence*>& seqs, const float* hidden);
  // Records a sampled token and decides whether the sequence is finished.
  void accept(Sequence& s, const float* logits);
  void finish(Sequence& s, FinishReason why);
  void stream(Sequence& s, size_t upto);
  int admit();  // prefills waiting sequences into free slots; returns how many

  const Model& model_;
  InferenceSession& session_;
  const GenerateOptions& opt_;
  const int vocab_;
  Sampler sampler_;
  std::vector<Sequence> seqs_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> active_;
  std::vector<int> free_slots_;
  GenerationStats stats_;
  // Forward buffers, reused every call.
  std::vector<int32_t> tok_, slot_, pos_;
  std::vector<uint8_t> rows_;
  std::vector<float> logits_, hidden_;
  // MTP module buffers: rows as in forward(), their hidden states, and who drafts from each
  // logits row.
  std::vector<int32_t> mtp_tok_, mtp_slot_, mtp_pos_;
  std::vector<uint8_t> mtp_rows_;
  std::vector<float> mtp_hidden_, mtp_logits_;
  std::vector<Sequence*> drafting_;
  bool speculate_ = false;  // some sequence speculates: forwards return hidden states
};

void Driver::validate(const GenerationRequest& r, int index) const {
  SEEKR_REQUIRE(!r.prompt.empty(), "generate: request ", index, " has an empty prompt");
  for (int32_t t : r.prompt)
    SEEKR_REQUIRE(t >= 0 && t < vocab_, "generate: request ", index, " has token id ", t,
                  " outside the vocabulary [0, ", vocab_, ")");
  SEEKR_REQUIRE(r.n >= 1, "generate: request ", index, " asks for n = ", r.n, " samples");
  SEEKR_REQUIRE(r.max_new_tokens >= 0, "generate: request ", index, " has max_new_tokens ",
                r.max_new_tokens);
  SEEKR_REQUIRE(static_cast<int>(r.prompt.size()) <= session_.max_len(), "generate: request ",
                index, " has a ", r.prompt.size(), "-token prompt; the cache holds ",
                session_.max_len(), " positions per sequence");
  SEEKR_REQUIRE(r.stop_strings.empty() || opt_.tokenizer != nullptr, "generate: request ", index,
                " has stop strings but no tokenizer was given");
  for (const auto& s : r.stop_strings)
    SEEKR_REQUIRE(!s.empty(), "generate: request ", index, " has an empty stop string");
  r.sampling.validate();
}

GenerationOutput Driver::run(const std::vector<GenerationRequest>& requests) {
  SEEKR_REQUIRE(opt_.speculation == Speculation::kNone || session_.has_mtp(),
                "generate: speculative decoding needs a model with an MTP module "
                "(num_nextn_predict_layers >= 1)");
  GenerationOutput out;
  size_t total = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    validate(requests[i], static_cast<int>(i));
    total += requests[i].n;
  }
  out.results.resize(total);
  seqs_.resize(total);
  size_t k = 0;
  for (size_t i = 0; i < requests.size(); ++i)
    for (int j = 0; j < requests[i].n; ++j, ++k) {
      Sequence& s = seqs_[k];
      s.req = &requests[i];
      s.res = &out.results[k];
      s.index = static_cast<int>(k);
      s.rng.reseed(requests[i].seed + j);
      s.res->request = static_cast<int>(i);
      s.res->sample = j;
      s.speculate = opt_.speculation == Speculation::kMtp && requests[i].sampling.greedy();
      speculate_ = speculate_ || s.speculate;
      if (requests[i].max_new_tokens == 0) {
        s.done = true;  // nothing to generate: no need to spend a prefill
        s.res->finish = FinishReason::kLength;
      } else {
        waiting_.push_back(&s);
      }
    }

  int slots = session_.max_seqs();
  if (opt_.max_batch > 0) slots = std::min(slots, opt_.max_batch);
  slots = std::min<int>(slots, std::max<size_t>(1, waiting_.size()));
  for (int i = slots - 1; i >= 0; --i) free_slots_.push_back(i);
  stats_.max_batch = slots;
  stats_.cache_bytes_per_token = session_.cache_bytes_per_token();

  while (!waiting_.empty() || !active_.empty()) {
    admit();
    if (!active_.empty()) decode_step();
  }
  out.stats = stats_;
  return out;
}

int Driver::admit() {
  int admitted = 0;
  while (!waiting_.empty() && !free_slots_.empty()) {
    std::vector<Sequence*> batch;
    int64_t tokens = 0;
    while (!waiting_.empty() && !free_slots_.empty()) {
      Sequence* s = waiting_.front();
      const int64_t p = static_cast<int64_t>(s->req->prompt.size());
      if (!batch.empty() && tokens + p > opt_.max_prefill_tokens) break;
      waiting_.pop_front();
      s->slot = free_slots_.back();
      free_slots_.pop_back();
      batch.push_back(s);
      tokens += p;
    }
    admitted += static_cast<int>(batch.size());
    prefill(std::move(batch));  // sequences that finish at once free their slot again
  }
  return admitted;
}

void Driver::prefill(std::vector<Sequence*> batch) {
  const auto t0 = Clock::now();
  tok_.clear();
  slot_.clear();
  pos_.clear();
  rows_.clear();
  // Samples of one request share its prompt: prefill it once, then copy the cache into the
  // siblings' slots. owner[i] indexes `firsts`, the sequences whose prompts are computed.
  std::vector<Sequence*> firsts;
  std::vector<size_t> owner(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    size_t j = 0;
    while (j < firsts.size() && firsts[j]->req != batch[i]->req) ++j;
    if (j == firsts.size()) firsts.push_back(batch[i]);
    owner[i] = j;
  }
  for (Sequence* s : firsts) {
    session_.reset_slot(s->slot);
    const auto& p = s->req->prompt;
    s->row = static_cast<int>(tok_.size());
    for (size_t i = 0; i < p.size(); ++i) {
      tok_.push_back(p[i]);
      slot_.push_back(s->slot);
      pos_.push_back(static_cast<int32_t>(i));
      rows_.push_back(i + 1 == p.size());
    }
  }
  logits_.resize(firsts.size() * static_cast<size_t>(vocab_));
  hidden_.resize(speculate_ ? tok_.size() * model_.config().hidden_size : 0);
  session_.forward(tok_.data(), slot_.data(), pos_.data(), static_cast<int>(tok_.size()),
                   logits_.data(), rows_.data(), speculate_ ? hidden_.data() : nullptr);
  stats_.prompt_tokens += static_cast<int64_t>(tok_.size());
  ++stats_.prefill_calls;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i] != firsts[owner[i]]) session_.copy_slot(firsts[owner[i]]->slot, batch[i]->slot);
    batch[i]->row = firsts[owner[i]]->row;  // siblings share the owner's hidden states
    batch[i]->row_pos = 0;
    active_.push_back(batch[i]);
    accept(*batch[i], logits_.data() + owner[i] * vocab_);
  }
  if (speculate_) draft(batch, hidden_.data());
  std::erase_if(active_, [](const Sequence* s) { return s->done; });
  stats_.prefill_seconds += seconds_since(t0);
}

void Driver::decode_step() {
  const auto t0 = Clock::now();
  tok_.clear();
  slot_.clear();
  pos_.clear();
  // Each sequence feeds its last token; a drafting one also feeds its draft right after, so
  // that one forward call gives both the next token and, when the draft is right, the one
  // after it.
  for (Sequence* s : active_) {
    s->row = static_cast<int>(tok_.size());
    s->row_pos = static_cast<int>(s->req->prompt.size() + s->res->tokens.size() - 1);
    tok_.push_back(s->next);
    slot_.push_back(s->slot);
    pos_.push_back(s->row_pos);
    if (s->draft >= 0) {
      tok_.push_back(s->draft);
      slot_.push_back(s->slot);
      pos_.push_back(s->row_pos + 1);
    }
  }
  const int n = static_cast<int>(tok_.size());
  logits_.resize(static_cast<size_t>(n) * vocab_);
  hidden_.resize(speculate_ ? static_cast<size_t>(n) * model_.config().hidden_size : 0);
  session_.forward(tok_.data(), slot_.data(), pos_.data(), n, logits_.data(), nullptr,
                   speculate_ ? hidden_.data() : nullptr);
  for (Sequence* s : active_) {
    const float* logits = logits_.data() + static_cast<size_t>(s->row) * vocab_;
    const int32_t draft = s->draft;
    s->draft = -1;
    accept(*s, logits);
    ++stats_.decode_tokens;
    if (draft < 0) continue;
    ++stats_.drafts;
    if (s->next == draft) {
      // The main model chose the draft, so the second row saw exactly the tokens plain
      // decoding would feed: its logits give the following token.
      ++stats_.accepted_drafts;
      if (!s->done) {
        accept(*s, logits + vocab_);
        ++stats_.decode_tokens;
      }
    } else if (!s->done) {
      session_.truncate(s->slot, s->row_pos + 1);  // forget the rejected draft
    }
  }
  if (speculate_) draft(active_, hidden_.data());
  std::erase_if(active_, [](const Sequence* s) { return s->done; });
  ++stats_.decode_steps;
  stats_.decode_seconds += seconds_since(t0);
}

bool Driver::wants_draft(const Sequence& s) const {
  if (!s.speculate || s.done) return false;
  const size_t generated = s.res->tokens.size();
  // The next step feeds `next` at prompt + generated - 1 and the draft after it.
  return generated + 2 <= static_cast<size_t>(s.req->max_new_tokens) &&
         s.req->prompt.size() + generated < static_cast<size_t>(session_.max_len());
}

int32_t Driver::token_at(const Sequence& s, size_t pos) {
  const auto& p = s.req->prompt;
  return pos < p.size() ? p[pos] : s.res->tokens[pos - p.size()];
}

void Driver::draft(const std::vector<Sequence*>& seqs, const float* hidden) {
  const int d = model_.config().hidden_size;
  mtp_tok_.clear();
  mtp_slot_.clear();
  mtp_pos_.clear();
  mtp_rows_.clear();
  mtp_hidden_.clear();
  drafting_.clear();
  for (Sequence* s : seqs) {
    if (!wants_draft(*s)) continue;
    // MTP row q joins the hidden state at q with the token at q + 1 (known up to `next`).
    const int from = session_.mtp_length(s->slot), to = session_.length(s->slot);
    SEEKR_CHECK(from >= s->row_pos && from < to, "MTP cache of slot ", s->slot, " holds ", from,
                " positions; the main cache ", to, ", the last forward began at ", s->row_pos);
    for (int q = from; q < to; ++q) {
      mtp_tok_.push_back(token_at(*s, static_cast<size_t>(q) + 1));
      mtp_slot_.push_back(s->slot);
      mtp_pos_.push_back(q);
      mtp_rows_.push_back(q + 1 == to);
      const float* h = hidden + static_cast<size_t>(s->row + q - s->row_pos) * d;
      mtp_hidden_.insert(mtp_hidden_.end(), h, h + d);
    }
    drafting_.push_back(s);
  }
  if (drafting_.empty()) return;
  mtp_logits_.resize(drafting_.size() * static_cast<size_t>(vocab_));
  session_.mtp_forward(mtp_hidden_.data(), mtp_tok_.data(), mtp_slot_.data(), mtp_pos_.data(),
                       static_cast<int>(mtp_tok_.size()), mtp_logits_.data(), mtp_rows_.data());
  for (size_t i = 0; i < drafting_.size(); ++i) {
    const float* l = mtp_logits_.data() + i * vocab_;
    drafting_[i]->draft = static_cast<int32_t>(std::max_element(l, l + vocab_) - l);
  }
}

void Driver::accept(Sequence& s, const float* logits) {
  const GenerationRequest& r = *s.req;
  GenerationResult& res = *s.res;
  const SampledToken st = sampler_.sample(logits, vocab_, r.sampling, s.rng);
  res.tokens.push_back(st.token);
  res.logprobs.push_back(st.logprob);
  res.raw_logprobs.push_back(st.raw_logprob);
  s.next = st.token;
  ++stats_.generated_tokens;

  if (std::find(r.stop_tokens.begin(), r.stop_tokens.end(), st.token) != r.stop_tokens.end()) {
    res.stop_token = st.token;
    return finish(s, FinishReason::kStopToken);
  }
  if (opt_.tokenizer) {
    const size_t old = s.bytes.size();
    s.bytes += opt_.tokenizer->decode_bytes(std::span<const int32_t>(&st.token, 1));
    // Only matches that end in the new bytes are new; take the one that starts first.
    size_t best = std::string::npos;
    for (const auto& stop : r.stop_strings) {
      const size_t from = old >= stop.size() - 1 ? old - (stop.size() - 1) : 0;
      const size_t at = s.bytes.find(stop, from);
      if (at != std::string::npos && at < best) {
        best = at;
        res.stop_string = stop;
      }
    }
    if (best != std::string::npos) {
      s.bytes.resize(best);
      return finish(s, FinishReason::kStopString);
    }
  }
  if (static_cast<int>(res.tokens.size()) >= r.max_new_tokens)
    return finish(s, FinishReason::kLength);
  // The next decode step writes position prompt + generated - 1.
  if (r.prompt.size() + res.tokens.size() - 1 >= static_cast<size_t>(session_.max_len()))
    return finish(s, FinishReason::kContextFull);
  if (opt_.on_text) {
    const std::string_view b = s.bytes;
    size_t hold = std::max(stop_prefix_tail(b, r.stop_strings), incomplete_utf8_tail(b));
    stream(s, b.size() - hold);
  }
}

void Driver::finish(Sequence& s, FinishReason why) {
  GenerationResult& res = *s.res;
  res.finish = why;
  s.done = true;
  if (opt_.tokenizer) {
    std::span<const int32_t> ids(res.tokens);
    if (why == FinishReason::kStopToken) ids = ids.first(ids.size() - 1);
    res.text = opt_.tokenizer->decode(ids);
    if (why == FinishReason::kStopString) {
      const size_t at = res.text.find(res.stop_string);
      if (at != std::string::npos) res.text.resize(at);
    }
    if (opt_.on_text) stream(s, s.bytes.size());
  }
  free_slots_.push_back(s.slot);
}

void Driver::stream(Sequence& s, size_t upto) {
  if (upto <= s.emitted) return;
  opt_.on_text(s.index, std::string_view(s.bytes).substr(s.emitted, upto - s.emitted));
  s.emitted = upto;
}

}  // namespace

GenerationOutput generate(const Model& model, InferenceSession& session,
                          const std::vector<GenerationRequest>& requests,
                          const GenerateOptions& options) {
  Driver d(model, session, options);
  return d.run(requests);
}

namespace {

GenerationOutput generate_one_session(const Model& model,
                                      const std::vector<GenerationRequest>& requests,
                                      const GenerateOptions& options) {
  int total = 0;
  size_t longest = 1;
  for (const auto& r : requests) {
    total += std::max(r.n, 0);
    longest = std::max(longest, r.prompt.size() + std::max(r.max_new_tokens, 0));
  }
  int max_len = options.max_len;
  if (max_len <= 0) {
    max_len = static_cast<int>(longest);
    const int cap = model.config().max_position_embeddings;
    if (cap > 0) max_len = std::min(max_len, cap);
  }
  int slots = std::max(1, total);
  if (options.max_batch > 0) slots = std::min(slots, options.max_batch);
  InferenceSession session(model, slots, max_len, options.attention);
  return generate(model, session, requests, options);
}

}  // namespace

GenerationOutput generate(const Model& model, const std::vector<GenerationRequest>& requests,
                          const GenerateOptions& options) {
  SEEKR_REQUIRE(options.workers >= 1, "generate: workers must be >= 1 (got ", options.workers, ")");
  const int W = std::min<int>(options.workers, static_cast<int>(requests.size()));
  if (W <= 1) return generate_one_session(model, requests, options);
  SEEKR_REQUIRE(!options.on_text, "generate: streaming (on_text) needs workers = 1");
  // Contiguous shares of about total / W sequences each: results stay request-major.
  int64_t total = 0;
  for (const auto& r : requests) total += std::max(r.n, 0);
  std::vector<size_t> cut(size_t(W) + 1, requests.size());
  cut[0] = 0;
  int64_t seen = 0;
  int share = 1;
  for (size_t i = 0; i < requests.size() && share < W; ++i) {
    seen += std::max(requests[i].n, 0);
    if (seen * W >= total * share) cut[size_t(share++)] = i + 1;
  }
  std::vector<GenerationOutput> parts(static_cast<size_t>(W));
  run_workers(W, [&](int w) {
    const size_t first = cut[size_t(w)], last = std::max(first, cut[size_t(w) + 1]);
    if (first == last) return;
    const std::vector<GenerationRequest> mine(requests.begin() + first, requests.begin() + last);
    parts[size_t(w)] = generate_one_session(model, mine, options);
  });
  GenerationOutput out;
  for (GenerationOutput& p : parts) {
    for (GenerationResult& r : p.results) out.results.push_back(std::move(r));
    GenerationStats& a = out.stats;
    const GenerationStats& b = p.stats;
    a.prompt_tokens += b.prompt_tokens;
    a.generated_tokens += b.generated_tokens;
    a.decode_tokens += b.decode_tokens;
    a.decode_steps = std::max(a.decode_steps, b.decode_steps);
    a.prefill_calls += b.prefill_calls;
    a.prefill_seconds = std::max(a.prefill_seconds, b.prefill_seconds);
    a.decode_seconds = std::max(a.decode_seconds, b.decode_seconds);
    a.drafts += b.drafts;
    a.accepted_drafts += b.accepted_drafts;
    a.cache_bytes_per_token = std::max(a.cache_bytes_per_token, b.cache_bytes_per_token);
    a.max_batch += b.max_batch;
  }
  return out;
}

std::string chat_prompt(const Tokenizer& tokenizer, std::string_view user_message) {
  const char* user =
      "<\xEF\xBD\x9C"
      "User\xEF\xBD\x9C>";
  const char* assistant =
      "<\xEF\xBD\x9C"
      "Assistant\xEF\xBD\x9C>";
  if (tokenizer.token_to_id(user) && tokenizer.token_to_id(assistant))
    return std::string(user) + std::string(user_message) + assistant;
  return "A conversation between User and Assistant. The user asks a question, and the "
         "Assistant solves it. The assistant first thinks about the reasoning process in the "
         "mind and then provides the user with the answer. The reasoning process and answer "
         "are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
         "i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: " +
         std::string(user_message) + ". Assistant:";
}

InferenceModel load_inference_model(const std::string& dir, const InferenceLoadOptions& opt) {
  SEEKR_REQUIRE(is_directory(dir), dir, ": not a checkpoint directory (expected config.json, ",
                "model.safetensors and tokenizer.json inside)");
  InferenceModel m;
  m.dir = dir;
  m.model = std::make_unique<Model>(ModelConfig::from_file(dir + "/config.json"));
  const TensorSource src = TensorSource::open(dir);
  m.model->load(src, /*allow_missing_mtp=*/true, opt.fp8_weights);
  const ModelConfig& c = m.model->config();
  m.mtp_weights =
      c.num_nextn_predict_layers > 0 &&
      src.find("model.layers." + std::to_string(c.num_hidden_layers) + ".eh_proj.weight");
  if (file_exists(dir + "/tokenizer.json"))
    m.tokenizer = Tokenizer::from_file(dir + "/tokenizer.json");
  return m;
}

std::vector<nlohmann::json> read_json_lines(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<nlohmann::json> out;
  size_t line_no = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw Error(str_cat(path, ":", line_no, ": invalid JSON: ", e.what()));
    }
  }
  return out;
}

// ---- Scoring ------------------------------------------------------------------------------

std::vector<float> logits_train(Model& model, const std::vector<int32_t>& tokens) {
  const int T = static_cast<int>(tokens.size());
  SEEKR_REQUIRE(T > 0, "score: no tokens");
  TrainGraph graph(model);
  TrainOptions opt;
  opt.mtp = false;
  graph.forward(tokens.data(), 1, T, opt);
  const size_t V = model.config().vocab_size;
  return std::vector<float>(graph.logits(), graph.logits() + T * V);
}

std::vector<float> logits_session(const Model& model, const std::vector<int32_t>& tokens,
                                  AttentionMode mode) {
  const int T = static_cast<int>(tokens.size());
  SEEKR_REQUIRE(T > 0, "score: no tokens");
  InferenceSession session(model, 1, T, mode);
  std::vector<int32_t> slots(T, 0), pos(T);
  for (int i = 0; i < T; ++i) pos[i] = i;
  std::vector<float> logits(static_cast<size_t>(T) * model.config().vocab_size);
  session.forward(tokens.data(), slots.data(), pos.data(), T, logits.data());
  return logits;
}

double ScoreResult::mean_nll() const {
  return logprobs.empty() ? 0.0 : -total_logprob / static_cast<double>(logprobs.size());
}
double ScoreResult::perplexity() const {
  return std::exp(mean_nll());
}

ScoreResult score_from_logits(const float* logits, int vocab, const std::vector<int32_t>& tokens) {
  ScoreResult r;
  for (size_t t = 1; t < tokens.size(); ++t) {
    SEEKR_REQUIRE(tokens[t] >= 0 && tokens[t] < vocab, "score: token id ", tokens[t],
                  " outside the vocabulary [0, ", vocab, ")");
    const float lp = token_logprob(logits + (t - 1) * static_cast<size_t>(vocab), vocab, tokens[t]);
    r.logprobs.push_back(lp);
    r.total_logprob += lp;
  }
  return r;
}

}  // namespace seekr
