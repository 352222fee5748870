"""`synthetic`: seeded integer-arithmetic problems ("What is 3 + 5?"), with a binary or a continuous reward.

The default job of the project (issue 5): addition of two single-digit numbers, system prompt "Answer briefly.", chat
messages, reward 1 when the last number in the completion equals the answer. Knobs: `ops` (operation set), `digits`
(operand size) and `terms` (operands per problem) set the difficulty. `task=closeness` keeps the same problems but
gives partial credit, exp(-|guess - answer| / scale) (1 for the exact answer, 0 without a number), so PKPO's
continuous max@k path runs end to end. The eval set is `eval_size` distinct problems fixed by `seed`; training problems
are generated fresh forever from the rest of the task's problems (an eval question is drawn again), and a task left
with fewer than `MIN_TRAIN_PROBLEMS` distinct training problems is refused (`allow_overlap` lifts both).
Verification is a regex and an exact comparison, so it runs inline (no worker pool); `workers` is accepted and unused.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence

from passk_exp.benchmarks.answers import canonical_answer, last_number, to_fraction
from passk_exp.benchmarks.base import MIN_TRAIN_PROBLEMS, Benchmark, Problem, PromptOptions, Record, normalise_question
from passk_exp.benchmarks.scoring import VerifierPool

TASKS = ("arithmetic", "closeness")
OPS = ("+", "-", "*")
TRAIN_POOL = 1000  # size of the fixed problems("train") list (few-shot examples come from it; training streams fresh)


@dataclass(frozen=True)
class SyntheticOptions(PromptOptions):
    """task: arithmetic (binary reward) | closeness (partial credit). ops: subset of + - *. digits: digits per operand.
    terms: operands per problem. scale: closeness decay (reward exp(-|error| / scale)). eval_size: held-out problems."""

    system_prompt: Optional[str] = "Answer briefly."
    eval_size: Optional[int] = 40  # as conf/benchmark/synthetic.yaml; 100 would leave no addition problem to train on
    task: str = "arithmetic"
    ops: Sequence[str] = field(default_factory=lambda: ["+"])
    digits: int = 1
    terms: int = 2
    scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"benchmark=synthetic: task={self.task!r} is not one of {list(TASKS)}")
        if not self.ops or any(op not in OPS for op in self.ops):
            raise ValueError(f"benchmark=synthetic: ops={list(self.ops)} must be a non-empty subset of {list(OPS)}")
        if not 1 <= self.digits <= 18:
            raise ValueError(f"benchmark=synthetic: digits={self.digits} must be in 1..18")
        if self.terms < 2:
            raise ValueError(f"benchmark=synthetic: terms={self.terms} must be >= 2")
        if not self.scale > 0:
            raise ValueError(f"benchmark=synthetic: scale={self.scale} must be > 0")
        if self.eval_size is None:
            raise ValueError("benchmark=synthetic: eval_size must be a number (the generated eval set has no end)")


def make_problem(rng: random.Random, options: SyntheticOptions) -> tuple[str, int]:
    """One (expression, value) pair; operands are uniform over numbers with exactly `digits` digits (0-9 for 1)."""
    low = 0 if options.digits == 1 else 10 ** (options.digits - 1)
    high = 10**options.digits - 1
    operands = [rng.randint(low, high) for _ in range(options.terms)]
    ops = [rng.choice(list(options.ops)) for _ in range(options.terms - 1)]
    expression = " ".join([str(operands[0])] + [f"{op} {x}" for op, x in zip(ops, operands[1:])])
    return expression, _evaluate(operands, ops)


def distinct_problems(options: SyntheticOptions) -> int:
    """How many different questions the task has: operand values ** terms * operators ** (terms - 1)."""
    values = 10 if options.digits == 1 else 9 * 10 ** (options.digits - 1)
    return values**options.terms * len(set(options.ops)) ** (options.terms - 1)


def _evaluate(operands: list[int], ops: list[str]) -> int:
    """Usual precedence: products first, then sums and differences left to right."""
    terms, signs = [operands[0]], [1]
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            terms[-1] *= x
        else:
            terms.append(x)
            signs.append(1 if op == "+" else -1)
    return sum(s * t for s, t in zip(signs, terms))


def exact(answer: int, completion: str) -> float:
    """1.0 when the last number in the completion equals the answer ("8", "8.0", "= 8." all count), else 0.0."""
    guess = last_number(completion)
    return float(guess is not None and to_fraction(guess) == answer)


def closeness(answer: int, completion: str, scale: float) -> float:
    """exp(-|guess - answer| / scale) in (0, 1] for the last number in the completion; 0 when it holds none."""
    guess = last_number(completion)
    value = to_fraction(guess) if guess is not None else None
    if value is None:
        return 0.0
    return math.exp(-float(abs(value - answer)) / scale)


class Synthetic(Benchmark):
    name = "synthetic"
    Options = SyntheticOptions

    def __init__(self, options: SyntheticOptions) -> None:
        super().__init__(options)
        self.continuous = options.task == "closeness"
        self._inline = VerifierPool(self.name, workers=0, item_timeout_s=1.0)
        total = distinct_problems(options)
        task = f"digits={options.digits}, ops={list(options.ops)}, terms={options.terms}"
        if options.eval_size > total:
            raise ValueError(
                f"benchmark=synthetic: eval_size={options.eval_size} exceeds the {total} distinct problems of {task}; "
                "lower eval_size or raise digits/terms"
            )
        if not options.allow_overlap and total - options.eval_size < MIN_TRAIN_PROBLEMS:
            raise ValueError(
                f"benchmark=synthetic: {task} has {total} distinct problems; holding out eval_size={options.eval_size} "
                f"leaves {total - options.eval_size} distinct training problems, fewer than the minimum "
                f"{MIN_TRAIN_PROBLEMS}; raise digits or terms, add ops, or lower eval_size"
            )

    def _record(self, rng: random.Random, split: str, index: int) -> Record:
        expression, value = make_problem(rng, self.options)
        return Record(
            id=f"synthetic/{split}/{index}",
            question=f"What is {expression}?",
            answer=value,
            demo=str(value),
            meta={"expression": expression},
        )

    def _records(self, split: str) -> list[Record]:
        """"test": the first `eval_size` distinct problems of its seeded draw; "train": TRAIN_POOL draws."""
        rng = random.Random(f"synthetic-{split}-{self.options.seed}")
        if split != "test":
            return [self._record(rng, split, i) for i in range(TRAIN_POOL)]
        records: dict[str, Record] = {}
        while len(records) < self.options.eval_size:  # ends: eval_size <= distinct_problems (checked in __init__)
            record = self._record(rng, split, len(records))
            records.setdefault(normalise_question(record.question), record)
        return list(records.values())

    def _train_records(self, seed: int) -> Iterator[Record]:
        """Fresh problems forever, reproducible from `seed`, never an eval question (unless allow_overlap)."""
        held_out = set() if self.options.allow_overlap else self.eval_questions()
        rng = random.Random(f"synthetic-stream-{seed}")
        index = 0
        while True:
            record = self._record(rng, "stream", index)
            if normalise_question(record.question) not in held_out:
                yield record
                index += 1

    def _drawable_train_records(self, seed: int, draws: int) -> Iterable[Record]:
        """The first `draws` problems of the stream (the run's steps * prompts_per_step)."""
        return itertools.islice(self._train_records(seed), draws)

    def final_answer(self, problem: Problem, completion: str) -> Optional[str]:
        """The last number, as both rewards read it."""
        guess = last_number(completion)
        return canonical_answer(guess) if guess is not None else None

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        self._check_batch(problems, completions)
        labels = [p.id for p in problems]
        if self.continuous:
            items = [(p.answer, text, self.options.scale) for p, text in zip(problems, completions)]
            return self._inline.map(closeness, items, labels)
        return self._inline.map(exact, [(p.answer, text) for p, text in zip(problems, completions)], labels)
