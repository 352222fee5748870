"""Checkpoints that make a run resumable: trainable weights, optimizer, RNG, schedule and estimator state, MLflow run id.

Only parameters that train are saved, with their optimizer state: frozen ones are reloaded from the (deterministic)
base model. For the default SmolLM2-135M with 4 trained layers that is 14.2M fp32 weights plus two AdamW moments,
~170 MB, instead of ~1.6 GB for all 134.5M parameters. Writes go to a temporary file that is renamed into place, so
a run killed while saving keeps its previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "last.pt"
# Keys that do not change what a run computes, so changing them still resumes the same run.
_NOT_IDENTITY = (
    "resume", "quiet", "steps", "tracking", "checkpoint_dir", "eval_every", "save_every", "keep_freed_memory",
    "distributed",  # how many processes and which wrapper compute a run, not what it computes
)


def run_label(config: dict[str, Any]) -> str:
    """What ran, readable: `grpo_k-K8-n16-s0` (the default MLflow run name and the start of the run key)."""
    method = config.get("method", {}).get("name", "run")
    return f"{method}-K{config.get('K')}-n{config.get('n')}-s{config.get('seed')}"


def run_key(config: dict[str, Any]) -> str:
    """A stable name for 'this experiment', the same for every (re)launch of the same config (SLURM requeue)."""
    identity = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{run_label(config)}-{digest}"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    payload = {"model": trainable_state(model), "optimizer": optimizer.state_dict(), "rng": rng_state(), **state}
    return write_checkpoint(directory, payload)


def write_checkpoint(directory: Path, payload: dict) -> Path:
    """Write `payload` as the checkpoint of `directory`, atomically (temporary file, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_FILE
    tmp = directory / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, target)
    return target


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def restore_model(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = sorted(set(saved) - set(params))
    if missing:
        raise ValueError(f"checkpoint holds parameters this model lacks, e.g. {missing[:3]}: was the model changed?")
    untouched = sorted(name for name, p in params.items() if p.requires_grad and name not in saved)
    if untouched:  # e.g. LoRA on more target modules than the saved adapter: those would silently restart
        raise ValueError(f"checkpoint lacks parameters this model trains, e.g. {untouched[:3]}: was finetune changed?")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value.to(params[name].device))
