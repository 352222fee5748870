"""Inverse-CDF next-token sampling (rollout/sampling.py): the distribution generate(do_sample=True) would sample."""

import pytest
import torch
from transformers import TopPLogitsWarper

from passk_exp.rollout.sampling import InverseCdfSampler, nucleus_logits, sample_next_token


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draw_frequencies_match_the_tempered_softmax(temperature):
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]]).repeat(200_000, 1)
    generator = torch.Generator().manual_seed(0)
    tokens = sample_next_token(logits, temperature, generator=generator)
    frequencies = torch.bincount(tokens, minlength=5).double() / len(tokens)
    expected = torch.softmax(logits[0].double() / temperature, dim=0)
    standard_error = (expected * (1 - expected) / len(tokens)).sqrt()
    assert frequencies[4] == 0  # a -inf logit is never drawn
    assert torch.all((frequencies - expected).abs() <= 5 * standard_error + 1e-12), (frequencies, expected)


def test_nucleus_keeps_the_smallest_set_that_reaches_top_p():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    kept = lambda top_p: torch.isfinite(nucleus_logits(logits, top_p))[0].tolist()  # noqa: E731
    assert kept(0.4) == [False, True, False, False]  # the top token alone already reaches 0.4
    assert kept(0.7) == [False, True, False, True]
    assert kept(0.9) == [False, True, True, True]
    assert kept(1.0) == [True, True, True, True]


@pytest.mark.parametrize("top_p", [0.3, 0.8, 0.95])
def test_nucleus_equals_transformers_top_p_warper(top_p):
    logits = torch.randn(16, 500, generator=torch.Generator().manual_seed(1)) * 3
    ours = torch.isfinite(nucleus_logits(logits, top_p))
    theirs = torch.isfinite(TopPLogitsWarper(top_p, min_tokens_to_keep=1)(None, logits.clone()))
    assert torch.equal(ours, theirs)


def test_processor_leaves_exactly_one_finite_score_per_row_and_generate_takes_it():
    scores = torch.randn(8, 50)
    processed = InverseCdfSampler(temperature=1.0, top_p=1.0)(torch.zeros(8, 3, dtype=torch.long), scores)
    assert torch.isfinite(processed).sum(dim=-1).tolist() == [1] * 8
    assert torch.all(processed.max(dim=-1).values == 0)


def test_temperature_zero_is_refused():
    with pytest.raises(ValueError, match="temperature=0"):
        sample_next_token(torch.zeros(1, 3), temperature=0.0)


def full_width_inverse_cdf(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The textbook draw: the float64 CDF of the whole row, one uniform per row (drawn as sample_next_token draws it)."""
    cdf = logits.double().softmax(dim=-1).cumsum(dim=-1)
    uniform = torch.rand(cdf.shape[0], 1, generator=generator, dtype=torch.float64)
    return torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).clamp_max(cdf.shape[-1] - 1).squeeze(-1)


@pytest.mark.parametrize("vocab", [5, 256, 777, 4096])
def test_blocked_draw_returns_the_full_cdf_token_for_the_same_uniform(vocab):
    logits = torch.randn(4000, vocab, generator=torch.Generator().manual_seed(vocab)) * 4
    ours = sample_next_token(logits, generator=torch.Generator().manual_seed(7))
    reference = full_width_inverse_cdf(logits, torch.Generator().manual_seed(7))
    # Only a uniform within float rounding of a token boundary may land on the neighbouring token.
    assert (ours != reference).sum() <= 2


def test_mass_on_block_edges_is_drawn_at_its_probability():
    vocab, heavy = 777, [0, 255, 256, 511, 512, 767, 768, 776]  # first/last token of each 256-token block, and the tail
    logits = torch.full((1, vocab), -30.0)
    logits[0, heavy] = torch.tensor([1.0, 2.0, 0.5, 1.5, 0.0, 2.5, 1.0, 3.0])
    draws = 200_000
    tokens = sample_next_token(logits.repeat(draws, 1), generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(tokens, minlength=vocab).double() / draws
    expected = torch.softmax(logits[0].double(), dim=0)
    standard_error = (expected * (1 - expected) / draws).sqrt()
    assert torch.all((frequencies - expected).abs()[heavy] <= 5 * standard_error[heavy])
    assert frequencies.sum() == pytest.approx(1.0) and frequencies[heavy].sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9)])
def test_logits_are_left_alone_unless_overwriting_is_allowed(temperature, top_p):
    logits = torch.randn(16, 600, generator=torch.Generator().manual_seed(3))
    kept = logits.clone()
    first = sample_next_token(logits, temperature, top_p, generator=torch.Generator().manual_seed(1))
    assert torch.equal(logits, kept)
    again = sample_next_token(logits, temperature, top_p, generator=torch.Generator().manual_seed(1), overwrite_logits=True)
    assert torch.equal(first, again)
