"""Running a verifier over a batch: inline, or in a lazily created, reused process pool; a crash is a 0.0, never fatal.

Every verifier is a module-level function `fn(*args) -> float` (picklable by reference). `VerifierPool.map` returns
one reward per item in order. An exception inside the verifier, a value outside [0, 1] (NaN included), a worker process
that dies, or a batch that overruns its deadline gives 0.0 for the items concerned and one `logging` warning naming
them; the caller's training step goes on. Workers are started with "spawn" (forking a process that holds torch
threads is unsafe) on the first call and kept until `close()`; spawn re-imports the main script, so a script that
scores with workers > 0 needs the usual `if __name__ == "__main__":` guard (`python -m passk_exp`, pytest and notebooks
need nothing). A script that calls it from its top level without the guard gets a RuntimeError saying so before any
worker starts (instead of every worker dying and every reward being 0). What each verifier checks is not this file's
business.
"""

from __future__ import annotations

import ast
import logging
import math
import multiprocessing
import sys
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Optional, Sequence

log = logging.getLogger(__name__)

Outcome = tuple[float, Optional[str]]  # (reward, error message or None)


def guarded(fn: Callable[..., float], args: tuple) -> Outcome:
    """fn(*args) as a reward in [0, 1]; any exception or out-of-range value becomes (0.0, reason)."""
    try:
        value = float(fn(*args))
    except Exception as error:  # noqa: BLE001 - a verifier bug on one completion must not end the run
        return 0.0, f"{type(error).__name__}: {error}"[:300]
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return 0.0, f"reward {value!r} outside [0, 1]"
    return value, None


def guarded_chunk(fn: Callable[..., float], chunk: Sequence[tuple]) -> list[Outcome]:
    return [guarded(fn, args) for args in chunk]


class VerifierPool:
    """`workers` spawn processes (0 = inline) running `fn(*args)` for each item; `item_timeout_s` bounds how long one
    item may take, and so the deadline of a batch (items per worker x item_timeout_s, plus `startup_s` for starting
    workers and importing the verifier's dependencies)."""

    def __init__(
        self,
        name: str,
        workers: int,
        item_timeout_s: float,
        initializer: Optional[Callable[[], None]] = None,
        startup_s: float = 60.0,
    ) -> None:
        self.name = name
        self.workers = workers
        self.item_timeout_s = item_timeout_s
        self.initializer = initializer
        self.startup_s = startup_s
        self._executor: Optional[ProcessPoolExecutor] = None

    def map(self, fn: Callable[..., float], items: Sequence[tuple], labels: Sequence[str]) -> list[float]:
        """One reward per item, in order. `labels` name the items (problem ids) in warnings."""
        if not items:
            return []
        if self.workers == 0:
            outcomes = guarded_chunk(fn, items)
        else:
            outcomes = self._map_pool(fn, list(items))
        self._warn(outcomes, labels)
        return [value for value, _ in outcomes]

    def call(self, fn: Callable[..., object], *args: object) -> object:
        """fn(*args) once, in a worker when the pool has workers (so it sees what verifiers see), else inline."""
        if self.workers == 0:
            return fn(*args)
        return self._pool().submit(fn, *args).result(timeout=self.item_timeout_s + self.startup_s)

    # -- pool -----------------------------------------------------------------------------------------------------
    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._check_main_guard()
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=self.initializer,
            )
        return self._executor

    def _check_main_guard(self) -> None:
        """Raise if this call comes from the top-level code of a main script, outside `if __name__ == "__main__":`:
        each spawned worker would re-run that code while starting, die, and leave a BrokenProcessPool."""
        main = sys.modules.get("__main__")
        path, spec = getattr(main, "__file__", None), getattr(main, "__spec__", None)
        if main is None or path is None or (spec is not None and spec.name.endswith("__main__")):
            return  # a notebook, a REPL, or `python -m package` (spawn does not re-run a package's __main__)
        frame = sys._getframe()
        while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
            frame = frame.f_back
        if frame is None:
            return
        try:
            tree = ast.parse(open(path, encoding="utf-8").read())
        except (OSError, SyntaxError, ValueError):
            return
        line = frame.f_lineno
        for node in tree.body:
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
                    return
                raise RuntimeError(
                    f"{self.name}: scoring with workers={self.workers} was called from the top level of {path} (line "
                    f"{line}), outside an `if __name__ == \"__main__\":` block; its worker processes are spawned and "
                    "re-import that script. Put the script's code under `if __name__ == \"__main__\":`, or set the "
                    "benchmark's workers=0 to score in this process"
                )

    def _map_pool(self, fn: Callable[..., float], items: list[tuple]) -> list[Optional[Outcome]]:
        # Contiguous chunks, a few per worker: amortises pickling without letting one slow chunk idle the others.
        n_chunks = min(len(items), self.workers * 4)
        bounds = [(len(items) * i // n_chunks, len(items) * (i + 1) // n_chunks) for i in range(n_chunks)]
        per_worker = math.ceil(len(items) / self.workers)
        deadline = per_worker * self.item_timeout_s + self.startup_s
        pool = self._pool()
        futures: list[Future] = [pool.submit(guarded_chunk, fn, items[a:b]) for a, b in bounds]
        _, pending = wait(futures, timeout=deadline)
        if pending:  # deadline passed with work outstanding: the pool is stuck, kill it (no retry for these items)
            self._kill()
        outcomes: list[Optional[Outcome]] = [None] * len(items)
        broken: list[int] = []
        for future, (a, b) in zip(futures, bounds):
            if future in pending:
                outcomes[a:b] = [(0.0, f"verifier timed out (batch deadline {deadline:.1f} s)")] * (b - a)
            elif isinstance(future.exception(), BrokenProcessPool):
                broken.extend(range(a, b))
            elif future.exception() is not None:  # e.g. arguments that cannot be pickled
                error = future.exception()
                outcomes[a:b] = [(0.0, f"{type(error).__name__}: {error}"[:300])] * (b - a)
            else:
                outcomes[a:b] = future.result()
        if broken:
            self._kill()
            for i in broken:  # one at a time, so a crashing item cannot take innocent ones with it
                outcomes[i] = self._retry_one(fn, items[i])
        return outcomes  # type: ignore[return-value]

    def _retry_one(self, fn: Callable[..., float], args: tuple) -> Outcome:
        future = self._pool().submit(guarded_chunk, fn, [args])
        try:
            return future.result(timeout=self.item_timeout_s + self.startup_s)[0]
        except BrokenProcessPool:
            self._kill()
            return 0.0, "verifier process died"
        except TimeoutError:
            self._kill()
            return 0.0, f"verifier timed out after {self.item_timeout_s:.1f} s"

    def _kill(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # ProcessPoolExecutor has no public way to stop a worker stuck in a call; its process table is the only handle.
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            try:
                process.kill()
            except (OSError, ValueError):
                pass
        executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # -- reporting ------------------------------------------------------------------------------------------------
    def _warn(self, outcomes: Sequence[Optional[Outcome]], labels: Sequence[str]) -> None:
        failed = [(label, o[1]) for label, o in zip(labels, outcomes) if o is not None and o[1] is not None]
        if failed:
            first_label, first_error = failed[0]
            log.warning(
                "%s: verifier failed on %d of %d completions (reward 0); first: %s: %s",
                self.name, len(failed), len(outcomes), first_label, first_error,
            )

