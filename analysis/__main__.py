"""`python -m analysis --tracking-uri URI --experiment NAME --out DIR`: tables and figures of one experiment.

Exit status 0 with the list of written files; 2 with one line on stderr when the experiment cannot be analysed
(the store or experiment does not exist, it has no runs, or its runs lack the harness's tags or eval/pass_at_{k}
metrics). Without eval records (`eval_records/step_*.parquet`) it falls back to intervals over seeds and says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from analysis.bootstrap import RESAMPLES
from analysis.comparisons import parse_reference
from analysis.load import AnalysisError
from analysis.report import run_analysis


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True,
                        help="the MLflow store the runs were logged to, e.g. sqlite:///$PWD/mlflow.db or http://host:5000")
    parser.add_argument("--experiment", required=True, help="MLflow experiment name, e.g. passk-phase1-smoke")
    parser.add_argument("--out", required=True, type=Path, help="directory for the tables and figures")
    parser.add_argument("--status", default="FINISHED",
                        help="comma-separated run statuses to read (default FINISHED), or 'any'")
    parser.add_argument("--no-mlflow-log", action="store_true",
                        help="do not log the files back to the experiment's summary run")
    parser.add_argument("--reference", default=None,
                        help="the arm every other arm of a panel is compared with, as key=value pairs of arm columns, "
                             "e.g. method=grpo,K=1 (default: the same method at K = 1, else grpo)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    parser.add_argument("--no-records", action="store_true",
                        help="ignore the runs' eval records: intervals from the seeds' final metrics only")
    parser.add_argument("--self-contained-html", action="store_true",
                        help="embed plotly.js in the HTML figures (about 4 MB each) instead of loading it from a CDN")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per run's records is noise
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    statuses = None if args.status == "any" else tuple(s.strip().upper() for s in args.status.split(","))
    if args.resamples < 100:
        print(f"analysis: error: --resamples {args.resamples} is too few for 95% percentile intervals; use >= 100",
              file=sys.stderr)
        return 2
    try:
        report = run_analysis(
            args.tracking_uri, args.experiment, args.out, statuses,
            log_to_mlflow=not args.no_mlflow_log, include_plotlyjs=True if args.self_contained_html else "cdn",
            reference=parse_reference(args.reference), resamples=args.resamples, use_records=not args.no_records,
        )
    except AnalysisError as error:
        print(f"analysis: error: {error}", file=sys.stderr)
        return 2
    print(f"{report.runs} runs in {report.arms} arms -> {report.out} (intervals: "
          f"{'bootstrap over eval records' if report.interval_method == 'bootstrap' else 't over seeds, no records'})")
    for line in report.warnings:
        print(line)
    for path in report.files:
        print(f"  {path}")
    if report.summary_run_id:
        print(f"figures logged to MLflow run {report.summary_run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
