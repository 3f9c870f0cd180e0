#!/usr/bin/env bash
# The main job: the DeepSeek-R1 pipeline end to end on the built-in verifiable tasks
# (docs/r1.md): pretrain a small DeepSeek-V3 model from scratch, R1-Zero RL, cold-start SFT,
# reasoning RL with the language-consistency reward, rejection sampling, SFT, final RL, and
# distillation into a small dense student. Writes RUN_DIR/report.md, summary.json, plots/.
#   scripts/main.sh [RUN_DIR] [PRESET]      (defaults: runs/r1, quick)
# Re-running resumes at the last finished stage. Expects scripts/setup.sh to have built
# build/seekr.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/r1}
preset=${2:-quick}
build/seekr r1 --preset "$preset" --out "$run" --threads "${SEEKR_THREADS:-1}"
echo
sed -n '/^## R1-Zero/,/^## Language/p' "$run/report.md" | head -n -1
echo "full report: $run/report.md (plots in $run/plots/)"
