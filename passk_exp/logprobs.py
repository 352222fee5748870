"""Per-token log-probabilities (and entropies) of sampled completions under a causal LM: the forward of the RL step.

Two forwards give the same numbers (and the same gradients):

* plain: each of the n completions of a group is concatenated with its prompt and the [G·n, P+C] batch runs at once;
* shared prefix (default): each prompt runs ONCE, its key/value cache is repeated to its n completions with
  `repeat_interleave` (differentiable, so the gradient of every completion flows back into the prompt's computation:
  the result is the same gradient as the plain forward), and the [G·n, C] completions run on top of that cache.
  For n completions of C tokens on a P-token prompt this trades G·n·(P+C) token-forwards for G·(P + n·C).

Left-padded prompts: positions count real tokens only (cumsum of the mask), and the 2-D attention mask over prompt and
completion hides pad keys in both. Only completion tokens get log-probs, the vocabulary projection runs only on real
completion tokens, in chunks of `token_chunk` tokens, each chunk under activation checkpointing when gradients are on, so
at most one chunk's [token_chunk, V] logits is alive in the forward and in the backward (at the cost of re-running the
head matmul of each chunk in the backward). Logits are upcast to fp32 before the log-softmax (bf16 autocast included).

The distribution is the sampler's: `temperature` divides the logits before the log-softmax (and the entropy), so the
gradient is of the policy that drew the completions (rollout/sampling.py samples softmax(logits / T)).

Left out: top-p renormalisation (the nucleus depends on logits at the sampler's float noise, and a recomputed forward
can move a boundary token in or out of it, so `rollout.top_p < 1` is refused for training in config.py), gradient
checkpointing of the decoder (the model's business; it disables the key/value cache, so the shared prefix turns itself
off), and models whose cache is not a plain per-layer key/value store (sliding-window, linear-attention, hybrid), which
use the plain forward.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

log = logging.getLogger(__name__)

# Architectures whose logits are exactly `lm_head(last_hidden_state)` (no soft-capping or scaling after the head), so
# the head can run on selected tokens in chunks. Other models get their logits from their own forward.
_PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3", "olmo2"})
_warned_fallback: set[int] = set()


@contextlib.contextmanager
def training_attention(model, choice: str, device: str | torch.device):
    """Run the block with the model's attention kernel set to `choice` (`auto` | `eager` | `sdpa`), then restore it.

    `auto` picks eager attention on CPU: for the RL step's short sequences its backward is much cheaper than the CPU
    SDPA flash kernel's (SmolLM2-135M, 64 completions, fwd+bwd of the update: 6.5 vs 8.3 s in bf16, 10.3 vs 11.5 s in
    fp32, bench/RESULTS.md), while decoding stays faster with SDPA, so only the update switches. Elsewhere `auto`
    leaves the model's own choice. Wrap forward AND backward: a checkpointed layer re-runs its forward in the backward.
    """
    wanted = ("eager" if torch.device(device).type == "cpu" else None) if choice == "auto" else choice
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if wanted is None or before is None or before == wanted or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation(wanted)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@dataclass
class TokenStats:
    logprobs: Tensor  # [G, n, C] log pi(completion token t | prefix), 0.0 where completion_mask is 0
    entropy: Tensor | None  # [G, n, C] entropy of the full next-token distribution (no grad), 0.0 on padding; or None


def _cache_kwarg(module: nn.Module) -> str | None:
    """The name under which `module.forward` takes a key/value cache (`cache` in transformers >= 5.x)."""
    parameters = inspect.signature(module.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    return None


def supports_shared_prefix(model) -> bool:
    """True when the prompt's key/value cache can be computed once and repeated to the completions of its group.

    Needs a decoder that accepts a cache, every cache layer a plain `DynamicLayer` (full attention: sliding-window and
    linear-attention caches drop or summarise states), and decoder gradient checkpointing off (it discards the cache).
    """
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x name
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if checkpointing:
        return False
    config = getattr(model, "config", None)
    get_decoder = getattr(model, "get_decoder", None)
    if config is None or get_decoder is None or _cache_kwarg(get_decoder()) is None:
        return False
    try:
        cache = DynamicCache(config=config)
    except Exception:  # a config the cache factory cannot read is a config we cannot vouch for
        return False
    # No layers yet means "created lazily as DynamicLayer" (a config without layer types).
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _plain_head(model) -> nn.Linear | None:
    """The output projection when logits are exactly `head(hidden)`, else None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if isinstance(head, nn.Linear) and model_type in _PLAIN_HEAD_MODEL_TYPES:
        return head
    return None


def _features(model, head, ids: Tensor, mask: Tensor, positions: Tensor, cache, keep: int) -> Tensor:
    """[B, T] tokens -> [B, keep, D] features of the last `keep` positions: hidden states if `head`, else logits."""
    if head is not None:
        decoder = model.get_decoder()
        extra = {_cache_kwarg(decoder): cache, "use_cache": True} if cache is not None else {"use_cache": False}
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, **extra)
        return out.last_hidden_state[:, -keep:]
    extra = {_cache_kwarg(model): cache, "use_cache": True} if cache is not None else {"use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        extra["logits_to_keep"] = keep
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, **extra)
    return out.logits[:, -keep:]


def _chunk_stats(
    head: Callable[[Tensor], Tensor], features: Tensor, targets: Tensor, with_entropy: bool, temperature: float
):
    """[T, D] features, [T] targets -> ([T] log-prob of the target, [T] entropy or None) under softmax(logits / T),
    full softmax in fp32."""
    logits = head(features).float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)
    logprobs = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    entropy = None
    if with_entropy:
        # Last, and without grad: under checkpointing the backward's recompute stops once the saved tensors above
        # exist again, so the entropy is computed once.
        with torch.no_grad():
            entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logprobs, entropy


