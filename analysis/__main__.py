"""`python -m analysis --tracking-uri URI --experiment NAME --out DIR`: tables and figures of one experiment.

Exit status 0 with the list of written files; 2 with one line on stderr when the experiment cannot be analysed
(it does not exist, has no runs, or its runs lack the harness's tags or eval/pass_at_{k} metrics).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

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
    parser.add_argument("--self-contained-html", action="store_true",
                        help="embed plotly.js in the HTML figures (about 4 MB each) instead of loading it from a CDN")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    statuses = None if args.status == "any" else tuple(s.strip().upper() for s in args.status.split(","))
    try:
        report = run_analysis(
            args.tracking_uri, args.experiment, args.out, statuses,
            log_to_mlflow=not args.no_mlflow_log, include_plotlyjs=True if args.self_contained_html else "cdn",
        )
    except AnalysisError as error:
        print(f"analysis: error: {error}", file=sys.stderr)
        return 2
    print(f"{report.runs} runs in {report.arms} arms -> {report.out}")
    for path in report.files:
        print(f"  {path}")
    if report.summary_run_id:
        print(f"figures logged to MLflow run {report.summary_run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
