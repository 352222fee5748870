"""The dry-run planner behind `python -m passk_exp -m <sweep> hydra/launcher=plan`: what a sweep would run, and at
what cost, without running any of it.

For every job the launcher (hydra_plugins/passk_exp_plan) hands over the job's overrides and its resolved config;
this module validates the config as a real run would (`validate_config`), estimates its GPU-hours (passk_exp/costs.py),
finds jobs that would compute the same run, and prints one JSON object per job, a table and the totals.

Two jobs are the same run when `run_identity` agrees: the resolved config minus the keys that do not define a run
(checkpoint._NOT_IDENTITY), with the method and K replaced by what the estimator actually computes: its advantages on
a fixed random probe batch at every K the schedule can hand it. So grpo at K = 4 and K = 16, biased_k at K = 1 and
grpo, rloo_k at K = 1 and rloo are each one run, as they are in training. What this file leaves out: composing the
jobs (Hydra's sweeper) and launching anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

import torch

from passk_exp import estimators
from passk_exp.checkpoint import _NOT_IDENTITY
from passk_exp.costs import finetune_mode, job_cost

PROBE_GROUPS = 32


def _schedule_ks(config: Mapping[str, Any]) -> list[int]:
    """Every K the schedule can hand the estimator (capped at n where the method needs K <= n, as KController does)."""
    schedule = config["schedule"]
    if schedule["name"] == "anneal":
        ks = [int(k) for _, k in schedule["milestones"]]
    elif schedule["name"] == "adaptive":
        ks = list(range(int(schedule["k_min"]), int(schedule["k_max"]) + 1))
    else:
        ks = [int(config["K"])]
    if estimators.needs_k_le_n(config["method"]["name"]):
        ks = [min(k, int(config["n"])) for k in ks]
    return sorted(set(ks))


def rewards_are_continuous(benchmark: Mapping[str, Any]) -> bool:
    """The benchmark options that give partial credit (synthetic task=closeness, reasoning_gym binarize=false)."""
    return benchmark.get("task") == "closeness" or benchmark.get("binarize") is False


def _probe(n: int, continuous: bool) -> torch.Tensor:
    """Rewards [groups, n] of the kind the benchmark gives: 0/1 at varied success rates, plus values in [0, 1]."""
    gen = torch.Generator().manual_seed(20261201)
    p = torch.rand(PROBE_GROUPS, 1, generator=gen, dtype=torch.float64)
    binary = (torch.rand(PROBE_GROUPS, n, generator=gen, dtype=torch.float64) < p).to(torch.float64)
    if not continuous:
        return binary
    return torch.cat([binary, torch.rand(PROBE_GROUPS, n, generator=gen, dtype=torch.float64)])


def estimator_fingerprint(config: Mapping[str, Any]) -> str:
    """A hash of the advantages the job's estimator computes at every K its schedule can use, on a fixed probe of the
    rewards its benchmark gives (two estimators that agree there train identically on that benchmark)."""
    name = config["method"]["name"]
    params = dict(config["method"].get("params") or {})
    n = int(config["n"])
    rewards = _probe(n, rewards_are_continuous(config["benchmark"]))
    parts = []
    for k in _schedule_ks(config):
        method = estimators.resolve_method(name, k)
        kwargs = params if method == name else {}
        state = estimators.make_state(method, kwargs)
        extra = {"state": state} if state is not None else {}
        adv = estimators.compute_advantages(method, rewards, k=k, **kwargs, **extra)
        parts.append([round(float(a), 9) + 0.0 for a in adv.flatten()])  # + 0.0: -0.0 and 0.0 hash alike
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def run_identity(config: Mapping[str, Any]) -> str:
    """Equal for two resolved job configs exactly when they compute the same run (see the module docstring)."""
    identity = {key: value for key, value in config.items() if key not in _NOT_IDENTITY and key not in ("method", "K")}
    identity["schedule"] = dict(config["schedule"])
    identity["estimator"] = estimator_fingerprint(config)
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_row(overrides: Sequence[str], config: Mapping[str, Any], error: str | None = None) -> dict[str, Any]:
    """One job's line of the plan: its overrides, resolved config and GPU-hour estimate (null when unknown)."""
    cost = job_cost(config) if error is None else None
    row: dict[str, Any] = {
        "overrides": list(overrides),
        "config": dict(config),
        "gpu_hours": round(cost["gpu_hours"], 4) if cost else None,
    }
    if error is not None:
        row["error"] = error
    return row


def duplicates(rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """{job index: index of the earlier job that is the same run} over the valid rows."""
    first: dict[str, int] = {}
    same: dict[int, int] = {}
    for index, row in enumerate(rows):
        if "error" in row:
            continue
        key = run_identity(row["config"])
        if key in first:
            same[index] = first[key]
        else:
            first[key] = index
    return same


def _short(config: Mapping[str, Any]) -> list[str]:
    return [
        config["model"]["name"], finetune_mode(config), config["benchmark"]["name"], config["method"]["name"],
        f"{config['schedule']['name']}", str(config["K"]), str(config["n"]), str(config["n_eval"]),
        str(config["rollout"]["max_new_tokens"]), str(config["seed"]),
    ]


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table (one line per job) and the totals, as text."""
    header = ["job", "model", "finetune", "benchmark", "method", "schedule", "K", "n", "n_eval", "max_tok", "seed",
              "GPU-h", "note"]
    same = duplicates(rows)
    lines = [header]
    for index, row in enumerate(rows):
        note = row.get("error") or (f"same run as job {same[index]}" if index in same else "")
        hours = "n/a" if row["gpu_hours"] is None else f"{row['gpu_hours']:.2f}"
        lines.append([str(index), *_short(row["config"]), hours, note])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1] for line in lines]
    known = [row["gpu_hours"] for row in rows if row["gpu_hours"] is not None]
    by_model: dict[str, float] = {}
    for row in rows:
        if row["gpu_hours"] is not None:
            name = row["config"]["model"]["name"]
            by_model[name] = by_model.get(name, 0.0) + row["gpu_hours"]
    errors = sum("error" in row for row in rows)
    text.append("")
    text.append(
        f"total: {len(rows)} jobs, {sum(known):.1f} GPU-hours (H200; {len(rows) - len(known)} without an estimate), "
        f"{len(same)} duplicate runs, {errors} invalid"
    )
    text.append("by model: " + ", ".join(f"{name} {hours:.1f} GPU-h" for name, hours in sorted(by_model.items())))
    text.append("cost model: passk_exp/costs.py (every completion counted at max_new_tokens: an upper bound)")
    return "\n".join(text)
