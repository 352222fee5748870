"""The dry-run planner (hydra/launcher=plan): it runs no job, prints one JSON line per job with the resolved config and
a GPU-hour estimate, then a table and the totals; invalid jobs fail it; `run_identity` finds jobs that are the same
run; the cost model's parts behave as stated (passk_exp/costs.py)."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from test_sweeps import EXPECTED_JOBS, compose


def _plan(args: list[str], tmp_path) -> tuple[int, list[dict], str, str]:
    result = run_cli(["-m", *args, "hydra/launcher=plan", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    text = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("{"))
    return result.returncode, rows, text, result.stderr


def _resolved(overrides: list[str], tmp_path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose([*overrides, f"checkpoint_dir={tmp_path}"]), resolve=True)


def test_plan_runs_nothing_and_prints_each_job_then_a_table(tmp_path):
    code, rows, text, stderr = _plan(["+sweep=phase3", "scale=full", "seed=0", "tracking.uri=sqlite:///x.db"], tmp_path)
    assert code == 0, stderr[-2000:]
    assert len(rows) == 7 and all(set(row) == {"overrides", "config", "gpu_hours"} for row in rows)
    assert all(row["gpu_hours"] > 0 for row in rows)
    assert not (tmp_path / "x.db").exists() and not list((tmp_path / "sweep").glob("*/checkpoints"))  # nothing ran
    first = rows[0]
    assert first["config"]["checkpoint_dir"] == str(tmp_path / "sweep" / "0" / "checkpoints")
    assert first["config"]["method"]["name"] == "pkpo_loo_minus_one" and first["config"]["n"] == 64
    assert "total: 7 jobs" in text and "0 duplicate runs, 0 invalid" in text and "GPU-h" in text
    total = float(text.split("total: 7 jobs, ")[1].split(" GPU-hours")[0])
    assert total == pytest.approx(sum(row["gpu_hours"] for row in rows), abs=0.06)


def test_an_invalid_job_is_reported_and_fails_the_plan(tmp_path):
    code, rows, text, stderr = _plan(["+sweep=phase1", "scale=smoke", "K=4,32", "seed=0"], tmp_path)
    assert code == 2
    bad = [row for row in rows if "error" in row]
    assert {row["config"]["method"]["name"] for row in bad} == {"rloo_k", "pkpo_loo_minus_one"}  # K=32 > n=16
    assert all("K=32 > n=16" in row["error"] and row["gpu_hours"] is None for row in bad)
    assert "fail validation" in stderr and "2 invalid" in text


def test_smoke_phase1_repeats_are_found(tmp_path):
    code, rows, text, _ = _plan(["+sweep=phase1", "scale=smoke", "seed=0", "K=1,4"], tmp_path)
    assert code == 0
    # grpo ignores K; at K = 1 biased_k is grpo and pkpo_loo_minus_one is rloo = rloo_k
    assert "3 duplicate runs" in text and "same run as job 0" in text


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["phase1", "phase2", "phase2_reg", "phase3", "phase4"])
def test_every_full_phase_plans_valid_jobs_with_no_repeated_run(phase, tmp_path):
    from passk_exp.plan import run_identity

    code, rows, text, stderr = _plan([f"+sweep={phase}", "scale=full"], tmp_path)
    assert code == 0, stderr[-2000:]  # the planner exits 2 when any job fails validate_config
    assert len(rows) == EXPECTED_JOBS[(phase, "full")]
    identities = [run_identity(row["config"]) for row in rows]
    assert len(set(identities)) == len(identities)
    assert all(row["gpu_hours"] is not None and row["gpu_hours"] > 0 for row in rows)
    assert f"total: {len(rows)} jobs" in text and " 0 duplicate runs, 0 invalid" in text


def test_run_identity_is_what_the_estimator_computes(tmp_path):
    from passk_exp.plan import run_identity

    def key(*overrides):
        return run_identity(_resolved(["model=tiny", "n=8", *overrides], tmp_path))

    assert key("method=grpo", "K=4") == key("method=grpo", "K=1")  # grpo ignores K
    assert key("method=biased_k", "K=1") == key("method=grpo")
    assert key("method=rloo_k", "K=1") == key("method=pkpo_loo_minus_one", "K=1") == key("method=rloo")
    assert key("method=rloo_k", "K=2") != key("method=rloo_k", "K=4")
    assert key("method=biased_k", "K=4") != key("method=biased_k", "K=4", "method.params.base=rloo")
    assert key("method=grpo", "seed=1") != key("method=grpo")
    assert key("method=grpo", "tracking.run_name=x", "steps=99", "quiet=true") == key("method=grpo")
    assert key("method=pkpo_loo_minus_one", "K=4", "schedule=anneal", "schedule.milestones=[[0,4],[5,1]]") != key(
        "method=pkpo_loo_minus_one", "K=4"
    )


def test_cost_model_parts(tmp_path):
    from passk_exp.costs import evaluations, finetune_mode, job_cost

    base = _resolved(["+sweep=phase2", "scale=full", "+full_task=gsm8k", "+arm=pkpo_k8"], tmp_path)
    cost = job_cost(base)
    assert cost["gpu_hours"] == pytest.approx(
        (cost["generate_s"] + cost["verify_s"] + cost["update_s"] + cost["eval_s"]) / 3600
    )
    longer = job_cost({**base, "steps": 400})
    assert longer["update_s"] == pytest.approx(2 * cost["update_s"]) and longer["eval_s"] > cost["eval_s"]
    frozen = {**base, "model": {**base["model"], "trainable_layers": 4}}
    assert finetune_mode(frozen) == "top_layers" and job_cost(frozen)["update_s"] < cost["update_s"]
    lora = {**base, "finetune": {"name": "lora"}}
    assert finetune_mode(lora) == "lora" and job_cost(lora)["update_s"] < cost["update_s"]
    kl = {**base, "regularizer": {"name": "kl", "beta": 0.01}}
    assert job_cost(kl)["update_s"] > cost["update_s"]
    assert job_cost({**base, "model": {**base["model"], "name": "unknown_model"}}) is None
    for steps in (0, 1, 7, 200):
        for every in (0, 1, 3, 50, 300):
            due = [s for s in range(1, steps + 1) if s == steps or (every > 0 and s % every == 0)]
            assert evaluations({"steps": steps, "eval_every": every}) == 1 + len(due), (steps, every)
