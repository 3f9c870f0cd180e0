// `seekr r1`: the DeepSeek-R1 pipeline end to end on synthetic verifiable tasks.
//
//   data → base (pretrain the teacher) → r1zero (GRPO, accuracy reward) and r1zero_lang (the
//   same plus the language-consistency reward) → coldstart (SFT) → reasoning_rl (GRPO: accuracy,
//   format, language) → rejection (sampling) → rs_sft (SFT of the base on the kept samples) →
//   final_rl (GRPO) → student_base (pretrain a small dense student that rarely reasons) →
//   student_rl (GRPO alone) and student_distill (SFT on the teacher's verified samples, same
//   compute, counted in tokens) → report.
//
// Every stage writes RUN/stages/<name>/ and, last, RUN/stages/<name>/done.json; a re-run skips
// the stages that have it, so an interrupted run resumes at the last finished stage. The report
// (RUN/report.md, RUN/summary.json, RUN/plots/) is rebuilt from the done.json files.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace seekr::r1 {

// Every knob of a run; presets fill it, command-line options override single fields.
struct R1Config {
  std::string preset = "quick";
  uint64_t seed = 1;
  int threads = 1;
  // Data-parallel workers (core/workers.h) for every generation (RL rollouts, evaluations,
  // rejection sampling) and for the RL updates: 2 uses both cores of the development machine.
  int workers = 2;

  // Model configs (HF config.json text); empty: the built-in teacher and student.
  std::string teacher_config, student_config;

  // Data.
  std::string mix = "add2";       // rl::named_mix for every stage
  int64_t corpus_docs = 60000;    // teacher pretraining documents
  double reasoning_share = 0.3;   // of teacher documents that reason before answering
  double student_reasoning_share = 0.02;
  double wrong_share = 0.1;
  double foreign_reasoning = 0.4;  // Chinese-prompt documents that reason in English
  int eval_problems = 512;
  int tokenizer_vocab = 384;

  // Pretraining (teacher, then student).
  int64_t base_steps = 2200;
  int64_t student_steps = 300;
  int pretrain_batch = 8, pretrain_seq = 256;
  double pretrain_lr = 3e-3;

  // Evaluation.
  int eval_k = 4;
  int max_new_tokens = 96;

  // GRPO (the R1-Zero stage; later stages scale their step counts from it).
  int64_t r1zero_steps = 120;
  int64_t reasoning_steps = 40;
  int64_t final_steps = 20;
  int64_t student_rl_steps = 40;
  int prompts_per_step = 16;
  int group = 8;
  // 1e-4: after 120 steps at 5e-5 the R1-Zero stage was still climbing (+27 points against +47
  // at 1e-4, same base); the prototype saw 2e-4 collapse the policy.
  double rl_lr = 1e-4;
  double language_weight = 0.5;
  double format_weight = 0.2;

  // SFT.
  int coldstart_examples = 800;
  int64_t coldstart_steps = 40;
  int64_t rs_sft_steps = 80;
  double sft_lr = 1e-3;
  int rejection_problems = 1500;
  int rejection_samples = 4;

  nlohmann::json to_json() const;
};

// "quick" (the README's main command: at most 15 minutes on the 2-core development machine) or
// "full" (longer, stronger). Throws seekr::Error naming an unknown preset.
R1Config r1_preset(const std::string& name);

struct R1RunOptions {
  std::string run_dir = "runs/r1";
  R1Config config;
  std::string stop_after;  // a stage name: stop once it is done (empty: run everything)
};

// Runs (or resumes) the pipeline and writes the report; returns the summary JSON.
nlohmann::json run_r1(const R1RunOptions& options);

// The built-in teacher (MLA + DeepSeekMoE, ~0.85M parameters) and dense student configs
// (HF config.json text; the pipeline replaces vocab_size with its tokenizer's).
const char* r1_teacher_config_json();
const char* r1_student_config_json();

// The stage names in order.
const std::vector<std::string>& r1_stage_names();

}  // namespace seekr::r1
