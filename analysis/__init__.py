"""Tables and figures of a passk-exp study, read back from MLflow: `python -m analysis --tracking-uri URI
--experiment NAME --out DIR`.

It reads the runs of one experiment (any runs carrying the harness's tags `method`, `K`, `seed` and final metrics
`eval/pass_at_{k}`, whoever made them) and, where every run logged them, their per-problem eval records; it gives each
arm's final Pass@k (and max@k for continuous rewards) a 95% interval (a paired bootstrap over problems and seeds, or a
t interval over seeds without records), compares each arm with a reference arm per k under Holm's correction, and
draws Pass@k curves with interval bands and the Pass@1-vs-Pass@64 front with interval crosses. It computes nothing
about training itself: every number it prints is a statistic of metrics and records already in the store.

Modules: `load` (MLflow → one row per run), `records` (per-problem eval records), `bootstrap` (interval and test
math), `intervals` (per-arm statistics), `comparisons` (arm vs reference, Holm), `tables` (summary, Pareto front,
schedule table), `figures` (matplotlib PNG + plotly HTML), `report` (writes the files and logs them back as artifacts
of a summary run), `store` (the tracking store that concurrent sweep jobs share).
"""

from analysis.load import AnalysisError, load_runs
from analysis.report import run_analysis

__all__ = ["AnalysisError", "load_runs", "run_analysis"]
