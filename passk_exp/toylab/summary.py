"""Which K target wins each Pass@k: a toy phase read back from MLflow, at its last step or at any eval step.

    python -m passk_exp.toylab.summary --tracking-uri URI --experiment toylab-phase1 [--step 100] --out DIR

Writes <title>.md: exact Pass@k per arm (mean over units, ± the 95% t half-width) and, per method, the K (or schedule)
whose arm ends best at each Pass@k, with its paired difference to every other K of that method (95% t-interval over
the units both arms ran) decided by Holm's procedure at α = 0.05 over the whole table's comparisons (verdicts.py):
"wins" only when the best arm is ahead of every other arm of its method at that level. <title>_comparisons.csv holds
every comparison. A unit is one (training seed, population draw) pair: the draw is `toylab_population.seed`, a config
axis of its own (sweeps/toylab/ run 5 seeds × 3 draws), so arms are paired on the same problems. An arm is everything
but the unit: method (with its non-default params), K, schedule, regularizer and population name. The numbers come
only from the runs in the store. What this file leaves out: curves, Pareto fronts and the other figures, which
`python -m analysis` draws from the same runs, and the estimator diagnostics (report.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from passk_exp import estimators
from passk_exp.toylab.report import markdown_table, method_label
from passk_exp.toylab.verdicts import ALPHA, LEVEL, decide, draws_won, holm, paired_t

KS = (1, 4, 16, 64)
ARM = ["arm", "method", "K", "schedule", "regularizer", "benchmark"]
UNIT = ["seed", "draw"]  # what the arms are paired on: training seed and population draw


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
    """One row per finished toy training run of the named experiments: arm, seed, draw (the population's seed) and its
    eval/* metrics, the latest values, or those logged at `step` (an eval step) when given. Summary runs written by
    `analysis` are skipped."""
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
                "draw": int(params.get("toylab_population.seed", 0)),
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
    """Per arm, over its units: the mean of the final eval/<metric>_{k} (column pass_at_k), its standard error
    (pass_at_k_se) and the half-width of its 95% t-interval (pass_at_k_ci); runs = units, draws = population draws."""
    from scipy import stats

    cols = [f"eval/{metric}_{k}" for k in ks if f"eval/{metric}_{k}" in runs.columns]
    keys = [c for c in ARM if c in runs.columns]
    runs = _with_draw(runs)
    grouped = runs.assign(K=runs["K"].map(_k_key)).groupby(keys, dropna=False)
    count = grouped[cols].count()
    mean, se = grouped[cols].mean(), grouped[cols].std(ddof=1) / count.pow(0.5)
    half = se * stats.t.ppf(0.5 + LEVEL / 2, (count - 1).clip(lower=1))
    table = mean.rename(columns=lambda c: c.split("/")[1])
    for c in cols:
        table[c.split("/")[1] + "_se"] = se[c]
        table[c.split("/")[1] + "_ci"] = half[c]
    table["runs"] = grouped.size()
    table["draws"] = grouped["draw"].nunique()
    table = table.reset_index()
    table["K"] = table["K"].map(lambda key: key[1])
    return table


def _with_draw(runs: pd.DataFrame) -> pd.DataFrame:
    return runs if "draw" in runs.columns else runs.assign(draw=0)


def comparisons(
    runs: pd.DataFrame, ks: Sequence[int] = KS, metric: str = "pass_at", alpha: float = ALPHA
) -> pd.DataFrame:
    """For each method (and population, regularizer) and each k: the arm that ends best at {metric}_k against every
    other K of that method, paired by unit. One row per comparison: the difference best − other (mean, 95% t-interval,
    units, draws where best is ahead), its p-value, Holm's adjusted p over all rows, and the decision."""
    runs = _with_draw(runs)
    units = runs[UNIT].drop_duplicates().sort_values(UNIT).reset_index(drop=True)
    unit_draws = units["draw"].to_numpy()
    meta, rows = [], []
    for (method, benchmark, regularizer), group in runs.groupby(["method", "benchmark", "regularizer"]):
        arms = group.assign(K=group["K"].map(_k_key))
        for k in ks:
            col = f"eval/{metric}_{k}"
            if col not in arms or arms["K"].nunique() < 2:
                continue
            wide = arms.pivot_table(index=UNIT, columns="K", values=col, aggfunc="mean")
            wide = units.merge(wide.reset_index(), on=UNIT, how="left").drop(columns=UNIT)
            ranked = wide.mean().sort_values(ascending=False)
            best = ranked.index[0]
            for other in ranked.index[1:]:
                meta.append({"method": method, "benchmark": benchmark, "regularizer": regularizer, "k": k,
                             "best": best[1], "best_mean": ranked[best], "other": other[1],
                             "other_mean": ranked[other], "rank": len(meta)})
                rows.append((wide[best] - wide[other]).to_numpy(dtype=float))
    if not rows:
        return pd.DataFrame()
    diffs = np.stack(rows)
    test = paired_t(diffs)
    adjusted, reject = holm(test.p, alpha)
    won, draws = draws_won(diffs, unit_draws)
    out = pd.DataFrame(meta).drop(columns="rank")
    out = out.assign(diff=test.mean, lo=test.lo, hi=test.hi, units=test.units, draws_ahead=won, draws=draws,
                     p=test.p, p_holm=adjusted, decision=decide(test.mean, reject, test.units))
    return out


def winners(runs: pd.DataFrame, ks: Sequence[int] = KS, metric: str = "pass_at", alpha: float = ALPHA) -> pd.DataFrame:
    """For each method and each k: the K (or schedule) whose arm ends best at {metric}_k, its mean, and its paired
    difference to the runner-up with the 95% interval. "wins" when it is ahead of every other K of the method after
    Holm's correction at `alpha` over the table; otherwise "tie with" the Ks it is not separated from; "one unit"
    where an arm ran once (a difference, no interval)."""
    table = comparisons(runs, ks, metric, alpha)
    rows = []
    if table.empty:
        return pd.DataFrame()
    for (method, benchmark, regularizer), group in table.groupby(["method", "benchmark", "regularizer"], sort=True):
        row = {"method": method, "benchmark": benchmark, "regularizer": regularizer}
        for k, cell in group.groupby("k", sort=True):
            first = cell.iloc[0]  # the runner-up: comparisons keep the ranking order
            if (cell["decision"] == "one unit").any():
                verdict = "one unit"
                interval = f"{first['diff']:+.3f} abs"
            else:
                tied = cell.loc[cell["decision"] != "A > B", "other"].astype(str).tolist()
                verdict = "wins" if not tied else "tie with " + ", ".join(tied)
                interval = f"{first['diff']:+.4f} [{first['lo']:+.4f}, {first['hi']:+.4f}]"
            row[f"best K @{k}"] = (f"{first['best']} ({first['best_mean']:.3f}; vs {first['other']}: {interval}; "
                                   f"draws {first['draws_ahead']}/{first['draws']}) {verdict}")
        rows.append(row)
    return pd.DataFrame(rows)


def _k_key(k: object) -> tuple[int, object]:
    """Sort key that puts numeric K first, in numeric order, then schedule labels (kept as the second item)."""
    return (int(k), k) if isinstance(k, int) or str(k).isdigit() else (1 << 30, str(k))


def write_summary(runs: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """<title>.md (final table and winners) and <title>_comparisons.csv (every paired comparison) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    metric = "pass_at" if any(c.startswith("eval/pass_at_") for c in runs.columns) else "max_at"
    table = final_table(runs, metric=metric)
    ks = [k for k in KS if f"{metric}_{k}" in table]
    values = [c for k in ks for c in (f"{metric}_{k}", f"{metric}_{k}_ci")]
    cols = ["arm", "K", "benchmark", "regularizer", "runs", "draws", *values]
    name = metric.replace("_at", "@")
    text = [f"# {title}: exact {name}k per arm (mean over runs = training seeds × population draws; _ci = half-width "
            "of the 95% t-interval over runs)\n\n", markdown_table(table, cols)]
    paths = [out / f"{title}.md"]
    compared = comparisons(runs, ks, metric)
    won = winners(runs, ks, metric)
    if not won.empty:
        text += [f"\n## Which K wins each {name}k (per method)\n\nEach cell: the best K (its mean; its paired "
                 "difference to the runner-up with the 95% t-interval over shared runs; population draws on which it "
                 "is ahead). **wins**: ahead of every other K of the method after Holm's correction at α = 0.05 over "
                 f"all {len(compared)} comparisons of this table (`{title}_comparisons.csv`); **tie with**: the Ks it "
                 "is not separated from. The intervals are per comparison (95%); the decisions use Holm-adjusted "
                 "p-values, so an interval that just excludes 0 can still be a tie.\n\n",
                 markdown_table(won, list(won.columns))]
        compared.to_csv(out / f"{title}_comparisons.csv", index=False, float_format="%.6g")
        paths.append(out / f"{title}_comparisons.csv")
    paths[0].write_text("".join(text))
    return paths


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
