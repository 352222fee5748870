"""Nothing lost, on the tiny model: a Ctrl-C in an evaluation or an update resumes to the uninterrupted run's numbers,
a second run of one config keeps the first one's checkpoint and resume continues the right run, a real bug keeps its
traceback, and a Ctrl-C before any run exists says so."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO, compose, tiny_overrides

pytestmark = pytest.mark.slow


def _trainer(directory, **extra):
    from passk_exp.config import validate_config
    from passk_exp.trainer import Trainer

    directory.mkdir(parents=True, exist_ok=True)
    cfg = compose(tiny_overrides(directory, **extra))
    validate_config(cfg)
    return Trainer(cfg)


def _client(directory):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")


def _runs(directory):
    client = _client(directory)
    return client.search_runs([client.get_experiment_by_name("test").experiment_id], order_by=["start_time ASC"])


def _histories(directory, run_id) -> dict[str, list[tuple[int, float]]]:
    """Every logged metric but wall-clock times (`*_s`), as sorted (step, value) pairs."""
    client = _client(directory)
    keys = [k for k in client.get_run(run_id).data.metrics if not k.endswith("_s")]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def _checkpoints(directory):
    return sorted((directory / "ckpt").rglob("last.pt"))


def test_ctrl_c_during_an_evaluation_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    sizes = {"steps": 3, "eval_every": 1, "save_every": 1}
    straight = _trainer(tmp_path / "straight", **sizes)
    straight.run()

    import passk_exp.trainer as trainer_module

    real_evaluate, calls = trainer_module.evaluate, []

    def interrupted_evaluate(*args, **kwargs):
        calls.append(1)
        result = real_evaluate(*args, **kwargs)  # the evaluation has drawn its samples when the Ctrl-C lands
        if len(calls) == 2:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(trainer_module, "evaluate", interrupted_evaluate)
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 1;.*its interrupted evaluation is redone"):
        _trainer(tmp_path / "resumed", **sizes).run()
    monkeypatch.setattr(trainer_module, "evaluate", real_evaluate)
    _trainer(tmp_path / "resumed", resume="true", **sizes).run()

    (expected,), (resumed,) = _runs(tmp_path / "straight"), _runs(tmp_path / "resumed")
    assert resumed.info.status == "FINISHED"
    want = _histories(tmp_path / "straight", expected.info.run_id)
    got = _histories(tmp_path / "resumed", resumed.info.run_id)
    assert [step for step, _ in got["eval/pass_at_1"]] == [0, 1, 2, 3]
    assert got == want


def test_a_second_run_keeps_the_first_checkpoint_and_resume_continues_the_interrupted_run(tmp_path, caplog):
    first = _trainer(tmp_path, eval_every=0)
    first.run()
    first_checkpoint = _checkpoints(tmp_path)[0]

    second = _trainer(tmp_path, eval_every=0)
    real_step, calls = second.train_step, []

    def interrupted_step(problems):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_step(problems)

    second.train_step = interrupted_step
    with pytest.raises(KeyboardInterrupt, match="marked KILLED; resume=true continues it from"):
        second.run()
    checkpoints = _checkpoints(tmp_path)
    assert len(checkpoints) == 2 and first_checkpoint in checkpoints
    assert torch.load(first_checkpoint, weights_only=False)["step"] == 2  # the finished run's checkpoint is intact

    caplog.set_level(logging.INFO, logger="passk_exp")
    resumed = _trainer(tmp_path, eval_every=0, resume="true")
    resumed.run()
    runs = _runs(tmp_path)
    assert len(runs) == 2 and [r.info.run_name for r in runs] == ["grpo_k-K2-n4-s0"] * 2
    first_run, second_run = runs
    assert resumed.checkpoint_dir == second.checkpoint_dir != first.checkpoint_dir
    assert f"continuing MLflow run {second_run.info.run_id}" in caplog.text
    assert f"results (FINISHED): MLflow run {second_run.info.run_id} in experiment 'test'" in caplog.text
    client = _client(tmp_path)
    for run in runs:
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/reward_mean")] == [1, 2]
    assert torch.load(first_checkpoint, weights_only=False)["mlflow_run_id"] == first_run.info.run_id


def test_ctrl_c_during_an_update_keeps_the_previous_checkpoint(tmp_path):
    # The tiny model's rewards are mostly all 0, whose groups skip the update: make every step update.
    trainer = _trainer(tmp_path, steps=3, eval_every=0, **{"train.skip_uninformative": "false"})
    real_step, calls = trainer.optimizer.step, []

    def interrupted_optimizer_step(*args, **kwargs):
        calls.append(1)
        real_step(*args, **kwargs)  # the weights of step 2 are half way: neither step 1 nor step 2
        if len(calls) == 2:
            raise KeyboardInterrupt

    trainer.optimizer.step = interrupted_optimizer_step
    with pytest.raises(KeyboardInterrupt, match="interrupted during the update of step 2;.*checkpoint .* is kept"):
        trainer.run()
    (checkpoint,) = _checkpoints(tmp_path)
    assert torch.load(checkpoint, weights_only=False)["step"] == 1


def _cli_with(patch: str, args: list[str], cwd) -> subprocess.CompletedProcess:
    """`python -m passk_exp ARGS` with `patch` applied first (a simulated bug or Ctrl-C deep in the run)."""
    script = "import sys\n" + textwrap.dedent(patch) + textwrap.dedent(f"""
        from passk_exp.cli import main
        sys.argv = ["passk_exp", *{args!r}]
        main()
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_bug_inside_the_run_keeps_its_traceback_marks_the_run_failed_and_exits_1(tmp_path):
    patch = """
        from passk_exp import trainer
        def buggy_step(self, problems):
            raise ValueError("simulated bug deep in a verifier")
        trainer.Trainer.train_step = buggy_step
    """
    result = _cli_with(patch, tiny_overrides(tmp_path), tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" in result.stderr and "ValueError: simulated bug deep in a verifier" in result.stderr
    assert "passk-exp: error:" not in result.stderr
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"


def test_ctrl_c_while_the_model_loads_says_no_run_exists(tmp_path):
    patch = """
        from passk_exp import trainer
        def interrupted_load(*args, **kwargs):
            raise KeyboardInterrupt
        trainer.load_policy = interrupted_load
    """
    result = _cli_with(patch, tiny_overrides(tmp_path), tmp_path)
    assert result.returncode == 130, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == "passk-exp: interrupted before the run started: no MLflow run, no checkpoint"
    assert "KILLED" not in result.stderr and not _checkpoints(tmp_path)
