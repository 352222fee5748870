"""analysis/: tables equal the logged metrics, the Pareto front is right by hand, figures and the summary run exist,
and every way an experiment can be unusable gives one clear error. Input runs are logged here with the MLflow client,
under the harness's tag and metric names (the end-to-end sweep → analysis test is in test_sweeps.py)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from analysis.__main__ import main as cli_main
from analysis.load import SUMMARY_TAG, AnalysisError, load_runs
from analysis.report import run_analysis
from analysis.tables import pareto_mask, summarize


def log_run(client, experiment_id, tags: dict, finals: dict[int, float], status="FINISHED", extra_metrics=None,
            params=None):
    """One run shaped like the harness's: tags, eval/pass_at_{k} at steps 0 and 2 (the step-2 value is final)."""
    run = client.create_run(experiment_id, tags={k: str(v) for k, v in tags.items()})
    now = int(time.time() * 1000)
    metrics = [Metric(f"eval/pass_at_{k}", 0.0, now, 0) for k in finals]
    metrics += [Metric(f"eval/pass_at_{k}", v, now + 1, 2) for k, v in finals.items()]
    metrics += [Metric(key, v, now + 1, 2) for key, v in (extra_metrics or {}).items()]
    client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag("schedule", tags.get("schedule", "fixed"))])
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def harness_tags(method, K, seed, **extra):
    return {"method": method, "K": K, "seed": seed, "n": 16, "schedule": "fixed", "regularizer": "none",
            "model": "tiny", "benchmark": "synthetic", "phase": "phase1", "scale": "smoke", **extra}


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return uri, client, client.create_experiment("study", artifact_location=str(tmp_path / "artifacts"))


@pytest.fixture
def phase1_like(store):
    """2 methods × 2 K × 3 seeds with known final values: pass@k = base + 0.01·seed + 0.1·log2(k)."""
    uri, client, experiment_id = store
    expected = {}
    for method, base in (("grpo", 0.2), ("rloo_k", 0.1)):
        for K in (1, 4):
            for seed in range(3):
                finals = {k: base + 0.01 * seed + 0.02 * K + 0.1 * np.log2(k) for k in (1, 2, 4, 8)}
                log_run(client, experiment_id, harness_tags(method, K, seed), finals)
                expected.setdefault((method, K), []).append(finals)
    return uri, client, experiment_id, expected


