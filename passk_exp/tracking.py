"""MLflow tracking for a run, and a null tracker with the same interface for when tracking is off.

What it records: tags (method, K, n, schedule, ...), the resolved config flattened as params and as a YAML artifact,
one batch of metrics per step, and artifacts (Pass@k curves, final metrics). The default store is an explicit absolute
`sqlite:///<cwd>/mlflow.db` because MLflow 3 refuses a plain `./mlruns` file store; `MLFLOW_TRACKING_URI` or
`tracking.uri` point elsewhere (a server, for concurrent writers on a cluster). Nothing here decides *what* to log.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol

log = logging.getLogger(__name__)

_PARAM_BATCH = 100  # MLflow's per-request limit for params
_PARAM_VALUE_MAX = 6000


def default_tracking_uri(uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else an absolute sqlite store in the current directory."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a sqlite store keeps its artifacts: `mlartifacts/` beside the database file.

    MLflow's own default is `./mlruns` under the *current* directory, so runs started from different directories (a
    test, a sweep job, a notebook) would scatter one store's artifacts. Servers and other stores choose for
    themselves (None)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix) :]).resolve().parent / "mlartifacts").as_uri()


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """For a sqlite store, an exclusive lock on `<database>.lock` beside it while a process opens the store (MLflow
    creates or migrates its tables on first use) and creates its experiment. Two first runs started together in a
    fresh directory otherwise race: one dies in an alembic migration ("table ... already exists"). Other stores
    (a server) serialise this themselves."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    database = Path(uri[len(prefix) :])
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield


def experiment_id(client: Any, uri: str, name: str) -> str:
    """The id of experiment `name`, created (with `artifact_location(uri)`) if the store has none of that name."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri))
    except Exception:  # another job of the same sweep created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 1e-4}} -> {"train.lr": "0.0001"}; lists become their JSON text."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = str(value)
    return flat


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: Mapping[str, str]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact_file(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def end(self, status: str) -> None: ...


class NullTracker:
    """Tracking off: every call is a no-op, so the trainer never branches on it."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, str]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact_file(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def end(self, status: str) -> None:
        pass


class MlflowTracker:
    """One MLflow run through the client API (no global 'active run' state, so tests and sweeps cannot leak runs)."""

    def __init__(self, uri: str, experiment: str, run_name: str | None = None, run_id: str | None = None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri
        mlflow.set_tracking_uri(uri)
        with store_lock(uri):  # the first store access creates a fresh store's tables
            self._client = MlflowClient(tracking_uri=uri)
            run = self._client.get_run(run_id) if run_id is not None else None  # raises if the store lost it
            experiment_id_ = experiment_id(self._client, uri, experiment) if run_id is None else None
        if run is not None:
            self._client.update_run(run_id, status="RUNNING")
            self.run_id = run.info.run_id
            log.info("resuming MLflow run %s in %s", run_id, uri)
            return
        run = self._client.create_run(experiment_id_, run_name=run_name)
        self.run_id = run.info.run_id
        log.info("MLflow run %s in experiment %r at %s", self.run_id, experiment, uri)

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value[:_PARAM_VALUE_MAX]) for key, value in params.items()]
        for start in range(0, len(items), _PARAM_BATCH):
            self._client.log_batch(self.run_id, params=items[start : start + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact_file(self, path: Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def last_step(self, metric: str) -> int:
        """The largest step at which `metric` was logged in this run, or -1."""
        return max((m.step for m in self._client.get_metric_history(self.run_id, metric)), default=-1)

    def end(self, status: str) -> None:
        self._client.set_terminated(self.run_id, status=status)


def log_json(tracker: Tracker, data: Any, artifact_file: str) -> None:
    tracker.log_text(json.dumps(data, indent=2, sort_keys=True), artifact_file)


def log_figure_files(tracker: Tracker, files: Mapping[str, bytes | str], artifact_path: str) -> None:
    """Write small generated files (CSV text, PNG bytes) to a temp dir and log them under `artifact_path`."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            target = Path(tmp) / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            tracker.log_artifact_file(target, artifact_path)
