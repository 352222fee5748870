"""Which K target wins each Pass@k: a toy phase read back from MLflow, at its last step or at any eval step.

    python -m passk_exp.toylab.summary --tracking-uri URI --experiment toylab-phase1 [--step 100] --out DIR

Writes <title>.md: exact Pass@k per arm (mean ± standard error over seeds) and, per method, the K (or schedule) whose
arm ends best at each Pass@k with its margin over the runner-up in standard errors. An arm is everything but the seed:
method (with its non-default params), K, schedule, regularizer and population. The numbers come only from the runs in
the store. What this file leaves out: curves, Pareto fronts and the other figures, which `python -m analysis` draws
from the same runs, and the estimator diagnostics (report.py).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from passk_exp import estimators
from passk_exp.toylab.report import markdown_table, method_label

KS = (1, 4, 16, 64)
ARM = ["arm", "method", "K", "schedule", "regularizer", "benchmark"]


def _method_params(params: dict[str, str], method: str) -> dict[str, object]:
    """Non-default method params of a run, from its flattened config params (method.params.<key>)."""
    defaults = estimators.method_params(method)
    out = {}
    for key, default in defaults.items():
        raw = params.get(f"method.params.{key}")
        if raw is None:
            continue
        try:
            value = json.loads(raw) if raw not in ("True", "False", "None") else {"True": True, "False": False}.get(raw)
        except json.JSONDecodeError:
            value = raw
        if value != default and not (isinstance(default, tuple) and list(default) == value):
            out[key] = value
    return out


def _schedule_label(tags: dict[str, str], params: dict[str, str]) -> str:
    name = tags.get("schedule", "fixed")
    if name == "adaptive":
        return f"adaptive({params.get('schedule.k_min')}-{params.get('schedule.k_max')})"
    if name == "anneal":
        return f"anneal{params.get('schedule.milestones', '')}".replace(" ", "")
    return name


def load_runs(tracking_uri: str, experiments: Sequence[str], step: int | None = None) -> pd.DataFrame:
    """One row per finished toy training run of the named experiments: arm, seed and its eval/* metrics, the latest
    values, or those logged at `step` (an eval step) when given. Summary runs written by `analysis` are skipped."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    ids = []
    for name in experiments:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise ValueError(f"experiment {name!r} is not in {tracking_uri}")
        ids.append(found.experiment_id)
    rows = []
    for run in client.search_runs(ids, filter_string="attributes.status = 'FINISHED'", max_results=50000):
        tags, params = run.data.tags, run.data.params
        if tags.get("task", "train") != "train" or "method" not in tags or "passk_analysis" in tags:
            continue
        metrics = {key: value for key, value in run.data.metrics.items() if key.startswith("eval/")}
        if step is not None:
            metrics = {key: _value_at(client, run.info.run_id, key, step) for key in metrics}
        method = tags["method"]
        schedule = _schedule_label(tags, params)
        label = method_label(method, _method_params(params, method))
        rows.append(
            {
                "arm": label if schedule == "fixed" else f"{label} {schedule}",
                "method": label,
                "K": int(tags["K"]) if schedule == "fixed" else schedule,
                "schedule": schedule,
                "regularizer": tags.get("regularizer", "none"),
                "benchmark": tags.get("benchmark", ""),
                "seed": int(tags.get("seed", 0)),
                "phase": tags.get("phase", ""),
                **metrics,
            }
        )
    if not rows:
        raise ValueError(f"no finished toy runs in experiments {list(experiments)} at {tracking_uri}")
    return pd.DataFrame(rows)


def _value_at(client, run_id: str, key: str, step: int) -> float:
    values = [m.value for m in client.get_metric_history(run_id, key) if m.step == step]
    if not values:
        raise ValueError(f"run {run_id} has no {key} at step {step}; eval steps are multiples of eval_every")
    return values[-1]


def final_table(runs: pd.DataFrame, ks: Sequence[int] = KS, metric: str = "pass_at") -> pd.DataFrame:
    """Mean and standard error over seeds of the final eval/<metric>_{k} per arm (columns pass_at_k, pass_at_k_se)."""
    cols = [f"eval/{metric}_{k}" for k in ks if f"eval/{metric}_{k}" in runs.columns]
    keys = [c for c in ARM if c in runs.columns]
    grouped = runs.assign(K=runs["K"].map(_k_key)).groupby(keys, dropna=False)
    mean, se = grouped[cols].mean(), grouped[cols].std(ddof=1) / grouped[cols].count().pow(0.5)
    table = mean.rename(columns=lambda c: c.split("/")[1])
    for c in cols:
        table[c.split("/")[1] + "_se"] = se[c]
    table["seeds"] = grouped.size()
    table = table.reset_index()
    table["K"] = table["K"].map(lambda key: key[1])
    return table


def winners(table: pd.DataFrame, ks: Sequence[int] = KS, metric: str = "pass_at") -> pd.DataFrame:
    """For each method and each k: the K (or schedule) whose arm ends best at {metric}_k, with its margin over the
    runner-up in standard errors (margins under ~2 are ties at this number of seeds), or as an absolute difference
    ("abs") where the pair has no standard error (one seed per arm, or seeds that agree exactly)."""
    rows = []
    for (method, benchmark, regularizer), group in table.groupby(["method", "benchmark", "regularizer"]):
        if len(group) < 2:
            continue
        row = {"method": method, "benchmark": benchmark, "regularizer": regularizer}
        for k in ks:
            col = f"{metric}_{k}"
            if col not in group:
                continue
            ranked = group.sort_values(col, ascending=False)
            best, second = ranked.iloc[0], ranked.iloc[1]
            se = math.hypot(_nan0(best.get(col + "_se")), _nan0(second.get(col + "_se")))
            diff = best[col] - second[col]
            margin = f"+{diff / se:.1f}se" if se > 0 else f"+{diff:.3f} abs"  # no s.e.: never an infinite margin
            row[f"best K @{k}"] = f"{best['K']} ({best[col]:.3f}, {margin})"
        rows.append(row)
    return pd.DataFrame(rows)


def _k_key(k: object) -> tuple[int, object]:
    """Sort key that puts numeric K first, in numeric order, then schedule labels (kept as the second item)."""
    return (int(k), k) if isinstance(k, int) or str(k).isdigit() else (1 << 30, str(k))


def _nan0(x: object) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)  # type: ignore[arg-type]


def write_summary(runs: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """<title>.md (final table and winners) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    metric = "pass_at" if any(c.startswith("eval/pass_at_") for c in runs.columns) else "max_at"
    table = final_table(runs, metric=metric)
    ks = [k for k in KS if f"{metric}_{k}" in table]
    values = [c for k in ks for c in (f"{metric}_{k}", f"{metric}_{k}_se")]
    cols = ["arm", "K", "benchmark", "regularizer", "seeds", *values]
    name = metric.replace("_at", "@")
    text = [f"# {title}: exact {name}k per arm (mean over seeds, ± s.e.)\n\n", markdown_table(table, cols)]
    won = winners(table, ks, metric)
    if not won.empty:
        text += [f"\n## Which K wins each {name}k (per method; margin over the runner-up in s.e., or as an absolute "
                 "difference, abs, where there is no s.e.: one seed)\n\n",
                 markdown_table(won, list(won.columns))]
    path = out / f"{title}.md"
    path.write_text("".join(text))
    return [path]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m passk_exp.toylab.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", action="append", required=True, help="repeat to pool several experiments")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--step", type=int, default=None, help="the eval metrics logged at this step, not the last")
    parser.add_argument("--title", default=None, help="file stem (default: <experiment>[-step<step>])")
    args = parser.parse_args(argv)
    runs = load_runs(args.tracking_uri, args.experiment, args.step)
    title = args.title or args.experiment[0] + (f"-step{args.step}" if args.step is not None else "")
    for path in write_summary(runs, args.out, title):
        print(path)


if __name__ == "__main__":
    main()
