"""Anchor estimators from other RL libraries, so the study compares against what people actually run.

* `grpo_passk`: verl's Pass@k advantage (Tang et al., arXiv 2503.19595, as in verl's
  `compute_grpo_passk_outcome_advantage`): the group's best sample gets r_max − r_second, every other sample 0. It is
  the leave-one-out gradient of max@n (the max over the whole group, so k = n: the top-level K is ignored): removing
  any sample but the best leaves the max unchanged. verl divides by the group's sample std (ddof 1) + ε by default;
  `std_normalize=false` keeps the raw difference. On 0/1 rewards only a group with exactly one success moves.
* `maxrl`: MaxRL as in prime-rl (arXiv 2602.02710): (r − r̄)/r̄, 0 where r̄ = 0. On 0/1 rewards its mean is the
  gradient of Σ_{k<n} Pass@k / k, the n-sample truncation of log p (maximum likelihood of success).
* `dr_grpo`: Dr. GRPO (Liu et al., arXiv 2503.20783): r − r̄ with no std normalisation; the paper pairs it with a
  token-sum loss (train.loss_agg=token_sum), which is a loss setting, not part of the advantage.

The math, in prose: docs/methods.md §12. Every function maps rewards [B, n] to advantages [B, n] (rewards' dtype
and device), no loop over B or n. What this file leaves out: validation (registry.py) and the loss aggregation
(loss.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from passk_exp.estimators.baselines import centred
from passk_exp.estimators.registry import register


@register("grpo_passk", rewards="real", needs_k_le_n=False, min_n=2, uses_k=False)
def grpo_passk(rewards: Tensor, k: int, *, std_normalize: bool = True, std_ddof: int = 1, eps: float = 1e-6) -> Tensor:
    """A_best = (r_max − r_second)/(σ + ε) (σ with std_ddof; raw difference if not std_normalize), others 0.

    [B, n] → [B, n]. Ties at the top give 0 (r_max = r_second), so which tied sample is "best" never matters.
    """
    top = rewards.topk(2, dim=-1)
    gap = top.values[:, 0] - top.values[:, 1]
    if std_normalize:
        n = rewards.shape[-1]
        dev, _ = centred(rewards)
        sigma = torch.linalg.vector_norm(dev, dim=-1) / math.sqrt(n - std_ddof)
        # gap > 0 implies sigma > 0; the where keeps eps = 0 from turning a constant row into 0/0.
        gap = torch.where(gap > 0, gap / (sigma + eps), torch.zeros_like(gap))
    out = torch.zeros_like(rewards)
    return out.scatter_(-1, top.indices[:, :1], gap.unsqueeze(-1))


@register("maxrl", rewards="unit", needs_k_le_n=False, uses_k=False)
def maxrl(rewards: Tensor, k: int) -> Tensor:
    """A_i = (r_i − r̄)/r̄, and 0 for a row with r̄ = 0 (no success: nothing to raise the likelihood of). [B, n] → [B, n]."""
    dev, mean = centred(rewards)
    inv = torch.where(mean > 0, 1 / mean, torch.zeros_like(mean))
    return dev.mul_(inv)


@register("dr_grpo", rewards="real", needs_k_le_n=False, uses_k=False)
def dr_grpo(rewards: Tensor, k: int) -> Tensor:
    """A_i = r_i − r̄ (Dr. GRPO: GRPO without the std division). Mean (n−1)/n·∇E[r]. [B, n] → [B, n]."""
    return centred(rewards)[0]
