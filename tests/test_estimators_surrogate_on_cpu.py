"""from_surrogate (docs/methods.md §7): its table of surrogates reproduces its hand-written methods through autograd."""

import itertools
import math

import pytest
import torch

from passk_exp import estimators as E
from passk_exp.estimators import registry
from passk_exp.estimators import compute_advantages, from_surrogate, surrogate_omega

F64 = torch.float64
N = 6
ROWS = torch.tensor(list(itertools.product([0.0, 1.0], repeat=N)), dtype=F64)  # every binary row, constant ones too


@pytest.fixture(autouse=True)
def restore_registry():
    """Methods these tests register are gone afterwards, so other modules see only the built-in registry."""
    tables = (registry.REGISTRY, registry._INFO)
    saved = [dict(table) for table in tables]
    yield
    for table, before in zip(tables, saved):
        table.clear()
        table.update(before)


def _beta_half(p, k):
    """B(p; ½, k−½) for integer k ≥ 1: t = sin²θ gives 2·∫₀^{asin√p} cos^{2k−2}θ dθ (reduction formula)."""
    x = torch.asin(torch.sqrt(p))
    integral = x
    for m in range(1, k):
        integral = torch.cos(x) ** (2 * m - 1) * torch.sin(x) / (2 * m) + (2 * m - 1) / (2 * m) * integral
    return 2 * integral


def _entropy(p):
    return -p * torch.log(p) - (1 - p) * torch.log1p(-p)


def test_incomplete_beta_helper_matches_a_quadrature():
    p, k = torch.tensor([0.3], dtype=F64), 4
    # substitute t = s² to remove the endpoint singularity: ∫ 2(1−s²)^{k−3/2} ds over s ∈ [0, √0.3]
    s = torch.linspace(0, math.sqrt(0.3), 200001, dtype=F64)
    quad = torch.trapezoid(2 * (1 - s**2) ** (k - 1.5), s)
    assert abs(float(_beta_half(p, k)) - float(quad)) < 1e-9


# (surrogate F, uses_rho, the hand-written method and params, the factor between them)
TABLE = {
    "p": (lambda p, k: p, False, ("rloo", {}), lambda n: (n - 1) / n),
    "grpo": (lambda p, k: 2 * torch.asin(torch.sqrt(p)), False, ("grpo", {"eps": 0.0}), lambda n: 1.0),
    "skew_r": (
        lambda p, k: torch.asin(torch.sqrt(p)) + torch.sqrt(p * (1 - p)), False, ("skew_r", {"eps": 0.0}),
        lambda n: 1.0,
    ),
    "entropy_reg": (
        lambda p, k: 2 * torch.asin(torch.sqrt(p)) + 0.7 * _entropy(p), False,
        ("entropy_reg", {"eps": 0.0, "lam": 0.7}), lambda n: 1.0,
    ),
    "passk_shaping": (
        lambda p, rho, k: (2 / k) * torch.asin(torch.sqrt(rho)), True, ("passk_shaping", {"eps": 0.0}), lambda n: 1.0,
    ),
    "biased_k_rloo": (lambda p, k: 1 - (1 - p) ** k, False, ("biased_k", {"base": "rloo"}), lambda n: (n - 1) / n),
    "biased_k_grpo": (lambda p, k: k * _beta_half(p, k), False, ("biased_k", {"eps": 0.0}), lambda n: 1.0),
}


@pytest.mark.parametrize("key", sorted(TABLE))
def test_spec_table_reproduces_the_hand_written_methods(key):
    F, uses_rho, (method, params), factor = TABLE[key]
    fn = from_surrogate(F, name=f"test_surrogate_{key}", uses_rho=uses_rho)
    for k in range(1, N + 1):
        got = compute_advantages(f"test_surrogate_{key}", ROWS, k)
        assert torch.equal(got, fn(ROWS, k))
        want = factor(N) * compute_advantages(method, ROWS, k, **params)
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), (key, k)


def test_log_pass_at_k_gives_ns_w_k():
    p = torch.tensor([0.1, 0.4, 0.8], dtype=F64)
    for k in (1, 3, 8):
        omega = surrogate_omega(lambda q, kk: torch.log(1 - (1 - q) ** kk), p, k)
        want = k * (1 - p) ** (k - 1) / (1 - (1 - p) ** k)
        assert torch.allclose(omega, want, rtol=1e-13, atol=0)


def test_registration_rules_and_validation_of_surrogate_methods():
    F = lambda p, k: p**2  # noqa: E731
    fn = from_surrogate(F, name="test_surrogate_square")
    assert from_surrogate(F, name="test_surrogate_square") is fn  # same F, same name: the existing function
    with pytest.raises(ValueError, match="'test_surrogate_square' is already registered"):
        from_surrogate(lambda p, k: p**2, name="test_surrogate_square")
    with pytest.raises(ValueError, match="'grpo' is already registered"):
        from_surrogate(F, name="grpo")
    assert E.method_params("test_surrogate_square") == {}
    assert not E.needs_k_le_n("test_surrogate_square") and E.reward_domain("test_surrogate_square") == "unit"
    with pytest.raises(ValueError, match=r"1.5 .* in \[0, 1\]"):
        compute_advantages("test_surrogate_square", torch.tensor([[0.0, 1.5]]), 1)
    rho_fn = from_surrogate(lambda p, rho, k: rho, name="test_surrogate_rho", uses_rho=True)
    assert E.needs_k_le_n("test_surrogate_rho") and E.is_binary_only("test_surrogate_rho") and callable(rho_fn)
    with pytest.raises(ValueError, match="k=5 > n=4"):
        compute_advantages("test_surrogate_rho", torch.zeros(1, 4), 5)
    # F′ = 2p on continuous rewards in [0, 1]: A = 2r̄·(r − r̄); dtype kept.
    r = torch.tensor([[0.2, 0.6, 0.7]], dtype=torch.float32)
    out = compute_advantages("test_surrogate_square", r, 1)
    assert out.dtype == torch.float32 and torch.allclose(out, 2 * r.mean() * (r - r.mean()))


def test_bad_surrogates_raise_instead_of_returning_nan():
    unbuilt = from_surrogate(lambda p, k: torch.sqrt(p - 0.5), name="test_surrogate_bad", register_as=False)
    assert "test_surrogate_bad" not in E.REGISTRY
    with pytest.raises(ValueError, match=r"F′ is nan at r̄=0.25"):
        unbuilt(torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64), 1)
    not_elementwise = from_surrogate(lambda p, k: p.sum(), name="x", register_as=False)
    with pytest.raises(ValueError, match="elementwise"):
        not_elementwise(ROWS, 1)
    constant = from_surrogate(lambda p, k: torch.zeros_like(p), name="y", register_as=False)
    assert torch.equal(constant(ROWS, 1), torch.zeros_like(ROWS))
    with pytest.raises(ValueError, match="needs a callable F"):
        from_surrogate(3.0, name="z")
