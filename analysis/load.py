"""From an MLflow experiment to a tidy table: one row per run, its tags, and its final Pass@k metrics.

A run is usable when it carries the tags `method`, `K` and `seed` and at least one metric `eval/pass_at_{k}` (the
names the harness logs; the toy lab logs the same). "Final" is what MLflow reports as a run's latest value of each
metric, i.e. the value at the last logged step. Runs that are not FINISHED, that lack the tags or the metrics, and the
summary runs this package writes itself are left out, and each omission is reported, never silent. So is a run that
repeats the config and seed of a later one (a re-launch): only the latest FINISHED run of an (arm, seed) counts. The
`steps` column is the last step at which a run logged a training metric (a resumed run keeps its first `steps` param
even when the resume changed it). Runs tagged `allow_overlap=true` (training may include eval problems) or with a
nonzero param `train_eval_overlap` carry that in the columns `allow_overlap` and `train_eval_overlap`, never in the arm.
What this module leaves out: any statistic (see `tables`, `intervals`), eval records (`records`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

REQUIRED_TAGS = ("method", "K", "seed")
# Tags that describe a run's arm besides method and K; a table splits its rows by each one that varies.
DESCRIPTIVE_TAGS = ("schedule", "regularizer", "model", "benchmark", "n", "phase", "scale")
INTEGER_TAGS = ("K", "seed", "n")
PASS_AT = re.compile(r"^metrics\.eval/pass_at_(\d+)$")
MAX_AT = re.compile(r"^metrics\.eval/max_at_(\d+)$")
SUMMARY_TAG = "passk_analysis"  # set on the summary runs `report` writes, so a second analysis does not read them
SCHEDULE_PARAMS = ("schedule.k_min", "schedule.k_max", "schedule.p_target", "schedule.milestones")
# Logged params that never make two runs different arms: the seed itself, bookkeeping (cf. checkpoint.run_key) and
# speed settings that compute the same method (runs logged before a setting existed lack it: still the same arm).
IGNORED_PARAMS = re.compile(
    r"^(seed|.*\.seed|resume|quiet|checkpoint_dir|eval_every|save_every|tracking\..*"
    r"|keep_freed_memory|train\.attention|train\.token_chunk|train\.shared_prefix|eval_ks|train_eval_overlap)$"
)
OVERLAP_TAG, OVERLAP_PARAM = "allow_overlap", "train_eval_overlap"


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


def check_tracking_uri(tracking_uri: str) -> None:
    """Refuse a sqlite URI whose database file does not exist, before MLflow would create an empty store there (a
    relative `sqlite:///mlflow.db` resolves against the current directory, so a wrong directory is the usual cause)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return
    path = tracking_uri[len(prefix):].split("?", 1)[0]
    if path in ("", ":memory:"):
        return
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise AnalysisError(f"tracking store {tracking_uri} does not exist: no sqlite file at {resolved} "
                            "(a relative sqlite path resolves against the current directory); nothing was created")


def _search(tracking_uri: str, experiment: str) -> pd.DataFrame:
    import mlflow
    from mlflow.tracking import MlflowClient

    check_tracking_uri(tracking_uri)
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
    for k, column in max_at_columns(frame.columns).items():
        out[f"eval/max_at_{k}"] = frame[column].to_numpy(dtype=float)
    out[OVERLAP_TAG] = _column(frame, f"tags.{OVERLAP_TAG}").fillna("").astype(str).str.lower().eq("true").to_numpy()
    overlap = pd.to_numeric(_column(frame, f"params.{OVERLAP_PARAM}"), errors="coerce").fillna(0)
    out[OVERLAP_PARAM] = overlap.astype(int).to_numpy()
    ks = {k: f"eval/pass_at_{k}" for k in ks}
    times = {name: _column(frame, name).to_numpy() for name in ("end_time", "start_time")}
    out["replicate"] = replicate_labels(frame, out["seed"])
    out, duplicates = drop_duplicate_seeds(out, params, times)
    if duplicates:
        reason = "an older run of the same config and seed (only the latest FINISHED one counts)"
        skipped[reason] = duplicates
        log.warning("left out %d run(s), %s: %s", len(duplicates), reason, ", ".join(duplicates[:5]))
    out = out.sort_values(["method", "K", "seed"], kind="stable").reset_index(drop=True)
    return Runs(out, ks, skipped, params)


def replicate_labels(frame: pd.DataFrame, seeds: pd.Series) -> list[str]:
    """One label per run for its replicate: the seed plus every other `*.seed` param (a toy-lab population draw, a
    benchmark's problem draw). Those params never split arms (IGNORED_PARAMS), but two runs that differ in one are
    two replicates of the arm, not a duplicate."""
    draws = sorted(c for c in frame.columns if c.startswith("params.") and c.endswith(".seed"))
    labels = [str(seed) for seed in seeds]
    for column in draws:
        values = frame[column].fillna("").astype(str).to_numpy()
        labels = [f"{label},{column[len('params.'):]}={value}" for label, value in zip(labels, values)]
    return labels


def drop_duplicate_seeds(out: pd.DataFrame, params: list[str], times: dict) -> tuple[pd.DataFrame, list[str]]:
    """Keep one run per (every arm-defining tag and param, replicate): the FINISHED one that ended last (then started
    last). `times`: {"end_time": [...], "start_time": [...]} in the rows' order. Returns the kept rows and the run ids
    left out."""
    key = [*REQUIRED_TAGS, *DESCRIPTIVE_TAGS, *params, "replicate"]
    ended, started = (pd.to_datetime(pd.Series(times[name], index=out.index)) for name in ("end_time", "start_time"))
    order = out.assign(_finished=out["status"].eq("FINISHED"), _end=ended, _start=started)
    order = order.sort_values(["_finished", "_end", "_start"], kind="stable", na_position="first")
    latest = ~order.duplicated(key, keep="last")
    dropped = order.loc[~latest, "run_id"].tolist()
    return out.loc[order.index[latest]].sort_index(), dropped


def max_at_columns(columns) -> dict[int, str]:
    """{k: "metrics.eval/max_at_{k}"} for every logged eval max@k (continuous-reward benchmarks), sorted by k."""
    found = {int(m.group(1)): name for name in columns if (m := MAX_AT.match(name))}
    return dict(sorted(found.items()))


def actual_steps(tracking_uri: str, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `params.steps` replaced by the last step each run logged a training metric at (kept where a run
    logged none)."""
    if "params.steps" not in frame:
        return frame
    from mlflow.tracking import MlflowClient

    from analysis.records import last_train_step

    client = MlflowClient(tracking_uri=tracking_uri)
    ran = [last_train_step(client, run_id) for run_id in frame["run_id"]]
    frame = frame.copy()
    frame["params.steps"] = [str(r) if r is not None else p for r, p in zip(ran, frame["params.steps"])]
    return frame


def load_runs(tracking_uri: str, experiment: str, statuses: tuple[str, ...] | None = ("FINISHED",)) -> Runs:
    """The usable runs of `experiment` in the store at `tracking_uri` (see `tidy`)."""
    return tidy(actual_steps(tracking_uri, _search(tracking_uri, experiment)), statuses)
