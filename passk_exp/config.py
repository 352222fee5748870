"""The run configuration: a structured schema for Hydra, and the checks that stop a bad run before any model loads.

The schema (registered in Hydra's ConfigStore as `passk_schema`) types the top-level keys, `train` and `tracking`, so
a typo or a wrongly typed value fails when Hydra composes. The groups whose valid contents are defined by registries
(`method`, `model`, `benchmark`) are checked by `validate_config` against those registries: the registry stays the
single source of valid choices. Every check raises `ConfigError` with one line: the key, the value, what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from passk_exp.keys import refuse_unknown_keys

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
LOSS_AGGREGATIONS = ("constant", "token_mean", "seq_mean", "token_sum")  # loss.py reads this list
TRAIN_ATTENTION = ("auto", "eager", "sdpa")  # auto: eager on CPU (faster backward), the model's own elsewhere
SCHEDULE_KEYS = {"fixed": set(), "anneal": {"milestones"}, "adaptive": {"k_min", "k_max", "p_target", "decay"}}
REGULARIZER_KEYS = {"none": set(), "entropy": {"lam"}, "kl": {"beta"}}
ROLLOUT_KEYS = {
    "hf": {"max_new_tokens", "temperature", "top_p", "batch_size", "cache"},
    "vllm": {"max_new_tokens", "temperature", "top_p", "gpu_memory_utilization", "max_model_len", "sleep", "is_cap"},
}
# rollout.cache of the hf backend: transformers' growing KV cache, a preallocated static one, or a static one with the
# decoding step compiled (torch.compile "reduce-overhead": CUDA graphs; CUDA only).
HF_CACHES = ("dynamic", "static", "static_compiled")


class ConfigError(ValueError):
    """A configuration value that cannot run; the message names the key, the value and what is allowed."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class TrainConfig:
    prompts_per_step: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    micro_batch_groups: int = 2
    inner_updates: int = 1
    clip_eps: float = 0.2
    clip_eps_high: Optional[float] = None  # DAPO clip-higher: ratio clipped to [1 - clip_eps, 1 + clip_eps_high]
    overlong_filter: bool = False  # DAPO: completions that hit max_new_tokens are masked out of the loss
    dynamic_sampling_max_rounds: int = 0  # DAPO-style: regenerate zero-variance groups up to this many times a step
    loss_agg: str = "constant"
    shared_prefix: bool = True
    token_chunk: int = 2048
    skip_uninformative: bool = True
    attention: str = "auto"

    def __post_init__(self) -> None:
        _check(self.prompts_per_step >= 1, f"train.prompts_per_step={self.prompts_per_step} must be >= 1")
        _check(self.lr > 0 and math.isfinite(self.lr), f"train.lr={self.lr} must be a positive number")
        _check(self.weight_decay >= 0, f"train.weight_decay={self.weight_decay} must be >= 0")
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"train.betas={list(self.betas)} must be two numbers in [0, 1)",
        )
        _check(self.grad_clip > 0, f"train.grad_clip={self.grad_clip} must be > 0")
        _check(self.micro_batch_groups >= 1, f"train.micro_batch_groups={self.micro_batch_groups} must be >= 1")
        _check(self.inner_updates >= 1, f"train.inner_updates={self.inner_updates} must be >= 1")
        _check(0 < self.clip_eps < 1, f"train.clip_eps={self.clip_eps} must be in (0, 1)")
        _check(
            self.clip_eps_high is None or self.clip_eps_high > 0,
            f"train.clip_eps_high={self.clip_eps_high} must be > 0, or null for the symmetric clip_eps",
        )
        _check(
            self.dynamic_sampling_max_rounds >= 0,
            f"train.dynamic_sampling_max_rounds={self.dynamic_sampling_max_rounds} must be >= 0 (0 = off)",
        )
        _check(
            self.loss_agg in LOSS_AGGREGATIONS,
            f"train.loss_agg={self.loss_agg!r} is not one of {list(LOSS_AGGREGATIONS)}",
        )
        _check(self.token_chunk >= 1, f"train.token_chunk={self.token_chunk} must be >= 1")
        _check(
            self.attention in TRAIN_ATTENTION,
            f"train.attention={self.attention!r} is not one of {list(TRAIN_ATTENTION)}",
        )


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None
    experiment: str = "passk-exp"
    run_name: Optional[str] = None


