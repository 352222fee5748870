"""The submitit_slurm launcher against a real one-node SLURM (scripts/slurm_cluster.sh): a two-job smoke multirun
reaches MLflow with its metrics, and a job requeued mid-run resumes its checkpoint and continues its own MLflow run.
Skipped, with the reason, where slurmctld is not installed (`scripts/slurm_cluster.sh install`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SCRIPT = REPO / "scripts" / "slurm_cluster.sh"

TINY_JOB = [  # a phase-1 smoke job at test size on the tiny model, on one CPU of the test cluster
    "+sweep=phase1", "scale=smoke", "hydra/launcher=passk_slurm", "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_task=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=10", "hydra.launcher.signal_delay_s=30", "model=tiny", "n=4", "n_eval=4",
    "train.prompts_per_step=2", "rollout.max_new_tokens=6", "benchmark.eval_size=3", "method=grpo",
]


def _free_port_pair() -> int:
    """A port p with p and p + 1 both free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65000:
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        pytest.skip("slurmctld/munged are not installed; run `scripts/slurm_cluster.sh install` (Debian slurm-wlm, munge)")
    directory = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "PASSK_SLURM_PORT": str(_free_port_pair())}
    up = subprocess.run([str(SCRIPT), "up", str(directory)], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        yield {"SLURM_CONF": str(directory / "slurm.conf")}
    finally:
        down = subprocess.run([str(SCRIPT), "down", str(directory)], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stderr


def _launch(args: list[str], cwd: Path, slurm_env: dict) -> subprocess.Popen:
    env = {**os.environ, **slurm_env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "passk_exp", "-m", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, timeout: float = 900) -> str:  # a loaded machine, not a hang (see deadline)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"sweep did not finish in {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-4000:]
    return output


def _job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(sweep_dir.glob(".submitit/*/*_log.*")))


def _scontrol(args: list[str], slurm_env: dict) -> str:
    env = {**os.environ, **slurm_env}
    return subprocess.run(["scontrol", *args], env=env, check=True, capture_output=True, text=True).stdout


def test_two_job_smoke_multirun_through_submitit_slurm_reaches_mlflow(slurm, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    process = _launch([*TINY_JOB, "steps=2", "K=1,2", "seed=0", f"tracking.uri={uri}", f"hydra.sweep.dir={sweep_dir}"],
                      tmp_path, slurm)
    output = _finish(process)
    submissions = sorted(sweep_dir.glob(".submitit/*/*_submission.sh"))
    assert submissions, output[-2000:]
    script = submissions[0].read_text()
    assert "--requeue" in script and "--signal=USR2@30" in script and "--cpus-per-task=1" in script
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("passk-phase1-smoke").experiment_id])
    assert len(runs) == 2, _job_logs(sweep_dir)
    assert sorted(r.data.tags["K"] for r in runs) == ["1", "2"]
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in ("eval/pass_at_1", "eval/pass_at_2", "eval/pass_at_4", "train/reward_mean", "train/loss"):
            assert key in run.data.metrics, key
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/reward_mean"))
        assert steps == [1, 2]


@pytest.mark.parametrize("tasks", [1, 2])  # 2: one run on two ranks (passk_exp/distributed/), requeued as a whole
def test_a_requeued_job_resumes_its_checkpoint_and_continues_its_own_mlflow_run(slurm, tmp_path, tasks):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    steps = 150  # long enough (~0.1 s a tiny step) that the job is still running when the requeue lands
    process = _launch([*TINY_JOB, f"steps={steps}", "K=1", "seed=0", "eval_every=0", "save_every=1",
                       f"hydra.launcher.tasks_per_node={tasks}", f"tracking.uri={uri}", f"hydra.sweep.dir={sweep_dir}"],
                      tmp_path, slurm)
    checkpoints = sweep_dir / "0" / "checkpoints"  # the job's run keeps its last.pt in <run key>/<run id>/ there
    # A bound so loose that only a job that never starts or never checkpoints crosses it (a loaded 2-core machine
    # starts it within a minute); it fails with the job's logs, where the test's own timeout would not show them.
    deadline = time.monotonic() + 900
    while not list(checkpoints.rglob("last.pt")):  # wait for the first saved step, then preempt the job as SLURM does
        assert process.poll() is None and time.monotonic() < deadline, _job_logs(sweep_dir)[-3000:]
        time.sleep(0.2)
    job_id = next(sweep_dir.glob(".submitit/*/*_submission.sh")).name.split("_")[0]
    _scontrol(["requeue", job_id], slurm)
    # SLURM holds a requeued job for a while (Reason=BeginTime); let it start again at once.
    while "Reason=BeginTime" not in _scontrol(["show", "job", job_id], slurm):
        assert time.monotonic() < deadline, _scontrol(["show", "job", job_id], slurm)
        time.sleep(0.2)
    _scontrol(["update", f"JobId={job_id}", "StartTime=now"], slurm)
    _finish(process)
    logs = _job_logs(sweep_dir)
    assert "DUE TO JOB REQUEUE" in logs and "resumed from" in logs and "resuming MLflow run" in logs, logs[-3000:]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("passk-phase1-smoke").experiment_id])
    assert len(runs) == 1, "the requeued job must continue its run, not start another"
    history = client.get_metric_history(runs[0].info.run_id, "train/reward_mean")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))  # every step once: none lost, none twice
    assert runs[0].info.status == "FINISHED"


def test_tasks_per_node_make_one_job_one_run_on_as_many_processes(slurm, tmp_path):
    """hydra.launcher.tasks_per_node=2: submitit starts the job's 2 tasks with srun, each a rank of one run
    (passk_exp/distributed/launch.py reads SLURM_PROCID / SLURM_STEP_NUM_TASKS); rank 0 alone logs to MLflow."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    process = _launch([*TINY_JOB, "steps=2", "K=1", "seed=0", "hydra.launcher.tasks_per_node=2",
                       f"tracking.uri={uri}", f"hydra.sweep.dir={sweep_dir}"], tmp_path, slurm)
    _finish(process)
    logs = _job_logs(sweep_dir)
    assert "rank 0 of 2" in logs and "update on 2 processes with ddp" in logs, logs[-3000:]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("passk-phase1-smoke").experiment_id])
    assert len(runs) == 1, logs[-3000:]
    assert runs[0].info.status == "FINISHED" and runs[0].data.params["world_size"] == "2"
    history = client.get_metric_history(runs[0].info.run_id, "train/reward_mean")
    assert sorted(m.step for m in history) == [1, 2]
