"""One toy training run: the LLM trainer's RL step on a toy population, with exact evaluation, in about a second.

Each step: K from the schedule (passk_exp.k_control.KController, the harness's own), B problems drawn without
replacement, n samples each, rewards [B, n], advantages from the same call the LLM trainer makes (advantages.py, with
the p̂ state and the entropy regularizer), the estimate ĝ = (1/B) Σ_x (1/n) Σ_i A_i ∇log π(y_i|x) (docs/methods.md §0),
minus β·∇KL(π ‖ π_init) (exact) for `regularizer=kl`, then an Adam or SGD step on the logits. Metrics use the harness's
names: `train/reward_mean`, `train/K`, `train/p_hat`, `train/informative_groups`, `train/pass_at_{k}` (unbiased, from
the step's rewards) and, at eval steps, `eval/pass_at_{k}` (binary toy) or `eval/max_at_{k}` (continuous toy), here
exact population values for k = 1, 2, 4, ..., n_eval. Train metrics are those of every `log_every`-th step and of
every eval step (a toy step takes about a millisecond, less than logging it). Toy-only extras: `train/grad_cosine`
(cosine of the step's estimate with the exact gradient of the method's objective over the whole population) and
`train/kl` (exact KL to the initial policy, with `regularizer=kl`).
What this file leaves out: Hydra and MLflow (cli.py) and the estimators.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from passk_exp import estimators
from passk_exp.evaluation import k_grid, pass_at_k_metrics
from passk_exp.k_control import KController
from passk_exp.toylab.advantages import toy_advantages
from passk_exp.toylab.populations import build_population
from passk_exp.toylab.targets import Target, objective

History = list[tuple[int, dict[str, float]]]


def objective_value(pop: Any, target: Target, theta: torch.Tensor) -> torch.Tensor:
    """Population mean of the target (exact, differentiable in theta)."""
    if target.max_k is not None:
        return target.scale * pop.max_at_k(target.max_k, theta).mean()
    return target.value(pop.success(theta)).mean()


def eval_metrics(pop: Any, ks: list[int]) -> dict[str, float]:
    """Exact population Pass@k (binary toy) or max@k (continuous toy) for every k in ks, plus eval/reward_mean."""
    with torch.no_grad():
        if pop.kind == "gaussian":
            values = {f"eval/max_at_{k}": float(pop.max_at_k(k).mean()) for k in ks}
            values["eval/reward_mean"] = float(pop.max_at_k(1).mean())
        else:
            values = {f"eval/pass_at_{k}": float(pop.pass_at_k(k).mean()) for k in ks}
            values["eval/reward_mean"] = float(pop.success().mean())
    return values


def _optimizer(train: Mapping[str, Any], theta: torch.Tensor) -> torch.optim.Optimizer:
    name = train.get("optimizer", "adam")
    if name == "adam":
        return torch.optim.Adam([theta], lr=float(train["lr"]), betas=tuple(train.get("betas", (0.9, 0.999))))
    if name == "sgd":
        return torch.optim.SGD([theta], lr=float(train["lr"]))
    raise ValueError(f"train.optimizer={name!r} is not one of ['adam', 'sgd']")


def train(config: Mapping[str, Any]) -> tuple[dict[str, float], History]:
    """Run one toy job from a resolved config dict; returns (final metrics, [(step, metrics), ...])."""
    torch.manual_seed(int(config["seed"]))
    gen = torch.Generator().manual_seed(int(config["seed"]))
    pop = build_population(config["toylab_population"])
    theta = pop.theta.detach().clone().requires_grad_(True)
    pop.theta = theta
    reference = theta.detach().clone()
    continuous = pop.kind == "gaussian"
    method = config["method"]["name"]
    params = dict(config["method"].get("params") or {})
    if continuous and estimators.is_binary_only(method):
        raise ValueError(f"method={method} takes binary rewards only; toylab_population={pop.kind} is continuous")
    n, base_k, steps = int(config["n"]), int(config["K"]), int(config["steps"])
    k_control = KController(config["schedule"], base_k, n, cap_at_n=estimators.needs_k_le_n(method))
    state = estimators.make_state(method, params)
    regularizer = config["regularizer"]
    lam = float(regularizer["lam"]) if regularizer["name"] == "entropy" else None
    beta = float(regularizer["beta"]) if regularizer["name"] == "kl" else 0.0
    train_cfg = config["train"]
    optimizer = _optimizer(train_cfg, theta)
    clip = train_cfg.get("grad_clip")
    batch = min(int(train_cfg["prompts_per_step"]), pop.problems)
    ks = k_grid(int(config["n_eval"]))
    every = int(config["eval_every"])
    log_every = max(int(config.get("log_every", 1)), 1)
    history: History = [(0, eval_metrics(pop, ks))]
    for step in range(1, steps + 1):
        k = k_control.k_at(step)
        idx = torch.randperm(pop.problems, generator=gen)[:batch] if batch < pop.problems else torch.arange(batch)
        actions, rewards = pop.sample(idx, n, gen)
        adv = toy_advantages(method, rewards, k, params, state, lam)
        p_hat = k_control.observe(float(rewards.mean()))
        if state is not None and getattr(state, "p", None) is not None:
            p_hat = float(state.p)
        ascent = pop.scatter(idx, pop.gradient_estimates(idx, actions, adv)) / batch
        evaluate = step == steps or (every > 0 and step % every == 0)
        logged = evaluate or step % log_every == 0
        metrics: dict[str, float] = {}
        if logged:  # the step's own diagnostics cost more than the step: only on the steps that are logged
            metrics, _, _ = pass_at_k_metrics(rewards.numpy(), "train", continuous)
            exact = torch.autograd.grad(objective_value(pop, objective(method, k, params, continuous, n), theta), theta)[0]
            denom = float(ascent.norm()) * float(exact.norm())
            metrics["train/grad_cosine"] = float((ascent * exact).sum()) / denom if denom > 0 else 0.0
        if regularizer["name"] == "kl":
            kl = pop.kl_to(reference, theta)
            if beta > 0:
                ascent = ascent - beta * torch.autograd.grad(kl, theta)[0]
            if logged:
                metrics["train/kl"] = float(kl.detach())
        theta.grad = -ascent
        grad_norm = float(ascent.norm())
        if clip:
            torch.nn.utils.clip_grad_norm_([theta], float(clip))
        optimizer.step()
        if not logged:
            continue
        metrics.update(
            {
                "train/reward_mean": float(rewards.mean()),
                "train/K": float(k),
                "train/p_hat": p_hat,
                "train/informative_groups": float((rewards.amax(dim=1) != rewards.amin(dim=1)).double().mean()),
                "train/adv_abs_mean": float(adv.abs().mean()),
                "train/grad_norm": grad_norm,
            }
        )
        if evaluate:
            metrics.update(eval_metrics(pop, ks))
        history.append((step, metrics))
    final = {key: value for _, metrics in history for key, value in metrics.items()}
    return final, history
