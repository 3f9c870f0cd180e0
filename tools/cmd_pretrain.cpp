// seekr pretrain: next-token pretraining of a DeepSeek-V3-architecture model on token shards.
#include <cblas.h>

#include <cstdio>

#include "args.h"
#include "command.h"
#include "train/metrics.h"
#include "train/pretrain.h"

namespace {

const char* kUsage =
    R"(usage: seekr pretrain --config CONFIG.json --data 'shards/train-*.bin' --out DIR [options]

Pretrains a model from scratch (or continues a checkpoint) on token shards written by
`seekr data prepare`. Writes into DIR:
  DIR/checkpoint/      config.json, model.safetensors, tokenizer.json, optimizer.safetensors,
                       trainer_state.json (replaced atomically at every save)
  DIR/metrics.jsonl    one JSON record per logged step, evaluation and run start
  DIR/loss.png         loss and throughput plot (gnuplot; .svg without pngcairo; skipped
                       with a warning when gnuplot is missing)

model and data:
  --config PATH         model config.json (deepseek_v3); not needed with --resume
  --tokenizer PATH      tokenizer.json, checked against the vocabulary and copied into
                        every checkpoint
  --data GLOB[,GLOB]    training shards (quote the glob)
  --valid GLOB[,GLOB]   validation shards: mean CE over --eval-batches batches
  --append-eos          add the config's eos_token_id after every document
  --no-shuffle          read training windows in stream order
  --out DIR             output directory (created if missing)
  --resume DIR          continue from a checkpoint directory (e.g. DIR/checkpoint); the run
                        continues bit for bit when given the same options

batch and schedule:
  --steps N             optimizer steps in the whole run (default 1000)
  --batch B             sequences per micro-batch (default 8)
  --seq T               tokens per sequence (default 256)
  --accum A             micro-batches per optimizer step (default 1)
  --lr X                peak learning rate (default 3e-4)
  --min-lr X            final learning rate (default lr/10)
  --warmup N            linear warmup steps (default 0)
  --schedule S          cosine | wsd (default cosine)
  --decay-fraction F    wsd: share of the steps spent decaying linearly (default 0.2)

optimizer and losses:
  --weight-decay X      AdamW decoupled weight decay on matrices (default 0.1)
  --beta1 X --beta2 X   AdamW betas (default 0.9, 0.95)
  --eps X               AdamW epsilon (default 1e-8)
  --bf16-moments        keep the AdamW moments in BF16 (the V3 recipe), FP32 arithmetic
  --precision P         Linear-layer GEMMs: fp32 (default) | bf16 | fp8 (E4M3, 1x128
                        activation tiles, 128x128 weight blocks, FP32 accumulation; the
                        embedding, router, attention, norms and output head stay FP32);
                        see docs/training.md
  --clip X              max global gradient norm, 0 = no clipping (default 1.0)
  --mtp-lambda X        weight of the MTP loss, (λ/D)·Σ CE_k (default 0.3)
  --balance-alpha X     sequence-wise balance loss weight α (default 1e-4)
  --bias-gamma X        correction-bias update speed γ, 0 = off (default 1e-3)
  --seed S              seed for initialisation and data order (default 1234)

run:
  --save-every K        checkpoint every K steps (default 0: only at the end)
  --eval-every K        validation every K steps (default 0: only at the end)
  --eval-batches N      validation batches per evaluation (default 8)
  --stop-at N           save and stop after step N, as if interrupted (the schedule still
                        spans --steps); Ctrl-C does the same after the current step
  --threads N           OpenMP/BLAS threads (default: OpenMP's default)
  --peak-gflops X       peak FLOP/s for MFU in GFLOP/s (default 70 per thread, the measured
                        single-thread sgemm rate of the development machine)
  --measure-peak        measure sgemm GFLOP/s with the chosen threads and use that
  --log-every N         progress line and metrics record every N steps (default 1)
  --quiet               no progress line
  --no-plot             do not run gnuplot
)";

int run_pretrain_cmd(int argc, char** argv) {
  seekr::cli::Args args(argc, argv, kUsage);
  seekr::PretrainOptions o;
  o.resume_dir = args.str("resume", "");
  o.config_path = args.str("config", "");
  o.tokenizer_path = args.str("tokenizer", "");
  o.train_shards = seekr::expand_glob(args.required("data"));
  if (args.has("valid")) o.valid_shards = seekr::expand_glob(args.required("valid"));
  o.out_dir = args.required("out");
  o.append_eos = args.flag("append-eos");
  o.shuffle = !args.flag("no-shuffle");
  o.steps = args.i64("steps", o.steps);
  o.batch = static_cast<int>(args.i64("batch", o.batch));
  o.seq = static_cast<int>(args.i64("seq", o.seq));
  o.accum = static_cast<int>(args.i64("accum", o.accum));
  o.schedule.peak_lr = args.f64("lr", 3e-4);
  o.schedule.min_lr = args.f64("min-lr", o.schedule.peak_lr / 10);
  o.schedule.warmup_steps = args.i64("warmup", 0);
  o.schedule.kind = seekr::parse_schedule_kind(args.str("schedule", "cosine"));
  o.schedule.decay_fraction = args.f64("decay-fraction", o.schedule.decay_fraction);
  o.hyper.adamw.weight_decay = args.f64("weight-decay", 0.1);
  o.hyper.adamw.beta1 = args.f64("beta1", o.hyper.adamw.beta1);
  o.hyper.adamw.beta2 = args.f64("beta2", o.hyper.adamw.beta2);
  o.hyper.adamw.eps = args.f64("eps", o.hyper.adamw.eps);
  o.hyper.adamw.bf16_moments = args.flag("bf16-moments");
  o.hyper.precision = seekr::parse_precision(args.str("precision", "fp32"));
  o.hyper.clip = args.f64("clip", o.hyper.clip);
  o.hyper.mtp_lambda = args.f64("mtp-lambda", o.hyper.mtp_lambda);
  o.hyper.balance_alpha = args.f64("balance-alpha", o.hyper.balance_alpha);
  o.hyper.bias_gamma = args.f64("bias-gamma", o.hyper.bias_gamma);
  const long long seed = args.i64("seed", static_cast<long long>(o.seed));
  SEEKR_REQUIRE(seed >= 0, "--seed must be >= 0; got ", seed);
  o.seed = static_cast<uint64_t>(seed);
  o.save_every = args.i64("save-every", 0);
  o.eval_every = args.i64("eval-every", 0);
  o.eval_batches = static_cast<int>(args.i64("eval-batches", o.eval_batches));
  o.stop_at = args.i64("stop-at", 0);
  o.threads = static_cast<int>(args.i64("threads", 0));
  o.peak_gflops = args.f64("peak-gflops", 0);
  const bool measure = args.flag("measure-peak");
  o.log_every = static_cast<int>(args.i64("log-every", 1));
  o.progress = !args.flag("quiet");
  o.plot = !args.flag("no-plot");
  args.finish();
  SEEKR_REQUIRE(args.positional().empty(), "unexpected argument '", args.positional().front(),
                "' (see --help)");
  SEEKR_REQUIRE(!(measure && o.peak_gflops > 0), "give --peak-gflops or --measure-peak, not both");
  if (measure) {
    o.validate();  // fail on bad flags before spending a second on the measurement
    if (o.threads > 0) openblas_set_num_threads(o.threads);  // measure as the run will use it
    o.peak_gflops = seekr::measure_sgemm_gflops();
    std::fprintf(stderr, "measured sgemm peak: %.1f GFLOP/s\n", o.peak_gflops);
  }

  const seekr::PretrainSummary s = seekr::run_pretrain(o);
  std::fprintf(stderr, "trained steps %lld..%lld; checkpoint: %s\n",
               static_cast<long long>(s.first_step + 1), static_cast<long long>(s.last_step),
               s.checkpoint_dir.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("pretrain", "pretrain a model on token shards (AdamW, MTP, checkpoints)",
              run_pretrain_cmd);
