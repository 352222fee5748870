"""Where this process stands in a run: rank, world size and local rank from torchrun's or srun's environment.

torchrun sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`. Under `srun` (and so under the
submitit launcher with `tasks_per_node` > 1) the rank is `SLURM_PROCID`, the world `SLURM_STEP_NUM_TASKS` (set by srun
for its tasks only, so an sbatch script's one shell is not mistaken for rank 0 of many), the local rank
`SLURM_LOCALID`; the rendezvous defaults to the step's first node and a port derived from the job id, the same after a
requeue. Reads the environment only; the process group is `Distributed.from_config`'s.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    """Who this process is in the run."""

    rank: int
    world_size: int
    local_rank: int


def launch_from_env(env: dict[str, str] | None = None, keep_single: bool = False) -> Launch | None:
    """The process's place from torchrun's or srun's environment, or None for one process (unless `keep_single`: a
    launcher's world of one still forms a process group, e.g. an explicit FSDP2 mesh of one GPU). Under srun it also
    sets MASTER_ADDR / MASTER_PORT when the job did not (torch.distributed's env:// rendezvous reads them)."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun (or anything that sets its variables)
        launch = Launch(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    elif int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1 and "SLURM_PROCID" in env:  # srun's tasks, not sbatch's shell
        launch = Launch(int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]), int(env.get("SLURM_LOCALID", 0)))
        env.setdefault("MASTER_ADDR", _first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")))
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        env.setdefault("RANK", str(launch.rank))
        env.setdefault("WORLD_SIZE", str(launch.world_size))
        env.setdefault("LOCAL_RANK", str(launch.local_rank))
    else:
        return None
    return launch if launch.world_size > 1 or keep_single else None


def _first_host(nodelist: str) -> str:
    """The first host of a SLURM node list ("gpu[03-05],cpu1" -> "gpu03"): `scontrol` expands it where it can."""
    if not nodelist:
        return "127.0.0.1"
    if "[" not in nodelist:
        return nodelist.split(",")[0]
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        prefix, _, rest = nodelist.partition("[")
        return prefix + rest.split(",")[0].split("-")[0].rstrip("]")
