"""Page faults and time of a step-shaped tensor workload with and without keep_freed_memory:
`python bench/allocator.py [--runs 6] [--steps 6] [--json PATH]`.

Each run is a fresh child process (the malloc settings are process-wide), alternating default and kept, so both see
the same machine load. A step makes a 4.5 MiB input, a 32 MiB hidden activation and a product of both, then frees
them, as an RL step's activations do. Per step: minor page faults (getrusage) and wall time. Reported: steps 3 and
later (the first ones grow the heap), median and range over runs. This measures the kernel as much as the setting:
figures move with kernel version and load, which is why tests (tests/test_allocator_on_cpu.py) check only the
settings, never these numbers. What it leaves out: a real model step (bench/step.py measures that).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[3])
    import torch
    from passk_exp.allocator import keep_freed_memory
    torch.set_num_threads(1)
    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    torch.manual_seed(0)
    weight = torch.randn(576, 4096)
    faults, seconds = [], []
    for _ in range(int(sys.argv[2])):
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        x = torch.randn(2048, 576)
        hidden = (x @ weight).relu_()
        (hidden @ weight.T * x).sum()
        del x, hidden
        seconds.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"applied": applied, "faults": faults, "seconds": seconds}))
    """
)


def one_run(mode: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(steps), str(REPO)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="child processes per mode (alternating)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    later = slice(2, None)  # steps 3 and later: the heap has grown by then
    collected: dict[str, dict[str, list[float]]] = {mode: {"faults": [], "ms": []} for mode in ("default", "keep")}
    for _ in range(args.runs):
        for mode in ("default", "keep"):
            run = one_run(mode, args.steps)
            collected[mode]["faults"] += run["faults"][later]
            collected[mode]["ms"] += [1000 * s for s in run["seconds"][later]]
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "glibc": platform.libc_ver()[1]},
        "runs": args.runs, "steps": args.steps,
        **{mode: {key: summary(values) for key, values in data.items()} for mode, data in collected.items()},
    }
    print(f"{'mode':8} {'faults/step median [min, max]':32} {'ms/step median [min, max]'}")
    for mode in ("default", "keep"):
        f, t = result[mode]["faults"], result[mode]["ms"]
        print(f"{mode:8} {f['median']:>8.0f} [{f['min']:.0f}, {f['max']:.0f}]{'':12} "
              f"{t['median']:.1f} [{t['min']:.1f}, {t['max']:.1f}]")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
