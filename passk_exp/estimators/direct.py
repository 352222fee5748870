"""Direct Pass@K estimators (U §3): reinforce_k, rloo_k and wk25 (unbiased for ∇Pass@K) and grpo_k (biased).

Objective Pass@K = 1 − (1 − p)^K (U Eq. 10), ∇Pass@K = K(1 − p)^{K−1}∇p (U Eq. 11). The factor (1 − p)^{K−1} is
estimated without bias by the leave-one-out Fail@(K−1) weights w⁺ = C(n−c, K−1)/C(n−1, K−1) (correct sample) and
w⁻ = C(n−c−1, K−1)/C(n−1, K−1) (wrong sample), U Eq. 14, built only from the other n − 1 samples. Binary rewards
only, 1 ≤ K ≤ n. `k_factor=True` (default; docs/methods.md §0) keeps ∇Pass@K's K: E[ĝ] = ∇Pass@K exactly; U Eqs. 15–17
drop it (`k_factor=False`). Each advantage depends only on (n, c, K, r_i), so the methods gather from exact tables
(tables.py). What this file leaves out: the continuous-reward generalisation (pkpo.py).
"""

from __future__ import annotations

from torch import Tensor

from passk_exp.estimators.baselines import by_count
from passk_exp.estimators.registry import register
from passk_exp.estimators.tables import count_table, grpo_family_table


@register("reinforce_k", rewards="binary", needs_k_le_n=True)
def reinforce_k(rewards: Tensor, k: int, *, k_factor: bool = True) -> Tensor:
    """A_i = K·r_i·w⁺ (U Eq. 13/15): unbiased for ∇Pass@K, wrong samples get 0. [B, n] binary → [B, n].

    w⁺ = 0 when c ≥ n − K + 2 (Pass@K already guaranteed by the others). K = 1 gives reinforce; an all-one row gives
    1 at K = 1 and 0 for K > 1.
    """
    return by_count(rewards, count_table("reinforce_k", rewards.shape[-1], k, bool(k_factor)))


@register("rloo_k", rewards="binary", needs_k_le_n=True, min_n=2)
def rloo_k(rewards: Tensor, k: int, *, k_factor: bool = True) -> Tensor:
    """A_i = K·w_i·(r_i − mean_{j≠i} r_j) (U Eq. 16): unbiased for ∇Pass@K, needs n ≥ 2. [B, n] binary → [B, n].

    A correct sample gets K·w⁺·(n−c)/(n−1), a wrong one −K·w⁻·c/(n−1). K = 1 gives rloo; constant rows give 0.
    """
    return by_count(rewards, count_table("rloo_k", rewards.shape[-1], k, bool(k_factor)))


@register("grpo_k", rewards="binary", needs_k_le_n=True)
def grpo_k(rewards: Tensor, k: int, *, k_factor: bool = True, std_ddof: int = 0, eps: float = 1e-6) -> Tensor:
    """A_i = K·w_i·A^GRPO_i (U Eq. 17). Biased. [B, n] binary → [B, n].

    Population surrogate (U App. C.1, Eq. 34): F(p) = K·B(p; ½, K−½) = K∫₀^p (1−t)^{K−1}/√(t(1−t)) dt (divided by K
    when k_factor=False). K = 1 gives grpo; K = 2 with k_factor=False tends to skew_r as n → ∞.
    """
    # On 0/1 rewards A^GRPO takes two values per row, so the product is one exact count table (tables.py).
    return by_count(rewards, grpo_family_table(rewards.shape[-1], k, bool(k_factor), int(std_ddof), float(eps)))


@register("wk25", rewards="binary", needs_k_le_n=True)
def wk25(rewards: Tensor, k: int, *, k_factor: bool = True) -> Tensor:
    """A_i = K if correct, K·(1 − w⁻) = K·ρ(n−1, c, K−1) if wrong (U Eq. 35 = W Eq. 8). [B, n] binary → [B, n].

    Unbiased for ∇Pass@K with no baseline (an all-one row gives K, wrong samples get positive weight); numerically
    equal to pkpo on binary rewards. K = 1 gives reinforce.
    """
    return by_count(rewards, count_table("wk25", rewards.shape[-1], k, bool(k_factor)))
