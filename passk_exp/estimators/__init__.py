"""Every Pass@K policy-gradient method as one vectorized, registered advantage function (pure torch, no I/O, no config).

    compute_advantages(method, rewards [B, n], k, **params) -> advantages [B, n]   (dtype and device of rewards)

The per-prompt gradient estimate is ĝ = (1/n) Σ_i A_i ∇log π(y_i|x) (docs/methods.md §0); how A is spread
over tokens and clipped belongs to the loss. Registered methods:

    Pass@1          reinforce, rloo, grpo                                   (baselines.py)
    direct Pass@K   reinforce_k, rloo_k, wk25 (unbiased), grpo_k (biased)   (direct.py)
    shaping         passk_shaping, passk_mix, skew_r, entropy_reg           (shaping.py)
    plug-in         biased_k (+ BiasedKState for p_hat = ema / global)      (biased.py)
    max@k, any r    pkpo, pkpo_loo, pkpo_loo_minus_one (unbiased)           (pkpo.py)
    several k       passk_multi                                             (multi.py)
    anchors         grpo_passk (verl), maxrl (prime-rl), dr_grpo            (anchors.py)

A new method is one decorated function (`@register(name, ...)`) or one `from_surrogate(F, name=...)` call.
What this package leaves out: metrics (passk_exp.metrics), K schedules (passk_exp.schedules), the loss and the trainer.
"""

from passk_exp.estimators.registry import (
    REGISTRY,
    MethodInfo,
    compute_advantages,
    is_binary_only,
    make_state,
    method_info,
    method_params,
    needs_k_le_n,
    register,
    resolve_method,
    reward_domain,
)

# Importing the method modules fills REGISTRY.
from passk_exp.estimators import baselines, direct, shaping, biased, pkpo, multi, anchors  # noqa: E402,F401  isort: skip
from passk_exp.estimators.biased import BiasedKState  # noqa: E402
from passk_exp.estimators.surrogate import forward_advantage, from_surrogate, surrogate_omega  # noqa: E402

__all__ = [
    "REGISTRY",
    "BiasedKState",
    "MethodInfo",
    "compute_advantages",
    "forward_advantage",
    "from_surrogate",
    "is_binary_only",
    "make_state",
    "method_info",
    "method_params",
    "needs_k_le_n",
    "register",
    "resolve_method",
    "reward_domain",
    "surrogate_omega",
]
