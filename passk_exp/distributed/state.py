"""Checkpoint state across ranks: whole tensors from FSDP's sharded DTensors, and shards back from whole tensors.

A distributed checkpoint is the one-process checkpoint (checkpoint.py): DTensor weights and AdamW moments are
gathered whole (`full`, a collective every rank joins) and, on restore, each rank takes its shard of the whole tensor
(`like`, no communication). Plain tensors pass through.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def full(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (a collective), or the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor.detach()


def like(whole: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`whole` laid out like `param`: this rank's shard of it when `param` is a DTensor (no communication)."""
    if not hasattr(param, "device_mesh"):
        return whole.to(param.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole.to(param.device), param.device_mesh, param.placements, src_data_rank=None)


def map_tensors(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`state` (nested dicts and lists, e.g. an optimizer state dict) with `fn` applied to every tensor."""
    if torch.is_tensor(state):
        return fn(state)
    if isinstance(state, dict):
        return {key: map_tensors(value, fn) for key, value in state.items()}
    if isinstance(state, list):
        return [map_tensors(value, fn) for value in state]
    return state
