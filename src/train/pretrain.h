// Pretraining: the loss at the logits, gradient accumulation, clipping, AdamW and the
// auxiliary-loss-free bias update (Trainer), and the whole `seekr pretrain` run around it
// (run_pretrain: data, schedule, metrics, evaluation, checkpoints, resume).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace seekr {

class Model;
class TrainGraph;

struct TrainHyper {
  double mtp_lambda = 0.3;      // λ: L = CE + (λ/D)·Σ_k CE_k + balance
  double balance_alpha = 1e-4;  // α of the sequence-wise balance loss (0: off)
  double bias_gamma = 1e-3;     // γ of the correction-bias update (0: off)
  double clip = 1.0;            // max global gradient norm (<= 0: no clipping)
  // Linear-layer GEMM precision: fp32, or the bf16 / fp8 mixed-precision modes of
  // kernels/linear.h (master weights, gradients and optimizer arithmetic stay FP32).
  GemmPrecision precision = GemmPrecision::kF32;
  AdamWConfig adamw;
};

// Loss terms of one optimizer step, each the mean over its micro-batches.
struct StepResult {
  double loss = 0;  // ce + mtp + balance
  double ce = 0;    // main next-token CE, mean over B·T targets
  double mtp = 0;   // (λ/D)·Σ_k CE_k, CE_k the mean over module k's B·(T−k) rows
  double balance = 0;
  double grad_norm = 0;                    // global gradient norm before clipping
  std::vector<std::vector<int64_t>> load;  // expert selections summed over the micro-batches
};

class Trainer {
 public:
  Trainer(Model& model, const TrainHyper& hp);
  ~Trainer();

  // One optimizer step. Each micro-batch is tokens [B, T+1]: inputs tokens[:, :T], main
  // targets tokens[:, 1:], MTP module k's row (b, i) targets tokens[b, i+k+1]. Gradients are
  // accumulated with every loss scaled by 1/micro.size(); then clipping, AdamW at `lr` and,
  // when γ > 0, Model::update_correction_bias with the load summed over the micro-batches.
  StepResult step(std::span<const int32_t* const> micro, int B, int T, double lr);
  // The same, into `out`, whose storage is reused: with the same shapes as the step before,
  // a step makes no heap allocation (tests/test_no_alloc.cpp).
  void step(std::span<const int32_t* const> micro, int B, int T, double lr, StepResult& out);
  // Mean main-model CE of tokens [B, T+1] (no MTP, no balance loss, no gradients).
  double eval_ce(const int32_t* tokens, int B, int T);

  Model& model() { return model_; }
  AdamW& optimizer() { return optimizer_; }
  const TrainHyper& hyper() const { return hp_; }

 private:
  Model& model_;
  TrainHyper hp_;
  AdamW optimizer_;
  std::unique_ptr<TrainGraph> graph_;
  std::vector<int32_t> inputs_, targets_, mtp_targets_;
  std::vector<float*> dmtp_;
};

struct PretrainOptions {
  std::string config_path;     // model config (ignored on resume: the checkpoint's is used)
  std::string tokenizer_path;  // copied into every checkpoint when set
  std::vector<std::string> train_shards, valid_shards;
  std::string out_dir;     // metrics.jsonl, loss.png and checkpoint/ go here
  std::string resume_dir;  // a checkpoint directory to continue from
  int64_t steps = 1000;
  int batch = 8, seq = 256, accum = 1;
  LrSchedule schedule;  // total_steps is set from `steps`
  TrainHyper hyper;
  uint64_t seed = 1234;
  bool shuffle = true;
  bool append_eos = false;  // add the config's eos_token_id after every document
  int64_t save_every = 0;   // 0: only at the end
  int64_t eval_every = 0;   // 0: only at the end (when valid_shards is set)
  int eval_batches = 8;
  int64_t stop_at = 0;     // >0: save and stop after this step (as if interrupted)
  int threads = 0;         // 0: leave OpenMP's default
  double peak_gflops = 0;  // MFU denominator; 0: kDefaultPeakGflopsPerThread · threads
  int log_every = 1;       // progress line and JSONL record every N steps
  bool progress = true;    // live progress line on stderr
  bool plot = true;

  nlohmann::json to_json() const;
  void validate() const;  // throws seekr::Error naming the option
};

// What a run did, for callers and tests.
struct PretrainSummary {
  int64_t first_step = 0;  // steps already done when this run started (resume)
  int64_t last_step = 0;
  std::vector<double> losses;  // total loss of every step this run took, in order
  std::vector<double> valid_losses;
  std::string checkpoint_dir;
};

PretrainSummary run_pretrain(const PretrainOptions& opt);

// Sorted paths matching a glob pattern; throws seekr::Error naming the pattern if none does.
std::vector<std::string> expand_glob(const std::string& pattern);

}  // namespace seekr
