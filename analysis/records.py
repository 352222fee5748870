"""Per-problem evaluation records of a run, read back from its MLflow artifacts, and the steps a run really trained.

At every evaluation the harness logs `eval_records/step_{step:05d}.parquet`: one row per held-out problem with
`problem_id` (str), `n` (samples drawn), `c` (samples with reward 1), `rewards` (every sample's reward), `mean_len`,
`truncated` and optionally `distinct_answers`. The final metrics are the last step's file. A run without that
artifact (made before it existed, or by the toy lab) has no records: the analysis then falls back to the logged final
metrics and says so. What this file leaves out: any statistic (`intervals`), the runs table (`load`).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from passk_exp.eval_records import read_records

RECORDS_DIR = "eval_records"
RECORD_FILE = re.compile(r"^step_(\d+)\.parquet$")
RECORD_COLUMNS = ("problem_id", "n", "c", "rewards")
TRAIN_STEP_METRIC = "train/reward_mean"  # logged once per finished training step by the harness and the toy lab


@dataclass(frozen=True)
class RunRecords:
    """One run's records at one eval step, rows sorted by problem_id so that column p is the same problem in every run
    of the same problem set."""

    step: int
    problem_ids: tuple[str, ...]
    n: np.ndarray  # [P] int
    c: np.ndarray  # [P] int
    rewards: tuple[np.ndarray, ...]  # P arrays of n[p] floats

    @property
    def continuous(self) -> bool:
        """True when some reward is neither 0 nor 1: max@k then says more than pass@k."""
        return any(np.any((r != 0) & (r != 1)) for r in self.rewards)


def from_frame(frame: pd.DataFrame, step: int, source: str) -> RunRecords:
    """Check and sort one records table; ValueError naming `source` when a column is missing or inconsistent."""
    missing = [c for c in RECORD_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"{source}: records lack the column(s) {missing}; they have {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{source}: records hold no problem")
    frame = frame.sort_values("problem_id", kind="stable")
    ids = tuple(str(p) for p in frame["problem_id"])
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source}: a problem_id appears twice")
    n, c = frame["n"].to_numpy(dtype=np.int64), frame["c"].to_numpy(dtype=np.int64)
    rewards = tuple(np.asarray(r, dtype=np.float64) for r in frame["rewards"])
    if np.any(n < 1) or np.any((c < 0) | (c > n)) or any(r.size != m for r, m in zip(rewards, n)):
        raise ValueError(f"{source}: each row needs n >= 1, 0 <= c <= n and n rewards")
    return RunRecords(step=step, problem_ids=ids, n=n, c=c, rewards=rewards)


def last_record_path(client, run_id: str) -> tuple[str, int] | None:
    """(artifact path, step) of the run's latest `eval_records/step_*.parquet`, or None when it has none."""
    found = [(a.path, int(m.group(1))) for a in client.list_artifacts(run_id, RECORDS_DIR)
             if (m := RECORD_FILE.match(Path(a.path).name))]
    return max(found, key=lambda item: item[1]) if found else None


def load_last_records(client, run_id: str) -> RunRecords | None:
    """The run's records at its last evaluation, or None when it logged none."""
    found = last_record_path(client, run_id)
    if found is None:
        return None
    path, step = found
    with tempfile.TemporaryDirectory() as scratch:
        local = client.download_artifacts(run_id, path, scratch)
        frame = read_records(local).to_pandas()
    return from_frame(frame, step, f"run {run_id} {path}")


def last_train_step(client, run_id: str) -> int | None:
    """The last step at which the run logged a training metric: the steps it actually ran (the `steps` param keeps
    the value of the run's first start even when a resume changed it). None when it logged no training step."""
    history = client.get_metric_history(run_id, TRAIN_STEP_METRIC)
    return max((m.step for m in history), default=None)
