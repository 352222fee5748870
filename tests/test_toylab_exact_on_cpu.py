"""The toy lab's exact objectives and gradients: autograd against central finite differences, closed forms and
Monte-Carlo; the closed-form score functions against autograd of log π; every target's F′ against autograd of F."""

from __future__ import annotations

import math

import pytest
import torch

from passk_exp import estimators
from passk_exp.toylab.diagnostics import gaussian_problem, ladder
from passk_exp.toylab.gaussian import GaussianPopulation
from passk_exp.toylab.tabular import TabularPopulation
from passk_exp.toylab.targets import incomplete_beta_k, objective, surrogate


def _central_difference(fn, theta: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(theta)
    flat = grad.view(-1)
    for i in range(theta.numel()):
        up, down = theta.clone(), theta.clone()
        up.view(-1)[i] += h
        down.view(-1)[i] -= h
        flat[i] = (fn(up) - fn(down)) / (2 * h)
    return grad


@pytest.mark.parametrize("k", [1, 4, 16, 64])
def test_tabular_pass_at_k_gradient_matches_finite_differences(k):
    pop = TabularPopulation.build(problems=6, answers=5, share=3, correct=2, spread=1.5, seed=3)
    theta = pop.theta.clone().requires_grad_(True)
    value = pop.pass_at_k(k, theta).mean()
    (auto,) = torch.autograd.grad(value, theta)
    numeric = _central_difference(lambda t: float(pop.pass_at_k(k, t).mean()), pop.theta)
    assert torch.allclose(auto, numeric, rtol=1e-6, atol=1e-9)


def test_tabular_success_is_the_softmax_mass_of_the_correct_set():
    pop = TabularPopulation.build(problems=8, answers=6, share=2, correct=2, spread=1.0, seed=1)
    probs = torch.softmax(pop.theta, dim=-1)[pop.row]
    expected = (probs * pop.correct).sum(dim=-1)
    assert torch.allclose(pop.success(), expected, atol=1e-15)
    assert torch.allclose(pop.pass_at_k(3), 1 - (1 - expected) ** 3, atol=1e-14)
    assert pop.correct.sum(dim=-1).eq(2).all()
    assert torch.equal(pop.row, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))


def test_tabular_gradient_estimates_equal_autograd_of_the_policy_gradient_surrogate():
    pop = TabularPopulation.build(problems=6, answers=5, share=2, correct=1, spread=1.0, seed=0)
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 1, 4, 5, 2])
    answers, _ = pop.sample(idx, 7, gen)
    adv = torch.randn(len(idx), 7, generator=gen, dtype=torch.float64)
    theta = pop.theta.clone().requires_grad_(True)
    surrogate_loss = (adv * pop.log_prob(idx, answers, theta)).sum() / 7
    (auto,) = torch.autograd.grad(surrogate_loss, theta)
    closed = pop.scatter(idx, pop.gradient_estimates(idx, answers, adv))
    assert torch.allclose(closed, auto, atol=1e-13)


def test_tabular_samples_follow_the_policy():
    pop = ladder([0.3])
    gen = torch.Generator().manual_seed(0)
    _, rewards = pop.sample(torch.zeros(20000, dtype=torch.long), 4, gen)
    se = math.sqrt(0.3 * 0.7 / rewards.numel())
    assert abs(float(rewards.mean()) - 0.3) < 4 * se


def test_gaussian_expected_reward_matches_its_closed_form():
    pop = GaussianPopulation.build(problems=5, offset=4.0, sigma=0.7, seed=2)
    pop.theta[0, 1] = math.log(1e-3)  # a nearly deterministic policy: the quadrature must still resolve it
    pop.theta[1, 1] = math.log(6.0)
    mu, sigma = pop.theta[:, 0], pop.theta[:, 1].exp()
    closed = torch.exp(-(mu**2) / (2 * (1 + sigma**2))) / torch.sqrt(1 + sigma**2)  # E[exp(-(y-0)^2/2)]
    assert torch.allclose(pop.max_at_k(1), closed, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("k", [4, 64])
def test_gaussian_max_at_k_matches_monte_carlo(k):
    pop = GaussianPopulation.build(problems=3, offset=3.0, sigma=0.6, seed=5)
    pop.theta[2, 1] = math.log(0.01)
    gen = torch.Generator().manual_seed(1)
    groups = 4000
    _, rewards = pop.sample(torch.arange(3), groups * k, gen)
    maxima = rewards.view(3, groups, k).amax(dim=-1)
    mc, se = maxima.mean(dim=-1), maxima.std(dim=-1) / math.sqrt(groups)
    assert bool(((mc - pop.max_at_k(k)).abs() < 4 * se + 1e-12).all())


@pytest.mark.parametrize("k", [1, 4, 16])
def test_gaussian_max_at_k_gradient_matches_finite_differences(k):
    pop = GaussianPopulation.build(problems=4, offset=3.0, sigma=0.5, seed=0)
    pop.theta[3, 1] = math.log(0.05)
    theta = pop.theta.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(pop.max_at_k(k, theta).sum(), theta)
    numeric = _central_difference(lambda t: float(pop.max_at_k(k, t).sum()), pop.theta)
    assert torch.allclose(auto, numeric, rtol=1e-6, atol=1e-8)


def test_gaussian_gradient_estimates_equal_autograd_of_log_prob():
    pop = GaussianPopulation.build(problems=4, offset=2.0, sigma=0.8, seed=0)
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 2, 3])
    y, _ = pop.sample(idx, 9, gen)
    adv = torch.randn(3, 9, generator=gen, dtype=torch.float64)
    theta = pop.theta.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad((adv * pop.log_prob(idx, y, theta)).sum() / 9, theta)
    assert torch.allclose(pop.scatter(idx, pop.gradient_estimates(idx, y, adv)), auto, atol=1e-12)


