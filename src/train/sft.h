// Supervised fine-tuning on masked targets, and packed pretraining on many short documents.
//
// An example is one token sequence with a per-position mask: loss_mask[i] = 1 when tokens[i]
// is a target whose cross-entropy counts (never position 0, which nothing predicts). The loss of
// a step is the sum of CE over its counted targets divided by their number; with MTP modules
// in the config, module k's row predicting position p counts exactly when loss_mask[p] does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "train/optimizer.h"

namespace seekr {

class Model;
class TrainGraph;
class Tokenizer;
class MetricsLog;

struct SftExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> loss_mask;  // same length; 1: tokens[i] is a counted target (i >= 1)
};

// tokens = encode(prompt, add_special_tokens=true) ++ encode(completion) ++ [eos_id]
// (no eos when eos_id < 0). The mask covers the completion tokens and the eos; with
// train_on_prompt the prompt's tokens too, except position 0.
SftExample make_sft_example(const Tokenizer& tokenizer, std::string_view prompt,
                            std::string_view completion, int32_t eos_id,
                            bool train_on_prompt = false);

// One JSON object per non-blank line, any of
//   {"prompt": str, "completion": str}          prompt used verbatim
//   {"messages": [{"role": "system", ...}?, {"role": "user", "content": str},
//                 {"role": "assistant", "content": str}]}
//       template "r1chat": prompt = system + "<｜User｜>" + user + "<｜Assistant｜>" (what
//       rl::apply_template(Template::R1Chat, user) gives without a system message);
//       template "plain": prompt = system + user
//   {"text": str}                                a pretraining document, every target counted
// Throws seekr::Error naming path:line and the field at fault.
std::vector<SftExample> load_sft_jsonl(const std::string& path, const Tokenizer& tokenizer,
                                       int32_t eos_id, const std::string& template_name = "r1chat",
                                       bool train_on_prompt = false);

struct SftOptions {
  int64_t steps = 0;    // optimizer steps; 0: ceil(epochs · items per epoch / batch)
  double epochs = 1.0;  // used when steps == 0
  int batch = 16;       // sequences (examples or packed rows) per step
  // Padded mode: examples longer than this are cut to their first max_len tokens. Pack mode:
  // the row length. 0: the model's max_position_embeddings.
  int max_len = 0;
  // Concatenate the (shuffled) examples of an epoch into one stream and cut it into rows of
  // exactly max_len tokens, consecutive rows sharing one token so that every position of the
  // stream but the first is a target of exactly one row; masks travel with the tokens.
  bool pack = false;
  double lr = 1e-3;  // cosine schedule (train/schedule.h) from lr to min_lr after warmup
  double min_lr = 1e-4;
  int64_t warmup = 0;
  double weight_decay = 0.1;
  double clip = 1.0;             // max global gradient norm (<= 0: none)
  double mtp_lambda = 0.3;       // weight λ of (λ/D)·Σ_k CE_k when the config has MTP modules
  double balance_alpha = 1e-4;   // sequence-wise balance loss weight (0: off)
  double bias_gamma = 1e-3;      // aux-loss-free correction-bias update speed (0: off)
  uint64_t seed = 1234;          // example order (reshuffled every epoch)
  int threads = 0;               // OpenMP/BLAS threads; 0: leave the current setting
  // Data-parallel workers (core/workers.h): each step's rows are split between this many
  // replicas, each single-threaded on its own core, and the gradients summed: the same
  // gradient up to float summation order (the same from run to run for a given count).
  int workers = 1;
  double max_seconds = 0;        // > 0: stop after the step that reaches this wall time
  int log_every = 1;             // progress line and metrics record every N steps
  bool progress = true;          // progress line on stderr

  void validate() const;  // throws seekr::Error naming the option
};

// One step's batch: rows of T+1 tokens; inputs are tokens[:, :T], position p's target counts
// when mask[:, p] is 1 (pads have mask 0).
struct SftBatch {
  int B = 0, T = 0;
  std::vector<int32_t> tokens;  // [B, T+1]
  std::vector<uint8_t> mask;    // [B, T+1]
};

