"""Which K the estimator gets at each step: the stateful plumbing around the pure `passk_exp.schedules` functions.

It keeps p_t, the EMA (decay 0.9 by default) of the training mean reward that the adaptive schedule reads and that
the harness logs as `train/p_hat`, and it saves/restores that state with a checkpoint.
"""

from __future__ import annotations

from typing import Any, Mapping

from passk_exp import schedules


class KController:
    def __init__(self, schedule: Mapping[str, Any], K: int, n: int, cap_at_n: bool) -> None:
        self.schedule = dict(schedule)
        self.K = K
        self.n = n
        self.cap_at_n = cap_at_n
        self.decay = float(self.schedule.get("decay", 0.9))
        self.p_ema: float | None = None

    def k_at(self, step: int) -> int:
        """K for the update that produces step `step` (1-based)."""
        name = self.schedule["name"]
        if name == "fixed":
            return int(schedules.fixed(self.K))
        if name == "anneal":
            milestones = [(int(start), int(k)) for start, k in self.schedule["milestones"]]
            return int(schedules.anneal_k(step - 1, milestones))
        if name == "adaptive":
            return int(
                schedules.adaptive_k(
                    self.p_ema if self.p_ema is not None else 0.0,
                    int(self.schedule["k_min"]),
                    int(self.schedule["k_max"]),
                    float(self.schedule["p_target"]),
                    n=self.n if self.cap_at_n else None,
                )
            )
        raise ValueError(f"schedule={name!r} is not one of ['adaptive', 'anneal', 'fixed']")

    def observe(self, mean_reward: float) -> float:
        """Feed the step's mean training reward; returns the updated p_t (the first call initialises it)."""
        if self.p_ema is None:
            self.p_ema = float(mean_reward)
        else:
            self.p_ema = self.decay * self.p_ema + (1.0 - self.decay) * float(mean_reward)
        return self.p_ema

    def state_dict(self) -> dict[str, Any]:
        return {"p_ema": self.p_ema}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.p_ema = state.get("p_ema")
