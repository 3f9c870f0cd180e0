// Batched generation over the MLA cache, and scoring of given text.
//
// generate() runs many sequences through one InferenceSession: newly admitted prompts are
// prefilled together in one forward call, then every active sequence advances by one token
// per forward call (batched decode). A finished sequence frees its cache slot at once and the
// next waiting one is admitted. Each sequence samples from its own seeded Rng, so its output
// is the same whether it runs alone or in a batch (given a model whose rows do not interact).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "serve/sampler.h"
#include "tokenizer/tokenizer.h"

namespace seekr {

struct GenerationRequest {
  std::vector<int32_t> prompt;  // at least one token
  int max_new_tokens = 128;
  SamplingParams sampling;
  uint64_t seed = 0;                      // sample j of this request draws from Rng(seed + j)
  int n = 1;                              // independent samples of this prompt
  std::vector<int32_t> stop_tokens;       // e.g. eos; kept in tokens, not in text
  std::vector<std::string> stop_strings;  // need GenerateOptions::tokenizer; cut from text
};

enum class FinishReason {
  kLength,       // max_new_tokens reached
  kStopToken,    // sampled one of stop_tokens
  kStopString,   // the text came to contain one of stop_strings
  kContextFull,  // the cache slot (max_len) is full
};
const char* to_string(FinishReason r);

struct GenerationResult {
  int request = 0;  // index into the requests
  int sample = 0;   // 0..n-1
  // Every sampled token, including a final stop token and the tokens that completed a stop
  // string (the RL policy produced them, so their log-probs count).
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;      // per token, under the sampling distribution
  std::vector<float> raw_logprobs;  // per token, log softmax of the model's logits
  // Decoded tokens without a final stop token, cut before the first stop string (empty when
  // no tokenizer was given).
  std::string text;
  FinishReason finish = FinishReason::kLength;
  int32_t stop_token = -1;  // which stop token ended it
  std::string stop_string;  // which stop string ended it
};

struct GenerationStats {
  int64_t prompt_tokens = 0;     // prefilled (once per request: its samples share it)
  int64_t generated_tokens = 0;  // sampled, over all sequences
  int64_t decode_tokens = 0;     // sampled in decode steps (each sequence's first comes from prefill)
  int decode_steps = 0;
  int prefill_calls = 0;
  double prefill_seconds = 0.0;  // prefill forwards plus sampling each first token (and drafting)
  double decode_seconds = 0.0;   // decode forwards plus sampling (and drafting)
  size_t cache_bytes_per_token = 0;
  int max_batch = 0;  // cache slots used
  // Speculative decoding: tokens the MTP module drafted and the main model then verified, and
  // how many of them it accepted (the draft was its own greedy choice).
  int64_t drafts = 0;
  int64_t accepted_drafts = 0;

  double prefill_tok_s() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tok_s() const { return decode_seconds > 0 ? decode_tokens / decode_seconds : 0; }
  double acceptance_rate() const { return drafts > 0 ? double(accepted_drafts) / drafts : 0; }
};

struct GenerationOutput {
  // One per (request, sample), request-major: results[offset(r) + j].
  std::vector<GenerationResult> results;
  GenerationStats stats;
};

enum class Speculation {
  kNone,
  // The MTP module drafts the token after next; the main model verifies it in the same forward
  // call that computes the next token (V3 §5.4.3). Greedy sequences only: their tokens are the
  // same as without it. Sampled sequences in the same call decode one token per step.
  kMtp,
};

struct GenerateOptions {
  const Tokenizer* tokenizer = nullptr;  // for text and stop strings
  AttentionMode attention = AttentionMode::kAbsorbed;
  // kMtp needs a model with an MTP module (InferenceSession::has_mtp(); generate throws
  // otherwise).
  Speculation speculation = Speculation::kNone;
  int max_batch = 0;  // sequences in flight (cache slots); 0: all of them
  // Positions per cache slot; 0: the longest prompt + max_new_tokens, capped at the config's
  // max_position_embeddings.
  int max_len = 0;
  // Cap on the tokens of one prefill call (prompts are never split; one prompt always fits).
  int max_prefill_tokens = 8192;
  // Sessionless generate() only: the requests are split into this many contiguous shares of
  // about equal sequence counts, each generated in its own session on its own core
  // (core/workers.h). Every sequence depends only on its seed, so the tokens are the same for
  // any count; max_batch applies per worker; stats seconds are the slowest worker's.
  int workers = 1;
  // Called with each new piece of a sequence's final text, in order (result index, bytes).
  // Text is held back while it could still begin a stop string or ends inside a UTF-8
  // character, so the pieces never include stop strings.
  std::function<void(int, std::string_view)> on_text;
};

// Throws seekr::Error for bad requests (empty prompt, token out of range, stop strings without
// a tokenizer, a prompt longer than max_len).
GenerationOutput generate(const Model& model, const std::vector<GenerationRequest>& requests,
                          const GenerateOptions& options = {});
// The same on a caller's session (reused across calls, e.g. by RL rollouts). Uses slots
// 0..min(max_batch, session.max_seqs())-1 and resets them; options.attention and max_len are
// taken from the session.
GenerationOutput generate(const Model& model, InferenceSession& session,
                          const std::vector<GenerationRequest>& requests,
                          const GenerateOptions& options = {});

// The prompt for --chat: DeepSeek's "<｜User｜>...<｜Assistant｜>" when the tokenizer has those
// tokens, else the R1-Zero template ("A conversation between User and Assistant. ... User:
// {question}. Assistant:"). Encode with add_special_tokens so a BOS is prepended.
std::string chat_prompt(const Tokenizer& tokenizer, std::string_view user_message);

// A checkpoint directory opened for inference: DIR/config.json, the weights (DIR/model.safetensors
// or a sharded index; MTP tensors optional) and DIR/tokenizer.json when present.
struct InferenceModel {
  std::string dir;
  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tokenizer;
  bool mtp_weights = false;  // the config has an MTP module and the weights include it
};
struct InferenceLoadOptions {
  // FP8 checkpoints only. kDequantize by default because callers such as the trainers train
  // the model they load; kKeep keeps the Linear weights FP8 (about a quarter of their FP32
  // memory) for a model that only serves InferenceSession (Model::load).
  Fp8WeightMode fp8_weights = Fp8WeightMode::kDequantize;
};
InferenceModel load_inference_model(const std::string& dir, const InferenceLoadOptions& opt = {});

// The non-blank lines of a JSON Lines file (prompt and token files), parsed. Throws
// seekr::Error naming path:line for invalid JSON.
std::vector<nlohmann::json> read_json_lines(const std::string& path);

// ---- Scoring ------------------------------------------------------------------------------

// Full logits [T, V] of tokens through the training forward (TrainGraph, no MTP).
std::vector<float> logits_train(Model& model, const std::vector<int32_t>& tokens);
// The same through an InferenceSession: one prefill call of all T tokens.
std::vector<float> logits_session(const Model& model, const std::vector<int32_t>& tokens,
                                  AttentionMode mode = AttentionMode::kAbsorbed);

struct ScoreResult {
  // logprobs[t-1] = log p(tokens[t] | tokens[0..t-1]) for t = 1..T-1.
  std::vector<float> logprobs;
  double total_logprob = 0.0;
  double mean_nll() const;    // -total / count (0 for no scored tokens)
  double perplexity() const;  // exp(mean_nll)
};
ScoreResult score_from_logits(const float* logits, int vocab, const std::vector<int32_t>& tokens);

}  // namespace seekr
