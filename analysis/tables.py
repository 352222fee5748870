"""Seed statistics of final Pass@k per arm, the Pass@1-vs-Pass@k Pareto front, and the fixed-vs-adaptive K table.

An arm is what a row of a table stands for: method × K, split further by every descriptive tag (schedule, model,
benchmark, ...) and schedule parameter that takes more than one value among the runs, so runs that differ in anything
but the seed are never averaged together. Statistics are over seeds: the mean and the sample standard deviation
(ddof = 1; NaN for a single seed, shown as "n/a"). Pure pandas/numpy: no I/O, no plotting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import DESCRIPTIVE_TAGS, SCHEDULE_PARAMS, Runs

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


def summarize(runs: Runs) -> pd.DataFrame:
    """One row per arm: the arm columns, `seeds` (number of runs) and `pass_at_{k}_mean` / `pass_at_{k}_std` for
    every logged k. A k a run did not log (n_eval < k) is left out of that run's statistics, not counted as 0."""
    arms = arm_columns(runs)
    grouped = runs.frame.groupby(arms, sort=True, dropna=False)
    table = grouped["seed"].nunique().rename("seeds").to_frame()
    for k, column in runs.ks.items():
        table[f"pass_at_{k}_mean"] = grouped[column].mean()
        table[f"pass_at_{k}_std"] = grouped[column].std(ddof=1)
    return table.reset_index()


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[P] bool: True where no other point is at least as good on both axes and strictly better on one (maximise)."""
    x, y = np.asarray(x, dtype=float)[:, None], np.asarray(y, dtype=float)[:, None]
    at_least = (x.T >= x) & (y.T >= y)  # [P, P]: column j weakly dominates row i
    strictly = (x.T > x) | (y.T > y)
    return ~(at_least & strictly).any(axis=1)


def pareto_k(ks: list[int]) -> int:
    return PARETO_K if PARETO_K in ks else max(ks)


def pareto_table(summary: pd.DataFrame, arms: list[str], ks: list[int], k_hi: int | None = None) -> pd.DataFrame:
    """The summary rows with Pass@1 and Pass@k_hi means (`x`, `y`) and `on_front`, the front taken within each panel."""
    k_hi = k_hi or pareto_k(ks)
    if 1 not in ks or k_hi not in ks:
        raise ValueError(f"the Pareto front needs eval/pass_at_1 and eval/pass_at_{k_hi}; the runs logged k = {ks}")
    table = summary.copy()
    table["x"], table["y"] = table["pass_at_1_mean"], table[f"pass_at_{k_hi}_mean"]
    table["x_std"], table["y_std"] = table["pass_at_1_std"], table[f"pass_at_{k_hi}_std"]
    panels = panel_columns(arms)
    table["on_front"] = False
    for _, index in (table.groupby(panels, dropna=False).groups.items() if panels else [(None, table.index)]):
        table.loc[index, "on_front"] = pareto_mask(table.loc[index, "x"], table.loc[index, "y"])
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


def schedule_table(runs: Runs) -> pd.DataFrame | None:
    """Phase 3's fixed-vs-adaptive table: one row per arm with its K schedule in words, the mean final `train/K`
    (the K the schedule had reached), and mean ± std of every final Pass@k. None when only one schedule is present
    and the runs are not tagged phase3."""
    frame = runs.frame
    schedules = set(frame["schedule"]) - {""}
    if len(schedules) < 2 and not (frame["phase"] == "phase3").any():
        return None
    columns = [*arm_columns(runs), *(c for c in ("schedule", *SCHEDULE_PARAMS) if c in frame)]
    columns = list(dict.fromkeys(columns))
    grouped = frame.groupby(columns, sort=True, dropna=False)
    table = grouped["seed"].nunique().rename("seeds").to_frame().reset_index()
    table.insert(1, "K schedule", [describe_schedule(row) for _, row in table.iterrows()])
    if "train/K" in frame:
        table["final train/K"] = grouped["train/K"].mean().to_numpy()
    for k, column in runs.ks.items():
        table[f"pass_at_{k}_mean"] = grouped[column].mean().to_numpy()
        table[f"pass_at_{k}_std"] = grouped[column].std(ddof=1).to_numpy()
    return table.drop(columns=[c for c in SCHEDULE_PARAMS if c in table])


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def to_markdown(table: pd.DataFrame, ks: list[int], best: bool = True) -> str:
    """A GitHub-flavoured markdown table; `pass_at_{k}_mean`/`_std` pairs become one "mean ± std" column per k,
    and with `best` the highest mean in each such column is bold."""
    shown: list[str] = []
    cells: dict[str, list[str]] = {}
    for column in table.columns:
        if column.startswith("pass_at_"):
            continue
        shown.append(column)
        cells[column] = [_cell(v) for v in table[column]]
    for k in ks:
        mean, std = table[f"pass_at_{k}_mean"], table[f"pass_at_{k}_std"]
        top = mean.max()
        name = f"pass@{k}"
        shown.append(name)
        cells[name] = [
            (f"**{m:.4f}**" if best and m == top and len(mean) > 1 else f"{m:.4f}")
            + ("" if np.isnan(s) else f" ± {s:.4f}")
            for m, s in zip(mean, std)
        ]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(cells[c][i] for c in shown) + " |" for i in range(len(table))]
    return "\n".join(lines) + "\n"