// Fills `out` with the examples, each cut to max_len tokens, padded (pad id 0, mask 0) to the
// longest, and to at least min_T + 1 tokens.
void make_padded_batch(std::span<const SftExample* const> examples, int max_len, int min_T,
                       SftBatch& out);
// The pack-mode stream of `examples` in this order as rows [R, row_len] overlapping by one
// token (row r starts at stream position r·(row_len − 1)); the last row is padded with mask 0.
void pack_rows(std::span<const SftExample* const> examples, int row_len,
               std::vector<int32_t>& tokens, std::vector<uint8_t>& mask);

struct SftStepStats {
  double loss = 0;     // main-model CE, mean over counted targets
  double mtp = 0;      // (λ/D)·Σ_k CE_k, each the mean over module k's counted targets
  double balance = 0;  // balance loss (already times α)
  double grad_norm = 0;  // before clipping
  int64_t counted = 0;   // counted main targets
};

// Masked loss, gradients and the optimizer step on one batch; keeps one TrainGraph and its
// scratch across steps, so steps of a seen shape allocate nothing.
class SftTrainer {
 public:
  SftTrainer(Model& model, const SftOptions& options);
  ~SftTrainer();

  // Zeroes the gradients, then forward, masked losses and backward: model.grads() holds the
  // gradient of loss + mtp + balance. No clipping, no update.
  SftStepStats compute_gradients(const SftBatch& batch);
  // compute_gradients, clipping, AdamW at lr and the correction-bias update.
  SftStepStats step(const SftBatch& batch, double lr);
  // Sum of main-model CE over the batch's counted targets (no gradients); adds their number
  // to *counted.
  double eval_sum(const SftBatch& batch, int64_t* counted);

  Model& model() { return model_; }
  AdamW& optimizer() { return optimizer_; }

 private:
  // One data-parallel worker: worker 0 runs on model_, worker w > 0 on replicas_[w - 1].
  struct Worker {
    std::unique_ptr<TrainGraph> graph;
    std::vector<int32_t> inputs;   // [Bw, T]
    std::vector<int32_t> targets;  // [Bw, T] main, or [Bw, T−k] for module k; −1: not counted
    std::vector<float*> dmtp;
  };

  Model& model_;
  SftOptions options_;
  AdamW optimizer_;
  std::vector<std::unique_ptr<Model>> replicas_;
  std::vector<Worker> workers_;
  std::vector<std::vector<int64_t>> load_;  // expert loads summed over the workers
};

struct SftStepRecord {
  int64_t step = 0;  // 1-based
  double loss = 0, mtp = 0, balance = 0, lr = 0, grad_norm = 0;
  int64_t counted = 0;  // counted main targets
  int64_t tokens = 0;   // positions processed (B·T, pads included)
  double seconds = 0, tokens_per_second = 0;
};

struct SftSummary {
  int64_t steps_done = 0;
  int64_t planned_steps = 0;
  bool stopped_by_time = false;  // max_seconds ended the run before planned_steps
  std::vector<double> losses;    // main CE of every step, in order
  std::vector<SftStepRecord> records;
  bool has_valid = false;
  double valid_loss = 0;  // mean CE over the validation set's counted targets, after training
  double seconds = 0;
  int64_t tokens_processed = 0;  // positions, pads included
  int64_t counted_tokens = 0;
};

// Trains `model` in place. Deterministic for a given seed and thread count. `log` (nullable)
// gets {"type": "sft", "stage": stage_name, ...} every log_every steps and one
// {"type": "sft_valid", ...} record when `valid` is given. Throws seekr::Error for bad options
// or data (an example without a counted target, a token beyond the vocabulary).
SftSummary run_sft(Model& model, const std::vector<SftExample>& train,
                   const std::vector<SftExample>* valid, const SftOptions& options,
                   MetricsLog* log, const std::string& stage_name = "sft");

}  // namespace seekr
