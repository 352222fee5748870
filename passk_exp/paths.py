"""Where the YAML trees live: `conf/` and `sweeps/` at the top of a source checkout (editable install, or running
from the repo), else the copies shipped inside the package as `passk_exp.conf` / `passk_exp.sweeps`; and
`register_sweeps_search_path`, which puts `sweeps/` on Hydra's search path whether or not Hydra's plugin scan finds
the plugin that does it."""

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


def register_sweeps_search_path() -> None:
    """Register the sweeps/ search-path plugin with Hydra by hand, before composing.

    Hydra finds plugins by listing the modules of the `hydra_plugins` namespace package (pkgutil). Under setuptools'
    editable install `hydra_plugins.passk_exp_searchpath` is importable by name but not listed, so outside the source
    checkout (any other working directory) the scan misses it, `+toylab=phase1` / `+sweep=phase1` find no config
    group, and Hydra adds them as plain keys instead. Registering twice is a no-op."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.passk_exp_searchpath import PasskExpSearchPathPlugin

    Plugins.instance().register(PasskExpSearchPathPlugin)
