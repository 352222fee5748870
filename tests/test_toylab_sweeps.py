"""Every toy-lab experiment config under sweeps/toylab/: each job of each phase composes and validates, each phase's
first job runs end to end into MLflow with the harness's tags, the diagnose task writes its tables, and one real
`-m` multirun goes from the command line to the summary table."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from passk_exp import estimators
from passk_exp.config import ConfigError
from passk_exp.paths import conf_dir, sweeps_dir
from passk_exp.toylab.cli import run
from passk_exp.toylab.config import register_toylab_schema, validate_toylab_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(path.stem for path in (sweeps_dir() / "toylab").glob("*.yaml"))
DIAGNOSE = ("estimators", "estimators_maxk")
PHASES = [name for name in CONFIGS if name not in DIAGNOSE]


@pytest.fixture(scope="module", autouse=True)
def _hydra():
    """One Hydra context for the module: composing is then cheap enough to compose every job of every phase."""
    register_toylab_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating one costs seconds); each test uses its own experiment name."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _compose(overrides: list[str], hydra_config: bool = False):
    return compose(config_name="toylab", overrides=overrides, return_hydra_config=hydra_config)


def _jobs(name: str) -> list[list[str]]:
    """The override list of every job of the sweep `name`, as Hydra's basic sweeper expands it."""
    params = _compose([f"+toylab={name}"], hydra_config=True).hydra.sweeper.params or {}
    axes = [[f"{key}={value.strip()}" for value in str(values).split(",")] for key, values in params.items()]
    return [[f"+toylab={name}", *combo] for combo in itertools.product(*axes)]


def test_the_phase_configs_are_the_ones_documented():
    assert {"phase1", "phase2", "phase2_pass1", "phase3", "phase4", "maxk", "independent"} <= set(PHASES)
    assert set(DIAGNOSE) <= set(CONFIGS)


@pytest.mark.parametrize("name", PHASES)
def test_every_job_of_every_phase_composes_and_validates(name):
    jobs = _jobs(name)
    assert len(jobs) > 1
    # training seeds and population draws validate alike (a draw is another random population of the same shape)
    distinct = {tuple(o for o in overrides if not o.startswith(("seed=", "toylab_population.seed=")))
                for overrides in jobs}
    for overrides in sorted(distinct):
        cfg = _compose(list(overrides))
        validate_toylab_config(cfg)
        assert cfg.phase and cfg.tracking.experiment.startswith("toylab-") and cfg.task == "train"


@pytest.mark.parametrize("name", PHASES)
def test_every_phase_runs_at_least_5_seeds_on_at_least_3_population_draws(name):
    params = _compose([f"+toylab={name}"], hydra_config=True).hydra.sweeper.params
    assert len(str(params["seed"]).split(",")) >= 5
    assert len(str(params["toylab_population.seed"]).split(",")) >= 3


@pytest.mark.parametrize("name", DIAGNOSE)
def test_diagnose_configs_name_valid_methods(name):
    cfg = _compose([f"+toylab={name}"])
    validate_toylab_config(cfg)
    assert cfg.task == "diagnose" and cfg.diagnose.methods
    for entry in cfg.diagnose.methods:
        estimators.make_state(entry.method, dict(entry.get("params") or {}))  # raises on a bad name or param


def _finished(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id])


@pytest.mark.parametrize("name", PHASES)
def test_the_first_job_of_every_phase_runs_and_is_tracked(name, store):
    uri = store
    overrides = [*_jobs(name)[0], "steps=8", "eval_every=4", "log_every=2", f"tracking.uri={uri}"]
    cfg = _compose([*overrides, f"tracking.experiment=first-job-{name}"])
    final = run(cfg)
    metric = "eval/max_at_64" if cfg.toylab_population.kind == "gaussian" else "eval/pass_at_64"
    assert 0 <= final[metric] <= 1
    client, runs = _finished(uri, cfg.tracking.experiment)
    (tracked,) = runs
    assert tracked.info.status == "FINISHED"
    tags = tracked.data.tags
    for key in ("method", "K", "n", "schedule", "regularizer", "model", "benchmark", "seed", "phase"):
        assert key in tags, key
    assert tags["model"].startswith("toylab-") and tags["benchmark"].startswith("toylab-")
    assert tags["phase"] == cfg.phase
    history = client.get_metric_history(tracked.info.run_id, metric)
    assert [m.step for m in history] == [0, 4, 8]
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "train/reward_mean")] == [2, 4, 6, 8]


