#!/usr/bin/python3
"""Self-checks of the PyTorch twin. Run: /usr/bin/python3 tests/reference/test_twin.py
Exits non-zero if any check fails."""

import json
import math
import os
import struct
import sys
import tempfile
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
import twin  # noqa: E402

QLORA = os.path.join(HERE, "configs", "tiny_qlora_yarn_softmax.json")
# The bench tiny config; where the shared folder is absent, the same config is rebuilt from
# the q-LoRA variant (which is tiny.json plus the overrides undone here).
TINY = os.environ.get("SEEKR_TINY_CONFIG", "/work/shared/bench-configs/tiny.json")
if not os.path.exists(TINY):
    with open(QLORA) as f:
        _tiny = json.load(f)
    _tiny.update(vocab_size=4096, q_lora_rank=None, rope_scaling=None, scoring_func="sigmoid",
                 norm_topk_prob=True, routed_scaling_factor=2.5, num_nextn_predict_layers=1)
    TINY = os.path.join(tempfile.mkdtemp(), "tiny.json")
    with open(TINY, "w") as f:
        json.dump(_tiny, f)

V3_CONFIG = {
    "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
    "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8,
    "topk_group": 4, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
    "norm_topk_prob": True, "routed_scaling_factor": 2.5, "first_k_dense_replace": 3,
    "num_nextn_predict_layers": 1, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
}


def micro_config(**over):
    raw = {
        "model_type": "deepseek_v3", "vocab_size": 32, "hidden_size": 16,
        "intermediate_size": 24, "moe_intermediate_size": 8, "num_hidden_layers": 2,
        "num_attention_heads": 2, "q_lora_rank": 12, "kv_lora_rank": 8,
        "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6, "n_routed_experts": 4,
        "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1,
        "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
        "routed_scaling_factor": 2.0, "first_k_dense_replace": 1,
        "num_nextn_predict_layers": 1, "rms_norm_eps": 1e-6, "initializer_range": 0.3,
        "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 8,
                         "mscale": 1.0, "mscale_all_dim": 0.8},
    }
    raw.update(over)
    return twin.Config.from_hf(raw)


def load_cfg(path):
    with open(path) as f:
        return twin.Config.from_hf(json.load(f))


def f64_weights(cfg, seed=0):
    return {n: t.double() for n, t in twin.init_weights(cfg, seed).items()}


def close(a, b, tol, what):
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max abs diff {err:.3e} > {tol:.1e}"
    return err


# ----------------------------------------------------------------------------------------------

def test_absorbed_matches_naive():
    torch.manual_seed(1)
    for path in (TINY, QLORA):
        cfg = load_cfg(path)
        p = f64_weights(cfg)
        tokens = torch.randint(0, cfg.vocab_size, (2, 12))
        x = torch.randn(2, 12, cfg.hidden_size, dtype=torch.float64)
        cos, sin = twin.rope_cos_sin(cfg, 12, torch.float64)
        pre = "model.layers.1"
        a = twin.mla(p, pre, cfg, x, cos, sin, absorbed=False)
        b = twin.mla(p, pre, cfg, x, cos, sin, absorbed=True)
        close(a, b, 1e-10, f"{path} MLA")
        la, ma, _ = twin.forward(p, cfg, tokens, absorbed=False)
        lb, mb, _ = twin.forward(p, cfg, tokens, absorbed=True)
        close(la, lb, 1e-10, f"{path} logits")
        for x1, x2 in zip(ma, mb):
            close(x1, x2, 1e-10, f"{path} mtp logits")


