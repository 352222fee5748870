"""Padding and EOS masks of the rollout layout, and prompt rendering."""

import torch

from passk_exp.rollout.base import RolloutBatch, completion_mask_until_eos, left_pad, render_prompt, truncated_samples


def test_left_pad_aligns_prompts_to_the_right():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_completion_mask_keeps_the_first_eos_and_drops_what_follows():
    eos = 2
    completions = torch.tensor([[4, 5, 2, 2, 2], [4, 2, 9, 2, 7], [4, 5, 6, 7, 8], [2, 2, 2, 2, 2]])
    mask = completion_mask_until_eos(completions, [eos])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_truncated_means_every_allowed_token_used_and_no_eos_among_them():
    eos, limit = 2, 4
    completions = torch.tensor([[4, 5, 6, 7], [4, 5, 6, 2], [4, 2, 2, 2], [4, 5, 9, 9], [3, 3, 3, 3]])
    mask = completion_mask_until_eos(completions, [eos])
    mask[3, 2:] = 0  # a backend that stopped early (shorter than the limit, no EOS): not cut by the limit
    assert truncated_samples(completions, mask, [eos], limit).tolist() == [True, False, False, False, True]
    assert truncated_samples(completions, mask, [eos], limit + 1).tolist() == [False] * 5


def test_completion_mask_handles_several_eos_ids():
    mask = completion_mask_until_eos(torch.tensor([[4, 3, 5], [4, 5, 1]]), [1, 3])
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]


class _TemplateTokenizer:
    chat_template = "x"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "|".join(m["content"] for m in messages) + "|<assistant>"


def test_render_prompt_uses_the_chat_template_for_messages_and_keeps_text():
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 3 + 5?"}]
    assert render_prompt(_TemplateTokenizer(), messages) == "Answer briefly.|What is 3 + 5?|<assistant>"
    assert render_prompt(_TemplateTokenizer(), "plain text") == "plain text"


def test_select_keeps_groups_aligned():
    batch = RolloutBatch(
        prompt_ids=torch.arange(6).view(3, 2),
        prompt_mask=torch.ones(3, 2, dtype=torch.long),
        completion_ids=torch.arange(3 * 2 * 4).view(3, 2, 4),
        completion_mask=torch.ones(3, 2, 4, dtype=torch.long),
        texts=[["a", "b"], ["c", "d"], ["e", "f"]],
        truncated=torch.tensor([[True, False], [False, False], [False, True]]),
    )
    sub = batch.select([2, 0])
    assert sub.prompt_ids.tolist() == [[4, 5], [0, 1]]
    assert sub.texts == [["e", "f"], ["a", "b"]]
    assert sub.completion_ids[0].tolist() == batch.completion_ids[2].tolist()
    assert sub.truncated.tolist() == [[False, True], [True, False]]
