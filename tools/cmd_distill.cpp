// seekr distill: DeepSeek-R1's distillation — a student trained by SFT on a teacher's verified
// reasoning (rejection-sampled), in one command.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "command.h"
#include "core/check.h"
#include "core/file_io.h"
#include "model/model.h"
#include "r1/evaluate.h"
#include "r1/sampling.h"
#include "rl/prompt.h"
#include "serve/generate.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/sft.h"

namespace {

const char* kUsage =
    R"(usage: seekr distill --teacher DIR (--student DIR | --student-config CONFIG.json)
                     --out DIR [options]

Samples the teacher on training problems, keeps the verified, well-formed, language-consistent
responses (as `seekr sample`), then trains the student on them by SFT (as `seekr sft`, loss on
the response tokens). The student must use the teacher's tokenizer: with --student-config it
starts from random weights and the teacher's tokenizer.json. Writes OUT/teacher_samples.jsonl,
OUT/model/ and OUT/metrics.jsonl.

problems:
  --problems FILE.jsonl  training problems (docs/rl-tasks.md), or
  --mix NAME             the training split of a named mix (default add)
  --n N                  problems drawn from --mix (default 2000)
  --split-seed S         (default 1)

teacher sampling:
  --n-per-problem N      responses per problem (default 4)
  --max-per-problem N    distinct kept responses per problem (default 1)
  --temperature X        (default 1.0)
  --max-new-tokens N     (default 96)
  --template T           qa | r1zero | r1chat (default qa)

student training:
  --steps N              SFT steps (default 0: --epochs over the kept samples)
  --epochs X             (default 3)
  --batch B              (default 16)
  --lr X                 (default 1e-3, cosine to lr/10)
  --max-seconds X        stop training after X seconds (equal-compute comparisons)
  --init-seed N          student initialisation with --student-config (default 1234)
  --seed S               sampling and example order (default 1)
  --threads N            OpenMP/BLAS threads (default: the library default)
  --workers N            data-parallel replicas, one per core (default 1)
)";

int run_distill(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage);
  const std::string teacher_dir = args.required("teacher");
  const std::string student_dir = args.str("student", "");
  const std::string student_config = args.str("student-config", "");
  const std::string out = args.required("out");
  const std::string problems_path = args.str("problems", "");
  const std::string mix = args.str("mix", "add");
  const long long n = args.i64("n", 2000);
  const uint64_t split_seed = static_cast<uint64_t>(args.i64("split-seed", 1));
  r1::SampleOptions so;
  so.n = static_cast<int>(args.i64("n-per-problem", 4));
  so.max_per_problem = static_cast<int>(args.i64("max-per-problem", 1));
  so.temperature = static_cast<float>(args.f64("temperature", 1.0));
  so.max_new_tokens = static_cast<int>(args.i64("max-new-tokens", 96));
  so.format.tmpl = rl::parse_template(args.str("template", "qa"));
  SftOptions sft;
  sft.steps = args.i64("steps", 0);
  sft.epochs = args.f64("epochs", 3.0);
  sft.batch = static_cast<int>(args.i64("batch", 16));
  sft.lr = args.f64("lr", 1e-3);
  sft.min_lr = sft.lr / 10;
  sft.weight_decay = 0.0;
  sft.max_seconds = args.f64("max-seconds", 0.0);
  const uint64_t init_seed = static_cast<uint64_t>(args.i64("init-seed", 1234));
  const uint64_t seed = static_cast<uint64_t>(args.i64("seed", 1));
  so.seed = seed;
  sft.seed = seed;
  sft.threads = static_cast<int>(args.i64("threads", 0));
  sft.workers = static_cast<int>(args.i64("workers", 1));
  args.finish();
  SEEKR_REQUIRE(student_dir.empty() != student_config.empty(),
                "give exactly one of --student DIR and --student-config CONFIG.json");
  SEEKR_REQUIRE(problems_path.empty() || !args.has("n"), "--n goes with --mix, not --problems");

  InferenceModel teacher = load_inference_model(teacher_dir);
  SEEKR_REQUIRE(teacher.tokenizer.has_value(), teacher_dir, ": no tokenizer.json");
  const Tokenizer& tok = *teacher.tokenizer;
  std::unique_ptr<Model> student;
  if (!student_dir.empty()) {
    InferenceModel s = load_inference_model(student_dir);
    SEEKR_REQUIRE(s.tokenizer.has_value() && s.tokenizer->to_json() == tok.to_json(), student_dir,
                  ": the student's tokenizer.json must be the teacher's");
    student = std::move(s.model);
  } else {
    ModelConfig cfg = ModelConfig::from_file(student_config);
    SEEKR_REQUIRE(cfg.vocab_size >= tok.vocab_size(), student_config, ": vocab_size ",
                  cfg.vocab_size, " is smaller than the teacher tokenizer's ", tok.vocab_size());
    student = std::make_unique<Model>(cfg);
    student->init_weights(init_seed);
  }
  SEEKR_REQUIRE(student->config().vocab_size >= tok.vocab_size(),
                "the student's vocabulary is smaller than the teacher's tokenizer");

  const auto problems =
      r1::load_problem_set(problems_path, mix, static_cast<size_t>(n), split_seed, rl::Split::Train);
  r1::SampleReport rep;
  const auto kept = r1::rejection_sample(*teacher.model, tok, problems, so, &rep);
  make_dirs(out);
  r1::write_samples_jsonl(out + "/teacher_samples.jsonl", kept);
  std::printf("teacher: %zu of %zu responses kept (%zu problems), %.0f tok/s\n", rep.accepted,
              rep.generated, rep.problems_accepted, rep.tokens_per_second);
  SEEKR_REQUIRE(!kept.empty(), "the teacher produced no verified sample to distil from");

  std::vector<SftExample> examples;
  const int32_t eos = student->config().eos_token_id;
  for (const auto& k : kept) examples.push_back(make_sft_example(tok, k.prompt, k.completion, eos));
  sft.max_len = student->config().max_position_embeddings;
  MetricsLog log(out + "/metrics.jsonl");
  const SftSummary s = run_sft(*student, examples, nullptr, sft, &log, "distill");
  save_model_dir(out + "/model", *student, tok.to_json());
  std::printf("student: %lld steps · final loss %.4f · %.1f s · model: %s/model\n",
              static_cast<long long>(s.steps_done), s.losses.empty() ? 0.0 : s.losses.back(),
              s.seconds, out.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("distill", "distillation: SFT of a student on a teacher's verified samples",
              run_distill);
