"""analysis/ end to end on a store whose runs carry eval records (`eval_records/step_{step:05d}.parquet`), logged here
with the MLflow client under the harness's names: the last step's records give the intervals and comparisons, max@k
for continuous rewards, flags for eval overlap and high-variance k, duplicate (arm, seed) runs counted once, the steps
a resumed run really ran, and a missing sqlite store refused without creating one."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from analysis.__main__ import main as cli_main
from analysis.load import AnalysisError, check_tracking_uri, load_runs
from analysis.report import run_analysis
from passk_exp.metrics import max_at_k, pass_at_k

N_EVAL = 8
KS = (1, 2, 4, 8)


def records_frame(rewards: np.ndarray, prefix: str = "p") -> pd.DataFrame:
    """The harness's records table for rewards [P, n]: a sample is correct when its reward is 1."""
    return pd.DataFrame({
        "problem_id": [f"{prefix}{i:03d}" for i in range(len(rewards))],
        "n": rewards.shape[1], "c": (rewards == 1).sum(axis=1), "rewards": list(rewards),
        "mean_len": 10.0, "truncated": 0,
    })


def log_run(client, experiment_id, tmp_path, method: str, K: int, seed: int, rewards: np.ndarray, steps: int = 2,
            steps_param: int | None = None, tags: dict | None = None, params: dict | None = None,
            with_records: bool = True, prefix: str = "p") -> str:
    """A harness-shaped run: tags, params, train metrics at steps 1..steps, eval metrics and records at steps 0 and
    `steps` (step 0's records are all-wrong, so a test that reads them would fail)."""
    run_tags = {"method": method, "K": str(K), "seed": str(seed), "n": "8", "schedule": "fixed", "regularizer": "none",
                "model": "tiny", "benchmark": "synthetic", "phase": "phase1", "scale": "smoke", **(tags or {})}
    run = client.create_run(experiment_id, tags=run_tags)
    run_id = run.info.run_id
    for key, value in {"n_eval": str(rewards.shape[1]), "steps": str(steps_param or steps), **(params or {})}.items():
        client.log_param(run_id, key, value)
    now = int(time.time() * 1000)
    correct = (rewards == 1).sum(axis=1)
    finals = {f"eval/pass_at_{k}": float(np.mean(pass_at_k(rewards.shape[1], correct, k))) for k in KS}
    metrics = [Metric("train/reward_mean", 0.5, now, s) for s in range(1, steps + 1)]
    metrics += [Metric(key, 0.0, now, 0) for key in finals] + [Metric(k, v, now + 1, steps) for k, v in finals.items()]
    client.log_batch(run_id, metrics=metrics)
    if with_records:
        for step, table in ((0, np.zeros_like(rewards)), (steps, rewards)):
            path = tmp_path / f"step_{step:05d}.parquet"
            records_frame(table, prefix).to_parquet(path)
            client.log_artifact(run_id, str(path), "eval_records")
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return uri, client, client.create_experiment("study", artifact_location=str(tmp_path / "artifacts"))


def binary(rng, p: np.ndarray, n: int = N_EVAL) -> np.ndarray:
    return (rng.random((len(p), n)) < p[:, None]).astype(float)


