"""The policy-gradient loss: gradient scale, clipping, aggregation, accumulation and the k3 KL penalty."""

import pytest
import torch

from passk_exp.loss import batch_denominator, k3_kl, policy_gradient_loss


def _batch(seed=0, groups=3, n=4, tokens=5):
    g = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(groups, n, tokens, generator=g, dtype=torch.float64) * 3
    lengths = torch.randint(1, tokens + 1, (groups, n), generator=g)
    mask = (torch.arange(tokens)[None, None, :] < lengths[..., None]).long()
    advantages = torch.randn(groups, n, generator=g, dtype=torch.float64)
    return logprobs, mask, advantages


def test_first_update_gradient_is_advantage_over_constant_denominator():
    logprobs, mask, adv = _batch()
    lp = logprobs.clone().requires_grad_(True)
    denom = batch_denominator("constant", mask, max_new_tokens=5)
    assert denom == 3 * 4 * 5
    parts = policy_gradient_loss(lp, lp.detach(), adv, mask, clip_eps=0.2, agg="constant", denominator=denom)
    parts.loss.backward()
    expected = -adv[..., None] * mask / denom
    torch.testing.assert_close(lp.grad, expected)
    assert float(parts.clip_fraction) == 0.0


def test_seq_mean_divides_each_completion_by_its_length():
    logprobs, mask, adv = _batch(seed=1)
    lp = logprobs.clone().requires_grad_(True)
    denom = batch_denominator("seq_mean", mask, max_new_tokens=5)
    policy_gradient_loss(lp, lp.detach(), adv, mask, clip_eps=0.2, agg="seq_mean", denominator=denom).loss.backward()
    lengths = mask.sum(-1, keepdim=True)
    torch.testing.assert_close(lp.grad, -adv[..., None] * mask / lengths / denom)


def test_token_mean_uses_the_whole_batch_token_count():
    _, mask, _ = _batch(seed=2)
    assert batch_denominator("token_mean", mask, max_new_tokens=5) == float(mask.sum())


def test_micro_batches_accumulate_to_the_full_batch_gradient():
    logprobs, mask, adv = _batch(seed=3, groups=4)
    for agg in ("constant", "token_mean", "seq_mean"):
        denom = batch_denominator(agg, mask, 5)
        full = logprobs.clone().requires_grad_(True)
        policy_gradient_loss(full, full.detach(), adv, mask, clip_eps=0.2, agg=agg, denominator=denom).loss.backward()
        split = logprobs.clone().requires_grad_(True)
        for index in (slice(0, 1), slice(1, 4)):
            part = split[index]
            policy_gradient_loss(
                part, part.detach(), adv[index], mask[index], clip_eps=0.2, agg=agg, denominator=denom
            ).loss.backward()
        torch.testing.assert_close(split.grad, full.grad)


def test_ratio_clipping_stops_the_gradient_beyond_the_trust_region():
    mask = torch.ones(1, 2, 1, dtype=torch.long)
    old = torch.zeros(1, 2, 1, dtype=torch.float64)
    # Both ratios are e^0.5 ≈ 1.65 > 1.2: with A > 0 the clipped branch is the min and has no gradient; with A < 0
    # the unclipped branch is the min and keeps its gradient.
    lp = torch.full((1, 2, 1), 0.5, dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    parts = policy_gradient_loss(lp, old, adv, mask, clip_eps=0.2, agg="constant", denominator=1.0)
    parts.loss.backward()
    assert lp.grad[0, 0, 0] == 0.0
    assert lp.grad[0, 1, 0] == pytest.approx(torch.exp(torch.tensor(0.5)).item())
    assert float(parts.clip_fraction) == pytest.approx(0.5)


def test_masked_tokens_get_no_gradient():
    logprobs, mask, adv = _batch(seed=4)
    lp = logprobs.clone().requires_grad_(True)
    policy_gradient_loss(lp, lp.detach(), adv, mask, clip_eps=0.2, agg="constant", denominator=7.0).loss.backward()
    assert bool((lp.grad[mask == 0] == 0).all())


def test_k3_kl_is_nonnegative_zero_at_equality_and_adds_beta_weighted_gradient():
    logprobs, mask, adv = _batch(seed=5)
    ref = logprobs + 0.3 * torch.randn_like(logprobs)
    kl = k3_kl(logprobs, ref)
    assert bool((kl >= 0).all())
    assert torch.equal(k3_kl(logprobs, logprobs), torch.zeros_like(logprobs))
    lp = logprobs.clone().requires_grad_(True)
    parts = policy_gradient_loss(
        lp, lp.detach(), torch.zeros_like(adv), mask, clip_eps=0.2, agg="constant", denominator=1.0,
        ref_logprobs=ref, kl_beta=0.5,
    )
    parts.loss.backward()
    # d/dlp [exp(ref - lp) - (ref - lp) - 1] = 1 - exp(ref - lp)
    torch.testing.assert_close(lp.grad, 0.5 * (1 - torch.exp(ref - logprobs)) * mask)
    assert float(parts.kl) == pytest.approx(float((kl * mask).sum() / mask.sum()))


def test_unknown_aggregation_is_refused():
    with pytest.raises(ValueError, match="token_product"):
        batch_denominator("token_product", torch.ones(1, 1, 1), 1)
