"""Each arm against a reference arm, per k: the difference of final Pass@k, its 95% interval, and a Holm-corrected
verdict ("wins", "loses", "no decision" at level 0.05), so "does K = k win Pass@k?" gets a decision, not two means.

Reference (within a panel, i.e. among arms on the same model/benchmark/...): by default the same method (same method
params and regularizer) at K = 1 with a fixed schedule, else grpo at the arm's K, else grpo at K = 1; `--reference
method=grpo,K=1` names it instead (every key=value must match; one arm per panel). With eval records the difference is
a paired bootstrap (the arms' replicates share the resampled problems; seeds are resampled per arm) and its p-value
the bootstrap tail mass at 0; without records it is Welch's t-test over the seeds' final metrics. The family Holm
corrects over is every (arm, k) row of the table that has a p-value. What this file leaves out: the per-arm intervals
(`intervals`), writing files (`report`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from analysis import bootstrap
from analysis.intervals import ArmStats, high_variance
from analysis.load import AnalysisError
from analysis.tables import arm_label, is_line_column, panel_columns

BASELINE_METHOD = "grpo"
VERDICTS = ("wins", "loses", "no decision")


def parse_reference(text: str | None) -> dict[str, str] | None:
    """"method=grpo,K=1" -> {"method": "grpo", "K": "1"}; commas inside a value (e.g. "[0.5, 0.5]") are kept."""
    if not text:
        return None
    parts = re.split(r",(?=\s*[\w.]+=)", text)
    pairs = [p.split("=", 1) for p in parts]
    if any(len(p) != 2 or not p[0].strip() for p in pairs):
        raise AnalysisError(f"--reference {text!r} must be key=value pairs joined by commas, e.g. method=grpo,K=1")
    return {key.strip(): value.strip() for key, value in pairs}


def _same(a: pd.Series, b: pd.Series, columns: list[str]) -> bool:
    return all(str(a[c]) == str(b[c]) for c in columns)


def _fixed(row: pd.Series) -> bool:
    return str(row.get("schedule", "fixed")) in ("fixed", "", "nan")


def default_reference(table: pd.DataFrame, arms: list[str], row: int) -> int | None:
    """The index of `row`'s default reference among the rows of its panel (see the module docstring), or None."""
    me = table.loc[row]
    recipe = [c for c in arms if c.startswith(("method", "regularizer")) and c != "K"]
    panel = [c for c in arms if not is_line_column(c)]
    same_panel = [i for i in table.index if i != row and _same(table.loc[i], me, panel)]
    rules = [
        lambda r: _same(r, me, recipe) and int(r["K"]) == 1 and _fixed(r),
        lambda r: r["method"] == BASELINE_METHOD and int(r["K"]) == int(me["K"]) and _fixed(r),
        lambda r: r["method"] == BASELINE_METHOD and int(r["K"]) == 1 and _fixed(r),
    ]
    for rule in rules:
        found = [i for i in same_panel if rule(table.loc[i])]
        if found:
            return found[0]
    return None


def named_reference(table: pd.DataFrame, arms: list[str], row: int, wanted: dict[str, str]) -> int | None:
    """The one arm of `row`'s panel matching every key=value of `wanted`, or None (also for the reference itself)."""
    unknown = [key for key in wanted if key not in table]
    if unknown:
        raise AnalysisError(f"--reference names {unknown}, which are not arm columns; arm columns: {arms}")
    panel = panel_columns(arms)
    me = table.loc[row]
    found = [i for i in table.index if _same(table.loc[i], me, panel)
             and all(str(table.loc[i, key]) == value for key, value in wanted.items())]
    if len(found) > 1:
        labels = [arm_label(table.loc[i], arms) for i in found]
        raise AnalysisError(f"--reference {wanted} matches {len(found)} arms in one panel ({labels}); add keys")
    return found[0] if found and found[0] != row else None


