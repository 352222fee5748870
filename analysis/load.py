"""From an MLflow experiment to a tidy table: one row per run, its tags, and its final Pass@k metrics.

A run is usable when it carries the tags `method`, `K` and `seed` and at least one metric `eval/pass_at_{k}` (the
names the harness logs; the toy lab logs the same). "Final" is what MLflow reports as a run's latest value of each
metric, i.e. the value at the last logged step. Runs that are not FINISHED, that lack the tags or the metrics, and the
summary runs this package writes itself are left out, and each omission is reported, never silent. What this module
leaves out: any statistic (see `tables`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import pandas as pd

log = logging.getLogger(__name__)

REQUIRED_TAGS = ("method", "K", "seed")
# Tags that describe a run's arm besides method and K; a table splits its rows by each one that varies.
DESCRIPTIVE_TAGS = ("schedule", "regularizer", "model", "benchmark", "n", "phase", "scale")
INTEGER_TAGS = ("K", "seed", "n")
PASS_AT = re.compile(r"^metrics\.eval/pass_at_(\d+)$")
SUMMARY_TAG = "passk_analysis"  # set on the summary runs `report` writes, so a second analysis does not read them
SCHEDULE_PARAMS = ("schedule.k_min", "schedule.k_max", "schedule.p_target", "schedule.milestones")
# Logged params that never make two runs different arms: the seed itself, bookkeeping (cf. checkpoint.run_key) and
# speed settings that compute the same method (runs logged before a setting existed lack it: still the same arm).
IGNORED_PARAMS = re.compile(
    r"^(seed|.*\.seed|resume|quiet|checkpoint_dir|eval_every|save_every|tracking\..*"
    r"|keep_freed_memory|train\.attention|train\.token_chunk|train\.shared_prefix)$"
)


class AnalysisError(ValueError):
    """The experiment cannot be analysed; the message says what is missing and what was found instead."""


@dataclass
class Runs:
    """The usable runs (`frame`: one row per run) and the Pass@k columns they carry (`ks`: k → column name)."""

    frame: pd.DataFrame
    ks: dict[int, str]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason → run ids left out
    params: list[str] = field(default_factory=list)  # logged config keys (dotted) that may tell arms apart


def pass_at_columns(columns) -> dict[int, str]:
    """{k: "eval/pass_at_{k}"} for every eval Pass@k column of a `search_runs` frame, sorted by k."""
    found = {int(m.group(1)): name for name in columns if (m := PASS_AT.match(name))}
    return dict(sorted(found.items()))


def _search(tracking_uri: str, experiment: str) -> pd.DataFrame:
    import mlflow
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in MlflowClient(tracking_uri=tracking_uri).search_experiments())
        raise AnalysisError(f"experiment {experiment!r} does not exist in {tracking_uri}; experiments there: {names}")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)  # search_runs reads the global URI; restore it for callers that set their own
    try:
        frame = mlflow.search_runs(experiment_ids=[found.experiment_id], output_format="pandas")
    finally:
        mlflow.set_tracking_uri(previous)
    if frame.empty:
        raise AnalysisError(f"experiment {experiment!r} in {tracking_uri} has no runs")
    return frame


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _missing(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def tidy(frame: pd.DataFrame, statuses: tuple[str, ...] | None = ("FINISHED",)) -> Runs:
    """Turn a `mlflow.search_runs` frame into usable runs; raise AnalysisError when none is usable.

    Columns of the result: run_id, status, the REQUIRED_TAGS and DESCRIPTIVE_TAGS (K, seed, n as int; absent
    descriptive tags as ""), every logged param not in IGNORED_PARAMS nor named like a tag (as text, absent as ""),
    `train/K` when logged, and every `eval/pass_at_{k}` column.
    """
    skipped: dict[str, list[str]] = {}
    summary = _column(frame, f"tags.{SUMMARY_TAG}").fillna("").astype(str) != ""
    frame = frame[~summary]
    if frame.empty:
        raise AnalysisError("the experiment holds only analysis summary runs, no training runs")
    if statuses is not None:
        unfinished = ~frame["status"].isin(statuses)
        if unfinished.all():
            found = sorted(set(frame["status"].dropna()))
            raise AnalysisError(f"no run has status in {list(statuses)} (found {found or 'none'}); "
                                "wait for the sweep to finish or pass --status any")
        if unfinished.any():
            skipped[f"status not in {list(statuses)}"] = frame.loc[unfinished, "run_id"].tolist()
        frame = frame[~unfinished]
    lacks_tags = pd.Series(False, index=frame.index)
    for tag in REQUIRED_TAGS:
        lacks_tags |= _missing(_column(frame, f"tags.{tag}"))
    if lacks_tags.all():
        raise AnalysisError(f"no run carries all of the tags {list(REQUIRED_TAGS)}: these runs were not logged by the "
                            f"passk-exp harness (e.g. run {frame['run_id'].iloc[0]})")
    if lacks_tags.any():
        skipped[f"missing a tag of {list(REQUIRED_TAGS)}"] = frame.loc[lacks_tags, "run_id"].tolist()
    frame = frame[~lacks_tags]
    ks = pass_at_columns(frame.columns)
    lacks_metrics = frame[list(ks.values())].isna().all(axis=1) if ks else pd.Series(True, index=frame.index)
    if lacks_metrics.all():
        raise AnalysisError("no run has a final eval/pass_at_{k} metric (e.g. run "
                            f"{frame['run_id'].iloc[0]}): did the runs reach their first evaluation?")
    if lacks_metrics.any():
        skipped["no eval/pass_at_{k} metric"] = frame.loc[lacks_metrics, "run_id"].tolist()
    frame = frame[~lacks_metrics]
    for reason, ids in skipped.items():
        log.warning("left out %d run(s), %s: %s", len(ids), reason, ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else ""))

    out = pd.DataFrame({"run_id": frame["run_id"].to_numpy(), "status": frame["status"].to_numpy()})
    for tag in (*REQUIRED_TAGS, *DESCRIPTIVE_TAGS):
        values = _column(frame, f"tags.{tag}").fillna("").astype(str).to_numpy()
        out[tag] = values
    for tag in INTEGER_TAGS:
        if (out[tag] != "").all():
            try:
                out[tag] = out[tag].astype(int)
            except ValueError:
                raise AnalysisError(f"tag {tag} must be an integer, got {sorted(set(out[tag]))[:5]}") from None
    tags = set(REQUIRED_TAGS) | set(DESCRIPTIVE_TAGS)
    params = [c[len("params."):] for c in frame.columns if c.startswith("params.")]
    params = sorted(p for p in params if p not in tags and not IGNORED_PARAMS.match(p))
    for param in params:
        out[param] = frame[f"params.{param}"].fillna("").astype(str).to_numpy()
    if "metrics.train/K" in frame:
        out["train/K"] = frame["metrics.train/K"].to_numpy()
    for k, column in ks.items():
        out[f"eval/pass_at_{k}"] = frame[column].to_numpy(dtype=float)
    ks = {k: f"eval/pass_at_{k}" for k in ks}
    out = out.sort_values(["method", "K", "seed"], kind="stable").reset_index(drop=True)
    return Runs(out, ks, skipped, params)


def load_runs(tracking_uri: str, experiment: str, statuses: tuple[str, ...] | None = ("FINISHED",)) -> Runs:
    """The usable runs of `experiment` in the store at `tracking_uri` (see `tidy`)."""
    return tidy(_search(tracking_uri, experiment), statuses)
