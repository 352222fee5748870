"""The anchor estimators (grpo_passk, maxrl, dr_grpo): hand cases, their loop versions on random groups (binary and
continuous), and their exact mean on 0/1 rewards against the objective each is documented to follow."""

import pytest
import torch

from passk_exp.estimators import compute_advantages, method_params
from passk_exp.estimators.reference import loop_advantages
from passk_exp.toylab.diagnostics import exact_scale
from passk_exp.toylab.targets import objective, surrogate

F64 = torch.float64
ANCHORS = {"grpo_passk": [{}, {"std_normalize": False}, {"std_ddof": 0}], "maxrl": [{}], "dr_grpo": [{}]}


def test_params_are_verl_defaults():
    assert method_params("grpo_passk") == {"std_normalize": True, "std_ddof": 1, "eps": 1e-6}
    assert method_params("maxrl") == {} and method_params("dr_grpo") == {}


def test_hand_cases():
    r = torch.tensor([[0.2, 0.9, 0.5, 0.9], [0.1, 0.7, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=F64)
    raw = compute_advantages("grpo_passk", r, 1, std_normalize=False)
    # tie at the top -> 0 everywhere; otherwise only the best sample moves, by r_max - r_second
    assert raw.tolist() == [[0.0] * 4, [0.0, pytest.approx(0.4), 0.0, 0.0], [0.0] * 4]
    normed = compute_advantages("grpo_passk", r, 1)
    assert float(normed[1, 1]) == pytest.approx(0.4 / (float(r[1].std(correction=1)) + 1e-6))
    one = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64)  # one success of 4: std (ddof 1) = 1/2
    assert compute_advantages("grpo_passk", one, 1, eps=0.0).tolist() == [[2.0, 0.0, 0.0, 0.0]]
    m = compute_advantages("maxrl", torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0] * 4], dtype=F64), 1)
    assert m.tolist() == [[3.0, -1.0, -1.0, -1.0], [0.0] * 4]  # (r - 1/4)/(1/4); no success -> 0
    d = compute_advantages("dr_grpo", torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=F64), 1)
    assert d.tolist() == [[0.5, -0.5, -0.5, 0.5]]


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="std_normalize='yes' must be true or false"):
        compute_advantages("grpo_passk", torch.zeros(1, 4, dtype=F64), 1, std_normalize="yes")
    with pytest.raises(ValueError, match="maxrl"):
        compute_advantages("maxrl", torch.tensor([[-1.0, 0.5]], dtype=F64), 1)  # rewards must lie in [0, 1]


@pytest.mark.parametrize("method", sorted(ANCHORS))
@pytest.mark.parametrize("n", [2, 3, 8, 33])
def test_vectorized_equals_its_loop_on_random_groups(method, n):
    gen = torch.Generator().manual_seed(100 + n)
    binary = (torch.rand(200, n, generator=gen) < torch.rand(200, 1, generator=gen)).to(F64)
    unit = torch.rand(200, n, generator=gen, dtype=F64)
    unit[:, 1] = unit[:, 0]  # ties, also at the top
    inputs = [binary, unit]
    if method != "maxrl":
        inputs.append(torch.randn(200, n, generator=gen, dtype=F64) * 30 - 5)
    for params in ANCHORS[method]:
        for r in inputs:
            got = compute_advantages(method, r, 1, **params)
            want = loop_advantages(method, r, 1, **params)
            assert torch.allclose(got, want, rtol=0, atol=1e-12 * max(1.0, float(want.abs().max()))), params


@pytest.mark.parametrize("n", [2, 4, 16])
def test_exact_mean_on_binary_rewards_is_the_documented_target(n):
    p = torch.linspace(0.03, 0.97, 11, dtype=F64)
    # maxrl: unbiased for sum_{k<n} Pass@k / k (its n -> infinity limit is log p)
    want = sum((1 - p) ** (k - 1) for k in range(1, n))
    assert torch.allclose(exact_scale("maxrl", 1, n, {}, p), want, atol=1e-12)
    assert torch.allclose(exact_scale("dr_grpo", 1, n, {}, p), torch.full_like(p, (n - 1) / n), atol=1e-12)
    raw = {"std_normalize": False}
    assert torch.allclose(exact_scale("grpo_passk", 1, n, raw, p), objective("grpo_passk", 1, raw, n=n).weight(p))
    normed = {"eps": 0.0}
    assert torch.allclose(exact_scale("grpo_passk", 1, n, normed, p), surrogate("grpo_passk", 1, normed, n=n).weight(p))


def test_grpo_passk_target_needs_the_group_size():
    with pytest.raises(ValueError, match="pass n >= 2"):
        objective("grpo_passk", 4)
