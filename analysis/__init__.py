"""Tables and figures of a passk-exp study, read back from MLflow: `python -m analysis --tracking-uri URI
--experiment NAME --out DIR`.

It reads the runs of one experiment (any runs carrying the harness's tags `method`, `K`, `seed` and final metrics
`eval/pass_at_{k}`, whoever made them), averages the final Pass@k over seeds per method × K, and draws Pass@k curves
and the Pass@1-vs-Pass@64 Pareto front. It computes nothing about training itself: every number it prints is a
statistic of metrics already in the store.

Modules: `load` (MLflow → one row per run), `tables` (seed statistics, Pareto front, schedule table), `figures`
(matplotlib PNG + plotly HTML), `report` (writes the files and logs them back as artifacts of a summary run),
`store` (the tracking store that concurrent sweep jobs share).
"""

from analysis.load import AnalysisError, load_runs
from analysis.report import run_analysis

__all__ = ["AnalysisError", "load_runs", "run_analysis"]
