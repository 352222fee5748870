"""Hand-computed small cases, K = 1 reductions, stated identities, constant rows, brute-force PKPO and loop parity."""

import itertools
import math
from fractions import Fraction

import pytest
import torch

from passk_exp.estimators import REGISTRY, compute_advantages, method_params, reward_domain
from passk_exp.estimators.reference import LOOPS, loop_advantages
from passk_exp.estimators.tables import fail_ratio, loo_fail_ratio

F64 = torch.float64


def adv(method, rows, k, **params):
    return compute_advantages(method, torch.tensor(rows, dtype=F64), k, **params)


def close(a, b, tol=1e-12):
    return torch.allclose(torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64), rtol=0, atol=tol)


# ------------------------------------------------------------------------------------------------ hand-computed
def test_style_example_pkpo_s_is_half_and_third():
    # rewards [1,1,0,0], k=2: s = 1/2 (correct), 1/3 (wrong); A = n·s; mean-centred ±1/12·n = ±1/3.
    a = adv("pkpo", [[1, 1, 0, 0]], 2)[0]
    assert close(a, [2, 2, 4 / 3, 4 / 3])
    assert close(a - a.mean(), [1 / 3, 1 / 3, -1 / 3, -1 / 3])


def test_hand_cases_for_the_count_methods():
    # n = 4, c = 2, K = 2: w⁺ = C(2,1)/C(3,1) = 2/3, w⁻ = C(1,1)/C(3,1) = 1/3, ρ̂ = 1 − C(2,2)/C(4,2) = 5/6.
    row = [[1, 1, 0, 0]]
    assert close(adv("reinforce_k", row, 2), [[4 / 3, 4 / 3, 0, 0]])
    assert close(adv("rloo_k", row, 2), [[8 / 9, 8 / 9, -4 / 9, -4 / 9]])  # K·w⁺·2/3, −K·w⁻·2/3
    assert close(adv("wk25", row, 2), [[2, 2, 4 / 3, 4 / 3]])  # K, K·(1 − w⁻)
    s = 1 / math.sqrt(5)  # (1 − ρ̂)/σ_K = (1/6)/√(5/36); (1 − ρ̂ − w⁻)/σ_K = −(1/6)/√(5/36)
    assert close(adv("passk_shaping", row, 2, eps=0.0), [[s, s, -s, -s]])
    assert close(adv("grpo_k", row, 2, eps=0.0), [[4 / 3, 4 / 3, -2 / 3, -2 / 3]])  # K·w_i·(±1)


def test_hand_cases_for_the_grpo_family():
    row = [[1, 0, 0, 0]]  # r̄ = 1/4, σ = √3/4
    r3 = math.sqrt(3)
    assert close(adv("grpo", row, 1, eps=0.0), [[r3, -1 / r3, -1 / r3, -1 / r3]])
    assert close(adv("rloo", row, 1), [[1, -1 / 3, -1 / 3, -1 / 3]])
    assert close(adv("skew_r", row, 1, eps=0.0), [[0.75 * r3, -0.75 / r3, -0.75 / r3, -0.75 / r3]])
    omega = 1 + 0.5 * math.sqrt(3 / 16) * math.log(3)
    assert close(adv("entropy_reg", row, 1, lam=0.5, eps=0.0), [[omega * r3] + [-omega / r3] * 3])
    alpha = 4 * 0.75**3  # K(1 − p̂)^{K−1}, K = 4
    assert close(adv("biased_k", row, 4, eps=0.0), [[alpha * r3] + [-alpha / r3] * 3])
    assert close(adv("biased_k", row, 4, base="rloo"), [[alpha, -alpha / 3, -alpha / 3, -alpha / 3]])
    assert close(adv("grpo", [[1, 0, 0, 0]], 1, std_ddof=1, eps=0.0), [[1.5, -0.5, -0.5, -0.5]])  # σ = 1/2


def test_unconfirmed_defaults_passk_mix_orientation_and_passk_multi_plug_in():
    row = [[1, 0, 0, 0]]  # r̄ = 1/4: weight 3/4 on A^GRPO and 1/4 on A^PassK (docs/methods.md §4; UNCONFIRMED)
    for variant, passk in (("shaping", adv("passk_shaping", row, 2)), ("direct", adv("grpo_k", row, 2, k_factor=False))):
        assert close(adv("passk_mix", row, 2, variant=variant), 0.75 * adv("grpo", row, 2) + 0.25 * passk)
    # k > n falls back to the plug-in k(1 − r̄)^{k−1}·A^RLOO (docs/methods.md §8); k ≤ n terms: rloo_k with factor k.
    alpha = 8 * 0.75**7
    assert close(adv("passk_multi", row, 1, ks=[8]), alpha * adv("rloo", row, 1))
    both = adv("passk_multi", row, 1, ks=[2, 8], weights=[0.3, 0.7])
    assert close(both, 0.3 * adv("rloo_k", row, 2) + 0.7 * alpha * adv("rloo", row, 1))


