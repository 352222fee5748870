"""The whole job end to end on the tiny model: what reaches MLflow, checkpoints, resume after a kill, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, compose, run_cli, tiny_overrides

pytestmark = pytest.mark.slow

TAGS = ("method", "K", "n", "schedule", "regularizer", "model", "benchmark", "seed")
TRAIN_METRICS = (
    "train/reward_mean",
    "train/pass_at_1",
    "train/K",
    "train/p_hat",
    "train/loss",
    "train/entropy",
    "train/grad_norm",
    "train/tokens_per_s",
    "train/step_time_s",
    "train/informative_groups",
    "train/truncation_rate",
)


def _steps(client, run_id, key):
    return [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def _checkpoint(tmp_path):
    """The one run's last.pt under checkpoint_dir (each run has its own <run key>/<run id>/ directory there)."""
    found = list((tmp_path / "ckpt").rglob("last.pt"))
    assert len(found) <= 1, found
    return found[0] if found else tmp_path / "ckpt" / "no-checkpoint-yet"


def _only_run(client):
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_two_steps_end_to_end_log_tags_params_metrics_and_artifacts(tmp_path, mlflow_client):
    result = run_cli(tiny_overrides(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _only_run(mlflow_client)
    assert run.info.status == "FINISHED"
    for tag in TAGS:
        assert tag in run.data.tags, tag
    assert run.data.tags["method"] == "grpo_k" and run.data.tags["K"] == "2" and run.data.tags["model"] == "tiny"
    assert run.data.params["train.lr"] == "0.0001" and run.data.params["n"] == "4"
    for key in TRAIN_METRICS:
        assert _steps(mlflow_client, run.info.run_id, key) == [1, 2], key
    for k in (1, 2, 4):
        assert _steps(mlflow_client, run.info.run_id, f"eval/pass_at_{k}") == [0, 1, 2]
    for step in (0, 1, 2):
        curve = [
            next(m.value for m in mlflow_client.get_metric_history(run.info.run_id, f"eval/pass_at_{k}") if m.step == step)
            for k in (1, 2, 4)
        ]
        assert curve == sorted(curve), f"pass@k must not decrease in k at step {step}: {curve}"
        assert all(0.0 <= v <= 1.0 for v in curve)
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "final_metrics.json", "passk_curve", "eval_records"} <= artifacts
    records = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "eval_records")}
    assert records == {f"eval_records/step_{step:05d}.parquet" for step in (0, 1, 2)}
    assert _steps(mlflow_client, run.info.run_id, "eval/truncation_rate") == [0, 1, 2]
    curve_files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "passk_curve")}
    assert {"passk_curve/passk_curve.png", "passk_curve/step_00000.csv", "passk_curve/step_00002.csv"} <= curve_files
    local = mlflow_client.download_artifacts(run.info.run_id, "final_metrics.json", str(tmp_path))
    final = json.loads(open(local).read())
    assert final["eval/pass_at_1"] == run.data.metrics["eval/pass_at_1"]
    assert _checkpoint(tmp_path).exists()


def test_eval_records_artifact_reproduces_the_logged_pass_at_k_exactly(tmp_path, mlflow_client):
    from passk_exp.eval_records import SCHEMA, pass_at_k_of_records, read_records

    # max_new_tokens=3: the random tiny model rarely emits EOS that early, so truncation is exercised.
    overrides = tiny_overrides(tmp_path, steps=0, n_eval=4, eval_ks="[1,3]", **{"rollout.max_new_tokens": 3})
    result = run_cli(overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _only_run(mlflow_client)
    logged = {key: value for key, value in run.data.metrics.items() if key.startswith("eval/pass_at_")}
    assert sorted(logged) == ["eval/pass_at_1", "eval/pass_at_3"]
    local = mlflow_client.download_artifacts(run.info.run_id, "eval_records/step_00000.parquet", str(tmp_path))
    records = read_records(local)
    assert records.schema == SCHEMA and records.num_rows == 3  # benchmark.eval_size
    rows = records.to_pylist()
    assert all(r["n"] == 4 and len(r["rewards"]) == 4 for r in rows)
    assert all(r["c"] == sum(reward == 1.0 for reward in r["rewards"]) for r in rows)
    assert all(1 <= r["mean_len"] <= 3 and 0 <= r["truncated"] <= 4 for r in rows)
    assert all(r["distinct_answers"] is not None and 0 <= r["distinct_answers"] <= 4 for r in rows)  # synthetic
    assert pass_at_k_of_records(records, [1, 3]) == [logged["eval/pass_at_1"], logged["eval/pass_at_3"]]
    truncated = sum(r["truncated"] for r in rows) / sum(r["n"] for r in rows)
    assert truncated > 0 and run.data.metrics["eval/truncation_rate"] == truncated


def test_resume_after_kill_continues_the_same_run_without_duplicated_or_lost_steps(tmp_path, mlflow_client):
    # 12 tiny steps: the kill lands within a 50 ms poll of the first checkpoint, with 11 steps and an eval still to go
    # (4 steps could all finish between two polls on a fast machine, and the run would not be killed at all).
    steps = 12
    overrides = tiny_overrides(tmp_path, steps=steps, eval_every=6)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "passk_exp", *overrides], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    while not _checkpoint(tmp_path).exists() and process.poll() is None:  # no deadline: the test timeout bounds a hang
        time.sleep(0.05)
    assert _checkpoint(tmp_path).exists(), "no checkpoint was written before the kill"
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_run = _only_run(mlflow_client)
    assert killed_run.info.status == "RUNNING"  # SIGKILL gives no chance to close it: resume must pick it up

    result = run_cli([*overrides, "resume=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _only_run(mlflow_client)
    assert run.info.run_id == killed_run.info.run_id
    assert run.info.status == "FINISHED"
    assert _steps(mlflow_client, run.info.run_id, "train/reward_mean") == list(range(1, steps + 1))
    assert _steps(mlflow_client, run.info.run_id, "eval/pass_at_1") == [0, 6, 12]


def _trainer(tmp_path, **extra):
    from passk_exp.config import validate_config
    from passk_exp.trainer import Trainer

    cfg = compose(tiny_overrides(tmp_path, **extra))
    validate_config(cfg)
    return Trainer(cfg)


def test_a_crash_marks_the_run_failed_and_keeps_what_was_logged(tmp_path, mlflow_client, monkeypatch):
    trainer = _trainer(tmp_path, steps=3, eval_every=0)
    real_step = trainer.train_step
    calls = []

    def failing_step(problems):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real_step(problems)

    monkeypatch.setattr(trainer, "train_step", failing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.run()
    run = _only_run(mlflow_client)
    assert run.info.status == "FAILED"
    assert _steps(mlflow_client, run.info.run_id, "train/reward_mean") == [1]
    assert _steps(mlflow_client, run.info.run_id, "eval/pass_at_1") == [0]


def test_ctrl_c_marks_the_run_killed_and_checkpoints_the_finished_steps(tmp_path, mlflow_client, monkeypatch):
    trainer = _trainer(tmp_path, steps=3, eval_every=0, save_every=0)
    real_step = trainer.train_step
    calls = []

    def interrupted_step(problems):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_step(problems)

    monkeypatch.setattr(trainer, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    run = _only_run(mlflow_client)
    assert run.info.status == "KILLED"
    import torch

    saved = torch.load(_checkpoint(tmp_path), weights_only=False)
    assert saved["step"] == 1 and saved["mlflow_run_id"] == run.info.run_id
