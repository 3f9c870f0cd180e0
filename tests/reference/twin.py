#!/usr/bin/python3
"""Independent PyTorch twin of a DeepSeek-V3 (or V2) model, used as the numerical reference
for the C++ engine. Plain, functional, autograd-based PyTorch; correctness and readability
over speed. See README.md in this directory for the file formats and every convention.

Parameters live in a dict {HF tensor name: tensor}; every function takes that dict, so the
same code serves the forward pass, gradcheck and the AdamW run.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

# Optional fields and their defaults when absent from config.json. The defaults follow HF's
# DeepseekV3Config / DeepseekV2Config classes (V2 spells the plain top-k method "greedy").
_COMMON_DEFAULTS = dict(
    q_lora_rank=None, n_routed_experts=None, n_shared_experts=None, num_experts_per_tok=None,
    n_group=1, topk_group=1, routed_scaling_factor=1.0, first_k_dense_replace=0,
    moe_layer_freq=1, num_nextn_predict_layers=0, rms_norm_eps=1e-6, rope_theta=10000.0,
    rope_scaling=None, tie_word_embeddings=False, initializer_range=0.02,
    moe_intermediate_size=None, hidden_act="silu")
_DEFAULTS = {
    "deepseek_v3": dict(_COMMON_DEFAULTS, topk_method="noaux_tc", scoring_func="sigmoid",
                        norm_topk_prob=True),
    "deepseek_v2": dict(_COMMON_DEFAULTS, topk_method="greedy", scoring_func="softmax",
                        norm_topk_prob=False),
}
_REQUIRED = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
             "v_head_dim"]


@dataclass
class Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    q_lora_rank: int  # 0 = plain q_proj
    n_routed_experts: int  # 0 = no MoE at all
    n_shared_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    n_group: int
    topk_group: int
    topk_method: str
    scoring_func: str
    norm_topk_prob: bool
    routed_scaling_factor: float
    first_k_dense_replace: int
    moe_layer_freq: int
    num_nextn_predict_layers: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict  # None or the yarn dict
    tie_word_embeddings: bool
    initializer_range: float

    @staticmethod
    def from_hf(raw):
        mt = raw.get("model_type", "deepseek_v3")
        if mt not in _DEFAULTS:
            raise ValueError(f"config.json: model_type {mt!r} is not deepseek_v3/deepseek_v2")
        for k in _REQUIRED:
            if raw.get(k) is None:
                raise ValueError(f"config.json: required field {k!r} missing")
        v = dict(_DEFAULTS[mt])
        v.update({k: raw[k] for k in raw if k in v and raw[k] is not None})
        if v["hidden_act"] != "silu":
            raise ValueError(f"config.json: hidden_act {v['hidden_act']!r} unsupported")
        heads = raw["num_attention_heads"]
        if raw.get("num_key_value_heads", heads) != heads:
            raise ValueError("config.json: MLA needs num_key_value_heads == num_attention_heads")
        rs = v["rope_scaling"]
        if rs is not None:
            kind = rs.get("type", rs.get("rope_type"))
            if kind != "yarn":
                raise ValueError(f"config.json: rope_scaling type {kind!r} unsupported (yarn)")
        e = int(v["n_routed_experts"] or 0)
        if e and (not v["num_experts_per_tok"] or not v["moe_intermediate_size"]):
            raise ValueError("config.json: MoE needs num_experts_per_tok, moe_intermediate_size")
        if v["topk_method"] not in ("greedy", "gready", "group_limited_greedy", "noaux_tc"):
            raise ValueError(f"config.json: topk_method {v['topk_method']!r} unsupported")
        if v["scoring_func"] not in ("sigmoid", "softmax"):
            raise ValueError(f"config.json: scoring_func {v['scoring_func']!r} unsupported")
        c = Config(
            **{k: raw[k] for k in _REQUIRED},
            q_lora_rank=int(v["q_lora_rank"] or 0),
            n_routed_experts=e,
            n_shared_experts=int(v["n_shared_experts"] or 0),
            num_experts_per_tok=int(v["num_experts_per_tok"] or 0),
            moe_intermediate_size=int(v["moe_intermediate_size"] or 0),
            n_group=int(v["n_group"] or 1),
            topk_group=int(v["topk_group"] or 1),
            topk_method="greedy" if v["topk_method"] == "gready" else v["topk_method"],
            scoring_func=v["scoring_func"],
            norm_topk_prob=bool(v["norm_topk_prob"]),
            routed_scaling_factor=float(v["routed_scaling_factor"]),
            first_k_dense_replace=int(v["first_k_dense_replace"]),
            moe_layer_freq=int(v["moe_layer_freq"]),
            num_nextn_predict_layers=int(v["num_nextn_predict_layers"] or 0),
            rms_norm_eps=float(v["rms_norm_eps"]),
            rope_theta=float(v["rope_theta"]),
            rope_scaling=rs,
            tie_word_embeddings=bool(v["tie_word_embeddings"]),
            initializer_range=float(v["initializer_range"]),
        )
        if c.n_routed_experts and c.n_routed_experts % c.n_group:
            raise ValueError("config.json: n_routed_experts must be a multiple of n_group")
        return c

    def is_moe(self, layer):
        """HF rule; applied to MTP layers with their stored index L+k-1 as well."""
        return (self.n_routed_experts > 0 and layer >= self.first_k_dense_replace
                and layer % self.moe_layer_freq == 0)

    @property
    def has_bias(self):
        return self.topk_method == "noaux_tc"


# ----------------------------------------------------------------------------------------------
# Parameter names, shapes and initialisation
# ----------------------------------------------------------------------------------------------

MATRIX, NORM, BIAS = "matrix", "norm", "bias"


def _mlp_specs(prefix, d, inter):
    return [(f"{prefix}.gate_proj.weight", (inter, d), MATRIX),
            (f"{prefix}.up_proj.weight", (inter, d), MATRIX),
            (f"{prefix}.down_proj.weight", (d, inter), MATRIX)]


def _block_specs(cfg, layer):
    d, H = cfg.hidden_size, cfg.num_attention_heads
    dn, dr, dv, r = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    p = f"model.layers.{layer}"
    s = [(f"{p}.input_layernorm.weight", (d,), NORM)]
    if cfg.q_lora_rank:
        s += [(f"{p}.self_attn.q_a_proj.weight", (cfg.q_lora_rank, d), MATRIX),
              (f"{p}.self_attn.q_a_layernorm.weight", (cfg.q_lora_rank,), NORM),
              (f"{p}.self_attn.q_b_proj.weight", (H * (dn + dr), cfg.q_lora_rank), MATRIX)]
    else:
        s += [(f"{p}.self_attn.q_proj.weight", (H * (dn + dr), d), MATRIX)]
    s += [(f"{p}.self_attn.kv_a_proj_with_mqa.weight", (r + dr, d), MATRIX),
          (f"{p}.self_attn.kv_a_layernorm.weight", (r,), NORM),
          (f"{p}.self_attn.kv_b_proj.weight", (H * (dn + dv), r), MATRIX),
          (f"{p}.self_attn.o_proj.weight", (d, H * dv), MATRIX),
          (f"{p}.post_attention_layernorm.weight", (d,), NORM)]
    if cfg.is_moe(layer):
        E, mi = cfg.n_routed_experts, cfg.moe_intermediate_size
        s += [(f"{p}.mlp.gate.weight", (E, d), MATRIX)]
        if cfg.has_bias:
            s += [(f"{p}.mlp.gate.e_score_correction_bias", (E,), BIAS)]
        for e in range(E):
            s += _mlp_specs(f"{p}.mlp.experts.{e}", d, mi)
        if cfg.n_shared_experts:
            s += _mlp_specs(f"{p}.mlp.shared_experts", d, cfg.n_shared_experts * mi)
    else:
        s += _mlp_specs(f"{p}.mlp", d, cfg.intermediate_size)
    return s


def param_specs(cfg):
    """All stored tensors [(name, shape, kind)] in canonical (initialisation) order."""
    d, V, L = cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers
    s = [("model.embed_tokens.weight", (V, d), MATRIX)]
    for layer in range(L):
        s += _block_specs(cfg, layer)
    for k in range(1, cfg.num_nextn_predict_layers + 1):
        p = f"model.layers.{L + k - 1}"
        s += [(f"{p}.enorm.weight", (d,), NORM), (f"{p}.hnorm.weight", (d,), NORM),
              (f"{p}.eh_proj.weight", (d, 2 * d), MATRIX)]
        s += _block_specs(cfg, L + k - 1)
        s += [(f"{p}.shared_head.norm.weight", (d,), NORM)]
    s += [("model.norm.weight", (d,), NORM)]
    if not cfg.tie_word_embeddings:
        s += [("lm_head.weight", (V, d), MATRIX)]
    return s


def init_weights(cfg, seed, bias_range=0.05):
    """Deterministic float32 weights: torch.manual_seed(seed), then in param_specs order
    matrices ~ N(0, initializer_range), norms = 1, correction biases ~ U(-bias_range, bias_range)."""
    torch.manual_seed(seed)
    w = {}
    for name, shape, kind in param_specs(cfg):
        t = torch.empty(shape, dtype=torch.float32)
        if kind == MATRIX:
            t.normal_(0.0, cfg.initializer_range)
        elif kind == NORM:
            t.fill_(1.0)
        else:
            t.uniform_(-bias_range, bias_range)
        w[name] = t
    return w


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x, w):
    return x @ w.t()


def swiglu(p, prefix, x):
    gate = linear(x, p[f"{prefix}.gate_proj.weight"])
    up = linear(x, p[f"{prefix}.up_proj.weight"])
    return linear(F.silu(gate) * up, p[f"{prefix}.down_proj.weight"])


def yarn_get_mscale(scale, mscale):
    return 0.1 * mscale * math.log(scale) + 1.0 if scale > 1 else 1.0


def yarn_find_correction_dim(num_rotations, dim, base, max_pos):
    return dim * math.log(max_pos / (num_rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_find_correction_range(beta_fast, beta_slow, dim, base, max_pos):
    low = math.floor(yarn_find_correction_dim(beta_fast, dim, base, max_pos))
    high = math.ceil(yarn_find_correction_dim(beta_slow, dim, base, max_pos))
    return max(low, 0), min(high, dim - 1)


def _yarn_params(cfg):
    rs = cfg.rope_scaling
    return dict(factor=float(rs["factor"]),
                original=int(rs["original_max_position_embeddings"]),
                beta_fast=float(rs.get("beta_fast", 32)), beta_slow=float(rs.get("beta_slow", 1)),
                mscale=float(rs.get("mscale", 1)), mscale_all_dim=float(rs.get("mscale_all_dim", 0)))


def rope_inv_freq(cfg):
    """[rope/2] float64 inverse frequencies (YaRN-blended when rope_scaling is yarn)."""
    d, base = cfg.qk_rope_head_dim, cfg.rope_theta
    freq_extra = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    if cfg.rope_scaling is None:
        return freq_extra
    y = _yarn_params(cfg)
    freq_inter = freq_extra / y["factor"]
    low, high = yarn_find_correction_range(y["beta_fast"], y["beta_slow"], d, base, y["original"])
    if low == high:
        high += 0.001  # same guard as HF against a zero-width ramp
    ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    mask = 1.0 - ramp  # 1 = keep the original (extrapolated) frequency
    return freq_inter * (1 - mask) + freq_extra * mask


def rope_cos_sin(cfg, T, dtype):
    """cos, sin tables [T, rope/2], already multiplied by the YaRN mscale ratio."""
    angle = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(cfg)[None, :]
    scale = 1.0
    if cfg.rope_scaling is not None:
        y = _yarn_params(cfg)
        scale = (yarn_get_mscale(y["factor"], y["mscale"])
                 / yarn_get_mscale(y["factor"], y["mscale_all_dim"]))
    return (angle.cos() * scale).to(dtype), (angle.sin() * scale).to(dtype)


def apply_rope(x, cos, sin):
    """Interleaved RoPE. x [B, T, ..., R]; pair (x[2i], x[2i+1]) is the complex number
    x[2i] + j x[2i+1], multiplied by (cos + j sin)[t, i]."""
    B, T = x.shape[:2]
    shape = (1, T) + (1,) * (x.dim() - 3) + (cos.shape[-1],)
    c, s = cos[:T].reshape(shape), sin[:T].reshape(shape)
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    re, im = pairs[..., 0], pairs[..., 1]
    return torch.stack((re * c - im * s, re * s + im * c), dim=-1).reshape(x.shape)


def softmax_scale(cfg):
    scale = (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim) ** -0.5
    if cfg.rope_scaling is not None:
        y = _yarn_params(cfg)
        if y["mscale_all_dim"]:
            scale *= yarn_get_mscale(y["factor"], y["mscale_all_dim"]) ** 2
    return scale


# ----------------------------------------------------------------------------------------------
# Multi-head latent attention
# ----------------------------------------------------------------------------------------------

def mla(p, prefix, cfg, x, cos, sin, absorbed=False):
    """x [B, T, d] -> [B, T, d]. Causal, positions 0..T-1."""
    B, T, _ = x.shape
    H, dn, dr, dv = (cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim,
                     cfg.v_head_dim)
    r, eps = cfg.kv_lora_rank, cfg.rms_norm_eps
    a = f"{prefix}.self_attn"
    if cfg.q_lora_rank:
        cq = rms_norm(linear(x, p[f"{a}.q_a_proj.weight"]), p[f"{a}.q_a_layernorm.weight"], eps)
        q = linear(cq, p[f"{a}.q_b_proj.weight"])
    else:
        q = linear(x, p[f"{a}.q_proj.weight"])
    q = q.view(B, T, H, dn + dr)
    q_nope, q_pe = q[..., :dn], q[..., dn:]  # [B, T, H, dn], [B, T, H, dr]
    ckv = linear(x, p[f"{a}.kv_a_proj_with_mqa.weight"])  # [B, T, r + dr]
    c = rms_norm(ckv[..., :r], p[f"{a}.kv_a_layernorm.weight"], eps)  # [B, T, r]
    k_pe = apply_rope(ckv[..., r:], cos, sin)  # [B, T, dr], one head shared by all heads
    q_pe = apply_rope(q_pe, cos, sin)
    w_kvb = p[f"{a}.kv_b_proj.weight"]  # [H*(dn+dv), r]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    rope_scores = torch.einsum("bthd,bsd->bhts", q_pe, k_pe)
    if not absorbed:
        kv = linear(c, w_kvb).view(B, T, H, dn + dv)
        k_nope, v = kv[..., :dn], kv[..., dn:]  # [B, T, H, dn], [B, T, H, dv]
        scores = torch.einsum("bthd,bshd->bhts", q_nope, k_nope) + rope_scores
        probs = (scores * softmax_scale(cfg)).masked_fill(causal, float("-inf")).softmax(-1)
        out = torch.einsum("bhts,bshd->bthd", probs, v)  # [B, T, H, dv]
    else:
        w = w_kvb.view(H, dn + dv, r)
        w_uk, w_uv = w[:, :dn], w[:, dn:]  # [H, dn, r], [H, dv, r]
        q_lat = torch.einsum("bthd,hdr->bthr", q_nope, w_uk)  # [B, T, H, r]
        scores = torch.einsum("bthr,bsr->bhts", q_lat, c) + rope_scores
        probs = (scores * softmax_scale(cfg)).masked_fill(causal, float("-inf")).softmax(-1)
        o_lat = torch.einsum("bhts,bsr->bthr", probs, c)  # [B, T, H, r]
        out = torch.einsum("bthr,hdr->bthd", o_lat, w_uv)  # [B, T, H, dv]
    return linear(out.reshape(B, T, H * dv), p[f"{a}.o_proj.weight"])


# ----------------------------------------------------------------------------------------------
# Mixture of experts
# ----------------------------------------------------------------------------------------------

def stable_topk(values, k):
    """Indices [N, k] of the k largest entries per row; ties go to the lower index."""
    order = torch.sort(-values, dim=-1, stable=True).indices
    return order[..., :k]


def route(cfg, logits, bias):
    """logits [N, E] -> (scores [N, E], indices [N, K] long, weights [N, K]).

    Selection runs on detached values (indices are constants); the weights are the unbiased
    scores at the selected experts, so gradient reaches the router only through them."""
    N, E = logits.shape
    K, G = cfg.num_experts_per_tok, cfg.n_group
    scores = logits.sigmoid() if cfg.scoring_func == "sigmoid" else logits.softmax(-1)
    choice = scores.detach()
    if cfg.topk_method == "noaux_tc":
        choice = choice + bias.detach()
    if G > 1 and cfg.topk_method in ("noaux_tc", "group_limited_greedy"):
        grouped = choice.view(N, G, E // G)
        if cfg.topk_method == "noaux_tc":
            group_score = torch.sort(grouped, dim=-1, descending=True).values[..., :2].sum(-1)
        else:
            group_score = grouped.max(-1).values
        keep_groups = stable_topk(group_score, cfg.topk_group)  # [N, topk_group]
        keep = torch.zeros(N, G, dtype=torch.bool)
        keep.scatter_(1, keep_groups, True)
        keep = keep[:, :, None].expand(N, G, E // G).reshape(N, E)
        choice = choice.masked_fill(~keep, float("-inf"))
    idx = stable_topk(choice, K)
    weights = scores.gather(1, idx)
    if cfg.norm_topk_prob and K > 1:
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return scores, idx, weights * cfg.routed_scaling_factor


def moe(p, prefix, cfg, x, bias):
    """x [N, d] -> (y [N, d], scores [N, E], idx [N, K])."""
    m = f"{prefix}.mlp"
    scores, idx, weights = route(cfg, linear(x, p[f"{m}.gate.weight"]), bias)
    y = torch.zeros_like(x)
    for e in range(cfg.n_routed_experts):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if tok.numel() == 0:
            continue
        out = swiglu(p, f"{m}.experts.{e}", x[tok]) * weights[tok, slot][:, None]
        y = y.index_add(0, tok, out)
    if cfg.n_shared_experts:
        y = y + swiglu(p, f"{m}.shared_experts", x)
    return y, scores, idx


def balance_loss(cfg, scores, idx, alpha):
    """Sequence-wise balance loss (V3 eqs. 17-20), mean over sequences.
    scores [B, T, E] (unbiased), idx [B, T, K]."""
    B, T, E = scores.shape
    K = cfg.num_experts_per_tok
    s_norm = scores / scores.sum(-1, keepdim=True)
    P = s_norm.mean(1)  # [B, E]
    counts = F.one_hot(idx, E).sum((1, 2)).to(scores.dtype)  # [B, E], constant
    f = counts * (E / (K * T))
    return alpha * (f * P).sum(-1).mean()


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

def decoder_block(p, layer, cfg, x, cos, sin, routing, absorbed=False):
    """Pre-norm block. Records (scores [B,T,E], idx [B,T,K]) of MoE layers in routing."""
    pre, eps = f"model.layers.{layer}", cfg.rms_norm_eps
    x = x + mla(p, pre, cfg, rms_norm(x, p[f"{pre}.input_layernorm.weight"], eps), cos, sin,
                absorbed)
    h = rms_norm(x, p[f"{pre}.post_attention_layernorm.weight"], eps)
    B, T, d = h.shape
    if cfg.is_moe(layer):
        bias = p.get(f"{pre}.mlp.gate.e_score_correction_bias")
        y, scores, idx = moe(p, pre, cfg, h.reshape(B * T, d), bias)
        routing[layer] = (scores.view(B, T, -1), idx.view(B, T, -1))
        return x + y.view(B, T, d)
    return x + swiglu(p, f"{pre}.mlp", h)


def lm_head(p, cfg):
    return p["model.embed_tokens.weight"] if cfg.tie_word_embeddings else p["lm_head.weight"]


def forward(p, cfg, tokens, absorbed=False):
    """tokens [B, T] long -> (logits [B,T,V], [mtp logits [B,T-k,V] for k=1..D], routing)."""
    B, T = tokens.shape
    eps, L, emb = cfg.rms_norm_eps, cfg.num_hidden_layers, p["model.embed_tokens.weight"]
    dtype = emb.dtype
    cos, sin = rope_cos_sin(cfg, T, dtype)
    routing = {}
    h = emb[tokens]
    for layer in range(L):
        h = decoder_block(p, layer, cfg, h, cos, sin, routing, absorbed)
    logits = linear(rms_norm(h, p["model.norm.weight"], eps), lm_head(p, cfg))
    mtp_logits = []
    for k in range(1, cfg.num_nextn_predict_layers + 1):
        pre = f"model.layers.{L + k - 1}"
        n = T - k  # module k predicts token i+k+1 from positions i = 0..T-1-k
        e = rms_norm(emb[tokens[:, k:]], p[f"{pre}.enorm.weight"], eps)  # Emb(t[i+k])
        hk = rms_norm(h[:, :n], p[f"{pre}.hnorm.weight"], eps)
        h = linear(torch.cat((e, hk), -1), p[f"{pre}.eh_proj.weight"])  # embedding part first
        h = decoder_block(p, L + k - 1, cfg, h, cos, sin, routing, absorbed)
        mtp_logits.append(linear(rms_norm(h, p[f"{pre}.shared_head.norm.weight"], eps),
                                 lm_head(p, cfg)))
    return logits, mtp_logits, routing


def cross_entropy(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@dataclass
class Hyper:
    mtp_lambda: float = 0.3
    balance_alpha: float = 1e-4
    bias_gamma: float = 1e-3
    lr: float = 1e-3
    betas: tuple = (0.9, 0.95)
    adam_eps: float = 1e-8
    weight_decay: float = 0.1
    clip: float = 1.0
    steps: int = 10


def losses(p, cfg, seq, hp, absorbed=False):
    """seq [B, T+1] long. Returns dict of scalar losses, logits and per-layer expert load."""
    T = seq.shape[1] - 1
    inputs = seq[:, :T]
    logits, mtp_logits, routing = forward(p, cfg, inputs, absorbed)
    ce = cross_entropy(logits, seq[:, 1:])
    D = cfg.num_nextn_predict_layers
    mtp = logits.new_zeros(())
    for k, lk in enumerate(mtp_logits, start=1):
        mtp = mtp + cross_entropy(lk, seq[:, k + 1:])
    if D:
        mtp = mtp * (hp.mtp_lambda / D)
    bal = logits.new_zeros(())
    load = {}
    for layer, (scores, idx) in sorted(routing.items()):
        bal = bal + balance_loss(cfg, scores, idx, hp.balance_alpha)
        load[layer] = torch.bincount(idx.reshape(-1), minlength=cfg.n_routed_experts)
    return dict(loss=ce + mtp + bal, ce=ce, mtp=mtp, balance=bal, logits=logits,
                mtp_logits=mtp_logits, load=load)


def trainable_names(p):
    return [n for n in p if not n.endswith("e_score_correction_bias")]


def update_biases(p, load, gamma):
    """Aux-loss-free balancing: bias -= gamma * sign(load - mean(load)), per MoE layer."""
    with torch.no_grad():
        for layer, counts in load.items():
            name = f"model.layers.{layer}.mlp.gate.e_score_correction_bias"
            if name in p:
                c = counts.to(p[name].dtype)
                p[name] -= gamma * torch.sign(c - c.mean())


def make_optimizer(p, hp):
    """(trainable names, AdamW) with weight decay on matrices only; marks them trainable."""
    names = trainable_names(p)
    for n in names:
        p[n].requires_grad_(True)
    decay = [p[n] for n in names if p[n].dim() >= 2]
    no_decay = [p[n] for n in names if p[n].dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp.lr, betas=hp.betas, eps=hp.adam_eps)
    return names, opt


def train(p, cfg, seq, hp):
    """hp.steps AdamW steps on the same batch; mutates p. Returns per-step records."""
    names, opt = make_optimizer(p, hp)
    rec = dict(total=[], ce=[], grad_norm=[])
    for _ in range(hp.steps):
        opt.zero_grad(set_to_none=True)
        out = losses(p, cfg, seq, hp)
        out["loss"].backward()
        for n in names:  # an expert that got no token still takes a full AdamW step
            if p[n].grad is None:
                p[n].grad = torch.zeros_like(p[n])
        norm = torch.nn.utils.clip_grad_norm_([p[n] for n in names], hp.clip)
        opt.step()
        update_biases(p, out["load"], hp.bias_gamma)
        rec["total"].append(out["loss"].item())
        rec["ce"].append(out["ce"].item())
        rec["grad_norm"].append(float(norm))
    return rec


# ----------------------------------------------------------------------------------------------
# Reference dump
# ----------------------------------------------------------------------------------------------

def final_weight_names(cfg, p):
    """The weights (besides every correction bias) dumped after the AdamW steps."""
    L = cfg.num_hidden_layers
    want = ["model.norm.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
            "model.layers.0.input_layernorm.weight"]
    moe_layers = [i for i in range(L + cfg.num_nextn_predict_layers) if cfg.is_moe(i)]
    if moe_layers:
        want += [f"model.layers.{moe_layers[0]}.mlp.gate.weight",
                 f"model.layers.{moe_layers[0]}.mlp.experts.0.down_proj.weight"]
    if cfg.num_nextn_predict_layers:
        want += [f"model.layers.{L}.eh_proj.weight"]
    want += [n for n in p if n.endswith("e_score_correction_bias")]
    return [n for n in want if n in p]


def generate(config_path, out_dir, seed=0, batch=2, seq=16, hp=None, dtype=torch.float64,
             final_all=False):
    hp = hp or Hyper()
    with open(config_path) as f:
        raw = json.load(f)
    cfg = Config.from_hf(raw)
    if seq <= cfg.num_nextn_predict_layers:
        raise ValueError(f"--seq {seq} must exceed num_nextn_predict_layers")
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(config_path, os.path.join(out_dir, "config.json"))

    w32 = init_weights(cfg, seed)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq + 1))  # same RNG stream, after weights
    safetensors_io.save(os.path.join(out_dir, "model.safetensors"), w32, {"format": "pt"})

    f32 = lambda t: t.detach().to(torch.float32)  # noqa: E731
    p = {n: t.to(dtype) for n, t in w32.items()}
    names = trainable_names(p)
    for n in names:
        p[n].requires_grad_(True)
    first = losses(p, cfg, tokens, hp)
    grads = torch.autograd.grad(first["loss"], [p[n] for n in names], allow_unused=True)
    grads = [torch.zeros_like(p[n]) if g is None else g for n, g in zip(names, grads)]

    ref = {"tokens": tokens.to(torch.int32), "logits": f32(first["logits"])}
    for k, lk in enumerate(first["mtp_logits"], start=1):
        ref[f"mtp_logits.{k}"] = f32(lk)
    for key, name in (("loss", "loss"), ("ce", "ce_loss"), ("mtp", "mtp_loss"),
                      ("balance", "balance_loss")):
        ref[name] = f32(first[key]).reshape(1)
    for n, g in zip(names, grads):
        ref[f"grad.{n}"] = f32(g)
    for layer, counts in first["load"].items():
        ref[f"expert_load.{layer}"] = counts.to(torch.int32)

    rec = train(p, cfg, tokens, hp)
    ref["adamw.total_loss"] = torch.tensor(rec["total"], dtype=torch.float32)
    ref["adamw.ce_loss"] = torch.tensor(rec["ce"], dtype=torch.float32)
    ref["adamw.grad_norm"] = torch.tensor(rec["grad_norm"], dtype=torch.float32)
    for n in (list(p) if final_all else final_weight_names(cfg, p)):
        ref[f"final.{n}"] = f32(p[n])

    meta = {
        "format": "seekr-reference", "version": "1", "seed": str(seed), "batch": str(batch),
        "seq": str(seq), "dtype": str(dtype).replace("torch.", ""),
        "mtp_lambda": repr(hp.mtp_lambda), "balance_alpha": repr(hp.balance_alpha),
        "bias_gamma": repr(hp.bias_gamma), "lr": repr(hp.lr), "beta1": repr(hp.betas[0]),
        "beta2": repr(hp.betas[1]), "adam_eps": repr(hp.adam_eps),
        "weight_decay": repr(hp.weight_decay), "clip_norm": repr(hp.clip),
        "steps": str(hp.steps), "bias_init_range": "0.05",
        "softmax_scale": repr(softmax_scale(cfg)),
        "moe_layers": ",".join(str(i) for i in sorted(first["load"])),
        # the same scalars at full precision, for tighter comparisons than F32 allows
        "loss_f64": repr(first["loss"].item()), "ce_loss_f64": repr(first["ce"].item()),
        "mtp_loss_f64": repr(first["mtp"].item()),
        "balance_loss_f64": repr(first["balance"].item()),
        "adamw.total_loss_f64": ",".join(repr(v) for v in rec["total"]),
    }
    safetensors_io.save(os.path.join(out_dir, "reference.safetensors"), ref, meta)
    return cfg, first, rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--mtp-lambda", type=float, default=0.3)
    ap.add_argument("--balance-alpha", type=float, default=1e-4)
    ap.add_argument("--bias-gamma", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--final-all", action="store_true",
                    help="dump final.<name> for every tensor, not only the default few")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    hp = Hyper(mtp_lambda=a.mtp_lambda, balance_alpha=a.balance_alpha, bias_gamma=a.bias_gamma,
               lr=a.lr, steps=a.steps)
    t0 = time.time()
    _, first, rec = generate(a.config, a.out, a.seed, a.batch, a.seq, hp,
                             getattr(torch, a.dtype), a.final_all)
    print(f"loss {first['loss'].item():.6f} (ce {first['ce'].item():.6f}, "
          f"mtp {first['mtp'].item():.6f}, balance {first['balance'].item():.3e}); "
          f"adamw {rec['total'][0]:.4f} -> {rec['total'][-1]:.4f}; "
          f"{time.time() - t0:.2f}s -> {a.out}")


if __name__ == "__main__":
    main()
