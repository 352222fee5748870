"""Adds passk-exp's `sweeps/` tree (study phases, launchers, toy-lab experiments) to Hydra's config search path,
so `+sweep=phase1` and `hydra/launcher=...` resolve from any working directory after any install."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class PasskExpSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from passk_exp.paths import sweeps_dir

        search_path.append(provider="passk-exp-sweeps", path=f"file://{sweeps_dir()}")
