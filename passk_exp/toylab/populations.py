"""Build a toy population from its config group (`conf/toylab_population/*.yaml`) and name it for tracking.

The group's `kind` picks the toy (tabular: binary rewards; gaussian: continuous rewards); the other keys are that
toy's `build` arguments. The population has its own `seed`, independent of the run's seed, so every method in a sweep
trains on the same problems and only the sampling noise changes with the run seed. What this file leaves out: the
toys themselves (tabular.py, gaussian.py).
"""

from __future__ import annotations

from typing import Any, Mapping

from passk_exp.keys import refuse_unknown_keys
from passk_exp.toylab.gaussian import GaussianPopulation
from passk_exp.toylab.tabular import TabularPopulation

BUILDERS = {
    "tabular": (TabularPopulation, {"problems", "answers", "share", "correct", "spread", "seed"}),
    "gaussian": (GaussianPopulation, {"problems", "offset", "sigma", "seed"}),
}


def build_population(config: Mapping[str, Any]) -> TabularPopulation | GaussianPopulation:
    """config: {name, kind, <build args>} → a fresh population (float64 parameters, not yet a leaf that needs grad)."""
    spec = dict(config)
    spec.pop("name", None)
    kind = spec.pop("kind", None)
    if kind not in BUILDERS:
        raise ValueError(f"toylab_population.kind={kind!r} is not one of {sorted(BUILDERS)}")
    cls, allowed = BUILDERS[kind]
    refuse_unknown_keys(f"toylab_population (kind={kind})", spec, allowed)
    return cls.build(**spec)


def model_tag(config: Mapping[str, Any]) -> str:
    """The `model` tag of a toy run: toylab-tabular-share<s> or toylab-gaussian (what plays the policy)."""
    if config.get("kind") == "tabular":
        return f"toylab-tabular-share{config.get('share', 1)}"
    return f"toylab-{config.get('kind')}"


def benchmark_tag(config: Mapping[str, Any]) -> str:
    """The `benchmark` tag of a toy run: toylab-<population name> (which problems)."""
    return f"toylab-{config.get('name', config.get('kind'))}"
