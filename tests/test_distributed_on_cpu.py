"""One run on two CPU processes (torchrun, gloo) on the tiny model: the same update as one process, one MLflow run,
resume after a kill; and the pieces of passk_exp/distributed/ that need no process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, compose, tiny_overrides
from passk_exp.config import ConfigError, validate_config
from passk_exp.distributed import Distributed, Launch, concat_batches, empty_batch, launch_from_env
from passk_exp.loss import batch_denominator
from passk_exp.rollout.base import RolloutBatch

WORKER = REPO / "tests" / "distributed_update_worker.py"
pytestmark = pytest.mark.timeout(120)  # the two-process tests below set their own, longer limits: none may hang CI


def _env() -> dict[str, str]:
    # One thread per process: two processes share the test machine's cores.
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PASSK_EXP_THREADS": "1"}


def _torchrun(args: list[str], processes: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]


def _run(command: list[str], cwd: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


# ------------------------------------------------------------------------------------------ no process group
def test_one_process_starts_no_process_group_and_every_hook_is_the_identity():
    assert launch_from_env({}) is None
    assert launch_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert launch_from_env({"RANK": "0", "WORLD_SIZE": "1"}, keep_single=True) == Launch(0, 1, 0)
    dist = Distributed()
    rewards = torch.rand(4, 3)
    mask = torch.randint(0, 2, (4, 3, 5))
    assert not dist.enabled and dist.is_main
    assert dist.shard([1, 2, 3]) == [1, 2, 3]
    assert dist.gather_groups(rewards) is rewards and dist.own_groups(rewards) is rewards
    for agg in ("constant", "token_mean", "seq_mean"):
        assert dist.loss_denominator(agg, mask, 5) == batch_denominator(agg, mask, 5)
    batch = _batch(groups=2, prompt=3, completion=4)
    micro = [torch.tensor([0])]
    assert dist.even_micro_batches(batch, rewards, micro) == (batch, rewards, micro)
    assert dist.sum(2.5) == 2.5
    assert dist.params() == {"world_size": "1", "distributed.resolved_strategy": "none"}


def test_torchrun_and_srun_environments_give_the_process_its_place():
    assert launch_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Launch(3, 4, 1)
    srun = {
        "SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
        "SLURM_STEP_NODELIST": "gpu07",
    }
    assert launch_from_env(srun) == Launch(5, 8, 1)
    assert (srun["MASTER_ADDR"], srun["RANK"], srun["WORLD_SIZE"], srun["LOCAL_RANK"]) == ("gpu07", "5", "8", "1")
    assert srun["MASTER_PORT"] == str(20000 + 123456 % 20000)  # the same port after a requeue of the job
    # The batch script of an sbatch --ntasks=8 job is one process, not a rank: srun starts the ranks.
    assert launch_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None


def test_shards_are_contiguous_blocks_that_concatenate_back_in_order():
    for total, world in ((8, 2), (7, 3), (2, 4)):
        blocks = [Distributed(Launch(rank, world, rank)).shard(list(range(total))) for rank in range(world)]
        assert sum(blocks, []) == list(range(total))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


@pytest.mark.parametrize(
    "strategy, counts, expected",
    [("ddp", [2, 0], 1), ("ddp", [3, 1], 1), ("ddp", [0, 0], 0), ("fsdp", [3, 1], 3), ("fsdp", [0, 0], 0)],
)
def test_a_rank_pads_its_micro_batches_with_a_zero_weight_group(strategy, counts, expected):
    """Rank 1 of 2 with counts[1] micro-batches: DDP needs one backward per rank whenever any rank trains, FSDP as
    many forwards as the busiest rank. The padding group has no real completion token and zero advantages."""
    dist = Distributed(Launch(1, 2, 1), strategy)
    dist._all_gather = lambda mine: counts  # the other rank's count, without a process group
    batch, adv = _batch(groups=2, prompt=3, completion=4), torch.ones(2, 2)
    mine = [torch.tensor([0]), torch.tensor([1]), torch.tensor([0])][: counts[1]]
    padded_batch, padded_adv, micro = dist.even_micro_batches(batch, adv, mine)
    assert len(micro) == max(expected, counts[1])
    if len(micro) == len(mine):
        assert padded_batch is batch and padded_adv is adv
        return
    assert padded_batch.groups == 3 and torch.equal(padded_batch.select([0, 1]).completion_ids, batch.completion_ids)
    assert all(torch.equal(m, torch.tensor([2])) for m in micro[len(mine) :])
    assert padded_batch.completion_mask[2].sum() == 0 and padded_adv[2].abs().sum() == 0
    assert torch.equal(padded_adv[:2], adv)


def test_batches_concatenate_with_prompts_left_padded_and_completions_right_padded():
    a, b = _batch(groups=1, prompt=2, completion=3), _batch(groups=2, prompt=4, completion=1)
    both = concat_batches([a, b])
    assert both.prompt_ids.shape == (3, 4) and both.completion_ids.shape == (3, 2, 3)
    assert torch.equal(both.prompt_mask[0], torch.tensor([0, 0, 1, 1]))
    assert torch.equal(both.completion_mask[1:].sum(-1), b.completion_mask.sum(-1))
    assert torch.equal(both.completion_lengths(), torch.cat([a.completion_lengths(), b.completion_lengths()]))
    assert both.texts == a.texts + b.texts
    alone = concat_batches([empty_batch(2), b])  # a rank without prompts adds nothing
    assert torch.equal(alone.completion_ids, b.completion_ids) and torch.equal(alone.prompt_mask, b.prompt_mask)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.prompts_per_step": 3}, r"train.prompts_per_step=3 does not split into 2 processes"),
        ({"distributed.strategy": "fsdp", "regularizer": "kl"}, r"strategy=fsdp does not support regularizer=kl"),
    ],
)
def test_settings_a_run_on_two_processes_cannot_take_stop_before_any_process_group(
    tmp_path, monkeypatch, overrides, message
):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=message):
        Distributed.from_config(compose(tiny_overrides(tmp_path, **overrides)), "cpu")
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    "override, message",
    [
        ("distributed.strategy=deepspeed", "distributed.strategy='deepspeed' is not one of"),
        ("distributed.backend=mpi", "distributed.backend='mpi' is not one of"),
        ("distributed.timeout_min=0", "distributed.timeout_min=0"),
    ],
)
def test_bad_distributed_settings_fail_in_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as error:
        validate_config(compose([*tiny_overrides(tmp_path), override]))
    assert "\n" not in str(error.value)


def _batch(groups: int, prompt: int, completion: int, n: int = 2) -> RolloutBatch:
    mask = torch.ones(groups, n, completion, dtype=torch.long)
    mask[:, 0, -1] = 0
    return RolloutBatch(
        torch.randint(1, 9, (groups, prompt)),
        torch.ones(groups, prompt, dtype=torch.long),
        torch.randint(1, 9, (groups, n, completion)),
        mask,
        [[f"g{g}s{i}" for i in range(n)] for g in range(groups)],
        torch.zeros(groups, n, dtype=torch.bool),
    )


# ------------------------------------------------------------------------------------------- two processes
@pytest.fixture(scope="module")
def one_process_update(tmp_path_factory):
    work = tmp_path_factory.mktemp("one_process")
    _run([sys.executable, str(WORKER), str(work / "out.pt"), "auto", str(work)], cwd=work)
    return torch.load(work / "out.pt", weights_only=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_compute_the_loss_and_gradients_of_one_process(one_process_update, tmp_path, strategy):
    """Three updates on fixed batches (uneven: one rank trains nothing; every group with token_mean; nothing at all):
    the same loss, gradient norm, gradients and updated weights as one process, to fp32 summation-order noise."""
    _run(_torchrun([str(WORKER), str(tmp_path / "out.pt"), strategy, str(tmp_path)]), cwd=tmp_path)
    two = torch.load(tmp_path / "out.pt", weights_only=False)
    assert (one_process_update["world_size"], two["world_size"], two["strategy"]) == (1, 2, strategy)
    for one, other in zip(one_process_update["results"], two["results"], strict=True):
        case = one["case"]
        # Without training, the entropy is measured on each rank's first groups, not one process's: another sample.
        keys = ("train/loss", "train/grad_norm", "train/trained_groups") + (("train/entropy",) * (case != "nothing"))
        for key in keys:
            assert other["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-6, abs=1e-9), (case, key)
        assert one["grads"].keys() == other["grads"].keys(), case
        assert bool(one["grads"]) == (case != "nothing")
        for name, grad in one["grads"].items():
            torch.testing.assert_close(other["grads"][name], grad, rtol=1e-5, atol=1e-7, msg=f"{case} {name}")
        for name, weight in one["weights"].items():
            torch.testing.assert_close(other["weights"][name], weight, rtol=1e-5, atol=1e-7, msg=f"{case} {name}")
    assert one_process_update["results"][0]["metrics"]["train/loss"] != 0  # the cases do train
    # The checkpoint is one process's (same keys, same values) plus both ranks' RNG states, and it restores exactly.
    one_ckpt, two_ckpt = one_process_update["checkpoint"], two["checkpoint"]
    assert len(two_ckpt["rank_rng"]) == 2 and "rank_rng" not in one_ckpt
    torch.testing.assert_close(two_ckpt["model"], one_ckpt["model"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(two_ckpt["optimizer"]["state"], one_ckpt["optimizer"]["state"], rtol=1e-5, atol=1e-7)
    assert two_ckpt["optimizer"]["param_groups"] == one_ckpt["optimizer"]["param_groups"]
    restored = two["restored"]
    for name, value in two_ckpt["model"].items():
        assert torch.equal(restored["weights"][name], value), name
    moments = [state["exp_avg"] for _, state in sorted(two_ckpt["optimizer"]["state"].items())]
    assert all(torch.equal(a, b) for a, b in zip(restored["exp_avg"], moments, strict=True))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_job_is_one_finished_mlflow_run_that_resumes_after_a_kill(tmp_path, mlflow_client, strategy):
    overrides = tiny_overrides(
        tmp_path,
        steps=6,
        eval_every=3,
        precision="fp32",
        device="cpu",
        **{"train.prompts_per_step": 2, "distributed.strategy": strategy},
    )
    command = _torchrun(["-m", "passk_exp", *overrides])
    # A new session, so that the kill reaches torchrun and both ranks at once, like a node lost under SLURM.
    process = subprocess.Popen(
        command, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    def saved() -> list:  # the run's last.pt, in its own <run key>/<run id>/ directory under checkpoint_dir
        return list((tmp_path / "ckpt").rglob("last.pt"))

    while not saved() and process.poll() is None:  # no deadline: the test's timeout bounds a hang
        time.sleep(0.2)
    assert saved(), "no checkpoint was written before the kill"
    (checkpoint,) = saved()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed = _only_run(mlflow_client)
    assert killed.info.status == "RUNNING"
    assert killed.data.params["world_size"] == "2"
    saved_step = torch.load(checkpoint, weights_only=False)["step"]
    assert 1 <= saved_step < 6
    assert len(torch.load(checkpoint, weights_only=False)["rank_rng"]) == 2

    _run(_torchrun(["-m", "passk_exp", *overrides, "resume=true"]), cwd=tmp_path)
    run = _only_run(mlflow_client)
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2"
    assert run.data.params["distributed.resolved_strategy"] == strategy
    history = mlflow_client.get_metric_history(run.info.run_id, "train/reward_mean")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]  # once per step: rank 0 alone logs
    evals = sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, "eval/pass_at_1"))
    assert evals == [0, 3, 6]
    artifacts = {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "eval_records")}
    assert "eval_records/step_00006.parquet" in artifacts
    from omegaconf import OmegaConf

    from passk_exp.benchmarks import load_benchmark
    from passk_exp.eval_records import read_records

    local = mlflow_client.download_artifacts(run.info.run_id, "eval_records/step_00006.parquet", str(tmp_path))
    records = read_records(local)
    # Every held-out problem once, in one process's order: the ranks' shards (2 and 1 of benchmark.eval_size=3).
    bench = load_benchmark(**OmegaConf.to_container(compose(overrides).benchmark, resolve=True))
    assert records.column("problem_id").to_pylist() == [str(p.id) for p in bench.problems("test")]
    assert records.column("n").to_pylist() == [4, 4, 4]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_explicit_fsdp_run_under_torchrun_shards_over_a_mesh_of_one(tmp_path, mlflow_client):
    """bench/gpu_check.py's FSDP2 check on a 1-GPU machine: torchrun with one process and distributed.strategy=fsdp
    forms a process group of one and trains through fully_shard (here with gloo on CPU)."""
    overrides = tiny_overrides(tmp_path, steps=2, precision="fp32", device="cpu", **{"distributed.strategy": "fsdp"})
    _run(_torchrun(["-m", "passk_exp", *overrides], processes=1), cwd=tmp_path)
    run = _only_run(mlflow_client)
    assert run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "1"
    assert run.data.params["distributed.resolved_strategy"] == "fsdp"


def _only_run(client):
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]
