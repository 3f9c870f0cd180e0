// seekr sample: rejection sampling of verified responses into SFT data.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "args.h"
#include "command.h"
#include "r1/sampling.h"
#include "rl/tasks.h"
#include "serve/generate.h"

namespace {

const char* kUsage =
    R"(usage: seekr sample --model DIR (--problems FILE.jsonl | --mix NAME) --out FILE.jsonl [options]

Rejection sampling: samples responses per problem and keeps those that are correct (strict
answer verified), well formed and language-consistent, without duplicates, as SFT data: one
JSON object per line {"prompt", "completion", "question", "answer", "lang", "task"}.

problems:
  --model DIR            checkpoint directory (config.json, model.safetensors, tokenizer.json)
  --problems FILE.jsonl  problems, one JSON object per line (docs/rl-tasks.md)
  --mix NAME             or the training split of a named mix (default, add, add-en, add-zh,
                         mul, countdown, bool, sort)
  --n N                  problems drawn from --mix (default 1000)
  --split-seed S         seed of the training draw (default 1)

sampling:
  --n-per-problem N      responses sampled per problem (default 4)
  --max-per-problem N    distinct accepted responses kept per problem (default 1)
  --temperature X        (default 1.0)
  --max-new-tokens N     per response (default 96)
  --seed S               sampling seed (default 0)
  --template T           qa | r1zero | r1chat (default qa)
  --no-require-format    keep correct responses that are not in the tagged format
  --no-require-language  keep correct responses whose reasoning mixes languages
  --max-batch N          sequences in flight per worker (default 512)
  --workers N            data-parallel generation, one worker per core; the same tokens
                         for any count (default 1)
  --threads N            OpenMP/BLAS threads (default: the library default)

output:
  --out FILE.jsonl       the accepted samples (written atomically)
)";

int run_sample(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage, {"no-require-format", "no-require-language"});
  const std::string dir = args.required("model");
  const std::string problems_path = args.str("problems", "");
  const std::string mix = args.str("mix", "");
  const long long n = args.i64("n", 1000);
  const long long split_seed = args.i64("split-seed", 1);
  r1::SampleOptions opt;
  opt.n = static_cast<int>(args.i64("n-per-problem", 4));
  opt.max_per_problem = static_cast<int>(args.i64("max-per-problem", 1));
  opt.temperature = static_cast<float>(args.f64("temperature", 1.0));
  opt.max_new_tokens = static_cast<int>(args.i64("max-new-tokens", 96));
  opt.seed = static_cast<uint64_t>(args.i64("seed", 0));
  opt.format.tmpl = rl::parse_template(args.str("template", "qa"));
  opt.require_format = !args.flag("no-require-format");
  opt.require_language = !args.flag("no-require-language");
  opt.max_batch = static_cast<int>(args.i64("max-batch", 512));
  opt.workers = static_cast<int>(args.i64("workers", 1));
  SEEKR_REQUIRE(opt.workers >= 1, "--workers must be at least 1");
  const int threads = static_cast<int>(args.i64("threads", 0));
  const std::string out = args.required("out");
  args.finish();
  SEEKR_REQUIRE(args.positional().empty(), "unexpected argument '",
                args.positional().empty() ? "" : args.positional()[0],
                "' (options are --name value; see --help)");
  SEEKR_REQUIRE(problems_path.empty() != mix.empty(), "give exactly one of --problems, --mix");
  SEEKR_REQUIRE(n >= 1, "--n must be >= 1; got ", n);
  SEEKR_REQUIRE(!mix.empty() || !(args.has("n") || args.has("split-seed")),
                "--n and --split-seed draw from --mix; a --problems file is used whole");
  SEEKR_REQUIRE(opt.n >= 1, "--n-per-problem must be >= 1; got ", opt.n);
  SEEKR_REQUIRE(opt.max_per_problem >= 1, "--max-per-problem must be >= 1; got ",
                opt.max_per_problem);
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }

  const std::vector<rl::Problem> problems =
      r1::load_problem_set(problems_path, mix, static_cast<size_t>(n),
                           static_cast<uint64_t>(split_seed), rl::Split::Train);
  InferenceModel im = load_inference_model(dir);
  SEEKR_REQUIRE(im.tokenizer.has_value(), dir, "/tokenizer.json is missing; sample needs it");
  r1::SampleReport report;
  const std::vector<r1::AcceptedSample> samples =
      r1::rejection_sample(*im.model, *im.tokenizer, problems, opt, &report);
  r1::write_samples_jsonl(out, samples);

  auto share = [&](size_t x) { return report.generated ? 100.0 * x / report.generated : 0.0; };
  std::printf("problems          %zu (%zu with an accepted response)\n", report.problems,
              report.problems_accepted);
  std::printf("generated         %zu responses, %lld tokens, %.1fs (%.0f tok/s)\n",
              report.generated, static_cast<long long>(report.generated_tokens), report.seconds,
              report.tokens_per_second);
  std::printf("correct           %zu (%.1f%%)\n", report.correct, share(report.correct));
  std::printf("well formed       %zu (%.1f%%)\n", report.well_formed, share(report.well_formed));
  std::printf("language ok       %zu (%.1f%%)\n", report.language_ok, share(report.language_ok));
  std::printf("passed filters    %zu (%.1f%%)\n", report.passed, share(report.passed));
  std::printf("duplicates        %zu\n", report.duplicates);
  std::printf("over the limit    %zu (max %d per problem)\n", report.over_limit,
              opt.max_per_problem);
  std::printf("accepted          %zu -> %s\n", report.accepted, out.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("sample", "rejection sampling: verified, well-formed responses as SFT data",
              run_sample);
