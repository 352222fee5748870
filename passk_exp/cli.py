"""`python -m passk_exp [group=option ...] [key=value ...]`: compose the config, validate it, train and evaluate.

Bad configuration (a `ConfigError` from validation or the preflight checks) stops here, before any model loads, with
one line naming the key, the value and what is allowed, and exit status 2. Any other exception is a failure of the run
itself: its traceback goes to stderr and to the job's log file, exit status 1. In a multirun both are raised instead,
so the launcher records that job as failed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import hydra
from omegaconf import DictConfig, OmegaConf

from passk_exp.config import ConfigError, register_schema, validate_config
from passk_exp.paths import conf_dir, register_sweeps_search_path

log = logging.getLogger("passk_exp")
register_schema()


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _configure_threads() -> None:
    # submitit_local starts every job of a sweep at once: each job gets the share of cores its launcher granted.
    threads = os.environ.get("PASSK_EXP_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _log_to_files(message: str) -> None:
    """`message` and the current traceback into the job's log file only (the console gets it once, on stderr)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def train_and_evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate `cfg`, then run the whole job; returns the final metrics (also logged to MLflow)."""
    validate_config(cfg)
    from passk_exp.preflight import preflight

    preflight(cfg)  # the tracking store, the checkpoint directory, a hub model's files: seconds, not minutes
    from passk_exp.trainer import Trainer

    log.info("resolved config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.quiet:  # transformers' own bars (weight loading) would otherwise fill job logs
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    return Trainer(cfg).run()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    _configure_threads()
    try:
        final = train_and_evaluate(cfg)
    except ConfigError as error:
        if _is_multirun():
            raise
        print(f"passk-exp: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:  # the trainer's message says what was kept; none: no run had started
        print(f"passk-exp: {str(interrupt) or 'interrupted before the run started: no MLflow run, no checkpoint'}",
              file=sys.stderr)
        sys.exit(130)
    except Exception:
        _log_to_files("the run failed")
        if _is_multirun():
            raise
        traceback.print_exc()
        sys.exit(1)
    # The return value is what Hydra's optimizing sweepers maximise: the last eval pass@1.
    return final.get("eval/pass_at_1")


def main() -> None:
    register_sweeps_search_path()  # `+sweep=...` from any working directory (paths.register_sweeps_search_path)
    from hydra_plugins.passk_exp_plan import register_plan_launcher

    register_plan_launcher()  # hydra/launcher=plan: the dry-run planner (passk_exp/plan.py)
    _hydra_main()


if __name__ == "__main__":
    main()
