"""The toy lab's checks of the seed texts' statements (theorems.py): a fixed advantage scale α multiplies the gradient
estimate's variance by α² while the plug-in α̂ of biased_k gives no such fixed ratio; E[w_K(p)·r] is not Pass@K; and
the population-limit surrogates are approached as n grows, not met at n = 64 (fixed seeds: no flaky draws)."""

from __future__ import annotations

import pytest
import torch

from passk_exp.toylab.theorems import population_limit, scaled_variance, w_k_identity


@pytest.mark.parametrize("p, alpha", [(0.1, 0.5), (0.5, 2.5), (0.9, 3.0)])
def test_a_fixed_scale_multiplies_the_variance_by_its_square(p, alpha):
    row = scaled_variance(p, k=4, n=16, alpha=alpha, replicates=4000, seed=1)
    assert row["fixed_ratio"] == pytest.approx(alpha**2, rel=1e-9)


def test_the_plug_in_scale_gives_no_ratio_fixed_by_p():
    # At p = 0.5, K = 4: α(p)² = (4·0.5³)² = 0.25, but α̂ = 4(1 − r̄)³ from the same group varies with r̄ and with the
    # gradient it multiplies; the measured ratio is about 2.7 (20k groups), an order of magnitude away.
    row = scaled_variance(0.5, k=4, n=64, alpha=1.0, replicates=20000, seed=0)
    assert row["alpha_p_sq"] == pytest.approx(0.25)
    assert row["plug_in_ratio"] > 4 * row["alpha_p_sq"]


def test_e_of_w_k_times_r_is_not_pass_at_k():
    out = w_k_identity(torch.tensor([0.5]), 2)
    # By hand, K = 2, p = 1/2: w = 2·(1/2)/(3/4) = 4/3, p·w = 2/3, Pass@2 = 3/4.
    assert out["p_times_w"].item() == pytest.approx(2 / 3) and out["pass_at_k"].item() == pytest.approx(0.75)
    grid = w_k_identity(torch.linspace(0.05, 0.95, 19), 8)
    assert torch.allclose(grid["w"], grid["dlog_pass_at_k"])  # w_K is d ln Pass@K / dp
    assert (grid["p_times_w"] - grid["pass_at_k"]).abs().max() > 0.1


def test_surrogates_are_approached_as_n_grows():
    # grpo's 2·arcsin√p at p = 0.01: 0.670 at n = 64 (as in the diagnostics), within 2% of 1 at n = 1024.
    grpo = {row["n"]: row["ratio"] for row in population_limit("grpo", 1, [0.01], [64, 1024])}
    assert grpo[64] == pytest.approx(0.6702, abs=1e-3) and abs(grpo[1024] - 1) < 0.02
    # biased_k (base grpo, p̂ = group) against K·B(p; ½, K − ½): far off at K = 16, n = 64, closing in as n grows.
    rows = population_limit("biased_k", 16, [0.1, 0.5], [16, 64, 256, 1024])
    for p in (0.1, 0.5):
        gaps = [abs(row["ratio"] - 1) for row in rows if row["p"] == p]
        assert all(later < earlier for earlier, later in zip(gaps, gaps[1:])), gaps
