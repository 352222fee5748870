"""Exact binomial-ratio tables that the estimators gather from (pure Python integers, cached per (n, k)).

Every binomial quantity an estimator needs depends only on (n, k) and an integer index (the number of correct samples
c, or a sorted position i), so it is computed once, exactly, as a ratio of Python integers (`math.comb`) and rounded
to float64 by Python's correctly-rounded int / int division: no factorials, no lgamma, no overflow at n = k = 1024,
exact 0 and 1 where the true value is 0 or 1. The estimators then gather rows of these tables on the caller's device
and dtype. What this file leaves out: anything that touches rewards (that is the estimators' job).

Names follow docs/methods.md (§0, §1, §6): w⁺ / w⁻ are the leave-one-out Fail@(K−1) weights
(U Eq. 14), fail@k is 1 − pass@k (W Eq. 3), and the order-statistic weights are those of max@k (W §3.1, Eq. 19–21).
"""

from __future__ import annotations

import math
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

    kind: 'reinforce_k' | 'rloo_k' | 'wk25' | 'loo_weights' | 'shaping' | 'pkpo_loo'. `flag` is the estimator's scalar
    option (k_factor for the first four, eps for 'shaping', unused for 'pkpo_loo'). Entries that cannot occur (a correct sample when c = 0, a wrong
    one when c = n) are 0. Each entry is one ratio of exact integers over a common denominator, rounded once
    (Python's int / int is correctly rounded), which is exact where Fractions would be and ~10× faster at n = 1024.
    """
    kinds = ("loo_weights", "pkpo_loo", "reinforce_k", "rloo_k", "shaping", "wk25")
    if kind not in kinds:
        raise ValueError(f"table kind={kind!r} is not one of {list(kinds)}")
    scale = k if flag is True else 1
    den = binom(n - 1, k - 1)  # w± = C(·, k−1) / C(n−1, k−1)
    pos: list[float] = []
    neg: list[float] = []
    for c in range(n + 1):
        w_pos = binom(n - c, k - 1) if c >= 1 else 0  # numerators of w⁺, w⁻
        w_neg = binom(n - c - 1, k - 1) if c <= n - 1 else 0
        if kind == "reinforce_k":  # U Eq. 13/15: K·w⁺ for a correct sample, 0 for a wrong one
            p, q = scale * w_pos / den, 0.0
        elif kind == "rloo_k":  # U Eq. 16: K·w_i·(r_i − mean of the others)
            p = scale * w_pos * (n - c) / (den * (n - 1))
            q = -(scale * w_neg * c) / (den * (n - 1))
        elif kind == "wk25":  # U Eq. 35 = W Eq. 8: K, and K·(1 − w⁻)
            p, q = float(scale), scale * (den - w_neg) / den
        elif kind == "loo_weights":  # K·w⁺ and K·w⁻, for grpo_k
            p, q = scale * w_pos / den, scale * w_neg / den
        elif kind == "pkpo_loo":  # W Eq. 29 on 0/1 rewards (k ≤ n − 1), see _pkpo_loo_entry
            p, q = _pkpo_loo_entry(n, c, k)
        else:  # C's analytic shaping (U Eq. 19), see shaping.py
            p, q = _shaping_entry(n, c, k, float(flag), w_neg, den)  # type: ignore[arg-type]
        pos.append(p if c >= 1 else 0.0)
        neg.append(q + 0.0 if c <= n - 1 else 0.0)  # + 0.0 turns −0.0 into +0.0
    return tuple(pos), tuple(neg)


def _pkpo_loo_entry(n: int, c: int, k: int) -> tuple[float, float]:
    """pkpo_loo on 0/1 rewards: n·s_i − nk/(n−1)·pass@k(others), with n·s_i = k (correct) or k·pass@(k−1)(n−1, c).

    The others hold c − 1 correct (correct sample) or c (wrong one); D1 = C(n−1, k), D0 = C(n−1, k−1):
    A⁺ = [k(n−1)·D1 − nk·(D1 − C(n−c, k))] / ((n−1)·D1),
    A⁻ = [k(n−1)·D1·(D0 − C(n−1−c, k−1)) − nk·D0·(D1 − C(n−1−c, k))] / ((n−1)·D0·D1).
    """
    d1, d0 = binom(n - 1, k), binom(n - 1, k - 1)
    pos = (k * (n - 1) * d1 - n * k * (d1 - binom(n - c, k))) / ((n - 1) * d1) if c >= 1 else 0.0
    neg = 0.0
    if c <= n - 1:
        num = k * (n - 1) * d1 * (d0 - binom(n - 1 - c, k - 1)) - n * k * d0 * (d1 - binom(n - 1 - c, k))
        neg = num / ((n - 1) * d0 * d1)
    return pos, neg


def _shaping_entry(n: int, c: int, k: int, eps: float, w_neg: int, w_den: int) -> tuple[float, float]:
    """passk_shaping for one c: A⁺ = (1−ρ̂)/(σ_K+ε), A⁻ = (1−ρ̂−w⁻)/(σ_K+ε), σ_K = √(ρ̂(1−ρ̂)); 0 when ρ̂ ∈ {0,1}.

    ρ̂ is the correctly rounded float64 pass@k, so "σ_K = 0" means ρ̂ ∈ {0, 1} in float64 (docs/methods.md §4); the
    numerators are exact rationals rounded once, which keeps A⁻ accurate where 1 − ρ̂ and w⁻ nearly cancel.
    """
    total, fail = binom(n, k), binom(n - c, k)  # fail@k = fail / total
    rho = (total - fail) / total
    if rho == 0.0 or rho == 1.0:
        return 0.0, 0.0
    sigma = (rho * (1.0 - rho)) ** 0.5
    pos = fail / total / (sigma + eps)
    neg = (fail * w_den - w_neg * total) / (total * w_den) / (sigma + eps)
    return pos, neg


@lru_cache(maxsize=1024)
def grpo_family_table(
    n: int, k: int, k_factor: bool, std_ddof: int, eps: float, mix: str | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Count tables for grpo_k (U Eq. 17) and, with `mix`, passk_mix (U Eq. 24–25), on 0/1 rewards.

    On a binary row with c correct, A^GRPO takes two values: (n−c)/n/(σ+ε) (correct) and −(c/n)/(σ+ε) (wrong), with
    σ² = c(n−c)/(n(n − std_ddof)); constant rows (c ∈ {0, n}) and n − std_ddof < 1 give 0. grpo_k multiplies by K·w±
    (K dropped when k_factor is False). passk_mix ('shaping' or 'direct') is (1 − c/n)·A^GRPO + (c/n)·A^PassK with
    A^PassK the passk_shaping table or grpo_k without the K factor. One table lookup then replaces two [B, n] passes.
    """
    pos: list[float] = []
    neg: list[float] = []
    w_pos, w_neg = count_table("loo_weights", n, k, bool(k_factor) and mix is None)
    if mix == "shaping":
        s_pos, s_neg = count_table("shaping", n, k, float(eps))
    for c in range(n + 1):
        if c in (0, n) or n - std_ddof < 1:
            pos.append(0.0)
            neg.append(0.0)
            continue
        inv = 1.0 / (math.sqrt(c * (n - c) / (n * (n - std_ddof))) + eps)
        g_pos, g_neg = (n - c) / n * inv, -(c / n) * inv
        if mix is None:
            pos.append(w_pos[c] * g_pos)
            neg.append(w_neg[c] * g_neg)
            continue
        a_pos, a_neg = (s_pos[c], s_neg[c]) if mix == "shaping" else (w_pos[c] * g_pos, w_neg[c] * g_neg)
        pos.append((n - c) / n * g_pos + c / n * a_pos)
        neg.append((n - c) / n * g_neg + c / n * a_neg)
    return tuple(pos), tuple(neg)


@lru_cache(maxsize=1024)
def pass_at_k_by_count(n: int, k: int) -> tuple[float, ...]:
    """ρ̂_k(n, c) = 1 − C(n−c, k)/C(n, k) for c = 0..n, correctly rounded (W Eq. 3)."""
    total = binom(n, k)
    return tuple((total - binom(n - c, k)) / total for c in range(n + 1))


@lru_cache(maxsize=1024)
def order_weights(n: int, k: int) -> tuple[float, ...]:
    """C(i−1, k−1)/C(n, k) for sorted positions i = 1..n: the max@k weights (W §3.1); 0 for i < k."""
    total = binom(n, k)
    return tuple(binom(i - 1, k - 1) / total for i in range(1, n + 1))


@lru_cache(maxsize=1024)
def pkpo_weights(n: int, k: int, baseline: str) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(c1, c2, tail) for sorted positions j = 1..n such that, in ascending order (W Eq. 19–21, 29, 33),

        A_(i) = c1_i·g_(i) + Σ_j tail_j·g_(j) − Σ_{j≤i} c2_j·g_(j)     (one cumulative sum per row).

    This is A_(i) = head_i·g_(i) + Σ_{j>i} tail_j·g_(j) − Σ_{j<i} before_j·g_(j) regrouped, with c1 = head + before and
    c2 = tail + before. n·s_(i) has head = n·C(i−1, k−1)/C(n,k) and tail = n·C(j−2, k−2)/C(n,k) (W Eq. 21). A
    leave-one-out baseline λ·ρ^(g)(g_{−i}, k') drops sorted position i, which shifts every later sample down a place:
    ρ^(g)(g_{−i}, k') = [Σ_{j<i} C(j−1, k'−1)·g_(j) + Σ_{j>i} C(j−2, k'−1)·g_(j)] / C(n−1, k'); so before_j =
    λ·C(j−1, k'−1)/C(n−1, k') and λ·C(j−2, k'−1)/C(n−1, k') comes off tail_j. baseline: 'none' (pkpo), 'loo' (λ = nk/(n−1), k' = k; W Eq. 29) or 'loo_minus_one'
    (λ = k, k' = k − 1; W Eq. 33–34). Each weight is one exact rational, rounded once.
    """
    total = binom(n, k)
    js = range(1, n + 1)
    if baseline == "none":
        head = tuple(n * binom(j - 1, k - 1) / total for j in js)
        tail = tuple(n * binom(j - 2, k - 2) / total for j in js)
        return head, tail, tail
    lam_num, lam_den, kb = (n * k, n - 1, k) if baseline == "loo" else (k, 1, k - 1)
    sub = binom(n - 1, kb) * lam_den  # λ·C(·, k'−1)/C(n−1, k') = lam_num·C(·, k'−1) / sub
    den = total * sub
    c1 = tuple((n * binom(j - 1, k - 1) * sub + lam_num * binom(j - 1, kb - 1) * total) / den for j in js)
    tail_num = [n * binom(j - 2, k - 2) * sub - lam_num * binom(j - 2, kb - 1) * total for j in js]
    c2 = tuple((t + lam_num * binom(j - 1, kb - 1) * total) / den for j, t in zip(js, tail_num))
    return c1, c2, tuple(t / den for t in tail_num)


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
