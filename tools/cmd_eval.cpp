// seekr eval: held-out evaluation of a checkpoint on verifiable problems.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "args.h"
#include "command.h"
#include "core/file_io.h"
#include "r1/evaluate.h"
#include "rl/tasks.h"
#include "serve/generate.h"

namespace {

const char* kUsage =
    R"(usage: seekr eval --model DIR (--problems FILE.jsonl | --mix NAME) [options]

Samples k responses per problem at the given temperature, plus one greedy response, and
scores them with the pipeline's verifiers: pass@1 strict and lenient, pass@k, maj@k, greedy
pass@1, format rate, reasons-first share, language mixing and lengths, overall and per
language, with 95% intervals (definitions: docs/eval.md).

problems:
  --model DIR            checkpoint directory (config.json, model.safetensors, tokenizer.json)
  --problems FILE.jsonl  problems, one JSON object per line (docs/rl-tasks.md)
  --mix NAME             or the held-out split of a named mix (default, add, add-en, add-zh,
                         mul, countdown, bool, sort)
  --n N                  problems drawn from --mix (default 500)
  --split-seed S         seed of the held-out draw (default 1)

sampling:
  --k K                  samples per problem (default 4)
  --temperature X        (default 1.0)
  --top-p P              (default 1.0)
  --max-new-tokens N     per response (default 96)
  --seed S               sampling seed (default 0)
  --template T           qa | r1zero | r1chat (default qa)
  --force-reasoning      append <think> to every prompt (a base model forced to reason)
  --no-greedy            skip the greedy sample
  --max-batch N          sequences in flight per worker (default 512)
  --workers N            data-parallel generation, one worker per core; the same tokens
                         for any count (default 1)
  --threads N            OpenMP/BLAS threads (default: the library default)

output:
  --out FILE.json        write the report as JSON
)";

int run_eval(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage, {"force-reasoning", "no-greedy"});
  const std::string dir = args.required("model");
  const std::string problems_path = args.str("problems", "");
  const std::string mix = args.str("mix", "");
  const long long n = args.i64("n", 500);
  const long long split_seed = args.i64("split-seed", 1);
  r1::EvalOptions opt;
  opt.k = static_cast<int>(args.i64("k", 4));
  opt.temperature = static_cast<float>(args.f64("temperature", 1.0));
  opt.top_p = static_cast<float>(args.f64("top-p", 1.0));
  opt.max_new_tokens = static_cast<int>(args.i64("max-new-tokens", 96));
  opt.seed = static_cast<uint64_t>(args.i64("seed", 0));
  opt.format.tmpl = rl::parse_template(args.str("template", "qa"));
  opt.force_reasoning = args.flag("force-reasoning");
  opt.greedy = !args.flag("no-greedy");
  opt.max_batch = static_cast<int>(args.i64("max-batch", 512));
  opt.workers = static_cast<int>(args.i64("workers", 1));
  SEEKR_REQUIRE(opt.workers >= 1, "--workers must be at least 1");
  const int threads = static_cast<int>(args.i64("threads", 0));
  const std::string out = args.str("out", "");
  args.finish();
  SEEKR_REQUIRE(args.positional().empty(), "unexpected argument '",
                args.positional().empty() ? "" : args.positional()[0],
                "' (options are --name value; see --help)");
  SEEKR_REQUIRE(problems_path.empty() != mix.empty(), "give exactly one of --problems, --mix");
  SEEKR_REQUIRE(n >= 1, "--n must be >= 1; got ", n);
  SEEKR_REQUIRE(!mix.empty() || !(args.has("n") || args.has("split-seed")),
                "--n and --split-seed draw from --mix; a --problems file is used whole");
  SEEKR_REQUIRE(opt.k >= 1, "--k must be >= 1; got ", opt.k);
  SEEKR_REQUIRE(opt.temperature > 0,
                "--temperature must be > 0 (the greedy sample is separate); got ", opt.temperature);
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }

  const std::vector<rl::Problem> problems =
      r1::load_problem_set(problems_path, mix, static_cast<size_t>(n),
                           static_cast<uint64_t>(split_seed), rl::Split::Eval);
  InferenceModel im = load_inference_model(dir);
  SEEKR_REQUIRE(im.tokenizer.has_value(), dir, "/tokenizer.json is missing; eval needs it");
  opt.progress = true;
  const r1::EvalReport report = r1::evaluate(*im.model, *im.tokenizer, problems, opt);

  std::printf("%s: %zu problems, k = %d, temperature %g, template %s%s\n", dir.c_str(),
              problems.size(), opt.k, opt.temperature, rl::template_name(opt.format.tmpl),
              opt.force_reasoning ? ", forced reasoning" : "");
  std::printf("%s", report.to_table().c_str());
  if (!out.empty()) {
    nlohmann::json j = report.to_json();
    j["model"] = dir;
    j["temperature"] = opt.temperature;
    j["max_new_tokens"] = opt.max_new_tokens;
    j["template"] = rl::template_name(opt.format.tmpl);
    j["force_reasoning"] = opt.force_reasoning;
    write_file_atomic(out, j.dump(2) + "\n");
    std::printf("report written to %s\n", out.c_str());
  }
  return 0;
}

}  // namespace

SEEKR_COMMAND("eval", "held-out evaluation: pass@1/pass@k/maj@k, format, language mixing",
              run_eval);
