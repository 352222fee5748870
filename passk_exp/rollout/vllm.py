"""Rollouts with vLLM on a CUDA GPU, colocated with the trained policy (one process, one GPU). NOT VERIFIED ON A GPU.

No machine of this project can install vLLM (see README "Speed"), so this module is written from vLLM's documented
API and its glue (request layout, masks, log-prob alignment, the order of wake-up, weight push, cache reset and
sleep) is tested against a stand-in engine in tests/test_rollout_vllm_glue_on_cpu.py; vLLM itself has not run here.

What it does:
- vLLM keeps its own bf16 copy of the weights. `sync_weights` only records the policy module; the push happens at the
  next `generate`, from the module as it is then, so evaluation after an update, or a weight set discarded by sleep,
  always samples the current policy. A LoRA policy is pushed as merged weights (W + scale·B·A, base names:
  `finetune.merged_state_dict`), so vLLM needs no LoRA support. The engine runs in-process
  (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so the push is a plain `load_weights` on the engine's model.
- `sleep=true` (vLLM's sleep mode, level 2): after each `generate` the engine frees its KV cache and drops its weights,
  so the update has the GPU; before the next `generate`: wake the weights, push the policy, wake the KV cache, reset
  the prefix cache (its blocks were freed and were computed with the old weights), then sample.
- Sampling is exactly the run's: temperature / top-p, no top-k, no min-p, no penalties, and the model's own
  generation_config is ignored (`generation_config="vllm"`), so Pass@k is estimated under the distribution the config
  names. Each sampled token's log-prob comes back from vLLM's sampler after temperature (`logprobs_mode=
  "processed_logprobs"`, `logprobs=0`) as `RolloutBatch.sampler_logprobs`: the trainer reweights each token by the
  truncated ratio of its own log-prob to this one (passk_exp/importance.py, `rollout.is_cap`).
- `seed` seeds the engine; `max_model_len` sizes its KV cache plan (a prompt that would not fit with
  `max_new_tokens` more tokens fails with one line before sampling); `gpu_memory_utilization` is vLLM's own share.
Needs `pip install -e .[gpu]`.

Left out: tensor parallelism, a separate vLLM server, vLLM's native LoRA (merged weights instead).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

from passk_exp.finetune import merged_state_dict
from passk_exp.rollout.base import (
    RolloutBatch,
    SamplingParams,
    completion_mask_until_eos,
    encode_prompts,
    truncated_samples,
)
from passk_exp.rollout.hf import eos_token_ids

SLEEP_LEVEL = 2  # drop the weights too: they are pushed again before every generate anyway


def engine_kwargs(
    source: str, *, precision: str, seed: int, gpu_memory_utilization: float, max_model_len: int | None, sleep: bool
) -> dict[str, Any]:
    """Arguments of `vllm.LLM` for the colocated engine."""
    kwargs: dict[str, Any] = dict(
        model=source,
        tokenizer=source,
        dtype="bfloat16" if precision == "bf16" else "float32",
        seed=seed,
        gpu_memory_utilization=gpu_memory_utilization,
        enable_prefix_caching=True,  # the n samples of a prompt share its prefill
        enable_sleep_mode=sleep,
        logprobs_mode="processed_logprobs",  # the sampled distribution's log-probs (after temperature), not raw logits
        generation_config="vllm",  # ignore the checkpoint's sampling defaults (top_k, penalties)
    )
    if max_model_len is not None:
        kwargs["max_model_len"] = int(max_model_len)
    return kwargs


def sampling_kwargs(n: int, sampling: SamplingParams, eos_ids: Sequence[int]) -> dict[str, Any]:
    """Arguments of `vllm.SamplingParams`: the run's distribution and nothing else, one sampled log-prob per token."""
    return dict(
        n=n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=-1,
        min_p=0.0,
        repetition_penalty=1.0,
        max_tokens=sampling.max_new_tokens,
        stop_token_ids=list(eos_ids),
        logprobs=0,  # the sampled token's own log-prob only
        detokenize=False,  # decoded here, with the masks applied
    )


def sampled_logprobs(token_ids: Sequence[int], logprobs: Any) -> list[float]:
    """vLLM's per-position {token id: Logprob} entries -> the log-prob of each sampled token, aligned with token_ids."""
    if logprobs is None:
        raise ValueError("vLLM returned no sample log-probs: the request must set logprobs=0")
    if len(logprobs) != len(token_ids):
        raise ValueError(f"vLLM returned {len(logprobs)} log-prob entries for {len(token_ids)} sampled tokens")
    return [float(logprobs[i][token].logprob) for i, token in enumerate(token_ids)]


