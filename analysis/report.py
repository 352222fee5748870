"""Write an experiment's tables and figures to a directory and log them back to MLflow as a summary run.

Files: `summary.csv`/`summary.md` (one row per arm: seeds, n_eval, eval-overlap flags, and per k the mean, the std
over seeds and the 95% interval `pass_at_{k}_lo`/`_hi`), `comparisons.csv`/`.md` (each arm minus its reference per k,
with a Holm-corrected verdict), `passk_curves.png`/`.html` (interval bands), `pareto.png`/`.html` and `pareto.csv`
(interval crosses), for continuous-reward experiments `max_at_k.csv`/`.md` and `max_at_k_curves.png`/`.html`, and,
when the runs compare K schedules (phase 3), `fixed_vs_adaptive.csv`/`.md`. Intervals come from the runs' eval records
when every run has them, else from the seeds' final metrics; the markdown files say which. The summary run lives in
the same experiment, tagged `passk_analysis=summary` (so the MLflow UI shows the figures beside the runs, and a later
analysis skips it); re-running the analysis updates the same summary run instead of adding another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import bootstrap, comparisons, figures
from analysis.intervals import ArmStats, arm_statistics
from analysis.load import SUMMARY_TAG, AnalysisError, Runs, load_runs
from analysis.records import RunRecords, load_last_records
from analysis.tables import (
    arm_columns, panel_columns, pareto_k, pareto_table, schedule_table, summary_table, to_markdown,
)

log = logging.getLogger(__name__)


@dataclass
class Report:
    out: Path
    files: list[Path]
    runs: int
    arms: int
    summary_run_id: str | None
    interval_method: str = ""  # "bootstrap" (eval records) or "t" (seed-level fallback)
    warnings: list[str] = field(default_factory=list)


def _store_name(tracking_uri: str) -> str:
    """The tracking store as a report may show it: a local sqlite file by its name only (its directory is a path of
    the machine that ran the study, meaningless in a committed report); any other URI (a server) unchanged."""
    if tracking_uri.startswith("sqlite:///"):
        return f"the sqlite store `{Path(tracking_uri[len('sqlite:///'):]).name}`"
    return f"`{tracking_uri}`"


def warnings_of(stats: ArmStats, arms: list[str]) -> list[str]:
    """The lines every markdown output repeats: eval-overlap flags, different eval problems, the fallback."""
    lines = []
    flagged = stats.table[stats.table["eval_overlap"] != ""]
    if len(flagged):
        lines.append(f"WARNING: {len(flagged)} arm(s) trained on problems that may include eval problems "
                     f"(tag allow_overlap=true or param train_eval_overlap > 0; column eval_overlap): their Pass@k "
                     "is not a held-out measure.")
    panels = panel_columns(arms)
    sets = stats.table.assign(_set=stats.problem_set)
    per_panel = sets.groupby(panels, dropna=False)["_set"].nunique() if panels else sets["_set"].nunique()
    if (pd.Series(per_panel) > 1).any():
        lines.append("WARNING: arms of one panel were evaluated on different problem sets (by problem_id): their "
                     "comparisons get no decision; check the benchmark's eval split and eval_size.")
    if stats.method != "bootstrap":
        lines.append(f"WARNING: no per-problem eval records ({stats.note}): intervals fall back to the seeds' final "
                     "metrics.")
    return lines


def _header(experiment: str, tracking_uri: str, runs: Runs, stats: ArmStats, warnings: list[str]) -> str:
    lines = [f"# {experiment}", "", f"Final metrics of {len(runs.frame)} runs in {len(stats.table)} arms, read from "
             f"{_store_name(tracking_uri)}. Cells are mean [95% CI]: {stats.method_text()}. `seeds` counts replicates "
             "(seeds × other draws, e.g. a population seed); the std over them is in the CSV (n/a: one seed). Bold = best mean; † = k > n_eval/2 (high variance).", ""]
    lines += [f"**{line}**" for line in warnings]
    for reason, ids in runs.skipped.items():
        lines.append(f"Left out {len(ids)} run(s), {reason}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}.")
    return "\n".join(lines) + "\n"


def load_records(tracking_uri: str, runs: Runs) -> dict[str, RunRecords | None]:
    """Each run's records at its last evaluation (None where it logged none)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        return {run_id: load_last_records(client, run_id) for run_id in runs.frame["run_id"]}
    except ValueError as error:
        raise AnalysisError(str(error)) from None


