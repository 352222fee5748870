"""What each estimator's expected gradient should equal: the objective it aims at, and the surrogate in docs/methods.md.

For the binary toy every objective is a function F(p) of the success probability, so its gradient is F′(p)·∇_θ p;
a Target carries F (where it has a closed form) and F′ (always), and tests check F′ against autograd of F. Two targets
per method (docs/methods.md §2–§8):
* `objective(method, K, params)`: what the method is meant to maximise: Pass@1 for Pass@1 methods, Pass@K for the
  K-methods (×1/K with k_factor=False), Σ w_k Pass@k for passk_multi. An unbiased estimator's mean equals its gradient.
* `surrogate(method, K, params)`: the population-limit (n → ∞) objective docs/methods.md gives for the method. For the
  unbiased methods it is the objective itself; for biased ones (grpo, grpo_k, passk_shaping, skew_r, entropy_reg,
  biased_k) the finite-n mean differs from both, and the diagnostics measure by how much.
For the continuous toy the objective is max@K (max@1 = E[g] for Pass@1 methods), and only methods whose surrogate is
a max@k have one. The regularized incomplete beta K·B(p; ½, K−½) of grpo_k / biased_k (U App. C.1) is computed as
2K∫_0^{arcsin√p} cos^{2K−2}φ dφ (t = sin²φ), a smooth integrand, by Gauss–Legendre. What this file leaves out:
Monte-Carlo estimation (diagnostics.py) and the estimators themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from passk_exp import estimators
from passk_exp.toylab.gaussian import gauss_legendre

Fn = Callable[[Tensor], Tensor]

PASS_AT_1_METHODS = ("reinforce", "rloo", "grpo", "skew_r", "entropy_reg", "dr_grpo", "maxrl")
UNBIASED_METHODS = ("reinforce", "rloo", "reinforce_k", "rloo_k", "wk25", "pkpo", "pkpo_loo", "pkpo_loo_minus_one")


@dataclass(frozen=True)
class Target:
    """F(p) (binary toy) or scale·max@k (continuous toy). `weight` is F′(p); `value` is None without a closed form."""

    label: str
    weight: Fn | None = None
    value: Fn | None = None
    max_k: int | None = None
    scale: float = 1.0


def pass_at_k(p: Tensor, k: int) -> Tensor:
    return 1.0 - (1.0 - p) ** k


def _pass_weight(p: Tensor, k: int) -> Tensor:
    return k * (1.0 - p) ** (k - 1)


def incomplete_beta_k(p: Tensor, k: int, nodes: int = 96) -> Tensor:
    """K·B(p; ½, K−½) = K∫_0^p (1−t)^{K−1}/√(t(1−t)) dt (U Eq. 34), differentiable in p; K = 1 gives 2·arcsin√p."""
    x, w = gauss_legendre(nodes)
    top = torch.asin(torch.sqrt(p.clamp(0.0, 1.0)))[..., None]
    phi = top * (x + 1) / 2
    return 2 * k * (top / 2 * w * torch.cos(phi) ** (2 * k - 2)).sum(dim=-1)


def _arcsin_sqrt(p: Tensor) -> Tensor:
    return torch.asin(torch.sqrt(p))


def _sd(p: Tensor) -> Tensor:
    return torch.sqrt(p * (1.0 - p))


def pass_target(k: int, scale: float = 1.0) -> Target:
    label = f"Pass@{k}" if scale == 1.0 else f"Pass@{k}/{k}"
    return Target(label, lambda p: scale * _pass_weight(p, k), lambda p: scale * pass_at_k(p, k))


def _grpo_k_target(k: int, scale: float) -> Target:
    label = f"{k}·B(p;½,{k}-½)" if scale == 1.0 else f"B(p;½,{k}-½)"
    return Target(
        label, lambda p: scale * _pass_weight(p, k) / _sd(p), lambda p: scale * incomplete_beta_k(p, k)
    )


def _shaping_weight(p: Tensor, k: int) -> Tensor:
    """d/dp (2/K)·asin√Pass@K = (1−p)^{K−1}/√(ρ(1−ρ)), with 1 − ρ = (1−p)^K kept unrounded (ρ → 1 near p = 1)."""
    fail = (1.0 - p) ** k
    return (1.0 - p) ** (k - 1) / torch.sqrt((1.0 - fail) * fail)


def _shaping_value(p: Tensor, k: int) -> Tensor:
    """(2/K)·asin√ρ written as (2/K)·acos((1−p)^{K/2}): the same number, finite derivative as ρ → 1."""
    return 2 / k * torch.acos((1.0 - p) ** (k / 2))


def _entropy(p: Tensor) -> Tensor:
    return -(p * torch.log(p) + (1.0 - p) * torch.log1p(-p))


def _params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**estimators.method_params(method), **dict(params or {})}


def _group_size(method: str, n: int | None) -> int:
    if n is None or n < 2:
        raise ValueError(f"method={method!r} aims at Pass@n of its group of n samples: pass n >= 2 (got {n})")
    return n


def objective(
    method: str, k: int, params: Mapping[str, Any] | None = None, continuous: bool = False, n: int | None = None
) -> Target:
    """The objective `method` (as the trainer resolves it at this K) aims at, with the method's own scale.

    n (samples per group) is needed only by grpo_passk, whose target is max@n / n (Tang et al.'s k = n)."""
    method = estimators.resolve_method(method, k)
    merged = _params(method, params)
    scale = 1.0 if merged.get("k_factor", True) else 1.0 / k
    if method == "grpo_passk":
        size = _group_size(method, n)
        if continuous:
            return Target(f"max@{size}/{size}", max_k=size, scale=1.0 / size)
        return pass_target(size, 1.0 / size)
    if method == "maxrl" and not continuous:
        # ∇log p = Σ_k ∇Pass@k / k: MaxRL's n-sample estimator is unbiased for the sum truncated at k = n − 1.
        return Target("log p", lambda p: 1.0 / p, torch.log)
    if continuous:
        target_k = 1 if method in PASS_AT_1_METHODS else k
        return Target(f"max@{target_k}", max_k=target_k, scale=scale if target_k > 1 else 1.0)
    if method in PASS_AT_1_METHODS:
        return pass_target(1)
    if method == "passk_multi":
        ks = [int(x) for x in merged["ks"]]
        ws = [float(x) for x in merged["weights"]] if merged["weights"] is not None else [1.0 / len(ks)] * len(ks)
        return Target(
            "Σw·Pass@k",
            lambda p: sum(w * _pass_weight(p, j) for w, j in zip(ws, ks)),
            lambda p: sum(w * pass_at_k(p, j) for w, j in zip(ws, ks)),
        )
    return pass_target(k, scale)


def surrogate(
    method: str, k: int, params: Mapping[str, Any] | None = None, continuous: bool = False, n: int | None = None
) -> Target | None:
    """The population-limit surrogate of `method` at this K (docs/methods.md §2–§8), or None where it has
    none (passk_mix on continuous rewards; grpo-family methods on continuous rewards). grpo_passk has no n → ∞
    limit (only groups with one success move): its surrogate is its exact mean at group size n."""
    method = estimators.resolve_method(method, k)
    merged = _params(method, params)
    scale = 1.0 if merged.get("k_factor", True) else 1.0 / k
    if method == "grpo_passk":
        if not merged["std_normalize"]:
            return objective(method, k, params, continuous, n)
        if continuous:
            return None
        size = _group_size(method, n)
        # On 0/1 rewards only a one-success group moves; its std is √((n−1)/(n(n−ddof))) (ε left out).
        sigma = ((size - 1) / (size * (size - int(merged["std_ddof"])))) ** 0.5
        scale_n = 1.0 / (size * sigma)
        return Target(
            f"Pass@{size}/({size}σ)", lambda p: scale_n * _pass_weight(p, size), lambda p: scale_n * pass_at_k(p, size)
        )
    if method == "dr_grpo":
        return objective(method, k, params, continuous)
    if method == "maxrl":  # continuous: its limit is ∇log E[r], which has no max@k form
        return None if continuous else objective(method, k, params, continuous)
    if continuous:
        return objective(method, k, params, True) if method in UNBIASED_METHODS else None
    if method in UNBIASED_METHODS or method == "passk_multi":
        return objective(method, k, params)
    if method == "grpo":
        return Target("2·asin√p", lambda p: 1.0 / _sd(p), lambda p: 2 * _arcsin_sqrt(p))
    if method == "skew_r":
        return Target("asin√p+√(p(1-p))", lambda p: torch.sqrt((1.0 - p) / p), lambda p: _arcsin_sqrt(p) + _sd(p))
    if method == "entropy_reg":
        lam = float(merged["lam"])
        return Target(
            f"2·asin√p+{lam}·H(p)",
            lambda p: 1.0 / _sd(p) + lam * (torch.log1p(-p) - torch.log(p)),
            lambda p: 2 * _arcsin_sqrt(p) + lam * _entropy(p),
        )
    if method == "grpo_k":
        return _grpo_k_target(k, scale)
    if method == "biased_k":
        return _grpo_k_target(k, scale) if merged["base"] == "grpo" else pass_target(k, scale)
    if method == "passk_shaping":
        return Target(
            f"(2/{k})·asin√Pass@{k}", lambda p: _shaping_weight(p, k), lambda p: _shaping_value(p, k)
        )
    if method == "passk_mix":
        if merged["variant"] == "shaping":
            def weight(p: Tensor) -> Tensor:
                return (1.0 - p) / _sd(p) + p * _shaping_weight(p, k)
        else:
            def weight(p: Tensor) -> Tensor:
                return (1.0 - p) / _sd(p) + p * (1.0 - p) ** (k - 1) / _sd(p)
        return Target(f"mix(grpo,Pass@{k}) [F′ only]", weight, None)
    raise ValueError(f"method={method!r} has no surrogate in the toy lab; registered: {sorted(estimators.REGISTRY)}")
