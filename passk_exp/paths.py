"""Where the YAML trees live: `conf/` and `sweeps/` at the top of a source checkout (editable install, or running
from the repo), else the copies shipped inside the package as `passk_exp.conf` / `passk_exp.sweeps`."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _locate(name: str, marker: str | None = None) -> Path:
    source = _REPO / name
    if source.is_dir() and (marker is None or (source / marker).exists()):
        return source
    return Path(str(importlib.resources.files(f"passk_exp.{name}")))


def conf_dir() -> Path:
    return _locate("conf", "config.yaml")


def sweeps_dir() -> Path:
    return _locate("sweeps")
