"""The update's log-probs are of the distribution the completions were drawn from: softmax(logits / T), for the
trainer's own path (PolicyUpdate.logprobs under the update's attention kernel, shared prefix on and off) against the
logits `generate` handed to the sampler, and top_p < 1 is refused for training until the nucleus is renormalised."""

from __future__ import annotations

import pytest
import torch

from conftest import compose, tiny_overrides
from passk_exp.config import validate_config
from passk_exp.logprobs import training_attention
from passk_exp.rollout import hf as hf_rollout
from passk_exp.rollout.sampling import InverseCdfSampler


class _RecordingSampler(InverseCdfSampler):
    """The real sampler, keeping a copy of every decoding step's logits [rows, V] before it draws."""

    seen: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        type(self).seen.append(scores.detach().clone())
        return super().__call__(input_ids, scores)


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3])
@pytest.mark.parametrize("shared_prefix", [True, False])
def test_trainer_log_probs_equal_the_sampling_distribution(tmp_path, monkeypatch, temperature, shared_prefix):
    from passk_exp.trainer import Trainer

    cfg = compose(
        tiny_overrides(
            tmp_path,
            precision="fp32",
            **{"rollout.temperature": temperature, "train.shared_prefix": str(shared_prefix).lower()},
        )
    )
    validate_config(cfg)
    trainer = Trainer(cfg)
    assert trainer.shared_prefix is shared_prefix
    monkeypatch.setattr(hf_rollout, "InverseCdfSampler", _RecordingSampler)
    _RecordingSampler.seen = []
    n = 3
    batch = trainer.backend.generate([p.prompt for p in trainer.eval_problems[:2]], n, trainer.sampling)
    rows, width = batch.groups * n, batch.completion_ids.shape[-1]
    assert len(_RecordingSampler.seen) >= width and _RecordingSampler.seen[0].shape[0] == rows  # one generate chunk

    tokens = batch.completion_ids.reshape(rows, width)
    steps = torch.stack(_RecordingSampler.seen[:width], dim=1)  # [rows, C, V]: the logits each token was drawn from
    sampled = torch.log_softmax(steps.double() / temperature, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
    untempered = torch.log_softmax(steps.double(), dim=-1).gather(-1, tokens[..., None]).squeeze(-1)

    tensors = [batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask]
    with torch.no_grad(), training_attention(trainer.model, cfg.train.attention, trainer.device):
        stats = trainer.update.logprobs(trainer.model, tensors, with_entropy=True)
    mask = batch.completion_mask.reshape(rows, width).bool()
    got = stats.logprobs.reshape(rows, width).double()
    torch.testing.assert_close(got[mask], sampled[mask], atol=1e-4, rtol=0)
    tempered = torch.log_softmax(steps.double() / temperature, -1)
    entropy = -(tempered.exp() * tempered).sum(-1)
    got_entropy = stats.entropy.reshape(rows, width).double()
    torch.testing.assert_close(got_entropy[mask], entropy[mask], atol=1e-4, rtol=0)
    if temperature != 1.0:  # the check can tell the tempered distribution from the model's own
        assert float((sampled - untempered)[mask].abs().max()) > 1e-3


def test_top_p_below_one_is_refused_for_training_but_not_for_evaluation_only(tmp_path):
    with pytest.raises(ValueError) as error:
        validate_config(compose(tiny_overrides(tmp_path, **{"rollout.top_p": 0.9})))
    assert "rollout.top_p=0.9 < 1 cannot train" in str(error.value) and "\n" not in str(error.value)
    validate_config(compose(tiny_overrides(tmp_path, steps=0, **{"rollout.top_p": 0.9})))
