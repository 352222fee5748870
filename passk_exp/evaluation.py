"""Held-out evaluation: n_eval samples per problem, unbiased Pass@k (k = `eval_ks`, default 1, 2, 4, ..., n_eval), the
per-problem records it is computed from, and its artifacts.

The estimator math is `passk_exp.metrics`, the records table `passk_exp.eval_records`; this module only samples,
scores, names the metrics and draws the curve. A sample counts as correct when its reward is 1 (exactly, up to float
noise); for continuous-reward benchmarks the unbiased max@k of the raw rewards is logged beside it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

import pyarrow as pa

from passk_exp.benchmarks.base import Benchmark
from passk_exp.eval_records import CORRECT_THRESHOLD, eval_records, pass_at_k_of_records
from passk_exp.metrics import max_at_k, pass_at_k_curve
from passk_exp.rollout.base import SamplingParams


def k_grid(n: int) -> list[int]:
    """1, 2, 4, ... up to n, with n itself included when it is not a power of two."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else ks + [n]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    ks: list[int]
    pass_at: list[float]
    rewards: np.ndarray  # [P, n_eval]
    records: pa.Table  # one row per problem (eval_records.SCHEMA): the table `pass_at` is computed from


def max_at_k_metrics(rewards: np.ndarray, prefix: str, ks: Sequence[int]) -> dict[str, float]:
    return {f"{prefix}/max_at_{k}": float(np.mean(max_at_k(rewards, k))) for k in ks}


def pass_at_k_metrics(rewards: np.ndarray, prefix: str, continuous: bool) -> tuple[dict[str, float], list[int], list[float]]:
    """rewards [P, n] -> {f"{prefix}/pass_at_{k}": ...} (and max_at_k when continuous), plus the curve."""
    ks = k_grid(rewards.shape[1])
    curve = [float(v) for v in pass_at_k_curve(rewards >= CORRECT_THRESHOLD, ks)]
    metrics = {f"{prefix}/pass_at_{k}": v for k, v in zip(ks, curve)}
    if continuous:
        metrics.update(max_at_k_metrics(rewards, prefix, ks))
    return metrics, ks, curve


def extracts_final_answers(bench: Benchmark) -> bool:
    """True when the benchmark overrides `Benchmark.final_answer` (the base hook extracts nothing)."""
    return type(bench).final_answer is not Benchmark.final_answer


def score_groups(bench, problems: Sequence, batch) -> np.ndarray:
    """Rewards [len(problems), n] (float64) of a rollout batch's completions, group g scored against problems[g]."""
    flat_problems = [p for p in problems for _ in range(batch.n)]
    flat_texts = [text for group in batch.texts for text in group]
    return np.asarray(bench.score(flat_problems, flat_texts), dtype=np.float64).reshape(len(problems), batch.n)


def evaluate(
    backend, bench, problems: Sequence, n_eval: int, sampling: SamplingParams, ks: Sequence[int] | None = None
) -> EvalResult:
    """Sample n_eval completions per problem, score them, and log Pass@k for `ks` (None: k_grid(n_eval)) computed
    from the per-problem records (so the records artifact reproduces the metrics exactly)."""
    ks = sorted(set(ks)) if ks else k_grid(n_eval)
    batch = backend.generate([p.prompt for p in problems], n_eval, sampling)
    rewards = score_groups(bench, problems, batch)
    answers = None
    if extracts_final_answers(bench):
        answers = [[bench.final_answer(p, text) for text in group] for p, group in zip(problems, batch.texts)]
    records = eval_records(
        [p.id for p in problems], rewards, batch.completion_lengths().numpy(), batch.truncated.numpy(), answers
    )
    curve = pass_at_k_of_records(records, ks)
    metrics = {f"eval/pass_at_{k}": v for k, v in zip(ks, curve)}
    if bench.continuous:
        metrics.update(max_at_k_metrics(rewards, "eval", ks))
    metrics["eval/reward_mean"] = float(rewards.mean())
    metrics["eval/completion_len"] = float(batch.completion_lengths().float().mean())
    metrics["eval/truncation_rate"] = float(batch.truncated.double().mean())
    return EvalResult(metrics=metrics, ks=ks, pass_at=curve, rewards=rewards, records=records)


def curve_csv(ks: Sequence[int], pass_at: Sequence[float]) -> str:
    return "k,pass_at_k\n" + "".join(f"{k},{v:.6f}\n" for k, v in zip(ks, pass_at))


def curve_png(history: dict[int, tuple[Sequence[int], Sequence[float]]], title: str) -> bytes:
    """One line per eval step (Pass@k against k on a log2 axis), so the PNG shows how the curve moved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    for step, (ks, values) in sorted(history.items()):
        ax.plot(ks, values, marker="o", label=f"step {step}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (unbiased)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
