"""Next-token sampling by inverse CDF, plugged into transformers' `generate` as a logits processor.

Why not `generate(do_sample=True)`: it draws with `torch.multinomial`, which on CPU draws one exponential variate per
vocabulary entry. For 64 rows × SmolLM2's 49k vocabulary that is ~90 ms a token, a quarter of a whole CPU decoding
step (measured with torch.profiler, 2 cores). Inverse-CDF sampling needs one uniform per row and a cumulative sum.
The distribution is the same: softmax(logits / temperature), restricted to the top-p nucleus when top_p < 1.

`InverseCdfSampler` does the draw inside the logits-processor chain and leaves only the drawn token finite, so
`generate` runs in greedy mode and its argmax returns exactly that token; EOS handling, caches and stopping stay
transformers' own.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


def nucleus_logits(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """`logits` with every token outside the top-p nucleus set to -inf: the smallest set of most likely tokens whose
    probability reaches top_p (the most likely token is always kept). top_p >= 1 returns `logits` unchanged."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop_sorted = mass_before >= top_p  # a token is kept while the mass of the tokens ranked above it is < top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# Tokens per block of the two-level inverse CDF: the row's CDF over blocks, then the CDF inside the one drawn block.
_BLOCK = 256


def _last_positive(values: torch.Tensor) -> torch.Tensor:
    """[B, 1] index of the last entry > 0 in each row (0 for a row without one)."""
    positions = torch.arange(values.shape[-1], device=values.device)
    return torch.where(values > 0, positions, 0).amax(dim=-1, keepdim=True)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    overwrite_logits: bool = False,
) -> torch.Tensor:
    """One token id per row of `logits` [B, V], drawn from softmax(logits / temperature) within the top-p nucleus.

    Two-level inverse CDF: one uniform per row picks a block of `_BLOCK` tokens by the blocks' cumulative mass, then a
    token inside that block by the cumulative mass of its entries. That is one pass over the vocabulary (exp and a
    blocked sum) instead of a full-width softmax and cumulative sum: 3× less time per decoding step for 64 × 49k logits
    on 2 cores. The cumulative sums run in float64, so a token in the far tail keeps its probability (a float32 CDF
    over the whole vocabulary rounds a mass below ~6e-8 at its end to nothing); the unnormalised weights exp(l - max)
    are float32, exact to 1e-7 relative down to 1e-38. `overwrite_logits=True` lets it compute them in the buffer of
    float32 `logits` (for a caller that discards the logits anyway: one [B, V] buffer less per decoding step).
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 for sampling")
    scaled = logits.float()
    if scaled is logits and not overwrite_logits:
        scaled = scaled.clone()  # the caller keeps its logits; everything below works in place on this buffer
    scaled = nucleus_logits(scaled.div_(temperature) if temperature != 1.0 else scaled, top_p)
    rows, vocab = scaled.shape
    weights = scaled.sub_(scaled.amax(dim=-1, keepdim=True)).exp_()  # in [0, 1]; the most likely token has 1

    whole = vocab // _BLOCK * _BLOCK
    block_mass = weights[:, :whole].reshape(rows, -1, _BLOCK).sum(dim=-1)
    if whole < vocab:
        block_mass = torch.cat([block_mass, weights[:, whole:].sum(dim=-1, keepdim=True)], dim=-1)
    block_mass = block_mass.double()
    block_cdf = block_mass.cumsum(dim=-1)
    uniform = torch.rand(rows, 1, generator=generator, dtype=torch.float64, device=weights.device)
    target = uniform * block_cdf[:, -1:]
    # right=True: the first block whose CDF exceeds the target, so an empty block (flat CDF) is never chosen; the clamp
    # covers a target rounded up to the total.
    block = torch.searchsorted(block_cdf, target, right=True).minimum(_last_positive(block_mass))
    residual = target - (block_cdf.gather(-1, block) - block_mass.gather(-1, block))

    columns = block * _BLOCK + torch.arange(_BLOCK, device=weights.device)
    inside = weights.gather(-1, columns.clamp_max(vocab - 1)).double().masked_fill_(columns >= vocab, 0.0)
    offset = torch.searchsorted(inside.cumsum(dim=-1), residual, right=True).minimum(_last_positive(inside))
    return (block * _BLOCK + offset).squeeze(-1)


class InverseCdfSampler(LogitsProcessor):
    """Logits processor for greedy `generate`: draws the next token and masks every other one to -inf."""

    def __init__(self, temperature: float, top_p: float) -> None:
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # In place: `scores` is generate's own float32 copy of the step's logits, and a second [B, V] buffer per
        # decoding step costs more than writing over this one.
        token = sample_next_token(scores, self.temperature, self.top_p, overwrite_logits=True)
        return scores.fill_(float("-inf")).scatter_(-1, token[:, None], 0.0)
