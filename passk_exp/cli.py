"""`python -m passk_exp [group=option ...] [key=value ...]`: compose the config, validate it, train and evaluate.

Bad configuration stops here, before any model loads, with one line naming the key, the value and what is allowed,
and exit status 2. In a multirun the error is raised instead, so the launcher records that job as failed.
"""

from __future__ import annotations

import logging
import os
import sys

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


def train_and_evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate `cfg`, then run the whole job; returns the final metrics (also logged to MLflow)."""
    validate_config(cfg)
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
    except (ConfigError, ValueError, FileNotFoundError) as error:
        if _is_multirun():
            raise
        log.debug("configuration error", exc_info=True)  # the full traceback stays in the job's log file
        print(f"passk-exp: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("passk-exp: interrupted; the run is marked KILLED and resume=true continues it", file=sys.stderr)
        sys.exit(130)
    # The return value is what Hydra's optimizing sweepers maximise: the last eval pass@1.
    return final.get("eval/pass_at_1")


def main() -> None:
    register_sweeps_search_path()  # `+sweep=...` from any working directory (paths.register_sweeps_search_path)
    from hydra_plugins.passk_exp_plan import register_plan_launcher

    register_plan_launcher()  # hydra/launcher=plan: the dry-run planner (passk_exp/plan.py)
    _hydra_main()


if __name__ == "__main__":
    main()
