"""Boundary checks for `compute_advantages`: rewards, k and keyword params, each failing with a one-line ValueError.

Every message names the bad value and what is allowed, so a config error found by the trainer's start-up dry run reads
as its own fix ("k=17 > n=16 samples per prompt: ... raise n or lower K"). The math modules assume these checks have
passed and never re-check. What this file leaves out: method-specific cross-param rules (they live with the method).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch
from torch import Tensor

REWARD_DOMAINS = {
    "binary": "binary rewards in {0, 1}",
    "unit": "rewards in [0, 1]",
    "real": "finite real rewards",
}


def _first_bad(rewards: Tensor, bad: Tensor) -> str:
    """'value v at [row, col]' for the first True entry of `bad` (only runs on the error path)."""
    row, col = (int(i) for i in torch.nonzero(bad)[0])
    return f"{float(rewards[row, col])!r} at [{row}, {col}]"


def check_rewards(method: str, rewards: Any, domain: str, min_n: int) -> None:
    """rewards must be a floating [B, n] tensor, finite, inside the method's domain, with n >= min_n."""
    if not isinstance(rewards, Tensor):
        raise ValueError(f"rewards must be a torch.Tensor of shape [B, n]; got {type(rewards).__name__}")
    if rewards.dim() != 2:
        raise ValueError(
            f"rewards must be 2-D [B, n] (B prompts, n samples each); got shape {tuple(rewards.shape)}"
        )
    if not rewards.is_floating_point():
        raise ValueError(f"rewards dtype {rewards.dtype} is not floating: pass float32 or float64 rewards")
    n = rewards.shape[1]
    if n < min_n:
        why = "for its leave-one-out baseline; raise n" if min_n == 2 else "; raise n"
        raise ValueError(f"n={n} samples per prompt: method={method!r} needs n >= {min_n} {why}")
    if rewards.numel() == 0 or _fast_ok(rewards, domain):
        return
    finite = torch.isfinite(rewards)
    if not bool(finite.all()):
        raise ValueError(f"rewards hold a non-finite value {_first_bad(rewards, ~finite)}: rewards must be finite")
    if domain == "binary":
        bad = (rewards != 0) & (rewards != 1)
    elif domain == "unit":
        bad = (rewards < 0) | (rewards > 1)
    else:
        return
    if bool(bad.any()):
        raise ValueError(
            f"rewards hold {_first_bad(rewards, bad)} but method={method!r} needs {REWARD_DOMAINS[domain]}"
        )


def is_binary(rewards: Tensor) -> bool:
    """True iff every entry is exactly 0 or 1: Σ|r(1 − r)| = 0 (NaN and ±inf make it non-zero). One allocation."""
    return float((1 - rewards).mul_(rewards).abs_().sum()) == 0.0


def _fast_ok(rewards: Tensor, domain: str) -> bool:
    """One cheap whole-tensor reduction that proves the rewards valid; False sends them to the exact element checks.

    binary: `is_binary`. unit: min ≥ 0 and max ≤ 1
    (a NaN fails both). real: a finite total implies finite entries (an overflowing total of finite rewards only costs
    the slow path). Boolean element-wise checks are ~5× slower than these on CPU, and this runs every step.
    """
    if domain == "binary":
        return is_binary(rewards)
    if domain == "unit":
        low, high = torch.aminmax(rewards)
        return bool(low >= 0) and bool(high <= 1)
    return bool(torch.isfinite(rewards.sum()))


def check_k(method: str, k: Any, n: int, needs_k_le_n: bool) -> None:
    """k is an integer >= 1, and <= n for methods that estimate C(·, k) from the n samples (W Corollary 2)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k={k!r} must be an integer >= 1")
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    if needs_k_le_n and k > n:
        raise ValueError(
            f"k={k} > n={n} samples per prompt: method={method!r} needs k <= n "
            "(no unbiased Pass@k estimate exists from fewer than k samples); raise n or lower K"
        )


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _check_bool(name: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{name}={v!r} must be true or false")


def _check_ddof(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v not in (0, 1):
        raise ValueError(f"{name}={v!r} must be 0 (population std, the default) or 1 (sample std, verl/TRL)")


def _check_nonneg(name: str, v: Any) -> None:
    if not _is_real(v) or float(v) < 0:
        raise ValueError(f"{name}={v!r} must be a finite real >= 0")


def _choice(*allowed: str) -> Callable[[str, Any], None]:
    def check(name: str, v: Any) -> None:
        if v not in allowed:
            raise ValueError(f"{name}={v!r} is not one of {list(allowed)}")

    return check


def _check_ks(name: str, v: Any) -> None:
    try:
        ks = list(v)
    except TypeError:
        raise ValueError(f"{name}={v!r} must be a non-empty list of integers >= 1") from None
    if not ks or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1 for k in ks):
        raise ValueError(f"{name}={v!r} must be a non-empty list of integers >= 1")
    if len(set(ks)) != len(ks):
        raise ValueError(f"{name}={v!r} repeats a k; list each k once and put its weight in `weights`")


def _check_weights(name: str, v: Any) -> None:
    if v is None:
        return
    try:
        ws = list(v)
    except TypeError:
        raise ValueError(f"{name}={v!r} must be null (uniform) or a list of finite reals, one per k in ks") from None
    if not ws or not all(_is_real(w) for w in ws):
        raise ValueError(f"{name}={v!r} must be null (uniform) or a list of finite reals, one per k in ks")


# One checker per keyword param name: a param means the same thing in every method that takes it.
PARAM_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "k_factor": _check_bool,
    "std_normalize": _check_bool,
    "std_ddof": _check_ddof,
    "eps": _check_nonneg,
    "lam": _check_nonneg,
    "variant": _choice("shaping", "direct"),
    "base": _choice("grpo", "rloo"),
    "p_hat": _choice("group", "ema", "global"),
    "ks": _check_ks,
    "weights": _check_weights,
}


def check_params(method: str, params: dict[str, Any]) -> None:
    """Check each param's value with its checker; the message carries the method name."""
    for name, value in params.items():
        check = PARAM_CHECKS.get(name)
        if check is None:
            continue
        try:
            check(name, value)
        except ValueError as err:
            raise ValueError(f"method={method!r}: {err}") from None