def test_pkpo_edge_cases_from_the_spec():
    g = [[0.2, 0.9, 0.5]]
    assert close(adv("pkpo_loo_minus_one", g, 3), [[0.0, 3 * (0.9 - 0.5), 0.0]])  # n·(max g − max g_{−i})
    assert close(adv("pkpo", g, 1), g)
    assert close(adv("pkpo_loo", g, 1), [[0.2 - 1.5 * 0.7, 0.9 - 1.5 * 0.35, 0.5 - 1.5 * 0.55]])
    assert close(adv("pkpo_loo", g, 3), adv("pkpo", g, 3))  # K = n falls back to pkpo
    assert close(adv("pkpo_loo_minus_one", g, 1), g)  # K = 1: baseline 0
    assert close(adv("pkpo", [[0.3] * 5], 3), [[0.9] * 5])  # constant v → K·v
    assert close(adv("pkpo_loo", [[0.3] * 5], 3), [[-0.9 / 4] * 5])  # → −K·v/(n−1)


def test_reinforce_k_all_one_rows_and_guaranteed_pass():
    assert close(adv("reinforce_k", [[1, 1, 1]], 1), [[1, 1, 1]])
    assert close(adv("reinforce_k", [[1, 1, 1]], 2), [[0, 0, 0]])
    # w⁺ = 0 once c ≥ n − K + 2: n = 5, K = 3, c = 4: the other 4 samples hold 3 correct, K − 1 = 2 draws always pass.
    assert close(adv("reinforce_k", [[1, 1, 1, 1, 0]], 3), [[0] * 5])
    assert close(adv("wk25", [[1, 1, 1]], 3), [[3, 3, 3]])


# --------------------------------------------------------------------------------------------------- K = 1
BIN_ROWS = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)), dtype=F64)


def test_k1_reductions():
    r = BIN_ROWS
    grpo0 = compute_advantages("grpo", r, 1, eps=0.0)
    assert close(compute_advantages("reinforce_k", r, 1), r)
    assert close(compute_advantages("wk25", r, 1), r)
    assert close(compute_advantages("pkpo", r, 1), r)
    assert close(compute_advantages("rloo_k", r, 1), compute_advantages("rloo", r, 1))
    assert close(compute_advantages("passk_multi", r, 7, ks=[1]), compute_advantages("rloo", r, 1))
    for ddof in (0, 1):
        g = compute_advantages("grpo", r, 1, std_ddof=ddof)
        assert close(compute_advantages("grpo_k", r, 1, std_ddof=ddof), g)
        assert close(compute_advantages("passk_mix", r, 1, variant="direct", std_ddof=ddof), g)
        assert close(compute_advantages("biased_k", r, 1, std_ddof=ddof), g)
    assert close(compute_advantages("passk_shaping", r, 1, eps=0.0), grpo0)
    assert close(compute_advantages("passk_mix", r, 1, eps=0.0), grpo0)
    # σ_K is always Bernoulli: with ddof 1 passk_shaping at K = 1 is √(n/(n−1))·grpo (docs/methods.md §0).
    grpo1 = compute_advantages("grpo", r, 1, std_ddof=1, eps=0.0)
    assert close(compute_advantages("passk_shaping", r, 1, eps=0.0), math.sqrt(5 / 4) * grpo1)


# ------------------------------------------------------------------------------------------------ identities
@pytest.mark.parametrize("n", range(1, 13))
def test_lemma_1_loo_weights_exactly(n):
    for k in range(1, n + 1):
        for c in range(n + 1):
            rho = 1 - fail_ratio(n, c, k)
            rbar = Fraction(c, n)
            if c < n:
                assert loo_fail_ratio(n, c, k, correct=False) == (1 - rho) / (1 - rbar)
            if c >= 1 and 1 - rbar - Fraction(k - 1, n) != 0:
                assert loo_fail_ratio(n, c, k, correct=True) == (1 - rho) / (1 - rbar - Fraction(k - 1, n))



