"""Exact binomial-ratio tables that the estimators gather from (pure Python integers, cached per (n, k)).

Every binomial quantity an estimator needs depends only on (n, k) and an integer index (the number of correct samples
c, or a sorted position i), so it is computed once, exactly, as a ratio of Python integers (`math.comb`) and rounded
to float64 by Python's correctly-rounded int / int division: no factorials, no lgamma, no overflow at n = k = 1024,
exact 0 and 1 where the true value is 0 or 1. The estimators then gather rows of these tables on the caller's device
and dtype. What this file leaves out: anything that touches rewards (that is the estimators' job).

Names follow the spec (shared/spec/methods.md §0, §1, §6): w⁺ / w⁻ are the leave-one-out Fail@(K−1) weights
(U Eq. 14), fail@k is 1 − pass@k (W Eq. 3), and the order-statistic weights are those of max@k (W §3.1, Eq. 19–21).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import comb

import torch
from torch import Tensor


def binom(a: int, m: int) -> int:
    """C(a, m) for any integers: 0 when m < 0 or a < m (including negative a), 1 when m = 0."""
    if m < 0:
        return 0
    if m == 0:
        return 1
    if a < m:
        return 0
    return comb(a, m)


def fail_ratio(n: int, c: int, k: int) -> Fraction:
    """fail@k = C(n−c, k) / C(n, k) as an exact fraction (1 − pass@k, W Eq. 3); 0 when n − c < k."""
    return Fraction(binom(n - c, k), binom(n, k))


def loo_fail_ratio(n: int, c: int, k: int, correct: bool) -> Fraction:
    """w⁺ (correct) = C(n−c, k−1)/C(n−1, k−1), w⁻ (wrong) = C(n−c−1, k−1)/C(n−1, k−1): Fail@(k−1) of the others."""
    return Fraction(binom(n - c - (0 if correct else 1), k - 1), binom(n - 1, k - 1))


@lru_cache(maxsize=1024)
def count_table(kind: str, n: int, k: int, flag: object = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(value for a correct sample, value for a wrong one) for each c = 0..n, for the count-only binary estimators.

    kind: 'reinforce_k' | 'rloo_k' | 'wk25' | 'loo_weights' | 'shaping'. `flag` is the estimator's scalar option
    (k_factor for the first four, eps for 'shaping'). Entries that cannot occur (a correct sample when c = 0, a wrong
    one when c = n) are 0. Exact rationals are rounded once, at the end.
    """
    pos: list[float] = []
    neg: list[float] = []
    scale = k if flag is True or kind == "shaping" else 1
    for c in range(n + 1):
        w_pos = loo_fail_ratio(n, c, k, correct=True) if c >= 1 else Fraction(0)
        w_neg = loo_fail_ratio(n, c, k, correct=False) if c <= n - 1 else Fraction(0)
        if kind == "reinforce_k":  # U Eq. 13/15
            p, q = scale * w_pos, Fraction(0)
        elif kind == "rloo_k":  # U Eq. 16: K·w_i·(r_i − mean of the others)
            p = scale * w_pos * Fraction(n - c, n - 1)
            q = -scale * w_neg * Fraction(c, n - 1)
        elif kind == "wk25":  # U Eq. 35 = W Eq. 8
            p, q = Fraction(scale), scale * (1 - w_neg)
        elif kind == "loo_weights":  # K·w⁺ and K·w⁻, for grpo_k
            p, q = scale * w_pos, scale * w_neg
        elif kind == "shaping":  # C's analytic shaping (U Eq. 19), see shaping.py
            pos_v, neg_v = _shaping_entry(n, c, k, float(flag))  # type: ignore[arg-type]
            pos.append(pos_v)
            neg.append(neg_v)
            continue
        else:
            raise ValueError(f"table kind={kind!r} is not one of ['loo_weights', 'reinforce_k', 'rloo_k', 'shaping', 'wk25']")
        pos.append(float(p) if c >= 1 else 0.0)
        neg.append(float(q) + 0.0 if c <= n - 1 else 0.0)  # + 0.0 turns −0.0 into +0.0
    return tuple(pos), tuple(neg)


