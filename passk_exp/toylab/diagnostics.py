"""Estimator diagnostics: the Monte-Carlo mean and variance of each method's gradient estimate against exact gradients.

For a problem (or a ladder of problems) whose success probability p is set exactly, draw M independent groups of n
samples, feed their rewards to the same advantage call the trainer makes (advantages.py), form ĝ = (1/n) Σ A_i ∇log π
per group (docs/methods.md §0), and compare with the exact gradient g* of the method's objective (targets.objective:
Pass@K, max@K, ...) and of its stated surrogate (targets.surrogate). Reported, each with its Monte-Carlo standard
error:
* ratio = ⟨ĝ, g*⟩/‖g*‖² averaged over groups: 1 for an unbiased estimator; bias_z = (ratio − 1)/se.
* rel_var = E‖ĝ − Eĝ‖²/‖g*‖²: the variance in units of the squared true gradient (scale-free across K).
* cos = E[cos(ĝ, g*)] of a single group's estimate (0 for an all-zero estimate), and cos_mean of the averaged one.
* ess = E[(Σ|A_i|)²/Σ A_i²]: Kish's effective number of the n samples that carry weight (0 for an all-zero group);
  zero_frac = share of groups whose advantages are all exactly zero (no gradient at all).
For binary rewards and stateless methods E[ĝ] is also exact: A depends on the reward pattern only, and given r_i the
answer is drawn from π restricted to the correct (wrong) set, so E[e_a − π | r = 1] = ∇p/p, E[· | r = 0] = −∇p/(1−p)
and E[ĝ] = β(p)·∇p with β(p) = Σ_c Binom(c; n, p)·(S⁺(c)/p − S⁻(c)/(1−p))/n, S± the advantage sums of the correct /
wrong samples of a group with c correct (`exact_scale`). exact_ratio = β/F′(p) is then free of Monte-Carlo error.
Stateful p̂ (biased_k ema / global) is measured as in training: calls of `batch` groups in sequence, the state carried
across calls after `burn_in` calls. What this file leaves out: tables and plots (report.py) and training (train.py).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from passk_exp import estimators
from passk_exp.toylab.advantages import toy_advantages
from passk_exp.toylab.gaussian import GaussianPopulation
from passk_exp.toylab.tabular import TabularPopulation
from passk_exp.toylab.targets import Target, objective, surrogate

Population = TabularPopulation | GaussianPopulation
SATURATED = 1e-8  # F′(p) below this: the objective is flat to within rounding (rows flagged `saturated`)


def ladder(ps: Sequence[float], answers: int = 4) -> TabularPopulation:
    """One problem per p (no shared rows), answer 0 correct with mass p, the wrong answers' masses unequal (∝ 1, 2, ...)
    so that the gradient has no symmetry the estimators could exploit."""
    p = torch.tensor(list(ps), dtype=torch.float64)
    if p.numel() == 0 or bool(((p <= 0) | (p >= 1)).any()):
        raise ValueError(f"ps={list(ps)} must be non-empty and inside (0, 1)")
    wrong = torch.arange(1, answers, dtype=torch.float64)
    probs = torch.cat([p[:, None], (1 - p)[:, None] * wrong / wrong.sum()], dim=-1)
    correct = torch.zeros_like(probs)
    correct[:, 0] = 1.0
    return TabularPopulation(theta=probs.log(), row=torch.arange(len(p)), correct=correct)


def gaussian_problem(offset: float, sigma: float) -> GaussianPopulation:
    """One Gaussian policy N(offset, sigma²) aiming at target 0 (continuous toy)."""
    theta = torch.tensor([[float(offset), math.log(sigma)]], dtype=torch.float64)
    return GaussianPopulation(theta=theta, target=torch.zeros(1, dtype=torch.float64))


def exact_gradient(pop: Population, target: Target) -> Tensor:
    """∇ of the target for each problem in its own parameter block: [Q, d] (autograd through the exact objective)."""
    idx = torch.arange(pop.problems)
    local = pop.local(idx).detach().clone().requires_grad_(True)
    if target.max_k is not None:
        value = target.scale * pop.max_at_k_local(local, idx, target.max_k)
        return torch.autograd.grad(value.sum(), local)[0]
    p = pop.success_local(local, idx)
    dp = torch.autograd.grad(p.sum(), local)[0]
    return target.weight(p.detach())[:, None] * dp


def mc_gradients(
    pop: Population,
    method: str,
    k: int,
    n: int,
    params: Mapping[str, Any] | None,
    replicates: int,
    gen: torch.Generator,
    batch: int = 64,
    burn_in: int = 50,
) -> tuple[Tensor, Tensor, Tensor]:
    """M ≥ replicates groups of n samples for every problem: (ĝ [M, Q, d], ess [M, Q], all_zero [M, Q])."""
    q = pop.problems
    state = estimators.make_state(method, params) if estimators.resolve_method(method, k) == method else None
    per_call = replicates if state is None else max(1, batch // q)
    calls = -(-replicates // per_call)  # stateful: whole calls, so M rounds up to a multiple of the call size
    grads, adv_all = [], []
    for call in range(calls + (burn_in if state is not None else 0)):
        idx = torch.arange(q).repeat(per_call)  # replicate-major: row m·Q + x is replicate m of problem x
        actions, rewards = pop.sample(idx, n, gen)
        adv = toy_advantages(method, rewards, k, params, state)
        if state is not None and call < burn_in:
            continue
        grads.append(pop.gradient_estimates(idx, actions, adv).view(per_call, q, -1))
        adv_all.append(adv.view(per_call, q, n))
    g = torch.cat(grads)
    a = torch.cat(adv_all).abs()
    sq = (a**2).sum(dim=-1)
    ess = torch.where(sq > 0, a.sum(dim=-1) ** 2 / sq.clamp_min(1e-300), torch.zeros_like(sq))
    return g, ess, sq == 0


def _mean_se(x: Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.std() / math.sqrt(x.numel())) if x.numel() > 1 else float("nan")


def compare(g: Tensor, g_star: Tensor) -> dict[str, float]:
    """Summary of MC estimates g [M, Q, d] against the exact gradient g_star [Q, d] (the population's blocks joined)."""
    flat = g.reshape(g.shape[0], -1)
    v = g_star.reshape(-1)
    vv = float(v @ v)
    proj = flat @ v / vv
    dev2 = ((flat - flat.mean(dim=0)) ** 2).sum(dim=-1) * flat.shape[0] / max(flat.shape[0] - 1, 1)
    norms = flat.norm(dim=-1)
    cos = torch.where(norms > 0, flat @ v / (norms.clamp_min(1e-300) * math.sqrt(vv)), torch.zeros_like(norms))
    mean = flat.mean(dim=0)
    ratio, ratio_se = _mean_se(proj)
    rel_var, rel_var_se = _mean_se(dev2 / vv)
    cos_single, cos_se = _mean_se(cos)
    mean_norm = float(mean.norm())
    return {
        "ratio": ratio,
        "ratio_se": ratio_se,
        "bias_z": (ratio - 1.0) / ratio_se if ratio_se > 0 else float("nan"),
        "rel_bias": float((mean - v).norm()) / math.sqrt(vv),
        "rel_bias_floor": math.sqrt(rel_var / flat.shape[0]),  # what MC noise alone gives ‖mean − g*‖/‖g*‖
        "rel_var": rel_var,
        "rel_var_se": rel_var_se,
        "cos": cos_single,
        "cos_se": cos_se,
        "cos_mean": float(mean @ v) / (mean_norm * math.sqrt(vv)) if mean_norm > 0 else 0.0,
    }


def exact_scale(method: str, k: int, n: int, params: Mapping[str, Any] | None, p: Tensor) -> Tensor:
    """β(p) with E[ĝ] = β(p)·∇p exactly (binary rewards, stateless methods), by enumeration over c = 0..n: [Q]."""
    c = torch.arange(n + 1)
    patterns = (torch.arange(n)[None, :] < c[:, None]).to(torch.float64)  # row c: c correct samples first
    adv = toy_advantages(method, patterns, k, params)
    s_plus = (adv * patterns).sum(dim=-1)
    s_minus = (adv * (1 - patterns)).sum(dim=-1)
    cf = c.to(torch.float64)
    log_binom = math.lgamma(n + 1.0) - torch.lgamma(cf + 1.0) - torch.lgamma(n - cf + 1.0)
    pq = p.to(torch.float64)[:, None]
    pmf = torch.exp(log_binom + cf * torch.log(pq) + (n - cf) * torch.log1p(-pq))  # [Q, n+1]
    return (pmf * (s_plus / pq - s_minus / (1 - pq))).sum(dim=-1) / n


def is_stateless(method: str, k: int, params: Mapping[str, Any] | None) -> bool:
    return estimators.resolve_method(method, k) != method or estimators.make_state(method, params) is None


def diagnose(
    pop: Population,
    method: str,
    k: int,
    n: int,
    params: Mapping[str, Any] | None = None,
    replicates: int = 20000,
    seed: int = 0,
    batch: int = 64,
) -> dict[str, Any]:
    """One row of the diagnostics table for `method` at (K, n) on `pop` (one problem, or a ladder read jointly)."""
    continuous = pop.kind == "gaussian"
    gen = torch.Generator().manual_seed(seed)
    g, ess, zero = mc_gradients(pop, method, k, n, params, replicates, gen, batch=batch)
    obj = objective(method, k, params, continuous, n)
    row: dict[str, Any] = {"method": method, "K": k, "n": n, "replicates": g.shape[0], "objective": obj.label}
    g_star = exact_gradient(pop, obj)
    # A saturated objective (e.g. Pass@64 at p = 0.5: ∇ = 64·0.5^63·∇p ≈ 7e-18·∇p) has no gradient to compare with:
    # every ratio would divide rounding noise by ~0. Such rows keep their variance-free columns and say so.
    row["saturated"] = _flat(pop, obj)
    compared = compare(g, g_star)
    row.update({key: float("nan") for key in compared} if row["saturated"] else compared)
    row["ess"], row["ess_se"] = _mean_se(ess.reshape(-1))
    row["zero_frac"] = float(zero.double().mean())
    sur = surrogate(method, k, params, continuous, n)
    row["surrogate"] = sur.label if sur is not None else None
    if sur is not None and not _flat(pop, sur):
        versus = compare(g, exact_gradient(pop, sur))
        row["sur_ratio"], row["sur_ratio_se"], row["sur_cos_mean"] = (
            versus["ratio"], versus["ratio_se"], versus["cos_mean"]
        )
    if not continuous and not row["saturated"] and is_stateless(method, k, params):
        p = pop.success().detach()
        beta = exact_scale(method, k, n, params, p)
        dp = exact_gradient(pop, Target("p", weight=torch.ones_like))  # ∇p per problem
        row["exact_ratio"] = _exact_ratio(beta, obj.weight(p), dp)
        if sur is not None and not _flat(pop, sur):
            row["sur_exact_ratio"] = _exact_ratio(beta, sur.weight(p), dp)
    return row


def _flat(pop: Population, target: Target) -> bool:
    """True when a binary target's F′(p) is below SATURATED for every problem (nothing left to estimate)."""
    if target.weight is None or pop.kind == "gaussian":
        return False
    return float(target.weight(pop.success().detach()).max()) < SATURATED


def _exact_ratio(beta: Tensor, weight: Tensor, dp: Tensor) -> float:
    """⟨E ĝ, g*⟩/‖g*‖² with E ĝ = β∇p and g* = F′∇p per problem (blocks joined): β/F′ for a single problem."""
    norms = (dp**2).sum(dim=-1)
    return float((beta * weight * norms).sum() / (weight**2 * norms).sum())
