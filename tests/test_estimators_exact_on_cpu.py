"""Exact enumeration: E[(1/n) Σ_i A_i ∇log π(y_i)] over every outcome of a small softmax policy vs the exact gradient.

The policy is a softmax over M = 4 outcomes with fixed logits θ; each outcome carries a reward. Enumerating all M^n
ordered samples (n ≤ 6) gives the estimator's expectation exactly, and autograd gives the exact gradient of its
target, both in float64. Unbiased methods must match to 1e-10 for every k ≤ n. Biased methods depend only on (c, r_i)
on binary rewards, so E[ĝ] = γ_n(p)·∇p with a binomial sum γ_n; the enumeration confirms that reduction at small n and
the binomial sum at large n shows convergence to the stated surrogate F′(p), with the bias that remains.
"""

import math

import pytest
import torch

from passk_exp.estimators import compute_advantages

F64 = torch.float64
LOGITS = torch.tensor([0.3, -0.2, 0.5, -0.6], dtype=F64)
BINARY = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=F64)  # outcomes 0 and 3 are correct
CONTINUOUS = torch.tensor([0.9, 0.2, 0.2, 0.55], dtype=F64)  # a tie between two outcomes
TOL = 1e-10


@pytest.fixture(autouse=True)
def float64_by_default():
    """Every tensor of these tests in float64, without leaking the setting into other test modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(previous)


def _enumeration(n: int):
    """(samples [M^n, n] outcome ids, probability [M^n], score ∇_θ log π(y) [M^n, n, M]) for the softmax policy."""
    probs = torch.softmax(LOGITS, 0)
    m = len(LOGITS)
    seqs = torch.cartesian_prod(*[torch.arange(m)] * n) if n > 1 else torch.arange(m)[:, None]
    weight = probs[seqs].prod(-1)
    score = torch.nn.functional.one_hot(seqs, m).double() - probs  # ∇_θ log softmax(θ)_y = e_y − π
    return seqs, weight, score


ENUM = {n: _enumeration(n) for n in range(2, 7)}


def expected_update(method: str, values: torch.Tensor, n: int, k: int, **params) -> torch.Tensor:
    seqs, weight, score = ENUM[n]
    adv = compute_advantages(method, values[seqs], k, **params)
    return (weight[:, None] * (adv[..., None] * score).mean(1)).sum(0)


def exact_gradient(target) -> torch.Tensor:
    theta = LOGITS.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target(torch.softmax(theta, 0)), theta)
    return grad


def pass_at(k: int):
    return lambda pi: 1 - (1 - (pi * BINARY).sum()) ** k


def mean_reward(values):
    return lambda pi: (pi * values).sum()


def max_at(k: int, values):
    """E[max of k iid draws] = Σ_v v·(F(v)^k − F(v⁻)^k) over the distinct values v (ties merged)."""

    def target(pi):
        distinct = torch.unique(values)
        cdf = torch.stack([(pi * (values <= v)).sum() for v in distinct])
        below = torch.cat([cdf.new_zeros(1), cdf[:-1]])
        return (distinct * (cdf**k - below**k)).sum()

    return target


CASES = [(n, k) for n in range(2, 7) for k in range(1, n + 1)]


@pytest.mark.parametrize("n,k", CASES)
def test_direct_pass_at_k_methods_are_unbiased(n, k):
    for method in ("reinforce_k", "rloo_k", "wk25"):
        for k_factor, scale in ((True, 1.0), (False, 1.0 / k)):
            got = expected_update(method, BINARY, n, k, k_factor=k_factor)
            want = scale * exact_gradient(pass_at(k))
            assert torch.allclose(got, want, rtol=0, atol=TOL), (method, k_factor, got, want)


@pytest.mark.parametrize("n,k", CASES)
@pytest.mark.parametrize("values", [BINARY, CONTINUOUS], ids=["binary", "continuous"])
def test_pkpo_family_is_unbiased_for_max_at_k(n, k, values):
    want = exact_gradient(max_at(k, values))
    for method in ("pkpo", "pkpo_loo", "pkpo_loo_minus_one"):
        got = expected_update(method, values, n, k)
        assert torch.allclose(got, want, rtol=0, atol=TOL), (method, got, want)


@pytest.mark.parametrize("n", range(2, 7))
@pytest.mark.parametrize("values", [BINARY, CONTINUOUS], ids=["binary", "continuous"])
def test_pass_at_1_baselines_are_unbiased(n, values):
    want = exact_gradient(mean_reward(values))
    for method in ("reinforce", "rloo"):
        assert torch.allclose(expected_update(method, values, n, 1), want, rtol=0, atol=TOL), method


@pytest.mark.parametrize("n", [3, 6])
def test_passk_multi_is_unbiased_for_the_weighted_sum_when_every_k_le_n(n):
    ks, weights = (1, 2, n), (0.5, 0.3, 0.2)
    got = expected_update("passk_multi", BINARY, n, 1, ks=ks, weights=weights)
    want = sum(w * exact_gradient(pass_at(k)) for k, w in zip(ks, weights))
    assert torch.allclose(got, want, rtol=0, atol=TOL)


# ---------------------------------------------------------------- biased methods: binomial reduction and large-n limit
P0 = float((torch.softmax(LOGITS, 0) * BINARY).sum())


def gamma(method: str, n: int, k: int, p: float, **params) -> float:
    """γ_n(p) with E[ĝ] = γ_n(p)·∇p for a method whose binary advantages depend only on (c, r_i).

    E[∇log π | correct] = ∇p/p and E[∇log π | wrong] = −∇p/(1−p), so
    γ_n(p) = Σ_c Binom(c; n, p)·(1/n)·[c·A⁺(c)/p − (n−c)·A⁻(c)/(1−p)], with A± read off the method itself.
    """
    c = torch.arange(n + 1)
    rows = (torch.arange(n)[None, :] < c[:, None]).double()  # row c has c correct samples first
    adv = compute_advantages(method, rows, k, **params)
    a_pos = torch.where(c > 0, adv[:, 0], torch.zeros(n + 1))
    a_neg = torch.where(c < n, adv[:, -1], torch.zeros(n + 1))
    log_pmf = (
        torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(c + 1.0) - torch.lgamma(n - c + 1.0)
        + c * math.log(p) + (n - c) * math.log1p(-p)
    )
    return float((log_pmf.exp() * (c * a_pos / p - (n - c) * a_neg / (1 - p))).sum() / n)


def _rho(p, k):
    return 1 - (1 - p) ** k


# docs/methods.md §2, §4, §5: F′(p) of each biased method's stated surrogate (passk_mix: the limit of its two terms).
SURROGATE_SLOPES = {
    "grpo": (dict(eps=0.0), lambda p, k: 1 / math.sqrt(p * (1 - p))),
    "grpo_k": (dict(eps=0.0), lambda p, k: k * (1 - p) ** (k - 1) / math.sqrt(p * (1 - p))),
    "passk_shaping": (dict(eps=0.0), lambda p, k: (1 - p) ** (k - 1) / math.sqrt(_rho(p, k) * (1 - _rho(p, k)))),
    "passk_mix": (
        dict(eps=0.0),
        lambda p, k: math.sqrt((1 - p) / p) + p * (1 - p) ** (k - 1) / math.sqrt(_rho(p, k) * (1 - _rho(p, k))),
    ),
    "skew_r": (dict(eps=0.0), lambda p, k: math.sqrt((1 - p) / p)),
    "entropy_reg": (dict(eps=0.0, lam=0.3), lambda p, k: 1 / math.sqrt(p * (1 - p)) + 0.3 * math.log((1 - p) / p)),
    "biased_k": (dict(eps=0.0), lambda p, k: k * (1 - p) ** (k - 1) / math.sqrt(p * (1 - p))),
}
SURROGATE_SLOPES["passk_mix_direct"] = (
    dict(eps=0.0, variant="direct"),
    lambda p, k: math.sqrt((1 - p) / p) + p * (1 - p) ** (k - 1) / math.sqrt(p * (1 - p)),
)
SURROGATE_SLOPES["biased_k_rloo"] = (dict(base="rloo"), lambda p, k: k * (1 - p) ** (k - 1))


def _method(key: str) -> str:
    return key.replace("_direct", "").replace("_rloo", "")


@pytest.mark.parametrize("key", sorted(SURROGATE_SLOPES))
def test_biased_methods_enumeration_matches_the_binomial_reduction(key):
    params, _ = SURROGATE_SLOPES[key]
    n, k = 4, 2
    got = expected_update(_method(key), BINARY, n, k, **params)
    want = gamma(_method(key), n, k, P0, **params) * exact_gradient(lambda pi: (pi * BINARY).sum())
    assert torch.allclose(got, want, rtol=0, atol=TOL)


@pytest.mark.parametrize("key", sorted(SURROGATE_SLOPES))
@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
def test_biased_methods_tend_to_their_surrogate_gradient_as_n_grows(key, p):
    """The relative bias γ_n/F′ − 1 is small at n = 1024 and shrinks like 1/n (about 4× from n = 256), so the limit is
    F′ itself; a wrong surrogate would leave a constant gap. (Measured at n = 16: up to 5–70%, see the closing note.)"""
    params, slope = SURROGATE_SLOPES[key]
    k = 4
    mid = gamma(_method(key), 256, k, p, **params) / slope(p, k) - 1
    large = gamma(_method(key), 1024, k, p, **params) / slope(p, k) - 1
    assert abs(large) < 2e-2, (key, p, mid, large)
    assert abs(large) < 0.3 * abs(mid), (key, p, mid, large)


def test_grpo_k_at_k2_without_k_factor_tends_to_skew_r():
    p = 0.35
    assert abs(gamma("grpo_k", 1024, 2, p, k_factor=False, eps=0.0) / math.sqrt((1 - p) / p) - 1) < 5e-3
