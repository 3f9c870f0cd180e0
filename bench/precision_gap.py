#!/usr/bin/python3
"""FP8 and BF16 mixed-precision training against FP32: same data, seed and steps.

  /usr/bin/python3 bench/precision_gap.py --config tiny --steps 200 [--batch 8] [--seq 256]
      [--lr 2e-3] [--precisions fp32,bf16,fp8] [--bf16-moments] [--threads 1] [--out DIR]

Runs `seekr pretrain` once per precision on the default corpus's shards (data/shards, made by
the main job: scripts/pretrain-text.sh), then reports for each the final training loss (the
mean of the last --tail steps' total loss, the V3 report's comparison is of training loss
curves), the validation CE of the final weights (evaluated in FP32) and the relative gap to
FP32 of both. Writes DIR/gap.json (atomically) and prints a table.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench-configs")


def read_metrics(path):
    train, evals = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "train":
                train.append(r)
            elif r.get("type") == "eval":
                evals.append(r)
    return train, evals


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--tail", type=int, default=20)
    ap.add_argument("--precisions", default="fp32,bf16,fp8")
    ap.add_argument("--bf16-moments", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234,
                    help="another seed gives the run-to-run noise floor of the gap")
    ap.add_argument("--seekr", default=None, help="the seekr binary (default BUILD/seekr)")
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = a.out or os.path.join(ROOT, "runs", "precision", a.config)
    os.makedirs(out, exist_ok=True)
    seekr = a.seekr or os.path.join(ROOT, a.build, "seekr")
    config = os.path.join(SHARED, f"{a.config}.json")
    results = {}
    for prec in a.precisions.split(","):
        run = os.path.join(out, prec if a.seed == 1234 else f"{prec}-seed{a.seed}")
        if os.path.exists(os.path.join(run, "metrics.jsonl")):
            os.remove(os.path.join(run, "metrics.jsonl"))
        cmd = [seekr, "pretrain", "--config", config,
               "--tokenizer", os.path.join(ROOT, "data", "tokenizer.json"),
               "--data", os.path.join(ROOT, "data", "shards", "train-*.bin"),
               "--valid", os.path.join(ROOT, "data", "shards", "valid-*.bin"),
               "--out", run, "--steps", str(a.steps), "--batch", str(a.batch),
               "--seq", str(a.seq), "--lr", str(a.lr), "--min-lr", str(a.lr / 10),
               "--warmup", str(a.warmup), "--threads", str(a.threads), "--precision", prec,
               "--seed", str(a.seed),
               "--log-every", "1", "--quiet", "--no-plot"]
        if a.bf16_moments:
            cmd.append("--bf16-moments")
        print(f"== {a.config} {prec}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, check=True)
        train, evals = read_metrics(os.path.join(run, "metrics.jsonl"))
        tail = train[-a.tail:]
        results[prec] = dict(
            final_loss=sum(r["loss"] for r in tail) / len(tail),
            final_ce=sum(r["ce"] for r in tail) / len(tail),
            valid_ce=evals[-1]["valid_loss"] if evals else None,
            tok_per_s=sorted(r["tokens_per_second"] for r in train)[len(train) // 2],
            losses=[r["loss"] for r in train])
    base = results.get("fp32")
    print(f"\n{a.config}: {a.steps} steps of {a.batch}x{a.seq}, lr {a.lr}, seed {a.seed}, "
          f"mean of the last {a.tail} steps")
    print(f"{'precision':>9} {'train loss':>11} {'gap':>8} {'valid CE':>9} {'gap':>8} {'tok/s':>7}")
    for prec, r in results.items():
        gap = (r["final_loss"] / base["final_loss"] - 1) if base else float("nan")
        vgap = (r["valid_ce"] / base["valid_ce"] - 1) if base and r["valid_ce"] else float("nan")
        r["rel_gap_train_loss"], r["rel_gap_valid_ce"] = gap, vgap
        print(f"{prec:>9} {r['final_loss']:11.4f} {100 * gap:+7.2f}% {r['valid_ce'] or 0:9.4f} "
              f"{100 * vgap:+7.2f}% {r['tok_per_s']:7.0f}")
    summary = dict(config=a.config, steps=a.steps, batch=a.batch, seq=a.seq, lr=a.lr, seed=a.seed,
                   bf16_moments=a.bf16_moments, threads=a.threads, results=results)
    name = "gap.json" if a.seed == 1234 else f"gap-seed{a.seed}.json"
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(out, name))
    print(f"wrote {os.path.join(out, name)}")


if __name__ == "__main__":
    sys.exit(main())
