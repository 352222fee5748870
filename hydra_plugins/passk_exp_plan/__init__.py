"""`hydra/launcher=plan`: a Hydra launcher that runs no job. For each job of the sweep it composes the config the job
would get, validates it as a real run would, and prints one JSON line {"overrides", "config", "gpu_hours"}; then a
table and the totals (passk_exp/plan.py). A job that fails validation gets an "error" key and the command exits 2.
Hydra's sweeper still writes the sweep directory's multirun.yaml, as for any multirun."""

import copy
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


# A plain mapping rather than a dataclass: a sweep's own launcher settings (hydra.launcher.mem_gb, partition, ...) then
# merge into it instead of failing the composition; the plan ignores them.
ConfigStore.instance().store(
    group="hydra/launcher", name="plan", node={"_target_": "hydra_plugins.passk_exp_plan.PlanLauncher"},
    provider="passk-exp",
)


class PlanLauncher(Launcher):
    def __init__(self, **ignored: Any) -> None:  # the sweep's launcher settings (mem_gb, partition, ...)
        super().__init__()
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.rows: List[Dict[str, Any]] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def _job_config(self, overrides: Sequence[str], index: int) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with read_write(sweep_config.hydra), open_dict(sweep_config):
            sweep_config.hydra.job.id = index
            sweep_config.hydra.job.num = index
            # The job directory run_job would create (sweep.dir/subdir), so ${hydra:runtime.output_dir} resolves.
            sweep_config.hydra.runtime.output_dir = os.path.join(
                str(sweep_config.hydra.sweep.dir), str(sweep_config.hydra.sweep.subdir)
            )
        HydraConfig.instance().set_config(sweep_config)
        job = copy.deepcopy(sweep_config)
        with read_write(job), open_dict(job):
            del job["hydra"]
        return job

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from passk_exp.config import ConfigError, validate_config
        from passk_exp.plan import plan_row, render

        returns = []
        for offset, overrides in enumerate(job_overrides):
            job = self._job_config(overrides, initial_job_idx + offset)
            error = None
            try:
                validate_config(job)
            except (ConfigError, ValueError, FileNotFoundError) as exc:
                error = str(exc)
            resolved = OmegaConf.to_container(job, resolve=True)
            row = plan_row(overrides, resolved, error)
            self.rows.append(row)
            print(json.dumps(row, default=str), flush=True)
            returns.append(JobReturn(overrides=list(overrides), cfg=job, status=JobStatus.COMPLETED, _return_value=row))
        print(render(self.rows), flush=True)
        invalid = [i for i, row in enumerate(self.rows) if "error" in row]
        if invalid:
            print(f"passk-exp plan: {len(invalid)} job(s) fail validation, e.g. job {invalid[0]}: "
                  f"{self.rows[invalid[0]]['error']}", file=sys.stderr)
            sys.exit(2)
        return returns


def register_plan_launcher() -> None:
    """Register the launcher with Hydra by hand (Hydra's plugin scan misses hydra_plugins.* under an editable install;
    see passk_exp.paths.register_sweeps_search_path). Registering twice is a no-op."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(PlanLauncher)
