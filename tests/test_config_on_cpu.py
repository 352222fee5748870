"""Composing the real config: every group combination validates, and every bad value stops before a model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, compose, run_cli, tiny_overrides
from passk_exp import estimators
from passk_exp.config import ConfigError, validate_config

CONF = REPO / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_registered_estimator_has_a_method_yaml_and_back():
    assert set(_options("method")) == set(estimators.REGISTRY)


def test_method_yaml_params_are_the_estimators_own_with_its_defaults():
    for name in _options("method"):
        cfg = compose([f"method={name}"])
        assert cfg.method.name == name
        params = dict(cfg.method.get("params") or {})
        defaults = estimators.method_params(name)
        assert set(params) <= set(defaults), name


@pytest.mark.parametrize("method", _options("method"))
def test_every_method_schedule_and_regularizer_composes_and_validates(method):
    for schedule in _options("schedule"):
        for regularizer in _options("regularizer"):
            cfg = compose(
                [f"method={method}", f"schedule={schedule}", f"regularizer={regularizer}", "model=tiny", "K=4", "n=16"]
            )
            validate_config(cfg)


def test_design_card_command_line_validates():
    validate_config(compose(["method=grpo_k", "K=16"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["K=0"], "K=0"),
        (["method=rloo_k", "K=65", "n=64"], "K=65 > n=64"),
        (["train.lr=-0.001"], "train.lr=-0.001"),
        (["n_eval=0"], "n_eval=0"),
        (["precision=fp16"], "precision='fp16'"),
        (["schedule=adaptive", "schedule.k_min=8", "schedule.k_max=4"], "k_min=8 > schedule.k_max=4"),
        (["method=biased_k", "method.params.p_hat=median"], "median"),
        (["rollout.temperature=0"], "rollout.temperature=0"),
        (["train.attention=flash"], "train.attention='flash' is not one of"),
    ],
)
def test_bad_values_raise_one_line_config_errors(overrides, message):
    with pytest.raises(ValueError) as error:
        validate_config(compose(["model=tiny", *overrides]))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("overrides", [["method=nope"], ["foo=1"], ["train.lrr=0.1"], ["method.params.typo=1"]])
def test_unknown_names_and_keys_fail_at_compose_time(overrides):
    with pytest.raises(Exception) as error:
        compose(["model=tiny", *overrides])
    text = str(error.value)
    assert any(word in text for word in ("nope", "foo", "lrr", "typo"))


def test_the_cli_prints_one_line_and_exits_2_before_loading_a_model(tmp_path):
    for args, needle in ((["K=0"], "K=0"), (["method=rloo_k", "K=65", "n=64"], "K=65 > n=64")):
        result = run_cli([*args, "tracking.enabled=false"], cwd=tmp_path, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("passk-exp: error:") and needle in lines[-1]
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "mlflow.db").exists()


def test_unknown_method_on_the_command_line_names_it_and_exits_nonzero(tmp_path):
    result = run_cli(["method=nope"], cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_conf_is_found_from_any_working_directory(tmp_path):
    from passk_exp.paths import conf_dir

    assert (conf_dir() / "config.yaml").exists()
    assert Path(conf_dir()).is_absolute()
