"""DAPO's batch-level options (Yu et al., arXiv 2503.14476): overlong filtering and dynamic sampling.

* `overlong_keep`: which completions stay in the loss when `train.overlong_filter` is on: those that ended by
  themselves. A completion cut at max_new_tokens without an EOS (`RolloutBatch.truncated`) has no verdict from its
  own end, so DAPO masks it out of the loss (§3.4) rather than punishing it as wrong; one whose EOS lands on the last
  allowed token is complete and stays.
* `resample_zero_variance`: groups whose rewards are all equal give every centred estimator a zero advantage, so they
  waste the step. With `train.dynamic_sampling_max_rounds = R > 0` such groups are generated again, for the same
  prompts, up to R times; the count of regenerated groups is the metric `train/resampled_groups`. DAPO draws new
  prompts instead; regenerating the same ones keeps the prompt stream, hence resumption from a checkpoint, identical
  to a run without the option. Groups still constant after R rounds stay as they are.

What this file leaves out: the loss (loss.py) and the clip-higher ε (a loss argument).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from passk_exp.rollout.base import RolloutBatch


def overlong_keep(batch: RolloutBatch) -> Tensor:
    """[G, n] 1.0 for a completion that ended by itself, 0.0 for one cut at max_new_tokens without an EOS
    (`batch.truncated`; one that emitted EOS as its last allowed token is complete and stays)."""
    return (~batch.truncated).to(torch.float32)


def zero_variance_groups(rewards: Tensor) -> Tensor:
    """Indices [m] of the rows of rewards [G, n] whose values are all equal."""
    return torch.nonzero(rewards.max(dim=1).values == rewards.min(dim=1).values).flatten()


def replace_groups(batch: RolloutBatch, index: Tensor, new: RolloutBatch) -> RolloutBatch:
    """`batch` with its groups `index` replaced by the groups of `new`, padded to the wider of the two layouts
    (prompts on the left, completions on the right; padding has mask 0, so its ids are never read)."""
    width_p = max(batch.prompt_ids.shape[1], new.prompt_ids.shape[1])
    width_c = max(batch.completion_ids.shape[2], new.completion_ids.shape[2])

    def prompts(t: Tensor) -> Tensor:
        return F.pad(t, (width_p - t.shape[1], 0))

    def completions(t: Tensor) -> Tensor:
        return F.pad(t, (0, width_c - t.shape[2]))

    out = RolloutBatch(
        prompts(batch.prompt_ids), prompts(batch.prompt_mask),
        completions(batch.completion_ids), completions(batch.completion_mask), [list(t) for t in batch.texts],
        batch.truncated.clone(),
        completions(batch.sampler_logprobs) if batch.sampler_logprobs is not None else None,
    )
    out.prompt_ids[index] = prompts(new.prompt_ids).to(out.prompt_ids.dtype)
    out.prompt_mask[index] = prompts(new.prompt_mask).to(out.prompt_mask.dtype)
    out.completion_ids[index] = completions(new.completion_ids).to(out.completion_ids.dtype)
    out.completion_mask[index] = completions(new.completion_mask).to(out.completion_mask.dtype)
    out.truncated[index] = new.truncated.to(out.truncated.dtype)
    if out.sampler_logprobs is not None and new.sampler_logprobs is not None:  # an engine's log-probs (vLLM)
        out.sampler_logprobs[index] = completions(new.sampler_logprobs).to(out.sampler_logprobs.dtype)
    for row, texts in zip(index.tolist(), new.texts):
        out.texts[row] = list(texts)
    return out


def resample_zero_variance(
    batch: RolloutBatch,
    rewards: Tensor,
    generate_and_score: Callable[[list[int]], tuple[RolloutBatch, Tensor]],
    max_rounds: int,
) -> tuple[RolloutBatch, Tensor, int]:
    """Regenerate the zero-variance groups up to `max_rounds` times → (batch, rewards [G, n], groups regenerated).

    generate_and_score(group indices) returns fresh completions and their rewards for those groups' prompts.
    """
    resampled = 0
    for _ in range(max_rounds):
        index = zero_variance_groups(rewards)
        if index.numel() == 0:
            break
        new_batch, new_rewards = generate_and_score(index.tolist())
        batch = replace_groups(batch, index, new_batch)
        rewards = rewards.clone()
        rewards[index] = new_rewards.to(rewards.dtype)
        resampled += int(index.numel())
    return batch, rewards, resampled
