#!/usr/bin/python3
"""seekr against its peers, side by side in one run on this machine.

  /usr/bin/python3 bench/compare.py [--configs tiny,small] [--repeat 3] [--out bench.json]
                                    [--build build] [--skip-llama] [--quick]

For every bench config (../shared/bench-configs/NAME.json) it measures, each engine at 1 and
2 threads, and reports each engine at its best thread count:
  training tok/s   seekr (bench_model, FP32 and BF16/FP8 modes) vs the PyTorch twin
                   (bench/torch_peer.py: the same model, losses and AdamW), batch 8x256 on
                   tiny and 4x256 on small; seekr's MFU against the sgemm peak it measures;
  decode tok/s     batch 1 greedy, seekr vs the PyTorch twin with a latent cache and vs
                   llama.cpp (node-llama-cpp, the model exported by `seekr export gguf`);
                   seekr's achieved GB/s (weights + cache bytes per token) and the share of
                   the in-process read-bandwidth bound;
  prefill tok/s    seekr vs llama.cpp.
Every figure is the median over --repeat processes; the load average of the machine is
recorded beside it, since the two cores are shared. Writes everything to --out as JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench-configs")
TRAIN_SHAPE = {"tiny": (8, 256), "small": (4, 256)}


def env_for(threads):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY="PASSIVE", MKL_NUM_THREADS=str(threads))
    return env


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_json(cmd, threads, timeout=1800):
    """Runs cmd with the thread environment; returns the JSON objects it printed."""
    t0 = time.time()
    res = subprocess.run(cmd, env=env_for(threads), capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    out = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    for o in out:
        o.setdefault("wall_s", time.time() - t0)
    return out


def median_of(records, key):
    return statistics.median(r[key] for r in records)


class Bench:
    def __init__(self, a):
        self.a = a
        self.bench_model = os.path.join(ROOT, a.build, "bench", "bench_model")
        self.seekr = os.path.join(ROOT, a.build, "seekr")
        self.results = dict(machine=dict(nproc=os.cpu_count(), start_load=load_average()),
                            configs={})

    def repeat(self, cmd, threads, pick):
        recs = []
        for _ in range(self.a.repeat):
            recs.extend(r for r in run_json(cmd, threads) if pick(r))
        return recs

    def seekr_train(self, cfg, name, threads, precision="fp32"):
        B, T = TRAIN_SHAPE.get(name, (4, 256))
        steps = "2" if self.a.quick else "4"
        cmd = [self.bench_model, "--config", cfg, "--modes", "train", "--threads", str(threads),
               "--batch", str(B), "--seq", str(T), "--steps", steps, "--warmup", "1",
               "--precision", precision]
        recs = self.repeat(cmd, threads, lambda r: r["mode"] == "train")
        return dict(tok_per_s=median_of(recs, "tok_per_s"),
                    flops_per_token=recs[0]["flops_per_token"],
                    load=[r["load_average"] for r in recs], runs=[r["tok_per_s"] for r in recs])

    def torch_train(self, cfg, name, threads):
        B, T = TRAIN_SHAPE.get(name, (4, 256))
        steps = "2" if self.a.quick else "4"
        cmd = ["/usr/bin/python3", os.path.join(ROOT, "bench", "torch_peer.py"), "train",
               "--config", cfg, "--threads", str(threads), "--batch", str(B), "--seq", str(T),
               "--steps", steps, "--warmup", "1"]
        recs = self.repeat(cmd, threads, lambda r: True)
        return dict(tok_per_s=median_of(recs, "tok_per_s"), runs=[r["tok_per_s"] for r in recs],
                    load=load_average())

    def seekr_decode(self, cfg, threads):
        cmd = [self.bench_model, "--config", cfg, "--modes", "decode", "--threads", str(threads),
               "--prompt", str(self.a.prompt), "--tokens", str(self.a.tokens), "--repeat", "3"]
        recs = self.repeat(cmd, threads, lambda r: r["mode"] == "decode")
        return dict(decode_tok_per_s=median_of(recs, "decode_tok_per_s"),
                    prefill_tok_per_s=median_of(recs, "prefill_tok_per_s"),
                    bytes_per_token=recs[0]["bytes_per_token"],
                    load=[r["load_average"] for r in recs])

    def torch_decode(self, cfg, ckpt, threads):
        cmd = ["/usr/bin/python3", os.path.join(ROOT, "bench", "torch_peer.py"), "decode",
               "--config", cfg, "--model", ckpt, "--threads", str(threads),
               "--prompt", str(self.a.prompt), "--tokens", str(min(self.a.tokens, 64)),
               "--repeat", "1"]
        recs = self.repeat(cmd, threads, lambda r: True)
        return dict(decode_tok_per_s=median_of(recs, "decode_tok_per_s"),
                    prefill_tok_per_s=median_of(recs, "prefill_tok_per_s"),
                    same_greedy_tokens=all(r["same_greedy_tokens_as_seekr"] for r in recs))

    def save_model(self, cfg, name):
        """The random model every engine decodes, with the prompt and seekr's greedy tokens."""
        ckpt = os.path.join(ROOT, "runs", "bench", name, "checkpoint")
        run_json([self.bench_model, "--config", cfg, "--modes", "save,decode", "--out", ckpt,
                  "--prompt", str(self.a.prompt), "--tokens", str(self.a.tokens),
                  "--repeat", "1"], 1)
        return ckpt

    def peaks(self, cfg):
        out = {}
        for t in (1, 2):
            recs = run_json([self.bench_model, "--config", cfg, "--modes", "peak",
                             "--threads", str(t)], t)
            out[t] = recs[0]
        return out

    def best(self, fn, key):
        """fn(threads) at 1 and 2 threads; returns (best result, all results by threads)."""
        by = {t: fn(t) for t in (1, 2)}
        t = max(by, key=lambda k: by[k][key])
        return dict(by[t], threads=t), by

    def config(self, name):
        cfg = os.path.join(SHARED, f"{name}.json")
        r = {}
        print(f"== {name}", flush=True)
        r["peak"] = self.peaks(cfg)
        r["train"] = {}
        r["train"]["seekr_fp32"], r["train"]["seekr_fp32_by_threads"] = self.best(
            lambda t: self.seekr_train(cfg, name, t), "tok_per_s")
        for prec in ("bf16", "fp8"):
            t = r["train"]["seekr_fp32"]["threads"]
            r["train"][f"seekr_{prec}"] = dict(self.seekr_train(cfg, name, t, prec), threads=t)
        r["train"]["pytorch"], r["train"]["pytorch_by_threads"] = self.best(
            lambda t: self.torch_train(cfg, name, t), "tok_per_s")
        r["decode"] = {}
        r["decode"]["seekr"], r["decode"]["seekr_by_threads"] = self.best(
            lambda t: self.seekr_decode(cfg, t), "decode_tok_per_s")
        ckpt = self.save_model(cfg, name)
        r["decode"]["pytorch"], _ = self.best(lambda t: self.torch_decode(cfg, ckpt, t),
                                              "decode_tok_per_s")
        if not self.a.skip_llama:
            r["decode"]["llama.cpp"] = self.llama(ckpt, name)
        self.results["configs"][name] = r
        self.report(name, r)

    def llama(self, ckpt, name):
        peer = os.path.join(ROOT, "bench", "llama", "llama_peer.mjs")
        if not os.path.exists(os.path.join(ROOT, "bench", "llama", "node_modules")):
            return dict(skipped="bench/llama/node_modules missing: cd bench/llama && "
                                "npm install --omit=optional --ignore-scripts")
        gguf = os.path.join(ROOT, "runs", "bench", name, "model.gguf")
        subprocess.run([self.seekr, "export", "gguf", "--model", ckpt, "--out", gguf],
                       check=True, capture_output=True)
        with open(os.path.join(ckpt, "greedy.json")) as f:
            g = json.load(f)
        ids = ",".join(str(t) for t in g["prompt"])
        # Same weights, same prompt: llama.cpp's greedy tokens against seekr's.
        res = run_json(["node", peer, "greedy", "--model", gguf, "--prompt-ids", ids,
                        "--n", str(len(g["greedy"])), "--threads", "1"], 1)[0]
        same = next((i for i, (a, b) in enumerate(zip(res["tokens"], g["greedy"])) if a != b),
                    len(g["greedy"]))

        def at(threads):
            recs = self.repeat(["node", peer, "bench", "--model", gguf, "--prompt-ids", ids,
                                "--n", str(self.a.tokens), "--threads", str(threads),
                                "--repeat", "3"], threads, lambda r: True)
            return dict(decode_tok_per_s=median_of(recs, "decode_tok_s"),
                        prefill_tok_per_s=median_of(recs, "prompt_tok_s"))
        best, by = self.best(at, "decode_tok_per_s")
        return dict(best, greedy_tokens_matching=same, greedy_tokens=len(g["greedy"]),
                    by_threads=by)

    def report(self, name, r):
        tr, de = r["train"], r["decode"]
        peak = r["peak"][tr["seekr_fp32"]["threads"]]["sgemm_gflops"]
        fp32 = tr["seekr_fp32"]["tok_per_s"]
        mfu = fp32 * tr["seekr_fp32"]["flops_per_token"] / (peak * 1e9)
        print(f"{name}: training tok/s  seekr {fp32:.0f} ({tr['seekr_fp32']['threads']}t, "
              f"MFU {100 * mfu:.0f}% of {peak:.0f} GFLOP/s)  pytorch {tr['pytorch']['tok_per_s']:.0f} "
              f"({tr['pytorch']['threads']}t)  ratio {fp32 / tr['pytorch']['tok_per_s']:.2f}x")
        for prec in ("bf16", "fp8"):
            v = tr[f"seekr_{prec}"]["tok_per_s"]
            print(f"{name}: training tok/s  seekr {prec} {v:.0f}  vs own fp32 {v / fp32:.2f}x")
        s = de["seekr"]
        bw = r["peak"][s["threads"]]["read_gbs"]
        gbs = s["decode_tok_per_s"] * s["bytes_per_token"] / 1e9
        print(f"{name}: decode tok/s  seekr {s['decode_tok_per_s']:.0f} ({s['threads']}t, "
              f"{gbs:.1f} GB/s = {100 * gbs / bw:.0f}% of {bw:.1f} GB/s read)  "
              f"pytorch {de['pytorch']['decode_tok_per_s']:.0f}  ratio "
              f"{s['decode_tok_per_s'] / de['pytorch']['decode_tok_per_s']:.2f}x")
        ll = de.get("llama.cpp", {})
        if "decode_tok_per_s" in ll:
            print(f"{name}: decode tok/s  llama.cpp {ll['decode_tok_per_s']:.0f} "
                  f"({ll['threads']}t)  ratio {s['decode_tok_per_s'] / ll['decode_tok_per_s']:.2f}x"
                  f"  (greedy tokens identical: {ll['greedy_tokens_matching']}/"
                  f"{ll['greedy_tokens']})")
            print(f"{name}: prefill tok/s  seekr {s['prefill_tok_per_s']:.0f}  llama.cpp "
                  f"{ll['prefill_tok_per_s']:.0f}  ratio "
                  f"{s['prefill_tok_per_s'] / ll['prefill_tok_per_s']:.2f}x")
        print(f"{name}: prefill tok/s  seekr {s['prefill_tok_per_s']:.0f}  pytorch "
              f"{de['pytorch']['prefill_tok_per_s']:.0f}  (pytorch greedy tokens identical: "
              f"{de['pytorch']['same_greedy_tokens']})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="tiny,small")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="runs/bench/compare.json")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer steps per measurement")
    a = ap.parse_args()
    b = Bench(a)
    for name in a.configs.split(","):
        b.config(name)
    b.results["machine"]["end_load"] = load_average()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(b.results, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(main())
