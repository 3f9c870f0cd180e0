// seekr sft: supervised fine-tuning on masked prompt/completion pairs, or packed pretraining on
// documents, from a model directory or from scratch.
#include <cmath>
#include <cstdio>
#include <memory>

#include "args.h"
#include "command.h"
#include "core/file_io.h"
#include "model/model.h"
#include "serve/generate.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/sft.h"

namespace {

const char* kUsage =
    R"(usage: seekr sft (--model DIR | --config CONFIG.json --tokenizer TOKENIZER.json)
                 --data FILE.jsonl --out DIR [options]

Fine-tunes a model on JSON Lines data, one example per line:
  {"prompt": "...", "completion": "..."}      loss on the completion (and the eos) only
  {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
                                              an optional leading system message; rendered
                                              with --template
  {"text": "..."}                             a document: loss on every token after the BOS
Each example is encode(prompt, with BOS) ++ encode(completion) ++ [eos_token_id of the config].
Writes into DIR:
  DIR/model/          config.json, model.safetensors, tokenizer.json (save_model_dir)
  DIR/metrics.jsonl   a "sft_start" record, one "sft" record per logged step and, with
                      --valid, one "sft_valid" record
No loss plot: plot_metrics draws pretraining ("train") records only.

model:
  --model DIR           start from a model directory (config.json, model.safetensors,
                        tokenizer.json)
  --config PATH         or from scratch: a model config.json ...
  --tokenizer PATH      ... and its tokenizer.json
  --init-seed N         initialisation seed from scratch (default 1234)

data:
  --data FILE.jsonl     training examples (required)
  --valid FILE.jsonl    validation examples: mean CE over their counted targets at the end
  --template NAME       how "messages" become a prompt: r1chat ("<｜User｜>" + user +
                        "<｜Assistant｜>") or plain (the user text verbatim); default r1chat
  --train-on-prompt     count the prompt's tokens as targets too
  --max-len N           cut examples to N tokens; with --pack the row length
                        (default: the model's max_position_embeddings)
  --pack                concatenate the shuffled examples into rows of exactly --max-len tokens
                        (for pretraining on many short documents)

schedule and optimizer:
  --steps N             optimizer steps (default 0: from --epochs)
  --epochs X            passes over the data when --steps is 0 (default 1)
  --batch B             sequences per step (default 16)
  --lr X                peak learning rate (default 1e-3)
  --min-lr X            final learning rate of the cosine decay (default lr/10)
  --warmup N            linear warmup steps (default 0)
  --weight-decay X      AdamW decoupled weight decay on matrices (default 0.1)
  --seed S              example order (default 1234)

run:
  --threads N           OpenMP/BLAS threads (default: OpenMP's default)
  --workers N           data-parallel replicas, one per core: each step's rows are split
                        between them and the gradients summed (default 1)
  --max-seconds X       stop after the step that reaches X seconds (default 0: no limit); the
                        cosine schedule still spans the planned steps
  --quiet               no progress line
)";

int run_sft_cmd(int argc, char** argv) {
  seekr::cli::Args args(argc, argv, kUsage, {"pack", "train-on-prompt", "quiet"});
  const std::string model_dir = args.str("model", "");
  const std::string config_path = args.str("config", "");
  const std::string tokenizer_path = args.str("tokenizer", "");
  const long long init_seed = args.i64("init-seed", 1234);
  const std::string data_path = args.required("data");
  const std::string valid_path = args.str("valid", "");
  const std::string out_dir = args.required("out");
  const std::string template_name = args.str("template", "r1chat");
  const bool train_on_prompt = args.flag("train-on-prompt");
  seekr::SftOptions o;
  o.steps = args.i64("steps", 0);
  o.epochs = args.f64("epochs", o.epochs);
  o.batch = static_cast<int>(args.i64("batch", o.batch));
  o.max_len = static_cast<int>(args.i64("max-len", 0));
  o.pack = args.flag("pack");
  o.lr = args.f64("lr", o.lr);
  o.min_lr = args.f64("min-lr", o.lr / 10);
  o.warmup = args.i64("warmup", 0);
  o.weight_decay = args.f64("weight-decay", o.weight_decay);
  const long long seed = args.i64("seed", static_cast<long long>(o.seed));
  o.threads = static_cast<int>(args.i64("threads", 0));
  o.workers = static_cast<int>(args.i64("workers", 1));
  o.max_seconds = args.f64("max-seconds", 0);
  o.progress = !args.flag("quiet");
  args.finish();
  SEEKR_REQUIRE(args.positional().empty(), "unexpected argument '", args.positional().front(),
                "' (see --help)");
  SEEKR_REQUIRE(seed >= 0 && init_seed >= 0, "--seed and --init-seed must be >= 0");
  o.seed = static_cast<uint64_t>(seed);
  o.validate();

  // The model and its tokenizer: a directory, or a fresh initialisation.
  std::unique_ptr<seekr::Model> model;
  std::optional<seekr::Tokenizer> tokenizer;
  if (!model_dir.empty()) {
    SEEKR_REQUIRE(config_path.empty() && tokenizer_path.empty(),
                  "give --model, or --config with --tokenizer, not both");
    seekr::InferenceModel loaded = seekr::load_inference_model(model_dir);
    SEEKR_REQUIRE(loaded.tokenizer.has_value(), model_dir, " has no tokenizer.json");
    model = std::move(loaded.model);
    tokenizer = std::move(loaded.tokenizer);
  } else {
    SEEKR_REQUIRE(!config_path.empty() && !tokenizer_path.empty(),
                  "missing --model DIR (or --config with --tokenizer)");
    model = std::make_unique<seekr::Model>(seekr::ModelConfig::from_file(config_path));
    model->init_weights(static_cast<uint64_t>(init_seed));
    tokenizer = seekr::Tokenizer::from_file(tokenizer_path);
  }
  const seekr::ModelConfig& config = model->config();
  SEEKR_REQUIRE(tokenizer->vocab_size() <= config.vocab_size, "the tokenizer has ",
                tokenizer->vocab_size(), " tokens but the model's vocab_size is ",
                config.vocab_size);

  const int32_t eos = config.eos_token_id;
  const std::vector<seekr::SftExample> train =
      seekr::load_sft_jsonl(data_path, *tokenizer, eos, template_name, train_on_prompt);
  std::vector<seekr::SftExample> valid;
  if (!valid_path.empty())
    valid = seekr::load_sft_jsonl(valid_path, *tokenizer, eos, template_name, train_on_prompt);

  seekr::make_dirs(out_dir);
  seekr::MetricsLog log(out_dir + "/metrics.jsonl");
  log.append({{"type", "sft_start"},
              {"model", model_dir},
              {"config", config_path},
              {"data", data_path},
              {"valid", valid_path},
              {"examples", train.size()},
              {"parameters", config.num_parameters()},
              {"steps", o.steps},
              {"epochs", o.epochs},
              {"batch", o.batch},
              {"max_len", o.max_len},
              {"pack", o.pack},
              {"lr", o.lr},
              {"min_lr", o.min_lr},
              {"warmup", o.warmup},
              {"weight_decay", o.weight_decay},
              {"seed", o.seed},
              {"template", template_name},
              {"train_on_prompt", train_on_prompt}});

  const seekr::SftSummary s =
      seekr::run_sft(*model, train, valid_path.empty() ? nullptr : &valid, o, &log);
  seekr::save_model_dir(out_dir + "/model", *model, tokenizer->to_json());

  std::printf("sft: %lld/%lld steps%s · final loss %.4f", static_cast<long long>(s.steps_done),
              static_cast<long long>(s.planned_steps),
              s.stopped_by_time ? " (stopped by --max-seconds)" : "", s.losses.back());
  if (s.has_valid) std::printf(" · valid loss %.4f", s.valid_loss);
  std::printf(" · %.0f tok/s · %.1f s · model: %s/model\n",
              s.seconds > 0 ? double(s.tokens_processed) / s.seconds : 0.0, s.seconds,
              out_dir.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("sft", "supervised fine-tuning on prompt/completion JSONL (or packed documents)",
              run_sft_cmd);
