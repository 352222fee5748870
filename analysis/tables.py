"""Seed statistics of final Pass@k per arm, the Pass@1-vs-Pass@k Pareto front, and the fixed-vs-adaptive K table.

An arm is what a row of a table stands for: method × K, split further by every descriptive tag (schedule, model,
benchmark, ...) and schedule parameter that takes more than one value among the runs, so runs that differ in anything
but the seed are never averaged together. Each cell is a mean with its 95% interval (`intervals`: a bootstrap over
problems and seeds from the eval records, or a t interval over seeds without them) and the sample std over seeds
(ddof = 1; NaN for a single seed, shown as "n/a"). The Pareto front is taken at the interval level: an arm counts as
dominated only when another's interval lies entirely beyond its own on both axes. Pure pandas/numpy: no I/O, no
plotting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.intervals import METRICS, ArmStats, arm_statistics, high_variance, metric_label
from analysis.load import DESCRIPTIVE_TAGS, SCHEDULE_PARAMS, Runs
from analysis.records import RunRecords

PARETO_K = 64  # the study's "Pass@1 vs Pass@64" front; the largest logged k stands in when 64 is absent


def arm_columns(runs: Runs) -> list[str]:
    """["method", "K"], each descriptive tag that varies, and each logged param that still varies among runs sharing
    those tags (e.g. passk_multi's weights, the synthetic task's digits): everything that tells arms apart."""
    frame = runs.frame
    tags = ["method", "K", *(t for t in DESCRIPTIVE_TAGS if frame[t].nunique(dropna=False) > 1)]
    grouped = frame.groupby(tags, sort=False, dropna=False)
    params = [p for p in runs.params if (grouped[p].nunique(dropna=False) > 1).any()]
    return [*tags, *params]


def is_line_column(column: str) -> bool:
    """Columns that tell apart the lines of one panel (the training recipe); the others split panels."""
    return column in ("method", "K", "schedule", "regularizer") or column.startswith(("method.", "schedule.", "regularizer."))


def panel_columns(arms: list[str]) -> list[str]:
    """The arm columns that split figures into panels: model, benchmark, n, scale, ... (not the recipe)."""
    return [c for c in arms if not is_line_column(c)]


def summarize(runs: Runs, records: dict[str, RunRecords | None] | None = None) -> pd.DataFrame:
    """One row per arm: the arm columns, `seeds` (distinct seeds), n_eval, eval_overlap, `high_variance_ks` and
    `pass_at_{k}_mean` / `_std` / `_lo` / `_hi` for every logged k (see `intervals.arm_statistics`). A k a run did not
    log (n_eval < k) is left out of that run's statistics, not counted as 0."""
    return summary_table(arm_statistics(runs, arm_columns(runs), records))


def summary_table(stats: ArmStats, metric: str = "pass_at") -> pd.DataFrame:
    """The per-arm table of one metric (pass_at or max_at) from `intervals.ArmStats`, with `high_variance_ks`."""
    table = stats.table
    others = [c for c in table if c.startswith(tuple(f"{m}_" for m in METRICS if m != metric))]
    table = table.drop(columns=others)
    ks = stats.ks.get(metric, [])
    flagged = [", ".join(str(k) for k in ks if high_variance(k, n)) for n in table["n_eval"]]
    position = table.columns.get_loc("eval_overlap") + 1
    table.insert(position, "high_variance_ks", flagged)
    return table


