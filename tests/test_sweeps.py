"""sweeps/: every phase composes at both scales into jobs that pass the harness's validation, the launcher presets
are what they say, and the phase-1 smoke sweep (tiny model, 2 steps) runs end to end into MLflow, where the analysis
reads it back with tables equal to the logged metrics."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import run_cli

EXPECTED_JOBS = {  # (phase, scale) -> number of jobs of the sweep
    ("phase1", "smoke"): 4 * 3 * 3, ("phase1", "full"): 19 * 3,
    ("phase2", "smoke"): 7 * 3, ("phase2", "full"): 10 * 3,
    ("phase2_reg", "smoke"): 2 * 4 * 1, ("phase2_reg", "full"): 3 * 4 * 3,
    ("phase3", "smoke"): 5 * 3, ("phase3", "full"): 7 * 3,
    ("phase4", "smoke"): 4 * 2 * 3 * 1, ("phase4", "full"): 2 * 2 * 11 * 2,
}
PHASE_TAG = {"phase2_reg": "phase2"}  # phase 2's regularizer axis logs to phase 2's experiment
def compose(overrides: list[str], hydra_config: bool = False):
    from passk_exp.config import register_schema
    from passk_exp.paths import conf_dir

    register_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=hydra_config)


def sweep_jobs(phase: str, scale: str) -> tuple[object, list[list[str]]]:
    """The sweep's master config and every job's overrides, expanded the way the basic sweeper does."""
    master = compose([f"+sweep={phase}", f"scale={scale}"], hydra_config=True)
    parser = OverridesParser.create()
    axes = []
    for key, value in master.hydra.sweeper.params.items():
        override = parser.parse_override(f"{key}={value}")
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [value]
        axes.append([f"{key}={v}" for v in values])
    return master, [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("phase,scale", sorted(EXPECTED_JOBS))
def test_every_job_of_every_phase_composes_and_passes_validation(phase, scale, tmp_path):
    from passk_exp import estimators
    from passk_exp.config import max_k, validate_config

    master, jobs = sweep_jobs(phase, scale)
    assert len(jobs) == EXPECTED_JOBS[(phase, scale)]
    launcher = master.hydra.launcher._target_
    assert launcher.endswith("SlurmLauncher" if scale == "full" else "BasicLauncher")
    assert any(key.startswith("seed") for key in master.hydra.sweeper.params)
    seen_recipes, seen_values = set(), set()
    for job in jobs:
        # Validity depends on the training recipe (method, K, arm) and on each axis value on its own (a model, a
        # benchmark), not on their combinations or the seed: check each recipe once and every axis value once.
        recipe = tuple(o for o in job if o.startswith(("method=", "K=", "+arm=", "+reg=")))
        if recipe in seen_recipes and seen_values.issuperset(job):
            continue
        seen_recipes.add(recipe)
        seen_values.update(job)
        cfg = compose([f"+sweep={phase}", f"scale={scale}", *job, f"checkpoint_dir={tmp_path}"])
        validate_config(cfg)
        tag = PHASE_TAG.get(phase, phase)
        assert (cfg.phase, cfg.scale, cfg.resume) == (tag, scale, True)
        assert cfg.tracking.experiment == f"passk-{tag}-{scale}"
        assert cfg.tracking.run_name == f"{cfg.method.name}-K{cfg.K}-{cfg.schedule.name}-s{cfg.seed}"
        if scale == "smoke":
            assert (cfg.model.name, cfg.benchmark.name, cfg.rollout.backend) == ("smollm2_135m", "synthetic", "hf")
            assert cfg.n_eval == 32 and cfg.benchmark.eval_size == 50
        else:
            assert cfg.rollout.backend == "vllm" and cfg.model.name.startswith("qwen")
            assert cfg.benchmark.eval_size is None  # the full test sets
            assert cfg.n_eval >= 2 * max_k(cfg) and cfg.train.lr <= 1e-5
            if estimators.needs_k_le_n(cfg.method.name) and max_k(cfg) > 1:
                assert 2 * max_k(cfg) <= cfg.n, job  # unbiased arms keep K <= n/2


def test_scale_changes_the_axes_not_only_the_sizes():
    smoke, _ = sweep_jobs("phase1", "smoke")
    full, jobs = sweep_jobs("phase1", "full")
    assert smoke.hydra.sweeper.params.K == "1,4,16" and "K" not in full.hydra.sweeper.params
    assert {o for job in jobs for o in job if o.startswith("+arm=")} >= {"+arm=grpo", "+arm=grpo_passk", "+arm=rloo_k_k32"}
    assert (smoke.n, full.n, smoke.steps, full.steps) == (16, 64, 10, 200)


def test_phase3_arms_are_fixed_adaptive_and_annealed_k_with_one_estimator(tmp_path):
    _, jobs = sweep_jobs("phase3", "full")
    schedules, targets = {}, set()
    for job in (j for j in jobs if "seed=0" in j):
        cfg = compose(["+sweep=phase3", "scale=full", *job, f"checkpoint_dir={tmp_path}"])
        assert cfg.method.name == "pkpo_loo_minus_one"
        schedules[(cfg.schedule.name, cfg.K)] = cfg.schedule
        if cfg.schedule.name == "adaptive":
            targets.add(cfg.schedule.p_target)
    assert targets == {0.25, 0.5, 0.75}
    assert set(schedules) == {("fixed", 1), ("fixed", 8), ("fixed", 32), ("adaptive", 32), ("anneal", 32)}
    assert (schedules[("adaptive", 32)].k_min, schedules[("adaptive", 32)].k_max) == (1, 32)
    assert [list(m) for m in schedules[("anneal", 32)].milestones] == [[0, 32], [100, 1]]  # PKPO's k = n/2 -> 1


def test_launcher_presets(tmp_path):
    local = compose(["+sweep=phase1", "hydra/launcher=passk_local"], hydra_config=True).hydra
    assert local.launcher._target_.endswith("LocalLauncher") and local.launcher.cpus_per_task == 1
    assert local.job.env_set.PASSK_EXP_THREADS == "1"  # each concurrent job gets its share of the cores
    slurm = compose(["+sweep=phase1", "scale=full", "hydra.launcher.partition=gpu"], hydra_config=True).hydra
    assert slurm.launcher._target_.endswith("SlurmLauncher") and slurm.launcher.partition == "gpu"
    assert slurm.launcher.gpus_per_task == 1 and slurm.launcher.max_num_timeout > 0
    assert slurm.launcher.additional_parameters.requeue is True
    assert slurm.callbacks.tracking_store._target_ == "analysis.store.PrepareTrackingStore"
    basic = compose(["+sweep=phase1", "scale=full", "hydra/launcher=basic"], hydra_config=True).hydra
    assert basic.launcher._target_.endswith("BasicLauncher")  # full scale without SLURM: one job at a time


def test_prepare_store_creates_store_and_experiment_once_even_when_called_twice(tmp_path):
    from mlflow.tracking import MlflowClient

    from analysis.store import prepare_store

    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    first = prepare_store(uri, "passk-phase1-smoke")
    assert prepare_store(uri, "passk-phase1-smoke") == first
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("passk-phase1-smoke").experiment_id == first


TINY_PHASE1 = [  # the phase-1 smoke sweep at a tiny size: the phase's methods, K <= n = 4, two seeds, 2 steps
    "+sweep=phase1", "scale=smoke", "model=tiny", "steps=2", "n=4", "K=1,2", "seed=0,1", "n_eval=4",
    "save_every=1", "train.prompts_per_step=2", "rollout.max_new_tokens=6", "benchmark.eval_size=3",
]


@pytest.mark.slow
def test_phase1_smoke_sweep_reaches_mlflow_and_the_analysis_tables_equal_the_logged_metrics(tmp_path):
    from mlflow.tracking import MlflowClient

    from analysis.report import run_analysis

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(["-m", *TINY_PHASE1, f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("passk-phase1-smoke")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4 * 2 * 2 and {r.info.status for r in runs} == {"FINISHED"}
    finals: dict[tuple[str, int], list[dict[int, float]]] = {}
    for run in runs:
        tags = run.data.tags
        assert (tags["phase"], tags["scale"], tags["model"]) == ("phase1", "smoke", "tiny")
        assert run.info.run_name == f"{tags['method']}-K{tags['K']}-fixed-s{tags['seed']}"
        finals.setdefault((tags["method"], int(tags["K"])), []).append(
            {k: run.data.metrics[f"eval/pass_at_{k}"] for k in (1, 2, 4)})
    job_dirs = sorted(p.parent for p in (tmp_path / "sweep").glob("*/checkpoints"))
    assert len(job_dirs) == 16 and all(len(list((d / "checkpoints").rglob("last.pt"))) == 1 for d in job_dirs)

    report = run_analysis(uri, "passk-phase1-smoke", tmp_path / "analysis")
    summary = pd.read_csv(tmp_path / "analysis" / "summary.csv")
    assert len(summary) == 8 and list(summary.columns[:3]) == ["method", "K", "seeds"]  # one row per method × K
    assert set(zip(summary["method"], summary["K"])) == set(finals)
    for _, row in summary.iterrows():
        logged = finals[(row["method"], row["K"])]
        assert row["seeds"] == 2
        for k in (1, 2, 4):
            values = pd.Series([f[k] for f in logged])
            assert row[f"pass_at_{k}_mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert row[f"pass_at_{k}_std"] == pytest.approx(values.std(ddof=1), abs=1e-12, nan_ok=True)
    for name in ("passk_curves.png", "passk_curves.html", "pareto.png", "pareto.html", "summary.md"):
        assert Path(tmp_path / "analysis" / name).stat().st_size > 0
    artifacts = {a.path for a in client.list_artifacts(report.summary_run_id, "analysis")}
    assert "analysis/passk_curves.png" in artifacts and "analysis/pareto.html" in artifacts
