"""Write an experiment's tables and figures to a directory and log them back to MLflow as a summary run.

Files: `summary.csv`/`summary.md` (one row per arm: seeds, mean and std of each final Pass@k), `passk_curves.png`/
`.html`, `pareto.png`/`.html` and `pareto.csv`, and, when the runs compare K schedules (phase 3),
`fixed_vs_adaptive.csv`/`.md`. The summary run lives in the same experiment, tagged `passk_analysis=summary` (so the
MLflow UI shows the figures beside the runs, and a later analysis skips it); re-running the analysis updates the same
summary run instead of adding another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from analysis import figures
from analysis.load import SUMMARY_TAG, AnalysisError, load_runs
from analysis.tables import arm_columns, pareto_k, pareto_table, schedule_table, summarize, to_markdown

log = logging.getLogger(__name__)


@dataclass
class Report:
    out: Path
    files: list[Path]
    runs: int
    arms: int
    summary_run_id: str | None


def _store_name(tracking_uri: str) -> str:
    """The tracking store as a report may show it: a local sqlite file by its name only (its directory is a path of
    the machine that ran the study, meaningless in a committed report); any other URI (a server) unchanged."""
    if tracking_uri.startswith("sqlite:///"):
        return f"the sqlite store `{Path(tracking_uri[len('sqlite:///'):]).name}`"
    return f"`{tracking_uri}`"


def _header(experiment: str, tracking_uri: str, runs, arms: int) -> str:
    lines = [f"# {experiment}", "", f"Final metrics of {len(runs.frame)} runs in {arms} arms, read from "
             f"{_store_name(tracking_uri)}. Cells are mean ± sample std over seeds (n/a: one seed); bold = best mean.",
             ""]
    for reason, ids in runs.skipped.items():
        lines.append(f"Left out {len(ids)} run(s), {reason}.")
    return "\n".join(lines) + "\n"


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
) -> Report:
    """Read `experiment`, write every table and figure under `out`, and (by default) log them to its summary run."""
    runs = load_runs(tracking_uri, experiment, statuses)
    ks = list(runs.ks)
    if 1 not in ks:
        raise AnalysisError(f"the runs logged eval/pass_at_k for k = {ks} but not k = 1, which every table needs")
    out.mkdir(parents=True, exist_ok=True)
    summary, arms = summarize(runs), arm_columns(runs)
    header = _header(experiment, tracking_uri, runs, len(summary))
    written: list[Path] = []

    def write(name: str, content: str | bytes) -> None:
        path = out / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        written.append(path)

    write("summary.csv", summary.to_csv(index=False))
    write("summary.md", header + "\n" + to_markdown(summary, ks))
    title = f"{experiment}: final Pass@k (mean ± std over seeds)"
    write("passk_curves.png", figures.passk_curves_png(summary, arms, ks, title))
    write("passk_curves.html", figures.passk_curves_html(summary, arms, ks, title, include_plotlyjs))
    k_hi = pareto_k(ks)
    pareto = pareto_table(summary, arms, ks, k_hi)
    write("pareto.csv", pareto.drop(columns=[c for c in pareto if c.startswith("pass_at_")]).to_csv(index=False))
    pareto_title = f"{experiment}: Pass@1 vs Pass@{k_hi} (front: no arm is better on both)"
    write("pareto.png", figures.pareto_png(pareto, arms, k_hi, pareto_title))
    write("pareto.html", figures.pareto_html(pareto, arms, k_hi, pareto_title, include_plotlyjs))
    schedules = schedule_table(runs)
    if schedules is not None:
        write("fixed_vs_adaptive.csv", schedules.to_csv(index=False))
        write("fixed_vs_adaptive.md", f"# {experiment}: fixed vs adaptive K\n\n" + to_markdown(schedules, ks))
    run_id = None
    if log_to_mlflow:
        tags = {f"{tag}": str(values[0]) for tag in ("phase", "scale")
                if len(values := sorted(set(runs.frame[tag]) - {""})) == 1}
        run_id = log_summary_run(tracking_uri, experiment, written, tags)
        log.info("logged %d files to the summary run %s of %r", len(written), run_id, experiment)
    return Report(out=out, files=written, runs=len(runs.frame), arms=len(summary), summary_run_id=run_id)