def log_summary_run(tracking_uri: str, experiment: str, files: list[Path], tags: dict[str, str]) -> str:
    """Log `files` as artifacts of the experiment's summary run (created on first use); returns its run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    existing = client.search_runs([experiment_id], filter_string=f"tags.{SUMMARY_TAG} = 'summary'", max_results=1)
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(experiment_id, run_name="analysis-summary", tags={SUMMARY_TAG: "summary"}).info.run_id
    status = "FAILED"
    try:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        for path in files:
            client.log_artifact(run_id, str(path), "analysis")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


def run_analysis(
    tracking_uri: str,
    experiment: str,
    out: Path,
    statuses: tuple[str, ...] | None = ("FINISHED",),
    log_to_mlflow: bool = True,
    include_plotlyjs: str | bool = "cdn",
    reference: dict[str, str] | None = None,
    resamples: int = bootstrap.RESAMPLES,
    use_records: bool = True,
) -> Report:
    """Read `experiment`, write every table and figure under `out`, and (by default) log them to its summary run."""
    runs = load_runs(tracking_uri, experiment, statuses)
    ks = list(runs.ks)
    if 1 not in ks:
        raise AnalysisError(f"the runs logged eval/pass_at_k for k = {ks} but not k = 1, which every table needs")
    arms = arm_columns(runs)
    records = load_records(tracking_uri, runs) if use_records else None
    stats = arm_statistics(runs, arms, records, resamples)
    if not use_records:
        stats.note = "not read (--no-records)"
    warnings = warnings_of(stats, arms)
    for line in warnings:
        log.warning("%s", line)
    out.mkdir(parents=True, exist_ok=True)
    summary = summary_table(stats)
    header = _header(experiment, tracking_uri, runs, stats, warnings)
    written: list[Path] = []

    def write(name: str, content: str | bytes) -> None:
        path = out / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        written.append(path)

    write("summary.csv", summary.to_csv(index=False))
    write("summary.md", header + "\n" + to_markdown(summary, ks))
    compared = comparisons.compare(stats, arms, reference)
    write("comparisons.csv", compared.to_csv(index=False))
    write("comparisons.md", (comparisons.to_markdown(compared, stats, arms, experiment, reference) if len(compared)
                             else f"# {experiment}: no arm has a reference arm to compare with\n")
          + "".join(f"\n**{line}**\n" for line in warnings))
    band = "95% CI" if stats.method == "bootstrap" else "95% t-CI over seeds"
    title = f"{experiment}: final Pass@k (mean, band = {band})"
    write("passk_curves.png", figures.passk_curves_png(summary, arms, ks, title))
    write("passk_curves.html", figures.passk_curves_html(summary, arms, ks, title, include_plotlyjs))
    if "max_at" in stats.ks:
        max_summary, max_ks = summary_table(stats, "max_at"), stats.ks["max_at"]
        write("max_at_k.csv", max_summary.to_csv(index=False))
        write("max_at_k.md", header.replace(f"# {experiment}", f"# {experiment}: max@k", 1) + "\n"
              + to_markdown(max_summary, max_ks, metric="max_at"))
        max_title = f"{experiment}: final max@k (mean, band = {band})"
        write("max_at_k_curves.png", figures.passk_curves_png(max_summary, arms, max_ks, max_title, "max_at"))
        write("max_at_k_curves.html", figures.passk_curves_html(max_summary, arms, max_ks, max_title,
                                                                include_plotlyjs, "max_at"))
    k_hi = pareto_k(ks)
    pareto = pareto_table(summary, arms, ks, k_hi)
    write("pareto.csv", pareto.drop(columns=[c for c in pareto if c.startswith("pass_at_")]).to_csv(index=False))
    pareto_title = (f"{experiment}: Pass@1 vs Pass@{k_hi}, crosses = {band}; hollow = dominated at the CI level, "
                    "dashed = front of the means")
    write("pareto.png", figures.pareto_png(pareto, arms, k_hi, pareto_title))
    write("pareto.html", figures.pareto_html(pareto, arms, k_hi, pareto_title, include_plotlyjs))
    schedules = schedule_table(runs, summary, arms)
    if schedules is not None:
        write("fixed_vs_adaptive.csv", schedules.to_csv(index=False))
        write("fixed_vs_adaptive.md", f"# {experiment}: fixed vs adaptive K\n\n{stats.method_text()}.\n\n"
              + to_markdown(schedules, ks))
    run_id = None
    if log_to_mlflow:
        tags = {f"{tag}": str(values[0]) for tag in ("phase", "scale")
                if len(values := sorted(set(runs.frame[tag]) - {""})) == 1}
        run_id = log_summary_run(tracking_uri, experiment, written, tags)
        log.info("logged %d files to the summary run %s of %r", len(written), run_id, experiment)
    return Report(out=out, files=written, runs=len(runs.frame), arms=len(summary), summary_run_id=run_id,
                  interval_method=stats.method, warnings=warnings)
