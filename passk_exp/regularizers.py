"""Regularizers that act on advantages (pure tensor math); the KL-to-reference penalty acts on the loss (`loss.py`).

`outcome_entropy_term` adds λ·H(p) (binary entropy of the success probability, natural log) to any method's surrogate,
through the recipe of docs/methods.md §7: ∇[λH(p)] = λ·ln((1−p)/p)·∇p, with ∇p replaced by the RLOO proxy
(1/n)Σ_i (r_i − r̄)∇log π_i and p by r̄. So the term is λ·ln((1−r̄)/r̄)·(r_i − r̄), exactly zero for all-equal groups.
Added to grpo it reproduces the `entropy_reg` estimator (U Eq. 28); added to other methods it composes the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor


def outcome_entropy_term(rewards: Tensor, lam: float) -> Tensor:
    """rewards [B, n] in [0, 1] -> [B, n] advantage term λ·ln((1−r̄)/r̄)·(r_i − r̄); 0 where r̄ ∈ {0, 1}."""
    if lam < 0:
        raise ValueError(f"lam={lam} must be >= 0")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [B, n], got shape {tuple(rewards.shape)}")
    if bool(((rewards < 0) | (rewards > 1)).any()):
        raise ValueError("the entropy regularizer needs rewards in [0, 1]; use a benchmark with rewards in [0, 1]")
    mean = rewards.mean(dim=-1, keepdim=True)
    interior = (mean > 0) & (mean < 1)
    safe = torch.where(interior, mean, torch.full_like(mean, 0.5))  # log(1) = 0 keeps the masked entries finite
    weight = torch.where(interior, torch.log1p(-safe) - torch.log(safe), torch.zeros_like(mean))
    return lam * weight * (rewards - mean)
