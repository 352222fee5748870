"""Numeric precision of the RL step: which one to use (`auto` | `bf16` | `fp32`) and the autocast context for it.

`bf16` means mixed precision: weights, gradients and AdamW state stay fp32 ("master weights"), and matmuls run in
bfloat16 under `torch.autocast`. `fp32` runs everything in float32. `auto` picks bf16 where the hardware has native
bf16 matmuls (CUDA: `torch.cuda.is_bf16_supported()`; CPU: the AVX-512 BF16 or AMX-BF16 instruction sets) and fp32
elsewhere; the choice is logged once per call. Trainable parameters are never cast here (load the model in float32);
frozen linear weights may be stored in bf16 once (`store_frozen_linears_in_bf16`), which computes the same numbers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
# CPU flags (as /proc/cpuinfo names them) of instruction sets with native bf16 dot products; without them oneDNN
# emulates bf16 and autocast is slower than fp32.
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """True when the first `flags` line of a /proc/cpuinfo text names a native bf16 instruction set."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return not set(line.partition(":")[2].split()).isdisjoint(_CPU_BF16_FLAGS)
    return False


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul instructions (Linux /proc/cpuinfo flags); False if unknown."""
    try:
        return cpuinfo_has_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """`auto` | `bf16` | `fp32` -> `bf16` | `fp32` for `device`; an explicit choice is returned unchanged."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {list(PRECISIONS)}")
    if precision != "auto":
        return precision
    kind = _device_type(device)
    if kind == "cuda":
        supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        reason = "torch.cuda.is_bf16_supported()"
    elif kind == "cpu":
        supported = cpu_supports_bf16()
        reason = f"CPU flags {' / '.join(_CPU_BF16_FLAGS)}"
    else:
        # MPS/XPU autocast coverage varies by version; fp32 is the choice that is always correct.
        supported, reason = False, f"device type {kind!r} is not probed"
    chosen = "bf16" if supported else "fp32"
    log.info("precision auto -> %s on %s (%s: %s)", chosen, kind, reason, "yes" if supported else "no")
    return chosen


def autocast(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """`torch.autocast(bfloat16)` on `device` for bf16, a no-op context for fp32 (`auto` is resolved first)."""
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=_device_type(device), dtype=torch.bfloat16)


def store_frozen_linears_in_bf16(model: torch.nn.Module) -> int:
    """Store the weights of frozen `nn.Linear` layers in bfloat16; return how many layers changed.

    Under bf16 autocast every matmul casts an fp32 weight to bf16 on every call, and autocast caches that cast only
    for weights that require grad, so frozen layers pay it on every decoding step of every rollout (a quarter of a
    CPU decoding step of SmolLM2-135M with 26 of 30 layers frozen). A frozen weight needs no fp32 master copy, and
    autocast would round it to the same bf16 values, so storing it in bf16 once computes the same numbers. Weights
    shared with the input embedding (tied LM heads) stay fp32: embedding lookups are not autocast and would change.
    Call it only for precision bf16."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    tied = embeddings.weight if embeddings is not None else None
    changed = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or module.weight is tied:
            continue
        if any(p.requires_grad for p in module.parameters(recurse=False)) or module.weight.dtype == torch.bfloat16:
            continue
        module.to(torch.bfloat16)
        changed += 1
    return changed
