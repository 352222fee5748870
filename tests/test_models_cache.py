"""The model cache's build-once rules, with a cheap stand-in build: concurrent builders, stale and partial entries,
failed builds and leftovers of crashed processes. (The real GGUF conversion goes through the same function.)"""

from __future__ import annotations

import multiprocessing
import os
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from passk_exp.models import cache
from passk_exp.models.cache import MANIFEST, cache_entry_is_complete, materialize


def slow_build(log: Path, tag: str):
    def build(tmp: Path) -> None:
        with open(log, "a") as handle:
            handle.write(f"{tag}\n")
        (tmp / "weights.bin").write_bytes(tag.encode() * 1000)
        time.sleep(0.3)  # long enough for the other processes to arrive while this one builds
        (tmp / "config.json").write_text("{}")

    return build


def _worker(target: str, source: str, log: str, tag: str, use_lock: bool, queue) -> None:
    if not use_lock:
        cache._locked = lambda _: nullcontext()  # a filesystem without flock: only the atomic rename protects us
    result = materialize(Path(target), Path(source), slow_build(Path(log), tag))
    queue.put((str(result), (result / "weights.bin").read_bytes()[:1].decode()))


def _run_concurrently(tmp_path: Path, use_lock: bool, n: int = 4):
    source = tmp_path / "model.gguf"
    source.write_bytes(b"gguf")
    target, log = tmp_path / "cache" / "entry", tmp_path / "builds.log"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(str(target), str(source), str(log), str(i), use_lock, queue)) for i in range(n)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return target, source, log, results


def test_concurrent_first_runs_build_once_and_agree(tmp_path):
    target, source, log, results = _run_concurrently(tmp_path, use_lock=True)
    assert len(log.read_text().split()) == 1  # the others waited on the lock, then found the entry
    winner = log.read_text().split()[0]
    assert results == [(str(target), winner)] * 4
    assert cache_entry_is_complete(target, source)
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry", "entry.lock"]  # no temporary dirs left
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert (target / "weights.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_without_locks_the_first_rename_wins_and_everyone_gets_a_complete_entry(tmp_path):
    target, source, log, results = _run_concurrently(tmp_path, use_lock=False)
    assert len(log.read_text().split()) >= 1
    kept = (target / "weights.bin").read_bytes()[:1].decode()
    assert all(path == str(target) for path, _ in results)
    assert cache_entry_is_complete(target, source)
    assert [p.name for p in target.parent.iterdir() if ".tmp-" in p.name] == []
    assert kept in log.read_text().split()


@pytest.fixture
def built(tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(b"version 1")
    target, log = tmp_path / "cache" / "entry", tmp_path / "builds.log"
    materialize(target, source, slow_build(log, "a"))
    return target, source, log


def test_a_complete_entry_is_reused(built):
    target, source, log = built
    materialize(target, source, slow_build(log, "b"))
    assert log.read_text().split() == ["a"]


@pytest.mark.parametrize(
    "damage",
    [
        "truncated_file",
        "missing_file",
        "missing_manifest",
        "corrupt_manifest",
        "older_format",
        "source_changed",
    ],
)
def test_stale_or_partial_entries_are_rebuilt(built, damage):
    target, source, log = built
    if damage == "truncated_file":
        (target / "weights.bin").write_bytes(b"a" * 10)
    elif damage == "missing_file":
        (target / "config.json").unlink()
    elif damage == "missing_manifest":
        (target / MANIFEST).unlink()
    elif damage == "corrupt_manifest":
        (target / MANIFEST).write_text('{"files": ')
    elif damage == "older_format":
        text = (target / MANIFEST).read_text().replace(f'"format": {cache.CACHE_FORMAT}', '"format": 0')
        (target / MANIFEST).write_text(text)
    else:
        source.write_bytes(b"version 2, a new release of the package")
    assert not cache_entry_is_complete(target, source)
    materialize(target, source, slow_build(log, "b"))
    assert log.read_text().split() == ["a", "b"]
    assert cache_entry_is_complete(target, source) and (target / "weights.bin").read_bytes()[:1] == b"b"


def test_a_failed_build_leaves_no_entry_and_no_temporary_dir(tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(b"x")
    target = tmp_path / "cache" / "entry"

    def broken(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        materialize(target, source, broken)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == ["entry.lock"]


def test_leftovers_of_crashed_builds_are_swept_but_fresh_ones_are_not(tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(b"x")
    target = tmp_path / "cache" / "entry"
    target.parent.mkdir(parents=True)
    old, fresh = target.parent / "entry.tmp-old", target.parent / "entry.tmp-fresh"
    old.mkdir()
    fresh.mkdir()
    long_ago = time.time() - 2 * cache.LEFTOVER_AGE_S
    os.utime(old, (long_ago, long_ago))
    materialize(target, source, slow_build(tmp_path / "log", "a"))
    assert not old.exists() and fresh.exists()