def _token_stats(head, features: Tensor, targets: Tensor, token_chunk: int, with_entropy: bool, temperature: float):
    """[T, D], [T] -> ([T], [T] | None), the vocabulary projection and log-softmax run `token_chunk` rows at a time."""
    # At least one chunk, empty when no completion token is real: the result stays connected to the parameters (zero
    # gradients), which a distributed update's zero-weight padding group needs (Distributed.even_micro_batches).
    starts = range(0, max(features.shape[0], 1), token_chunk)
    recompute = torch.is_grad_enabled() and len(starts) > 1
    logprobs, entropies = [], []
    for start in starts:
        chunk = slice(start, start + token_chunk)
        args = (head, features[chunk], targets[chunk], with_entropy, temperature)
        lp, ent = checkpoint(_chunk_stats, *args, use_reentrant=False) if recompute else _chunk_stats(*args)
        logprobs.append(lp)
        entropies.append(ent)
    return torch.cat(logprobs), (torch.cat(entropies) if with_entropy else None)


def _check_shapes(prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor) -> None:
    if prompt_ids.ndim != 2 or prompt_mask.shape != prompt_ids.shape:
        raise ValueError(f"prompt_ids {tuple(prompt_ids.shape)} / prompt_mask {tuple(prompt_mask.shape)} must be one [G, P]")
    if completion_ids.ndim != 3 or completion_mask.shape != completion_ids.shape:
        raise ValueError(
            f"completion_ids {tuple(completion_ids.shape)} / completion_mask {tuple(completion_mask.shape)} must be one [G, n, C]"
        )
    if completion_ids.shape[0] != prompt_ids.shape[0]:
        raise ValueError(f"{prompt_ids.shape[0]} prompts but {completion_ids.shape[0]} completion groups; they must match")
    if not bool(prompt_mask[:, -1].all()):
        raise ValueError("prompt_mask has a 0 in its last column: prompts must be left-padded and non-empty")


def completion_logprobs(
    model,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    *,
    shared_prefix: bool = True,
    token_chunk: int = 2048,
    with_entropy: bool = False,
    temperature: float = 1.0,
) -> TokenStats:
    """log pi(y_t | x, y_<t) for every completion token: prompts [G, P] (left-padded, mask 1 = real), completions
    [G, n, C] (right-padded, mask 1 up to and including EOS) -> TokenStats with [G, n, C] tensors on the model's device.

    `shared_prefix=True` runs each prompt once and repeats its cache to the n completions (module docstring); a model
    for which `supports_shared_prefix` is False falls back to the plain forward with one logged line. `temperature`
    is the sampler's: log-probs and entropies are of softmax(logits / temperature).
    """
    _check_shapes(prompt_ids, prompt_mask, completion_ids, completion_mask)
    if token_chunk < 1:
        raise ValueError(f"token_chunk={token_chunk} must be >= 1")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0 (the sampling temperature)")
    if shared_prefix and not supports_shared_prefix(model):
        if id(model) not in _warned_fallback:
            _warned_fallback.add(id(model))
            log.info("%s cannot share the prompt's cache: using the plain forward", type(model).__name__)
        shared_prefix = False
    groups, n, length = completion_ids.shape
    prompt_length = prompt_ids.shape[1]
    rows = groups * n
    mask = completion_mask.reshape(rows, length).long()
    full_mask = torch.cat([prompt_mask.long().repeat_interleave(n, dim=0), mask], dim=1)  # [G·n, P+C]
    # Positions count real tokens only, so a left-padded prompt sees the same rotary positions as an unpadded one.
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    ids = completion_ids.reshape(rows, length)
    head = _plain_head(model)

    if shared_prefix:
        cache = DynamicCache(config=model.config)
        prompt_positions = positions[::n, :prompt_length]
        last = _features(model, head, prompt_ids, prompt_mask.long(), prompt_positions, cache, keep=1)  # [G, 1, D]
        if cache.get_seq_length() != prompt_length:
            raise RuntimeError(f"the prompt forward left {cache.get_seq_length()} cached tokens, expected {prompt_length}")
        cache.batch_repeat_interleave(n)  # [G, ...] -> [G·n, ...], differentiable
        completion = _features(model, head, ids, full_mask, positions[:, prompt_length:], cache, keep=length)
        # Token t is predicted by the feature before it: the prompt's last position for t = 0, completion t-1 after.
        features = torch.cat([last.repeat_interleave(n, dim=0), completion[:, :-1]], dim=1)  # [G·n, C, D]
    else:
        sequence = torch.cat([prompt_ids.repeat_interleave(n, dim=0), ids], dim=1)
        features = _features(model, head, sequence, full_mask, positions, None, keep=length + 1)[:, :-1]

    # Only real completion tokens go through the vocabulary projection.
    selected = mask.reshape(-1).nonzero().squeeze(-1)
    flat = features.reshape(rows * length, features.shape[-1]).index_select(0, selected)
    project = head if head is not None else (lambda x: x)
    logprobs, entropy = _token_stats(project, flat, ids.reshape(-1)[selected], token_chunk, with_entropy, temperature)

    def scatter(values: Tensor) -> Tensor:
        out = values.new_zeros(rows * length)
        return out.index_put((selected,), values).reshape(groups, n, length)

    return TokenStats(scatter(logprobs), scatter(entropy).detach() if entropy is not None else None)