DISTRIBUTED_STRATEGIES = ("auto", "ddp", "fsdp")  # auto: FSDP2 when the training state would crowd one GPU, else DDP
DISTRIBUTED_BACKENDS = ("auto", "nccl", "gloo")  # auto: NCCL on GPUs, gloo on CPU


@dataclass
class DistributedConfig:
    """Used only when a launcher starts several processes (torchrun, srun); see passk_exp/distributed/."""

    strategy: str = "auto"
    backend: str = "auto"
    timeout_min: float = 30.0

    def __post_init__(self) -> None:
        _check(
            self.strategy in DISTRIBUTED_STRATEGIES,
            f"distributed.strategy={self.strategy!r} is not one of {list(DISTRIBUTED_STRATEGIES)}",
        )
        _check(
            self.backend in DISTRIBUTED_BACKENDS,
            f"distributed.backend={self.backend!r} is not one of {list(DISTRIBUTED_BACKENDS)}",
        )
        _check(self.timeout_min > 0, f"distributed.timeout_min={self.timeout_min} must be > 0 minutes")


@dataclass
class PasskSchema:
    """Top-level keys of conf/config.yaml. Group contents (`method`, `model`, ...) are checked by `validate_config`."""

    K: int = 1
    n: int = 16
    seed: int = 0
    steps: int = 30
    precision: str = "auto"
    device: str = "auto"
    keep_freed_memory: bool = True
    eval_every: int = 10
    n_eval: int = 16
    eval_ks: Optional[list[int]] = None
    save_every: int = 10
    resume: bool = False
    checkpoint_dir: Optional[str] = None
    quiet: bool = False
    phase: Optional[str] = None
    scale: Optional[str] = None
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    method: Any = None
    schedule: Any = None
    regularizer: Any = None
    model: Any = None
    finetune: Any = None
    benchmark: Any = None
    rollout: Any = None

    def __post_init__(self) -> None:
        _check(self.K >= 1, f"K={self.K} must be >= 1 (the Pass@K target)")
        _check(self.n >= 1, f"n={self.n} must be >= 1 samples per prompt")
        _check(self.steps >= 0, f"steps={self.steps} must be >= 0")
        _check(self.precision in PRECISIONS, f"precision={self.precision!r} is not one of {list(PRECISIONS)}")
        _check(self.device in DEVICES, f"device={self.device!r} is not one of {list(DEVICES)}")
        _check(self.eval_every >= 0, f"eval_every={self.eval_every} must be >= 0 (0 = only at start and end)")
        _check(self.n_eval >= 1, f"n_eval={self.n_eval} must be >= 1 samples per eval problem")
        if self.eval_ks is not None:
            ks = list(self.eval_ks)
            _check(bool(ks), "eval_ks=[] is empty; list k values in 1..n_eval, or null for 1, 2, 4, ..., n_eval")
            bad = [k for k in ks if not 1 <= k <= self.n_eval]
            _check(not bad, f"eval_ks={ks}: k={bad[0] if bad else ''} is not in 1..n_eval={self.n_eval}")
        _check(self.save_every >= 0, f"save_every={self.save_every} must be >= 0 (0 = only at the end)")


def register_schema() -> None:
    ConfigStore.instance().store(name="passk_schema", node=PasskSchema)


def _keys(node: Any, where: str) -> dict[str, Any]:
    _check(isinstance(node, (dict, DictConfig)), f"{where} must be a mapping, got {node!r}")
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def _check_no_unknown_keys(cfg: DictConfig) -> None:
    """Top level, `train`, `tracking` and `benchmark`; the other groups are checked by their own validators."""
    from passk_exp.benchmarks import BENCHMARKS, benchmark_class
    from passk_exp.benchmarks.base import option_keys

    # `+eval_evry=0` (Hydra's own hint for a typo) adds the key in struct mode: refused here
    refuse_unknown_keys("config", set(cfg) - {"hydra"}, {f.name for f in fields(PasskSchema)}, ConfigError)
    refuse_unknown_keys("train", cfg.train, {f.name for f in fields(TrainConfig)}, ConfigError)
    refuse_unknown_keys("tracking", cfg.tracking, {f.name for f in fields(TrackingConfig)}, ConfigError)
    name = cfg.benchmark.get("name") if isinstance(cfg.benchmark, DictConfig) else None
    _check(name in BENCHMARKS, f"benchmark={name!r} is not one of {list(BENCHMARKS)}")
    allowed = set(option_keys(benchmark_class(name).Options)) | {"name"}
    refuse_unknown_keys(f"benchmark={name}", cfg.benchmark, allowed, ConfigError)


