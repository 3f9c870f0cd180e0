// seekr r1: the whole DeepSeek-R1 pipeline on the built-in verifiable tasks.
#include <cstdio>
#include <string>

#include "args.h"
#include "command.h"
#include "core/file_io.h"
#include "r1/pipeline.h"

namespace {

const char* kUsage =
    R"(usage: seekr r1 [--preset quick|full] [--out RUN_DIR] [options]

Runs the DeepSeek-R1 pipeline end to end on synthetic verifiable tasks (three 3-digit
additions, English and Chinese), starting from nothing:

  data            tokenizer (trained on the task corpus), 512 held-out problems
  base            pretrain the teacher (DeepSeek-V3 architecture, ~0.85M parameters) on
                  documents of which a share reason step by step before answering
  r1zero          GRPO from the base with the accuracy reward alone (R1-Zero)
  r1zero_lang     the same plus the language-consistency reward
  coldstart       SFT of the base on readable, language-consistent reasoning
  reasoning_rl    GRPO with accuracy, format and language rewards
  rejection       sample the reasoning-RL model; keep verified, well-formed, consistent
  rs_sft          SFT of the base on the kept samples
  final_rl        GRPO again: the final R1 model
  student_base    pretrain a small dense student whose data rarely reasons
  student_rl      GRPO on the student alone
  student_distill SFT of the student on R1's verified samples, as many tokens as its RL

Each stage writes RUN_DIR/stages/NAME/ (model/, done.json); re-running skips finished
stages, so an interrupted run resumes at the last finished stage. At the end:
RUN_DIR/report.md, RUN_DIR/summary.json, RUN_DIR/plots/*.png, RUN_DIR/metrics.jsonl.
The same seed, thread and worker counts give the same numbers (times aside).

options:
  --preset P          quick (default; at most 15 minutes on 2 cores) | full (longer)
  --out DIR           run directory (default runs/r1)
  --seed S            (default 1)
  --threads N         OpenMP/BLAS threads inside each worker (default 1)
  --workers N         data-parallel workers for generation and RL updates, one per core
                      (default 2)
  --stop-after STAGE  stop once STAGE is done
  --r1zero-steps N    override the preset's R1-Zero steps (also --base-steps N,
                      --pretrain-batch B)
  --teacher-config F  a config.json for the teacher instead of the built-in one (its
                      vocab_size is replaced by the trained tokenizer's); --student-config F
  --mix NAME          the task mix of every stage (default: the preset's, add2; see
                      seekr tasks --help)
)";

int run_r1_command(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage);
  r1::R1RunOptions opt;
  opt.config = r1::r1_preset(args.str("preset", "quick"));
  opt.run_dir = args.str("out", "runs/r1");
  opt.config.seed = static_cast<uint64_t>(args.i64("seed", 1));
  opt.config.threads = static_cast<int>(args.i64("threads", 1));
  opt.config.workers = static_cast<int>(args.i64("workers", opt.config.workers));
  opt.config.r1zero_steps = args.i64("r1zero-steps", opt.config.r1zero_steps);
  opt.config.base_steps = args.i64("base-steps", opt.config.base_steps);
  opt.config.mix = args.str("mix", opt.config.mix);
  if (args.has("teacher-config")) opt.config.teacher_config = read_file(args.required("teacher-config"));
  if (args.has("student-config")) opt.config.student_config = read_file(args.required("student-config"));
  opt.config.pretrain_batch = static_cast<int>(args.i64("pretrain-batch", opt.config.pretrain_batch));
  opt.stop_after = args.str("stop-after", "");
  args.finish();
  if (!opt.stop_after.empty()) {
    bool known = false;
    for (const auto& s : r1::r1_stage_names()) known |= s == opt.stop_after;
    SEEKR_REQUIRE(known, "--stop-after: unknown stage '", opt.stop_after, "'");
  }
  SEEKR_REQUIRE(opt.config.threads >= 1, "--threads must be at least 1");
  SEEKR_REQUIRE(opt.config.workers >= 1, "--workers must be at least 1");
  r1::run_r1(opt);
  std::printf("report: %s/report.md\n", opt.run_dir.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("r1", "run the DeepSeek-R1 pipeline end to end (pretrain, R1-Zero, SFT, RL, distill)",
              run_r1_command);
