// seekr grpo: GRPO reinforcement learning of a model directory on verifiable problems.
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "args.h"
#include "command.h"
#include "core/rng.h"
#include "r1/grpo_trainer.h"
#include "rl/rewards.h"
#include "rl/tasks.h"
#include "serve/generate.h"
#include "train/metrics.h"

namespace {

const char* kUsage =
    R"(usage: seekr grpo --model DIR --out DIR [options]

Reinforcement learning with GRPO (DeepSeek-R1-Zero): every step samples --group responses for
each of --prompts problems, scores them with rule-based rewards and updates the policy on the
group-relative advantages. Writes into OUT:
  OUT/model/           config.json, model.safetensors, tokenizer.json of the trained policy
  OUT/metrics.jsonl    a "grpo_start" record, one "grpo" record per step, a "grpo_summary"

model and problems:
  --model DIR           model directory (config.json, model.safetensors, tokenizer.json)
  --out DIR             output directory (created if missing)
  --problems FILE       JSONL problems (rl load_problems_jsonl), drawn cyclically in a
                        seeded shuffled order
  --mix NAME            procedural problems of a named mix, training split (default add;
                        default, add, add-en, add-zh, mul, countdown, bool, sort)
  --template T          qa | r1zero | r1chat (default qa)

rollout:
  --steps N             GRPO steps (default 120)
  --prompts N           prompts per step (default 16)
  --group G             responses per prompt (default 8)
  --max-new-tokens N    response budget in tokens (default 96)
  --temperature X       sampling temperature (default 1)
  --rewards SPEC        "accuracy=1,format=0,language=0,overlong=0,max_len=..,cache_len=.."
                        (keys not given keep these defaults)
  --dynamic-sampling    DAPO: drop groups whose rewards are all equal and draw new prompts
                        (up to 3 rollouts per step)

update:
  --loss L              grpo | dr_grpo | dapo (default grpo)
  --mu N                policy updates per rollout batch (default 1)
  --lr X                AdamW learning rate, constant after warmup (default 5e-5)
  --warmup N            linear warmup steps (default 0)
  --weight-decay X      AdamW weight decay (default 0)
  --clip X              max global gradient norm, 0 = off (default 1)
  --beta X              KL coefficient against the frozen reference (default 0)
  --eps-low X           ratio clip below 1 - X (default 0.2)
  --eps-high X          ratio clip above 1 + X (default 0.2; DAPO's clip-higher: 0.28)
  --ref-refresh N       copy the policy into the reference every N steps, 0 = never (default 0)
  --micro-batch N       sequences per update forward, 0 = all, split between the workers
                        (default 0); 8 wastes the least padding on the R1 pipeline's task
  --workers N           data-parallel replicas, one per core: each generates its share of
                        the prompts and runs its share of the micro-batches single-threaded,
                        gradients summed (default 1)

run:
  --seed S              sampling and problem-order seed (default 1234)
  --threads N           OpenMP/BLAS threads (default: OpenMP's default)
  --log-every N         metrics record every N steps (default 1)
  --quiet               no progress line
)";

int run_grpo_cmd(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage, {"dynamic-sampling", "quiet"});
  const std::string model_dir = args.required("model");
  const std::string out_dir = args.required("out");
  const std::string problems_path = args.str("problems", "");
  const std::string mix_name = args.str("mix", "add");
  SEEKR_REQUIRE(problems_path.empty() || !args.has("mix"), "give --problems or --mix, not both");

  r1::GrpoOptions o;
  o.format.tmpl = rl::parse_template(args.str("template", "qa"));
  o.steps = args.i64("steps", o.steps);
  o.prompts_per_step = static_cast<int>(args.i64("prompts", o.prompts_per_step));
  o.group = static_cast<int>(args.i64("group", o.group));
  o.max_new_tokens = static_cast<int>(args.i64("max-new-tokens", o.max_new_tokens));
  o.temperature = static_cast<float>(args.f64("temperature", o.temperature));
  if (args.has("rewards")) o.rewards = rl::parse_reward_weights(args.required("rewards"));
  o.dynamic_sampling = args.flag("dynamic-sampling");
  o.loss.mode = r1::parse_grpo_mode(args.str("loss", "grpo"));
  o.mu = static_cast<int>(args.i64("mu", o.mu));
  o.lr = args.f64("lr", o.lr);
  o.warmup = static_cast<int>(args.i64("warmup", o.warmup));
  o.weight_decay = args.f64("weight-decay", o.weight_decay);
  o.clip = args.f64("clip", o.clip);
  o.loss.beta = static_cast<float>(args.f64("beta", o.loss.beta));
  o.loss.eps_low = static_cast<float>(args.f64("eps-low", o.loss.eps_low));
  o.loss.eps_high = static_cast<float>(args.f64("eps-high", o.loss.eps_high));
  o.ref_refresh_every = static_cast<int>(args.i64("ref-refresh", o.ref_refresh_every));
  o.micro_batch = static_cast<int>(args.i64("micro-batch", o.micro_batch));
  o.workers = static_cast<int>(args.i64("workers", o.workers));
  o.seed = static_cast<uint64_t>(args.i64("seed", 1234));
  o.threads = static_cast<int>(args.i64("threads", 0));
  o.log_every = static_cast<int>(args.i64("log-every", 1));
  o.progress = !args.flag("quiet");
  args.finish();
  o.validate();

  InferenceModel im = load_inference_model(model_dir);
  SEEKR_REQUIRE(im.tokenizer.has_value(), model_dir, " has no tokenizer.json");
  const Tokenizer& tokenizer = *im.tokenizer;

  std::function<rl::Problem()> next_problem;
  if (!problems_path.empty()) {
    auto problems =
        std::make_shared<std::vector<rl::Problem>>(rl::load_problems_jsonl(problems_path));
    SEEKR_REQUIRE(!problems->empty(), problems_path, " holds no problems");
    auto order = std::make_shared<std::vector<size_t>>(problems->size());
    std::iota(order->begin(), order->end(), size_t(0));
    auto rng = std::make_shared<Rng>(o.seed);
    auto next = std::make_shared<size_t>(order->size());  // reshuffle on the first draw
    next_problem = [problems, order, rng, next] {
      if (*next == order->size()) {  // a new pass: Fisher-Yates with the run's seed
        for (size_t i = order->size(); i > 1; --i)
          std::swap((*order)[i - 1], (*order)[rng->next_u64() % i]);
        *next = 0;
      }
      return (*problems)[(*order)[(*next)++]];
    };
  } else {
    auto sampler =
        std::make_shared<rl::ProblemSampler>(rl::named_mix(mix_name), rl::Split::Train, o.seed);
    next_problem = [sampler] { return sampler->next(); };
  }

  std::filesystem::create_directories(out_dir);
  MetricsLog log(out_dir + "/metrics.jsonl");
  nlohmann::json start = {{"type", "grpo_start"}, {"model", model_dir}, {"options", o.to_json()}};
  start["problems"] = problems_path.empty() ? "mix:" + mix_name : problems_path;
  log.append(start);

  const r1::GrpoSummary sum = r1::run_grpo(*im.model, tokenizer, o, next_problem, &log, "grpo");
  log.append(sum.to_json());
  r1::save_policy(out_dir + "/model", *im.model, tokenizer);
  std::printf(
      "grpo: %lld steps in %s (rollout %.0f%%) · reward %.3f -> %.3f · accuracy %.1f%% -> %.1f%% "
      "(means of the first and last 5 steps) · model in %s/model\n",
      static_cast<long long>(sum.steps), format_duration(sum.seconds).c_str(),
      100.0 * sum.rollout_seconds / std::max(1e-9, sum.rollout_seconds + sum.update_seconds),
      sum.first_reward, sum.last_reward, 100.0 * sum.first_accuracy, 100.0 * sum.last_accuracy,
      out_dir.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("grpo", "GRPO reinforcement learning on verifiable problems (R1-Zero)", run_grpo_cmd);
