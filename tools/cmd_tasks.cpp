// seekr tasks: verifiable problems and synthetic documents as JSONL, for `seekr grpo`, `seekr
// eval`, `seekr sft` and `seekr data prepare`.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "args.h"
#include "command.h"
#include "core/file_io.h"
#include "rl/format.h"
#include "rl/tasks.h"

namespace {

const char* kUsage =
    R"(usage: seekr tasks ACTION --out FILE.jsonl [options]

actions:
  problems    problems of one split, one JSON object per line (the format --problems reads:
              prompt, answer, verifier, lang, task, key, solution)
  corpus      pretraining documents: {"prompt": ..., "completion": ...} per line (the
              format `seekr sft` reads), or {"text": ...} with --text; some documents
              reason step by step before answering, some answer directly
  coldstart   cold-start SFT data: the reference solution of each problem as reasoning,
              in the tagged format, always in the prompt's language

options:
  --mix NAME             default | add | add2 | add3x2 | add-en | add-zh | add-peel |
                         add-varwidth | mul | countdown | bool | sort
                         (default: add; see docs/rl-tasks.md)
  --n N                  how many lines (default 1000)
  --seed S               (default 1)
  --split train|eval     problems only (default train); eval problems are distinct and
                         held out by hash, corpus and coldstart always use the train split
  --template T           qa | r1zero | r1chat: how the prompt is written (default qa)
  --reasoning-share P    corpus: share of documents that reason first (default 0.3)
  --wrong-share P        corpus: share whose answer has one wrong digit (default 0.1)
  --foreign-reasoning P  corpus: share of reasoned non-English documents that reason in
                         English (default 0)
  --text                 corpus: {"text": prompt + completion} lines instead
)";

int run_tasks(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage, {"text"});
  SEEKR_REQUIRE(args.positional().size() == 1,
                "seekr tasks needs one action: problems, corpus or coldstart (see --help)");
  const std::string action = args.positional()[0];
  const std::string out = args.required("out");
  const rl::TaskMix mix = rl::named_mix(args.str("mix", "add"));
  const long long n = args.i64("n", 1000);
  SEEKR_REQUIRE(n > 0, "--n must be positive");
  const uint64_t seed = static_cast<uint64_t>(args.i64("seed", 1));
  const rl::Template tmpl = rl::parse_template(args.str("template", "qa"));
  std::string text;
  if (action == "problems") {
    const std::string split = args.str("split", "train");
    SEEKR_REQUIRE(split == "train" || split == "eval", "--split must be train or eval, got '",
                  split, "'");
    args.finish();
    for (const rl::Problem& p :
         rl::make_split(mix, split == "eval" ? rl::Split::Eval : rl::Split::Train, n, seed))
      text += rl::problem_to_json(p) + "\n";
  } else if (action == "corpus") {
    rl::CorpusSpec spec;
    spec.tmpl = tmpl;
    spec.reasoning_share = args.f64("reasoning-share", 0.3);
    spec.wrong_share = args.f64("wrong-share", 0.1);
    spec.foreign_reasoning_share = args.f64("foreign-reasoning", 0.0);
    const bool as_text = args.flag("text");
    args.finish();
    SEEKR_REQUIRE(spec.reasoning_share >= 0 && spec.reasoning_share <= 1 &&
                      spec.wrong_share >= 0 && spec.wrong_share <= 1 &&
                      spec.foreign_reasoning_share >= 0 && spec.foreign_reasoning_share <= 1,
                  "--reasoning-share, --wrong-share and --foreign-reasoning must lie in [0, 1]");
    for (const rl::TextPair& d : rl::make_corpus(mix, n, seed, spec)) {
      nlohmann::json j = as_text ? nlohmann::json{{"text", d.prompt + d.completion}}
                                 : nlohmann::json{{"prompt", d.prompt}, {"completion", d.completion}};
      text += j.dump() + "\n";
    }
  } else if (action == "coldstart") {
    args.finish();
    for (const rl::TextPair& d :
         rl::cold_start_examples(rl::make_split(mix, rl::Split::Train, n, seed), tmpl))
      text += nlohmann::json{{"prompt", d.prompt}, {"completion", d.completion}}.dump() + "\n";
  } else {
    throw Error("unknown tasks action '" + action + "' (expected problems, corpus or coldstart)");
  }
  write_file_atomic(out, text);
  std::printf("wrote %lld lines to %s\n", n, out.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("tasks", "write verifiable problems, synthetic corpora or cold-start data as JSONL",
              run_tasks);