def test_records_give_bootstrap_intervals_around_the_logged_means_and_comparisons_with_verdicts(store, tmp_path):
    uri, client, experiment_id = store
    rng = np.random.default_rng(0)
    p = rng.beta(0.7, 1.3, size=120)
    for seed in (0, 1):
        log_run(client, experiment_id, tmp_path, "grpo", 1, seed, binary(rng, p))
        log_run(client, experiment_id, tmp_path, "grpo", 4, seed, binary(rng, np.clip(p + 0.3, 0, 1)))
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    assert report.interval_method == "bootstrap" and not report.warnings
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    runs = load_runs(uri, "study").frame
    for _, row in summary.iterrows():
        logged = runs[(runs["method"] == row["method"]) & (runs["K"] == row["K"])]
        assert row["n_eval"] == N_EVAL and row["problems"] == 120 and row["seeds"] == 2
        assert str(row["high_variance_ks"]) == "8"  # 8 > n_eval / 2
        for k in KS:
            assert row[f"pass_at_{k}_mean"] == pytest.approx(logged[f"eval/pass_at_{k}"].mean(), abs=1e-12)
            assert row[f"pass_at_{k}_lo"] < row[f"pass_at_{k}_mean"] < row[f"pass_at_{k}_hi"]
    compared = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert compared[["method", "K"]].drop_duplicates().values.tolist() == [["grpo", 4]]
    assert compared["k"].tolist() == list(KS) and (compared["verdict"] == "wins").all()
    assert compared["reference"].unique().tolist() == ["grpo · K=1"]
    assert compared["high_variance"].tolist() == [False, False, False, True]
    text = (tmp_path / "out" / "comparisons.md").read_text()
    assert "percentile bootstrap" in text and "Holm" in text and "family of all 4" in text
    assert "## At k = K" in text and "| 8† |" in text
    summary_md = (tmp_path / "out" / "summary.md").read_text()
    assert "percentile bootstrap intervals, B = 2000" in summary_md and " †" in summary_md
    for name in ("passk_curves.png", "pareto.png", "pareto.html", "passk_curves.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    # the same analysis without records falls back to t intervals over seeds and says so
    fallback = run_analysis(uri, "study", tmp_path / "t", log_to_mlflow=False, use_records=False)
    assert fallback.interval_method == "t" and "no per-problem eval records" in fallback.warnings[0]
    assert "Student-t intervals over the seeds" in (tmp_path / "t" / "summary.md").read_text()
    assert "Welch" in (tmp_path / "t" / "comparisons.md").read_text()


def test_continuous_rewards_give_max_at_k_tables_and_curves(store, tmp_path):
    uri, client, experiment_id = store
    rng = np.random.default_rng(1)
    rewards = {}
    for seed in (0, 1):
        rewards[seed] = np.round(rng.random((30, N_EVAL)), 2)
        rewards[seed][:, 0] = 1.0  # some exact successes, so pass@k is not all zero
        log_run(client, experiment_id, tmp_path, "grpo", 1, seed, rewards[seed])
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    names = {p.name for p in report.files}
    assert {"max_at_k.csv", "max_at_k.md", "max_at_k_curves.png", "max_at_k_curves.html"} <= names
    table = pd.read_csv(tmp_path / "out" / "max_at_k.csv")
    for k in KS:
        expected = np.mean([max_at_k(rewards[s], k).mean() for s in (0, 1)])
        assert table.loc[0, f"max_at_{k}_mean"] == pytest.approx(expected, abs=1e-12)
        assert table.loc[0, f"max_at_{k}_lo"] - 1e-12 <= expected <= table.loc[0, f"max_at_{k}_hi"] + 1e-12
    assert "| max@1 |" in (tmp_path / "out" / "max_at_k.md").read_text()


def test_eval_overlap_is_flagged_in_a_column_and_a_warning_line(store, tmp_path):
    uri, client, experiment_id = store
    rng = np.random.default_rng(2)
    p = rng.random(20)
    log_run(client, experiment_id, tmp_path, "grpo", 1, 0, binary(rng, p), tags={"allow_overlap": "true"})
    log_run(client, experiment_id, tmp_path, "grpo", 4, 0, binary(rng, p), params={"train_eval_overlap": "3"})
    log_run(client, experiment_id, tmp_path, "rloo_k", 4, 0, binary(rng, p), params={"train_eval_overlap": "0"})
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    assert report.arms == 3  # the overlap param never splits arms
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", keep_default_na=False).set_index(["method", "K"])
    assert summary.loc[("grpo", 1), "eval_overlap"] == "allow_overlap=true (1 run(s))"
    assert summary.loc[("grpo", 4), "eval_overlap"] == "train_eval_overlap=3"
    assert summary.loc[("rloo_k", 4), "eval_overlap"] == ""
    assert "WARNING: 2 arm(s) trained on problems that may include eval problems" in report.warnings[0]
    assert "**WARNING: 2 arm(s)" in (tmp_path / "out" / "summary.md").read_text()
    assert "| eval_overlap |" in (tmp_path / "out" / "summary.md").read_text()


def test_duplicate_runs_of_an_arm_and_seed_count_once_and_one_seed_has_no_fake_spread(store, tmp_path):
    uri, client, experiment_id = store
    rng = np.random.default_rng(3)
    p = rng.random(40)
    older = log_run(client, experiment_id, tmp_path, "grpo", 1, 0, binary(rng, p))
    time.sleep(0.01)
    newer = log_run(client, experiment_id, tmp_path, "grpo", 1, 0, binary(rng, p))
    runs = load_runs(uri, "study")
    assert runs.frame["run_id"].tolist() == [newer]
    assert [older] in runs.skipped.values()
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["seeds"].tolist() == [1] and summary["pass_at_1_std"].isna().all()
    assert (summary["pass_at_1_hi"] > summary["pass_at_1_lo"]).all()  # the interval comes from the problems
    assert f"an older run of the same config and seed (only the latest FINISHED one counts): {older}" in (
        tmp_path / "out" / "summary.md").read_text()
    assert report.runs == 1


def test_runs_of_one_seed_on_other_draws_are_replicates_not_duplicates(store, tmp_path):
    # The toy lab sweeps population draws (toylab_population.seed) under each training seed: same arm, same seed,
    # another draw is another replicate of the arm, never "an older run".
    uri, client, experiment_id = store
    rng = np.random.default_rng(5)
    p = rng.random(20)
    ids = [log_run(client, experiment_id, tmp_path, "grpo", 1, 0, binary(rng, p),
                   params={"toylab_population.seed": str(draw)}) for draw in range(3)]
    runs = load_runs(uri, "study")
    assert sorted(runs.frame["run_id"]) == sorted(ids) and not runs.skipped
    run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["seeds"].tolist() == [3]


def test_a_resumed_run_counts_the_steps_it_ran_not_its_first_steps_param(store, tmp_path):
    uri, client, experiment_id = store
    rng = np.random.default_rng(4)
    p = rng.random(10)
    # seed 0 was started with steps=2 and resumed with steps=4 (the param keeps 2); seed 1 ran steps=4 straight
    log_run(client, experiment_id, tmp_path, "grpo", 1, 0, binary(rng, p), steps=4, steps_param=2)
    log_run(client, experiment_id, tmp_path, "grpo", 1, 1, binary(rng, p), steps=4)
    log_run(client, experiment_id, tmp_path, "grpo", 1, 2, binary(rng, p), steps=2)
    runs = load_runs(uri, "study")
    assert runs.frame.sort_values("seed")["steps"].tolist() == ["4", "4", "2"]
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    table = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert report.arms == 2 and table.set_index("steps")["seeds"].to_dict() == {2: 1, 4: 2}


def test_reference_option_and_problem_sets(store, tmp_path):
    uri, client, experiment_id = store
    rng = np.random.default_rng(5)
    p = rng.random(30)
    for method in ("grpo", "rloo_k"):
        for K in (1, 4):
            log_run(client, experiment_id, tmp_path, method, K, 0, binary(rng, p))
    run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False, reference={"method": "rloo_k", "K": "4"})
    compared = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert set(compared["reference"]) == {"rloo_k · K=4"} and len(compared) == 3 * len(KS)
    with pytest.raises(AnalysisError, match=r"--reference .* matches 2 arms"):
        run_analysis(uri, "study", tmp_path / "o2", log_to_mlflow=False, reference={"method": "grpo"})
    assert cli_main(["--tracking-uri", uri, "--experiment", "study", "--out", str(tmp_path / "o3"),
                     "--no-mlflow-log", "--reference", "method=grpo,K=1", "--resamples", "200"]) == 0


def test_arms_on_different_eval_problems_are_flagged_and_not_compared(store, tmp_path):
    uri, client, experiment_id = store
    rng = np.random.default_rng(6)
    p = rng.random(30)
    log_run(client, experiment_id, tmp_path, "grpo", 1, 0, binary(rng, p))
    log_run(client, experiment_id, tmp_path, "grpo", 4, 0, binary(rng, p), prefix="other")
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    assert any("different problem sets" in line for line in report.warnings)
    compared = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert set(compared["verdict"]) == {"no decision (different eval problems)"}


def test_a_missing_sqlite_store_is_refused_with_its_resolved_path_and_nothing_is_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AnalysisError, match=f"no sqlite file at {tmp_path / 'mlflow.db'}"):
        check_tracking_uri("sqlite:///mlflow.db")
    assert cli_main(["--tracking-uri", "sqlite:///sub/mlflow.db", "--experiment", "x", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "sub" / "mlflow.db") in err
    assert list(tmp_path.iterdir()) == []  # no database, no directory, no output
