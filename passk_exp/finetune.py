"""Fine-tune modes (`conf/finetune/`): which parameters of the loaded policy train, and what the KL reference and the
vLLM weight sync see of it.

* `top_layers` (the default): the model config's `trainable_layers` (the last N decoder layers + final norm train,
  null = all), exactly as `load_policy` applied it.
* `full`: every parameter trains, whatever the model config says.
* `lora`: low-rank adapters (peft) on the named linear layers of every decoder layer; every base weight is frozen. The
  policy becomes a peft model, so the parameters that train, and therefore what a checkpoint holds
  (checkpoint.trainable_state), are the adapter's; the KL reference is the same model with its adapters switched off
  (no copy of the weights); vLLM receives merged weights W + (alpha/r)·B·A under the base model's parameter names.

A mode is one options class in `MODES` (its fields are the keys its YAML may set) and one YAML. `parse_finetune`
checks a config before any model loads; `apply_finetune` applies it to a loaded model and counts parameters.
Left out: quantised bases (QLoRA), adapters on the embeddings or the LM head (tied to the input embedding in SmolLM2
and Qwen: a merged head would disagree with the embedding vLLM keeps), several adapters in one model.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from passk_exp.config import ConfigError
from passk_exp.keys import refuse_unknown_keys
from passk_exp.models import apply_trainable_layers, decoder_layers

DEFAULT_MODE = "top_layers"  # what a config without a `finetune` group gets: today's behaviour


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------------------------------------ modes
@dataclass(frozen=True)
class TopLayers:
    """Train what the model config's `trainable_layers` leaves trainable (load_policy applied it already)."""

    name: ClassVar[str] = "top_layers"

    def apply(self, model: nn.Module) -> nn.Module:
        return model


@dataclass(frozen=True)
class Full:
    """Train every parameter (embeddings and LM head included)."""

    name: ClassVar[str] = "full"

    def apply(self, model: nn.Module) -> nn.Module:
        apply_trainable_layers(model, None)
        return model


@dataclass(frozen=True)
class Lora:
    """Low-rank adapters (Hu et al. 2021, arXiv:2106.09685): each target linear W x becomes W x + (alpha/r)·B A x with
    A [r, in] and B [out, r] trained (B starts at zero, so step 0 is the base model) and W frozen."""

    name: ClassVar[str] = "lora"
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]

    def __post_init__(self) -> None:
        _check(_is_int(self.r) and self.r >= 1, f"finetune.r={self.r!r} must be an integer >= 1 (the adapter rank)")
        _check(_is_number(self.alpha) and self.alpha > 0, f"finetune.alpha={self.alpha!r} must be a number > 0")
        _check(
            _is_number(self.dropout) and 0 <= self.dropout < 1, f"finetune.dropout={self.dropout!r} must be in [0, 1)"
        )
        targets = self.target_modules
        _check(
            isinstance(targets, (list, tuple)) and len(targets) > 0 and all(isinstance(t, str) and t for t in targets),
            f"finetune.target_modules={targets!r} must be a non-empty list of module names (e.g. [q_proj, v_proj])",
        )
        object.__setattr__(self, "target_modules", tuple(targets))

    def apply(self, model: nn.Module) -> nn.Module:
        available = adaptable_module_names(model)
        missing = [t for t in self.target_modules if t not in available]
        _check(
            not missing,
            f"finetune.target_modules: {missing} are not linear layers of this model's decoder layers; "
            f"available: {sorted(available)}",
        )
        import peft

        config = peft.LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():  # peft asks the model by the name transformers 5.x deprecated; not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return peft.get_peft_model(model, config)


MODES: dict[str, type] = {mode.name: mode for mode in (TopLayers, Full, Lora)}


def parse_finetune(cfg: Mapping | None) -> TopLayers | Full | Lora:
    """The `finetune` config group -> its mode object; a bad name, key or value raises a one-line ConfigError.
    None (a config composed without the group) is the default mode."""
    if cfg is None:
        return MODES[DEFAULT_MODE]()
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    _check(isinstance(cfg, Mapping), f"finetune must be a mapping, got {cfg!r}")
    options = dict(cfg)
    name = options.pop("name", None)
    _check(name in MODES, f"finetune={name!r} is not one of {sorted(MODES)}")
    mode = MODES[name]
    fields = [f.name for f in dataclasses.fields(mode)]
    refuse_unknown_keys(f"finetune={name}", options, fields, ConfigError)
    absent = sorted(set(fields) - set(options))
    _check(not absent, f"finetune={name}: missing key(s) {absent} (conf/finetune/{name}.yaml sets them)")
    return mode(**options)


