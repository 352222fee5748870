"""Pass@1 baselines (reinforce, rloo, grpo) and the row-wise building blocks the Pass@K methods share.

docs/methods.md §0 and §2 (U Eqs. 5–9). Every function maps rewards [B, n] to advantages [B, n] in the rewards' dtype
and device, one row (prompt) at a time, with no Python loop over B or n. Rows whose rewards are all equal give exact
zeros in every centred method, also with eps = 0. The helpers allocate as few [B, n] temporaries as they can and work in
place on the ones they own: on CPU a fresh 1 MB buffer costs more (page faults) than the arithmetic on it. What this
file leaves out: validation (registry.py) and any K-dependence.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import as_tensor


def centred(rewards: Tensor) -> tuple[Tensor, Tensor]:
    """(r − r̄ [B, n], r̄ [B, 1]), from the deviations to the row's first sample (shifted two-pass mean).

    d = r − r_0 is exactly 0 on a constant row, so its mean and the deviations d − mean(d) are too: constant rows give
    exact zeros with no mask. The returned tensor is a fresh one the caller may modify in place.
    """
    first = rewards[:, :1]
    dev = rewards - first
    shift = dev.mean(dim=-1, keepdim=True)
    return dev.sub_(shift), first + shift


def grpo_normalised(rewards: Tensor, std_ddof: int, eps: float) -> tuple[Tensor, Tensor]:
    """(A^GRPO = (r − r̄)/(σ + ε) [B, n], r̄ [B, 1]), U Eq. 8. The first tensor is fresh (safe to modify in place).

    σ is the population std for std_ddof = 0 (the default, U Eq. 8) or the sample std for std_ddof = 1 (verl, TRL),
    from a two-pass variance (mean first, then squared deviations; never Σr²/n − r̄²). ε is added to σ, never under
    the root. If any row's squares over- or underflow (|r − r̄| beyond ~1e±19 in float32, ~1e±154 in float64) the batch
    is redone in float64, with scaled deviations for float64 input, so no spread is lost. Constant rows and a group of
    one sample give 0, also with ε = 0.
    """
    n = rewards.shape[-1]
    dev, mean = centred(rewards)
    if n - std_ddof < 1:
        return dev.zero_(), mean
    norm = torch.linalg.vector_norm(dev, dim=-1, keepdim=True)
    if not bool(torch.isfinite(norm).all()) or _underflowed(dev, norm):
        # Rare: rewards near the float range limits. Narrower dtypes are redone in float64, float64 with scaling.
        if rewards.dtype != torch.float64:
            adv, mean64 = grpo_normalised(rewards.to(torch.float64), std_ddof, eps)
            return adv.to(rewards.dtype), mean64.to(rewards.dtype)
        norm = _scaled_norm(dev)
    sigma = (norm / math.sqrt(n - std_ddof)).to(dev.dtype)  # norm is float64 only after _scaled_norm
    # A constant row has sigma = 0 (and dev = 0): with eps = 0 that is 0/0, so its scale is set to 0 instead.
    inv = torch.where(sigma > 0, 1 / (sigma + eps), torch.zeros_like(sigma))
    return dev.mul_(inv), mean


def _underflowed(dev: Tensor, norm: Tensor) -> bool:
    """True when a row with a zero norm still has a non-zero deviation (its squares underflowed)."""
    zero = norm.squeeze(-1) == 0
    return bool(zero.any()) and bool((dev[zero] != 0).any())


def _scaled_norm(dev: Tensor) -> Tensor:
    """‖dev‖₂ per row [B, 1] float64, computed as m·‖dev/m‖₂ with m = max|dev|: neither over- nor underflows."""
    d64 = dev.to(torch.float64)
    scale = d64.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale * torch.linalg.vector_norm(d64 / scale, dim=-1, keepdim=True)


def count_correct(rewards: Tensor) -> Tensor:
    """c = number of correct samples per row, [B] int64 (binary rewards, already validated; sums of 0/1 are exact)."""
    acc = torch.float64 if rewards.dtype == torch.float64 else torch.float32
    return rewards.sum(dim=-1, dtype=acc).to(torch.int64)


def by_count(rewards: Tensor, table: tuple[tuple[float, ...], tuple[float, ...]]) -> Tensor:
    """A_i = pos[c] for a correct sample and neg[c] for a wrong one: the shape of every count-only binary estimator.

    Written as (1 − r)·neg[c] + r·pos[c]: exact for r ∈ {0, 1}, one [B, n] allocation, and ~8× cheaper on CPU than a
    boolean select (torch.where).
    """
    pos, neg = (as_tensor(t, rewards) for t in table)
    c = count_correct(rewards)
    return (1 - rewards).mul_(neg[c].unsqueeze(-1)).addcmul_(rewards, pos[c].unsqueeze(-1))


@register("reinforce", rewards="real", needs_k_le_n=False, uses_k=False)
def reinforce(rewards: Tensor, k: int) -> Tensor:
    """A_i = r_i (U Eq. 5): unbiased for ∇E[r] (= ∇p on binary rewards). Not centred. [B, n] → [B, n]."""
    return rewards.clone()


@register("rloo", rewards="real", needs_k_le_n=False, min_n=2, uses_k=False)
def rloo(rewards: Tensor, k: int) -> Tensor:
    """A_i = r_i − mean_{j≠i} r_j = n/(n−1)·(r_i − r̄) (U Eq. 6; U Eq. 7 drops n/(n−1)). Unbiased, needs n ≥ 2."""
    n = rewards.shape[-1]
    return centred(rewards)[0].mul_(n / (n - 1))


@register("grpo", rewards="real", needs_k_le_n=False, uses_k=False)
def grpo(rewards: Tensor, k: int, *, std_ddof: int = 0, eps: float = 1e-6) -> Tensor:
    """A_i = (r_i − r̄)/(σ + ε) (U Eq. 8–9). Biased: population surrogate 2·arcsin√p (U Corollary 1). [B, n] → [B, n].

    std_ddof = 0 (population std) is the default (docs/methods.md §0), UNCONFIRMED as the one experiments want; verl is
    std_ddof=1, eps=1e-6 and TRL is std_ddof=1, eps=1e-4.
    """
    return grpo_normalised(rewards, std_ddof, eps)[0]
