"""Failures that explain themselves, without a model: unknown config keys (with or without Hydra's `+`), the preflight
checks (tracking store, checkpoint directory, offline hub model), which run directory a (resumed) run gets, a fresh
sqlite store opened by several processes at once, and a scoring script without a `__main__` guard."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, compose, run_cli
from passk_exp.checkpoint import CHECKPOINT_FILE
from passk_exp.config import ConfigError, validate_config
from passk_exp.preflight import check_accelerator, check_checkpoint_dir, check_hub_model, check_tracking_store
from passk_exp.run_dirs import open_run_dir


# --------------------------------------------------------------------------------------------- unknown config keys
@pytest.mark.parametrize(
    "override, where, key",
    [
        ("+eval_evry=0", "config", "eval_evry"),  # Hydra's own hint for the typo `eval_evry=0`
        ("+foo.bar=1", "config", "foo"),
        ("+train.lrr=0.1", "train", "lrr"),
        ("+tracking.experimnt=x", "tracking", "experimnt"),
        ("+benchmark.digitz=3", "benchmark=synthetic", "digitz"),
        ("+schedule.k_mx=4", "schedule=fixed", "k_mx"),
        ("+model.layerz=1", "model (source=tiny)", "layerz"),
    ],
)
def test_an_unknown_key_is_refused_even_with_a_plus(override, where, key):
    with pytest.raises(ConfigError) as error:
        validate_config(compose(["model=tiny", override]))
    message = str(error.value)
    assert message.startswith(f"{where}: unknown key(s) ['{key}']") and "; allowed: [" in message
    assert "\n" not in message


def test_the_refusal_suggests_the_key_that_was_meant():
    with pytest.raises(ConfigError, match=r"^config: unknown key\(s\) \['eval_evry'\] \(did you mean 'eval_every'\?\)"):
        validate_config(compose(["model=tiny", "+eval_evry=0"]))


def test_sweep_groups_added_with_a_plus_still_compose_and_validate(tmp_path):
    cfg = compose(["+sweep=phase1", "scale=smoke", "model=tiny", f"checkpoint_dir={tmp_path}"])
    validate_config(cfg)
    assert cfg.phase == "phase1"


def test_an_omegaconf_error_keeps_its_key_name():
    with pytest.raises(ConfigError) as error:
        validate_config(compose(["model=tiny", "tracking.run_name=${no_such_key}"]))
    assert str(error.value).startswith("tracking.run_name:") and "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------------ preflight
def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_an_unreachable_tracking_server_is_one_line_naming_it():
    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ConfigError) as error:
        check_tracking_store(uri)
    assert uri in str(error.value) and "unreachable" in str(error.value) and "\n" not in str(error.value)


def test_a_tracking_server_password_is_not_printed():
    with pytest.raises(ConfigError) as error:
        check_tracking_store(f"http://me:secret@127.0.0.1:{_closed_port()}")
    assert "secret" not in str(error.value) and "me:***@" in str(error.value)


def test_an_unwritable_checkpoint_dir_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a directory cannot be made below a file, whoever runs the test (root included)
    with pytest.raises(ConfigError) as error:
        check_checkpoint_dir(blocker / "checkpoints")
    assert f"checkpoint_dir={blocker / 'checkpoints'} is not writable" in str(error.value)
    with pytest.raises(ConfigError, match="cannot write"):
        check_tracking_store(f"sqlite:///{blocker / 'sub' / 'mlflow.db'}")


def test_an_offline_hub_model_not_in_the_cache_is_one_line(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as error:
        check_hub_model({"source": "hf", "path": "nobody/not-downloaded"})
    message = str(error.value)
    assert "model.path='nobody/not-downloaded' is not in the local Hugging Face cache" in message
    assert "HF_HUB_OFFLINE=1" in message and "download it first" in message
    check_hub_model({"source": "tiny"})  # no hub involved: nothing to check


def test_a_gpu_setting_without_a_gpu_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here: nothing to refuse")
    check_accelerator("auto", "hf")
    with pytest.raises(ConfigError, match=r"^rollout=vllm needs a CUDA device and none is visible"):
        check_accelerator("cpu", "vllm")
    with pytest.raises(ConfigError, match=r"^device=cuda and rollout=vllm need a CUDA device"):
        check_accelerator("cuda", "vllm")


@pytest.mark.parametrize("case", ["unknown_key", "store", "checkpoint_dir", "hub"])
def test_the_cli_stops_before_loading_a_model_with_one_line(case, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args, needle = {
        "unknown_key": (["+eval_evry=0"], "unknown key(s) ['eval_evry']"),
        "store": ([f"tracking.uri=http://127.0.0.1:{_closed_port()}"], "is unreachable"),
        "checkpoint_dir": ([f"checkpoint_dir={blocker / 'c'}"], "is not writable"),
        "hub": (["model=qwen2.5_0.5b"], "is not in the local Hugging Face cache"),
    }[case]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # The bound only catches a hang (the old behaviour was minutes of retries); the checks take seconds.
    result = run_cli(args, cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1].startswith("passk-exp: error:") and needle in lines[-1], lines[-3:]
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------------- run dirs
def _fake_run(root: Path, key: str, step: int, steps: int, resume: bool = False):
    run = open_run_dir(root, key, resume=resume, steps=steps)
    run.claim()
    (run.path / CHECKPOINT_FILE).write_bytes(b"weights")
    run.record(step, steps, mlflow_run_id=f"mlflow-{run.path.name}")
    return run


def test_two_runs_of_one_config_get_two_directories_and_resume_takes_the_unfinished_one(tmp_path):
    unfinished = _fake_run(tmp_path, "key", step=2, steps=5)
    time.sleep(1.1)  # run ids start with the UTC second: the second run is the newer one
    finished = _fake_run(tmp_path, "key", step=5, steps=5)
    assert finished.path != unfinished.path and finished.path.parent == unfinished.path.parent == tmp_path / "key"
    finished.release()
    unfinished.release()
    resumed = open_run_dir(tmp_path, "key", resume=True, steps=5)
    assert resumed.resumed and resumed.path == unfinished.path
    resumed.release()
    longer = open_run_dir(tmp_path, "key", resume=True, steps=9)  # more steps: both are unfinished, the newest wins
    assert longer.path == finished.path
    longer.release()


def test_resume_never_takes_a_run_that_is_still_running(tmp_path):
    running = _fake_run(tmp_path, "key", step=1, steps=5)  # holds its lock, as a live run does
    other = open_run_dir(tmp_path, "key", resume=True, steps=5)
    assert not other.resumed and other.path != running.path
    running.release()
    assert open_run_dir(tmp_path, "key", resume=True, steps=5).path == running.path


def test_resume_with_nothing_to_resume_starts_a_new_run(tmp_path):
    run = open_run_dir(tmp_path, "key", resume=True, steps=5)
    assert not run.resumed and run.path.parent == tmp_path / "key" and not run.path.exists()


def test_checkpoint_dir_naming_one_run_resumes_exactly_it_and_refuses_a_new_run_there(tmp_path):
    run = _fake_run(tmp_path, "key", step=5, steps=5)
    run.release()
    assert open_run_dir(run.path, "key", resume=True, steps=5).path == run.path
    with pytest.raises(ConfigError, match="holds the checkpoint of an earlier run: resume=true continues it"):
        open_run_dir(run.path, "key", resume=False, steps=5)
    with pytest.raises(ConfigError, match="holds a run of another config"):
        open_run_dir(run.path, "other-key", resume=True, steps=5)
    assert json.loads((run.path / "run.json").read_text())["step"] == 5


# ----------------------------------------------------------------------------------------- concurrent store creation
def test_processes_opening_a_fresh_sqlite_store_at_once_all_get_their_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import time, pathlib
        from passk_exp.tracking import MlflowTracker
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        MlflowTracker({uri!r}, "together").end("FINISHED")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    time.sleep(3)  # let all three finish importing mlflow, then release them together
    go.write_text("")
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [e[-1500:] for e in errors]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert len(client.search_runs([client.get_experiment_by_name("together").experiment_id])) == 3


# ------------------------------------------------------------------------------------ scoring without a main guard
def test_a_scoring_script_without_a_main_guard_is_told_what_to_add(tmp_path):
    body = textwrap.dedent(f"""
        from passk_exp.benchmarks import load_benchmark
        bench = load_benchmark("gsm8k", path={str(REPO / 'tests/fixtures/gsm8k_mini.jsonl')!r}, workers=2)
        problem = bench.problems("test")[0]
        print("rewards", bench.score([problem], [problem.answer]))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text(body)
    result = subprocess.run([sys.executable, str(unguarded)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError:") and 'if __name__ == "__main__":' in last and "unguarded.py" in last
    guarded = tmp_path / "guarded.py"
    guarded.write_text('if __name__ == "__main__":\n' + textwrap.indent(body, "    "))
    result = subprocess.run([sys.executable, str(guarded)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "verifier process died" not in result.stderr and "rewards [" in result.stdout