def test_summary_rows_are_method_by_k_and_equal_the_seed_statistics_of_the_logged_finals(phase1_like, tmp_path):
    uri, _, _, expected = phase1_like
    runs = load_runs(uri, "study")
    summary = summarize(runs)
    assert list(runs.ks) == [1, 2, 4, 8]
    assert len(summary) == 4 and list(summary.columns[:3]) == ["method", "K", "seeds"]
    for _, row in summary.iterrows():
        finals = expected[(row["method"], row["K"])]
        assert row["seeds"] == 3
        for k in (1, 2, 4, 8):
            values = [f[k] for f in finals]
            assert row[f"pass_at_{k}_mean"] == pytest.approx(np.mean(values), abs=1e-12)
            assert row[f"pass_at_{k}_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)


def test_report_writes_every_file_and_logs_them_to_one_summary_run_that_a_rerun_reuses(phase1_like, tmp_path):
    uri, client, experiment_id, _ = phase1_like
    out = tmp_path / "out"
    report = run_analysis(uri, "study", out)
    names = {p.name for p in report.files}
    assert {"passk_curves.png", "passk_curves.html", "pareto.png", "pareto.html", "summary.csv", "summary.md"} <= names
    assert "fixed_vs_adaptive.csv" not in names  # one schedule, phase1: no schedule table
    for path in report.files:
        assert path.exists() and path.stat().st_size > 0
    assert (out / "passk_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 4 and table["seeds"].tolist() == [3, 3, 3, 3]
    assert "| method | K | seeds | n_eval | pass@1 |" in (out / "summary.md").read_text()
    artifacts = {a.path for a in client.list_artifacts(report.summary_run_id, "analysis")}
    assert {f"analysis/{name}" for name in names} == artifacts
    summary_run = client.get_run(report.summary_run_id)
    assert summary_run.data.tags[SUMMARY_TAG] == "summary" and summary_run.data.tags["phase"] == "phase1"
    again = run_analysis(uri, "study", tmp_path / "again")  # the summary run is not read as a training run ...
    assert again.runs == 12 and again.summary_run_id == report.summary_run_id  # ... and is reused, not duplicated
    assert len(client.search_runs([experiment_id], filter_string=f"tags.{SUMMARY_TAG} = 'summary'")) == 1


def test_pareto_mask_by_hand():
    x = np.array([0.5, 0.4, 0.3, 0.5, 0.2, 0.45])
    y = np.array([0.6, 0.7, 0.9, 0.5, 0.8, 0.7])
    # (0.5,0.5) is dominated by (0.5,0.6); (0.2,0.8) by (0.3,0.9); (0.4,0.7) by (0.45,0.7); ties on both axes stay.
    assert pareto_mask(x, y).tolist() == [True, False, True, False, False, True]
    assert pareto_mask(np.array([0.1, 0.1]), np.array([0.2, 0.2])).tolist() == [True, True]


def test_pareto_csv_marks_the_front_of_the_arm_means(phase1_like, tmp_path):
    uri = phase1_like[0]
    run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    pareto = pd.read_csv(tmp_path / "out" / "pareto.csv")
    # grpo K=4 has the highest mean at every k, so it alone is on the front (pass@8 stands in for pass@64).
    assert pareto.loc[pareto["on_front"], ["method", "K"]].values.tolist() == [["grpo", 4]]
    y = {(m, K): v for m, K, v in zip(pareto["method"], pareto["K"], pareto["y"])}
    assert y[("grpo", 4)] == pytest.approx(0.2 + 0.01 + 0.08 + 0.3)  # mean over seeds 0,1,2 of the k=8 finals
    assert y[("rloo_k", 1)] == pytest.approx(0.1 + 0.01 + 0.02 + 0.3)


def test_schedule_table_separates_fixed_adaptive_and_anneal_arms(store, tmp_path):
    uri, client, experiment_id = store
    arms = [("fixed", 1, {}), ("fixed", 16, {}), ("adaptive", 16, {"schedule.k_min": "1", "schedule.k_max": "16",
                                                                      "schedule.p_target": "0.5"}),
            ("anneal", 16, {"schedule.milestones": "[[0, 16], [5, 1]]"})]
    for index, (schedule, K, params) in enumerate(arms):
        for seed in (0, 1):
            log_run(client, experiment_id, harness_tags("pkpo_loo_minus_one", K, seed, schedule=schedule,
                                                        phase="phase3"),
                    {1: 0.1 * index + 0.01 * seed, 16: 0.5 + 0.1 * index}, extra_metrics={"train/K": K}, params=params)
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    table = pd.read_csv(tmp_path / "out" / "fixed_vs_adaptive.csv")
    assert report.arms == 4 and len(table) == 4
    described = dict(zip(table["schedule"], table["K schedule"]))
    assert described["adaptive"] == "adaptive K in [1, 16], p_target=0.5"
    assert described["anneal"] == "anneal [step, K]: [[0, 16], [5, 1]]"
    assert set(table["K schedule"]) >= {"fixed K=1", "fixed K=16"}
    anneal = table[table["schedule"] == "anneal"].iloc[0]
    assert anneal["pass_at_1_mean"] == pytest.approx(0.305) and anneal["pass_at_16_mean"] == pytest.approx(0.8)
    assert "**0.8000**" in (tmp_path / "out" / "fixed_vs_adaptive.md").read_text()


def test_missing_experiment_is_an_error_naming_the_experiments_present(store, tmp_path):
    with pytest.raises(AnalysisError, match=r"experiment 'nope' does not exist .*'study'"):
        load_runs(store[0], "nope")


def test_an_experiment_without_runs_is_an_error(store):
    with pytest.raises(AnalysisError, match="has no runs"):
        load_runs(store[0], "study")


def test_runs_without_harness_tags_or_metrics_are_errors_and_partial_ones_are_left_out(store, caplog):
    uri, client, experiment_id = store
    untagged = log_run(client, experiment_id, {"model": "tiny"}, {1: 0.5})
    with pytest.raises(AnalysisError, match=r"no run carries all of the tags \['method', 'K', 'seed'\]"):
        load_runs(uri, "study")
    no_metrics = client.create_run(experiment_id, tags={k: str(v) for k, v in harness_tags("grpo", 1, 0).items()})
    client.set_terminated(no_metrics.info.run_id)
    with pytest.raises(AnalysisError, match=r"no run has a final eval/pass_at_\{k\} metric"):
        load_runs(uri, "study")
    good = log_run(client, experiment_id, harness_tags("grpo", 1, 1), {1: 0.25})
    running = log_run(client, experiment_id, harness_tags("grpo", 1, 2), {1: 0.75}, status="RUNNING")
    runs = load_runs(uri, "study")
    assert runs.frame["run_id"].tolist() == [good]
    assert {tuple(ids) for ids in runs.skipped.values()} == {(untagged,), (no_metrics.info.run_id,), (running,)}
    assert "left out 1 run(s), missing a tag" in caplog.text
    assert len(load_runs(uri, "study", statuses=None).frame) == 2


def test_cli_exit_status_and_message(store, tmp_path, capsys):
    uri = store[0]
    assert cli_main(["--tracking-uri", uri, "--experiment", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "analysis: error: experiment 'nope' does not exist" in capsys.readouterr().err
    client, experiment_id = store[1], store[2]
    log_run(client, experiment_id, harness_tags("grpo", 1, 0), {1: 0.5, 2: 0.6})
    assert cli_main(["--tracking-uri", uri, "--experiment", "study", "--out", str(tmp_path / "o"), "--no-mlflow-log"]) == 0
    assert "1 runs in 1 arms" in capsys.readouterr().out
    assert (tmp_path / "o" / "pareto.png").exists()


def test_runs_differing_in_a_logged_param_are_separate_arms_but_seed_bookkeeping_is_not(store, tmp_path):
    uri, client, experiment_id = store
    for seed in (0, 1):
        bookkeeping = {"seed": str(seed), "tracking.run_name": f"run-s{seed}", "checkpoint_dir": f"/c/{seed}",
                       "benchmark.seed": str(seed)}
        if seed == 0:  # speed settings, logged only by runs made after they existed: not a different arm
            bookkeeping.update({"keep_freed_memory": "True", "train.attention": "auto"})
        for weights, value in (("null", 0.3), ("[0.5, 0.5]", 0.4)):
            log_run(client, experiment_id, harness_tags("passk_multi", 64, seed, phase="phase2"), {1: value, 64: 0.9},
                    params={**bookkeeping, "method.params.weights": weights, "method.name": "passk_multi"})
        log_run(client, experiment_id, harness_tags("grpo", 64, seed, phase="phase2"), {1: 0.5, 64: 0.8},
                params={**bookkeeping, "method.params.std_ddof": "0", "method.name": "grpo"})
    runs = load_runs(uri, "study")
    summary = summarize(runs)
    assert list(summary.columns[:4]) == ["method", "K", "method.params.weights", "seeds"]
    assert summary[["method", "method.params.weights", "seeds", "pass_at_1_mean"]].values.tolist() == [
        ["grpo", "", 2, 0.5], ["passk_multi", "[0.5, 0.5]", 2, 0.4], ["passk_multi", "null", 2, 0.3]]
    report = run_analysis(uri, "study", tmp_path / "out", log_to_mlflow=False)
    assert report.arms == 3
    assert "weights=[0.5, 0.5]" in (tmp_path / "out" / "passk_curves.html").read_text()
