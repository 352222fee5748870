"""Rollout backends behind one interface (`RolloutBackend`): `hf` (transformers generate) and `vllm` (GPU)."""

from __future__ import annotations

from typing import Any, Mapping

from passk_exp.rollout.base import RolloutBackend, RolloutBatch, SamplingParams, render_prompt

BACKENDS = ("hf", "vllm")


def make_backend(rollout: Mapping[str, Any], model, tokenizer, precision: str, seed: int = 0) -> RolloutBackend:
    backend = rollout["backend"]
    if backend == "hf":
        from passk_exp.rollout.hf import HFRollout

        return HFRollout(
            model,
            tokenizer,
            precision=precision,
            batch_size=int(rollout["batch_size"]),
            cache=rollout.get("cache", "dynamic"),
        )
    if backend == "vllm":
        from passk_exp.rollout.vllm import VLLMRollout

        return VLLMRollout(
            model,
            tokenizer,
            precision=precision,
            seed=seed,
            gpu_memory_utilization=float(rollout["gpu_memory_utilization"]),
            max_model_len=rollout.get("max_model_len"),
            sleep=bool(rollout.get("sleep", False)),
        )
    raise ValueError(f"rollout.backend={backend!r} is not one of {list(BACKENDS)}")


__all__ = ["BACKENDS", "RolloutBackend", "RolloutBatch", "SamplingParams", "make_backend", "render_prompt"]