def test_the_diagnose_task_writes_tables_and_figures(tmp_path, store):
    out = tmp_path / "diag"
    methods = '[{method:pkpo},{method:pkpo_loo},{method:pkpo_loo_minus_one},{method:biased_k,params:{p_hat:global}}]'
    cfg = _compose([
        "task=diagnose", f"diagnose.methods={methods}", "diagnose.ks=[1,2,4]", "diagnose.ns=[4]",
        "diagnose.ps=[0.2,0.6]", "diagnose.offsets=[1.0]", "diagnose.replicates=256", f"diagnose.out={out}",
        f"tracking.uri={store}", "tracking.experiment=diagnose-test",
    ])
    final = run(cfg)
    assert final["diagnose/rows"] > 0
    table = (out / "diagnostics.md").read_text()
    assert "pkpo_loo_minus_one" in table and "biased_k(p_hat=global)" in table and "continuous rewards" in table
    for png in ("diagnostics_variance_vs_k.png", "diagnostics_biased_k_bias.png",
                "diagnostics_variance_vs_k_continuous.png"):
        assert (out / png).stat().st_size > 1000, png
    _, runs = _finished(store, "diagnose-test")
    assert runs[0].data.tags["task"] == "diagnose"


def test_a_multirun_from_the_command_line_to_the_summary(tmp_path, store):
    uri = store  # the phase's experiment name is its own: no other test writes toylab-phase1
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [  # axes given on the command line replace the phase's own (as for the LLM sweeps)
        sys.executable, "-m", "passk_exp.toylab", "+toylab=phase1", "steps=6", "eval_every=3", "method=rloo_k",
        "K=1,4", "seed=0,1", "toylab_population.seed=0,1", f"tracking.uri={uri}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _, runs = _finished(uri, "toylab-phase1")
    units = sorted((r.data.tags["K"], r.data.tags["seed"], r.data.params["toylab_population.seed"]) for r in runs)
    assert units == [(k, s, d) for k in ("1", "4") for s in ("0", "1") for d in ("0", "1")]
    summary = subprocess.run(
        [sys.executable, "-m", "passk_exp.toylab.summary", "--tracking-uri", uri, "--experiment", "toylab-phase1",
         "--out", str(tmp_path / "summary")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert summary.returncode == 0, summary.stderr[-2000:]
    text = (tmp_path / "summary" / "toylab-phase1.md").read_text()
    assert "| rloo_k | 1 | toylab-mixed | none | 4 | 2 |" in text and "| rloo_k | 4 |" in text  # 4 runs, 2 draws
    assert "Which K wins" in text and (tmp_path / "summary" / "toylab-phase1_comparisons.csv").is_file()


def test_a_bad_override_exits_with_status_2_and_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "passk_exp.toylab", "method=rloo_k", "K=100", "tracking.enabled=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("passk-exp toylab: error: K=100 > n=64")


def test_an_unknown_group_is_an_error_not_a_silent_default_run():
    # A `+group=option` whose group Hydra cannot find (`+toylab=phase1` without sweeps/ on the search path, a misspelt
    # group) is added as a plain key; validation must refuse it rather than run the default config.
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) toylab_phase=phase1"):
        validate_toylab_config(_compose(["+toylab_phase=phase1"]))


def test_the_phase_configs_resolve_from_any_working_directory(tmp_path):
    # Without the checkout on sys.path (an installed passk_exp run from a scratch directory, where MLflow's store should
    # land), Hydra's plugin scan may miss hydra_plugins.passk_exp_searchpath (setuptools' editable install lists it
    # nowhere): `+toylab=estimators` then silently ran a default training run instead of the diagnostics.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-c", "import passk_exp"], cwd=tmp_path, env=env, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("passk_exp is not installed: it only imports with the checkout on PYTHONPATH")
    for module, group in (("passk_exp.toylab", "+toylab=estimators"), ("passk_exp", "+sweep=phase1")):
        done = subprocess.run(
            [sys.executable, "-m", module, group, "--cfg", "job"], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        assert ("task: diagnose" if module == "passk_exp.toylab" else "phase: phase1") in lines, done.stdout[:2000]
