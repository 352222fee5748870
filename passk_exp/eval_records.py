"""Per-problem evaluation records: one row per held-out problem, the table the logged eval Pass@k is computed from.

Columns (`SCHEMA`): `problem_id`, `n` (samples drawn), `c` (samples with reward 1), `rewards` (every sample's reward,
in sampling order), `mean_len` (mean completion tokens, EOS included), `truncated` (samples cut at max_new_tokens
without an EOS) and, where the benchmark extracts a final answer, `distinct_answers` (distinct answers among the
samples that gave one; null for a benchmark that extracts none). `pass_at_k_of_records` is the one place the logged
`eval/pass_at_{k}` come from, so recomputing it from the parquet artifact gives the logged values exactly.
Pure functions of arrays and a table; sampling, scoring and MLflow are the caller's (evaluation.py, trainer.py).
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from passk_exp.metrics import pass_at_k

CORRECT_THRESHOLD = 1.0 - 1e-9  # a sample counts as correct when its reward is 1 (up to float noise)

SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("n", pa.int64()),
        ("c", pa.int64()),
        ("rewards", pa.list_(pa.float64())),
        ("mean_len", pa.float64()),
        ("truncated", pa.int64()),
        ("distinct_answers", pa.int64()),
    ]
)


def eval_records(
    problem_ids: Sequence[str],
    rewards: np.ndarray,
    lengths: np.ndarray,
    truncated: np.ndarray,
    answers: Optional[Sequence[Sequence[Optional[str]]]] = None,
) -> pa.Table:
    """[P] ids, rewards [P, n], completion lengths [P, n], truncated [P, n] bool, answers [P][n] (None entries: no
    answer in that sample; `answers=None`: the benchmark extracts none) -> a `SCHEMA` table with P rows."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[0] != len(problem_ids):
        raise ValueError(f"rewards {rewards.shape} must be [P, n] with P = {len(problem_ids)} problems")
    for name, values in (("lengths", lengths), ("truncated", truncated)):
        if np.shape(values) != rewards.shape:
            raise ValueError(f"{name} {np.shape(values)} must have the shape of rewards {rewards.shape}")
    if answers is not None and [len(a) for a in answers] != [rewards.shape[1]] * rewards.shape[0]:
        raise ValueError(f"answers must hold {rewards.shape[1]} entries for each of the {rewards.shape[0]} problems")
    problems, n = rewards.shape
    distinct = (
        [len({a for a in group if a is not None}) for group in answers] if answers is not None else [None] * problems
    )
    columns = {
        "problem_id": [str(p) for p in problem_ids],
        "n": [n] * problems,
        "c": (rewards >= CORRECT_THRESHOLD).sum(axis=1).tolist(),
        "rewards": rewards.tolist(),
        "mean_len": np.asarray(lengths, dtype=np.float64).mean(axis=1).tolist(),
        "truncated": np.asarray(truncated, dtype=bool).sum(axis=1).tolist(),
        "distinct_answers": distinct,
    }
    return pa.table(columns, schema=SCHEMA)


def pass_at_k_of_records(records: pa.Table, ks: Sequence[int]) -> list[float]:
    """Mean over rows of the unbiased pass@k(n, c, k) (metrics.pass_at_k), one value per k: the logged eval curve."""
    n = np.asarray(records.column("n").to_pylist(), dtype=np.int64)
    c = np.asarray(records.column("c").to_pylist(), dtype=np.int64)
    return [float(np.mean(pass_at_k(n, c, k))) for k in ks]


def records_parquet(records: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(records, buffer)
    return buffer.getvalue()


def read_records(data: bytes | str) -> pa.Table:
    """A records table back from parquet bytes or a file path."""
    return pq.read_table(io.BytesIO(data) if isinstance(data, bytes) else data)
