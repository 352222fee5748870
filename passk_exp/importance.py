"""Truncated importance sampling (TIS): per-token weights for a sampler whose probabilities differ from the trainer's.

A separate inference engine (vLLM: its own bf16 kernels, fused attention, its own sampler) draws token y_t with a
probability π_sampler(y_t) that differs slightly from π_old(y_t), the probability the trainer's own forward gives the
same token under the same weights. The policy gradient is an expectation under π_old, but the samples come from
π_sampler, so each token's loss term is reweighted by

    w_t = min(π_old(y_t) / π_sampler(y_t), C)

(Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training"; TRL's
`vllm_importance_sampling_cap`, verl's truncated IS). Truncating at C trades a small bias for a bounded variance. The
weights are constants of the update (no gradient flows through them). When the sampler is the policy module itself
(`rollout=hf`) there is no mismatch and no weight.

Left out: sequence-level weights (a product over tokens), masking tokens instead of truncating their weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ImportanceWeights:
    weights: Tensor  # [G, n, C] min(π_old / π_sampler, cap) on completion tokens, 1 elsewhere; no gradient
    weight_sum: float  # Σ of the weights over completion tokens
    truncated: float  # number of completion tokens whose ratio exceeded the cap
    tokens: float  # number of completion tokens


def truncated_is_weights(old_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor, cap: float) -> ImportanceWeights:
    """old_logprobs (the trainer's), sampler_logprobs (the engine's), mask: [G, n, C] -> the truncated weights.

    Computed in log space as exp(min(log π_old − log π_sampler, log C)), so a large ratio never overflows.
    """
    if not (cap > 0 and math.isfinite(cap)):
        raise ValueError(f"importance-sampling cap={cap} must be a positive finite number")
    if old_logprobs.shape != sampler_logprobs.shape or old_logprobs.shape != mask.shape:
        raise ValueError(
            f"shapes differ: old log-probs {tuple(old_logprobs.shape)}, sampler log-probs "
            f"{tuple(sampler_logprobs.shape)}, mask {tuple(mask.shape)}"
        )
    on = mask.bool()
    log_ratio = (old_logprobs.detach().float() - sampler_logprobs.to(old_logprobs.device).float()).masked_fill(~on, 0.0)
    weights = torch.exp(log_ratio.clamp(max=math.log(cap)))
    return ImportanceWeights(
        weights=weights,
        weight_sum=float(weights[on].sum()),
        truncated=float((log_ratio > math.log(cap))[on].sum()),
        tokens=float(on.sum()),
    )


class ImportanceCorrection:
    """The trainer's side: weights per micro-batch when the rollout carries sampler log-probs, and the step's metrics.

    `cap=None` turns the correction off (no weights, no metrics).
    """

    def __init__(self, cap: float | None) -> None:
        if cap is not None and not (cap > 0 and math.isfinite(cap)):
            raise ValueError(f"rollout.is_cap={cap} must be a positive number, or null to turn the correction off")
        self.cap = cap
        self._sum = self._truncated = self._tokens = 0.0

    def weights(self, old_logprobs: Tensor, sampler_logprobs: Tensor | None, mask: Tensor) -> Tensor | None:
        """[G, n, C] weights for the loss's `token_weights`, or None when there is nothing to correct."""
        if self.cap is None or sampler_logprobs is None:
            return None
        result = truncated_is_weights(old_logprobs, sampler_logprobs, mask, self.cap)
        self._sum += result.weight_sum
        self._truncated += result.truncated
        self._tokens += result.tokens
        return result.weights

    def metrics(self) -> dict[str, float]:
        """`train/is_weight_mean` and `train/is_clip_fraction` over the step's tokens (then reset); {} if unused."""
        if not self._tokens:
            return {}
        out = {"train/is_weight_mean": self._sum / self._tokens, "train/is_clip_fraction": self._truncated / self._tokens}
        self._sum = self._truncated = self._tokens = 0.0
        return out
