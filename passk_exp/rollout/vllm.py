"""Rollouts with vLLM on a CUDA GPU, colocated with the trained policy (one process, one GPU).

vLLM keeps its own bf16 copy of the weights, so `sync_weights` pushes the policy's current parameters into it before
each step's sampling. The engine runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so the push is a plain
`load_weights` on the engine's model, with no serialisation. Sampling uses exactly the run's temperature / top-p and no
top-k, like the HF backend, so Pass@k is estimated under the same distribution. Needs `pip install -e .[gpu]`.
"""

from __future__ import annotations

import os
from typing import Sequence

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


class VLLMRollout:
    def __init__(
        self, model, tokenizer, *, precision: str, batch_size: int = 4096, gpu_memory_utilization: float = 0.35
    ) -> None:
        if not torch.cuda.is_available():
            raise ValueError("rollout=vllm needs a CUDA GPU; use rollout=hf on CPU")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError as error:
            raise ValueError("rollout=vllm needs vLLM: pip install -e '.[gpu]'") from error
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        source = model.config._name_or_path  # the local safetensors dir (embedded model) or the HF id
        self.llm = LLM(
            model=source,
            tokenizer=source,
            dtype="bfloat16" if precision == "bf16" else "float32",
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,  # the n samples of a prompt share its prefill
        )
        self.sync_weights(model)

    def _engine_model(self):
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        runner = getattr(worker, "model_runner", None) or worker.worker.model_runner
        return runner.model

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        # A LoRA policy: the base model's names, adapted weights merged (W + scale·B·A), as vLLM's model expects.
        weights = ((name, p.detach()) for name, p in merged_state_dict(model).items())
        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(lambda engine_model: engine_model.load_weights(weights))
        else:
            self._engine_model().load_weights(weights)
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights

    def generate(self, prompts: Sequence[object], n: int, sampling: SamplingParams) -> RolloutBatch:
        from vllm import SamplingParams as VLLMSampling
        from vllm.inputs import TokensPrompt

        encoded, prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, self.pad_id)
        params = VLLMSampling(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=-1,
            max_tokens=sampling.max_new_tokens,
            stop_token_ids=self.eos_ids,
        )
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params, use_tqdm=False)
        rows = [list(sample.token_ids) for request in outputs for sample in request.outputs]
        width = max(1, max(len(r) for r in rows))
        completions = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            completions[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask = completion_mask_until_eos(completions, self.eos_ids)
        lengths = torch.as_tensor([len(r) for r in rows])
        mask &= (torch.arange(width)[None, :] < lengths[:, None]).long()
        truncated = truncated_samples(completions, mask, self.eos_ids, sampling.max_new_tokens)
        decoded = self.tokenizer.batch_decode(
            torch.where(mask.bool(), completions, torch.full_like(completions, self.pad_id)), skip_special_tokens=True
        )
        groups = len(prompts)
        return RolloutBatch(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completions.view(groups, n, width),
            completion_mask=mask.view(groups, n, width),
            texts=[decoded[g * n : (g + 1) * n] for g in range(groups)],
            truncated=truncated.view(groups, n),
        )
