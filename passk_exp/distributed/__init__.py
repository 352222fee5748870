"""One run on many processes: torch.distributed set-up, prompt sharding, gathering, DDP / FSDP2, rank-0 checkpoints.

`Distributed.from_config(cfg, device)` reads the launcher's environment: torchrun's `RANK`, `WORLD_SIZE`,
`LOCAL_RANK` (with its `MASTER_ADDR`/`MASTER_PORT`), or, under `srun` (the submitit launcher's tasks), `SLURM_PROCID`,
`SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`, with `MASTER_ADDR` defaulting to the step's first node and `MASTER_PORT` to
a port derived from the job id (the same after a requeue). One process (no such environment, or a world of 1) starts
no process group and every hook of `Distributed` is the identity: the default job computes exactly what it did before.

The roles of a rank, for the trainer's hooks:
- sampling and scoring: `shard` gives each rank a contiguous block of the step's prompts (whole groups: B prompts
  split into B / world_size, which must divide); `gather_groups` concatenates every rank's [b, n] rewards in rank
  order, so the advantages of every group are computed from the whole [B, n] batch, identically on every rank, and
  `own_groups` slices this rank's rows back out;
- the update: `wrap` puts the policy under DDP (`strategy=ddp`) or shards it with FSDP2 (`fully_shard` on every
  decoder layer and on a root module that runs `completion_logprobs`, with a `MixedPrecisionPolicy`); gradients are
  synchronised by DDP / FSDP only, once per optimizer step: the loss is divided by the whole batch's denominator
  over world_size (`loss_denominator`), because both average gradients over ranks, so the synchronised gradient is
  the one-process gradient of the whole batch. `even_micro_batches` pads a rank's micro-batches with a zero-weight
  group (completion mask all zero: loss, gradient and statistics exactly 0) so that every rank takes part in the
  synchronising backward (DDP: at least one micro-batch whenever any rank trains; FSDP, whose forward all-gathers:
  as many micro-batches as the busiest rank);
- sampling under FSDP: `sampling_backend` all-gathers the full weights before `generate` and reshards after, so
  generation runs no collective and ranks may stop at different lengths;
- evaluation: `sharded(backend)` samples each rank's block of the held-out problems and returns the whole batch to
  every rank, so `evaluate` scores it and rank 0 logs what one process would log (every rank scores every eval
  sample: cheap for the built-in verifiers, repeated sandbox runs for humaneval);
- tracking: only rank 0 opens MLflow (the trainer asks `is_main`); `params()` adds `world_size`;
- checkpoints: rank 0 writes the one-process format (full trainable weights and AdamW state; under FSDP gathered
  with `DTensor.full_tensor`) plus every rank's RNG state, every rank reads it back (a shared filesystem), and a
  barrier follows each save. A checkpoint resumes on any world size (the RNG streams restart from a seed then).

Verified on CPU with gloo (tests/test_distributed_on_cpu.py: loss, gradients, weights and checkpoint against one
process for DDP and FSDP2; one MLflow run; resume after a kill); the NCCL/GPU path is the same code, not yet run.

Left out: tensor/pipeline parallelism; FSDP with `regularizer=kl` (the reference copy is not sharded) or
`rollout=vllm` (the engine would read shards): refused, and `auto` picks DDP for them; vLLM on many processes is
untested (each rank would start its own engine); each rank loads the whole policy before FSDP shards it; the entropy
of a step in which no group trains is measured on each rank's first groups (one process: its first groups); gradient
sync by hand (only DDP / FSDP reduce gradients).

Modules: `launch` (the environment), `core` (`Distributed`), `rollouts` (batches across ranks, sampling backends),
`state` (whole and sharded checkpoint tensors).
"""

from passk_exp.distributed.core import FSDP_MEMORY_SHARE, Distributed
from passk_exp.distributed.launch import Launch, launch_from_env
from passk_exp.distributed.rollouts import concat_batches, empty_batch

__all__ = ["FSDP_MEMORY_SHARE", "Distributed", "Launch", "concat_batches", "empty_batch", "launch_from_env"]
