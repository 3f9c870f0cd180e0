#!/usr/bin/env bash
# Pretraining on text (the main job before the R1 pipeline): build a corpus from Debian packages,
# train a 4096-token BPE tokenizer on it, tokenize it, pretrain the tiny DeepSeek-V3 bench
# model from scratch, then generate from the checkpoint.
#   scripts/pretrain-text.sh [RUN_DIR] [STEPS]      (defaults: runs/main, 300)
# Expects scripts/setup.sh to have built build/seekr.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/main}
steps=${2:-300}
seekr=build/seekr
config=configs/tiny.json  # the tiny bench shape (../shared/bench-configs/tiny.json)
mkdir -p "$run"

echo "== corpus (Debian packages: see docs/data.md)"
[[ -f data/corpus/train.jsonl ]] || bash scripts/corpus.sh data/corpus

echo "== tokenizer: byte-level BPE, 4096 tokens"
[[ -f data/tokenizer.json ]] ||
  $seekr tokenizer train --vocab-size 4096 --out data/tokenizer.json \
    --special "<｜begin▁of▁sentence｜>,<｜end▁of▁sentence｜>" --bos "<｜begin▁of▁sentence｜>" \
    data/corpus/train.txt

echo "== token shards"
if [[ ! -f data/shards/train-00000.bin ]]; then
  $seekr data prepare --tokenizer data/tokenizer.json --out data/shards --name train \
    --jsonl --append-eos data/corpus/train.jsonl
  $seekr data prepare --tokenizer data/tokenizer.json --out data/shards --name valid \
    --jsonl --append-eos data/corpus/valid.jsonl
fi

echo "== pretrain $config for $steps steps (batch 8 x 256 tokens)"
resume=()
[[ -f $run/checkpoint/trainer_state.json ]] && resume=(--resume "$run/checkpoint")
$seekr pretrain --config "$config" --tokenizer data/tokenizer.json \
  --data 'data/shards/train-*.bin' --valid 'data/shards/valid-*.bin' --out "$run" \
  --steps "$steps" --batch 8 --seq 256 --lr 2e-3 --min-lr 2e-4 --warmup 20 \
  --save-every 100 --eval-every 100 --threads 1 "${resume[@]}"

echo "== generate"
$seekr generate --model "$run/checkpoint" --prompt "And God said" --max-new-tokens 64 \
  --temperature 0.8 --top-p 0.95 --seed 1
echo
echo "run directory: $run (metrics.jsonl, loss plot, checkpoint/)"
