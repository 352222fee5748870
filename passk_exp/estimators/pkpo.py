"""PKPO (Walder & Karkhanis, arXiv 2505.15201): unbiased max@k gradient weights for binary or continuous rewards.

s_i = S(i, k, [n]) = (1/C(n,k))·Σ_{|I|=k, i∈I} max_{j∈I} g_j. Sorted ascending (1-indexed),
s_(i) = [C(i−1, k−1)·g_(i) + Σ_{j>i} C(j−2, k−2)·g_(j)] / C(n, k) (W Eq. 19–21). W's gradient is Σ_i s_i ∇log p(x_i),
so under the spec's scale ĝ = (1/n) Σ_i A_i ∇log π_i the advantage is A_i = n·s_i (W's transformed reward is A/n).
One sort per row, exact weight tables (tables.py) and one cumulative sum give O(n log n) per row, with no loop; ties
do not matter because S is defined on sets. Any finite real reward, 1 ≤ k ≤ n. What this file leaves out: W's
per-token credit assignment and the k-annealing schedule (schedules.py).
"""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import Tensor

from passk_exp.estimators.baselines import constant_rows
from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import as_tensor, drop_one_weights, order_weights, pkpo_tail_weights


def _exclusive_suffix_sum(x: Tensor) -> Tensor:
    """Σ_{j>i} x_j along the last dim (shifted reverse cumsum: no subtraction, so no cancellation)."""
    out = torch.zeros_like(x)
    out[:, :-1] = x.flip(-1).cumsum(-1).flip(-1)[:, 1:]
    return out


def _exclusive_prefix_sum(x: Tensor) -> Tensor:
    """Σ_{j<i} x_j along the last dim."""
    out = torch.zeros_like(x)
    out[:, 1:] = x.cumsum(-1)[:, :-1]
    return out


def _n_s_sorted(g: Tensor, k: int) -> Tensor:
    """n·s_(i) for rows already sorted ascending: [B, n] → [B, n] (W Eq. 19–21)."""
    n = g.shape[-1]
    head = as_tensor(order_weights(n, k, Fraction(n)), g)
    out = head * g
    if k >= 2:
        out = out + _exclusive_suffix_sum(as_tensor(pkpo_tail_weights(n, k, Fraction(n)), g) * g)
    return out


def _drop_one_sorted(g: Tensor, k: int, scale: Fraction) -> Tensor:
    """scale·ρ^(g)(g_{−p}, k) for each sorted position p: the max@k estimate of the other n − 1 samples, [B, n]."""
    before, after = (as_tensor(t, g) for t in drop_one_weights(g.shape[-1], k, scale))
    return _exclusive_prefix_sum(before * g) + _exclusive_suffix_sum(after * g)


def _unsort(values: Tensor, order: Tensor) -> Tensor:
    return torch.empty_like(values).scatter_(-1, order, values)


@register("pkpo", rewards="real", needs_k_le_n=True)
def pkpo(rewards: Tensor, k: int) -> Tensor:
    """A = n·s (W Eq. 19–21): unbiased for ∇ max_g@k, no baseline. [B, n] real → [B, n].

    Binary rewards give K for a correct sample and K·ρ(n−1, c, K−1) for a wrong one (W Eq. 8), i.e. wk25. K = 1 gives
    A = g; a constant row v gives K·v.
    """
    g, order = torch.sort(rewards, dim=-1)
    return _unsort(_n_s_sorted(g, k), order)


@register("pkpo_loo", rewards="real", needs_k_le_n=True, min_n=2)
def pkpo_loo(rewards: Tensor, k: int) -> Tensor:
    """A = n·[s_i − k/(n−1)·ρ^(g)(g_{−i}, k)] (W Eq. 29, the leave-one-out baseline of the other samples' s). Unbiased.

    Faithful to W's listing, so not centred: K = 1 gives g_i − n/(n−1)·mean_{j≠i} g_j (not rloo) and a constant row v
    gives −K·v/(n−1). At K = n the baseline needs k ≤ n − 1 samples and is undefined: our convention (UNCONFIRMED)
    falls back to pkpo there. Needs n ≥ 2. [B, n] real → [B, n].
    """
    n = rewards.shape[-1]
    g, order = torch.sort(rewards, dim=-1)
    out = _n_s_sorted(g, k)
    if k <= n - 1:
        out = out - _drop_one_sorted(g, k, Fraction(n * k, n - 1))
    return _unsort(out, order)


@register("pkpo_loo_minus_one", rewards="real", needs_k_le_n=True, min_n=2)
def pkpo_loo_minus_one(rewards: Tensor, k: int) -> Tensor:
    """A = n·[s_i − (1/C(n,k))·Σ_{I∋i} max_{I∖i} g] = n·s_i − k·ρ^(g)(g_{−i}, k−1) (W Eq. 33–34). Unbiased.

    W's recommended estimator. A constant row gives 0; K = n gives n·(max g − max g_{−i}). At K = 1 W leaves it undefined
    (its listing divides by K − 1): our convention (UNCONFIRMED) is baseline 0, so A = g, and the harness should run
    rloo instead (`resolve_method`). Needs n ≥ 2. [B, n] real → [B, n].
    """
    g, order = torch.sort(rewards, dim=-1)
    out = _n_s_sorted(g, k)
    if k >= 2:
        out = out - _drop_one_sorted(g, k - 1, Fraction(k))
        out = out.masked_fill(constant_rows(g), 0.0)  # n·s and the baseline agree only up to rounding there
    return _unsort(out, order)
