"""Rollouts with transformers' `generate`: the CPU path, and a GPU fallback when vLLM is not installed.

It samples from the policy module itself (no weight copy), in the run's precision, in chunks of `batch_size`
completions so memory stays bounded, and stops each chunk as soon as every sequence has produced an EOS.

`cache` picks transformers' KV cache: `dynamic` (the default: grows by one token per step), `static` (preallocated
for prompt + max_new_tokens, the same shapes at every step) or `static_compiled` (static, and transformers compiles
the decoding step with torch.compile's "reduce-overhead" mode, i.e. CUDA graphs; CUDA only). Every mode draws with the
same `InverseCdfSampler` from the same softmax(logits / T): only how the logits are computed changes, not the
distribution the trainer's log-probs assume. `static_compiled` stays off by default until bench/gpu_check.py has
measured on a GPU that it pays (compilation takes seconds per new shape; see bench/RESULTS.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import CompileConfig, GenerationConfig, LogitsProcessorList

from passk_exp.config import HF_CACHES
from passk_exp.precision import autocast
from passk_exp.rollout.base import (
    RolloutBatch,
    SamplingParams,
    completion_mask_until_eos,
    encode_prompts,
    truncated_samples,
)
from passk_exp.rollout.sampling import InverseCdfSampler


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS plus the model's generation-config EOS ids."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return sorted(i for i in ids if i is not None)


def cache_options(cache: str) -> dict:
    """GenerationConfig fields for a `rollout.cache` mode. transformers compiles the decoding step by itself whenever
    the cache is static and the model is on CUDA, so `static` turns that off explicitly and `static_compiled` asks for
    it with CUDA graphs ("reduce-overhead"; graph breaks allowed, so an unsupported op falls back instead of failing)."""
    if cache == "dynamic":
        return {}
    if cache == "static":
        return {"cache_implementation": "static", "disable_compile": True}
    if cache == "static_compiled":
        return {"cache_implementation": "static", "compile_config": CompileConfig(fullgraph=False, mode="reduce-overhead")}
    raise ValueError(f"rollout.cache={cache!r} is not one of {list(HF_CACHES)}")


class HFRollout:
    def __init__(self, model, tokenizer, *, precision: str, batch_size: int = 64, cache: str = "dynamic") -> None:
        if cache not in HF_CACHES:
            raise ValueError(f"rollout.cache={cache!r} is not one of {list(HF_CACHES)}")
        device = next(model.parameters()).device
        if cache == "static_compiled" and device.type != "cuda":
            raise ValueError(
                f"rollout.cache=static_compiled needs the policy on CUDA, not {device.type}; use rollout.cache=static"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.precision = precision
        self.batch_size = batch_size
        self.cache = cache
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # generate() runs on the policy module itself

    @torch.no_grad()
    def generate(self, prompts: Sequence[object], n: int, sampling: SamplingParams) -> RolloutBatch:
        _, prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, self.pad_id)
        device = next(self.model.parameters()).device
        repeated_ids = prompt_ids.repeat_interleave(n, dim=0)
        repeated_mask = prompt_mask.repeat_interleave(n, dim=0)
        # A fresh config so that nothing from the checkpoint's generation_config (top_k=50, repetition penalties)
        # silently changes the sampling distribution that Pass@k is estimated under.
        # Sampling itself is the InverseCdfSampler's (rollout/sampling.py: same distribution, much cheaper on CPU than
        # the multinomial of do_sample=True), so generate runs greedy and takes the one token left finite.
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
            **cache_options(self.cache),
        )
        sampler = LogitsProcessorList([InverseCdfSampler(sampling.temperature, sampling.top_p)])
        was_training = self.model.training
        self.model.eval()
        chunks = []
        try:
            for start in range(0, repeated_ids.shape[0], self.batch_size):
                ids = repeated_ids[start : start + self.batch_size].to(device)
                mask = repeated_mask[start : start + self.batch_size].to(device)
                with autocast(self.precision, device):
                    out = self.model.generate(
                        input_ids=ids, attention_mask=mask, generation_config=config, logits_processor=sampler
                    )
                chunks.append(out[:, ids.shape[1] :].cpu())
        finally:
            self.model.train(was_training)
        width = max(c.shape[1] for c in chunks)
        completions = torch.cat(
            [torch.nn.functional.pad(c, (0, width - c.shape[1]), value=self.pad_id) for c in chunks]
        )
        mask = completion_mask_until_eos(completions, self.eos_ids)
        truncated = truncated_samples(completions, mask, self.eos_ids, sampling.max_new_tokens)
        completions = torch.where(mask.bool(), completions, torch.full_like(completions, self.pad_id))
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        groups = len(prompts)
        return RolloutBatch(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completions.view(groups, n, width),
            completion_mask=mask.view(groups, n, width),
            texts=[texts[g * n : (g + 1) * n] for g in range(groups)],
            truncated=truncated.view(groups, n),
        )
