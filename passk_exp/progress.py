"""A one-line progress bar for the RL loop (rich): step, training reward and the last eval pass@1 / pass@n.

Off with `quiet=true` or when stdout is not a terminal (SLURM logs, CI), where the per-eval log lines say enough.
"""

from __future__ import annotations

import sys
from typing import Mapping


class StepProgress:
    def __init__(self, total: int, start: int = 0, quiet: bool = False) -> None:
        self.enabled = not quiet and sys.stdout.isatty()
        self.total = total
        self.start = start
        self._progress = None
        self._task = None

    def __enter__(self) -> "StepProgress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]step"),
                MofNCompleteColumn(),
                BarColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[summary]}"),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total, completed=self.start, summary="")
        return self

    def update(self, step: int, train: Mapping[str, float], evaluation: Mapping[str, float]) -> None:
        if self._progress is None:
            return
        parts = []
        if "train/reward_mean" in train:
            parts.append(f"reward {train['train/reward_mean']:.3f}")
        pass_keys = sorted((k for k in evaluation if k.startswith("eval/pass_at_")), key=lambda k: int(k.rsplit("_", 1)[1]))
        if pass_keys:
            parts.append(f"eval pass@1 {evaluation[pass_keys[0]]:.3f}")
            last = pass_keys[-1]
            parts.append(f"pass@{last.rsplit('_', 1)[1]} {evaluation[last]:.3f}")
        self._progress.update(self._task, completed=step, summary=" | ".join(parts))

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
