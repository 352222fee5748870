"""Which directory holds a run's checkpoint, and which earlier run `resume=true` continues.

Layout: `<checkpoint_dir>/<run key>/<run id>/last.pt`. `checkpoint_dir` (default `./checkpoints`) is a root shared by
many runs; the run key names the config (`checkpoint.run_key`: the same for every relaunch of it, so a SLURM requeue
finds its own runs); the run id (UTC start time + a random suffix) is new for every run, so two runs of one config
never write to the same checkpoint. Beside `last.pt`, `run.json` says how far the run got, read without loading it.

`resume=true` continues, among the runs of this run key, the latest one that has a checkpoint and has not reached
`steps`; if all have, the latest one (it resumes to nothing new: a re-launched sweep does not redo finished jobs).
`checkpoint_dir=<a run's own directory>` (one holding `last.pt`) with `resume=true` continues exactly that run. A live
run holds an flock on its directory, so a second process never continues a run that is still going; the kernel drops
the lock when the process dies, `kill -9` and a SLURM preemption included.

Left out: what a checkpoint holds (checkpoint.py), and when the trainer saves.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional

from passk_exp.checkpoint import CHECKPOINT_FILE
from passk_exp.config import ConfigError

log = logging.getLogger(__name__)

RUN_INFO_FILE = "run.json"
_LOCK_FILE = ".lock"


def checkpoint_root(checkpoint_dir: Optional[str]) -> Path:
    """`checkpoint_dir`, else `./checkpoints`, as an absolute path."""
    return Path(checkpoint_dir).expanduser().resolve() if checkpoint_dir else Path.cwd().resolve() / "checkpoints"


def read_run_info(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / RUN_INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}  # a checkpoint older than run.json: nothing known about it but that it exists


@dataclass
class RunDir:
    """The directory of one run; `resumed`: it holds the checkpoint this process continues."""

    path: Path
    key: str
    resumed: bool
    _lock: Optional[IO[str]] = field(default=None, repr=False)

    def claim(self) -> None:
        """Create the directory (at the first save: a run that never saves leaves nothing) and hold its lock."""
        if self._lock is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = _try_lock(self.path)
            if self._lock is None:
                raise RuntimeError(f"checkpoint directory {self.path} is locked by another process")

    def record(self, step: int, steps: int, mlflow_run_id: Optional[str]) -> None:
        """Write run.json after a save (atomically: a kill leaves the previous one)."""
        info = {"run_key": self.key, "step": step, "steps": steps, "mlflow_run_id": mlflow_run_id}
        tmp = self.path / f".{RUN_INFO_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, self.path / RUN_INFO_FILE)

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the file drops the flock


def _try_lock(directory: Path) -> Optional[IO[str]]:
    """The directory's lock file, locked by this process; None when another live process holds it."""
    handle = open(directory / _LOCK_FILE, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except OSError:  # a file system without locks (some network mounts): carry on unlocked rather than not run
        log.warning("cannot lock %s (the file system has no locks); do not resume this run twice at once", directory)
    return handle


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _candidates(root: Path, key: str) -> list[Path]:
    """Run directories of `key` holding a checkpoint, newest first (run ids start with their UTC start time)."""
    runs = [d for d in (root / key).glob("*") if (d / CHECKPOINT_FILE).is_file()]
    runs.sort(key=lambda d: (d.name, (d / CHECKPOINT_FILE).stat().st_mtime), reverse=True)
    if (root / key / CHECKPOINT_FILE).is_file():  # the layout before run ids: one checkpoint per run key
        runs.append(root / key)
    return runs


def _explicit(root: Path, key: str, resume: bool) -> RunDir:
    """`checkpoint_dir` names one run's own directory (it holds last.pt)."""
    saved_key = read_run_info(root).get("run_key")
    if not resume:
        raise ConfigError(
            f"checkpoint_dir={root} holds the checkpoint of an earlier run: resume=true continues it; a new run needs "
            f"another checkpoint_dir (runs get their own subdirectory of it)"
        )
    if saved_key is not None and saved_key != key:
        raise ConfigError(
            f"checkpoint_dir={root} holds a run of another config (run key {saved_key}, this config's is {key}); "
            f"resume=true continues only a run of the same config"
        )
    lock = _try_lock(root)
    if lock is None:
        raise ConfigError(f"checkpoint_dir={root}: that run is still running in another process")
    return RunDir(root, key, resumed=True, _lock=lock)


def open_run_dir(root: Path, key: str, resume: bool, steps: int) -> RunDir:
    """This run's directory: with `resume`, the earlier run of `key` it continues (locked), else a new one."""
    if (root / CHECKPOINT_FILE).is_file():
        return _explicit(root, key, resume)
    if resume:
        runs = _candidates(root, key)
        unfinished = [d for d in runs if read_run_info(d).get("step", -1) < steps]
        for directory in [*unfinished, *(d for d in runs if d not in unfinished)]:
            lock = _try_lock(directory)
            if lock is None:
                log.info("resume: skipping %s, still running in another process", directory)
                continue
            return RunDir(directory, key, resumed=True, _lock=lock)
        log.info("resume=true but no checkpoint of this config (run key %s) under %s: starting a new run", key, root)
    return RunDir(root / key / _new_run_id(), key, resumed=False)
