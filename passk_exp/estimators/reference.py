"""Slow, obviously-correct per-group loop versions of every method, for parity tests and the benchmark baseline.

Each group is a Python list of floats and each advantage is written from its definition in docs/methods.md, sample by
sample (leave-one-out quantities are recomputed from the other samples, binomials come from `math.comb`), the way many
RL libraries write estimators. Never used in training. `loop_advantages(method, rewards, k, **params)` mirrors
`compute_advantages` without its validation. What this file leaves out: speed, and any input checking.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

Group = list[float]


def _mean(xs: Group) -> float:
    return sum(xs) / len(xs)


def _others(g: Group, i: int) -> Group:
    return g[:i] + g[i + 1 :]


def _all_equal(g: Group) -> bool:
    return all(x == g[0] for x in g)


def _fail(n_wrong: int, total: int, m: int) -> float:
    """P(m draws without replacement from `total` samples, `n_wrong` of them wrong, are all wrong)."""
    return math.comb(n_wrong, m) / math.comb(total, m) if m <= n_wrong else 0.0


def _wrong(xs: Group) -> int:
    return sum(1 for x in xs if x == 0)


def _max_at_k(xs: Group, k: int) -> float:
    """Unbiased E[max of k of the len(xs) values] (W §3.1), from the sorted values."""
    s, m = sorted(xs), len(xs)
    return sum(math.comb(i - 1, k - 1) * s[i - 1] for i in range(k, m + 1)) / math.comb(m, k)


def reinforce(g: Group, k: int) -> Group:
    return list(g)


def rloo(g: Group, k: int) -> Group:
    return [x - _mean(_others(g, i)) for i, x in enumerate(g)]


def grpo(g: Group, k: int, std_ddof: int = 0, eps: float = 1e-6) -> Group:
    n = len(g)
    if _all_equal(g) or n - std_ddof < 1:
        return [0.0] * n
    m = _mean(g)
    sigma = math.sqrt(sum((x - m) ** 2 for x in g) / (n - std_ddof))
    return [(x - m) / (sigma + eps) for x in g]


def _k_scale(k: int, k_factor: bool) -> int:
    return k if k_factor else 1


def reinforce_k(g: Group, k: int, k_factor: bool = True) -> Group:
    n = len(g)
    return [_k_scale(k, k_factor) * x * _fail(_wrong(_others(g, i)), n - 1, k - 1) for i, x in enumerate(g)]


def rloo_k(g: Group, k: int, k_factor: bool = True) -> Group:
    n, out = len(g), []
    for i, x in enumerate(g):
        o = _others(g, i)
        out.append(_k_scale(k, k_factor) * _fail(_wrong(o), n - 1, k - 1) * (x - _mean(o)))
    return out


def grpo_k(g: Group, k: int, k_factor: bool = True, std_ddof: int = 0, eps: float = 1e-6) -> Group:
    n, a = len(g), grpo(g, k, std_ddof, eps)
    return [_k_scale(k, k_factor) * _fail(_wrong(_others(g, i)), n - 1, k - 1) * a[i] for i in range(n)]


def wk25(g: Group, k: int, k_factor: bool = True) -> Group:
    n, s = len(g), _k_scale(k, k_factor)
    return [s if x == 1 else s * (1 - _fail(_wrong(_others(g, i)), n - 1, k - 1)) for i, x in enumerate(g)]


def passk_shaping(g: Group, k: int, eps: float = 1e-6) -> Group:
    n, c = len(g), int(sum(g))
    rho = 1 - math.comb(n - c, k) / math.comb(n, k)
    if rho in (0.0, 1.0):
        return [0.0] * n
    sigma = math.sqrt(rho * (1 - rho))
    out = []
    for i, x in enumerate(g):
        w_neg = 0.0 if x == 1 else _fail(_wrong(_others(g, i)), n - 1, k - 1)
        out.append((1 - rho - w_neg) / (sigma + eps))
    return out


def passk_mix(g: Group, k: int, variant: str = "shaping", std_ddof: int = 0, eps: float = 1e-6) -> Group:
    m, a = _mean(g), grpo(g, k, std_ddof, eps)
    b = passk_shaping(g, k, eps) if variant == "shaping" else grpo_k(g, k, False, std_ddof, eps)
    return [(1 - m) * a[i] + m * b[i] for i in range(len(g))]


def skew_r(g: Group, k: int, std_ddof: int = 0, eps: float = 1e-6) -> Group:
    m = _mean(g)
    return [(1 - m) * a for a in grpo(g, k, std_ddof, eps)]


def entropy_reg(g: Group, k: int, lam: float = 0.1, std_ddof: int = 0, eps: float = 1e-6) -> Group:
    m = _mean(g)
    omega = 1.0 if m in (0.0, 1.0) else 1 + lam * math.sqrt(m * (1 - m)) * math.log((1 - m) / m)
    return [omega * a for a in grpo(g, k, std_ddof, eps)]


def biased_k(
    g: Group, k: int, k_factor: bool = True, base: str = "grpo", p_hat: float | None = None,
    std_ddof: int = 0, eps: float = 1e-6,
) -> Group:
    """p_hat: the plug-in value (the group mean when None)."""
    p = min(max(_mean(g) if p_hat is None else p_hat, 0.0), 1.0)
    alpha = 1.0 if k == 1 else _k_scale(k, k_factor) * (1 - p) ** (k - 1)
    a = grpo(g, k, std_ddof, eps) if base == "grpo" else rloo(g, k)
    return [alpha * x for x in a]


def _n_s(g: Group, k: int) -> Group:
    """n·s_i with s_(i) = [C(i−1,k−1)·g_(i) + Σ_{j>i} C(j−2,k−2)·g_(j)]/C(n,k) (W Eq. 19–21), back in input order."""
    n = len(g)
    order = sorted(range(n), key=lambda i: g[i])
    s = [g[i] for i in order]
    out = [0.0] * n
    tail = 0.0  # Σ_{j>i} C(j−2, k−2)·g_(j), built from the top down
    for pos in range(n, 0, -1):
        out[order[pos - 1]] = n * (math.comb(pos - 1, k - 1) * s[pos - 1] + tail) / math.comb(n, k)
        if k >= 2 and pos >= 2:
            tail += math.comb(pos - 2, k - 2) * s[pos - 1]
    return out


def pkpo(g: Group, k: int) -> Group:
    return _n_s(g, k)


def pkpo_loo(g: Group, k: int) -> Group:
    n, a = len(g), _n_s(g, k)
    if k == n:
        return a
    return [a[i] - n * k / (n - 1) * _max_at_k(_others(g, i), k) for i in range(n)]


def pkpo_loo_minus_one(g: Group, k: int) -> Group:
    n, a = len(g), _n_s(g, k)
    if k == 1:
        return a
    if _all_equal(g):
        return [0.0] * n
    return [a[i] - k * _max_at_k(_others(g, i), k - 1) for i in range(n)]


def passk_multi(
    g: Group, k: int, ks: tuple[int, ...] = (1, 4, 16, 64), weights: tuple[float, ...] | None = None
) -> Group:
    n, m = len(g), _mean(g)
    ws = weights if weights is not None else [1 / len(ks)] * len(ks)
    out = [0.0] * n
    for kk, w in zip(ks, ws):
        term = rloo_k(g, kk) if kk <= n else [kk * (1 - m) ** (kk - 1) * a for a in rloo(g, kk)]
        out = [o + w * t for o, t in zip(out, term)]
    return out


def grpo_passk(g: Group, k: int, std_normalize: bool = True, std_ddof: int = 1, eps: float = 1e-6) -> Group:
    # Leave-one-out form of Tang et al.'s max@n gradient: what removing sample i costs the group's max.
    n, m = len(g), _mean(g)
    out = [max(g) - max(_others(g, i)) for i in range(n)]
    if not std_normalize or _all_equal(g):
        return out
    sigma = math.sqrt(sum((x - m) ** 2 for x in g) / (n - std_ddof))
    return [a / (sigma + eps) for a in out]


def maxrl(g: Group, k: int) -> Group:
    m = _mean(g)
    return [0.0] * len(g) if m == 0 else [(x - m) / m for x in g]


def dr_grpo(g: Group, k: int) -> Group:
    m = _mean(g)
    return [x - m for x in g]


LOOPS: dict[str, Callable[..., Group]] = {
    f.__name__: f
    for f in (
        reinforce, rloo, grpo, reinforce_k, rloo_k, grpo_k, wk25, passk_shaping, passk_mix, skew_r, entropy_reg,
        biased_k, pkpo, pkpo_loo, pkpo_loo_minus_one, passk_multi, grpo_passk, maxrl, dr_grpo,
    )
}


def loop_advantages(method: str, rewards: Tensor, k: int, **params: Any) -> Tensor:
    """The per-group loop version of `method` on rewards [B, n] → [B, n] (same dtype and device).

    biased_k with p_hat 'ema' / 'global' reads and updates `state`, a plain dict {'p': None, 'sum': 0.0, 'count': 0}
    (decay 0.9), independently of BiasedKState.
    """
    fn = LOOPS[method]
    rows = rewards.tolist()
    if method == "biased_k" and params.get("p_hat", "group") != "group":
        state = params.pop("state")
        flat = [x for row in rows for x in row]
        if params.pop("p_hat") == "ema":
            mean = sum(flat) / len(flat)
            state["p"] = mean if state["p"] is None else 0.9 * state["p"] + 0.1 * mean
        else:
            state["sum"] += sum(flat)
            state["count"] += len(flat)
            state["p"] = state["sum"] / state["count"]
        params["p_hat"] = state["p"]
    elif method == "biased_k":
        params.pop("p_hat", None)
    out = [fn(row, k, **params) for row in rows]
    return torch.tensor(out, dtype=rewards.dtype, device=rewards.device)
