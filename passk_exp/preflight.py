"""Checks of the outside world a run depends on, made before any model loads: the tracking store answers, the
checkpoint directory takes writes, and a hub model is either in the local cache or downloadable. Each stops within
seconds with one `ConfigError` line naming the URI or path and what to do, instead of minutes of retries and chained
tracebacks at the first use (an unreachable MLflow server: 253 s; an offline hub: 48 s; an unwritable checkpoint
directory: found at the first save).

Left out: the config's own values (`config.validate_config`), and failures that start later (a server that goes away
mid-run is MLflow's retry policy's business).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from passk_exp.config import ConfigError
from passk_exp.run_dirs import checkpoint_root
from passk_exp.tracking import default_tracking_uri

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # one TCP connect: a live server on any network answers far sooner
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


def _unreachable(host: str, port: int) -> str | None:
    """None if a TCP connection to host:port opens within CONNECT_TIMEOUT_S, else why not."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def _shown(uri: str) -> str:
    """`uri` with any password masked (it goes to logs and terminals)."""
    parsed = urlparse(uri)
    return uri.replace(f":{parsed.password}@", ":***@") if parsed.password else uri


def _writable_dir(directory: Path) -> str | None:
    """None if `directory` exists (or can be made) and a file can be written in it, else why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".passk-write-test-"):
            pass
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def check_tracking_store(uri: str) -> None:
    scheme = urlparse(uri).scheme.split("+")[0]  # postgresql+psycopg2 -> postgresql
    if scheme == "sqlite":
        database = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
        if database is not None:  # sqlite needs to write the file and its journal beside it
            reason = _writable_dir(database.parent)
            if reason is None and database.exists() and not os.access(database, os.W_OK):
                reason = "the database file is read-only"
            if reason:
                raise ConfigError(f"tracking store {uri}: cannot write in {database.parent} ({reason}); "
                                  "set tracking.uri or MLFLOW_TRACKING_URI to a writable store")
        return
    parsed = urlparse(uri)
    if scheme in _DEFAULT_PORTS and parsed.hostname:
        reason = _unreachable(parsed.hostname, parsed.port or _DEFAULT_PORTS[scheme])
        if reason:
            raise ConfigError(f"tracking store {_shown(uri)} is unreachable ({reason}); start it, or set tracking.uri "
                              "or MLFLOW_TRACKING_URI to a reachable store (unset: sqlite:///<cwd>/mlflow.db)")


def check_checkpoint_dir(root: Path) -> None:
    reason = _writable_dir(root)
    if reason:
        raise ConfigError(f"checkpoint_dir={root} is not writable ({reason}); set checkpoint_dir to a writable "
                          "directory")


def check_hub_model(model: Mapping[str, Any]) -> None:
    """A hub id must be in the local cache or the hub must answer. Cached but hub unreachable: load from the cache
    only (offline mode), so transformers does not spend its retries on the network."""
    path = str(model.get("path") or "")
    if model.get("source") != "hf" or not path or Path(path).expanduser().is_dir():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
    if constants.HF_HUB_OFFLINE:
        offline = "HF_HUB_OFFLINE=1"
    else:
        endpoint = urlparse(constants.ENDPOINT)
        reason = _unreachable(endpoint.hostname or "", endpoint.port or _DEFAULT_PORTS.get(endpoint.scheme, 443))
        offline = f"{constants.ENDPOINT} unreachable: {reason}" if reason else None
    if offline is None:
        return
    if not cached:
        raise ConfigError(f"model.path={path!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                          f"the hub is off ({offline}): download it first (`hf download {path}`) or set model.path to "
                          "a local directory")
    if not constants.HF_HUB_OFFLINE:
        log.info("%s: loading %s from the local cache only", offline, path)
        constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub.is_offline_mode()
        os.environ["HF_HUB_OFFLINE"] = "1"


def check_accelerator(device: str, rollout_backend: str) -> None:
    """device=cuda and rollout=vllm need a visible CUDA device (and vLLM), found now rather than after the model loads."""
    import importlib.util

    import torch

    needs = [what for what, wanted in (("device=cuda", device == "cuda"), ("rollout=vllm", rollout_backend == "vllm"))
             if wanted]
    if needs and not torch.cuda.is_available():
        verb = "needs" if len(needs) == 1 else "need"
        raise ConfigError(f"{' and '.join(needs)} {verb} a CUDA device and none is visible; use device=cpu / rollout=hf")
    if rollout_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("rollout=vllm needs vLLM, which is not installed: pip install -e '.[gpu]'")


def preflight(cfg: DictConfig) -> None:
    """All checks above for the resolved run config; raises ConfigError on the first failure."""
    check_accelerator(cfg.device, cfg.rollout.backend)
    if cfg.tracking.enabled:
        check_tracking_store(default_tracking_uri(cfg.tracking.uri))
    check_checkpoint_dir(checkpoint_root(cfg.checkpoint_dir))
    check_hub_model(OmegaConf.to_container(cfg.model, resolve=True))  # type: ignore[arg-type]
