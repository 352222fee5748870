"""Two training steps on the tiny model for every benchmark, from local data only (fixtures, packaged problem sets)."""

from __future__ import annotations

import pytest

from conftest import REPO, run_cli, tiny_overrides

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures"
CASES = {
    "synthetic": [],
    "synthetic_closeness": [],
    "reasoning_gym": [],
    "gsm8k": [f"benchmark.path={FIXTURES / 'gsm8k_mini.jsonl'}",
              f"benchmark.train_path={FIXTURES / 'gsm8k_mini_train.jsonl'}"],
    "math": [f"benchmark.path={FIXTURES / 'math_mini.jsonl'}",
             f"benchmark.train_path={FIXTURES / 'math_mini_train.jsonl'}"],
    "humaneval": ["benchmark.timeout_s=3.0", f"benchmark.train_path={FIXTURES / 'humaneval_train_mini.jsonl'}"],
}


@pytest.mark.parametrize("benchmark", sorted(CASES))
def test_two_training_steps_on_each_benchmark(benchmark, tmp_path, mlflow_client):
    result = run_cli(tiny_overrides(tmp_path) + [f"benchmark={benchmark}", *CASES[benchmark]], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = mlflow_client.get_experiment_by_name("test")
    (run,) = mlflow_client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["train_eval_overlap"] == "0" and "allow_overlap" not in run.data.tags  # held out
    steps = sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, "train/reward_mean"))
    assert steps == [1, 2]
    rewards = [m.value for m in mlflow_client.get_metric_history(run.info.run_id, "train/reward_mean")]
    assert all(0.0 <= r <= 1.0 for r in rewards)
    eval_steps = sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, "eval/pass_at_1"))
    assert eval_steps == [0, 1, 2]
    if benchmark == "synthetic_closeness":  # the continuous path logs max@k beside pass@k
        assert mlflow_client.get_metric_history(run.info.run_id, "eval/max_at_1")


def test_a_single_file_for_both_splits_stops_before_the_model_loads(tmp_path):
    single = FIXTURES / "gsm8k_mini.jsonl"
    result = run_cli(tiny_overrides(tmp_path) + ["benchmark=gsm8k", f"benchmark.path={single}"], cwd=tmp_path)
    assert result.returncode == 2
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("passk-exp: error:")]
    assert str(single) in line and "train_split='train'" in line and "test_split='test'" in line
    assert "benchmark.train_path=" in line


def test_allow_overlap_trains_on_the_single_file_and_tags_the_run(tmp_path, mlflow_client):
    single = FIXTURES / "gsm8k_mini.jsonl"
    overrides = ["benchmark=gsm8k", f"benchmark.path={single}", "benchmark.allow_overlap=true"]
    result = run_cli(tiny_overrides(tmp_path) + overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("test").experiment_id])
    assert run.data.tags["allow_overlap"] == "true"
    assert run.data.params["train_eval_overlap"] == "3"  # every one of the eval_size=3 problems is trained on
