"""Advantage shaping and regularised surrogates (U §4–6): passk_shaping, passk_mix, skew_r, entropy_reg. All biased.

Each is a per-group reweighting of the GRPO advantage A^GRPO = (r − r̄)/(σ + ε) (docs/methods.md §0) whose n → ∞ limit
is the gradient of a stated surrogate F(p) (docs/methods.md §4). This file leaves out: the unbiased Pass@K estimators
(direct.py, pkpo.py) and the plug-in reweighting biased_k (biased.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from passk_exp.estimators.baselines import by_count, grpo_normalised
from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import count_table, grpo_family_table


@register("passk_shaping", rewards="binary", needs_k_le_n=True)
def passk_shaping(rewards: Tensor, k: int, *, eps: float = 1e-6) -> Tensor:
    """Chen et al.'s analytic Pass@K shaping (C's README and code; U Eq. 19). [B, n] binary → [B, n].

    σ_K = √(ρ̂_K(1−ρ̂_K)), A⁺ = (1−ρ̂_K)/(σ_K+ε), A⁻ = (1−ρ̂_K−w⁻)/(σ_K+ε), and exactly 0 when ρ̂_K ∈ {0, 1} in float64
    (also for c < n with n − c < K). σ_K is the Bernoulli form whatever a std_ddof elsewhere says, so this method takes
    no std_ddof. Surrogate F = (2/K)·arcsin√Pass@K (U Claim 1, Eq. 22), exact only as n → ∞. K = 1 gives grpo with
    std_ddof = 0. Equivalent form (U Eq. 20, ε = 0, 0 < c < n): A = A^GRPO·√((1−ρ̂)/ρ̂)·√(r̄/(1−r̄)).
    """
    return by_count(rewards, count_table("shaping", rewards.shape[-1], k, float(eps)))


@register("passk_mix", rewards="binary", needs_k_le_n=True)
def passk_mix(
    rewards: Tensor, k: int, *, variant: str = "shaping", std_ddof: int = 0, eps: float = 1e-6
) -> Tensor:
    """A = (1 − r̄)·A^GRPO + r̄·A^PassK (U Eq. 24 for variant='shaping', Eq. 25 for 'direct'). [B, n] → [B, n].

    A^PassK is passk_shaping ('shaping') or grpo_k with k_factor=False ('direct'). UNCONFIRMED: the orientation
    (weight r̄ on the Pass@K term) was inferred from U's remark that both mixtures collapse to skew-R, (1 − r̄)·A^GRPO,
    unless r̄ is small; it is the default (docs/methods.md §4) and the only one here. No closed surrogate; as n → ∞ the
    weight on ∇p tends to (1−p)·F′_grpo + p·F′_PassK. K = 1 gives grpo (with std_ddof = 0 for 'shaping').
    """
    # Every term depends only on (n, c, r_i) on 0/1 rewards: one exact count table (tables.py).
    return by_count(rewards, grpo_family_table(rewards.shape[-1], k, False, int(std_ddof), float(eps), variant))


@register("skew_r", rewards="unit", needs_k_le_n=False, uses_k=False)
def skew_r(rewards: Tensor, k: int, *, std_ddof: int = 0, eps: float = 1e-6) -> Tensor:
    """A = (1 − r̄)·A^GRPO (U Eq. 26–27). Surrogate F = arcsin√p + √(p(1−p)) (U Claim 3). rewards in [0, 1].

    Its population weight on ∇p is √((1−p)/p). Kimi-1.5-style sampling of problems ∝ (1 − success rate) applies the
    same (1 − p) weight at the sampler: use one or the other, never both (docs/methods.md §4).
    """
    a_grpo, mean = grpo_normalised(rewards, std_ddof, eps)
    return a_grpo.mul_(1 - mean)


@register("entropy_reg", rewards="unit", needs_k_le_n=False, uses_k=False)
def entropy_reg(
    rewards: Tensor, k: int, *, lam: float = 0.1, std_ddof: int = 0, eps: float = 1e-6
) -> Tensor:
    """A = ω(r̄)·A^GRPO, ω = 1 + λ·√(r̄(1−r̄))·ln((1−r̄)/r̄) (U Eq. 28 / App. B.4 via the §7 recipe). [B, n] → [B, n].

    Surrogate F_λ = 2·arcsin√p + λ·H(p), H the Bernoulli entropy in nats. ω := 1 at r̄ ∈ {0, 1} (A^GRPO is 0 there).
    ω > 0 for λ < 1.5; larger λ turns it negative on easy prompts. UNCONFIRMED: U's normalisation (data term
    arcsin√p instead of 2·arcsin√p would be λ' = 2λ and a factor ½) and the default λ = 0.1 (the paper gives none).
    """
    a_grpo, mean = grpo_normalised(rewards, std_ddof, eps)
    inside = (mean > 0) & (mean < 1)
    p = torch.where(inside, mean, torch.full_like(mean, 0.5))
    omega = 1 + lam * torch.sqrt(p * (1 - p)) * (torch.log1p(-p) - torch.log(p))
    return a_grpo.mul_(torch.where(inside, omega, torch.ones_like(omega)))
