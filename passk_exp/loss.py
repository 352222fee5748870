"""Token-level policy-gradient loss with PPO-style ratio clipping and the k3 KL penalty (pure tensor math).

The estimators return one advantage per completion (docs/methods.md §0: ĝ = (1/n) Σ_i A_i ∇log π(y_i|x)); this module spreads it
over the completion's tokens. With one inner update the ratio is exactly 1 and the gradient is Σ_t A_i ∇log π(y_i,t),
so the `constant` aggregation (divide by B·n·max_new_tokens, a constant) keeps every estimator's unbiasedness up to the
learning-rate scale; `token_sum` (sum over each completion's tokens, mean over completions: Dr. GRPO's aggregation, verl's
seq-mean-token-sum) is `constant` × max_new_tokens, the same direction at a larger scale; `token_mean` and `seq_mean`
are the common length-normalised variants (they reweight by length). DAPO's clip-higher is `clip_eps_high`.
Denominators are computed over the whole batch by the caller, so gradient accumulation over micro-batches gives the
same gradient as one big batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from passk_exp.config import LOSS_AGGREGATIONS as AGGREGATIONS


@dataclass
class LossParts:
    loss: Tensor  # scalar, already divided by the batch denominator
    clip_fraction: Tensor  # scalar, fraction of (masked) tokens whose ratio was clipped
    kl: Tensor | None  # scalar mean k3 KL per token, or None without a reference


def batch_denominator(agg: str, completion_mask: Tensor, max_new_tokens: int) -> float:
    """The normaliser of the whole batch's loss. completion_mask: [G, n, C] over ALL groups of the step."""
    if agg == "constant":
        groups, n, _ = completion_mask.shape
        return float(groups * n * max_new_tokens)
    if agg == "token_mean":
        return float(max(int(completion_mask.sum()), 1))
    if agg in ("seq_mean", "token_sum"):
        return float(completion_mask.shape[0] * completion_mask.shape[1])
    raise ValueError(f"loss aggregation {agg!r} is not one of {list(AGGREGATIONS)}")


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(π || π_ref) on samples from π: exp(Δ) − Δ − 1 with Δ = log π_ref − log π (≥ 0)."""
    delta = ref_logprobs - logprobs
    return torch.expm1(delta) - delta


def policy_gradient_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float,
    agg: str,
    denominator: float,
    ref_logprobs: Tensor | None = None,
    kl_beta: float = 0.0,
    clip_eps_high: float | None = None,
    token_weights: Tensor | None = None,
) -> LossParts:
    """logprobs, old_logprobs, mask, ref_logprobs: [G, n, C]; advantages: [G, n] -> the micro-batch's share of the loss.

    Clipped surrogate per token: −min(ρ·A, clip(ρ, 1−ε, 1+ε_high)·A), ρ = exp(log π − log π_old), plus β·k3 KL to
    π_ref; ε_high = ε unless clip_eps_high is given (DAPO's clip-higher, arXiv 2503.14476 §3.1). `token_weights`
    [G, n, C] (truncated importance weights for an engine's sampler, importance.py) multiply the surrogate only, as in
    TRL: the KL term is an expectation under the policy's own samples either way.
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages.to(logprobs.dtype).unsqueeze(-1)
    unclipped = ratio * adv
    high = clip_eps if clip_eps_high is None else clip_eps_high
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    if token_weights is not None:
        per_token = per_token * token_weights.to(per_token.dtype)
    kl_mean = None
    if ref_logprobs is not None:
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_beta * kl
        kl_mean = (kl * mask).sum().detach() / mask.sum().clamp_min(1)
    masked = per_token * mask
    if agg == "seq_mean":
        loss = (masked.sum(-1) / mask.sum(-1).clamp_min(1)).sum() / denominator
    elif agg in ("constant", "token_mean", "token_sum"):
        loss = masked.sum() / denominator
    else:
        raise ValueError(f"loss aggregation {agg!r} is not one of {list(AGGREGATIONS)}")
    was_clipped = (clipped < unclipped).to(mask.dtype)
    clip_fraction = (was_clipped * mask).sum().detach() / mask.sum().clamp_min(1)
    return LossParts(loss=loss, clip_fraction=clip_fraction, kl=kl_mean)
