"""The estimator registry: method name → advantage function, plus the one validated entry point `compute_advantages`.

A method is one function `fn(rewards [B, n], k, *, <params with defaults>) -> [B, n]` decorated with
`@register(name, rewards=..., needs_k_le_n=..., min_n=...)`. Its keyword-only params (read from the signature) are the
config keys it accepts, with their defaults; `state` and `prompt_ids` are run-time arguments, not config keys. The
registry is the single source of valid method names: an unknown name, an unknown param, a bad value, a bad k or bad
rewards raise a one-line ValueError here, before any math runs. What this file leaves out: the math (one module per
family of methods) and the stateful p̂ object (biased.py).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from passk_exp.estimators.validation import check_k, check_params, check_rewards

RUNTIME_ARGS = ("state", "prompt_ids")


@dataclass(frozen=True)
class MethodInfo:
    """What the harness needs to know about a registered method besides its function."""

    name: str
    fn: Callable[..., Tensor]
    params: Mapping[str, Any]  # config keyword params → default
    runtime: tuple[str, ...]  # run-time keyword args it accepts (subset of RUNTIME_ARGS)
    rewards: str  # 'binary' ({0, 1}), 'unit' ([0, 1]) or 'real'
    needs_k_le_n: bool  # True when the estimate uses C(·, k) over the n samples
    min_n: int  # 2 for leave-one-out baselines
    uses_k: bool  # False for Pass@1 methods (and passk_multi), which ignore k
    make_state: Callable[[dict[str, Any]], Any] | None = None  # builds the stateful object for these params, or None
    source: Any = field(default=None, compare=False)  # what from_surrogate built it from, for re-registration checks


REGISTRY: dict[str, Callable[..., Tensor]] = {}
_INFO: dict[str, MethodInfo] = {}


def register(
    name: str,
    *,
    rewards: str,
    needs_k_le_n: bool,
    min_n: int = 1,
    uses_k: bool = True,
    make_state: Callable[[dict[str, Any]], Any] | None = None,
    source: Any = None,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator that registers `fn` under `name`; a different function under a taken name raises ValueError."""
    if rewards not in ("binary", "unit", "real"):
        raise ValueError(f"rewards={rewards!r} is not one of ['binary', 'real', 'unit']")

    def decorate(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        existing = _INFO.get(name)
        if existing is not None:
            if existing.fn is fn or (source is not None and existing.source is source):
                return existing.fn
            raise ValueError(
                f"method {name!r} is already registered (to {existing.fn.__qualname__}); choose another name"
            )
        params: dict[str, Any] = {}
        runtime: list[str] = []
        for p in list(inspect.signature(fn).parameters.values())[2:]:
            if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is inspect.Parameter.empty:
                raise TypeError(f"{fn.__qualname__}: param {p.name!r} must be keyword-only with a default")
            if p.name in RUNTIME_ARGS:
                runtime.append(p.name)
            else:
                params[p.name] = p.default
        _INFO[name] = MethodInfo(
            name, fn, params, tuple(runtime), rewards, needs_k_le_n, min_n, uses_k, make_state, source
        )
        REGISTRY[name] = fn
        return fn

    return decorate


def method_info(method: str) -> MethodInfo:
    """The registered MethodInfo; an unknown name raises ValueError listing the registered ones."""
    info = _INFO.get(method) if isinstance(method, str) else None
    if info is None:
        raise ValueError(f"method={method!r} is not a registered estimator; choose one of {sorted(REGISTRY)}")
    return info


def method_params(method: str) -> dict[str, Any]:
    """The config keyword params `method` accepts, with their defaults (a fresh dict)."""
    return dict(method_info(method).params)


def needs_k_le_n(method: str) -> bool:
    """True when `method` raises for k > n (it estimates C(·, k) from the n samples; docs/methods.md §0)."""
    return method_info(method).needs_k_le_n


def reward_domain(method: str) -> str:
    """'binary' ({0, 1} only), 'unit' ([0, 1]) or 'real' (any finite reward)."""
    return method_info(method).rewards


def is_binary_only(method: str) -> bool:
    """True when `method` rejects any reward outside {0, 1}."""
    return method_info(method).rewards == "binary"


def resolve_method(method: str, k: int) -> str:
    """The method the trainer should actually run at this k.

    pkpo_loo_minus_one at k = 1 has no (k−1)-subset baseline (W's listing divides by k−1); our estimator then returns
    A = g, but W's own k = 1 runs used leave-one-out mean centring (W Eq. 26), so the harness dispatches to `rloo`
    (docs/methods.md §6, §8). Every other (method, k) maps to itself. Params of the original method do not carry over.
    """
    method_info(method)
    return "rloo" if method == "pkpo_loo_minus_one" and k == 1 else method


def _split(method: str, info: MethodInfo, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    runtime = {key: params.pop(key) for key in RUNTIME_ARGS if key in params}
    for key in runtime:
        if key not in info.runtime:
            takers = sorted(name for name, i in _INFO.items() if key in i.runtime)
            raise ValueError(f"method={method!r} takes no {key}= argument (only {takers} do)")
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        raise ValueError(
            f"method={method!r}: unknown param(s) {unknown}; it takes {sorted(info.params) or 'no params'}"
        )
    return {**info.params, **params}, runtime


def make_state(method: str, params: Mapping[str, Any] | None = None) -> Any:
    """The stateful object `compute_advantages(..., state=)` needs for these params, or None when it needs none.

    Only biased_k with p_hat='ema' or 'global' keeps state (a BiasedKState, with state_dict()/load_state_dict()).
    """
    info = method_info(method)
    merged, _ = _split(method, info, dict(params or {}))
    check_params(method, merged)
    return info.make_state(merged) if info.make_state is not None else None


def compute_advantages(method: str, rewards: Tensor, k: int, **params: Any) -> Tensor:
    """Advantages of `method` for rewards [B, n] (B prompts, n samples each) → [B, n], same dtype and device.

    Scale (docs/methods.md §0): the per-prompt gradient is ĝ = (1/n) Σ_i A_i ∇log π(y_i|x). `params` are the method's
    keyword params (see `method_params`) plus, where the method takes them, `state=` and `prompt_ids=`. Every input
    is validated first; anything invalid raises a one-line ValueError naming the value and what is allowed.
    """
    info = method_info(method)
    merged, runtime = _split(method, info, dict(params))
    check_params(method, merged)
    check_rewards(method, rewards, info.rewards, info.min_n)
    check_k(method, k, rewards.shape[1], info.needs_k_le_n)
    if rewards.numel() == 0:
        return torch.zeros_like(rewards)
    return info.fn(rewards, int(k), **merged, **runtime)