def ci_dominated(x_lo, x_hi, y_lo, y_hi) -> np.ndarray:
    """[P] bool: True where another point's interval box lies beyond this point's on both axes (its lower ends at
    least this one's upper ends, strictly on one axis). A point without an interval (NaN) is never dominated."""
    x_lo, x_hi, y_lo, y_hi = (np.asarray(v, dtype=float)[:, None] for v in (x_lo, x_hi, y_lo, y_hi))
    at_least = (x_lo.T >= x_hi) & (y_lo.T >= y_hi)  # [P, P]: column j's lower ends vs row i's upper ends
    strictly = (x_lo.T > x_hi) | (y_lo.T > y_hi)
    return (at_least & strictly).any(axis=1)


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[P] bool: True where no other point is at least as good on both axes and strictly better on one (maximise)."""
    x, y = np.asarray(x, dtype=float)[:, None], np.asarray(y, dtype=float)[:, None]
    at_least = (x.T >= x) & (y.T >= y)  # [P, P]: column j weakly dominates row i
    strictly = (x.T > x) | (y.T > y)
    return ~(at_least & strictly).any(axis=1)


def pareto_k(ks: list[int]) -> int:
    return PARETO_K if PARETO_K in ks else max(ks)


def pareto_table(summary: pd.DataFrame, arms: list[str], ks: list[int], k_hi: int | None = None) -> pd.DataFrame:
    """The summary rows with Pass@1 and Pass@k_hi means (`x`, `y`), their intervals (`x_lo`, ..., `y_hi`), `on_front`
    (not dominated at the interval level, see `ci_dominated`) and `on_front_of_means`, both within each panel."""
    k_hi = k_hi or pareto_k(ks)
    if 1 not in ks or k_hi not in ks:
        raise ValueError(f"the Pareto front needs eval/pass_at_1 and eval/pass_at_{k_hi}; the runs logged k = {ks}")
    table = summary.copy()
    for axis, k in (("x", 1), ("y", k_hi)):
        for part in ("mean", "std", "lo", "hi"):
            table[axis if part == "mean" else f"{axis}_{part}"] = table[f"pass_at_{k}_{part}"]
    panels = panel_columns(arms)
    table["on_front"] = False
    table["on_front_of_means"] = False
    for _, index in (table.groupby(panels, dropna=False).groups.items() if panels else [(None, table.index)]):
        rows = table.loc[index]
        table.loc[index, "on_front_of_means"] = pareto_mask(rows["x"], rows["y"])
        table.loc[index, "on_front"] = ~ci_dominated(rows["x_lo"], rows["x_hi"], rows["y_lo"], rows["y_hi"])
    return table


def describe_schedule(row: pd.Series) -> str:
    """A one-line description of the K an arm trained with, from its schedule tag and logged schedule params."""
    name = row.get("schedule", "") or "fixed"
    if name == "adaptive" and row.get("schedule.k_max", ""):
        return f"adaptive K in [{row['schedule.k_min']}, {row['schedule.k_max']}], p_target={row['schedule.p_target']}"
    if name == "anneal" and row.get("schedule.milestones", ""):
        return f"anneal [step, K]: {row['schedule.milestones']}"
    if name == "fixed":
        return f"fixed K={row['K']}"
    return name


def _given(value) -> bool:
    """False for a parameter an arm leaves at its default: logged as "" or "None" (MLflow params are strings)."""
    return value not in ("", "None", None) and not (isinstance(value, float) and np.isnan(value))


def arm_label(row: pd.Series, arms: list[str], with_k: bool = True) -> str:
    """The recipe of an arm in words, e.g. "passk_multi · ks=[1, 64] · weights=[0.5, 0.5] · K=64"."""
    parts = [str(row["method"])]
    parts += [f"{c.rsplit('.', 1)[-1]}={row[c]}" for c in arms if c.startswith("method.") and _given(row[c])]
    if "regularizer" in arms:
        parts.append(f"regularizer={row['regularizer']}")
    parts += [f"{c}={row[c]}" for c in arms if c.startswith("regularizer.") and _given(row[c])]
    if "schedule" in arms or any(c.startswith("schedule.") for c in arms):
        parts.append(describe_schedule(row))
    elif with_k:
        parts.append(f"K={row['K']}")
    return " · ".join(parts)


def schedule_table(runs: Runs, summary: pd.DataFrame, arms: list[str]) -> pd.DataFrame | None:
    """Phase 3's fixed-vs-adaptive table: the summary rows with their K schedule in words and the mean final `train/K`
    (the K the schedule had reached). None when only one schedule is present and the runs are not tagged phase3."""
    frame = runs.frame
    schedules = set(frame["schedule"]) - {""}
    if len(schedules) < 2 and not (frame["phase"] == "phase3").any():
        return None
    described = [c for c in ("schedule", *SCHEDULE_PARAMS) if c in frame]
    grouped = frame.groupby(arms, sort=True, dropna=False)  # the order of `summary`'s rows
    table = summary.copy()
    for column in described:
        table[column] = grouped[column].first().to_numpy()
    table.insert(1, "K schedule", [describe_schedule(row) for _, row in table.iterrows()])
    if "train/K" in frame:
        table.insert(2, "final train/K", grouped["train/K"].mean().to_numpy())
    return table.drop(columns=[c for c in SCHEDULE_PARAMS if c in table])


def _cell(value) -> str:
    if value is pd.NA or value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def to_markdown(table: pd.DataFrame, ks: list[int], best: bool = True, metric: str = "pass_at") -> str:
    """A GitHub-flavoured markdown table; each k's `{metric}_{k}_mean`/`_lo`/`_hi` become one "mean [lo, hi]" column,
    a † marks a k above n_eval/2 (high variance) for that row, and with `best` the highest mean of a column is bold.
    The `eval_overlap` column is shown only when some arm is flagged."""
    shown: list[str] = []
    cells: dict[str, list[str]] = {}
    for column in table.columns:
        if column.startswith(tuple(f"{m}_" for m in METRICS)) or column == "high_variance_ks":
            continue
        if column == "eval_overlap" and not table[column].astype(bool).any():
            continue
        shown.append(column)
        cells[column] = [_cell(v) for v in table[column]]
    n_eval = table["n_eval"] if "n_eval" in table else pd.Series(np.nan, index=table.index)
    for k in ks:
        mean, lo, hi = (table[f"{metric}_{k}_{part}"] for part in ("mean", "lo", "hi"))
        top = mean.max()
        name = f"{metric_label(metric)}{k}"
        shown.append(name)
        cells[name] = [
            (f"**{m:.4f}**" if best and m == top and len(mean) > 1 else _cell(m))
            + ("" if np.isnan(a) else f" [{a:.4f}, {b:.4f}]") + (" †" if high_variance(k, n) else "")
            for m, a, b, n in zip(mean, lo, hi, n_eval)
        ]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(cells[c][i] for c in shown) + " |" for i in range(len(table))]
    return "\n".join(lines) + "\n"
