"""K schedules K_t: fixed, PKPO-style piecewise-constant annealing, N's adaptive K (docs/methods.md §8). Pure functions.

Each function maps plain numbers to an int K ≥ 1 and raises a one-line ValueError on bad settings. What this file leaves
out: the state they read (the EMA p_t of the training reward and the step counter live in k_control.py) and the
K ≤ n rule of particular estimators (callers pass `n=` to adaptive_k when the method needs it).
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence


def _check_k(name: str, k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{name}={k!r} must be an integer >= 1")
    return int(k)


def fixed(k: int) -> int:
    """K_t = k at every step."""
    return _check_k("k", k)


def anneal_k(step: int, schedule: Sequence[Sequence[int]]) -> int:
    """Piecewise-constant K (W §5.2.3 / Fig. 3): the k of the last (start_step, k) with start_step ≤ step.

    `schedule` lists (start_step, k) pairs with strictly increasing start steps, the first at 0; W's run is
    [(0, 8), (1500, 1)] with n = 16 and s^(loo−1) (at k = 1 the harness runs rloo, docs/methods.md §6). 0-based steps.
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step={step!r} must be an integer >= 0")
    pairs = [tuple(p) for p in schedule]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(f"schedule={schedule!r} must be a non-empty list of (start_step, k) pairs")
    starts = [p[0] for p in pairs]
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in starts) or starts[0] != 0:
        raise ValueError(f"schedule={schedule!r}: start steps must be integers and the first must be 0")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"schedule={schedule!r}: start steps must be strictly increasing")
    k = pairs[0][1]
    for start, value in pairs:
        _check_k("schedule k", value)
        if start <= step:
            k = value
    return int(k)


def adaptive_k(p_t: float, k_min: int, k_max: int, p_target: float, n: int | None = None) -> int:
    """K_t = K_min + (K_max − K_min)·clip(p_t/p_target, 0, 1), rounded half up (N §2; docs/methods.md §8).

    Low success p_t gives a small K, high p_t a large K. When `n` is given (methods that need K ≤ n) the result is
    clipped to [1, n]. UNCONFIRMED: N's proposal is untested; p_t is the EMA (decay 0.9) of the training mean reward
    (our choice, kept by the caller). Needs p_target > 0 and 1 ≤ k_min ≤ k_max.
    """
    k_min, k_max = _check_k("k_min", k_min), _check_k("k_max", k_max)
    if k_min > k_max:
        raise ValueError(f"k_min={k_min} > k_max={k_max}: k_min must be <= k_max")
    if not isinstance(p_target, numbers.Real) or not math.isfinite(p_target) or p_target <= 0:
        raise ValueError(f"p_target={p_target!r} must be a finite real > 0")
    if not isinstance(p_t, numbers.Real) or not math.isfinite(p_t):
        raise ValueError(f"p_t={p_t!r} must be a finite real (the smoothed training success rate)")
    ratio = min(max(float(p_t) / float(p_target), 0.0), 1.0)
    k = math.floor(k_min + (k_max - k_min) * ratio + 0.5)
    if n is not None:
        k = min(k, _check_k("n", n))
    return max(int(k), 1)
