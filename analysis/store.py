"""The tracking store a sweep's jobs share: create it, and the sweep's experiment, once before any job starts.

Why: when jobs start together (submitit_local starts all of them at once; a SLURM array starts as many as fit), each
job's first MLflow call races the others. Measured here with MLflow 3.17: four processes opening a fresh sqlite store
at once, three fail with "table ... already exists"; two jobs that both find no experiment both create it, and the
second fails. `PrepareTrackingStore` is a Hydra callback the sweeps install (`hydra.callbacks.tracking_store`): on
multirun start, in the launching process, it creates the store's tables and the experiment, so the jobs only ever add
runs. It does not make sqlite safe on a network file system; on a cluster use an `mlflow server` (sweeps/README.md).
"""

from __future__ import annotations

import logging
import time

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def prepare_store(uri: str, experiment: str, attempts: int = 5) -> str:
    """Create the store at `uri` (tables, for a database URI) and `experiment` if absent; return the experiment id.
    Safe against another process doing the same at the same moment: a lost race is retried, not raised."""
    from mlflow.tracking import MlflowClient

    from passk_exp.tracking import experiment_id

    for attempt in range(attempts):
        try:
            return experiment_id(MlflowClient(tracking_uri=uri), uri, experiment)
        except Exception as error:  # noqa: BLE001 - sqlalchemy, sqlite and REST errors all mean "retry once more"
            if attempt == attempts - 1:
                raise
            log.info("tracking store %s busy (%s); retrying", uri, str(error).splitlines()[0][:120])
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


class PrepareTrackingStore(Callback):
    """Hydra callback: before a multirun launches its jobs, create the tracking store and the jobs' experiment."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not config.tracking.enabled or str(config.hydra.launcher.get("_target_", "")).endswith("PlanLauncher"):
            return  # tracking off, or a dry-run plan (hydra/launcher=plan) that runs no job
        from passk_exp.tracking import default_tracking_uri

        uri = default_tracking_uri(config.tracking.uri)
        experiment_id = prepare_store(uri, config.tracking.experiment)
        log.info("tracking store %s ready; experiment %r (id %s)", uri, config.tracking.experiment, experiment_id)
