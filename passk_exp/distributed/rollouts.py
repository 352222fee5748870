"""Rollout batches across ranks: concatenation in rank order, and the rollout backends a rank samples through.

`concat_batches` joins every rank's `RolloutBatch` (prompts re-left-padded, completions re-right-padded, with zeros:
the masks mark real tokens). `FullWeightsRollout` samples from an FSDP-sharded policy with its weights all-gathered
once per call and kept through every decoding forward (so generation runs no collective and ranks may stop at
different lengths); `ShardedRollout` samples this rank's block of the prompts and returns every rank's rollouts.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from passk_exp.rollout.base import RolloutBatch


class FullWeights:
    """Context: every FSDP module unsharded and kept so through any number of forwards (no collective inside)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.modules = modules  # the FSDP root and every fully_shard-ed layer

    def __enter__(self) -> None:
        for module in self.modules:
            module.set_reshard_after_forward(False, recurse=False)
            module.unshard()

    def __exit__(self, *exc) -> None:
        for module in self.modules:
            module.reshard()
            module.set_reshard_after_forward(True, recurse=False)


class FullWeightsRollout:
    """A rollout backend that samples with the FSDP-sharded policy's full weights (gathered once per call)."""

    def __init__(self, backend, dist) -> None:
        self.backend, self.dist = backend, dist

    def generate(self, prompts, n, sampling) -> RolloutBatch:
        with self.dist.full_weights():  # a collective: every rank comes here, with or without prompts
            return self.backend.generate(prompts, n, sampling) if prompts else empty_batch(n)

    def sync_weights(self, model: nn.Module) -> None:
        self.backend.sync_weights(model)


class ShardedRollout:
    """Samples this rank's block of the prompts, returns every rank's rollouts in prompt order."""

    def __init__(self, backend, dist) -> None:
        self.backend, self.dist = backend, dist

    def generate(self, prompts, n, sampling) -> RolloutBatch:
        mine = self.dist.shard(prompts)  # empty on some ranks when there are fewer prompts than ranks
        collective = isinstance(self.backend, FullWeightsRollout)
        local = self.backend.generate(mine, n, sampling) if mine or collective else empty_batch(n)
        return self.dist.gather_batch(local)

    def sync_weights(self, model: nn.Module) -> None:
        self.backend.sync_weights(model)


def empty_batch(n: int) -> RolloutBatch:
    """A batch of no groups (a rank with no prompt of its own)."""
    ids = torch.zeros(0, 0, dtype=torch.long)
    completions = torch.zeros(0, n, 0, dtype=torch.long)
    return RolloutBatch(ids, ids, completions, completions, [], torch.zeros(0, n, dtype=torch.bool))


def _pad(tensor: torch.Tensor, dim: int, width: int, left: bool) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    zeros = tensor.new_zeros(shape)
    return torch.cat([zeros, tensor] if left else [tensor, zeros], dim=dim)


def concat_batches(batches: Sequence[RolloutBatch]) -> RolloutBatch:
    """Rollout batches of the same n as one: prompts re-left-padded, completions re-right-padded, with zeros (the
    masks mark real tokens)."""
    prompt_width = max(b.prompt_ids.shape[1] for b in batches)
    completion_width = max(b.completion_ids.shape[2] for b in batches)
    return RolloutBatch(
        torch.cat([_pad(b.prompt_ids, 1, prompt_width, True) for b in batches]),
        torch.cat([_pad(b.prompt_mask, 1, prompt_width, True) for b in batches]),
        torch.cat([_pad(b.completion_ids, 2, completion_width, False) for b in batches]),
        torch.cat([_pad(b.completion_mask, 2, completion_width, False) for b in batches]),
        [group for b in batches for group in b.texts],
        torch.cat([b.truncated for b in batches]),
        _concat_sampler_logprobs(batches, completion_width),
    )


def _concat_sampler_logprobs(batches: Sequence[RolloutBatch], width: int) -> torch.Tensor | None:
    """The engines' per-token log-probs (vLLM; importance correction) joined like the completions; a batch without
    them (a rank with no prompt) contributes zeros under its all-zero mask. None when no engine reported any."""
    if all(b.sampler_logprobs is None for b in batches):
        return None
    zeros = [torch.zeros(b.completion_ids.shape, dtype=torch.float32) for b in batches]
    parts = [b.sampler_logprobs if b.sampler_logprobs is not None else zero for b, zero in zip(batches, zeros)]
    return torch.cat([_pad(part, 2, width, False) for part in parts])


def to_cpu(batch: RolloutBatch) -> RolloutBatch:
    sampler = batch.sampler_logprobs.cpu() if batch.sampler_logprobs is not None else None
    return RolloutBatch(*(t.cpu() for t in (batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                            batch.completion_mask)), batch.texts, batch.truncated.cpu(), sampler)
