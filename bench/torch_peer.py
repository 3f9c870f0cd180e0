#!/usr/bin/python3
"""PyTorch peer for bench/compare.py: the project's PyTorch twin (tests/reference/twin.py)
timed on the same config, batch, sequence length and thread count as seekr.

  torch_peer.py train  --config C --batch B --seq T --steps N --warmup W --threads K
  torch_peer.py decode --config C --prompt P --tokens N --threads K [--model DIR]

Prints one JSON object. Thread settings must be in the environment before torch is imported
(OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, OMP_WAIT_POLICY): compare.py starts one process per
measurement with them set; --threads is applied with torch.set_num_threads as well.

train: the twin's losses (CE + MTP + sequence-wise balance loss), autograd backward, gradient
clipping, AdamW and the correction-bias update, as twin.train does, on random tokens.
decode: batch-1 greedy decoding with an absorbed-MLA latent cache (the twin has no cache; the
step below uses the twin's weights, norms, RoPE and routing, and only the selected experts).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import twin  # noqa: E402


def load_config(path):
    with open(path) as f:
        return twin.Config.from_hf(json.load(f))


def bench_train(cfg, a):
    p = twin.init_weights(cfg, seed=1)
    hp = twin.Hyper(steps=1)
    names, opt = twin.make_optimizer(p, hp)
    gen = torch.Generator().manual_seed(1)
    times, losses = [], []
    for step in range(a.warmup + a.steps):
        seq = torch.randint(0, cfg.vocab_size, (a.batch, a.seq + 1), generator=gen)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = twin.losses(p, cfg, seq, hp)
        out["loss"].backward()
        for n in names:
            if p[n].grad is None:
                p[n].grad = torch.zeros_like(p[n])
        torch.nn.utils.clip_grad_norm_([p[n] for n in names], hp.clip)
        opt.step()
        twin.update_biases(p, out["load"], hp.bias_gamma)
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt)
            losses.append(out["loss"].item())
    tokens = a.batch * a.seq
    return dict(engine="pytorch-twin", mode="train", threads=a.threads, batch=a.batch,
                seq=a.seq, steps=a.steps, step_seconds=times,
                tok_per_s=tokens / statistics.median(times), last_loss=losses[-1])


class LatentCache:
    """Absorbed MLA decode state for one sequence: per layer c [T, r] and k_pe [T, dr]."""

    def __init__(self, cfg, max_len):
        L, r, dr = cfg.num_hidden_layers, cfg.kv_lora_rank, cfg.qk_rope_head_dim
        self.c = [torch.zeros(max_len, r) for _ in range(L)]
        self.pe = [torch.zeros(max_len, dr) for _ in range(L)]
        self.cos, self.sin = twin.rope_cos_sin(cfg, max_len, torch.float32)
        self.scale = twin.softmax_scale(cfg)


def mla_step(p, layer, cfg, x, pos, cache):
    """x [n, d] at positions pos..pos+n-1 -> [n, d]; appends n latents to the cache."""
    n = x.shape[0]
    H, dn, dr, dv = (cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim,
                     cfg.v_head_dim)
    r, eps = cfg.kv_lora_rank, cfg.rms_norm_eps
    a = f"model.layers.{layer}.self_attn"
    if cfg.q_lora_rank:
        cq = twin.rms_norm(twin.linear(x, p[f"{a}.q_a_proj.weight"]),
                           p[f"{a}.q_a_layernorm.weight"], eps)
        q = twin.linear(cq, p[f"{a}.q_b_proj.weight"])
    else:
        q = twin.linear(x, p[f"{a}.q_proj.weight"])
    q = q.view(n, H, dn + dr)
    cos, sin = cache.cos[pos:pos + n], cache.sin[pos:pos + n]
    q_pe = twin.apply_rope(q[None, :, :, dn:], cos, sin)[0]  # [n, H, dr]
    ckv = twin.linear(x, p[f"{a}.kv_a_proj_with_mqa.weight"])  # [n, r + dr]
    cache.c[layer][pos:pos + n] = twin.rms_norm(ckv[:, :r], p[f"{a}.kv_a_layernorm.weight"], eps)
    cache.pe[layer][pos:pos + n] = twin.apply_rope(ckv[None, :, r:], cos, sin)[0]
    c, pe = cache.c[layer][:pos + n], cache.pe[layer][:pos + n]  # [S, r], [S, dr]
    w = p[f"{a}.kv_b_proj.weight"].view(H, dn + dv, r)
    q_lat = torch.einsum("nhd,hdr->nhr", q[:, :, :dn], w[:, :dn])  # [n, H, r]
    scores = (torch.einsum("nhr,sr->nhs", q_lat, c) + torch.einsum("nhd,sd->nhs", q_pe, pe))
    scores = scores * cache.scale
    if n > 1:
        causal = torch.ones(n, pos + n, dtype=torch.bool).triu(pos + 1)
        scores = scores.masked_fill(causal[:, None, :], float("-inf"))
    o_lat = torch.einsum("nhs,sr->nhr", scores.softmax(-1), c)  # [n, H, r]
    out = torch.einsum("nhr,hdr->nhd", o_lat, w[:, dn:])  # [n, H, dv]
    return twin.linear(out.reshape(n, H * dv), p[f"{a}.o_proj.weight"])


def moe_step(p, layer, cfg, h):
    """h [n, d]: routed experts of the selected ids only, plus the shared experts."""
    m = f"model.layers.{layer}.mlp"
    bias = p.get(f"{m}.gate.e_score_correction_bias")
    _, idx, weights = twin.route(cfg, twin.linear(h, p[f"{m}.gate.weight"]), bias)
    y = torch.zeros_like(h)
    for i in range(h.shape[0]):
        for j, e in enumerate(idx[i].tolist()):
            y[i] += weights[i, j] * twin.swiglu(p, f"{m}.experts.{e}", h[i:i + 1])[0]
    if cfg.n_shared_experts:
        y = y + twin.swiglu(p, f"{m}.shared_experts", h)
    return y


def decode_forward(p, cfg, tokens, pos, cache):
    """tokens [n] at positions pos.. -> logits of the last one [V]."""
    eps = cfg.rms_norm_eps
    x = p["model.embed_tokens.weight"][tokens]
    for layer in range(cfg.num_hidden_layers):
        pre = f"model.layers.{layer}"
        x = x + mla_step(p, layer, cfg, twin.rms_norm(x, p[f"{pre}.input_layernorm.weight"], eps),
                         pos, cache)
        h = twin.rms_norm(x, p[f"{pre}.post_attention_layernorm.weight"], eps)
        x = x + (moe_step(p, layer, cfg, h) if cfg.is_moe(layer)
                 else twin.swiglu(p, f"{pre}.mlp", h))
    last = twin.rms_norm(x[-1:], p["model.norm.weight"], eps)
    return twin.linear(last, twin.lm_head(p, cfg))[0]


def bench_decode(cfg, a):
    expect = None
    if a.model:  # the checkpoint bench_model saved, with its prompt and greedy tokens
        import safetensors_io
        p = {n: torch.from_numpy(t).to(torch.float32)
             for n, t in safetensors_io.load(os.path.join(a.model, "model.safetensors"))[0].items()}
        with open(os.path.join(a.model, "greedy.json")) as f:
            g = json.load(f)
        prompt, expect = torch.tensor(g["prompt"][:a.prompt]), g["greedy"]
        a.tokens = min(a.tokens, len(expect))
    else:
        p = twin.init_weights(cfg, seed=1)
        gen = torch.Generator().manual_seed(2)
        prompt = torch.randint(0, cfg.vocab_size, (a.prompt,), generator=gen)
    runs = []
    with torch.no_grad():
        for _ in range(a.repeat):
            cache = LatentCache(cfg, a.prompt + a.tokens)
            t0 = time.perf_counter()
            logits = decode_forward(p, cfg, prompt, 0, cache)
            t1 = time.perf_counter()
            out = [int(logits.argmax())]
            for i in range(a.tokens - 1):
                logits = decode_forward(p, cfg, torch.tensor(out[-1:]), a.prompt + i, cache)
                out.append(int(logits.argmax()))
            t2 = time.perf_counter()
            runs.append((a.prompt / (t1 - t0), (a.tokens - 1) / (t2 - t1)))
    res = dict(engine="pytorch-twin", mode="decode", threads=a.threads, prompt=a.prompt,
               tokens=a.tokens, prefill_tok_per_s=statistics.median(r[0] for r in runs),
               decode_tok_per_s=statistics.median(r[1] for r in runs), first_tokens=out[:16])
    if expect is not None:
        res["same_greedy_tokens_as_seekr"] = out == expect[:len(out)]
        res["matching_prefix"] = next((i for i, (x, y) in enumerate(zip(out, expect)) if x != y),
                                      len(out))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["train", "decode"])
    ap.add_argument("--config", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", help="decode: a checkpoint dir from bench_model --modes save,decode "
                                    "--out DIR (weights, prompt and seekr's greedy tokens)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config(a.config)
    res = bench_train(cfg, a) if a.mode == "train" else bench_decode(cfg, a)
    res["torch"] = torch.__version__
    print(json.dumps(res))


if __name__ == "__main__":
    main()
