"""Truncated importance-sampling weights (passk_exp/importance.py) and their place in the policy-gradient loss."""

from __future__ import annotations

import math

import pytest
import torch

from passk_exp.importance import ImportanceCorrection, truncated_is_weights
from passk_exp.loss import policy_gradient_loss


def test_weights_are_the_capped_probability_ratio_on_completion_tokens_only():
    old = torch.log(torch.tensor([[[0.5, 0.2, 0.9, 0.3]]], dtype=torch.float64))
    sampler = torch.log(torch.tensor([[[0.25, 0.4, 0.1, 0.3]]], dtype=torch.float64))
    mask = torch.tensor([[[1, 1, 1, 0]]])
    result = truncated_is_weights(old, sampler, mask, cap=3.0)
    # ratios 2, 0.5, 9 -> capped at 3; the masked position gets weight 1 and counts nowhere
    torch.testing.assert_close(result.weights, torch.tensor([[[2.0, 0.5, 3.0, 1.0]]]), rtol=1e-6, atol=0)
    assert result.tokens == 3 and result.truncated == 1
    assert result.weight_sum == pytest.approx(5.5)


def test_a_huge_ratio_stays_finite_and_no_gradient_flows_through_the_weights():
    old = torch.tensor([[[0.0, -1.0]]], requires_grad=True)
    sampler = torch.tensor([[[-500.0, -1.0]]])  # ratio e^500 would overflow float32
    result = truncated_is_weights(old, sampler, torch.ones(1, 1, 2), cap=2.0)
    assert result.weights.tolist() == [[[2.0, 1.0]]] and not result.weights.requires_grad


@pytest.mark.parametrize("cap", [0.0, -1.0, math.inf, math.nan])
def test_a_bad_cap_is_refused(cap):
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.ones(1, 1, 1), cap=cap)
    with pytest.raises(ValueError, match="rollout.is_cap"):
        ImportanceCorrection(cap)


def test_loss_gradient_is_the_weighted_per_token_gradient():
    generator = torch.Generator().manual_seed(0)
    logprobs = (-torch.rand(2, 3, 5, generator=generator, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    mask = (torch.rand(2, 3, 5, generator=generator) < 0.8).long()
    weights = torch.rand(2, 3, 5, generator=generator, dtype=torch.float64) * 2
    parts = policy_gradient_loss(
        logprobs, logprobs.detach(), adv, mask, clip_eps=0.2, agg="constant", denominator=30.0, token_weights=weights
    )
    parts.loss.backward()
    # ratio = 1 at the old policy: d loss / d log pi_t = -w_t * A_i * mask_t / denominator
    expected = -weights * adv[..., None] * mask / 30.0
    torch.testing.assert_close(logprobs.grad, expected)
    plain = policy_gradient_loss(logprobs, logprobs.detach(), adv, mask, clip_eps=0.2, agg="constant", denominator=30.0)
    ones = policy_gradient_loss(
        logprobs, logprobs.detach(), adv, mask, clip_eps=0.2, agg="constant", denominator=30.0,
        token_weights=torch.ones_like(weights),
    )  # fmt: skip
    torch.testing.assert_close(plain.loss, ones.loss)


def test_correction_accumulates_step_metrics_and_stays_off_without_sampler_logprobs():
    correction = ImportanceCorrection(cap=2.0)
    mask = torch.ones(1, 1, 2)
    assert correction.weights(torch.zeros(1, 1, 2), None, mask) is None  # rollout=hf: nothing to correct
    assert correction.metrics() == {}
    correction.weights(torch.log(torch.tensor([[[0.5, 0.9]]])), torch.log(torch.tensor([[[0.5, 0.3]]])), mask)
    correction.weights(torch.log(torch.tensor([[[0.2, 0.2]]])), torch.log(torch.tensor([[[0.4, 0.2]]])), mask)
    metrics = correction.metrics()
    assert metrics["train/is_weight_mean"] == pytest.approx((1 + 2 + 0.5 + 1) / 4)
    assert metrics["train/is_clip_fraction"] == pytest.approx(1 / 4)
    assert correction.metrics() == {}  # reset for the next step
    assert ImportanceCorrection(None).weights(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), mask) is None


@pytest.mark.parametrize(("sampler_logprob", "weight_mean", "clip_fraction"), [(-1e4, 2.0, 1.0), (0.0, None, 0.0)])
def test_trainer_weights_tokens_by_the_sampler_logprobs_a_rollout_carries(
    tmp_path, sampler_logprob, weight_mean, clip_fraction
):
    """A rollout with sampler log-probs (as rollout=vllm returns) gets the truncated weights in the update: a sampler
    far less likely than the policy (log p = -1e4) caps every token at C = 2; a sampler that gave every token
    probability 1 (log p = 0) leaves min(π_old, 2) = π_old < 1 and caps none."""
    from conftest import compose, tiny_overrides
    from passk_exp.trainer import Trainer

    cfg = compose(tiny_overrides(tmp_path, precision="fp32", **{"train.skip_uninformative": "false"}))
    trainer = Trainer(cfg)
    assert trainer.update.importance.cap is None  # rollout=hf: the policy samples itself, nothing to correct
    trainer.update.importance = ImportanceCorrection(cap=2.0)
    generate = trainer.backend.generate

    def with_sampler_logprobs(prompts, n, sampling):
        batch = generate(prompts, n, sampling)
        batch.sampler_logprobs = torch.full(batch.completion_ids.shape, sampler_logprob) * batch.completion_mask
        return batch

    trainer.backend.generate = with_sampler_logprobs
    metrics = trainer.train_step([next(trainer.bench.train_stream(0)) for _ in range(2)])
    assert metrics["train/is_clip_fraction"] == clip_fraction
    if weight_mean is not None:
        assert metrics["train/is_weight_mean"] == pytest.approx(weight_mean)
    else:
        assert 0 < metrics["train/is_weight_mean"] < 1
