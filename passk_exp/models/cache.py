"""The model cache: where converted models live, and how an entry is built once even when many processes start at once.

An entry is a directory built from one source file. The build writes into a fresh temporary directory beside the
target, a manifest goes in last (source file identity, cache format, every file's size), and the directory is renamed
into place: a rename is atomic, so readers never see a half-written entry under the target name. A lock file makes
concurrent builders wait for the first one instead of repeating the work; where the filesystem refuses locks, the
rename alone keeps the result correct (the first rename wins). A target whose manifest is missing, unreadable, of an
older format, of a different source file or disagrees with the files' sizes is stale or partial, and is rebuilt.
This file knows nothing of models: callers pass the build function.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "passk_exp_manifest.json"
CACHE_FORMAT = 1  # bump when the layout of an entry changes: older entries then count as stale
LEFTOVER_AGE_S = 3600.0  # a temporary build directory this old belongs to a crashed process (a build takes < 1 min)


def model_cache_dir() -> Path:
    """Where converted models live: $PASSK_EXP_CACHE, else ~/.cache/passk_exp."""
    return Path(os.environ.get("PASSK_EXP_CACHE") or Path.home() / ".cache" / "passk_exp").expanduser()


def _file_identity(source: Path) -> dict[str, Any]:
    stat = source.stat()
    return {"file": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_entry_is_complete(directory: Path, source: Path) -> bool:
    """True when `directory` holds a finished build of `source`: a manifest of this format naming the same source
    file (name, size, mtime), and every recorded file present with its recorded size."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
        return (
            manifest.get("format") == CACHE_FORMAT
            and manifest.get("source") == _file_identity(source)
            and bool(files)
            and all((directory / name).stat().st_size == size for name, size in files.items())
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock; released when the file closes (also when the process dies)."""
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # e.g. a network filesystem without lock support
            log.warning("cannot lock %s; concurrent builders may repeat the conversion", lock_file)
        yield


def _remove_leftovers(target: Path) -> None:
    """Delete temporary siblings of `target` left by crashed processes (old enough not to be anyone's live build)."""
    for leftover in target.parent.glob(f"{target.name}.tmp-*"):
        with contextlib.suppress(OSError):
            if time.time() - leftover.stat().st_mtime > LEFTOVER_AGE_S:
                shutil.rmtree(leftover, ignore_errors=True)


def _share_like_umask(directory: Path) -> None:
    """mkdtemp makes the directory private (0700) and some writers make private files: give the entry the modes a
    plain mkdir/open would, so a cache shared by a group (PASSK_EXP_CACHE on a cluster) is readable by it."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def materialize(target: Path, source: Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, first building it with `build(tmp_dir)` if it is missing, partial or stale.

    `build` fills the empty directory it is given; it runs at most once per stale entry across processes that share
    working locks. An exception in `build` leaves `target` as it was and removes the temporary directory.
    """
    if cache_entry_is_complete(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f"{target.name}.lock"):
        if cache_entry_is_complete(target, source):  # built by another process while this one waited
            return target
        _remove_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            _share_like_umask(tmp)
            files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
            manifest = {"format": CACHE_FORMAT, "source": _file_identity(source), "files": files}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            if target.exists():  # stale or partial: move it aside first, a rename cannot replace a non-empty dir
                log.info("replacing the stale cache entry %s", target)
                aside = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-stale-", dir=target.parent))
                os.rename(target, aside / "old")
                shutil.rmtree(aside, ignore_errors=True)
            try:
                os.rename(tmp, target)
            except OSError:  # another builder (without a working lock) renamed first: use its entry
                if not cache_entry_is_complete(target, source):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
