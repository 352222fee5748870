"""The policy update of one RL step: a rollout batch and its advantages in, the optimizer step and its metrics out.

For `train.inner_updates` passes over the batch's groups, in micro-batches of `train.micro_batch_groups`: the policy's
log-probs (the first pass's are the old log-probs; the reference model's, once, for the KL term), the truncated
importance weights of a separate sampler (importance.py), the clipped policy-gradient loss (loss.py), backward,
gradient clipping, one optimizer step, then the new weights to the rollout backend. With `train.skip_uninformative`,
groups whose advantages are all exactly zero carry no gradient and their forward/backward is skipped (unless the KL
term to the reference needs them).

It is apart from the trainer (trainer.py) because it is the one role that changes the weights: it holds only what the
update needs (policy, reference, optimizer, process group, rollout backend, importance correction, precision) and
nothing of the loop's sampling, scoring, evaluation, checkpoints or tracking. The trainer builds it once the model is
final (fine-tuned, wrapped for many processes) and calls it with (batch, advantages) each step.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from omegaconf import DictConfig
from torch import nn

from passk_exp.dapo import overlong_keep
from passk_exp.distributed import Distributed
from passk_exp.finetune import FinetunedPolicy
from passk_exp.importance import ImportanceCorrection
from passk_exp.logprobs import TokenStats
from passk_exp.loss import policy_gradient_loss
from passk_exp.precision import autocast
from passk_exp.rollout.base import RolloutBackend, RolloutBatch


class PolicyUpdate:
    """`update(batch, adv) -> metrics`: one step's optimizer update(s) of the policy on this rank's groups."""

    def __init__(
        self,
        *,
        model: nn.Module,
        ref_model: nn.Module | None,
        finetune: FinetunedPolicy,
        optimizer: torch.optim.Optimizer,
        trainable: list[nn.Parameter],
        dist: Distributed,
        backend: RolloutBackend,
        importance: ImportanceCorrection,
        precision: str,
        device: str,
        shared_prefix: bool,
        train_cfg: DictConfig,
        kl_beta: float,
        max_new_tokens: int,
        temperature: float,
    ) -> None:
        self.model = model
        self.ref_model = ref_model
        self.finetune = finetune
        # The trainer's own optimizer object (checkpoints save and restore it, tests patch its `step`).
        self.optimizer = optimizer
        self.trainable = trainable
        self.dist = dist
        self.backend = backend
        self.importance = importance
        self.precision = precision
        self.device = device
        self.shared_prefix = shared_prefix
        self.cfg = train_cfg  # the `train` config node itself, so a change to the trainer's config is seen here
        self.kl_beta = kl_beta
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        # From this step's first optimizer step until the trainer counts the step (and resets it): the weights have
        # changed but the step is not counted, so there is no clean state to save on an interrupt.
        self.updating = False

    def loss_masks(self, batch: RolloutBatch) -> torch.Tensor:
        """[G, n, C] tokens that enter the loss: the completion mask, less truncated samples with train.overlong_filter
        (DAPO, passk_exp/dapo.py)."""
        if not self.cfg.overlong_filter:
            return batch.completion_mask
        return batch.completion_mask * overlong_keep(batch).unsqueeze(-1).long()

    def __call__(self, batch: RolloutBatch, adv: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        groups = torch.arange(batch.groups)
        if cfg.skip_uninformative and self.ref_model is None:
            groups = groups[(adv != 0).any(dim=1)]
        # The denominator counts this step's real groups; the loss masks also cover the zero-weight padding group
        # that even_micro_batches may append.
        denominator = self.dist.loss_denominator(cfg.loss_agg, self.loss_masks(batch), self.max_new_tokens)
        micro_batches = [groups[i : i + cfg.micro_batch_groups] for i in range(0, len(groups), cfg.micro_batch_groups)]
        batch, adv, micro_batches = self.dist.even_micro_batches(batch, adv, micro_batches)  # same syncs on every rank
        loss_masks = self.loss_masks(batch)
        old_logprobs: dict[int, torch.Tensor] = {}
        ref_logprobs: dict[int, torch.Tensor] = {}
        is_weights: dict[int, torch.Tensor | None] = {}
        totals = {"loss": 0.0, "clip": 0.0, "kl": 0.0, "entropy": 0.0, "entropy_tokens": 0.0, "grad_norm": 0.0}
        device = self.device
        for inner in range(cfg.inner_updates):
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for index, groups_mb in enumerate(micro_batches):
                sub = batch.select(groups_mb)
                tensors = [t.to(device) for t in (sub.prompt_ids, sub.prompt_mask, sub.completion_ids, sub.completion_mask)]
                mask = tensors[3]
                if self.ref_model is not None and index not in ref_logprobs:
                    with torch.no_grad(), autocast(self.precision, device), self.finetune.reference_scope():
                        ref_logprobs[index] = self.logprobs(self.ref_model, tensors, False).logprobs.float()
                self.dist.set_grad_sync(index == len(micro_batches) - 1)  # gradients meet once per optimizer step
                with autocast(self.precision, device):
                    stats = self.logprobs(self.model, tensors, with_entropy=inner == 0)
                logprobs = stats.logprobs.float()
                if inner == 0:
                    old_logprobs[index] = logprobs.detach()
                    is_weights[index] = self.importance.weights(old_logprobs[index], sub.sampler_logprobs, mask)
                    if stats.entropy is not None:
                        totals["entropy"] += float((stats.entropy.float() * mask).sum())
                        totals["entropy_tokens"] += float(mask.sum())
                parts = policy_gradient_loss(
                    logprobs,
                    old_logprobs[index],
                    adv[groups_mb].to(device),
                    loss_masks[groups_mb].to(device),
                    clip_eps=cfg.clip_eps,
                    clip_eps_high=cfg.clip_eps_high,
                    agg=cfg.loss_agg,
                    denominator=denominator,
                    ref_logprobs=ref_logprobs.get(index),
                    kl_beta=self.kl_beta,
                    token_weights=is_weights[index],
                )
                parts.loss.backward()
                loss_sum += float(parts.loss.detach())
                if inner == cfg.inner_updates - 1:
                    totals["clip"] += float(parts.clip_fraction) / len(micro_batches)
                    if parts.kl is not None:
                        totals["kl"] += float(parts.kl) / len(micro_batches)
            if micro_batches:
                grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
                self.updating = True  # reset by Trainer.run() once the step is counted
                self.optimizer.step()
                self.backend.sync_weights(self.model)
                totals["grad_norm"] = float(grad_norm)
            totals["loss"] = loss_sum
        totals = self.dist.combine_totals(totals)  # many processes: the whole batch's loss and statistics
        metrics = {
            "train/loss": totals["loss"],
            "train/grad_norm": totals["grad_norm"],
            "train/clip_fraction": totals["clip"],
            "train/trained_groups": self.dist.sum(float(len(groups))),
            **self.importance.metrics(),
        }
        if not micro_batches:
            # Nothing trained this step: measure the policy's entropy on a few groups anyway, so the metric is
            # never missing (a no-grad forward, cheap next to the update it replaces).
            sub = batch.select(torch.arange(min(cfg.micro_batch_groups, batch.groups)))
            tensors = [t.to(device) for t in (sub.prompt_ids, sub.prompt_mask, sub.completion_ids, sub.completion_mask)]
            with torch.no_grad(), autocast(self.precision, device):
                stats = self.logprobs(self.model, tensors, with_entropy=True)
            totals["entropy"] = self.dist.sum(float((stats.entropy.float() * tensors[3]).sum()))  # over ranks
            totals["entropy_tokens"] = self.dist.sum(float(tensors[3].sum()))
        if totals["entropy_tokens"]:
            metrics["train/entropy"] = totals["entropy"] / totals["entropy_tokens"]
        if self.ref_model is not None:
            metrics["train/kl"] = totals["kl"]
        return metrics

    def logprobs(self, model: nn.Module, tensors: list[torch.Tensor], with_entropy: bool) -> TokenStats:
        """Per-token log-probs (and optionally entropies) of the completions in `tensors` = (prompt_ids, prompt_mask,
        completion_ids, completion_mask) under `model`, the way the update computes them."""
        prompt_ids, prompt_mask, completion_ids, completion_mask = tensors
        context = torch.no_grad() if model is self.ref_model else nullcontext()
        with context:
            return self.dist.logprobs(model)(  # completion_logprobs, through DDP / FSDP for the wrapped policy
                prompt_ids,
                prompt_mask,
                completion_ids,
                completion_mask,
                shared_prefix=self.shared_prefix,
                token_chunk=self.cfg.token_chunk,
                with_entropy=with_entropy,
                temperature=self.temperature,  # the sampled distribution (top_p < 1 is refused in config)
            )
