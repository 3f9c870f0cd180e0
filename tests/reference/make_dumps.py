#!/usr/bin/python3
"""Runs the twin for each config into OUT/<config stem>/, skipping dumps that are newer than
both the config and the twin's sources (so repeated ctest runs stay fast)."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
out_root, configs = sys.argv[1], sys.argv[2:]
sources = [os.path.join(here, f) for f in ("twin.py", "safetensors_io.py")]
for cfg in configs:
    stem = os.path.splitext(os.path.basename(cfg))[0]
    out = os.path.join(out_root, stem)
    done = os.path.join(out, "reference.safetensors")
    newest_input = max(os.path.getmtime(p) for p in sources + [cfg])
    if os.path.exists(done) and os.path.getmtime(done) > newest_input:
        print(f"{stem}: up to date")
        continue
    subprocess.run([sys.executable, os.path.join(here, "twin.py"), "--config", cfg, "--out", out],
                   check=True)
    print(f"{stem}: written to {out}")
