"""`python -m passk_exp.data gsm8k|math --out DIR`: write the train and test files a full-scale benchmark reads.

DIR gets `train.jsonl` and `test.jsonl`, with the fields conf/benchmark/{gsm8k,math}.yaml expect, so that
`benchmark.path=DIR` (sweeps/full_task/*.yaml: `$PASSK_DATA/<name>`) serves both splits from separate sources:

* gsm8k: openai/gsm8k (config main), train (7,473) and test (1,319); fields question, answer.
* math: train = the MATH train split (EleutherAI/hendrycks_math, its 7 subject configs: 7,500 problems); test =
  MATH-500 (HuggingFaceH4/MATH-500). Fields problem, solution, answer (for MATH train rows the answer is the
  solution's last \\boxed{}), subject, level. MATH-500 is drawn from MATH's test split; train rows whose problem text
  is also in the test file are dropped all the same (counted in the summary line).

Rows come from `datasets` (`pip install datasets`) where the machine reaches the Hugging Face Hub (or has the datasets
in its cache). Where it does not, the command writes nothing and prints one line: run it on a machine that can, and
copy DIR here. What this file leaves out: the benchmarks' own reading and scoring (passk_exp/benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from passk_exp.benchmarks.answers import last_boxed

MATH_SUBJECTS = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory", "prealgebra",
    "precalculus",
)


class HubUnavailable(RuntimeError):
    """`datasets` is missing, or the Hub (and its cache) cannot serve a split."""


def load_split(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Rows of one Hub dataset split through `datasets`; HubUnavailable (one line) when that is not possible."""
    try:
        import datasets
    except ImportError:
        raise HubUnavailable("the `datasets` package is not installed") from None
    try:
        return [dict(row) for row in datasets.load_dataset(dataset, config, split=split)]
    except Exception as error:  # noqa: BLE001 - offline, no cache, gated: all end in the same advice
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise HubUnavailable(f"{dataset} ({config or 'default'}) split {split!r}: {reason}") from None


def _pick(rows: Iterable[dict[str, Any]], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{key: row[key] for key in fields if key in row} for row in rows]


Splits = dict[str, list[dict[str, Any]]]


def gsm8k_splits(load: Callable[..., list[dict]]) -> tuple[Splits, int]:
    """(rows per split, train rows dropped as also in test)."""
    return {split: _pick(load("openai/gsm8k", "main", split), ("question", "answer")) for split in ("train", "test")}, 0


def math_splits(load: Callable[..., list[dict]]) -> tuple[Splits, int]:
    """(rows per split, train rows dropped as also in test)."""
    test = _pick(load("HuggingFaceH4/MATH-500", None, "test"), ("problem", "solution", "answer", "subject", "level"))
    seen = {row["problem"].strip() for row in test}
    train, dropped = [], 0
    for subject in MATH_SUBJECTS:
        for row in load("EleutherAI/hendrycks_math", subject, "train"):
            if row["problem"].strip() in seen:
                dropped += 1
                continue
            answer = last_boxed(row["solution"])
            train.append({
                "problem": row["problem"], "solution": row["solution"],
                **({"answer": answer} if answer is not None else {}),
                "subject": row.get("type", subject), "level": row.get("level"),
            })
    return {"train": train, "test": test}, dropped


BUILDERS = {"gsm8k": gsm8k_splits, "math": math_splits}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def prepare(name: str, out: Path, load: Callable[..., list[dict]] | None = None) -> dict[str, int]:
    """Write out/train.jsonl and out/test.jsonl for benchmark `name`; returns rows per split and the train rows
    dropped as also in test. Nothing is written unless every split loaded."""
    if name not in BUILDERS:
        raise ValueError(f"benchmark {name!r} has no data preparation; choose one of {sorted(BUILDERS)}")
    splits, dropped = BUILDERS[name](load or load_split)  # looked up at call time (tests replace load_split)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(out / f"{split}.jsonl", rows)
    return {**{split: len(rows) for split, rows in splits.items()}, "dropped": dropped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m passk_exp.data", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=sorted(BUILDERS))
    parser.add_argument("--out", required=True, type=Path, help="folder for train.jsonl and test.jsonl")
    args = parser.parse_args(argv)
    try:
        counts = prepare(args.benchmark, args.out)
    except HubUnavailable as error:
        print(
            f"passk-exp data: cannot load {args.benchmark} here ({error}); on a machine with `pip install datasets` "
            f"and Hub access run `python -m passk_exp.data {args.benchmark} --out DIR`, then copy DIR/train.jsonl and "
            f"DIR/test.jsonl to {args.out}/ on this machine",
            file=sys.stderr,
        )
        return 1
    dropped = counts.pop("dropped")
    summary = ", ".join(f"{split} {count}" for split, count in counts.items())
    print(f"passk-exp data: wrote {args.out}/train.jsonl and test.jsonl ({summary} rows; {dropped} train rows dropped "
          f"as also in test); "
          f"use benchmark.path={args.out} (sweeps/full_task/{args.benchmark}.yaml reads $PASSK_DATA/{args.benchmark})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
