"""Pass@1 baselines (reinforce, rloo, grpo) and the row-wise building blocks the Pass@K methods share.

Spec §0 and §2 (U Eqs. 5–9). Every function maps rewards [B, n] to advantages [B, n] in the rewards' dtype and device,
one row (prompt) at a time, with no Python loop over B or n. Rows whose rewards are all equal give exact zeros in every
centred method, also with eps = 0. What this file leaves out: validation (registry.py) and any K-dependence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import as_tensor, count_table


def constant_rows(rewards: Tensor) -> Tensor:
    """[B, n] → [B, 1] bool, True where every reward of the row is equal (its centred advantages are exactly 0)."""
    return (rewards == rewards[:, :1]).all(dim=-1, keepdim=True)


def centred(rewards: Tensor) -> tuple[Tensor, Tensor]:
    """(r − r̄ [B, n], r̄ [B, 1]), with the deviation forced to exact 0 on constant rows (r̄ can be off by an ulp)."""
    mean = rewards.mean(dim=-1, keepdim=True)
    return (rewards - mean).masked_fill(constant_rows(rewards), 0.0), mean


def grpo_normalised(rewards: Tensor, std_ddof: int, eps: float) -> tuple[Tensor, Tensor]:
    """(A^GRPO = (r − r̄)/(σ + ε) [B, n], r̄ [B, 1]), U Eq. 8.

    σ is the population std for std_ddof = 0 (spec default, U Eq. 8) or the sample std for std_ddof = 1 (verl, TRL).
    The variance is two-pass and scaled by max|r − r̄| before squaring, so rewards near 1e20 (float32) or 1e155
    (float64) neither overflow nor lose the spread; ε is added to σ, never under the root. A group of one sample
    gives 0.
    """
    dev, mean = centred(rewards)
    n = rewards.shape[-1]
    if n - std_ddof < 1:
        return torch.zeros_like(rewards), mean
    scale = dev.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    sigma = scale * ((dev / scale).square().sum(dim=-1, keepdim=True) / (n - std_ddof)).sqrt()
    # Constant rows have dev = 0 and sigma = 0: with eps = 0 that is 0/0, so divide by 1 there instead.
    sigma = sigma + eps
    return dev / torch.where(sigma > 0, sigma, torch.ones_like(sigma)), mean


def count_correct(rewards: Tensor) -> Tensor:
    """c = number of correct samples per row, [B] int64 (binary rewards, already validated)."""
    return (rewards > 0.5).sum(dim=-1)


def by_count(rewards: Tensor, table: tuple[tuple[float, ...], tuple[float, ...]]) -> Tensor:
    """A_i = pos[c] for a correct sample and neg[c] for a wrong one: the shape of every count-only binary estimator."""
    pos, neg = (as_tensor(t, rewards) for t in table)
    c = count_correct(rewards)
    return torch.where(rewards > 0.5, pos[c].unsqueeze(-1), neg[c].unsqueeze(-1))


def loo_weights(rewards: Tensor, k: int, k_factor: bool) -> Tensor:
    """K·w_i [B, n] (w⁺ for a correct sample, w⁻ for a wrong one; U Eq. 14), K dropped when k_factor is False."""
    return by_count(rewards, count_table("loo_weights", rewards.shape[-1], k, bool(k_factor)))


@register("reinforce", rewards="real", needs_k_le_n=False, uses_k=False)
def reinforce(rewards: Tensor, k: int) -> Tensor:
    """A_i = r_i (U Eq. 5): unbiased for ∇E[r] (= ∇p on binary rewards). Not centred. [B, n] → [B, n]."""
    return rewards.clone()


@register("rloo", rewards="real", needs_k_le_n=False, min_n=2, uses_k=False)
def rloo(rewards: Tensor, k: int) -> Tensor:
    """A_i = r_i − mean_{j≠i} r_j = n/(n−1)·(r_i − r̄) (U Eq. 6; U Eq. 7 drops n/(n−1)). Unbiased, needs n ≥ 2."""
    dev, _ = centred(rewards)
    n = rewards.shape[-1]
    return dev * (n / (n - 1))


@register("grpo", rewards="real", needs_k_le_n=False, uses_k=False)
def grpo(rewards: Tensor, k: int, *, std_ddof: int = 0, eps: float = 1e-6) -> Tensor:
    """A_i = (r_i − r̄)/(σ + ε) (U Eq. 8–9). Biased: population surrogate 2·arcsin√p (U Corollary 1). [B, n] → [B, n].

    std_ddof = 0 (population std) is the spec's default and is UNCONFIRMED as the one the experiments want; verl is
    std_ddof=1, eps=1e-6 and TRL is std_ddof=1, eps=1e-4.
    """
    return grpo_normalised(rewards, std_ddof, eps)[0]
