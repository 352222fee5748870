"""Shared test helpers: compose the real Hydra config with tiny, fast overrides and a temporary MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


SLOW_TEST_TIMEOUT_S = 1800  # pyproject's per-test timeout is for the rest; a test's own @pytest.mark.timeout wins


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


def tiny_overrides(tmp_path: Path, **extra) -> list[str]:
    """A 2-step job on the tiny model that exercises every stage (rollout, verify, update, eval, checkpoint, MLflow)."""
    values = {
        "model": "tiny",
        "steps": 2,
        "n": 4,
        "K": 2,
        "method": "grpo_k",
        "n_eval": 4,
        "eval_every": 1,
        "save_every": 1,
        "quiet": "true",
        "train.prompts_per_step": 2,
        "rollout.max_new_tokens": 6,
        "benchmark.eval_size": 3,
        "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.experiment": "test",
        "checkpoint_dir": str(tmp_path / "ckpt"),
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from passk_exp.config import register_schema
    from passk_exp.paths import conf_dir

    register_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "passk_exp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def mlflow_client(tmp_path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