def test_kl_is_zero_at_the_reference_and_its_gradient_matches_finite_differences():
    for pop in (TabularPopulation.build(4, 5, share=2, seed=0), GaussianPopulation.build(4, seed=0)):
        reference = pop.theta.clone()
        assert abs(float(pop.kl_to(reference))) < 1e-14
        moved = pop.theta + 0.3 * torch.randn(pop.theta.shape, generator=torch.Generator().manual_seed(0),
                                              dtype=torch.float64)
        theta = moved.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(pop.kl_to(reference, theta), theta)
        numeric = _central_difference(lambda t: float(pop.kl_to(reference, t)), moved)
        assert float(pop.kl_to(reference, moved)) > 0
        assert torch.allclose(auto, numeric, rtol=1e-6, atol=1e-9)


def test_incomplete_beta_surrogate_reduces_to_the_spec_identities():
    p = torch.linspace(0.01, 0.99, 23, dtype=torch.float64)
    assert torch.allclose(incomplete_beta_k(p, 1), 2 * torch.asin(torch.sqrt(p)), atol=1e-13)
    skew = 2 * (torch.asin(torch.sqrt(p)) + torch.sqrt(p * (1 - p)))  # docs/methods.md §3: K = 2 is skew-R's surrogate
    assert torch.allclose(incomplete_beta_k(p, 2), skew, atol=1e-13)


_WITH_PARAMS = [
    ("reinforce", {}), ("rloo", {}), ("grpo", {}), ("skew_r", {}), ("entropy_reg", {"lam": 0.3}),
    ("passk_multi", {}), ("reinforce_k", {}), ("rloo_k", {"k_factor": False}), ("wk25", {}), ("grpo_k", {}),
    ("grpo_k", {"k_factor": False}), ("passk_shaping", {}), ("pkpo", {}), ("pkpo_loo", {}),
    ("pkpo_loo_minus_one", {}), ("biased_k", {}), ("biased_k", {"base": "rloo", "k_factor": False}),
]


@pytest.mark.parametrize("method,params", _WITH_PARAMS)
@pytest.mark.parametrize("k", [1, 3, 16, 64])
def test_every_target_weight_is_the_derivative_of_its_value(method, params, k):
    p = torch.linspace(0.02, 0.98, 17, dtype=torch.float64).requires_grad_(True)
    for target in (objective(method, k, params), surrogate(method, k, params)):
        assert target is not None and target.value is not None
        (auto,) = torch.autograd.grad(target.value(p).sum(), p)
        assert torch.allclose(auto, target.weight(p.detach()), rtol=1e-9, atol=1e-12), target.label


def test_every_registered_method_has_a_binary_objective_and_surrogate():
    for method in estimators.REGISTRY:
        if method == "passk_multi" or not estimators.method_info(method).uses_k:
            ks = [1]
        else:
            ks = [1, 4]
        for k in ks:  # n = 8 samples per group: grpo_passk's target is Pass@n
            assert objective(method, k, n=8).weight is not None
            assert surrogate(method, k, n=8) is not None


def test_continuous_objectives_are_max_at_k():
    assert objective("pkpo_loo_minus_one", 8, continuous=True).max_k == 8
    assert objective("rloo", 8, continuous=True).max_k == 1
    assert surrogate("grpo", 1, continuous=True) is None
    pop = gaussian_problem(1.0, 0.5)
    assert pop.problems == 1 and pop.local_dim == 2