def test_eq20_equivalent_form_of_passk_shaping():
    r = BIN_ROWS
    n = r.shape[1]
    for k in range(1, n + 1):
        a = compute_advantages("passk_shaping", r, k, eps=0.0)
        g = compute_advantages("grpo", r, k, eps=0.0)
        c = r.sum(1, keepdim=True)
        rho = torch.tensor([[1 - math.comb(n - int(ci), k) / math.comb(n, k)] for ci in c[:, 0]], dtype=F64)
        rbar = c / n
        inner = (c > 0) & (c < n) & (rho < 1)
        mult = torch.sqrt((1 - rho) / rho.clamp_min(1e-300)) * torch.sqrt(rbar / (1 - rbar).clamp_min(1e-300))
        assert close(torch.where(inner, g * mult, torch.zeros_like(g)), a)


def test_wk25_equals_pkpo_on_binary_and_biased_k2_equals_skew_r():
    r = BIN_ROWS
    for k in range(1, 6):
        assert close(compute_advantages("wk25", r, k), compute_advantages("pkpo", r, k))
    u = torch.rand(40, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert close(compute_advantages("biased_k", u, 2, k_factor=False), compute_advantages("skew_r", u, 2))


# --------------------------------------------------------------------------------------------- constant rows
CENTRED = ["rloo", "grpo", "rloo_k", "grpo_k", "passk_shaping", "passk_mix", "skew_r", "entropy_reg", "biased_k",
           "pkpo_loo_minus_one", "passk_multi"]


@pytest.mark.parametrize("method", CENTRED)
def test_centred_methods_give_exact_zeros_on_constant_rows_also_with_eps_0(method):
    values = {"binary": [0.0, 1.0], "unit": [0.0, 1.0, 0.1, 0.7], "real": [0.0, 1.0, 0.1, -3.3, 1e300]}
    eps = {"eps": 0.0} if "eps" in method_params(method) else {}
    for v in values[reward_domain(method)]:
        for n, k in ((3, 1), (3, 2), (6, 6), (7, 3)):
            if method == "pkpo_loo_minus_one" and k == 1:
                continue  # K = 1 convention: baseline 0, A = g (docs/methods.md §6); the harness runs rloo there
            out = compute_advantages(method, torch.full((2, n), v, dtype=F64), k, **eps)
            assert torch.equal(out, torch.zeros_like(out)), (method, v, n, k, out)


# ----------------------------------------------------------------------------------- brute force over subsets
def _s_brute(g, k):
    """S(i, k, [n]) = (1/C(n,k))·Σ_{|I|=k, i∈I} max_I g, straight from the definition (W Eq. 19)."""
    n = len(g)
    return [sum(max(g[j] for j in I) for I in itertools.combinations(range(n), k) if i in I) / math.comb(n, k)
            for i in range(n)]


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_pkpo_family_matches_brute_force_subsets(n):
    gen = torch.Generator().manual_seed(n)
    for trial in range(4):
        g = torch.randint(0, 4, (n,), generator=gen).double().div(3).tolist()  # many ties
        for k in range(1, n + 1):
            s = _s_brute(g, k)
            assert close(adv("pkpo", [g], k), [[n * x for x in s]])
            loo1 = [n * (s[i] - sum(max((g[j] for j in I if j != i), default=0.0) for I in
                     itertools.combinations(range(n), k) if i in I) / math.comb(n, k)) for i in range(n)]
            if k >= 2:
                assert close(adv("pkpo_loo_minus_one", [g], k), [loo1])
            if k <= n - 1:
                base = [sum(_s_brute(g[:i] + g[i + 1:], k)) / (n - 1) for i in range(n)]
                assert close(adv("pkpo_loo", [g], k), [[n * (s[i] - base[i]) for i in range(n)]])


# ------------------------------------------------------------------------------------------------ loop parity
PARAM_VARIANTS = {
    "reinforce_k": [{}, {"k_factor": False}],
    "rloo_k": [{}, {"k_factor": False}],
    "wk25": [{}, {"k_factor": False}],
    "grpo": [{}, {"std_ddof": 1, "eps": 1e-4}, {"eps": 0.0}],
    "grpo_k": [{}, {"k_factor": False, "std_ddof": 1}],
    "passk_shaping": [{}, {"eps": 1e-4}],
    "passk_mix": [{}, {"variant": "direct"}, {"variant": "direct", "std_ddof": 1}],
    "skew_r": [{}, {"std_ddof": 1}],
    "entropy_reg": [{}, {"lam": 1.7, "std_ddof": 1}],
    "biased_k": [{}, {"base": "rloo"}, {"k_factor": False, "std_ddof": 1}],
    "passk_multi": [{}, {"ks": [2, 3, 9], "weights": [0.2, -1.0, 3.0]}],
    "grpo_passk": [{}, {"std_normalize": False}, {"std_ddof": 0, "eps": 0.0}],
}


@pytest.mark.parametrize("method", sorted(LOOPS))
@pytest.mark.parametrize("n", [2, 5, 16])
def test_vectorized_matches_the_per_group_loop(method, n):
    assert set(LOOPS) <= set(REGISTRY)
    gen = torch.Generator().manual_seed(n)
    binary = (torch.rand(64, n, generator=gen) < torch.rand(64, 1, generator=gen)).double()
    binary[0] = 0.0
    binary[1] = 1.0
    inputs = [binary]
    if reward_domain(method) != "binary":
        unit = torch.rand(64, n, generator=gen, dtype=F64)
        unit[:, 0] = unit[:, 1]  # ties
        inputs.append(unit)
    if reward_domain(method) == "real":
        inputs.append(torch.randn(64, n, generator=gen, dtype=F64) * 50 + 100)
    for params in PARAM_VARIANTS.get(method, [{}]):
        for r in inputs:
            for k in sorted({1, 2, max(1, n // 2), n}):
                want = loop_advantages(method, r, k, **dict(params))
                got = compute_advantages(method, r, k, **params)
                scale = max(1.0, float(want.abs().max()))
                assert torch.allclose(got, want, rtol=0, atol=1e-12 * scale), (method, params, k)


def test_biased_k_state_matches_the_loop_over_several_batches():
    from passk_exp.estimators import make_state

    gen = torch.Generator().manual_seed(3)
    for p_hat in ("ema", "global"):
        state = make_state("biased_k", {"p_hat": p_hat})
        loop_state = {"p": None, "sum": 0.0, "count": 0}
        for step in range(4):
            r = torch.rand(8, 5, generator=gen, dtype=F64)
            got = compute_advantages("biased_k", r, 3, p_hat=p_hat, state=state)
            want = loop_advantages("biased_k", r, 3, p_hat=p_hat, state=loop_state)
            assert close(got, want), (p_hat, step)
            assert state.p == pytest.approx(loop_state["p"], abs=1e-15)


# ----------------------------------------------------------------------------------------- fast paths, extremes
def test_pkpo_binary_count_tables_equal_the_sorting_path():
    from passk_exp.estimators.pkpo import _pkpo_sorted

    r = BIN_ROWS
    n = r.shape[1]
    for k in range(1, n + 1):
        assert close(compute_advantages("pkpo", r, k), _pkpo_sorted(r, k, "none"))
        loo = _pkpo_sorted(r, k, "loo" if k <= n - 1 else "none")
        assert close(compute_advantages("pkpo_loo", r, k), loo)
        loo1 = _pkpo_sorted(r, k, "loo_minus_one" if k >= 2 else "none")
        assert close(compute_advantages("pkpo_loo_minus_one", r, k), loo1)
        # On 0/1 rewards W's recommended estimator is exactly U's reinforce_k.
        assert close(compute_advantages("pkpo_loo_minus_one", r, k), compute_advantages("reinforce_k", r, k))


@pytest.mark.parametrize("dtype, big, tiny", [(torch.float32, 1e30, 1e-30), (F64, 1e200, 1e-200)])
def test_grpo_keeps_the_spread_of_rewards_near_the_float_limits(dtype, big, tiny):
    base = torch.tensor([[1.0, 0.0, 0.0, 3.0]], dtype=F64)
    want = compute_advantages("grpo", base, 1, eps=0.0)
    for scale in (big, tiny):
        got = compute_advantages("grpo", (base * scale).to(dtype), 1, eps=0.0)
        assert got.dtype == dtype and torch.isfinite(got).all()
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        assert torch.allclose(got.double(), want, rtol=tol, atol=tol)


def test_fast_reward_checks_never_reject_valid_rewards():
    huge = torch.full((2, 3), 3e38, dtype=torch.float32)  # the sum overflows: the exact check must accept them
    huge[0, 0] = -3e38
    assert torch.isfinite(compute_advantages("rloo", huge.double(), 1)).all()
    compute_advantages("reinforce", huge, 1)
    tiny = torch.tensor([[5e-324, 0.0], [1.0, 1.0 - 2**-53]], dtype=F64)  # in [0, 1] but not binary
    with pytest.raises(ValueError, match="needs binary"):
        compute_advantages("rloo_k", tiny, 1)
    assert torch.isfinite(compute_advantages("skew_r", tiny, 1)).all()
