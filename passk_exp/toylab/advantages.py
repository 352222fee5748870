"""The advantage call exactly as the LLM trainer makes it, so toy runs and LLM runs feed the estimators the same way.

`compute_advantages` is the only estimator code (passk_exp.estimators); this file adds the harness's plumbing around it:
resolve the method at this K (pkpo_loo_minus_one at K = 1 is rloo, docs/methods.md §6), pass the method's params and its
p̂ state only to the method they belong to, and add the outcome-entropy regularizer term (passk_exp.regularizers)
when `regularizer=entropy`. It mirrors `passk_exp.trainer.Trainer.advantages`; what it leaves out: everything else.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from passk_exp import estimators
from passk_exp.regularizers import outcome_entropy_term


def toy_advantages(
    method: str,
    rewards: Tensor,
    k: int,
    params: Mapping[str, Any] | None = None,
    state: Any = None,
    entropy_lam: float | None = None,
) -> Tensor:
    """rewards [B, n] → advantages [B, n] (docs/methods.md §0), as the trainer computes them for `method` at this K."""
    resolved = estimators.resolve_method(method, k)
    same = resolved == method
    extra = {"state": state} if state is not None and same else {}
    adv = estimators.compute_advantages(resolved, rewards, k=k, **(dict(params or {}) if same else {}), **extra)
    if entropy_lam is not None:
        adv = adv + outcome_entropy_term(rewards, float(entropy_lam))
    return adv
