"""The benchmark interface: `Problem`, the `Benchmark` base class, and the option checks every benchmark shares.

A benchmark turns its source (a generator, a file, a package's problem set) into `Problem`s whose prompt is already
formatted (chat messages or plain text, see `prompts.py`), and scores completions against them with a verifier. The
option keys a benchmark accepts are the fields of its `Options` dataclass, so `load_benchmark(name, **options)` can
reject a typo with the allowed keys before any model loads. Scoring machinery (process pool, crash isolation) lives in
`scoring.py`; this file leaves out everything specific to one benchmark.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator, Optional, Sequence

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
# The fewest distinct training problems a generated task may be left with once its eval problems are taken out. The
# default job draws steps * prompts_per_step = 30 * 4 = 120 training prompts: with at least 50 distinct problems each
# comes back under 2.5 times on average, so the run learns the task, not a handful of answers; and single-digit
# addition (100 problems) can still hold out up to half of its problems.
MIN_TRAIN_PROBLEMS = 50
_SPACE_AT_PUNCTUATION = re.compile(r"\s*([^\w\s])\s*")


def normalise_question(text: str) -> str:
    """The form in which two questions count as the same problem: Unicode NFKC, case-folded, whitespace runs as one
    space, none around punctuation or operators ("What is 3+5?" == "what is 3 + 5 ?"). Words and numbers stay apart."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return _SPACE_AT_PUNCTUATION.sub(r"\1", text)


@dataclass(frozen=True)
class Problem:
    """One task instance. `prompt` is plain text (completion style) or chat messages [{"role", "content"}]."""

    id: str
    prompt: str | list[dict[str, str]]
    answer: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """A problem before prompt formatting: the question text, the reference answer and a worked answer for few-shot."""

    id: str
    question: str
    answer: Any
    demo: str  # what a few-shot example shows as the assistant's reply
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptOptions:
    """Keys every benchmark takes. Prompt formatting is configuration, never code (see `prompts.format_prompt`).

    chat: True gives chat messages (the rollout layer applies the tokenizer's template), False plain text.
    system_prompt: a system message (chat) or a leading paragraph (plain text); None for none.
    prompt_template: how a question is shown; must contain "{question}".
    few_shot: number of worked examples before the question, taken from the train split (never the problem itself).
    eval_size: number of held-out problems in problems("test") (None = the benchmark's whole test set).
    seed: fixes generated problems, the eval subset and few-shot picks.
    workers: verifier processes for the expensive verifiers (0 = verify inline in the caller).
    allow_overlap: let training see the eval problems (one file for both splits, no exclusion), with a warning and
        the run tag `allow_overlap`; for smoke tests only, never for a reported result.
    """

    chat: bool = True
    system_prompt: Optional[str] = None
    prompt_template: str = "{question}"
    few_shot: int = 0
    eval_size: Optional[int] = None
    seed: int = 0
    workers: int = 2
    allow_overlap: bool = False

    def __post_init__(self) -> None:
        if "{question}" not in self.prompt_template:
            raise ValueError(f"prompt_template={self.prompt_template!r} must contain '{{question}}'")
        if self.few_shot < 0:
            raise ValueError(f"few_shot={self.few_shot} must be >= 0")
        if self.eval_size is not None and self.eval_size < 1:
            raise ValueError(f"eval_size={self.eval_size} must be >= 1 (or null for the whole test set)")
        if self.workers < 0:
            raise ValueError(f"workers={self.workers} must be >= 0 (0 = verify inline)")


def option_keys(options_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(options_cls)]


def build_options(benchmark: str, options_cls: type, options: dict[str, Any]) -> Any:
    """Check option keys against the benchmark's `Options` fields, then construct (which checks values)."""
    allowed = option_keys(options_cls)
    for key in options:
        if key not in allowed:
            raise ValueError(f"benchmark={benchmark}: unknown option {key!r}; allowed: {sorted(allowed)}")
    return options_cls(**{key: _plain(value) for key, value in options.items()})


