"""Prompt formatting from configuration: chat messages or plain text, optional system prompt and few-shot examples.

The chat template itself (special tokens, generation prompt) is the tokenizer's business and is applied by the rollout
layer; this file only decides the messages, or the plain text of a completion-style prompt.
"""

from __future__ import annotations

from typing import Sequence


def format_prompt(question: str, options, shots: Sequence[tuple[str, str]] = ()) -> str | list[dict[str, str]]:
    """question + options (chat, system_prompt, prompt_template) + few-shot (question, reply) pairs -> prompt.

    Chat: [system?, (user, assistant) per shot, user]. Plain text: system paragraph, then each shot as its formatted
    question followed by a space and its reply, then the formatted question (the completion continues it).
    """
    template: str = options.prompt_template
    if options.chat:
        messages: list[dict[str, str]] = []
        if options.system_prompt:
            messages.append({"role": "system", "content": options.system_prompt})
        for shot_question, reply in shots:
            messages.append({"role": "user", "content": template.format(question=shot_question)})
            messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": template.format(question=question)})
        return messages
    parts: list[str] = []
    if options.system_prompt:
        parts.append(options.system_prompt.rstrip() + "\n\n")
    for shot_question, reply in shots:
        parts.append(f"{template.format(question=shot_question)} {reply.strip()}\n\n")
    parts.append(template.format(question=question))
    return "".join(parts)