def compare(stats: ArmStats, arms: list[str], reference: dict[str, str] | None = None,
            metric: str = "pass_at") -> pd.DataFrame:
    """One row per (arm, k) with a reference: panel columns, arm, reference, k, diff (arm − reference), diff_lo,
    diff_hi, p, p_holm, verdict, high_variance. Empty when no arm has a reference."""
    table = stats.table
    rows = []
    for i in table.index:
        j = named_reference(table, arms, i, reference) if reference else default_reference(table, arms, i)
        if j is None:
            continue
        me, ref = table.loc[i], table.loc[j]
        for k in stats.ks.get(metric, []):
            a, b = stats.replicates.get((i, metric, k)), stats.replicates.get((j, metric, k))
            if a is None or b is None or not (a.size and b.size):
                continue
            diff = float(me[f"{metric}_{k}_mean"] - ref[f"{metric}_{k}_mean"])
            if stats.method == "bootstrap":
                if stats.problem_set[i] != stats.problem_set[j]:
                    p, lo, hi = np.nan, np.nan, np.nan
                else:
                    lo, hi = bootstrap.percentile_interval(a - b)
                    p = bootstrap.bootstrap_p_value(a - b)
            else:
                p, lo, hi = bootstrap.welch(a, b)
            rows.append({
                **{c: me[c] for c in panel_columns(arms)}, "method": me["method"], "K": me["K"],
                "arm": arm_label(me, arms), "reference": arm_label(ref, arms), "k": k, "diff": diff,
                "diff_lo": lo, "diff_hi": hi, "p": p,
                "comparable": stats.method != "bootstrap" or stats.problem_set[i] == stats.problem_set[j],
                "high_variance": high_variance(k, pd.Series([me["n_eval"], ref["n_eval"]], dtype="Float64").min()),
            })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"], rejected = bootstrap.holm(out["p"].to_numpy())
    out["verdict"] = np.where(rejected & (out["diff"] > 0), "wins", np.where(rejected & (out["diff"] < 0), "loses",
                                                                            "no decision"))
    out.loc[~out["comparable"], "verdict"] = "no decision (different eval problems)"
    return out.drop(columns=["comparable"])


def _number(value: float, digits: int = 4) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.{digits}f}"


def _rows_markdown(table: pd.DataFrame, first: list[str]) -> list[str]:
    head = [*first, "k", "arm − reference [95% CI]", "p", "p (Holm)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for _, r in table.iterrows():
        k = f"{r['k']}†" if r["high_variance"] else str(r["k"])
        cells = [str(r[c]) for c in first] + [
            k, f"{_number(r['diff'])} [{_number(r['diff_lo'])}, {_number(r['diff_hi'])}]",
            "n/a" if not np.isfinite(r["p"]) else f"{r['p']:.4f}",
            "n/a" if not np.isfinite(r["p_holm"]) else f"{r['p_holm']:.4f}", f"**{r['verdict']}**"
            if r["verdict"] in ("wins", "loses") else r["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(comparisons: pd.DataFrame, stats: ArmStats, arms: list[str], title: str,
                reference: dict[str, str] | None) -> str:
    """comparisons.md: the method, the family, the verdicts at k = K (phase 1's question), then every row."""
    level = bootstrap.ALPHA
    how = ("paired percentile bootstrap of the difference (shared resampled problems, seeds resampled per arm), "
           "p = two-sided bootstrap tail mass at 0" if stats.method == "bootstrap" else
           f"Welch's t-test over the seeds' final metrics ({stats.note}); arms with one seed get no test")
    ref = (f"the arm with {reference} in each panel" if reference else
           "the same method at K = 1 (fixed schedule), else grpo at the same K, else grpo at K = 1, within each panel")
    family = int(np.isfinite(comparisons["p"]).sum())
    lines = [f"# {title}: each arm against its reference", "",
             f"Reference: {ref}. Interval: {int(100 * (1 - level))}% CI of arm − reference, {how}. "
             f"Verdict: Holm-corrected at level α = {level} over the family of all {family} (arm, k) rows below "
             "that have a p-value; \"wins\"/\"loses\" = the difference is nonzero at that level, \"no decision\" = "
             "it is not. † marks k > n_eval/2 (high variance: few distinct k-subsets of the samples).",
             ""]
    first = [c for c in panel_columns(arms)] + ["arm", "reference"]
    at_target = comparisons[comparisons["k"] == comparisons["K"]]
    if not at_target.empty:
        lines += [f"## At k = K: does training at K win the Pass@K it targets?", ""]
        lines += _rows_markdown(at_target, first) + [""]
    lines += ["## Every arm and k", ""] + _rows_markdown(comparisons, first)
    return "\n".join(lines) + "\n"
