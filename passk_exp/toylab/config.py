"""The toy lab's config schema and checks: typed top-level keys (Hydra ConfigStore `toylab_schema`), and the harness's
own group checks (passk_exp.config) for method, schedule and regularizer, so a bad value fails the same way, with the
same one-line ConfigError, in a toy run as in an LLM run. What this file leaves out: running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from passk_exp import config as harness
from passk_exp.config import ConfigError, TrackingConfig

TASKS = ("train", "diagnose")
OPTIMIZERS = ("adam", "sgd")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class ToyTrainConfig:
    prompts_per_step: int = 64
    optimizer: str = "adam"
    lr: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: Optional[float] = None

    def __post_init__(self) -> None:
        _check(self.prompts_per_step >= 1, f"train.prompts_per_step={self.prompts_per_step} must be >= 1")
        _check(self.optimizer in OPTIMIZERS, f"train.optimizer={self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        _check(self.lr > 0, f"train.lr={self.lr} must be > 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"train.betas={self.betas} invalid")
        _check(self.grad_clip is None or self.grad_clip > 0, f"train.grad_clip={self.grad_clip} must be > 0 or null")


@dataclass
class DiagnoseConfig:
    """task=diagnose: every (method entry × K × n × p) of the grid; entries are {method, params}."""

    methods: list[Any] = field(default_factory=list)
    ks: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    ns: list[int] = field(default_factory=lambda: [16, 64])
    ps: list[float] = field(default_factory=lambda: [0.01, 0.1, 0.5, 0.9])
    offsets: list[float] = field(default_factory=list)  # continuous toy: |μ − t| in reward widths
    sigma: float = 0.5
    replicates: int = 20000
    out: Optional[str] = None
    stem: str = "diagnostics"


@dataclass
class ToylabSchema:
    task: str = "train"
    K: int = 1
    n: int = 64
    seed: int = 0
    steps: int = 400
    eval_every: int = 20
    log_every: int = 10
    n_eval: int = 64
    phase: Optional[str] = None
    scale: Optional[str] = None
    train: ToyTrainConfig = field(default_factory=ToyTrainConfig)
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="toylab"))
    method: Any = None
    schedule: Any = None
    regularizer: Any = None
    toylab_population: Any = None

    def __post_init__(self) -> None:
        _check(self.task in TASKS, f"task={self.task!r} is not one of {list(TASKS)}")
        _check(self.K >= 1, f"K={self.K} must be >= 1 (the Pass@K target)")
        _check(self.n >= 1, f"n={self.n} must be >= 1 samples per problem")
        _check(self.steps >= 0, f"steps={self.steps} must be >= 0")
        _check(self.eval_every >= 0, f"eval_every={self.eval_every} must be >= 0 (0 = only at start and end)")
        _check(self.log_every >= 1, f"log_every={self.log_every} must be >= 1 (train metrics every log_every steps)")
        _check(self.n_eval >= 1, f"n_eval={self.n_eval} must be >= 1 (Pass@k is logged for k = 1, 2, 4, ..., n_eval)")


def register_toylab_schema() -> None:
    ConfigStore.instance().store(name="toylab_schema", node=ToylabSchema)


def validate_toylab_config(cfg: DictConfig) -> ToylabSchema:
    """Schema, then the harness's method / schedule / regularizer checks, then the population (built once)."""
    # `+group=option` with no config group of that name is added by Hydra as a plain key (struct mode lets `+` add
    # keys), and the run would silently be a default one: `+toylab=phase1` without sweeps/ on the search path.
    unknown = sorted(set(cfg) - {f.name for f in fields(ToylabSchema)})
    _check(not unknown, f"unknown top-level key(s) {', '.join(f'{k}={cfg[k]}' for k in unknown)}: no config group of "
           "that name on Hydra's search path (toy-lab experiments are sweeps/toylab/*.yaml: +toylab=phase1)")
    try:
        typed = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as error:  # omegaconf's validation errors carry the key and the value
        raise ConfigError(str(error).splitlines()[0]) from None
    harness._validate_schedule(cfg)
    harness._validate_method(cfg)
    harness._validate_regularizer(cfg)
    from passk_exp import estimators
    from passk_exp.toylab.populations import build_population

    population = OmegaConf.to_container(cfg.toylab_population, resolve=True)
    try:
        pop = build_population(population)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error).splitlines()[0]) from None
    if pop.kind == "gaussian" and estimators.is_binary_only(cfg.method.name):
        raise ConfigError(
            f"method={cfg.method.name} takes binary rewards only; toylab_population={population.get('name')} has "
            "continuous rewards: use reinforce, rloo, grpo or pkpo*"
        )
    return typed  # type: ignore[return-value]
