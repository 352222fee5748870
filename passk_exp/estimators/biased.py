"""biased_k: plug-in Pass@K reweighting A = K(1 − p̂)^{K−1}·A^base (N's "Pass@K-GRPO" = Mahdavi et al.; U Eq. 29).

It is biased because p̂ is a plug-in estimate, and it accepts K > n, which is its point (U §7.1). p̂ is the row's mean
reward ('group'), or one scalar kept across steps by a BiasedKState ('ema' with decay 0.9, 'global' running
successes / samples); the state lives in that small object, is passed as `state=`, and saves/restores with a checkpoint,
so the math stays a pure function of (rewards, p̂). What this file leaves out: the unbiased K-estimators (direct.py).
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Mapping, Sequence

import torch
from torch import Tensor

from passk_exp.estimators.baselines import grpo_normalised, rloo
from passk_exp.estimators.registry import register

_DEFAULT_STD_DDOF, _DEFAULT_EPS = 0, 1e-6


class BiasedKState:
    """Running p̂ for biased_k with p_hat='ema' or 'global' (docs/methods.md §5). Python floats; state_dict() pickles.

    ema: p ← decay·p + (1 − decay)·mean(all rewards of the batch); the first batch initialises p to its mean, and the
    value after the update is the one used. With `prompt_ids`, each id also keeps its own EMA, fed by the mean of its
    rows, and that per-id value is used (UNCONFIRMED which scope N intends; the batch-level one is the default).
    global: p = cumulative reward sum / cumulative number of samples, this batch included.
    `p` is always the batch-level value (what the trainer logs as train/p_hat).
    """

    def __init__(self, p_hat: str, decay: float = 0.9) -> None:
        if p_hat not in ("ema", "global"):
            raise ValueError(f"BiasedKState p_hat={p_hat!r} is not one of ['ema', 'global']")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"BiasedKState decay={decay!r} must be in [0, 1)")
        self.p_hat = p_hat
        self.decay = float(decay)
        self.p: float | None = None
        self.successes = 0.0
        self.samples = 0
        self.p_by_id: dict[Hashable, float] = {}

    def _ema(self, old: float | None, value: float) -> float:
        return value if old is None else self.decay * old + (1.0 - self.decay) * value

    def update(self, rewards: Tensor, prompt_ids: Sequence[Hashable] | None = None) -> Tensor:
        """Feed one batch [B, n]; returns p̂ as [B, 1] float64 on the rewards' device (one value per row)."""
        batch = rewards.detach().to(torch.float64)
        if self.p_hat == "global":
            self.successes += float(batch.sum())
            self.samples += batch.numel()
            self.p = self.successes / self.samples
        else:
            self.p = self._ema(self.p, float(batch.mean()))
        if prompt_ids is None:
            return torch.full((rewards.shape[0], 1), self.p, dtype=torch.float64, device=rewards.device)
        if self.p_hat != "ema":
            raise ValueError(f"prompt_ids= is only used with p_hat='ema'; this state is p_hat={self.p_hat!r}")
        ids = list(prompt_ids)
        if len(ids) != rewards.shape[0]:
            raise ValueError(f"prompt_ids has {len(ids)} entries but rewards has B={rewards.shape[0]} rows")
        row_means = batch.mean(dim=-1).tolist()
        grouped: dict[Hashable, list[float]] = {}
        for pid, m in zip(ids, row_means):  # book-keeping over prompt ids, not math: a loop over B is fine here
            grouped.setdefault(pid, []).append(m)
        for pid, ms in grouped.items():
            self.p_by_id[pid] = self._ema(self.p_by_id.get(pid), sum(ms) / len(ms))
        values = [self.p_by_id[pid] for pid in ids]
        return torch.tensor(values, dtype=torch.float64, device=rewards.device).unsqueeze(-1)

    def __repr__(self) -> str:
        return f"BiasedKState(p_hat={self.p_hat!r}, p={self.p!r})"

    def state_dict(self) -> dict[str, Any]:
        return {
            "p_hat": self.p_hat,
            "decay": self.decay,
            "p": self.p,
            "successes": self.successes,
            "samples": self.samples,
            "p_by_id": dict(self.p_by_id),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("p_hat", self.p_hat) != self.p_hat:
            raise ValueError(f"checkpoint state is p_hat={state['p_hat']!r} but this run uses p_hat={self.p_hat!r}")
        self.decay = float(state.get("decay", self.decay))
        self.p = state.get("p")
        self.successes = float(state.get("successes", 0.0))
        self.samples = int(state.get("samples", 0))
        self.p_by_id = dict(state.get("p_by_id", {}))


def plug_in_weight(p_hat: Tensor, k: int, k_factor: bool) -> Tensor:
    """α = K·(1 − p̂)^{K−1} via log α = ln K + (K−1)·log1p(−p̂) (N), ln K dropped when k_factor is False.

    p̂ is clipped to [0, 1]; K = 1 gives α = 1 exactly (never 0·(−∞)); p̂ = 1 with K > 1 gives α = 0.
    """
    p = p_hat.clamp(0.0, 1.0)
    if k == 1:
        return torch.ones_like(p)
    log_alpha = (k - 1) * torch.log1p(-p) + (math.log(k) if k_factor else 0.0)
    return torch.exp(log_alpha)


def _make_state(params: dict[str, Any]) -> BiasedKState | None:
    return BiasedKState(params["p_hat"]) if params["p_hat"] in ("ema", "global") else None


@register("biased_k", rewards="unit", needs_k_le_n=False, make_state=_make_state)
def biased_k(
    rewards: Tensor,
    k: int,
    *,
    k_factor: bool = True,
    base: str = "grpo",
    p_hat: str = "group",
    std_ddof: int = _DEFAULT_STD_DDOF,
    eps: float = _DEFAULT_EPS,
    state: BiasedKState | None = None,
    prompt_ids: Sequence[Hashable] | None = None,
) -> Tensor:
    """A = K(1 − p̂)^{K−1}·A^base, base = grpo (N, default) or rloo (U Eq. 29). [B, n] rewards in [0, 1] → [B, n].

    Surrogates (population limit, p̂ = group): base grpo → K·B(p; ½, K−½) = grpo_k's (U §7.1, App. C.1); base rloo →
    Pass@K itself (plug-in). K = 2 with k_factor=False and base grpo is exactly skew_r. With p_hat 'ema' / 'global' one
    α multiplies every prompt, so it acts as a step-size schedule, not a per-prompt reweighting. Without `state=`,
    'ema' / 'global' use a fresh BiasedKState, i.e. the batch mean (what the first call of a run sees).
    """
    if base == "rloo" and (std_ddof != _DEFAULT_STD_DDOF or eps != _DEFAULT_EPS):
        raise ValueError(f"method='biased_k': std_ddof={std_ddof!r} / eps={eps!r} only apply to base='grpo'")
    if base == "rloo" and rewards.shape[-1] < 2:
        raise ValueError(f"n={rewards.shape[-1]} samples per prompt: biased_k with base='rloo' needs n >= 2; raise n")
    if p_hat == "group":
        if state is not None or prompt_ids is not None:
            raise ValueError("method='biased_k': state= and prompt_ids= are only used with p_hat='ema' or 'global'")
        estimate = rewards.mean(dim=-1, keepdim=True)
    else:
        if state is None:
            state = BiasedKState(p_hat)
        if not isinstance(state, BiasedKState) or state.p_hat != p_hat:
            raise ValueError(
                f"method='biased_k': state={state!r} must be a BiasedKState with p_hat={p_hat!r} "
                "(build it with estimators.make_state)"
            )
        estimate = state.update(rewards, prompt_ids).to(rewards.dtype)
    a_base = grpo_normalised(rewards, std_ddof, eps)[0] if base == "grpo" else rloo(rewards, k)
    return a_base.mul_(plug_in_weight(estimate, k, k_factor))
