"""Forward engineering (U §5.2, docs/methods.md §7): any differentiable surrogate F(p) as a registered estimator.

The three-step recipe: (1) differentiate the per-prompt surrogate, ∇F = F′(p)·∇p; (2) put the empirical values
(r̄, and ρ̂_K if F is written in ρ = Pass@K) into F′, giving one scalar ω per group; (3) replace ∇p by the RLOO proxy
(1/n)·Σ_i (r_i − r̄)·∇log π_i (U Lemma 2). So A_i = ω·(r_i − r̄) = ω·√(r̄(1−r̄))·A^GRPO_i on binary rewards (ε = 0).
F′ comes from autograd, so a researcher can try a new objective without deriving it. The recipe is biased in general
(docs/methods.md §7 note ii). What this file leaves out: hand-derived methods (registered in their own modules).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from passk_exp.estimators.baselines import centred, count_correct
from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import as_tensor, pass_at_k_by_count

CLAMP_H = 1e-6  # docs/methods.md §7: r̄ is clamped to [h, 1 − h] before F′ is evaluated


def surrogate_omega(F: Callable[..., Tensor], p: Tensor, k: int, rho: Tensor | None = None) -> Tensor:
    """ω = F′ at the empirical values, via autograd. p (and rho) [B] float64 → ω [B] (docs/methods.md §7 steps 1–2).

    F(p, k) when rho is None; F(p, rho, k) otherwise, with rho = Pass@K(p) treated as a function of p through the
    substituted chain factor dρ/dp = K(1 − ρ)/(1 − p) (= K(1 − p)^{K−1} in the population). Which algebraically equal
    form is substituted changes the finite-n estimator (docs/methods.md §7); this one makes (2/K)·arcsin√ρ reproduce
    passk_shaping exactly. Where the chain factor is exactly 0 (ρ̂ = 1) the ρ-term is 0, its limit whenever ∂F/∂ρ
    grows slower than 1/(1 − ρ). F must act elementwise.
    """
    with torch.enable_grad():
        p_var = p.detach().clone().requires_grad_(True)
        inputs = [p_var]
        if rho is not None:
            rho_var = rho.detach().clone().requires_grad_(True)
            inputs.append(rho_var)
            value = F(p_var, rho_var, k)
        else:
            value = F(p_var, k)
        if not isinstance(value, Tensor) or value.shape != p.shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"surrogate F must map a [B] tensor elementwise to a [B] tensor; got {got}")
        if not value.requires_grad:  # F does not depend on its inputs: F′ = 0
            return torch.zeros_like(p)
        grads = torch.autograd.grad(value.sum(), inputs, allow_unused=True)
    d_p = grads[0] if grads[0] is not None else torch.zeros_like(p)
    if rho is None:
        return d_p
    d_rho = grads[1] if grads[1] is not None else torch.zeros_like(p)
    chain = k * (1 - rho) / (1 - p)
    return d_p + torch.where(chain == 0, torch.zeros_like(chain), d_rho * chain)


def forward_advantage(rewards: Tensor, omega: Tensor, name: str = "surrogate") -> Tensor:
    """A_i = ω·(r_i − r̄) for rewards [B, n] and ω [B] (docs/methods.md §7 step 3). Constant rows give 0 for any ω.

    A non-finite ω on a row that is not constant raises ValueError naming the row's r̄ (never a NaN out).
    """
    dev, mean = centred(rewards)
    const = (dev == 0).all(dim=-1)  # exact: centred() gives exact zeros on constant rows
    omega = torch.where(const, torch.zeros_like(omega), omega)
    bad = ~torch.isfinite(omega)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"surrogate method {name!r}: F′ is {float(omega[row])!r} at r̄={float(mean[row]):.6g} (row {row}); "
            "F must have a finite derivative on (0, 1)"
        )
    return omega.unsqueeze(-1) * dev


def from_surrogate(
    F: Callable[..., Tensor], *, name: str, uses_rho: bool = False, register_as: bool = True
) -> Callable[..., Tensor]:
    """An advantage function `fn(rewards [B, n], k) -> [B, n]` from the surrogate F, registered as `name`.

    F(p, k) -> Tensor (uses_rho=False; rewards in [0, 1], any k), or F(p, rho, k) with rho = Pass@K (uses_rho=True;
    binary rewards, k ≤ n, ρ̂ = the unbiased pass@k of each row). p and rho are [B] float64 tensors; F must be built
    from differentiable torch ops and act elementwise. Registering the same F under the same name again returns the
    existing function; a different function under a taken name raises ValueError. `register_as=False` only builds it.
    Examples (docs/methods.md §7): F = 2·arcsin√p gives grpo (ε = 0); F = (2/K)·arcsin√ρ gives passk_shaping (ε = 0).
    """
    if not callable(F):
        raise ValueError(f"from_surrogate needs a callable F; got {type(F).__name__}")

    def advantage(rewards: Tensor, k: int) -> Tensor:
        r64 = rewards.to(torch.float64)
        p = r64.mean(dim=-1).clamp(CLAMP_H, 1 - CLAMP_H)
        rho = None
        if uses_rho:
            rho = as_tensor(pass_at_k_by_count(rewards.shape[-1], k), r64)[count_correct(rewards)]
        omega = surrogate_omega(F, p, k, rho)
        return forward_advantage(r64, omega, name).to(rewards.dtype)

    advantage.__name__ = advantage.__qualname__ = name
    advantage.__doc__ = f"A = F′(r̄)·(r − r̄) for the surrogate {getattr(F, '__name__', repr(F))} (docs/methods.md §7)."
    if not register_as:
        return advantage
    return register(
        name, rewards="binary" if uses_rho else "unit", needs_k_le_n=uses_rho, source=F
    )(advantage)
