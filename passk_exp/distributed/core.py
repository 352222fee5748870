"""The `Distributed` object: one process (every hook the identity) or one rank of a torch.distributed run.

The overview, the hooks the trainer calls and what is left out are in the package docstring (`__init__.py`).
"""

from __future__ import annotations

import inspect
import logging
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as torch_dist
from torch import nn

from passk_exp.checkpoint import rng_state, trainable_state, write_checkpoint
from passk_exp.config import ConfigError
from passk_exp.distributed.launch import Launch, launch_from_env
from passk_exp.distributed.rollouts import FullWeights, FullWeightsRollout, ShardedRollout, concat_batches, to_cpu
from passk_exp.distributed.state import full, like, map_tensors
from passk_exp.logprobs import TokenStats, completion_logprobs
from passk_exp.loss import batch_denominator
from passk_exp.rollout.base import RolloutBatch

log = logging.getLogger(__name__)

# strategy=auto shards (FSDP) when the training state would take more than this share of one GPU's memory.
FSDP_MEMORY_SHARE = 0.5


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
        launch = launch_from_env(keep_single=strategy == "fsdp")  # an explicit FSDP2 mesh may have one device
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
        """A process group exists (several processes, or one under a launcher with distributed.strategy=fsdp)."""
        return self.strategy != "none"

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
        return concat_batches(self._all_gather(to_cpu(local)))

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        return float(sum(self._all_gather(float(value))))

    def from_main(self, compute: Callable[[], Any]) -> Any:
        """`compute()` run on rank 0 only, its (picklable) result on every rank: for choices one process must make."""
        if not self.enabled:
            return compute()
        box = [compute() if self.is_main else None]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

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
            torch.zeros_like(first.sampler_logprobs) if first.sampler_logprobs is not None else None,
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
        return FullWeightsRollout(backend, self)

    def sharded(self, backend):
        """A backend that samples this rank's block of the prompts and returns every rank's rollouts (evaluation)."""
        return backend if not self.enabled else ShardedRollout(backend, self)

    def full_weights(self) -> FullWeights:
        """Context: the FSDP-sharded policy's whole weights, gathered once and kept through every forward."""
        return FullWeights(self._fsdp_modules)

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, directory, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict):
        """Rank 0 writes the one-process checkpoint (+ every rank's RNG state); every rank waits for it."""
        from passk_exp.checkpoint import save_checkpoint

        if not self.enabled:
            return save_checkpoint(directory, model, optimizer, state)
        ranks_rng = self._all_gather(rng_state())
        if self.strategy == "fsdp":  # collectives: every rank gathers, rank 0 keeps
            weights = {name: full(p).cpu() for name, p in model.named_parameters() if p.requires_grad}
            optim = map_tensors(optimizer.state_dict(), lambda t: full(t).cpu())
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
                    params[name].copy_(like(value, params[name]))
            trained = [p for p in model.parameters() if p.requires_grad]
            optim = saved["optimizer"]
            state = {
                index: {key: like(v, trained[index]) if torch.is_tensor(v) and v.dim() else v for key, v in s.items()}
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