def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain lists/dicts, so options hash, pickle and compare like ordinary values."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a core dependency
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class Benchmark(ABC):
    """A set of verifiable problems plus their verifier. Subclasses set `name`, `Options`, and implement
    `_records(split)` (fixed problem lists) and `score`; `continuous` is True where scores can lie strictly in (0, 1).
    """

    name: ClassVar[str]
    Options: ClassVar[type] = PromptOptions
    continuous: bool = False

    def __init__(self, options: PromptOptions) -> None:
        self.options = options
        self._cache: dict[str, list[Problem]] = {}
        self._split_cache: dict[str, list[Record]] = {}
        self._shot_records: Optional[list[Record]] = None
        if options.allow_overlap:
            log.warning("%s: allow_overlap=true: training may see the eval problems, so this run's eval is not held "
                        "out (run tag allow_overlap)", self.name)

    # -- problems -------------------------------------------------------------------------------------------------
    @abstractmethod
    def _records(self, split: str) -> list[Record]:
        """Every record of a split, in a fixed order (the eval subset and shuffles are taken from it)."""

    def problems(self, split: str) -> list[Problem]:
        """The fixed, deterministic problem list of a split; "test" holds the first `eval_size` of a seeded shuffle,
        "train" never holds a problem whose normalised question is in the test split (unless `allow_overlap`)."""
        if split not in SPLITS:
            raise ValueError(f"{self.name}: split={split!r} is not one of {list(SPLITS)}")
        if split not in self._cache:
            self._cache[split] = [self._problem(r) for r in self._split_records(split)]
        return list(self._cache[split])

    def _split_records(self, split: str) -> list[Record]:
        """The records behind problems(split): the eval subset of "test", "train" minus every test question."""
        if split not in self._split_cache:
            self._split_cache[split] = self._select_records(split)
        return self._split_cache[split]

    def _select_records(self, split: str) -> list[Record]:
        records = self._records(split)
        if not records:
            raise ValueError(f"{self.name}: split {split!r} has no problems")
        if split == "test" and self.options.eval_size is not None and self.options.eval_size < len(records):
            picked = sorted(random.Random(self.options.seed).sample(range(len(records)), self.options.eval_size))
            records = [records[i] for i in picked]
        if split == "train" and not self.options.allow_overlap:
            held_out = self.eval_questions(whole_split=True)
            kept = [r for r in records if normalise_question(r.question) not in held_out]
            if not kept:
                raise ValueError(
                    f"{self.name}: all {len(records)} train problems are also test problems; give a separate train "
                    "source (or allow_overlap=true for a smoke test)"
                )
            records = kept
        return records

    def eval_questions(self, whole_split: bool = False) -> set[str]:
        """Normalised questions of the eval problems (of the whole test split with `whole_split`)."""
        records = self._records("test") if whole_split else self._split_records("test")
        return {normalise_question(r.question) for r in records}

    def _train_records(self, seed: int) -> Iterator[Record]:
        """Infinite: shuffled epochs over the train split's records, each epoch reshuffled from `seed`."""
        records = self._split_records("train")
        rng = random.Random(seed)
        while True:
            order = list(range(len(records)))
            rng.shuffle(order)
            for i in order:
                yield records[i]

    def train_stream(self, seed: int) -> Iterator[Problem]:
        """Infinite: the training problems in the order a run with this `seed` consumes them."""
        for record in self._train_records(seed):
            yield self._problem(record)

    def _drawable_train_records(self, seed: int, draws: int) -> Iterable[Record]:
        """The training records a run can draw: the whole (finite) train split; generated tasks override this."""
        return self._split_records("train")

    def train_eval_overlap(self, seed: int, draws: int) -> int:
        """How many distinct eval problems have their normalised question among the training problems a run can
        draw: the whole train split for fixed problem sets, the first `draws` problems of `train_stream(seed)` for
        generated tasks (a run consumes steps * prompts_per_step). 0 when held out, as every benchmark is unless
        `allow_overlap`."""
        trained = {normalise_question(r.question) for r in self._drawable_train_records(seed, draws)}
        return len(self.eval_questions() & trained)

    def _problem(self, record: Record) -> Problem:
        from passk_exp.benchmarks.prompts import format_prompt

        shots = self._shots(record) if self.options.few_shot else []
        prompt = format_prompt(record.question, self.options, shots)
        return Problem(id=record.id, prompt=prompt, answer=record.answer, meta=dict(record.meta))

    def _shot_pool(self) -> list[Record]:
        """Records few-shot examples come from (the train split, eval problems excluded, by default)."""
        return self._split_records("train")

    def _shots(self, record: Record) -> list[tuple[str, str]]:
        if self._shot_records is None:
            self._shot_records = self._shot_pool()
        pool = [r for r in self._shot_records if r.id != record.id and r.question != record.question]
        if len(pool) < self.options.few_shot:
            raise ValueError(
                f"{self.name}: few_shot={self.options.few_shot} but only {len(pool)} other train problems exist"
            )
        picked = random.Random(self.options.seed + 1).sample(range(len(pool)), self.options.few_shot)
        return [(pool[i].question, pool[i].demo) for i in picked]

    # -- scoring --------------------------------------------------------------------------------------------------
    @abstractmethod
    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        """One reward in [0, 1] per (problem, completion) pair, same order. A verifier crash gives 0.0 and a warning."""

    def final_answer(self, problem: Problem, completion: str) -> Optional[str]:
        """The final answer the verifier reads from `completion`, in a canonical form so that equal answers compare
        equal as strings (evaluation counts distinct answers per problem, a diversity signal). None when the
        completion holds no answer, and always None (this default) for a benchmark that extracts none."""
        return None

    def _check_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> None:
        if len(problems) != len(completions):
            raise ValueError(
                f"{self.name}.score: {len(problems)} problems but {len(completions)} completions; pass one problem "
                "per completion (repeat a problem for each of its samples)"
            )

    def close(self) -> None:
        """Release worker pools (the base holds none)."""

    def __enter__(self) -> "Benchmark":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"