def max_k(cfg: DictConfig) -> int:
    """The largest K the schedule can hand to the estimator."""
    schedule = cfg.schedule
    if schedule.name == "anneal":
        return max(int(k) for _, k in schedule.milestones)
    if schedule.name == "adaptive":
        return int(schedule.k_max)
    return int(cfg.K)


def _validate_schedule(cfg: DictConfig) -> None:
    schedule = _keys(cfg.schedule, "schedule")
    name = schedule.get("name")
    _check(name in SCHEDULE_KEYS, f"schedule={name!r} is not one of {sorted(SCHEDULE_KEYS)}")
    refuse_unknown_keys(f"schedule={name}", schedule, SCHEDULE_KEYS[name] | {"name"}, ConfigError)
    if name == "anneal":
        milestones = schedule.get("milestones") or []
        _check(
            bool(milestones) and all(len(m) == 2 and m[0] >= 0 and m[1] >= 1 for m in milestones),
            f"schedule.milestones={milestones} must be a non-empty list of [start_step >= 0, k >= 1]",
        )
        starts = [m[0] for m in milestones]
        _check(starts[0] == 0, f"schedule.milestones must start at step 0, got {starts[0]}")
        _check(starts == sorted(set(starts)), f"schedule.milestones start steps {starts} must increase strictly")
    if name == "adaptive":
        _check(schedule["k_min"] >= 1, f"schedule.k_min={schedule['k_min']} must be >= 1")
        _check(
            schedule["k_min"] <= schedule["k_max"],
            f"schedule.k_min={schedule['k_min']} > schedule.k_max={schedule['k_max']}: k_min must be <= k_max",
        )
        _check(schedule["p_target"] > 0, f"schedule.p_target={schedule['p_target']} must be > 0")
        _check(0 <= schedule["decay"] < 1, f"schedule.decay={schedule['decay']} must be in [0, 1)")


def _validate_method(cfg: DictConfig) -> None:
    import torch

    from passk_exp import estimators

    method = _keys(cfg.method, "method")
    name = method.get("name")
    _check(
        name in estimators.REGISTRY,
        f"method={name!r} is not a registered estimator; choose one of {sorted(estimators.REGISTRY)}",
    )
    refuse_unknown_keys(f"method={name}", method, {"name", "params"}, ConfigError)
    params = dict(method.get("params") or {})
    allowed = estimators.method_params(name)
    unknown = sorted(set(params) - set(allowed))
    _check(not unknown, f"method={name}: unknown param(s) {unknown}; {name} takes {sorted(allowed)}")
    k = max_k(cfg)
    if estimators.needs_k_le_n(name) and cfg.schedule.name != "adaptive":
        _check(
            k <= cfg.n,
            f"K={k} > n={cfg.n} samples per prompt: method={name} needs K <= n; raise n or lower K",
        )
    # A dry run on a dummy batch catches every remaining estimator-level error (bad param values, n < 2 for
    # leave-one-out methods) with the estimator's own message, before a model is loaded.
    dummy = torch.zeros(1, cfg.n, dtype=torch.float64)
    dummy[0, 0] = 1.0
    k_dry = min(k, cfg.n) if estimators.needs_k_le_n(name) else k
    estimators.compute_advantages(
        estimators.resolve_method(name, k_dry), dummy, k=k_dry, **_dry_run_params(name, k_dry, params)
    )


def _dry_run_params(name: str, k: int, params: dict[str, Any]) -> dict[str, Any]:
    from passk_exp import estimators

    resolved = estimators.resolve_method(name, k)
    if resolved == name:
        return params
    allowed = estimators.method_params(resolved)
    return {key: value for key, value in params.items() if key in allowed}


