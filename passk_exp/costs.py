"""A stated cost model for one job of a sweep: GPU-hours on one H200, from the job's resolved config.

    hours = steps · (generate + verify + update) + evaluations · (generate + verify), all in seconds / 3600

* Tokens. Every completion is counted at its cap (rollout.max_new_tokens): an UPPER bound, since real completions
  stop at EOS (the truncation rate, logged as train/truncation_rate, says how far below the cap they end). Prompt
  tokens are left out (one shared prefill per group, small next to n completions of hundreds of tokens).
  Per step: B·n completions generated and trained (B = train.prompts_per_step); per evaluation: eval problems ·
  n_eval (eval problems = benchmark.eval_size, or the full test set when it is null). Dynamic sampling's
  regenerations (train.dynamic_sampling_max_rounds) are not counted: they depend on the rewards.
* Generation, vLLM: GEN_FLOPS_VLLM, 2·N FLOPs per token at the rate of a published vLLM figure (Llama-3.1-8B, bf16,
  one H100 80GB: ~12,500 output tokens/s; https://www.morphllm.com/vllm-benchmarks), scaled to other sizes by
  parameter count (compute-bound batched decoding). The H200 has the H100's bf16 peak, so the figure carries over;
  optimistic for small models (decoding is then bound by memory and overheads) and because the harness's vLLM keeps
  35 % of the GPU (rollout.gpu_memory_utilization), which caps its batch.
* Generation, transformers (rollout=hf): measured on an H200 (bench/RESULTS.md, "The GPU path on an H200"): 128
  sequences × 128 tokens in 4.14 s, i.e. HF_DECODE_STEP_S per decoding step of a batch, bound by kernel launches and
  so taken as independent of the model's size: ceil(completions / rollout.batch_size) · max_new_tokens steps.
* Update: TRAIN_FLOPS, measured on the same H200: a Qwen2.5-0.5B-shaped model (MEASURED_MODEL_PARAMS), full
  fine-tune, no activation checkpointing, 8 × 16 completions of 128 tokens in 0.12 s (6·N FLOPs per token). A job's
  update costs per token 2N (forward) + the backward: 4N for a full fine-tune, 2N (activation gradients only) with
  LoRA, 4N·t/L when only the top t of L layers train (the backward stops there); activation checkpointing adds a
  second forward of what is backpropagated; a KL regularizer adds a reference forward (2N).
* Verification: measured on CPU (bench/RESULTS.md, "Verifiers"): math-verify 55 checks/s per worker (MATH), the
  HumanEval sandbox 27.5 completions/s with 2 workers, GSM8K's numeric fast path 167,184 checks/s; the synthetic
  and procedural tasks are taken as free. The GPU waits while the CPU verifies, so it counts.
* Parameters and layers per model: the model cards (Qwen2.5: 0.49B / 1.54B / 7.61B; Qwen3-4B: 4.0B), bench/RESULTS.md
  for SmolLM2-135M (134.5M) and the tiny test model (1.61M). A model not in MODELS gets no estimate (None).

What this file leaves out: multi-GPU jobs, queueing, checkpoint I/O and model loading (minutes per job, not hours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class ModelCost:
    params: float  # N, parameters
    layers: int  # decoder layers


MODELS: dict[str, ModelCost] = {
    "tiny": ModelCost(1.61e6, 4),
    "smollm2_135m": ModelCost(134.5e6, 30),
    "qwen2.5_0.5b": ModelCost(0.49e9, 24),
    "qwen2.5_1.5b": ModelCost(1.54e9, 28),
    "qwen3_4b": ModelCost(4.0e9, 36),
    "qwen2.5_7b": ModelCost(7.61e9, 28),
}
TEST_SET_SIZE = {"gsm8k": 1319, "math": 500}  # GSM8K test split; MATH-500

MEASURED_MODEL_PARAMS = 0.402e9  # 24 layers × 14.9M + the tied 49,152 × 896 embedding (bench/gpu_check.py's shape)
TRAIN_FLOPS = 6 * MEASURED_MODEL_PARAMS * (8 * 16 * 128) / 0.12  # FLOP/s of the measured update (~3.3e14)
GEN_FLOPS_VLLM = 2 * 8.03e9 * 12_500  # FLOP/s of the published vLLM decode figure (~2.0e14)
HF_DECODE_STEP_S = 4.14 / 128  # s per decoding step of one transformers `generate` batch
VERIFY_PER_S = {"math": 55.0, "humaneval": 13.75, "gsm8k": 167_184.0}  # checks/s per verifier worker


def finetune_mode(config: Mapping[str, Any]) -> str:
    """full | lora | top_layers: the `finetune` group's name where the config has one, else from the model config."""
    finetune = config.get("finetune")
    if isinstance(finetune, Mapping) and finetune.get("name"):
        return str(finetune["name"])
    return "top_layers" if config["model"].get("trainable_layers") else "full"