def test_gradcheck_full_loss():
    """Full loss (CE + MTP + balance) vs finite differences, w.r.t. the router gates (main and
    MTP layer), kv_b_proj, a shared expert and the MTP/attention norm weights."""
    for over in ({}, {"scoring_func": "softmax", "norm_topk_prob": False, "q_lora_rank": None,
                      "topk_method": "group_limited_greedy"}):
        cfg = micro_config(**over)
        p = f64_weights(cfg, seed=3)
        hp = twin.Hyper(mtp_lambda=0.5, balance_alpha=0.3)
        seq = torch.randint(0, cfg.vocab_size, (2, 7), generator=torch.Generator().manual_seed(5))
        check = ["model.layers.1.mlp.gate.weight", "model.layers.2.mlp.gate.weight",
                 "model.layers.2.hnorm.weight"]
        if cfg.q_lora_rank:
            check += ["model.layers.0.self_attn.kv_b_proj.weight",
                      "model.layers.1.self_attn.kv_a_layernorm.weight",
                      "model.layers.1.self_attn.q_a_layernorm.weight",
                      "model.layers.2.enorm.weight"]
        else:
            check += ["model.layers.2.mlp.shared_experts.down_proj.weight"]
        base_idx = {k: v[1] for k, v in twin.forward(p, cfg, seq[:, :-1])[2].items()}

        def fn(*ts):
            q = dict(p)
            q.update(zip(check, ts))
            return twin.losses(q, cfg, seq, hp)["loss"]

        inputs = tuple(p[n].clone().requires_grad_(True) for n in check)
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
        # the check is only meaningful if no perturbation flipped the expert selection
        after = {k: v[1] for k, v in twin.forward(p, cfg, seq[:, :-1])[2].items()}
        assert all(torch.equal(base_idx[k], after[k]) for k in base_idx)
        # and the balance loss must carry gradient into the router
        bal_only = twin.Hyper(mtp_lambda=0.0, balance_alpha=1.0)
        q = dict(p)
        q[check[0]] = p[check[0]].clone().requires_grad_(True)
        out = twin.losses(q, cfg, seq, bal_only)
        (g,) = torch.autograd.grad(out["balance"], [q[check[0]]])
        assert g.abs().max() > 1e-6, "balance loss does not reach the gate weight"


