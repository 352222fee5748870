"""passk_multi: one estimator for the scalarised objective J = Σ_k w_k·Pass@k over several k (N §3).

The estimator is UNCONFIRMED (N gives only J): A = Σ_k w_k·A^(k), with A^(k) = rloo_k(K=k, k_factor=True) for k ≤ n
(the factor k is what weights the terms correctly) and the plug-in k(1 − r̄)^{k−1}·A^RLOO (biased, log space) for k > n.
Unbiased for Σ_k w_k ∇Pass@k when every k ≤ n. Every term depends only on (n, c, r_i), so the whole sum is one exact
table per (n, ks, weights). What this file leaves out: schedules over k (schedules.py).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

from torch import Tensor

from passk_exp.estimators.baselines import by_count
from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import count_table


@lru_cache(maxsize=256)
def _multi_table(
    n: int, ks: tuple[int, ...], weights: tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pos = [0.0] * (n + 1)
    neg = [0.0] * (n + 1)
    for kk, w in zip(ks, weights):
        if kk <= n:
            p_k, q_k = count_table("rloo_k", n, kk, True)
        else:  # plug-in k(1 − r̄)^{k−1}·A^RLOO; A^RLOO is (n−c)/(n−1) for a correct sample, −c/(n−1) for a wrong one
            alpha = [math.exp(math.log(kk) + (kk - 1) * math.log1p(-c / n)) if c < n else 0.0 for c in range(n + 1)]
            p_k = tuple(a * ((n - c) / (n - 1)) for c, a in enumerate(alpha))
            q_k = tuple(-a * (c / (n - 1)) for c, a in enumerate(alpha))
        for c in range(n + 1):
            pos[c] += w * p_k[c]
            neg[c] += w * q_k[c]
    return tuple(pos), tuple(v + 0.0 for v in neg)


@register("passk_multi", rewards="binary", needs_k_le_n=False, min_n=2, uses_k=False)
def passk_multi(
    rewards: Tensor, k: int, *, ks: Sequence[int] = (1, 4, 16, 64), weights: Sequence[float] | None = None
) -> Tensor:
    """A = Σ_k w_k·A^(k) over `ks` (default 1, 4, 16, 64), w_k = 1/len(ks) unless `weights` is given. Ignores `k`.

    Surrogate F = Σ_k w_k·(1 − (1 − p)^k). Binary rewards, n ≥ 2; k > n is allowed (biased plug-in term).
    UNCONFIRMED (N gives only J): the estimator itself, the k > n fallback and the uniform default weights.
    [B, n] → [B, n].
    """
    ks_t = tuple(int(x) for x in ks)
    if weights is None:
        w_t = tuple(1.0 / len(ks_t) for _ in ks_t)
    else:
        w_t = tuple(float(x) for x in weights)
        if len(w_t) != len(ks_t):
            raise ValueError(
                f"method='passk_multi': weights has {len(w_t)} entries but ks={list(ks_t)} has {len(ks_t)}; "
                "give one weight per k"
            )
    return by_count(rewards, _multi_table(rewards.shape[-1], ks_t, w_t))