def _update_flops_per_token(config: Mapping[str, Any], model: ModelCost) -> float:
    mode = finetune_mode(config)
    n = model.params
    if mode == "lora":
        backward, backpropagated = 2 * n, 1.0
    elif mode == "top_layers":
        layers = config["model"].get("trainable_layers") or (config.get("finetune") or {}).get("trainable_layers")
        backpropagated = min(int(layers or model.layers), model.layers) / model.layers
        backward = 4 * n * backpropagated
    else:
        backward, backpropagated = 4 * n, 1.0
    recompute = 2 * n * backpropagated if config["model"].get("gradient_checkpointing") else 0.0
    reference = 2 * n if config["regularizer"]["name"] == "kl" else 0.0
    return 2 * n + backward + recompute + reference


def _generate_s(config: Mapping[str, Any], model: ModelCost, completions: int) -> float:
    rollout = config["rollout"]
    if rollout["backend"] == "vllm":
        return completions * rollout["max_new_tokens"] * 2 * model.params / GEN_FLOPS_VLLM
    return math.ceil(completions / rollout["batch_size"]) * rollout["max_new_tokens"] * HF_DECODE_STEP_S


def _verify_s(config: Mapping[str, Any], completions: int) -> float:
    bench = config["benchmark"]
    per_worker = VERIFY_PER_S.get(bench["name"])
    if per_worker is None:
        return 0.0
    workers = bench.get("workers") or 1
    return completions / (per_worker * (1 if bench["name"] == "gsm8k" else workers))


def evaluations(config: Mapping[str, Any]) -> int:
    """Evaluations of a run: at step 0, every eval_every steps, and at the end (trainer._eval_due)."""
    steps, every = int(config["steps"]), int(config["eval_every"])
    if every <= 0:
        return 2 if steps > 0 else 1
    return 1 + steps // every + (1 if steps % every else 0)


def eval_problems(config: Mapping[str, Any]) -> int | None:
    bench = config["benchmark"]
    size = bench.get("eval_size")
    full = TEST_SET_SIZE.get(bench["name"])
    if size is None:
        return full
    return min(int(size), full) if full is not None else int(size)


def job_cost(config: Mapping[str, Any]) -> dict[str, float] | None:
    """Seconds per part and GPU-hours of one resolved job config; None when the model or eval size is unknown."""
    model = MODELS.get(config["model"]["name"])
    problems = eval_problems(config)
    if model is None or problems is None:
        return None
    steps = int(config["steps"])
    per_step = int(config["train"]["prompts_per_step"]) * int(config["n"])
    per_eval = problems * int(config["n_eval"])
    tokens = per_step * config["rollout"]["max_new_tokens"]
    parts = {
        "generate_s": steps * _generate_s(config, model, per_step),
        "verify_s": steps * _verify_s(config, per_step),
        "update_s": steps * tokens * _update_flops_per_token(config, model) / TRAIN_FLOPS,
        "eval_s": evaluations(config) * (_generate_s(config, model, per_eval) + _verify_s(config, per_eval)),
    }
    parts["gpu_hours"] = sum(parts.values()) / 3600
    parts["tokens_generated"] = float(steps * tokens + evaluations(config) * per_eval * config["rollout"]["max_new_tokens"])
    return parts