def adaptable_module_names(model: nn.Module) -> set[str]:
    """Last names (`q_proj`, `down_proj`, ...) of the nn.Linear layers inside the decoder layers: what LoRA may target."""
    return {
        name.rsplit(".", 1)[-1]
        for name, module in decoder_layers(model).named_modules()
        if isinstance(module, nn.Linear) and name
    }


# ------------------------------------------------------------------------------------------------ the applied mode
@dataclass
class FinetunedPolicy:
    """A loaded policy with its fine-tune mode applied: the module to train and sample from, its parameter counts,
    and the KL reference that goes with it."""

    model: nn.Module
    mode: str
    trainable_params: int
    total_params: int

    @property
    def is_adapter(self) -> bool:
        return self.mode == Lora.name

    def params(self) -> dict[str, str]:
        """The run params every run logs: the integer counts, as the strings MLflow stores params as."""
        return {"model/trainable_params": str(self.trainable_params), "model/total_params": str(self.total_params)}

    def reference_model(self) -> nn.Module:
        """The frozen policy at step 0 for the KL regularizer. With adapters: the base model inside the peft model,
        the same weights, evaluated inside `reference_scope()` (adapters off); else a deep copy."""
        if self.is_adapter:
            return self.model.get_base_model()
        return copy.deepcopy(self.model).eval().requires_grad_(False)

    @contextlib.contextmanager
    def reference_scope(self) -> Iterator[None]:
        """Wrap every forward of `reference_model()`: switches the adapters off (and dropout) for the block; a no-op
        for a copied reference."""
        if not self.is_adapter:
            yield
            return
        was_training = self.model.training
        self.model.eval()
        try:
            with self.model.disable_adapter():
                yield
        finally:
            self.model.train(was_training)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tied weight (input embedding = LM head) counts once."""
    params = list(model.parameters())  # named once even where two modules share it
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def apply_finetune(model: nn.Module, cfg: Mapping | None) -> FinetunedPolicy:
    """Apply the `finetune` config group to a policy from `load_policy`. Target modules the model lacks raise a
    one-line ConfigError listing the ones it has."""
    mode = parse_finetune(cfg)
    policy = mode.apply(model)
    trainable, total = count_parameters(policy)
    return FinetunedPolicy(policy, mode.name, trainable, total)


# ----------------------------------------------------------------------------------------------- merged weights
def _peft_model_class():
    """peft's PeftModel when peft is imported (a model can only be a peft model then), else None: no import cost."""
    peft = sys.modules.get("peft")
    return getattr(peft, "PeftModel", None) if peft is not None else None


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a plain copy of the base architecture needs to compute what `model` computes (in eval mode).

    A model without adapters gives its own state dict. A peft LoRA model gives the base model's parameter names
    (the keys of the model before `get_peft_model`) with every adapted weight replaced by W + (alpha/r)·B·A, summed
    in fp32 and returned in W's dtype (bf16 when precision.store_frozen_linears_in_bf16 stored it so). Nothing of the
    model is changed (unlike peft's merge_and_unload), and only the adapted weights are new tensors.
    """
    peft_model = _peft_model_class()
    if peft_model is None or not isinstance(model, peft_model):
        return model.state_dict()
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    adapter = model.active_adapter
    merged: dict[str, torch.Tensor] = {}
    adapted: set[str] = set()
    for name, module in base.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        layer = module.get_base_layer()
        prefix = f"{name}." if name else ""
        adapted.add(prefix)
        weight = layer.weight
        merged[f"{prefix}weight"] = (weight.float() + module.get_delta_weight(adapter).float()).to(weight.dtype)
        if getattr(layer, "bias", None) is not None:
            merged[f"{prefix}bias"] = layer.bias
    for key, value in base.state_dict().items():
        if not any(key.startswith(prefix) for prefix in adapted):
            merged[key] = value
    return merged
