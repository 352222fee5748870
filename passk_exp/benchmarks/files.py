"""File-backed benchmarks: rows from `path=` (JSONL or parquet, a file or a folder of split files) or from the Hub.

`path` wins when set. A file serves every split (handy for smoke runs: training then sees the eval problems, and a
warning says so); a folder holds one file per split, named after the split (`train.jsonl`, `test-00000.parquet`).
Without `path` the `datasets` package is tried (a reachable Hub or its local cache); any failure there becomes one
line naming the dataset and how to set `benchmark.path`. The verifier itself is the subclass's business.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from passk_exp.benchmarks.base import Benchmark, Problem, PromptOptions, Record
from passk_exp.benchmarks.scoring import VerifierPool

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".parquet")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or parquet file. A malformed JSONL line raises with its line number; blank lines are skipped."""
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: malformed JSON line ({error.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
                rows.append(row)
        return rows
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {list(SUFFIXES)}")


def split_file(path: Path, split: str) -> Path:
    """The file holding `split`: `path` itself, or the first `<split>*.jsonl|parquet` inside the folder `path`."""
    if path.is_file():
        return path
    if path.is_dir():
        for suffix in SUFFIXES:
            matches = sorted(path.glob(f"{split}*{suffix}"))
            if matches:
                return matches[0]
        raise ValueError(f"{path}: no {split}*.jsonl or {split}*.parquet file for split {split!r}")
    raise ValueError(f"benchmark.path={str(path)!r} does not exist")


def hub_rows(benchmark: str, dataset: str, config: Optional[str], split: str, fields: Sequence[str]) -> list[dict]:
    """Rows of a Hub dataset split through `datasets` (network or local cache), or one clear line saying what to do."""
    hint = (
        f"set benchmark.path=/path/to/{benchmark}_{split}.jsonl (JSONL or parquet with fields {list(fields)}), "
        "or a folder with one such file per split"
    )
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"{benchmark}: dataset {dataset!r} is not available (the `datasets` package is not installed); {hint}"
        ) from None
    try:
        loaded = datasets.load_dataset(dataset, config, split=split)
    except Exception as error:  # noqa: BLE001 - offline, missing cache, unknown split: all end in the same advice
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ValueError(
            f"{benchmark}: dataset {dataset!r} split {split!r} is not available (no network and no local copy: "
            f"{reason}); {hint}"
        ) from None
    return [dict(row) for row in loaded]


@dataclass(frozen=True)
class FileOptions(PromptOptions):
    """path: JSONL/parquet file or folder (wins over the Hub). dataset / dataset_config: Hub id used without a path.
    train_split / test_split: split names (Hub splits, or file-name prefixes in a folder). question_field /
    answer_field: row keys of the question and of the reference answer."""

    path: Optional[str] = None
    dataset: str = ""
    dataset_config: Optional[str] = None
    train_split: str = "train"
    test_split: str = "test"
    question_field: str = "question"
    answer_field: str = "answer"


class FileBenchmark(Benchmark):
    """Rows -> Records via `_row_record`; scoring runs `verifier(reference, completion)` in the verifier pool."""

    Options = FileOptions
    verifier: Callable[[str, str], float]
    item_timeout_s: float = 20.0

    def __init__(self, options: FileOptions) -> None:
        super().__init__(options)
        self._rows: dict[str, list[Record]] = {}
        self._pool = VerifierPool(self.name, options.workers, self.item_timeout_s)
        if options.path is not None and Path(options.path).is_file():
            log.warning(
                "%s: benchmark.path=%s is one file, so it serves both train and test (training sees the eval set)",
                self.name, options.path,
            )

    def _row_record(self, row: dict[str, Any], split: str, index: int, where: str) -> Record:
        raise NotImplementedError

    def _field(self, row: dict[str, Any], key: str, where: str) -> str:
        if key not in row or row[key] is None:
            raise ValueError(
                f"{where}: row has no {key!r} field (fields: {sorted(row)}); set the matching *_field option"
            )
        return str(row[key])

    def _records(self, split: str) -> list[Record]:
        if split not in self._rows:
            name = self.options.train_split if split == "train" else self.options.test_split
            if self.options.path is not None:
                source = split_file(Path(self.options.path), name)
                rows, where = read_rows(source), str(source)
            else:
                fields = [self.options.question_field, self.options.answer_field]
                rows = hub_rows(self.name, self.options.dataset, self.options.dataset_config, name, fields)
                where = f"{self.options.dataset}[{name}]"
            if not rows:
                raise ValueError(f"{self.name}: split {split!r} from {where} has no problems")
            self._rows[split] = [self._row_record(row, split, i, f"{where} row {i + 1}") for i, row in enumerate(rows)]
        return self._rows[split]

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        self._check_batch(problems, completions)
        items = [(str(p.answer), text) for p, text in zip(problems, completions)]
        return self._pool.map(type(self).verifier, items, [p.id for p in problems])

    def close(self) -> None:
        self._pool.close()
