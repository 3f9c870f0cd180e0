#!/usr/bin/python3
"""PyTorch (autograd, float64) reference for the GRPO family of losses at the logits.

Written from TRL's GRPOTrainer._compute_loss semantics (loss_type "grpo", "dr_grpo", "dapo"),
in TRL's own [B, T] layout; the C++ side receives the same rows flattened and shuffled, with a
sequence index per row, so the test also checks that rows are attributed to the right sequence.

    /usr/bin/python3 tests/reference/grpo_twin.py OUT_DIR      # writes OUT_DIR/grpo.safetensors

Every stored input is float32 and the reference computes from those float32 values in float64,
so the C++ double path must agree to ~1e-12 and the float path to float rounding.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

B, T, V, G = 6, 10, 50, 3  # 6 sequences in 2 groups of 3
MAX_COMPLETION = 7
ADV_EPS = 1e-4
# Hyper-parameters as float32 values, the precision of seekr's GrpoLossConfig fields.
def _f(x):
    return float(np.float32(x))


# name -> (loss_type, eps_low, eps_high, scale_by_std)
MODES = {
    "grpo": ("grpo", _f(0.2), _f(0.2), True),
    "dr_grpo": ("dr_grpo", _f(0.2), _f(0.2), False),
    "dapo": ("dapo", _f(0.2), _f(0.28), False),
}
BETAS = {"beta0": 0.0, "beta0.04": _f(0.04)}


def f32(x):
    """Round to float32 and back: the reference uses exactly the values the file stores."""
    return torch.as_tensor(np.asarray(x, dtype=np.float32), dtype=torch.float64)


def group_advantages(rewards, scale_by_std):
    r = rewards.view(-1, G)
    adv = r - r.mean(dim=1, keepdim=True)
    if scale_by_std:
        adv = adv / (r.std(dim=1, keepdim=True) + ADV_EPS)  # unbiased std, as torch/TRL
    return adv.reshape(-1)


def trl_loss(logits, targets, mask, old, ref, adv, loss_type, eps_low, eps_high, beta):
    """logits [B, T, V] (requires grad); everything else [B, T] except adv [B]."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    a = adv.unsqueeze(1)
    per_token = -torch.min(coef_1 * a, coef_2 * a)
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    if beta != 0.0:
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (per_token.size(0) * MAX_COMPLETION)
    else:  # dapo: token-level
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    count = mask.sum().clamp(min=1.0)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    low = ((coef_1 < 1 - eps_low) & (a < 0)).double()
    high = ((coef_1 > 1 + eps_high) & (a > 0)).double()
    stats = {
        "mean_kl": (kl * mask).sum() / count,
        "clip_low": (low * mask).sum() / count,
        "clip_high": (high * mask).sum() / count,
        "entropy": (entropy * mask).sum() / count,
        "ratio": (coef_1 * mask).sum() / count,
    }
    return loss, {k: v.detach() for k, v in stats.items()}, coef_1.detach()


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    logits = f32(torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2.0)
    # Mask: a prompt of 2-3 tokens (0), then the completion (1), then padding (0). Sequence 4
    # has no completion token at all (TRL's clamp(min=1) makes it contribute 0).
    mask = torch.zeros(B, T, dtype=torch.float64)
    comp_len = [7, 5, 3, 6, 0, 7]
    for b in range(B):
        p = 2 + b % 2
        mask[b, p : p + comp_len[b]] = 1.0
    targets = torch.randint(0, V, (B, T), generator=g)
    with torch.no_grad():
        cur = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    # Perturb the current log-probs so that ratios land on both sides of the clip band.
    old = f32(cur + 0.35 * torch.randn(B, T, generator=g, dtype=torch.float64))
    ref = f32(cur + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64))
    rewards = f32([1.0, 0.0, 0.5, 0.25, 1.0, 0.0])

    tensors = {
        "rewards": rewards.float(),
        "max_completion_length": torch.tensor([MAX_COMPLETION], dtype=torch.int32),
    }
    # Flattened, shuffled rows for the C++ side; padding/prompt rows get target -1 sometimes
    # (masked rows must be ignored whatever their target).
    perm = torch.randperm(B * T, generator=g)
    seq_index = torch.arange(B).repeat_interleave(T)
    flat_targets = targets.reshape(-1).clone()
    flat_mask = mask.reshape(-1)
    flat_targets[(flat_mask == 0) & (torch.arange(B * T) % 2 == 0)] = -1
    tensors.update({
        "logits": logits.reshape(B * T, V)[perm].float(),
        "targets": flat_targets[perm].int(),
        "mask": flat_mask[perm].to(torch.uint8),
        "sequence": seq_index[perm].int(),
        "old_logp": old.reshape(-1)[perm].float(),
        "ref_logp": ref.reshape(-1)[perm].float(),
        "perm": perm.int(),
    })

    for mode, (loss_type, eps_low, eps_high, scale) in MODES.items():
        adv = f32(group_advantages(rewards, scale))
        tensors[f"{mode}/advantages"] = adv.float()
        for bname, beta in BETAS.items():
            x = logits.clone().requires_grad_(True)
            loss, stats, ratio = trl_loss(x, targets, mask, old, ref, adv, loss_type, eps_low,
                                          eps_high, beta)
            loss.backward()
            # The test is only meaningful if clipping is active on both sides, and stable only
            # if no ratio sits so close to a band edge that float rounding could flip it.
            counted = mask > 0
            lo_side = (ratio < 1 - eps_low) & counted
            hi_side = (ratio > 1 + eps_high) & counted
            assert lo_side.any() and hi_side.any(), f"{mode}: clip band not crossed both ways"
            assert stats["clip_low"] > 0 and stats["clip_high"] > 0, f"{mode}: no clipping"
            edge = torch.minimum((ratio - (1 - eps_low)).abs(), (ratio - (1 + eps_high)).abs())
            assert edge[counted].min() > 1e-4, f"{mode}: a ratio sits on a clip edge"
            key = f"{mode}/{bname}"
            tensors[f"{key}/loss"] = loss.detach().reshape(1)
            tensors[f"{key}/dlogits"] = x.grad.reshape(B * T, V)[perm]
            for k, v in stats.items():
                tensors[f"{key}/{k}"] = v.reshape(1)
            print(f"{key}: loss {loss.item():+.6f} clip low {stats['clip_low'].item():.3f} "
                  f"high {stats['clip_high'].item():.3f} kl {stats['mean_kl'].item():.4f}")

    safetensors_io.save(os.path.join(out_dir, "grpo.safetensors"), tensors,
                        metadata={"format": "seekr-grpo-reference", "version": "1"})


if __name__ == "__main__":
    main()
