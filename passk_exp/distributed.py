"""One run on many processes: torch.distributed set-up, prompt sharding, gathering, DDP / FSDP2, rank-0 checkpoints.

`Distributed.from_config(cfg, device)` reads the launcher's environment: torchrun's `RANK`, `WORLD_SIZE`,
`LOCAL_RANK` (with its `MASTER_ADDR`/`MASTER_PORT`), or, under `srun` (the submitit launcher's tasks), `SLURM_PROCID`,
`SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`, with `MASTER_ADDR` defaulting to the step's first node and `MASTER_PORT` to
a port derived from the job id (the same after a requeue). One process (no such environment, or a world of 1) starts
no process group and every method below is the identity: the default job computes exactly what it did before.

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

Left out: tensor/pipeline parallelism, vLLM rollouts across ranks (each rank would start its own engine), a sharded
reference policy for `regularizer=kl` under FSDP (refused), and gradient sync by hand (only DDP / FSDP reduce).
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as torch_dist
from torch import nn

from passk_exp.checkpoint import rng_state, trainable_state, write_checkpoint
from passk_exp.config import ConfigError
from passk_exp.logprobs import TokenStats, completion_logprobs
from passk_exp.loss import batch_denominator
from passk_exp.rollout.base import RolloutBatch

log = logging.getLogger(__name__)

# strategy=auto shards (FSDP) when the training state would take more than this share of one GPU's memory.
FSDP_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Launch:
    """Who this process is in the run."""

    rank: int
    world_size: int
    local_rank: int


def launch_from_env(env: dict[str, str] | None = None) -> Launch | None:
    """The process's place from torchrun's or srun's environment, or None for one process. Under srun it also sets
    MASTER_ADDR / MASTER_PORT when the job did not (torch.distributed's env:// rendezvous reads them)."""
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
    return launch if launch.world_size > 1 else None


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


def training_state_bytes(model: nn.Module) -> int:
    """fp32 weights, gradient and two AdamW moments per trainable parameter; weights only for frozen ones."""
    return sum(p.numel() * (16 if p.requires_grad else p.element_size()) for p in model.parameters())


class _PolicyForward(nn.Module):
    """The module DDP / FSDP wrap: its forward is `completion_logprobs` of the policy, so each micro-batch is one
    wrapped forward (the policy itself is called twice in it with `train.shared_prefix`). Returns a tuple of tensors,
    which DDP and FSDP know how to hook."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        stats = completion_logprobs(self.policy, *args, **kwargs)
        return stats.logprobs, stats.entropy


class Distributed:
    """One process (the default: every hook is the identity) or one rank of a torch.distributed run."""

    def __init__(self, launch: Launch | None = None, strategy: str = "auto", device: str = "cpu") -> None:
        self.rank = launch.rank if launch else 0
        self.world_size = launch.world_size if launch else 1
        self.local_rank = launch.local_rank if launch else 0
        self.requested_strategy = strategy
        self.strategy = "none" if launch is None else strategy
        self.device = device
        self._policy: nn.Module | None = None
        self._wrapped: nn.Module | None = None  # the DDP module, or the FSDP root
        self._fsdp_modules: list[nn.Module] = []  # FSDP: the root, then every decoder layer

    # ------------------------------------------------------------------------------------------------- set-up
    @classmethod
    def from_config(cls, cfg, device: str) -> "Distributed":
        """Join the process group the launcher set up (none for one process). `device` is the resolved device; on
        CUDA each rank takes the GPU of its local rank (or the one GPU SLURM left it)."""
        settings = cfg.get("distributed") or {}
        strategy = str(settings.get("strategy", "auto"))
        launch = launch_from_env()
        if launch is None:
            return cls(None, strategy, device)
        prompts = int(cfg.train.prompts_per_step)
        if prompts % launch.world_size:
            raise ConfigError(
                f"train.prompts_per_step={prompts} does not split into {launch.world_size} processes; "
                f"use a multiple of {launch.world_size}"
            )
        # FSDP shards the policy in place: a reference copy of it, or a vLLM engine reading its weights, would see
        # shards. Both keep to DDP.
        unshardable = {"regularizer=kl": cfg.regularizer.name == "kl", "rollout=vllm": cfg.rollout.backend == "vllm"}
        blocker = next((name for name, found in unshardable.items() if found), None)
        if strategy == "fsdp" and blocker:
            raise ConfigError(f"distributed.strategy=fsdp does not support {blocker}; use distributed.strategy=ddp")
        if strategy == "auto" and blocker:
            strategy = "ddp"
        backend = str(settings.get("backend", "auto"))
        if backend == "auto":
            backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
        if not torch_dist.is_initialized():
            timeout = timedelta(minutes=float(settings.get("timeout_min", 30)))
            torch_dist.init_process_group(backend=backend, timeout=timeout)
        if launch.rank != 0:  # one log, like one process's: other ranks say only what goes wrong
            logging.getLogger("passk_exp").setLevel(logging.WARNING)
        log.info("rank %d of %d (%s, %s)", launch.rank, launch.world_size, backend, device)
        return cls(launch, strategy, device)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def params(self) -> dict[str, str]:
        """Run params that describe the launch (logged by rank 0 with the config)."""
        return {"world_size": str(self.world_size), "distributed.resolved_strategy": self.strategy}

    def close(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    # ------------------------------------------------------------------------------------ prompts and results
    def shard(self, items: Sequence) -> list:
        """This rank's contiguous block of `items` (the first len % world_size ranks get one more)."""
        if not self.enabled:
            return list(items)
        base, extra = divmod(len(items), self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return list(items[start : start + base + (self.rank < extra)])

    def gather_groups(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's rows [b_r, ...] concatenated in rank order: the whole batch, on every rank."""
        if not self.enabled:
            return local
        return torch.cat(self._all_gather(local.cpu()), dim=0)

    def own_groups(self, whole: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a whole-batch tensor (the block `shard` gave it)."""
        if not self.enabled:
            return whole
        return whole[torch.as_tensor(self.shard(range(whole.shape[0])), dtype=torch.long)]

    def gather_batch(self, local: RolloutBatch) -> RolloutBatch:
        """Every rank's rollouts as one batch in rank order (pads are 0; the masks say what is real)."""
        if not self.enabled:
            return local
        return concat_batches(self._all_gather(_to_cpu(local)))

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        return float(sum(self._all_gather(float(value))))

    def _all_gather(self, obj: Any) -> list:
        gathered: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(gathered, obj)
        return gathered

    # ------------------------------------------------------------------------------------------------ update
    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: str, seed: int):
        """Put the policy under DDP or FSDP2; return the optimizer to use (FSDP replaces the parameters, so the
        optimizer is rebuilt over the sharded ones before any step). Each rank then samples from its own stream."""
        if not self.enabled:
            return optimizer
        if self.requested_strategy == "auto":
            cuda = self.device.startswith("cuda")
            memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory if cuda else None
            self.strategy = "fsdp" if memory and training_state_bytes(model) > FSDP_MEMORY_SHARE * memory else "ddp"
        self._policy = model
        if self.strategy == "ddp":
            self._wrapped = self._ddp(model)
        else:
            self._wrapped = self._fsdp(model, precision)
            accepted = inspect.signature(type(optimizer)).parameters  # `defaults` holds a few internal keys too
            settings = {key: value for key, value in optimizer.defaults.items() if key in accepted}
            optimizer = type(optimizer)([p for p in model.parameters() if p.requires_grad], **settings)
        log.info("update on %d processes with %s", self.world_size, self.strategy)
        torch.manual_seed(seed + 1_000_003 * self.rank)  # rollouts differ between ranks, reproducibly
        return optimizer

    def _ddp(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.cuda.current_device()] if self.device.startswith("cuda") else None
        # Buffers (rotary tables) are synced once here, not in every forward: that would be a collective per
        # forward, and the entropy-only forward of a step without training need not be one.
        return DistributedDataParallel(_PolicyForward(model), device_ids=device_ids, forward_sync_buffers=False)

    def _fsdp(self, model: nn.Module, precision: str) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        from passk_exp.models import decoder_layers

        mesh = init_device_mesh("cuda" if self.device.startswith("cuda") else "cpu", (self.world_size,))
        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if precision == "bf16" else None, reduce_dtype=torch.float32
        )
        layers = list(decoder_layers(model))
        for layer in layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        root = fully_shard(_PolicyForward(model), mesh=mesh, mp_policy=policy)
        # The root keeps its weights gathered after forward by default; resharding them too means the module's
        # parameters are always the sharded ones between forwards (what the optimizer, clipping and checkpoints see).
        root.set_reshard_after_forward(True, recurse=False)
        self._fsdp_modules = [root, *layers]
        # FSDP takes the first module to run forward as its root: run the root once, so that generation (which
        # calls the layers directly) never claims that role.
        with torch.no_grad():
            one = torch.ones(1, 1, dtype=torch.long, device=self.device)
            root(one, one, one.view(1, 1, 1), one.view(1, 1, 1), shared_prefix=False)
        return root

    def logprobs(self, model: nn.Module) -> Callable[..., TokenStats]:
        """`completion_logprobs` bound to `model`: through DDP / the FSDP root when it is the wrapped policy."""
        if self._wrapped is None or model is not self._policy:
            return lambda *args, **kwargs: completion_logprobs(model, *args, **kwargs)
        wrapped = self._wrapped
        return lambda *args, **kwargs: TokenStats(*wrapped(*args, **kwargs))

    def loss_denominator(self, agg: str, completion_mask: torch.Tensor, max_new_tokens: int) -> float:
        """The whole batch's loss denominator (loss.batch_denominator over every rank's groups), over world_size:
        DDP and FSDP average the ranks' gradients, so each rank's loss carries world_size times its share."""
        if not self.enabled:
            return batch_denominator(agg, completion_mask, max_new_tokens)
        whole = self.gather_groups(completion_mask.sum(-1))  # [B, n] tokens per completion: all the three need
        shape = (whole.shape[0], whole.shape[1], max_new_tokens)
        if agg == "token_mean":
            return max(float(whole.sum()), 1.0) / self.world_size
        return batch_denominator(agg, torch.zeros(shape, dtype=torch.bool), max_new_tokens) / self.world_size

    def even_micro_batches(
        self, batch: RolloutBatch, adv: torch.Tensor, micro_batches: list[torch.Tensor]
    ) -> tuple[RolloutBatch, torch.Tensor, list[torch.Tensor]]:
        """Pad this rank's micro-batches (lists of group indices) with a zero-weight group, so every rank takes part
        in each gradient synchronisation: DDP needs at least one backward per rank when any rank trains, FSDP (whose
        forward all-gathers) as many forwards on every rank. The padding group is appended to the batch with its
        completion mask all zero and zero advantages, so its loss, gradient and statistics are exactly 0."""
        if not self.enabled:
            return batch, adv, micro_batches
        counts = self._all_gather(len(micro_batches))
        busiest = max(counts)
        target = busiest if self.strategy == "fsdp" else min(busiest, max(len(micro_batches), 1))
        if len(micro_batches) >= target:
            return batch, adv, micro_batches
        first = batch.select([0])
        padding = RolloutBatch(
            first.prompt_ids,
            first.prompt_mask,
            first.completion_ids,
            torch.zeros_like(first.completion_mask),
            [[""] * batch.n],
            torch.zeros_like(first.truncated),
        )
        batch = concat_batches([batch, padding])
        adv = torch.cat([adv, adv.new_zeros(1, adv.shape[1])])
        pad = torch.tensor([batch.groups - 1])
        return batch, adv, micro_batches + [pad] * (target - len(micro_batches))

    def set_grad_sync(self, sync: bool) -> None:
        """Whether the next forward/backward synchronises gradients (only the last micro-batch of an optimizer step
        does; the others accumulate locally: DDP's no_sync, FSDP's set_requires_gradient_sync)."""
        if self._wrapped is None:
            return
        if self.strategy == "ddp":
            self._wrapped.require_backward_grad_sync = sync  # what DDP.no_sync() sets, without the context manager
        else:
            self._wrapped.set_requires_gradient_sync(sync)

    def combine_totals(self, totals: dict[str, float]) -> dict[str, float]:
        """The update's statistics over the whole batch: loss is the mean over ranks of the world_size-scaled rank
        losses (= the whole batch's loss), entropy and its token count add up, clip fraction and KL are averaged
        over ranks, the gradient norm (of the synchronised gradient) is the same everywhere."""
        if not self.enabled:
            return totals
        every = self._all_gather(dict(totals))
        combined = {key: sum(t[key] for t in every) / self.world_size for key in totals}
        for key in ("entropy", "entropy_tokens"):
            if key in totals:
                combined[key] = sum(t[key] for t in every)
        combined["grad_norm"] = totals["grad_norm"]
        return combined

    # ---------------------------------------------------------------------------------------------- sampling
    def sampling_backend(self, backend):
        """The rollout backend for this rank: under FSDP one that samples with the full weights gathered."""
        if self.strategy != "fsdp":  # called after `wrap`, which resolves strategy=auto
            return backend
        return _FullWeightsRollout(backend, self)

    def sharded(self, backend):
        """A backend that samples this rank's block of the prompts and returns every rank's rollouts (evaluation)."""
        return backend if not self.enabled else _ShardedRollout(backend, self)

    def full_weights(self):
        return _FullWeights(self)

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, directory, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict):
        """Rank 0 writes the one-process checkpoint (+ every rank's RNG state); every rank waits for it."""
        from passk_exp.checkpoint import save_checkpoint

        if not self.enabled:
            return save_checkpoint(directory, model, optimizer, state)
        ranks_rng = self._all_gather(rng_state())
        if self.strategy == "fsdp":  # collectives: every rank gathers, rank 0 keeps
            weights = {name: _full(p).cpu() for name, p in model.named_parameters() if p.requires_grad}
            optim = _map_tensors(optimizer.state_dict(), lambda t: _full(t).cpu())
        else:
            weights, optim = trainable_state(model), optimizer.state_dict()
        path = directory / "last.pt"
        if self.is_main:
            payload = {"model": weights, "optimizer": optim, "rng": ranks_rng[0], **state, "rank_rng": ranks_rng}
            path = write_checkpoint(directory, payload)
        self.barrier()
        return path

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> dict:
        """Load weights and optimizer state into this rank's (DDP: whole, FSDP: sharded) copies; return this
        rank's RNG state to set."""
        from passk_exp.checkpoint import restore_model

        if self.strategy != "fsdp":
            restore_model(model, saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
        else:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in saved["model"].items():
                    params[name].copy_(_like(value, params[name]))
            trained = [p for p in model.parameters() if p.requires_grad]
            optim = saved["optimizer"]
            state = {
                index: {key: _like(v, trained[index]) if torch.is_tensor(v) and v.dim() else v for key, v in s.items()}
                for index, s in optim["state"].items()
            }
            optimizer.load_state_dict({**optim, "state": state})
        ranks_rng = saved.get("rank_rng")
        if not self.enabled:
            return saved["rng"]
        if ranks_rng is None or len(ranks_rng) != self.world_size:
            log.warning("checkpoint written by %s process(es), resumed on %d: new sampling streams",
                        len(ranks_rng) if ranks_rng else 1, self.world_size)
            torch.manual_seed(int(saved["step"]) * 7919 + 1_000_003 * self.rank)
            return rng_state()
        return ranks_rng[self.rank]


class _FullWeights:
    """Context: every FSDP module unsharded and kept so through any number of forwards (no collective inside)."""

    def __init__(self, dist: Distributed) -> None:
        self.dist = dist

    def __enter__(self) -> None:
        for module in self.dist._fsdp_modules:
            module.set_reshard_after_forward(False, recurse=False)
            module.unshard()

    def __exit__(self, *exc) -> None:
        for module in self.dist._fsdp_modules:
            module.reshard()
            module.set_reshard_after_forward(True, recurse=False)


class _FullWeightsRollout:
    """A rollout backend that samples with the FSDP-sharded policy's full weights (gathered once per call)."""

    def __init__(self, backend, dist: Distributed) -> None:
        self.backend, self.dist = backend, dist

    def generate(self, prompts, n, sampling) -> RolloutBatch:
        with self.dist.full_weights():  # a collective: every rank comes here, with or without prompts
            return self.backend.generate(prompts, n, sampling) if prompts else empty_batch(n)

    def sync_weights(self, model: nn.Module) -> None:
        self.backend.sync_weights(model)


class _ShardedRollout:
    """Samples this rank's block of the prompts, returns every rank's rollouts in prompt order."""

    def __init__(self, backend, dist: Distributed) -> None:
        self.backend, self.dist = backend, dist

    def generate(self, prompts, n, sampling) -> RolloutBatch:
        mine = self.dist.shard(prompts)  # empty on some ranks when there are fewer prompts than ranks
        collective = isinstance(self.backend, _FullWeightsRollout)
        local = self.backend.generate(mine, n, sampling) if mine or collective else empty_batch(n)
        return self.dist.gather_batch(local)

    def sync_weights(self, model: nn.Module) -> None:
        self.backend.sync_weights(model)


def empty_batch(n: int) -> RolloutBatch:
    """A batch of no groups (a rank with no prompt of its own)."""
    ids = torch.zeros(0, 0, dtype=torch.long)
    completions = torch.zeros(0, n, 0, dtype=torch.long)
    return RolloutBatch(ids, ids, completions, completions, [], torch.zeros(0, n, dtype=torch.bool))


def _pad(tensor: torch.Tensor, dim: int, width: int, left: bool) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    zeros = tensor.new_zeros(shape)
    return torch.cat([zeros, tensor] if left else [tensor, zeros], dim=dim)


def concat_batches(batches: Sequence[RolloutBatch]) -> RolloutBatch:
    """Rollout batches of the same n as one: prompts re-left-padded, completions re-right-padded, with zeros (the
    masks mark real tokens)."""
    prompt_width = max(b.prompt_ids.shape[1] for b in batches)
    completion_width = max(b.completion_ids.shape[2] for b in batches)
    return RolloutBatch(
        torch.cat([_pad(b.prompt_ids, 1, prompt_width, True) for b in batches]),
        torch.cat([_pad(b.prompt_mask, 1, prompt_width, True) for b in batches]),
        torch.cat([_pad(b.completion_ids, 2, completion_width, False) for b in batches]),
        torch.cat([_pad(b.completion_mask, 2, completion_width, False) for b in batches]),
        [group for b in batches for group in b.texts],
        torch.cat([b.truncated for b in batches]),
    )


def _to_cpu(batch: RolloutBatch) -> RolloutBatch:
    return RolloutBatch(*(t.cpu() for t in (batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                            batch.completion_mask)), batch.texts, batch.truncated.cpu())


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (a collective), or the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor.detach()


def _like(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`full` laid out like `param`: this rank's shard of it when `param` is a DTensor (no communication)."""
    if not hasattr(param, "device_mesh"):
        return full.to(param.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(param.device), param.device_mesh, param.placements, src_data_rank=None)


def _map_tensors(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if torch.is_tensor(state):
        return fn(state)
    if isinstance(state, dict):
        return {key: _map_tensors(value, fn) for key, value in state.items()}
    if isinstance(state, list):
        return [_map_tensors(value, fn) for value in state]
    return state
