// Training checkpoints: a directory a Hugging Face user recognises, plus what it takes to
// continue the run bit for bit.
//
//   DIR/config.json              the model config (HF deepseek_v3 format)
//   DIR/model.safetensors        parameters and correction-bias buffers under HF names (F32)
//   DIR/tokenizer.json           copied from the run's tokenizer, when it has one
//   DIR/optimizer.safetensors    exp_avg.<name>, exp_avg_sq.<name> (F32) and step (I64)
//   DIR/trainer_state.json       step, tokens seen, schedule, data-loader and RNG state, options
//
// A checkpoint is written into a fresh sibling DIR.tmp-XXXXXX and swapped in only once every
// file is complete, so a crash at any moment leaves either the previous checkpoint or the new
// one at DIR.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/rng.h"
#include "train/schedule.h"

namespace seekr {

class Model;
class AdamW;
struct ModelConfig;

struct TrainerState {
  int64_t step = 0;         // optimizer steps completed
  int64_t tokens_seen = 0;  // training target tokens consumed (B·T·accum per step)
  LrSchedule schedule;
  std::string data_state;  // DataLoader::state_json() of the training stream
  Rng::State rng{};        // the trainer's RNG (seeded from --seed)
  nlohmann::json options;  // the run's options, as a record of how it was made

  nlohmann::json to_json() const;
  // Throws seekr::Error naming `origin` and the field at fault.
  static TrainerState from_json(const nlohmann::json& j, const std::string& origin);
};

// Writes the checkpoint; `tokenizer_path` may be empty (then no tokenizer.json). The previous
// checkpoint at dir, if any, stays in place until the new one is complete.
void save_checkpoint(const std::string& dir, const Model& model, const AdamW& optimizer,
                     const TrainerState& state, const std::string& tokenizer_path);

// A model directory without training state: config.json, model.safetensors and, when
// `tokenizer_json` (the file's text) is not empty, tokenizer.json. Written atomically like a
// checkpoint; load_inference_model (serve/generate.h) opens it.
void save_model_dir(const std::string& dir, const Model& model, const std::string& tokenizer_json);

// The model config stored in a checkpoint directory.
ModelConfig checkpoint_config(const std::string& dir);

// Restores parameters and buffers into `model` (built from checkpoint_config(dir)), the
// optimizer's moments and step, and returns the trainer state. Throws seekr::Error naming the
// file at fault; refuses a checkpoint whose optimizer step disagrees with its trainer state.
TrainerState load_checkpoint(const std::string& dir, Model& model, AdamW& optimizer);

}  // namespace seekr
