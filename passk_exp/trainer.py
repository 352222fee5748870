"""The RL loop: sample → verify → advantages → policy-gradient update, with evaluation, checkpoints and tracking.

One step: B prompts from the benchmark's train stream, n completions each (rollout backend), rewards [B, n] from the
benchmark's verifier, advantages from the estimator registry with K from the schedule (plus the advantage-level
regularizer), then a token-level clipped policy-gradient loss (plus β·KL to the reference policy), accumulated over
micro-batches of groups, AdamW with gradient clipping. Groups whose advantages are all exactly zero contribute no
gradient, so their forward/backward is skipped. That update is policy_update.py's; the math lives in estimators/,
metrics.py, loss.py; this file is plumbing, and it deliberately knows nothing of Hydra (it takes a resolved config) so
tests and benches can drive it.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from passk_exp import estimators
from passk_exp.allocator import keep_freed_memory
from passk_exp.benchmarks import load_benchmark
from passk_exp.checkpoint import (
    CHECKPOINT_FILE, load_checkpoint, rng_state, run_key, run_label, set_rng_state,
)
from passk_exp.config import ConfigError
from passk_exp.dapo import resample_zero_variance
from passk_exp.distributed import Distributed
from passk_exp.eval_records import records_parquet
from passk_exp.evaluation import curve_csv, curve_png, evaluate, pass_at_k_metrics, score_groups
from passk_exp.finetune import apply_finetune
from passk_exp.importance import ImportanceCorrection
from passk_exp.k_control import KController
from passk_exp.logprobs import supports_shared_prefix, training_attention
from passk_exp.models import load_policy
from passk_exp.policy_update import PolicyUpdate
from passk_exp.precision import resolve_precision, store_frozen_linears_in_bf16
from passk_exp.progress import StepProgress
from passk_exp.regularizers import outcome_entropy_term
from passk_exp.rollout import make_backend
from passk_exp.rollout.base import RolloutBatch, SamplingParams
from passk_exp.run_dirs import RunDir, checkpoint_root, open_run_dir
from passk_exp.tracking import MlflowTracker, NullTracker, default_tracking_uri, flatten, log_figure_files, log_json

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
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
    if cfg.benchmark.get("allow_unconfined"):  # HumanEval may score without the sandbox's namespaces
        tags["sandbox"] = "unconfined_allowed"
    if cfg.benchmark.get("allow_overlap"):
        tags["allow_overlap"] = "true"
    return tags


class Trainer:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.config_dict: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.dist = Distributed.from_config(cfg, self.device)  # one process: no process group, every hook a no-op
        # The run's checkpoint directory and the benchmark first: both must fail before a model is loaded. Rank 0
        # picks (and locks) the directory; the other ranks follow its choice and never lock or write it.
        root = checkpoint_root(cfg.checkpoint_dir)
        key = run_key(self.config_dict)
        main_dir = open_run_dir(root, key, cfg.resume, cfg.steps) if self.dist.is_main else None
        chosen = self.dist.from_main(lambda: (main_dir.path, main_dir.key, main_dir.resumed))
        self.run_dir = main_dir if main_dir is not None else RunDir(*chosen)
        try:
            self.bench = load_benchmark(**self.config_dict["benchmark"])
            self.eval_problems = self.bench.problems("test")
            # Measured, not assumed: also stops a run without a separate train source before the model loads.
            self.train_eval_overlap = self.bench.train_eval_overlap(cfg.seed, cfg.steps * cfg.train.prompts_per_step)
        except ValueError as error:  # a missing, malformed or single-file dataset: the benchmark's own one-line message
            raise ConfigError(str(error)) from None
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
        importance = ImportanceCorrection(self.config_dict["rollout"].get("is_cap"))  # vLLM's sampler mismatch
        self.sampling = SamplingParams(
            max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p
        )
        shared_prefix = bool(cfg.train.shared_prefix)
        if shared_prefix and not supports_shared_prefix(self.model):
            log.info("this model's cache cannot be expanded: training uses the plain forward (train.shared_prefix off)")
            shared_prefix = False
        self.method = cfg.method.name
        self.method_params = dict(self.config_dict["method"].get("params") or {})
        self.k_control = KController(
            self.config_dict["schedule"], cfg.K, cfg.n, cap_at_n=estimators.needs_k_le_n(self.method)
        )
        self.estimator_state = estimators.make_state(self.method, self.method_params)
        # Many processes (passk_exp/distributed/): DDP or FSDP2 around the update, FSDP sampling with whole weights.
        self.optimizer = self.dist.wrap(self.model, self.optimizer, self.precision, cfg.seed)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.backend = self.dist.sampling_backend(self.backend)
        # Built last: it must hold the final model, the wrapped optimizer, the trainable list after wrapping and the
        # sampling backend the new weights go to.
        self.update = PolicyUpdate(
            model=self.model,
            ref_model=self.ref_model,
            finetune=self.finetune,
            optimizer=self.optimizer,
            trainable=self.trainable,
            dist=self.dist,
            backend=self.backend,
            importance=importance,
            precision=self.precision,
            device=self.device,
            shared_prefix=shared_prefix,
            train_cfg=cfg.train,
            kl_beta=float(cfg.regularizer.get("beta", 0.0)),
            max_new_tokens=cfg.rollout.max_new_tokens,
            temperature=self.sampling.temperature,
        )
        self.checkpoint_dir: Path = self.run_dir.path
        self.step = 0
        self.eval_history: dict[int, tuple[list[int], list[float]]] = {}
        self.last_eval: dict[str, float] = {}
        self.last_train: dict[str, float] = {}
        # After a resume: the last step already in MLflow, per kind of metric. Train and eval metrics are tracked
        # apart because a kill can land between a step's train metrics and its evaluation.
        self._already_logged_until = {"train": -1, "eval": -1}
        self._clean: dict[str, Any] = {}  # RNG, K and estimator state where the last clean point left them
        self._eval_pending = False  # a Ctrl-C landed in the evaluation of self.step: resume redoes it

    @property
    def shared_prefix(self) -> bool:
        """Whether the update's forward shares each group's prompt (train.shared_prefix, off where the model's cache
        cannot be expanded)."""
        return self.update.shared_prefix

    # ----------------------------------------------------------------------------------------------------- set-up
    def _start_tracking(self, resumed_run_id: str | None):
        cfg = self.cfg
        if not cfg.tracking.enabled or not self.dist.is_main:  # only rank 0 talks to MLflow
            return NullTracker()
        run_name = cfg.tracking.run_name or run_label(self.config_dict)
        uri = default_tracking_uri(cfg.tracking.uri)
        tracker = MlflowTracker(uri, cfg.tracking.experiment, run_name, resumed_run_id)
        if resumed_run_id is None:
            tags = {"run_key": self.run_dir.key, "checkpoint_dir": str(self.checkpoint_dir)}
            tracker.set_tags({**run_tags(cfg), "precision": self.precision, **tags})
            tracker.log_params({**flatten(self.config_dict), **self.dist.params()})
            tracker.log_params(self.finetune.params())
            tracker.log_params({"train_eval_overlap": str(self.train_eval_overlap)})
            tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        else:
            self._already_logged_until = {
                "train": tracker.last_step("train/reward_mean"),
                "eval": tracker.last_step("eval/reward_mean"),
            }
        return tracker

    def _restore(self) -> str | None:
        if not self.run_dir.resumed:
            return None
        saved = load_checkpoint(self.checkpoint_dir)
        rng = self.dist.restore(self.model, self.optimizer, saved)  # weights, optimizer; this rank's RNG state
        self.k_control.load_state_dict(saved["k_control"])
        if self.estimator_state is not None and saved.get("estimator_state") is not None:
            self.estimator_state.load_state_dict(saved["estimator_state"])
        set_rng_state(rng)
        self.step = int(saved["step"])
        self.eval_history = saved.get("eval_history", {})
        self._eval_pending = bool(saved.get("eval_pending", False))
        log.info(
            "resumed from %s at step %d: continuing MLflow run %s%s", self.checkpoint_dir, self.step,
            saved.get("mlflow_run_id"), " (redoing the evaluation a Ctrl-C interrupted)" if self._eval_pending else "",
        )
        return saved.get("mlflow_run_id")

    def _mark_clean(self, eval_pending: bool = False) -> None:
        """A point a resumed run can start from: what a Ctrl-C before the next one saves (weights and the optimizer
        do not change until the next optimizer step, which `update.updating` marks)."""
        estimator = self.estimator_state.state_dict() if self.estimator_state is not None else None
        self._clean = {
            "rng": rng_state(),
            "k_control": copy.deepcopy(self.k_control.state_dict()),
            "estimator_state": copy.deepcopy(estimator),
        }
        self._eval_pending = eval_pending

    def _save(self, tracker) -> None:
        self._mark_clean()
        self._save_clean(tracker)

    def _save_clean(self, tracker) -> None:
        state = {
            "step": self.step,
            **self._clean,
            "mlflow_run_id": tracker.run_id,
            "eval_history": self.eval_history,
            "eval_pending": self._eval_pending,
            "run_key": self.run_dir.key,
        }
        if self.dist.is_main:  # rank 0 owns the run directory (its lock and run.json) and writes the checkpoint
            self.run_dir.claim()
        path = self.dist.save_checkpoint(self.checkpoint_dir, self.model, self.optimizer, state)
        if self.dist.is_main:
            self.run_dir.record(self.step, self.cfg.steps, tracker.run_id)
        log.info("checkpoint at step %d: %s", self.step, path)

    # ------------------------------------------------------------------------------------------------------ loop
    def run(self) -> dict[str, float]:
        resumed_run_id = self._restore()
        tracker = self._start_tracking(resumed_run_id)
        stream = self.bench.train_stream(self.cfg.seed)
        for _ in range(self.step * self.cfg.train.prompts_per_step):  # the same problems a straight run would see
            next(stream)
        status = "FAILED"
        progress = StepProgress(total=self.cfg.steps, start=self.step, quiet=self.cfg.quiet or not self.dist.is_main)
        try:
            with progress:
                if self._eval_pending or not self.run_dir.resumed:  # a resumed run has its step-0 eval
                    self._mark_clean(eval_pending=True)
                    self._evaluate(tracker)
                    progress.update(self.step, self.last_train, self.last_eval)
                while self.step < self.cfg.steps:
                    self._mark_clean()
                    problems = [next(stream) for _ in range(self.cfg.train.prompts_per_step)]
                    metrics = self.train_step(problems)
                    self.step += 1
                    self.update.updating = False
                    self.last_train = metrics
                    self._log(tracker, metrics)
                    if self._eval_due():
                        self._mark_clean(eval_pending=True)
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
            raise KeyboardInterrupt(self._interrupted(tracker)) from None
        finally:
            tracker.end(status)
            self.bench.close()
            self.run_dir.release()
            self.dist.close()
            if self.dist.is_main:
                log.info("results (%s): %s", status, self.where(tracker))

    def where(self, tracker) -> str:
        """One line: where this run's results are."""
        if isinstance(tracker, MlflowTracker):
            tracked = f"MLflow run {tracker.run_id} in experiment {self.cfg.tracking.experiment!r} at {tracker.uri}"
        else:
            tracked = "tracking off"
        saved = self.checkpoint_dir if self.checkpoint_dir.joinpath(CHECKPOINT_FILE).exists() else "none saved"
        return f"{tracked}; checkpoint {saved}"

    def _interrupted(self, tracker) -> str:
        """Save what resumes exactly, and say what happened (the message of the re-raised KeyboardInterrupt)."""
        run = f"MLflow run {tracker.run_id} marked KILLED" if tracker.run_id else "tracking off"
        if self.update.updating:  # weights changed, step not counted: neither state is whole, keep the previous save
            saved = self.checkpoint_dir.joinpath(CHECKPOINT_FILE).exists()
            kept = f"the checkpoint in {self.checkpoint_dir} is kept" if saved else "no checkpoint was saved yet"
            message = f"interrupted during the update of step {self.step + 1}; {run}; {kept}"
        else:
            self._save_clean(tracker)
            redo = " (its interrupted evaluation is redone)" if self._eval_pending else ""
            resume = f"resume=true continues it from {self.checkpoint_dir}{redo}"
            message = f"interrupted at step {self.step}; {run}; {resume}"
        log.warning(message)
        return message

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
            self.dist.sharded(self.backend),  # many processes: each samples its block, every rank gets the whole batch
            self.bench,
            self.eval_problems,
            self.cfg.n_eval,
            self.sampling,
            self.cfg.get("eval_ks"),
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
        problems = self.dist.shard(problems)  # this rank's block of whole groups
        batch = self.backend.generate([p.prompt for p in problems], cfg.n, self.sampling)
        generated = time.perf_counter()
        rewards = self._score(problems, batch)
        resampled = {}
        if cfg.train.dynamic_sampling_max_rounds:  # DAPO-style: regenerate groups that carry no signal (dapo.py)
            batch, rewards, count = resample_zero_variance(
                batch, rewards, self._regenerate(problems), cfg.train.dynamic_sampling_max_rounds
            )
            resampled = {"train/resampled_groups": self.dist.sum(float(count))}
        rewards = self.dist.gather_groups(rewards)  # [B, n] of every rank: advantages see whole groups
        scored = time.perf_counter()
        adv = self.advantages(rewards, k).float()
        p_hat = self.k_control.observe(float(rewards.mean()))
        if self.estimator_state is not None and getattr(self.estimator_state, "p", None) is not None:
            p_hat = float(self.estimator_state.p)
        with training_attention(self.model, self.cfg.train.attention, self.device):
            update = self.update(batch, self.dist.own_groups(adv))
        batch = self.dist.gather_batch(batch)  # the metrics below describe every rank's groups
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
            **resampled,
            **update,
            "train/tokens_per_s": generated_tokens / max(done - started, 1e-9),
            "train/step_time_s": done - started,
            "train/generate_s": generated - started,
            "train/score_s": scored - generated,
            "train/update_s": done - scored,
        }

    def _score(self, problems: list, batch: RolloutBatch) -> torch.Tensor:
        """Rewards [len(problems), n] (float64) of the batch's completions."""
        return torch.from_numpy(score_groups(self.bench, problems, batch))

    def _regenerate(self, problems: list):
        """group indices -> (fresh completions for those problems, their rewards): dynamic sampling's callback."""

        def generate_and_score(index: list[int]) -> tuple[RolloutBatch, torch.Tensor]:
            chosen = [problems[i] for i in index]
            batch = self.backend.generate([p.prompt for p in chosen], self.cfg.n, self.sampling)
            return batch, self._score(chosen, batch)

        return generate_and_score