def test_rope_interleaved_hand_example():
    cfg = micro_config(rope_scaling=None)  # rope dim 4: inv_freq = [1, 1/100]
    assert torch.allclose(twin.rope_inv_freq(cfg), torch.tensor([1.0, 0.01], dtype=torch.float64))
    cos, sin = twin.rope_cos_sin(cfg, 3, torch.float64)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).expand(1, 3, 4)
    y = twin.apply_rope(x, cos, sin)
    for t in range(3):
        a, b = t * 1.0, t * 0.01
        want = [1 * math.cos(a) - 2 * math.sin(a), 1 * math.sin(a) + 2 * math.cos(a),
                3 * math.cos(b) - 4 * math.sin(b), 3 * math.sin(b) + 4 * math.cos(b)]
        close(y[0, t], torch.tensor(want, dtype=torch.float64), 1e-14, f"rope t={t}")
    # HF's formulation: de-interleave (view d/2,2 + transpose), then rotate_half. Must agree.
    cfg = load_cfg(QLORA)
    T, R = 9, cfg.qk_rope_head_dim
    cos, sin = twin.rope_cos_sin(cfg, T, torch.float64)
    x = torch.randn(2, T, 3, R, dtype=torch.float64)
    xd = x.view(2, T, 3, R // 2, 2).transpose(-1, -2).reshape(2, T, 3, R)
    c = torch.cat((cos, cos), -1)[None, :, None]
    s = torch.cat((sin, sin), -1)[None, :, None]
    rot = torch.cat((-xd[..., R // 2:], xd[..., : R // 2]), -1)
    hf = xd * c + rot * s
    ours = twin.apply_rope(x, cos, sin).view(2, T, 3, R // 2, 2).transpose(-1, -2)
    close(ours.reshape(2, T, 3, R), hf, 1e-14, "rope vs HF rotate_half")
    # mscale ratio of the q-LoRA config: 1+0.1 ln 4 over 1+0.08 ln 4
    m = (1 + 0.1 * math.log(4)) / (1 + 0.08 * math.log(4))
    assert abs(cos[0, 0].item() - m) < 1e-14 and abs(m - 1) > 0.02


def test_yarn_v3():
    cfg = twin.Config.from_hf(V3_CONFIG)
    low, high = twin.yarn_find_correction_range(32, 1, 64, 10000, 4096)
    assert (low, high) == (10, 23), (low, high)
    f = twin.rope_inv_freq(cfg)
    base = 1.0 / 10000 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    close(f[:11], base[:11], 0, "unscaled below low")
    close(f[23:], base[23:] / 40, 1e-18, "interpolated from high")
    ramp = (16 - 10) / 13
    assert abs(f[16].item() - (base[16].item() / 40 * ramp + base[16].item() * (1 - ramp))) < 1e-18
    # V3 softmax scale: 192^-0.5 * (0.1 ln 40 + 1)^2 = 0.13523 (facts file 1.3)
    assert abs(twin.softmax_scale(cfg) - 0.13523) < 1e-5
    # V3 uses mscale == mscale_all_dim, so cos/sin are not scaled
    cos, _ = twin.rope_cos_sin(cfg, 2, torch.float64)
    assert cos[0, 0].item() == 1.0


def test_safetensors_roundtrip():
    tensors = {
        "a.weight": torch.randn(3, 5),
        "b": torch.arange(7, dtype=torch.int32),
        "c": torch.randn(2, 2, 2, dtype=torch.float64),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "i64": torch.tensor([-1, 2**40]),
    }
    meta = {"format": "seekr-reference", "note": "ü"}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.safetensors")
        safetensors_io.save(path, tensors, meta)
        back, m = safetensors_io.load(path)
        assert m == meta and set(back) == set(tensors)
        for k, v in tensors.items():
            v = v.numpy() if isinstance(v, torch.Tensor) else v
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
            assert np.array_equal(back[k], v), k
        raw = open(path, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        assert (8 + n) % 8 == 0
        header = json.loads(raw[8 : 8 + n])
        for k, info in header.items():  # mixed F64/F32/I32 data must stay element-aligned
            if k != "__metadata__":
                size = safetensors_io.DTYPES[info["dtype"]].itemsize
                assert info["data_offsets"][0] % size == 0, k
        # byte-exact layout for one known tensor
        safetensors_io.save(path, {"t": np.array([1.0, -2.0], dtype=np.float32)})
        raw = open(path, "rb").read()
        hdr = b'{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
        hdr += b" " * ((-(8 + len(hdr))) % 8)
        assert raw == struct.pack("<Q", len(hdr)) + hdr + struct.pack("<ff", 1.0, -2.0)


def test_routing_rules():
    cfg = micro_config(n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=2)
    # biased selection: noaux_tc picks by score + bias, weights are unbiased scores
    logits = torch.zeros(1, 8, dtype=torch.float64)  # all scores 0.5 -> pure tie
    bias = torch.zeros(8, dtype=torch.float64)
    _, idx, w = twin.route(cfg, logits, bias)
    assert idx.tolist() == [[0, 1, 2]], idx  # ties: lower index wins (groups 0,1 kept)
    close(w, torch.full((1, 3), 2.0 / 3, dtype=torch.float64), 1e-15, "normalised x scale")
    bias = torch.tensor([0, 0, 0, 0, 0, 0.1, 0.2, 0.05], dtype=torch.float64)
    _, idx, w = twin.route(cfg, logits, bias)
    # group sums of top-2: g0 1.0, g1 1.0, g2 1.1, g3 1.25 -> groups 3, 2; experts 6, 5, 7
    assert idx.tolist() == [[6, 5, 7]], idx
    close(w, torch.full((1, 3), 2.0 / 3, dtype=torch.float64), 1e-15, "weights ignore bias")
    # group_limited_greedy: group score = max; no bias
    g = micro_config(n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=1,
                     topk_method="group_limited_greedy", scoring_func="softmax",
                     norm_topk_prob=False, routed_scaling_factor=1.0)
    logits = torch.tensor([[0.0, 0.1, 0.9, 0.0, 0.5, 0.5, 0.2, 0.0]], dtype=torch.float64)
    scores, idx, w = twin.route(g, logits, None)
    assert idx.tolist() == [[2, 3]], idx
    close(w, scores[:, [2, 3]], 0, "unnormalised weights")


def test_mtp_offsets_and_causality():
    """Module k at position i sees tokens t[0..i+k] only, so changing t[j] must leave main
    logits at i < j and MTP-k logits at i < j-k unchanged and change position j-k."""
    cfg = micro_config(num_nextn_predict_layers=2, num_hidden_layers=2)
    p = f64_weights(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(2))
    j = 5
    t2 = tokens.clone()
    t2[0, j] = (t2[0, j] + 1) % cfg.vocab_size
    la, ma, _ = twin.forward(p, cfg, tokens)
    lb, mb, _ = twin.forward(p, cfg, t2)
    assert torch.equal(la[:, :j], lb[:, :j]) and not torch.allclose(la[:, j], lb[:, j])
    for k, (a, b) in enumerate(zip(ma, mb), start=1):
        assert a.shape[1] == 8 - k
        assert torch.equal(a[:, : j - k], b[:, : j - k]), k
        assert not torch.allclose(a[:, j - k], b[:, j - k]), k


def test_mtp_eh_proj_order():
    """eh_proj input is [enorm(Emb) ; hnorm(h)]: zeroing the first d columns must make the
    MTP logits independent of the embedded next token (and they depend on it otherwise)."""
    cfg = micro_config(num_nextn_predict_layers=1)
    p = f64_weights(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (1, 6), generator=torch.Generator().manual_seed(4))
    t2 = tokens.clone()
    t2[0, 5] = (t2[0, 5] + 3) % cfg.vocab_size  # only seen by MTP position 4 via Emb(t[i+1])

    def mtp_change():
        _, ma, _ = twin.forward(p, cfg, tokens)
        _, mb, _ = twin.forward(p, cfg, t2)
        return (ma[0] - mb[0]).abs().max().item()

    assert mtp_change() > 1e-3
    name = f"model.layers.{cfg.num_hidden_layers}.eh_proj.weight"
    p[name] = p[name].clone()
    p[name][:, : cfg.hidden_size] = 0
    assert mtp_change() < 1e-12


def test_bias_update_and_dump():
    """Generates the q-LoRA reference (short run) and checks the dump's contract."""
    with tempfile.TemporaryDirectory() as d:
        hp = twin.Hyper(steps=3)
        cfg, first, rec = twin.generate(QLORA, d, seed=7, batch=2, seq=6, hp=hp)
        ref, meta = safetensors_io.load(os.path.join(d, "reference.safetensors"))
        w, wmeta = safetensors_io.load(os.path.join(d, "model.safetensors"))
        assert meta["format"] == "seekr-reference" and meta["version"] == "1"
        assert set(w) == {n for n, _, _ in twin.param_specs(cfg)}
        assert all(a.dtype == np.float32 for a in w.values())
        assert "model.layers.1.self_attn.q_a_proj.weight" in w
        assert "model.layers.5.shared_head.norm.weight" in w  # second MTP module, L + 2 - 1
        assert ref["tokens"].shape == (2, 7) and ref["tokens"].dtype == np.int32
        assert ref["logits"].shape == (2, 6, cfg.vocab_size)
        assert ref["mtp_logits.2"].shape == (2, 4, cfg.vocab_size)
        total = ref["ce_loss"][0] + ref["mtp_loss"][0] + ref["balance_loss"][0]
        assert abs(total - ref["loss"][0]) < 1e-5 and ref["adamw.total_loss"][0] == ref["loss"][0]
        grads = {n[5:] for n in ref if n.startswith("grad.")}
        assert grads == {n for n in w if not n.endswith("correction_bias")}
        moe = [i for i in range(6) if cfg.is_moe(i)]
        assert sorted(int(n.split(".")[1]) for n in ref if n.startswith("expert_load.")) == moe
        for i in moe:
            load = ref[f"expert_load.{i}"]
            seq_len = 6 - max(0, i - cfg.num_hidden_layers + 1)
            assert load.sum() == 2 * seq_len * cfg.num_experts_per_tok
            b0 = w[f"model.layers.{i}.mlp.gate.e_score_correction_bias"].astype(np.float64)
            b1 = ref[f"final.model.layers.{i}.mlp.gate.e_score_correction_bias"]
            step = (b1 - b0) / 1e-3
            assert np.all(np.abs(step - np.round(step)) < 1e-3) and np.abs(step).max() <= 3 + 1e-3
            assert np.abs(step).max() > 0
        # the first step's bias move follows the first forward's load
        i = moe[0]
        load = ref[f"expert_load.{i}"].astype(np.float64)
        p = {n: torch.from_numpy(a).double() for n, a in w.items()}
        twin.update_biases(p, {i: torch.from_numpy(load)}, 1e-3)
        want = np.sign(load - load.mean())
        got = (w[f"model.layers.{i}.mlp.gate.e_score_correction_bias"]
               - p[f"model.layers.{i}.mlp.gate.e_score_correction_bias"].numpy()) / 1e-3
        assert np.allclose(got, want, atol=1e-6)
        assert rec["total"][-1] < rec["total"][0]


def test_float32_matches_float64():
    cfg = load_cfg(TINY)
    w = twin.init_weights(cfg, 0)
    seq = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    hp = twin.Hyper()
    a = twin.losses({n: t.double() for n, t in w.items()}, cfg, seq, hp)
    b = twin.losses(dict(w), cfg, seq, hp)
    close(a["logits"].float(), b["logits"], 1e-4, "f32 vs f64 logits")
    assert abs(a["loss"].item() - b["loss"].item()) < 1e-4


def test_tied_embeddings_and_v2():
    cfg = micro_config(tie_word_embeddings=True, model_type="deepseek_v2",
                       topk_method="greedy", num_nextn_predict_layers=0)
    names = {n for n, _, _ in twin.param_specs(cfg)}
    assert "lm_head.weight" not in names
    assert not any("correction_bias" in n for n in names)
    p = f64_weights(cfg)
    logits, mtp, _ = twin.forward(p, cfg, torch.tensor([[1, 2, 3]]))
    assert logits.shape == (1, 3, 32) and mtp == []


def main():
    tests = [(k, v) for k, v in globals().items() if k.startswith("test_") and callable(v)]
    only = sys.argv[1:]
    torch.set_num_threads(1)
    failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        try:
            fn()
            print(f"PASS {name}")
        except Exception:  # report every failure, then exit non-zero
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    print(f"{len(tests) - failed if not only else len(only) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
