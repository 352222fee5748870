"""The rollout interface: prompts in, n sampled completions per prompt out, as padded token tensors plus text.

Backends (transformers `generate` on CPU, vLLM on GPU) differ only in how they sample; the trainer sees one layout:
prompts left-padded `[G, P]` (one row per group) and completions right-padded `[G, n, C]` whose mask is 1 up to and
including the first EOS. Prompt rendering (chat template or plain text) lives here too, because both backends need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor

@dataclass
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0


@dataclass
class RolloutBatch:
    prompt_ids: Tensor  # [G, P] left-padded
    prompt_mask: Tensor  # [G, P] 1 = real token
    completion_ids: Tensor  # [G, n, C] right-padded with pad_token_id
    completion_mask: Tensor  # [G, n, C] 1 up to and including the first EOS
    texts: list[list[str]]  # [G][n] decoded completions, special tokens removed
    truncated: Tensor  # [G, n] bool: the sample was cut at max_new_tokens without an EOS (see `truncated_samples`)
    # [G, n, C] float32 log-prob of each completion token under the distribution the sampler drew it from, where the
    # sampler is not the policy module itself (vLLM); None when it is (HF). Feeds the truncated importance weights.
    sampler_logprobs: Tensor | None = None

    @property
    def groups(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def n(self) -> int:
        return self.completion_ids.shape[1]

    def completion_lengths(self) -> Tensor:
        """[G, n] number of completion tokens (EOS included)."""
        return self.completion_mask.sum(-1)

    def select(self, groups: Tensor | Sequence[int]) -> "RolloutBatch":
        index = torch.as_tensor(groups, dtype=torch.long)
        return RolloutBatch(
            self.prompt_ids[index],
            self.prompt_mask[index],
            self.completion_ids[index],
            self.completion_mask[index],
            [self.texts[i] for i in index.tolist()],
            self.truncated[index],
            None if self.sampler_logprobs is None else self.sampler_logprobs[index],
        )


class RolloutBackend(Protocol):
    def generate(self, prompts: Sequence[object], n: int, sampling: SamplingParams) -> RolloutBatch: ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the sampler use the policy's current weights (a no-op when it samples from the policy itself)."""
        ...


def render_prompt(tokenizer, prompt: object) -> str:
    """Chat messages go through the tokenizer's chat template (generation prompt appended); text stays as it is."""
    if isinstance(prompt, str):
        return prompt
    messages = [dict(m) for m in prompt]  # type: ignore[union-attr]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # A base model without a template: plain "role: content" turns, the convention of completion-style prompting.
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


def encode_prompts(tokenizer, prompts: Sequence[object], pad_id: int) -> tuple[list[list[int]], Tensor, Tensor]:
    """Render and tokenize prompts -> (token lists, [G, P] left-padded ids, [G, P] mask)."""
    texts = [render_prompt(tokenizer, p) for p in prompts]
    # Chat templates already carry their special tokens; plain prompts get the tokenizer's usual ones (BOS).
    encoded = [tokenizer(text, add_special_tokens=isinstance(p, str))["input_ids"] for text, p in zip(texts, prompts)]
    ids, mask = left_pad(encoded, pad_id)
    return encoded, ids, mask


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token lists -> ([N, L] ids, [N, L] mask), padded on the left as decoder-only generation expects."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def completion_mask_until_eos(completions: Tensor, eos_ids: Sequence[int]) -> Tensor:
    """[..., C] generated ids -> mask that is 1 up to and including the first EOS token, 0 after it.

    Without an EOS the whole row counts (the completion was cut at max_new_tokens). Padding after an EOS is masked by
    the 'after the first EOS' rule, which also works when the pad id equals the EOS id (common).
    """
    is_eos = _is_eos(completions, eos_ids)
    # Count EOS tokens strictly before each position: the mask keeps positions with none before them.
    eos_before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()
    return (eos_before == 0).long()


def truncated_samples(completions: Tensor, mask: Tensor, eos_ids: Sequence[int], max_new_tokens: int) -> Tensor:
    """[..., C] generated ids and their completion mask -> [...] bool, True where the sample used all `max_new_tokens`
    tokens and none of them is an EOS: the limit cut it, the model did not finish it. A completion whose last allowed
    token is its EOS is finished, not truncated."""
    ended = (_is_eos(completions, eos_ids) & mask.bool()).any(dim=-1)
    return (mask.sum(dim=-1) >= max_new_tokens) & ~ended


def _is_eos(completions: Tensor, eos_ids: Sequence[int]) -> Tensor:
    is_eos = torch.zeros_like(completions, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= completions == eos
    return is_eos
