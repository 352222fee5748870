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
    "gsm8k": [f"benchmark.path={FIXTURES / 'gsm8k_mini.jsonl'}"],
    "math": [f"benchmark.path={FIXTURES / 'math_mini.jsonl'}"],
    "humaneval": ["benchmark.timeout_s=3.0"],
}


@pytest.mark.parametrize("benchmark", sorted(CASES))
def test_two_training_steps_on_each_benchmark(benchmark, tmp_path, mlflow_client):
    result = run_cli(tiny_overrides(tmp_path) + [f"benchmark={benchmark}", *CASES[benchmark]], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = mlflow_client.get_experiment_by_name("test")
    (run,) = mlflow_client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, "train/reward_mean"))
    assert steps == [1, 2]
    rewards = [m.value for m in mlflow_client.get_metric_history(run.info.run_id, "train/reward_mean")]
    assert all(0.0 <= r <= 1.0 for r in rewards)
    eval_steps = sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, "eval/pass_at_1"))
    assert eval_steps == [0, 1, 2]
    if benchmark == "synthetic_closeness":  # the continuous path logs max@k beside pass@k
        assert mlflow_client.get_metric_history(run.info.run_id, "eval/max_at_1")
