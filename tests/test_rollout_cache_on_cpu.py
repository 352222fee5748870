"""`rollout.cache`: the static-cache generation paths sample the distribution the trainer's log-probs assume.

Each mode keeps the same sampler (`InverseCdfSampler` on softmax(logits / T)); what changes is how `generate` computes
the logits. So the check is: the logits every token was drawn from, recorded inside `generate`, give the same
log-probs as the trainer's own update forward. `static` runs here on CPU; `static_compiled` (CUDA graphs) only on a GPU.
"""

from __future__ import annotations

import os

import pytest
import torch

from conftest import compose, tiny_overrides
from passk_exp.config import ConfigError, validate_config
from passk_exp.logprobs import training_attention
from passk_exp.rollout import hf as hf_rollout
from passk_exp.rollout.sampling import InverseCdfSampler


class _RecordingSampler(InverseCdfSampler):
    """The real sampler, keeping a copy of every decoding step's logits [rows, V] before it draws."""

    seen: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        type(self).seen.append(scores.detach().clone())
        return super().__call__(input_ids, scores)


def _check_sampled_logits_match_training_logprobs(
    tmp_path, monkeypatch, cache: str, device: str, atol: float, model: dict | None = None
):
    from passk_exp.trainer import Trainer

    temperature = 0.8
    cfg = compose(
        tiny_overrides(
            tmp_path,
            precision="fp32",
            device=device,
            **{"rollout.temperature": temperature, "rollout.cache": cache, "rollout.max_new_tokens": 8},
            **(model or {}),
        )
    )
    validate_config(cfg)
    trainer = Trainer(cfg)
    assert trainer.backend.cache == cache
    caches: list[str] = []
    forward = trainer.model.forward

    def spy(*args, **kwargs):
        # The cache argument's name changed across transformers releases (past_key_values, then cache).
        given = kwargs.get("past_key_values") if kwargs.get("past_key_values") is not None else kwargs.get("cache")
        caches.append(type(given).__name__)
        return forward(*args, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", spy)
    monkeypatch.setattr(hf_rollout, "InverseCdfSampler", _RecordingSampler)
    _RecordingSampler.seen = []
    n = 3
    batch = trainer.backend.generate([p.prompt for p in trainer.eval_problems[:2]], n, trainer.sampling)
    monkeypatch.setattr(trainer.model, "forward", forward)
    assert caches and all(name == "StaticCache" for name in caches), caches

    rows, width = batch.groups * n, batch.completion_ids.shape[-1]
    tokens = batch.completion_ids.reshape(rows, width)
    steps = torch.stack(_RecordingSampler.seen[:width], dim=1).double().cpu()  # [rows, C, V]
    sampled = torch.log_softmax(steps / temperature, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
    tensors = [t.to(trainer.device) for t in (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask)]
    with torch.no_grad(), training_attention(trainer.model, cfg.train.attention, trainer.device):
        stats = trainer.update.logprobs(trainer.model, tensors, with_entropy=False)
    mask = batch.completion_mask.reshape(rows, width).bool()
    got = stats.logprobs.reshape(rows, width).double().cpu()
    torch.testing.assert_close(got[mask], sampled[mask], atol=atol, rtol=0)


def test_static_cache_samples_the_trainers_distribution_on_cpu(tmp_path, monkeypatch):
    _check_sampled_logits_match_training_logprobs(tmp_path, monkeypatch, "static", "cpu", atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.compile CUDA graphs)")
def test_compiled_static_cache_samples_the_trainers_distribution_on_cuda(tmp_path, monkeypatch):
    torch.backends.cuda.matmul.allow_tf32 = False  # compare in true fp32
    # A GPU machine without the embedded model's GGUF (bench/gpu_check.py's) names a save_pretrained model instead.
    local = os.environ.get("PASSK_EXP_TEST_MODEL_DIR")
    model = {"model": "qwen2.5_0.5b", "model.source": "local", "model.path": local, "model.name": "local"} if local else None
    # Inductor's fused kernels round differently from eager ones: a looser bound than the CPU check's.
    _check_sampled_logits_match_training_logprobs(tmp_path, monkeypatch, "static_compiled", "cuda", atol=2e-3, model=model)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"rollout.cache": "paged"}, "rollout.cache='paged' is not one of"),
        ({"rollout.cache": "static_compiled", "device": "cpu"}, "rollout.cache=static_compiled compiles CUDA graphs"),
    ],
)
def test_bad_cache_settings_fail_in_one_line_before_any_model_loads(tmp_path, overrides, needle):
    with pytest.raises(ConfigError) as error:
        validate_config(compose(tiny_overrides(tmp_path, **overrides)))
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_compiled_cache_refuses_a_policy_off_cuda():
    model = torch.nn.Linear(2, 2)
    tokenizer = type("T", (), {"eos_token_id": 0, "pad_token_id": 0})()
    with pytest.raises(ValueError, match="static_compiled needs the policy on CUDA, not cpu"):
        hf_rollout.HFRollout(model, tokenizer, precision="fp32", cache="static_compiled")
