"""Per-arm final Pass@k (and max@k) with 95% intervals: from the eval records when every run has them, from the seeds'
logged final metrics otherwise.

With records: each run gives per-problem unbiased pass@k (`passk_exp.metrics.pass_at_k`) and max@k
(`passk_exp.metrics.max_at_k`), an arm stacks its seeds into values [S, P], and `bootstrap` resamples problems (one
weight matrix per problem set, shared by every arm evaluated on it: paired) and seeds (per arm, when S >= 2). The mean
is the mean over seeds of each seed's mean over problems, which is the logged eval/pass_at_{k}. With one seed the
interval reflects the problems (and the eval samples behind each problem's estimate) only: there is no seed spread to
add and none is faked. A k above some seed's samples per problem (n < k) leaves that arm's k empty (NaN), never
counted as 0. Without records: a Student-t interval over the seeds' final metrics (none with one seed).
What this file leaves out: reading MLflow (`load`, `records`), references and tests between arms (`comparisons`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import bootstrap
from analysis.load import OVERLAP_PARAM, OVERLAP_TAG, AnalysisError, Runs
from analysis.records import RunRecords
from passk_exp.metrics import max_at_k, pass_at_k

METRICS = ("pass_at", "max_at")


def metric_label(metric: str) -> str:
    """"pass_at" -> "pass@" (column names cannot hold "@", MLflow rejects it; labels can)."""
    return metric.replace("_at", "@")


@dataclass
class ArmStats:
    """`table`: one row per arm (arm columns, seeds, n_eval, problems, eval_overlap, `{metric}_{k}_{mean,std,lo,hi}`);
    `replicates[(row, metric, k)]`: [B] bootstrap means (records) or [S] seed values (fallback); `problem_set[row]`:
    an id shared by arms evaluated on the same problems (None without records)."""

    table: pd.DataFrame
    ks: dict[str, list[int]]  # metric -> ks with a column in `table`
    method: str  # "bootstrap" or "t"
    replicates: dict[tuple[int, str, int], np.ndarray] = field(default_factory=dict)
    problem_set: list[int | None] = field(default_factory=list)
    note: str = ""  # why the fallback was used, for the report
    resamples: int = 0  # B actually drawn (bootstrap only)

    def method_text(self) -> str:
        level = int(round(100 * (1 - bootstrap.ALPHA)))
        if self.method == "bootstrap":
            return (f"{level}% percentile bootstrap intervals, B = {self.resamples} resamples (fixed RNG seed "
                    f"{bootstrap.RNG_SEED}) of the eval problems (the same resampled problems for every arm: paired) "
                    "and, for arms with two or more seeds, of the seeds; with one seed the interval covers problems "
                    "only")
        return (f"{level}% Student-t intervals over the seeds' logged final metrics (no eval records: {self.note}); "
                "an arm with one seed has no interval (n/a)")


def per_problem_values(record: RunRecords, metric: str, k: int) -> np.ndarray | None:
    """[P] per-problem unbiased pass@k or max@k of one run, or None when some problem has fewer than k samples."""
    if k > int(record.n.min()):
        return None
    if metric == "pass_at":
        return pass_at_k(record.n, record.c, np.full_like(record.n, k))
    if len(set(record.n.tolist())) == 1:
        return max_at_k(np.stack(record.rewards), k)
    return np.array([max_at_k(r, k) for r in record.rewards])


def _overlap_text(rows: pd.DataFrame) -> str:
    flags = []
    if rows[OVERLAP_TAG].any():
        flags.append(f"{OVERLAP_TAG}=true ({int(rows[OVERLAP_TAG].sum())} run(s))")
    if (rows[OVERLAP_PARAM] != 0).any():
        flags.append(f"{OVERLAP_PARAM}={int(rows[OVERLAP_PARAM].max())}")
    return "; ".join(flags)


def _n_eval(rows: pd.DataFrame, records: list[RunRecords] | None) -> float:
    if records:
        return float(min(int(r.n.min()) for r in records))
    if "n_eval" in rows:
        values = pd.to_numeric(rows["n_eval"], errors="coerce")
        if values.notna().any():
            return float(values.min())
    return float("nan")


def arm_statistics(
    runs: Runs,
    arms: list[str],
    records: dict[str, RunRecords | None] | None = None,
    resamples: int = bootstrap.RESAMPLES,
    rng_seed: int = bootstrap.RNG_SEED,
) -> ArmStats:
    """The per-arm table and replicates; bootstrap when every run has records, seed-level t otherwise."""
    frame = runs.frame
    records = records or {}
    have = [records.get(run_id) is not None for run_id in frame["run_id"]]
    groups = list(frame.groupby(arms, sort=True, dropna=False))
    base = pd.DataFrame([dict(zip(arms, key if isinstance(key, tuple) else (key,))) for key, _ in groups])
    unit = "replicate" if "replicate" in runs.frame else "seed"  # seeds × other draws (load.replicate_labels)
    base["seeds"] = [rows[unit].nunique() for _, rows in groups]
    base["eval_overlap"] = [_overlap_text(rows) for _, rows in groups]
    if all(have):
        return _bootstrap_stats(runs, groups, base, records, enough_resamples(resamples, len(groups), len(runs.ks)),
                                rng_seed)
    note = ("no run has eval records" if not any(have)
            else f"{len(have) - sum(have)} of {len(have)} runs lack eval records")
    return _seed_stats(runs, groups, base, note)


def enough_resamples(resamples: int, arms: int, ks: int) -> int:
    """At least `resamples`, and enough that the smallest bootstrap p-value, 2/(B+1), is a quarter of Holm's strictest
    threshold alpha/m for the largest possible comparison family (m = (arms - 1) * ks): a clear difference can win."""
    family = max(1, (arms - 1) * ks)
    return max(resamples, int(np.ceil(8 * family / bootstrap.ALPHA)))


def _bootstrap_stats(runs, groups, base, records, resamples, rng_seed) -> ArmStats:
    sets: dict[tuple[str, ...], int] = {}
    arm_records: list[list[RunRecords]] = []
    for key, rows in groups:
        found = [records[run_id] for run_id in rows["run_id"]]
        ids = {r.problem_ids for r in found}
        if len(ids) > 1:
            raise AnalysisError(f"the seeds of arm {key} were evaluated on different problem sets (by problem_id); "
                                "they cannot be averaged: check the benchmark's eval split and eval_size")
        sets.setdefault(found[0].problem_ids, len(sets))
        arm_records.append(found)
    # One problem weight matrix per problem set, drawn in a fixed order so the result does not depend on arm order.
    weights = {}
    for index, ids in enumerate(sorted(sets)):
        weights[ids] = bootstrap.multiplicity_weights(np.random.default_rng([rng_seed, index]), len(ids), resamples)
    continuous = any(r.continuous for found in arm_records for r in found)
    ks = {"pass_at": list(runs.ks)}
    if continuous:
        ks["max_at"] = list(runs.ks)
    table = base.copy()
    table["n_eval"] = pd.array([_n_eval(rows, found) for (_, rows), found in zip(groups, arm_records)], dtype="Int64")
    table["problems"] = [len(found[0].problem_ids) for found in arm_records]
    stats = ArmStats(table, ks, "bootstrap", problem_set=[sets[found[0].problem_ids] for found in arm_records],
                     resamples=resamples)
    columns: dict[str, list[float]] = {}
    for row, found in enumerate(arm_records):
        seed_weights = bootstrap.multiplicity_weights(np.random.default_rng([rng_seed, 1 << 20, row]), len(found),
                                                      resamples)
        problem_weights = weights[found[0].problem_ids]
        for metric, metric_ks in ks.items():
            for k in metric_ks:
                per_run = [per_problem_values(r, metric, k) for r in found]
                cells = {"mean": np.nan, "std": np.nan, "lo": np.nan, "hi": np.nan}
                if all(v is not None for v in per_run):
                    values = np.stack(per_run)  # [S, P]
                    replicates = bootstrap.resampled_means(values, problem_weights, seed_weights)
                    stats.replicates[(row, metric, k)] = replicates
                    seed_means = values.mean(axis=1)
                    cells["mean"] = float(seed_means.mean())
                    cells["std"] = float(seed_means.std(ddof=1)) if len(found) > 1 else np.nan
                    cells["lo"], cells["hi"] = bootstrap.percentile_interval(replicates)
                for name, value in cells.items():
                    columns.setdefault(f"{metric}_{k}_{name}", []).append(value)
    stats.table = pd.concat([table, pd.DataFrame(columns)], axis=1)
    return stats


def _seed_stats(runs, groups, base, note) -> ArmStats:
    max_ks = sorted(int(c.rsplit("_", 1)[1]) for c in runs.frame if c.startswith("eval/max_at_"))
    ks = {"pass_at": list(runs.ks), **({"max_at": max_ks} if max_ks else {})}
    table = base.copy()
    table["n_eval"] = pd.array([_n_eval(rows, None) for _, rows in groups], dtype="Int64")
    stats = ArmStats(table, ks, "t", problem_set=[None] * len(groups), note=note)
    columns: dict[str, list[float]] = {}
    for row, (_, rows) in enumerate(groups):
        for metric, metric_ks in ks.items():
            for k in metric_ks:
                values = rows[f"eval/{metric}_{k}"].dropna().to_numpy(dtype=float)  # a run with n_eval < k lacks k
                stats.replicates[(row, metric, k)] = values
                lo, hi = bootstrap.t_interval(values)
                cells = {"mean": values.mean() if values.size else np.nan,
                         "std": values.std(ddof=1) if values.size > 1 else np.nan, "lo": lo, "hi": hi}
                for name, value in cells.items():
                    columns.setdefault(f"{metric}_{k}_{name}", []).append(float(value))
    stats.table = pd.concat([table, pd.DataFrame(columns)], axis=1)
    return stats


def high_variance(k: int, n_eval) -> bool:
    """Pass@k with k > n_eval / 2 rests on few distinct k-subsets of the n_eval samples: flagged in tables and plots.
    False when n_eval is unknown (NaN or NA)."""
    return bool(not pd.isna(n_eval) and k > float(n_eval) / 2)
