"""Toy training runs: the harness's metric names, schedules and regularizers, that training improves the exact
objective, the capacity trade-off the phases rely on, and the one-line config errors."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from passk_exp.config import ConfigError
from passk_exp.paths import conf_dir
from passk_exp.toylab.config import register_toylab_schema, validate_toylab_config
from passk_exp.toylab.populations import benchmark_tag, build_population, model_tag
from passk_exp.toylab.train import train

SMALL = {"name": "small", "kind": "tabular", "problems": 64, "answers": 16, "share": 4, "correct": 2, "spread": 2.0,
         "seed": 0}


def _config(**overrides):
    config = {
        "task": "train", "seed": 0, "n": 16, "K": 4, "steps": 60, "n_eval": 64, "eval_every": 20, "log_every": 10,
        "method": {"name": "rloo_k", "params": {}}, "schedule": {"name": "fixed"}, "regularizer": {"name": "none"},
        "train": {"prompts_per_step": 32, "optimizer": "adam", "lr": 0.05, "betas": [0.9, 0.999], "grad_clip": None},
        "toylab_population": dict(SMALL),
    }
    config.update(overrides)
    return config


def _compose(overrides: list[str]):
    register_toylab_schema()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="toylab", overrides=overrides)


def test_a_run_logs_the_harness_metric_names_and_improves_its_objective():
    final, history = train(_config())
    steps = [step for step, _ in history]
    assert steps == [0, 10, 20, 30, 40, 50, 60]
    first, last = history[0][1], history[-1][1]
    for k in (1, 2, 4, 8, 16, 32, 64):
        assert 0.0 <= last[f"eval/pass_at_{k}"] <= 1.0
    for name in ("train/reward_mean", "train/K", "train/p_hat", "train/informative_groups", "train/grad_cosine",
                 "train/pass_at_1", "train/pass_at_16", "train/adv_abs_mean", "train/grad_norm"):
        assert name in last, name
    assert "train/reward_mean" not in first  # step 0 is the evaluation of the initial policy only
    assert last["eval/pass_at_4"] > first["eval/pass_at_4"] + 0.1
    assert final["eval/pass_at_4"] == last["eval/pass_at_4"]
    assert 0 < last["train/grad_cosine"] <= 1


def test_runs_are_reproducible_and_the_seed_only_changes_sampling():
    a, _ = train(_config())
    b, _ = train(_config())
    c, history = train(_config(seed=1))
    assert a == b
    assert a["eval/pass_at_4"] != c["eval/pass_at_4"]
    d, history_d = train(_config(seed=1, method={"name": "grpo", "params": {}}))
    assert history[0][1] == history_d[0][1]  # same population, whatever the method and seed


def test_small_k_wins_pass_at_1_and_large_k_wins_pass_at_16_when_problems_share_capacity():
    """The trade-off the phases study: with shared softmax rows, training for Pass@1 sharpens onto the answer that
    solves most row-mates, training for Pass@16 keeps mass on every row-mate's answer."""
    k1, _ = train(_config(K=1, steps=150))
    k16, _ = train(_config(K=16, steps=150))
    assert k1["eval/pass_at_1"] > k16["eval/pass_at_1"] + 0.03
    assert k16["eval/pass_at_16"] > k1["eval/pass_at_16"] + 0.05


def test_adaptive_and_anneal_schedules_drive_train_k():
    adaptive = {"name": "adaptive", "k_min": 1, "k_max": 16, "p_target": 0.5, "decay": 0.9}
    _, history = train(_config(schedule=adaptive, steps=100))
    ks = [metrics["train/K"] for step, metrics in history if step > 0]
    assert min(ks) >= 1 and max(ks) <= 16 and len(set(ks)) > 1
    anneal = {"name": "anneal", "milestones": [[0, 8], [30, 1]]}
    _, history = train(_config(schedule=anneal, steps=60, method={"name": "pkpo_loo_minus_one", "params": {}}))
    assert {step: m["train/K"] for step, m in history if step > 0} == {10: 8, 20: 8, 30: 8, 40: 1, 50: 1, 60: 1}


def test_biased_k_state_is_logged_as_p_hat():
    method = {"name": "biased_k", "params": {"p_hat": "global"}}
    _, history = train(_config(method=method, K=64))
    p_hats = [m["train/p_hat"] for step, m in history if step > 0]
    assert all(0 < p < 1 for p in p_hats)


def test_kl_regularizer_holds_the_policy_near_its_start():
    free, _ = train(_config(regularizer={"name": "kl", "beta": 0.0}))
    held, _ = train(_config(regularizer={"name": "kl", "beta": 5.0}))
    assert held["train/kl"] < 0.5 * free["train/kl"]
    entropy, _ = train(_config(method={"name": "grpo", "params": {}}, regularizer={"name": "entropy", "lam": 0.5}))
    assert 0 <= entropy["eval/pass_at_1"] <= 1


def test_the_gaussian_toy_trains_pkpo_and_logs_max_at_k():
    population = {"name": "gaussian", "kind": "gaussian", "problems": 32, "offset": 4.0, "sigma": 0.5, "seed": 0}
    final, history = train(_config(toylab_population=population, method={"name": "pkpo_loo_minus_one", "params": {}}))
    assert "eval/max_at_64" in final and "eval/pass_at_1" not in final
    assert final["eval/max_at_4"] > history[0][1]["eval/max_at_4"]


def test_populations_name_their_tags_and_reject_bad_keys():
    assert model_tag(SMALL) == "toylab-tabular-share4" and benchmark_tag(SMALL) == "toylab-small"
    with pytest.raises(ValueError, match="unknown key"):
        build_population({**SMALL, "answer": 3})
    with pytest.raises(ValueError, match="divide problems"):
        build_population({**SMALL, "share": 5})


def test_the_primary_config_composes_the_harness_groups():
    cfg = _compose(["method=pkpo_loo_minus_one", "K=16", "schedule=adaptive", "regularizer=entropy"])
    validate_toylab_config(cfg)
    assert cfg.method.name == "pkpo_loo_minus_one" and cfg.schedule.k_max == 16 and cfg.regularizer.lam == 0.1
    assert cfg.toylab_population.name == "mixed" and cfg.tracking.experiment == "toylab"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["method=rloo_k", "K=65"], "K=65 > n=64"),
        (["method=rloo_k", "toylab_population=gaussian"], "binary rewards only"),
        (["train.optimizer=rmsprop"], "train.optimizer"),
        (["task=evaluate"], "task="),
        (["toylab_population.share=3"], "divide problems"),
        (["method=grpo", "+method.params.k_factor=true"], "unknown param"),
    ],
)
def test_bad_configs_fail_with_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        validate_toylab_config(_compose(overrides))
    assert "\n" not in str(error.value)
