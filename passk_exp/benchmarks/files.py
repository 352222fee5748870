"""File-backed benchmarks: rows from `path=` (JSONL or parquet, a file or a folder of split files) or from the Hub.

Train and eval come from separate sources. `path` is a folder holding one file per split, named after the split
(`train.jsonl`, `test-00000.parquet`), or the eval file alone; `train_path` (a file or such a folder) gives the train
split and wins over `path` for it. Without them the `datasets` package is tried (a reachable Hub or its local cache);
any failure there becomes one line naming the dataset and the option to set. One source for both splits (a single
file, or `train_split` equal to `test_split`) stops with one line, unless `allow_overlap` (smoke tests); training
never sees a problem whose normalised question is an eval question either way (base.py). The verifier itself is the
subclass's business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from passk_exp.benchmarks.base import Benchmark, Problem, PromptOptions, Record
from passk_exp.benchmarks.scoring import VerifierPool

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


def hub_rows(
    benchmark: str, dataset: str, config: Optional[str], split: str, fields: Sequence[str], option: str = "path"
) -> list[dict]:
    """Rows of a Hub dataset split through `datasets` (network or local cache), or one clear line saying what to do
    (`option`: the benchmark key that would give this split a local file)."""
    hint = (
        f"set benchmark.{option}=/path/to/{benchmark}_{split}.jsonl (JSONL or parquet with fields {list(fields)}), "
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
    """path: folder of split files, or the eval file (wins over the Hub). train_path: the train split's file or folder
    (wins over path). dataset / dataset_config: Hub id used without them. train_split / test_split: split names (Hub
    splits, or file-name prefixes in a folder). question_field / answer_field: row keys of the question and of the
    reference answer."""

    path: Optional[str] = None
    train_path: Optional[str] = None
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

    def _row_record(self, row: dict[str, Any], split: str, index: int, where: str) -> Record:
        raise NotImplementedError

    def _field(self, row: dict[str, Any], key: str, where: str) -> str:
        if key not in row or row[key] is None:
            raise ValueError(
                f"{where}: row has no {key!r} field (fields: {sorted(row)}); set the matching *_field option"
            )
        return str(row[key])

    def _source(self, split: str) -> tuple[Optional[Path], str]:
        """Where a split's rows come from: (file, its name) or (None, the Hub id and split)."""
        name = self.options.train_split if split == "train" else self.options.test_split
        path = self.options.path
        if split == "train" and self.options.train_path is not None:
            path = self.options.train_path
        if path is not None:
            source = split_file(Path(path), name)
            return source, str(source)
        return None, f"{self.options.dataset}[{name}]"

    def _check_separate_sources(self) -> None:
        """One source serving both splits means training on the eval problems: refused unless allow_overlap."""
        (train_file, train_where), (test_file, test_where) = self._source("train"), self._source("test")
        same = train_file.resolve() == test_file.resolve() if train_file and test_file else train_where == test_where
        if same and not self.options.allow_overlap:
            raise ValueError(
                f"{self.name}: {train_where} would serve both train_split={self.options.train_split!r} and "
                f"test_split={self.options.test_split!r} (training on the eval problems); set benchmark.path to a "
                f"folder holding {self.options.train_split}*.jsonl and {self.options.test_split}*.jsonl, or give "
                "the training file as benchmark.train_path=FILE (allow_overlap=true only for a smoke test)"
            )

    def _records(self, split: str) -> list[Record]:
        if split not in self._rows:
            if split == "train":
                self._check_separate_sources()
            source, where = self._source(split)
            if source is not None:
                rows = read_rows(source)
            else:
                name = self.options.train_split if split == "train" else self.options.test_split
                fields = [self.options.question_field, self.options.answer_field]
                option = "train_path" if split == "train" else "path"
                rows = hub_rows(self.name, self.options.dataset, self.options.dataset_config, name, fields, option)
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