def _validate_regularizer(cfg: DictConfig) -> None:
    reg = _keys(cfg.regularizer, "regularizer")
    name = reg.get("name")
    _check(name in REGULARIZER_KEYS, f"regularizer={name!r} is not one of {sorted(REGULARIZER_KEYS)}")
    refuse_unknown_keys(f"regularizer={name}", reg, REGULARIZER_KEYS[name] | {"name"}, ConfigError)
    if name == "entropy":
        _check(reg["lam"] >= 0, f"regularizer.lam={reg['lam']} must be >= 0")
    if name == "kl":
        _check(reg["beta"] >= 0, f"regularizer.beta={reg['beta']} must be >= 0")


def _validate_rollout(cfg: DictConfig) -> None:
    rollout = _keys(cfg.rollout, "rollout")
    backend = rollout.get("backend")
    _check(backend in ROLLOUT_KEYS, f"rollout={backend!r} is not one of {sorted(ROLLOUT_KEYS)}")
    refuse_unknown_keys(f"rollout={backend}", set(rollout) - {"backend"}, ROLLOUT_KEYS[backend], ConfigError)
    _check(rollout["max_new_tokens"] >= 1, f"rollout.max_new_tokens={rollout['max_new_tokens']} must be >= 1")
    _check(rollout["temperature"] > 0, f"rollout.temperature={rollout['temperature']} must be > 0")
    _check(0 < rollout["top_p"] <= 1, f"rollout.top_p={rollout['top_p']} must be in (0, 1]")
    # The update's log-probs are of softmax(logits / T) over the whole vocabulary (logprobs.py): renormalising over the
    # nucleus would need the sampler's exact nucleus, which a recomputed forward cannot promise at its boundary.
    _check(
        rollout["top_p"] == 1 or cfg.steps == 0,
        f"rollout.top_p={rollout['top_p']} < 1 cannot train (the update's log-probs ignore the nucleus); "
        "set rollout.top_p=1, or steps=0 to only evaluate",
    )
    if backend == "hf":
        _check(rollout["batch_size"] >= 1, f"rollout.batch_size={rollout['batch_size']} must be >= 1")
        cache = rollout.get("cache", "dynamic")
        _check(cache in HF_CACHES, f"rollout.cache={cache!r} is not one of {list(HF_CACHES)}")
        _check(
            cache != "static_compiled" or cfg.device != "cpu",
            "rollout.cache=static_compiled compiles CUDA graphs and needs device=cuda; use rollout.cache=static on CPU",
        )
    if backend == "vllm":
        _check(
            0 < rollout["gpu_memory_utilization"] <= 1,
            f"rollout.gpu_memory_utilization={rollout['gpu_memory_utilization']} must be in (0, 1]",
        )
        max_len = rollout.get("max_model_len")
        _check(
            max_len is None or max_len > rollout["max_new_tokens"],
            f"rollout.max_model_len={max_len} must exceed rollout.max_new_tokens={rollout['max_new_tokens']} "
            "(prompt + completion), or be null for the model's own limit",
        )
        cap = rollout.get("is_cap")
        _check(
            cap is None or (isinstance(cap, (int, float)) and 0 < cap < math.inf),
            f"rollout.is_cap={cap} must be a positive number, or null to turn the importance correction off",
        )


def validate_config(cfg: DictConfig) -> PasskSchema:
    """Check everything that can be checked without loading a model; raise ConfigError on the first problem."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        _check_no_unknown_keys(cfg)
        typed = OmegaConf.to_object(cfg)
        _validate_schedule(cfg)
        _validate_method(cfg)
        _validate_regularizer(cfg)
        _validate_rollout(cfg)
        from passk_exp.models import validate_model_config

        validate_model_config(cfg.model)
        from passk_exp.finetune import parse_finetune

        parse_finetune(cfg.get("finetune"))
    except ConfigError:
        raise
    except OmegaConfBaseException as error:  # its first line has the value; the key is in full_key
        key = getattr(error, "full_key", None)
        raise ConfigError(f"{key}: {str(error).splitlines()[0]}" if key else str(error).splitlines()[0]) from None
    except ValueError as error:  # the registries' own one-line checks (model, estimator dry run)
        raise ConfigError(str(error)) from None
    return typed