class VLLMRollout:
    def __init__(
        self,
        model,
        tokenizer,
        *,
        precision: str,
        seed: int = 0,
        gpu_memory_utilization: float = 0.35,
        max_model_len: int | None = None,
        sleep: bool = True,
        engine: Any = None,
        params_type: Callable[..., Any] | None = None,
    ) -> None:
        """`engine` / `params_type` replace `vllm.LLM(...)` / `vllm.SamplingParams` (tests pass a stand-in)."""
        if engine is None:
            if not torch.cuda.is_available():
                raise ValueError("rollout=vllm needs a CUDA GPU; use rollout=hf on CPU")
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            try:
                from vllm import LLM
                from vllm import SamplingParams as VLLMSampling
            except ImportError as error:
                raise ValueError("rollout=vllm needs vLLM: pip install -e '.[gpu]'") from error
            source = model.config._name_or_path  # the local safetensors dir (embedded model) or the HF id
            engine = LLM(
                **engine_kwargs(
                    source,
                    precision=precision,
                    seed=seed,
                    gpu_memory_utilization=gpu_memory_utilization,
                    max_model_len=max_model_len,
                    sleep=sleep,
                )
            )
            params_type = VLLMSampling
        self.llm = engine
        self.params_type = params_type or dict
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.sleep = sleep
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self._awake = {"weights", "kv_cache"}  # a new engine holds the checkpoint's weights and its KV cache
        self._policy = model
        self._weights_current = False
        if sleep:
            self._sleep()  # free the GPU for the trainer until the first generate

    # -------------------------------------------------------------------------------------------- engine state
    def _wake(self, tag: str) -> None:
        if tag not in self._awake:
            self.llm.wake_up(tags=[tag])
            self._awake.add(tag)

    def _sleep(self) -> None:
        self.llm.sleep(level=SLEEP_LEVEL)
        self._awake.clear()
        self._weights_current = False  # level 2 dropped them

    def _engine_model(self):
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        runner = getattr(worker, "model_runner", None) or worker.worker.model_runner
        return runner.model

    @torch.no_grad()
    def _push_weights(self) -> None:
        # A LoRA policy: the base model's names, adapted weights merged (W + scale·B·A), as vLLM's model expects.
        weights = ((name, p.detach()) for name, p in merged_state_dict(self._policy).items())
        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(lambda engine_model: engine_model.load_weights(weights))
        else:
            self._engine_model().load_weights(weights)
        self._weights_current = True

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Record the policy; its weights are pushed at the next `generate` (as they are then)."""
        self._policy = model
        self._weights_current = False

    def _prepare(self) -> None:
        """Weights first (the push needs them resident), then the KV cache, then a prefix-cache reset: cached prefixes
        were computed with the old weights, and after a sleep their blocks no longer exist."""
        reset = not self._weights_current or "kv_cache" not in self._awake
        self._wake("weights")
        if not self._weights_current:
            self._push_weights()
        self._wake("kv_cache")
        if reset:
            self.llm.reset_prefix_cache()

    # ------------------------------------------------------------------------------------------------ sampling
    def generate(self, prompts: Sequence[object], n: int, sampling: SamplingParams) -> RolloutBatch:
        encoded, prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, self.pad_id)
        if self.max_model_len is not None:
            longest = max(len(ids) for ids in encoded)
            if longest + sampling.max_new_tokens > self.max_model_len:
                raise ValueError(
                    f"a prompt of {longest} tokens + rollout.max_new_tokens={sampling.max_new_tokens} exceeds "
                    f"rollout.max_model_len={self.max_model_len}; raise it or shorten the prompts"
                )
        params = self.params_type(**sampling_kwargs(n, sampling, self.eos_ids))
        self._prepare()
        try:
            # A plain {"prompt_token_ids": ...} dict is vLLM's TokensPrompt (a TypedDict): no re-tokenisation.
            outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=False)
        finally:
            if self.sleep:
                self._sleep()
        if len(outputs) != len(prompts) or any(len(request.outputs) != n for request in outputs):
            raise RuntimeError(f"vLLM returned {[len(r.outputs) for r in outputs]} samples per request, expected {n}")
        # Requests come back in prompt order; a request's samples are ordered by their index.
        samples = [sample for request in outputs for sample in sorted(request.outputs, key=lambda s: s.index)]
        rows = [list(sample.token_ids) for sample in samples]
        width = max(1, max(len(r) for r in rows))
        completions = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        logprobs = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, (row, sample) in enumerate(zip(rows, samples)):
            completions[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
            logprobs[i, : len(row)] = torch.as_tensor(sampled_logprobs(row, sample.logprobs), dtype=torch.float32)
        mask = completion_mask_until_eos(completions, self.eos_ids)
        lengths = torch.as_tensor([len(r) for r in rows])
        mask &= (torch.arange(width)[None, :] < lengths[:, None]).long()
        truncated = truncated_samples(completions, mask, self.eos_ids, sampling.max_new_tokens)
        completions = torch.where(mask.bool(), completions, torch.full_like(completions, self.pad_id))
        decoded = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        groups = len(prompts)
        return RolloutBatch(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completions.view(groups, n, width),
            completion_mask=mask.view(groups, n, width),
            texts=[decoded[g * n : (g + 1) * n] for g in range(groups)],
            truncated=truncated.view(groups, n),
            sampler_logprobs=(logprobs * mask).view(groups, n, width),
        )
