"""The RL loop: sample → verify → advantages → policy-gradient update, with evaluation, checkpoints and tracking.

One step: B prompts from the benchmark's train stream, n completions each (rollout backend), rewards [B, n] from the
benchmark's verifier, advantages from the estimator registry with K from the schedule (plus the advantage-level
regularizer), then a token-level clipped policy-gradient loss (plus β·KL to the reference policy), accumulated over
micro-batches of groups, AdamW with gradient clipping. Groups whose advantages are all exactly zero contribute no
gradient, so their forward/backward is skipped. The math lives in estimators/, metrics.py, loss.py; this file is
plumbing, and it deliberately knows nothing of Hydra (it takes a resolved config) so tests and benches can drive it.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from passk_exp import estimators
from passk_exp.allocator import keep_freed_memory
from passk_exp.benchmarks import load_benchmark
from passk_exp.checkpoint import load_checkpoint, restore_model, run_key, save_checkpoint, set_rng_state
from passk_exp.eval_records import records_parquet
from passk_exp.evaluation import curve_csv, curve_png, evaluate, pass_at_k_metrics
from passk_exp.finetune import apply_finetune
from passk_exp.importance import ImportanceCorrection
from passk_exp.k_control import KController
from passk_exp.logprobs import completion_logprobs, supports_shared_prefix, training_attention
from passk_exp.loss import batch_denominator, policy_gradient_loss
from passk_exp.models import load_policy
from passk_exp.precision import autocast, resolve_precision, store_frozen_linears_in_bf16
from passk_exp.progress import StepProgress
from passk_exp.regularizers import outcome_entropy_term
from passk_exp.rollout import make_backend
from passk_exp.rollout.base import RolloutBatch, SamplingParams
from passk_exp.tracking import MlflowTracker, NullTracker, default_tracking_uri, flatten, log_figure_files, log_json

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    return device


def run_tags(cfg: DictConfig) -> dict[str, Any]:
    tags = {
        "method": cfg.method.name,
        "K": cfg.K,
        "n": cfg.n,
        "schedule": cfg.schedule.name,
        "regularizer": cfg.regularizer.name,
        "model": cfg.model.name,
        "benchmark": cfg.benchmark.name,
        "seed": cfg.seed,
    }
    if cfg.get("phase"):
        tags["phase"] = cfg.phase
    if cfg.get("scale"):
        tags["scale"] = cfg.scale
    return tags


class Trainer:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.config_dict: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        # The benchmark first: a missing dataset file must fail before a model is loaded.
        self.bench = load_benchmark(**self.config_dict["benchmark"])
        self.eval_problems = self.bench.problems("test")
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.device == "cpu" and cfg.keep_freed_memory:
            keep_freed_memory()
        self.model, self.tokenizer = load_policy(cfg.model, device=self.device, seed=cfg.seed)
        self.finetune = apply_finetune(self.model, self.config_dict.get("finetune"))  # full | lora | top_layers
        self.model = self.finetune.model
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        # The fused kernel (CPU and CUDA) updates all parameters in one pass: 0.08 s instead of 0.29 s a step for
        # SmolLM2-135M's 135M parameters on 2 CPU cores; same update rule, same state dict.
        self.optimizer = torch.optim.AdamW(
            self.trainable,
            lr=cfg.train.lr,
            weight_decay=cfg.train.weight_decay,
            betas=tuple(cfg.train.betas),
            fused=torch.device(self.device).type in ("cpu", "cuda"),
        )
        self.ref_model = None
        if cfg.regularizer.name == "kl":
            self.ref_model = self.finetune.reference_model()  # evaluated inside self.finetune.reference_scope()
        if self.precision == "bf16":
            for frozen in (self.model, self.ref_model):
                if frozen is not None:
                    store_frozen_linears_in_bf16(frozen)
        self.backend = make_backend(self.config_dict["rollout"], self.model, self.tokenizer, self.precision, cfg.seed)
        self.importance = ImportanceCorrection(self.config_dict["rollout"].get("is_cap"))  # vLLM's sampler mismatch
        self.sampling = SamplingParams(
            max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p
        )
        self.shared_prefix = bool(cfg.train.shared_prefix)
        if self.shared_prefix and not supports_shared_prefix(self.model):
            log.info("this model's cache cannot be expanded: training uses the plain forward (train.shared_prefix off)")
            self.shared_prefix = False
        self.method = cfg.method.name
        self.method_params = dict(self.config_dict["method"].get("params") or {})
        self.k_control = KController(
            self.config_dict["schedule"], cfg.K, cfg.n, cap_at_n=estimators.needs_k_le_n(self.method)
        )
        self.estimator_state = estimators.make_state(self.method, self.method_params)
        self.checkpoint_dir = Path(cfg.checkpoint_dir or Path.cwd() / "checkpoints" / run_key(self.config_dict))
        self.step = 0
        self.eval_history: dict[int, tuple[list[int], list[float]]] = {}
        self.last_eval: dict[str, float] = {}
        self.last_train: dict[str, float] = {}
        # After a resume: the last step already in MLflow, per kind of metric. Train and eval metrics are tracked
        # apart because a kill can land between a step's train metrics and its evaluation.
        self._already_logged_until = {"train": -1, "eval": -1}
        self._updating = False

    # ----------------------------------------------------------------------------------------------------- set-up
    def _start_tracking(self, resumed_run_id: str | None):
        cfg = self.cfg
        if not cfg.tracking.enabled:
            return NullTracker()
        tracker = MlflowTracker(
            default_tracking_uri(cfg.tracking.uri), cfg.tracking.experiment, cfg.tracking.run_name, resumed_run_id
        )
        if resumed_run_id is None:
            tracker.set_tags({**run_tags(cfg), "precision": self.precision, "run_key": self.checkpoint_dir.name})
            tracker.log_params(flatten(self.config_dict))
            tracker.log_params(self.finetune.params())
            tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        else:
            self._already_logged_until = {
                "train": tracker.last_step("train/reward_mean"),
                "eval": tracker.last_step("eval/reward_mean"),
            }
        return tracker

    def _restore(self) -> str | None:
        if not self.cfg.resume:
            return None
        saved = load_checkpoint(self.checkpoint_dir)
        if saved is None:
            log.info("resume=true but no checkpoint in %s: starting a new run", self.checkpoint_dir)
            return None
        restore_model(self.model, saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.k_control.load_state_dict(saved["k_control"])
        if self.estimator_state is not None and saved.get("estimator_state") is not None:
            self.estimator_state.load_state_dict(saved["estimator_state"])
        set_rng_state(saved["rng"])
        self.step = int(saved["step"])
        self.eval_history = saved.get("eval_history", {})
        log.info("resumed from %s at step %d", self.checkpoint_dir, self.step)
        return saved.get("mlflow_run_id")

    def _save(self, tracker) -> None:
        state = {
            "step": self.step,
            "k_control": self.k_control.state_dict(),
            "estimator_state": self.estimator_state.state_dict() if self.estimator_state is not None else None,
            "mlflow_run_id": tracker.run_id,
            "eval_history": self.eval_history,
        }
        path = save_checkpoint(self.checkpoint_dir, self.model, self.optimizer, state)
        log.info("checkpoint at step %d: %s", self.step, path)

    # ------------------------------------------------------------------------------------------------------ loop
    def run(self) -> dict[str, float]:
        resumed_run_id = self._restore()
        tracker = self._start_tracking(resumed_run_id)
        stream = self.bench.train_stream(self.cfg.seed)
        for _ in range(self.step * self.cfg.train.prompts_per_step):  # the same problems a straight run would see
            next(stream)
        status = "FAILED"
        progress = StepProgress(total=self.cfg.steps, start=self.step, quiet=self.cfg.quiet)
        try:
            with progress:
                if self.step == 0:
                    self._evaluate(tracker)
                    progress.update(self.step, self.last_train, self.last_eval)
                while self.step < self.cfg.steps:
                    problems = [next(stream) for _ in range(self.cfg.train.prompts_per_step)]
                    metrics = self.train_step(problems)
                    self.step += 1
                    self.last_train = metrics
                    self._log(tracker, metrics)
                    if self._eval_due():
                        self._evaluate(tracker)
                    if self._save_due():
                        self._save(tracker)
                    progress.update(self.step, self.last_train, self.last_eval)
            final = {**self.last_train, **self.last_eval}
            log_json(tracker, final, "final_metrics.json")
            status = "FINISHED"
            return final
        except KeyboardInterrupt:
            status = "KILLED"
            if not self._updating and self.step > 0:
                self._save(tracker)  # the weights are consistent between updates: keep the finished steps
            log.warning("interrupted at step %d; run marked KILLED (resume=true continues it)", self.step)
            raise
        finally:
            tracker.end(status)
            self.bench.close()

    def _eval_due(self) -> bool:
        every = self.cfg.eval_every
        return self.step == self.cfg.steps or (every > 0 and self.step % every == 0)

    def _save_due(self) -> bool:
        every = self.cfg.save_every
        return self.step == self.cfg.steps or (every > 0 and self.step % every == 0)

    def _log(self, tracker, metrics: dict[str, float], kind: str = "train") -> None:
        if self.step > self._already_logged_until[kind]:  # after a resume, steps already in MLflow are not logged twice
            tracker.log_metrics(metrics, step=self.step)

    def _evaluate(self, tracker) -> None:
        started = time.perf_counter()
        result = evaluate(
            self.backend, self.bench, self.eval_problems, self.cfg.n_eval, self.sampling, self.cfg.get("eval_ks")
        )
        result.metrics["eval/time_s"] = time.perf_counter() - started
        self.last_eval = result.metrics
        self.eval_history[self.step] = (result.ks, result.pass_at)
        self._log(tracker, result.metrics, kind="eval")
        title = f"{self.method} K={self.cfg.K} on {self.cfg.benchmark.name}"
        log_figure_files(
            tracker,
            {
                f"step_{self.step:05d}.csv": curve_csv(result.ks, result.pass_at),
                "passk_curve.png": curve_png(self.eval_history, title),
            },
            "passk_curve",
        )
        log_figure_files(tracker, {f"step_{self.step:05d}.parquet": records_parquet(result.records)}, "eval_records")
        log.info(
            "eval step %d: %s",
            self.step,
            " ".join(f"{k.split('/')[1]}={v:.3f}" for k, v in result.metrics.items() if "pass_at" in k),
        )

    # ------------------------------------------------------------------------------------------------------ step
    def advantages(self, rewards: torch.Tensor, k: int) -> torch.Tensor:
        method = estimators.resolve_method(self.method, k)
        params = self.method_params if method == self.method else {}
        extra = {"state": self.estimator_state} if self.estimator_state is not None and method == self.method else {}
        adv = estimators.compute_advantages(method, rewards, k=k, **params, **extra)
        if self.cfg.regularizer.name == "entropy":
            adv = adv + outcome_entropy_term(rewards, float(self.cfg.regularizer.lam))
        return adv

    def train_step(self, problems: list) -> dict[str, float]:
        cfg = self.cfg
        started = time.perf_counter()
        k = self.k_control.k_at(self.step + 1)
        batch = self.backend.generate([p.prompt for p in problems], cfg.n, self.sampling)
        generated = time.perf_counter()
        flat_problems = [p for p in problems for _ in range(cfg.n)]
        flat_texts = [t for group in batch.texts for t in group]
        rewards = torch.tensor(self.bench.score(flat_problems, flat_texts), dtype=torch.float64).view(len(problems), cfg.n)
        scored = time.perf_counter()
        adv = self.advantages(rewards, k).float()
        p_hat = self.k_control.observe(float(rewards.mean()))
        if self.estimator_state is not None and getattr(self.estimator_state, "p", None) is not None:
            p_hat = float(self.estimator_state.p)
        with training_attention(self.model, self.cfg.train.attention, self.device):
            update = self._update(batch, adv)
        done = time.perf_counter()
        train_metrics, _, _ = pass_at_k_metrics(rewards.numpy(), "train", self.bench.continuous)
        informative = (rewards.max(dim=1).values != rewards.min(dim=1).values).double().mean()
        generated_tokens = int(batch.completion_mask.sum())
        return {
            "train/reward_mean": float(rewards.mean()),
            **train_metrics,
            "train/K": float(k),
            "train/p_hat": p_hat,
            "train/informative_groups": float(informative),
            "train/adv_abs_mean": float(adv.abs().mean()),
            "train/completion_len": float(batch.completion_lengths().float().mean()),
            "train/truncation_rate": float(batch.truncated.double().mean()),
            **update,
            "train/tokens_per_s": generated_tokens / max(done - started, 1e-9),
            "train/step_time_s": done - started,
            "train/generate_s": generated - started,
            "train/score_s": scored - generated,
            "train/update_s": done - scored,
        }

    def _update(self, batch: RolloutBatch, adv: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg.train
        groups = torch.arange(batch.groups)
        if cfg.skip_uninformative and self.ref_model is None:
            groups = groups[(adv != 0).any(dim=1)]
        denominator = batch_denominator(cfg.loss_agg, batch.completion_mask, self.cfg.rollout.max_new_tokens)
        micro_batches = [groups[i : i + cfg.micro_batch_groups] for i in range(0, len(groups), cfg.micro_batch_groups)]
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
                        ref_logprobs[index] = self._logprobs(self.ref_model, tensors, False).logprobs.float()
                with autocast(self.precision, device):
                    stats = self._logprobs(self.model, tensors, with_entropy=inner == 0)
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
                    mask,
                    clip_eps=cfg.clip_eps,
                    agg=cfg.loss_agg,
                    denominator=denominator,
                    ref_logprobs=ref_logprobs.get(index),
                    kl_beta=float(self.cfg.regularizer.get("beta", 0.0)),
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
                self._updating = True
                self.optimizer.step()
                self._updating = False
                self.backend.sync_weights(self.model)
                totals["grad_norm"] = float(grad_norm)
            totals["loss"] = loss_sum
        metrics = {
            "train/loss": totals["loss"],
            "train/grad_norm": totals["grad_norm"],
            "train/clip_fraction": totals["clip"],
            "train/trained_groups": float(len(groups)),
            **self.importance.metrics(),
        }
        if not micro_batches:
            # Nothing trained this step: measure the policy's entropy on a few groups anyway, so the metric is
            # never missing (a no-grad forward, cheap next to the update it replaces).
            sub = batch.select(torch.arange(min(cfg.micro_batch_groups, batch.groups)))
            tensors = [t.to(device) for t in (sub.prompt_ids, sub.prompt_mask, sub.completion_ids, sub.completion_mask)]
            with torch.no_grad(), autocast(self.precision, device):
                stats = self._logprobs(self.model, tensors, with_entropy=True)
            totals["entropy"] = float((stats.entropy.float() * tensors[3]).sum())
            totals["entropy_tokens"] = float(tensors[3].sum())
        if totals["entropy_tokens"]:
            metrics["train/entropy"] = totals["entropy"] / totals["entropy_tokens"]
        if self.ref_model is not None:
            metrics["train/kl"] = totals["kl"]
        return metrics

    def _logprobs(self, model, tensors, with_entropy: bool):
        prompt_ids, prompt_mask, completion_ids, completion_mask = tensors
        context = torch.no_grad() if model is self.ref_model else nullcontext()
        with context:
            return completion_logprobs(
                model,
                prompt_ids,
                prompt_mask,
                completion_ids,
                completion_mask,
                shared_prefix=self.shared_prefix,
                token_chunk=self.cfg.train.token_chunk,
                with_entropy=with_entropy,
                temperature=self.sampling.temperature,  # the sampled distribution (top_p < 1 is refused in config)
            )
