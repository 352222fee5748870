"""`python -m passk_exp.toylab [group=option ...] [key=value ...]`: one toy run (task=train) or the estimator
diagnostics (task=diagnose), composed from conf/toylab.yaml with the harness's method / schedule / regularizer groups.

Tracking is the harness's (passk_exp.tracking): the same tags (method, K, n, schedule, regularizer, model, benchmark,
seed, phase), the flattened config as params, the resolved YAML as an artifact and the metric names the LLM trainer
logs, so `analysis/` reads toy runs like LLM runs. A toy run's metrics are sent in a few batches at the end (a step
takes about a millisecond; one MLflow request per step would dominate). Study phases are configs under
sweeps/toylab/ (`+toylab=phase1`). Bad configuration stops with one line and exit status 2, as in passk_exp.cli.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from passk_exp.config import ConfigError
from passk_exp.paths import conf_dir, register_sweeps_search_path
from passk_exp.toylab.config import register_toylab_schema, validate_toylab_config

log = logging.getLogger("passk_exp.toylab")
register_toylab_schema()
_BATCH = 1000  # MLflow's per-request limit for metrics


def run_tags(config: dict[str, Any]) -> dict[str, Any]:
    """The harness's tag set for a toy run (model / benchmark name the toy policy and population)."""
    from passk_exp.toylab.populations import benchmark_tag, model_tag

    tags = {
        "method": config["method"]["name"],
        "K": config["K"],
        "n": config["n"],
        "schedule": config["schedule"]["name"],
        "regularizer": config["regularizer"]["name"],
        "model": model_tag(config["toylab_population"]),
        "benchmark": benchmark_tag(config["toylab_population"]),
        "seed": config["seed"],
        "task": config["task"],
    }
    for key in ("phase", "scale"):
        if config.get(key):
            tags[key] = config[key]
    return tags


def _tracker(config: dict[str, Any]):
    from passk_exp.tracking import MlflowTracker, NullTracker, default_tracking_uri

    tracking = config["tracking"]
    if not tracking["enabled"]:
        return NullTracker()
    return MlflowTracker(default_tracking_uri(tracking["uri"]), tracking["experiment"], tracking["run_name"])


def log_history(tracker: Any, history: list[tuple[int, dict[str, float]]]) -> None:
    """All steps' metrics in batches of 1000 (MLflow client API on the tracker's store), or step by step otherwise."""
    uri, run_id = getattr(tracker, "uri", None), getattr(tracker, "run_id", None)
    if uri is None or run_id is None:
        for step, metrics in history:
            tracker.log_metrics(metrics, step)
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step) for step, metrics in history for key, value in metrics.items()]
    client = MlflowClient(tracking_uri=uri)
    for start in range(0, len(batch), _BATCH):
        client.log_batch(run_id, metrics=batch[start : start + _BATCH])


def run(cfg: DictConfig) -> dict[str, float]:
    """Validate `cfg`, run the task, track it; returns the final metrics (train) or {} (diagnose)."""
    import torch

    from passk_exp.tracking import flatten, log_figure_files, log_json

    validate_toylab_config(cfg)
    torch.set_num_threads(1)  # tensors of a few thousand entries: threads only add overhead
    config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    tracker = _tracker(config)
    status = "FAILED"
    try:
        tracker.set_tags(run_tags(config))
        tracker.log_params(flatten(config))
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        if config["task"] == "diagnose":
            final = _diagnose(config, tracker)
        else:
            from passk_exp.toylab.train import train

            started = time.perf_counter()
            final, history = train(config)
            final["train/run_time_s"] = time.perf_counter() - started
            log_history(tracker, history)
            name = "max_at" if any(key.startswith("eval/max_at_") for key in final) else "pass_at"
            ks = sorted(int(key.rsplit("_", 1)[1]) for key in final if key.startswith(f"eval/{name}_"))
            curve = "k,value\n" + "".join(f"{k},{final[f'eval/{name}_{k}']:.6f}\n" for k in ks)
            log_figure_files(tracker, {f"final_{name}.csv": curve}, "passk_curve")
            log.info("%s", " ".join(f"{k}={final[f'eval/{name}_{k}']:.3f}" for k in ks))
        log_json(tracker, final, "final_metrics.json")
        status = "FINISHED"
        return final
    finally:
        tracker.end(status)


def _diagnose(config: dict[str, Any], tracker: Any) -> dict[str, float]:
    from passk_exp.toylab.report import run_grid, write_report

    spec = config["diagnose"]
    if not spec["methods"]:
        raise ConfigError("diagnose.methods is empty: list {method, params} entries, as sweeps/toylab/estimators.yaml")
    started = time.perf_counter()
    df = run_grid(
        spec["methods"], spec["ks"], spec["ns"], spec["ps"], spec["offsets"], spec["sigma"], spec["replicates"],
        config["seed"],
    )
    out = Path(spec["out"] or Path.cwd() / "toylab_diagnostics")
    files = write_report(df, out, spec["stem"])
    for path in files:
        tracker.log_artifact_file(path, "diagnostics")
    log.info("diagnostics: %d rows in %.1f s -> %s", len(df), time.perf_counter() - started, out)
    return {"diagnose/rows": float(len(df)), "diagnose/time_s": time.perf_counter() - started}


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="toylab")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        final = run(cfg)
    except (ConfigError, ValueError) as error:
        if _is_multirun():
            raise
        log.debug("configuration error", exc_info=True)
        print(f"passk-exp toylab: error: {error}", file=sys.stderr)
        sys.exit(2)
    return final.get("eval/pass_at_1", final.get("eval/max_at_1"))


def main() -> None:
    register_sweeps_search_path()  # `+toylab=...` from any working directory (paths.register_sweeps_search_path)
    _hydra_main()


if __name__ == "__main__":
    main()
