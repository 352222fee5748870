"""Estimator diagnostics against exact gradients: unbiased methods' Monte-Carlo means within 4 standard errors of the
exact gradient (fixed seeds, 20k groups), exact enumeration equal to the objective's derivative, and the biased methods
measurably biased where docs/methods.md says they are (so these tests can fail)."""

from __future__ import annotations

import math

import pytest
import torch

from passk_exp.toylab.diagnostics import (
    diagnose,
    exact_gradient,
    exact_scale,
    gaussian_problem,
    ladder,
    mc_gradients,
)
from passk_exp.toylab.targets import objective, surrogate

UNBIASED_BINARY = [
    ("reinforce", 1, 8), ("rloo", 1, 8), ("reinforce_k", 4, 8), ("rloo_k", 4, 8), ("rloo_k", 8, 8), ("wk25", 3, 8),
    ("pkpo", 4, 8), ("pkpo_loo", 4, 8), ("pkpo_loo", 8, 8), ("pkpo_loo_minus_one", 4, 8),
    ("pkpo_loo_minus_one", 8, 8), ("passk_multi", 1, 8),
]


def _coordinate_z(pop, method, k, n, params=None, replicates=20000, seed=0):
    """Per-coordinate z-scores (MC mean − exact)/se of the gradient estimate, over all problems' blocks."""
    gen = torch.Generator().manual_seed(seed)
    g, _, _ = mc_gradients(pop, method, k, n, params, replicates, gen)
    exact = exact_gradient(pop, objective(method, k, params, pop.kind == "gaussian"))
    mean, se = g.mean(dim=0), g.std(dim=0) / math.sqrt(g.shape[0])
    return ((mean - exact) / se.clamp_min(1e-300)).reshape(-1), exact


@pytest.mark.parametrize("method,k,n", UNBIASED_BINARY)
def test_unbiased_binary_estimators_match_the_exact_gradient(method, k, n):
    params = {"ks": [1, 2, 8]} if method == "passk_multi" else None  # every k <= n: unbiased (docs/methods.md §8)
    pop = ladder([0.05, 0.3, 0.7])
    z, exact = _coordinate_z(pop, method, k, n, params)
    assert float(exact.abs().max()) > 1e-3  # a gradient worth estimating
    assert float(z.abs().max()) < 4.0, z
    beta = exact_scale(method, k, n, params, pop.success())  # E[ĝ] = β∇p by enumeration, no sampling error
    weight = objective(method, k, params).weight(pop.success())
    assert torch.allclose(beta, weight, rtol=1e-9, atol=1e-12)


PKPO = ("pkpo", "pkpo_loo", "pkpo_loo_minus_one")
MAX_AT_K = [(m, k) for m in PKPO for k in (1, 4, 16)] + [("rloo", 1), ("reinforce", 1)]


@pytest.mark.parametrize("method,k", MAX_AT_K)
def test_unbiased_estimators_match_the_exact_max_at_k_gradient(method, k):
    z, exact = _coordinate_z(gaussian_problem(1.5, 0.6), method, k, 16)
    assert float(exact.abs().max()) > 1e-3
    assert float(z.abs().max()) < 4.0, z


@pytest.mark.parametrize(
    "method,k,params,p",
    [
        ("grpo", 1, None, 0.1),  # 2·asin√p surrogate, not Pass@1 (U Corollary 1)
        ("skew_r", 1, None, 0.3),
        ("entropy_reg", 1, {"lam": 0.5}, 0.3),
        ("grpo_k", 4, None, 0.1),
        ("passk_shaping", 4, None, 0.1),
        ("passk_mix", 4, None, 0.1),
        ("biased_k", 4, None, 0.1),
        ("biased_k", 4, {"base": "rloo"}, 0.1),  # plug-in K(1−r̄)^{K−1}: biased at finite n (docs/methods.md §5)
        ("passk_multi", 1, None, 0.01),  # ks contain 64 > n = 16: the plug-in fallback is biased (docs/methods.md §8)
    ],
)
def test_biased_estimators_are_measurably_biased_for_their_pass_at_k_objective(method, k, params, p):
    row = diagnose(ladder([p]), method, k, 16, params, replicates=20000, seed=1)
    assert abs(row["bias_z"]) > 10, row
    assert abs(row["exact_ratio"] - 1) > 0.05, row
    assert abs(row["ratio"] - row["exact_ratio"]) < 4 * row["ratio_se"], row  # the MC agrees with enumeration


@pytest.mark.parametrize(
    "method,k,params", [("grpo", 1, None), ("grpo_k", 4, None), ("passk_shaping", 4, None), ("skew_r", 1, None),
                        ("biased_k", 4, None), ("entropy_reg", 1, {"lam": 0.3}), ("passk_mix", 4, None)],
)
def test_biased_estimators_approach_their_stated_surrogate_only_as_n_grows(method, k, params):
    """docs/methods.md §2–§5: the stated surrogates are population (n → ∞) limits. At n = 1024 the exact expected
    gradient is within 1% of the surrogate's; at n = 8 it is off, by at least 5x more."""
    p = torch.tensor([0.3], dtype=torch.float64)
    sur = surrogate(method, k, params)
    big = float(exact_scale(method, k, 1024, params, p) / sur.weight(p))
    small = float(exact_scale(method, k, 8, params, p) / sur.weight(p))
    assert abs(big - 1) < 0.01, big
    assert abs(small - 1) > max(5 * abs(big - 1), 1e-3), (small, big)


def test_monte_carlo_matches_enumeration_for_a_biased_method():
    row = diagnose(ladder([0.2]), "grpo_k", 4, 8, None, replicates=20000, seed=3)
    assert abs(row["ratio"] - row["exact_ratio"]) < 4 * row["ratio_se"]
    assert abs(row["sur_ratio"] - row["sur_exact_ratio"]) < 4 * row["sur_ratio_se"]


def test_global_and_ema_p_hat_misdirect_the_population_gradient():
    """docs/methods.md §5: with p_hat ema/global one α multiplies all prompts, so across problems of unequal difficulty
    the expected gradient is no longer along ∇ mean Pass@K; the per-group plug-in (base rloo) stays close to it."""
    pop = ladder([0.02, 0.1, 0.3, 0.6])
    group = diagnose(pop, "biased_k", 8, 16, {"base": "rloo"}, replicates=8000, seed=0)
    for p_hat in ("ema", "global"):
        shared = diagnose(pop, "biased_k", 8, 16, {"base": "rloo", "p_hat": p_hat}, replicates=8000, seed=0)
        assert shared["cos_mean"] < 0.8, shared
    assert group["cos_mean"] > 0.95, group


def test_saturated_targets_are_flagged_not_divided_by_zero():
    row = diagnose(ladder([0.5]), "rloo_k", 64, 64, None, replicates=200, seed=0)
    assert row["saturated"] and math.isnan(row["ratio"]) and "exact_ratio" not in row
    assert row["zero_frac"] == 1.0


def test_passk_shaping_gives_no_gradient_at_k_equal_n():
    """docs/methods.md §4: σ_K = 0 whenever n − c < K, so at K = n every group with a correct sample gets A = 0."""
    row = diagnose(ladder([0.1]), "passk_shaping", 16, 16, None, replicates=2000, seed=0)
    assert row["zero_frac"] == 1.0 and row["exact_ratio"] == 0.0
