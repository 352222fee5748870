"""Numerical checks, in the toy lab, of statements the seed texts make about estimators (docs/toylab/README.md §8).

* `scaled_variance`: the variance of a gradient estimate whose advantages are multiplied by α. A fixed α multiplies
  the variance by α² exactly; the plug-in α̂ = K(1−r̄)^{K−1} of biased_k, computed from the same group, does not give
  α(p)² (nor any ratio fixed by p alone): the measured ratio is reported beside α(p)².
* `w_k_identity`: whether p·w_K(p) (= E[w_K(p)·r]) equals Pass@K(p) for w_K = K(1−p)^{K−1}/(1−(1−p)^K); it does not,
  w_K is d ln Pass@K/dp.
* `population_limit`: the exact mean of a biased estimator against the gradient of the surrogate the seed text states
  for the population limit, as n grows (exact enumeration over the number of correct samples, no Monte-Carlo error):
  a claim made for n → ∞ is checked by whether this ratio tends to 1, not by its value at one finite n.
`python -m passk_exp.toylab.theorems --out DIR` writes all three as DIR/theorems.md.
What this file leaves out: the training runs and their claims (claims.py) and the estimator diagnostics grid
(diagnostics.py, whose functions these checks reuse).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from passk_exp.toylab.advantages import toy_advantages
from passk_exp.toylab.diagnostics import exact_scale, ladder
from passk_exp.toylab.targets import pass_at_k, surrogate


def _total_variance(g: torch.Tensor) -> float:
    """E‖ĝ − Eĝ‖² over the replicates of g [M, d] (unbiased, M − 1 in the denominator)."""
    return float(((g - g.mean(dim=0)) ** 2).sum(dim=-1).sum() / (g.shape[0] - 1))


def scaled_variance(
    p: float, k: int, n: int, alpha: float, replicates: int = 20000, seed: int = 0, base: str = "rloo"
) -> dict[str, float]:
    """One problem with success probability p, M groups of n samples, advantages A of `base` (rloo or grpo):
    Var[ĝ(α·A)] / Var[ĝ(A)] for the fixed `alpha` (= α² up to rounding), and Var[ĝ(biased_k)] / Var[ĝ(A)] for the
    plug-in α̂ = K(1−r̄)^{K−1} from the same groups, beside α(p)² = (K(1−p)^{K−1})²."""
    pop = ladder([p])
    gen = torch.Generator().manual_seed(seed)
    idx = torch.zeros(replicates, dtype=torch.long)
    actions, rewards = pop.sample(idx, n, gen)
    adv = toy_advantages(base, rewards, 1)
    plug_in = toy_advantages("biased_k", rewards, k, {"base": base})
    var = _total_variance(pop.gradient_estimates(idx, actions, adv))
    fixed = _total_variance(pop.gradient_estimates(idx, actions, alpha * adv))
    plugged = _total_variance(pop.gradient_estimates(idx, actions, plug_in))
    alpha_p = k * (1.0 - p) ** (k - 1)
    return {"p": p, "K": k, "n": n, "alpha": alpha, "fixed_ratio": fixed / var, "alpha_sq": alpha**2,
            "plug_in_ratio": plugged / var, "alpha_p_sq": alpha_p**2}


def w_k_identity(p: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """p·w_K(p) (what E[w_K(p)·r] equals), Pass@K(p), and d ln Pass@K/dp (autograd), elementwise in p."""
    p = p.detach().to(torch.float64).requires_grad_(True)
    passk = pass_at_k(p, k)
    w = k * (1.0 - p) ** (k - 1) / passk
    dlog = torch.autograd.grad(torch.log(passk).sum(), p)[0]
    return {"p_times_w": (p * w).detach(), "pass_at_k": passk.detach(), "w": w.detach(), "dlog_pass_at_k": dlog}


def population_limit(
    method: str, k: int, ps: Sequence[float], ns: Sequence[int], params: Mapping[str, Any] | None = None
) -> list[dict[str, float]]:
    """E[ĝ]/∇surrogate (exact: β(p)/F′(p), diagnostics.exact_scale) for each n in ns and p in ps; 1 = the surrogate
    is exact at that n. Rows {method, K, n, p, ratio}."""
    target = surrogate(method, k, params)
    if target is None or target.weight is None:
        raise ValueError(f"method={method} has no binary surrogate to compare with (targets.surrogate)")
    p = torch.tensor(list(ps), dtype=torch.float64)
    rows = []
    for n in ns:
        ratio = exact_scale(method, k, n, params, p) / target.weight(p)
        rows += [{"method": method, "K": k, "n": n, "p": float(pi), "ratio": float(r)} for pi, r in zip(p, ratio)]
    return rows


def write_checks(out: Path, replicates: int = 20000, seed: int = 0) -> Path:
    """theorems.md: the three checks on the diagnostics' grid points (p ∈ {0.1, 0.5, 0.9}, K ∈ {4, 16}, n = 64 for
    the variance; n = 16 … 4096 for the population limits)."""
    from passk_exp.toylab.report import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    scaled = pd.DataFrame([scaled_variance(p, k, 64, 2.5, replicates, seed) for k in (4, 16) for p in (0.1, 0.5, 0.9)])
    ps = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    wk = pd.DataFrame([{"K": k, "p": float(p), **{key: float(v[i]) for key, v in w_k_identity(ps, k).items()}}
                       for k in (2, 4, 16) for i, p in enumerate(ps)])
    limits = pd.DataFrame([row for method, k in (("grpo", 1), ("passk_shaping", 16), ("grpo_k", 16),
                                                  ("biased_k", 4), ("biased_k", 16))
                           for row in population_limit(method, k, [0.01, 0.1, 0.5], [16, 64, 256, 1024, 4096])])
    limits = limits.pivot_table(index=["method", "K", "p"], columns="n", values="ratio").reset_index()
    limits.columns = [f"n={c}" if isinstance(c, (int, np.integer)) else c for c in limits.columns]
    text = [
        "# Numerical checks of seed-text statements (generated by `python -m passk_exp.toylab.theorems`)\n\n",
        f"## Scaling an advantage by α ({replicates} groups of n = 64 on one problem, base rloo)\n\n",
        "fixed_ratio = Var ĝ(α·A) / Var ĝ(A) for the fixed α; plug_in_ratio = Var ĝ(biased_k) / Var ĝ(rloo), "
        "α̂ = K(1−r̄)^{K−1} from the same group; alpha_p_sq = (K(1−p)^{K−1})².\n\n",
        markdown_table(scaled, list(scaled.columns)),
        "\n## E[w_K(p)·r] = p·w_K(p) against Pass@K(p); w_K against d ln Pass@K/dp (exact)\n\n",
        markdown_table(wk, ["K", "p", "p_times_w", "pass_at_k", "w", "dlog_pass_at_k"]),
        "\n## Population-limit surrogates: exact E[ĝ]/∇surrogate as n grows (1 = the surrogate is exact)\n\n",
        markdown_table(limits, list(limits.columns)),
    ]
    path = out / "theorems.md"
    path.write_text("".join(text))
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m passk_exp.toylab.theorems", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    print(write_checks(parser.parse_args().out))
