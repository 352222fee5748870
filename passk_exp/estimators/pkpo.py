"""PKPO (Walder & Karkhanis, arXiv 2505.15201): unbiased max@k gradient weights for binary or continuous rewards.

s_i = S(i, k, [n]) = (1/C(n,k))·Σ_{|I|=k, i∈I} max_{j∈I} g_j. Sorted ascending (1-indexed),
s_(i) = [C(i−1, k−1)·g_(i) + Σ_{j>i} C(j−2, k−2)·g_(j)] / C(n, k) (W Eq. 19–21). W's gradient is Σ_i s_i ∇log p(x_i),
so on the scale ĝ = (1/n) Σ_i A_i ∇log π_i (docs/methods.md §0) the advantage is A_i = n·s_i (W's reward is A/n).
One sort per row, exact weight tables (tables.py) and one cumulative sum give O(n log n) per row, with no
loop; ties do not matter because S is defined on sets. On 0/1 rewards every variant depends only on (n, c, r_i), so
it gathers from an exact count table instead of sorting (pkpo = wk25, pkpo_loo_minus_one = reinforce_k there). Any finite real reward, 1 ≤ k ≤ n. What this file leaves out: W's
per-token credit assignment and the k-annealing schedule (schedules.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from passk_exp.estimators.baselines import by_count
from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import as_tensor, count_table, pkpo_weights
from passk_exp.estimators.validation import is_binary


def _argsort_rows(x: Tensor) -> Tensor:
    """Ascending order of each row, [B, n] int64. Ties may come in any order (S is defined on sets).

    On CPU numpy's SIMD argsort is 4–15× faster than torch.sort for short rows (n = 16–64, measured with
    bench/estimators.py), which keeps PKPO within a small factor of grpo; elsewhere torch.sort.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.argsort(x.detach().numpy(), axis=-1))
    return torch.sort(x, dim=-1).indices


def _pkpo_sorted(rewards: Tensor, k: int, baseline: str) -> Tensor:
    """A for one PKPO variant, [B, n] → [B, n]: sort each row, then with the exact weights of tables.pkpo_weights

        A_(i) = c1_i·g_(i) + Σ_j tail_j·g_(j) − cumsum(c2·g)_(i),

    and scatter back to the input order. One cumulative sum and one matrix-vector product per batch, in place.
    """
    order = _argsort_rows(rewards)
    g = rewards.gather(-1, order)
    c1, c2, tail = (as_tensor(t, g) for t in pkpo_weights(g.shape[-1], k, baseline))
    out = (g * c2).cumsum_(-1).neg_().add_((g @ tail).unsqueeze(-1)).addcmul_(g, c1)
    if baseline == "loo_minus_one":
        # A constant row gives 0 in exact arithmetic; the float sums agree only up to rounding, so force it.
        out.mul_((g[:, :1] != g[:, -1:]).to(out.dtype))
    return torch.empty_like(out).scatter_(-1, order, out)


@register("pkpo", rewards="real", needs_k_le_n=True)
def pkpo(rewards: Tensor, k: int) -> Tensor:
    """A = n·s (W Eq. 19–21): unbiased for ∇ max_g@k, no baseline. [B, n] real → [B, n].

    Binary rewards give K for a correct sample and K·ρ(n−1, c, K−1) for a wrong one (W Eq. 8), i.e. wk25. K = 1 gives
    A = g; a constant row v gives K·v.
    """
    if is_binary(rewards):  # = wk25 (W Eq. 8): a count table, no sort
        return by_count(rewards, count_table("wk25", rewards.shape[-1], k, True))
    return _pkpo_sorted(rewards, k, "none")


@register("pkpo_loo", rewards="real", needs_k_le_n=True, min_n=2)
def pkpo_loo(rewards: Tensor, k: int) -> Tensor:
    """A = n·[s_i − k/(n−1)·ρ^(g)(g_{−i}, k)] (W Eq. 29, the leave-one-out baseline of the other samples' s). Unbiased.

    Faithful to W's listing, so not centred: K = 1 gives g_i − n/(n−1)·mean_{j≠i} g_j (not rloo) and a constant row v
    gives −K·v/(n−1). At K = n the baseline needs k ≤ n − 1 samples and is undefined: our convention (UNCONFIRMED)
    falls back to pkpo there. Needs n ≥ 2. [B, n] real → [B, n].
    """
    n = rewards.shape[-1]
    if is_binary(rewards):  # every term depends only on (n, c, r_i): a count table, no sort
        return by_count(rewards, count_table("pkpo_loo" if k <= n - 1 else "wk25", n, k, True))
    return _pkpo_sorted(rewards, k, "loo" if k <= n - 1 else "none")


@register("pkpo_loo_minus_one", rewards="real", needs_k_le_n=True, min_n=2)
def pkpo_loo_minus_one(rewards: Tensor, k: int) -> Tensor:
    """A = n·[s_i − (1/C(n,k))·Σ_{I∋i} max_{I∖i} g] = n·s_i − k·ρ^(g)(g_{−i}, k−1) (W Eq. 33–34). Unbiased.

    W's recommended estimator. A constant row gives 0; K = n gives n·(max g − max g_{−i}). At K = 1 W leaves it
    undefined (its listing divides by K − 1): our convention (UNCONFIRMED) is baseline 0, so A = g, and the harness should run
    rloo instead (`resolve_method`). Needs n ≥ 2. [B, n] real → [B, n].
    """
    if is_binary(rewards):  # on 0/1 rewards this is exactly reinforce_k: K·w⁺ if correct, 0 if wrong
        return by_count(rewards, count_table("reinforce_k", rewards.shape[-1], k, True))
    return _pkpo_sorted(rewards, k, "loo_minus_one" if k >= 2 else "none")