def _shaping_entry(n: int, c: int, k: int, eps: float) -> tuple[float, float]:
    """passk_shaping for one c: A⁺ = (1−ρ̂)/(σ_K+ε), A⁻ = (1−ρ̂−w⁻)/(σ_K+ε), σ_K = √(ρ̂(1−ρ̂)); 0 when ρ̂ ∈ {0,1}.

    ρ̂ is the correctly rounded float64 pass@k, so "σ_K = 0" means ρ̂ ∈ {0, 1} in float64 (spec §4); the numerators are
    exact rationals rounded once, which keeps A⁻ accurate where 1 − ρ̂ and w⁻ nearly cancel.
    """
    fail = fail_ratio(n, c, k)
    rho = float(1 - fail)
    if rho == 0.0 or rho == 1.0:
        return 0.0, 0.0
    sigma = (rho * (1.0 - rho)) ** 0.5
    w_neg = loo_fail_ratio(n, c, k, correct=False) if c <= n - 1 else Fraction(0)
    pos = float(fail) / (sigma + eps) if c >= 1 else 0.0
    neg = float(fail - w_neg) / (sigma + eps) if c <= n - 1 else 0.0
    return pos, neg + 0.0


@lru_cache(maxsize=1024)
def pass_at_k_by_count(n: int, k: int) -> tuple[float, ...]:
    """ρ̂_k(n, c) = 1 − C(n−c, k)/C(n, k) for c = 0..n, correctly rounded (W Eq. 3)."""
    return tuple(float(1 - fail_ratio(n, c, k)) for c in range(n + 1))


@lru_cache(maxsize=1024)
def order_weights(n: int, k: int, scale: Fraction = Fraction(1)) -> tuple[float, ...]:
    """scale·C(i−1, k−1)/C(n, k) for sorted positions i = 1..n: the max@k weights (W §3.1); 0 for i < k."""
    total = binom(n, k)
    return tuple(float(scale * Fraction(binom(i - 1, k - 1), total)) for i in range(1, n + 1))


@lru_cache(maxsize=1024)
def pkpo_tail_weights(n: int, k: int, scale: Fraction = Fraction(1)) -> tuple[float, ...]:
    """scale·C(j−2, k−2)/C(n, k) for sorted positions j = 1..n: the weight of g_(j) in s_(i) for i < j (W Eq. 21)."""
    total = binom(n, k)
    return tuple(float(scale * Fraction(binom(j - 2, k - 2), total)) for j in range(1, n + 1))


@lru_cache(maxsize=1024)
def drop_one_weights(n: int, k: int, scale: Fraction = Fraction(1)) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Weights of ρ^(g)(g_{−p}, k), the max@k estimate from the n−1 samples other than sorted position p.

    Dropping position p shifts every later sample down one place, so
    ρ^(g)(g_{−p}, k) = [Σ_{j<p} C(j−1, k−1)·g_(j) + Σ_{j>p} C(j−2, k−1)·g_(j)] / C(n−1, k).
    Returns (before, after) = scale·C(j−1, k−1)/C(n−1, k) and scale·C(j−2, k−1)/C(n−1, k) for j = 1..n.
    """
    total = binom(n - 1, k)
    before = tuple(float(scale * Fraction(binom(j - 1, k - 1), total)) for j in range(1, n + 1))
    after = tuple(float(scale * Fraction(binom(j - 2, k - 1), total)) for j in range(1, n + 1))
    return before, after


_TENSORS: dict[tuple, tuple[tuple[float, ...], Tensor]] = {}


def as_tensor(values: tuple[float, ...], like: Tensor) -> Tensor:
    """The table as a 1-D tensor on `like`'s device and dtype.

    Cached by the identity of the (lru-cached) tuple, which the cache entry keeps alive, so a hit costs no hashing of
    the values and no host-to-device copy.
    """
    key = (id(values), like.dtype, like.device)
    hit = _TENSORS.get(key)
    if hit is not None and hit[0] is values:
        return hit[1]
    if len(_TENSORS) > 4096:  # a long sweep over many (n, k) pairs must not grow without bound
        _TENSORS.clear()
    out = torch.tensor(values, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
    _TENSORS[key] = (values, out)
    return out
