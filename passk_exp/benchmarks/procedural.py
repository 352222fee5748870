"""`reasoning_gym`: the procedural datasets of the `reasoning-gym` package (offline), scored by its `score_answer`.

Any of its datasets by name (`dataset=gsm_symbolic`, `basic_arithmetic`, `chain_sum`, `products`, ...), its
configuration keys under `dataset_config`. Most datasets build entry i of a dataset seeded s from the generator key
s + i, so the eval set and the training epochs take disjoint ranges of keys (`key_range`), and any training entry
whose normalised question is an eval question is dropped as well (small datasets repeat questions across keys). A
dataset left with fewer than `MIN_TRAIN_PROBLEMS` distinct training questions in an epoch is refused. The model puts
its final answer in `<answer>...</answer>` (reasoning-gym's convention; `answer_tag: null` scores the whole
completion). Several datasets give small partial credit to wrong answers, which the binary Pass@K estimators reject,
so scores are binarised (1 only for a full score) unless `binarize: false`. reasoning-gym is the `[tasks]` extra and
is imported only when used.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence

from passk_exp.benchmarks.base import MIN_TRAIN_PROBLEMS, Benchmark, Problem, PromptOptions, Record, normalise_question
from passk_exp.benchmarks.scoring import VerifierPool

EPOCH_SIZE = 1000  # entries generated per training epoch (and in the fixed problems("train") list)
KEY_RANGE = 2**20  # generator keys per range: ~1000 training epochs; keys stay below 2**32 for seeds up to ~2000


def key_range(seed: int, split: str) -> int:
    """First generator key of a split's range: even ranges for eval sets (by `seed` option), odd ones for training
    (by run seed), so no eval key is ever a training key."""
    return (2 * seed + (split != "test")) * KEY_RANGE


def _reasoning_gym():
    try:
        import reasoning_gym
    except ImportError:
        raise ValueError(
            "benchmark=reasoning_gym needs the reasoning-gym package: pip install 'passk-exp[tasks]'"
        ) from None
    return reasoning_gym


@dataclass(frozen=True)
class ReasoningGymOptions(PromptOptions):
    """dataset: a reasoning-gym dataset name. dataset_config: its config keys (difficulty knobs).
    answer_tag: tag holding the final answer (null: the whole completion). binarize: 1 only for a full score."""

    eval_size: Optional[int] = 100
    dataset: str = "gsm_symbolic"
    dataset_config: dict[str, Any] = field(default_factory=dict)
    answer_tag: Optional[str] = "answer"
    binarize: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_size is None:
            raise ValueError("benchmark=reasoning_gym: eval_size must be a number (the datasets are generated)")
        if not isinstance(self.dataset_config, dict):
            raise ValueError(f"benchmark=reasoning_gym: dataset_config={self.dataset_config!r} must be a mapping")


class ReasoningGym(Benchmark):
    name = "reasoning_gym"
    Options = ReasoningGymOptions

    def __init__(self, options: ReasoningGymOptions) -> None:
        super().__init__(options)
        rg = _reasoning_gym()
        if options.dataset not in rg.factory.DATASETS:
            raise ValueError(
                f"benchmark=reasoning_gym: dataset={options.dataset!r} is not one of {sorted(rg.factory.DATASETS)}"
            )
        self.continuous = not options.binarize
        self._scorer = self._dataset(seed=0, size=1)  # score_answer depends on the entry, not on the seed
        self._inline = VerifierPool(self.name, workers=0, item_timeout_s=5.0)

    def _dataset(self, seed: int, size: int):
        try:
            return _reasoning_gym().create_dataset(
                self.options.dataset, seed=seed, size=size, **self.options.dataset_config
            )
        except (TypeError, AssertionError, ValueError) as error:
            raise ValueError(
                f"benchmark=reasoning_gym: dataset={self.options.dataset} rejects dataset_config="
                f"{self.options.dataset_config}: {error}"
            ) from None

    def _entries(self, seed: int, size: int, split: str) -> list[Record]:
        dataset = self._dataset(seed, size)
        return [
            Record(
                id=f"reasoning_gym/{self.options.dataset}/{split}/{seed}/{i}",
                question=entry["question"],
                answer=entry["answer"],
                demo=f"<answer>{entry['answer']}</answer>" if self.options.answer_tag else str(entry["answer"]),
                meta={"entry": entry},
            )
            for i, entry in enumerate(dataset)
        ]

    def _records(self, split: str) -> list[Record]:
        if split == "test":
            return self._entries(key_range(self.options.seed, "test"), self.options.eval_size, split)
        return self._entries(key_range(self.options.seed, "train"), EPOCH_SIZE, split)

    def _train_records(self, seed: int) -> Iterator[Record]:
        """Fresh entries forever, one shuffled epoch of EPOCH_SIZE keys at a time, never an eval question."""
        held_out = set() if self.options.allow_overlap else self.eval_questions()
        rng = random.Random(f"reasoning_gym-stream-{seed}")
        for epoch in itertools.count():
            if (epoch + 1) * EPOCH_SIZE > KEY_RANGE:
                raise ValueError(f"benchmark=reasoning_gym: the training stream is exhausted after {epoch} epochs")
            records = self._entries(key_range(seed, "train") + epoch * EPOCH_SIZE, EPOCH_SIZE, "stream")
            records = [r for r in records if normalise_question(r.question) not in held_out]
            distinct = len({normalise_question(r.question) for r in records})
            if epoch == 0 and not self.options.allow_overlap and distinct < MIN_TRAIN_PROBLEMS:
                raise ValueError(
                    f"benchmark=reasoning_gym: dataset={self.options.dataset} gives {distinct} distinct training "
                    f"problems in {EPOCH_SIZE} draws once its eval problems are left out, fewer than the minimum "
                    f"{MIN_TRAIN_PROBLEMS}; make it harder through dataset_config or lower eval_size"
                )
            rng.shuffle(records)
            yield from records

    def _drawable_train_records(self, seed: int, draws: int) -> Iterable[Record]:
        """The first `draws` problems of the stream (the run's steps * prompts_per_step)."""
        return itertools.islice(self._train_records(seed), draws)

    def final_answer(self, problem: Problem, completion: str) -> Optional[str]:
        answer = tagged_answer(self.options.answer_tag, completion)
        return answer.strip() if answer is not None else None

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        self._check_batch(problems, completions)
        items = [(self._scorer, self.options.answer_tag, self.options.binarize, p.meta["entry"], text)
                 for p, text in zip(problems, completions)]
        return self._inline.map(score_entry, items, [p.id for p in problems])


def tagged_answer(tag: Optional[str], completion: str) -> Optional[str]:
    """The text `score_entry` scores: the last `<tag>...</tag>` content (None without one), or the whole completion."""
    if not tag:
        return completion.strip()
    from reasoning_gym.utils import extract_answer

    return extract_answer(completion, tag_name=tag)


def score_entry(dataset, tag: Optional[str], binarize: bool, entry: dict, completion: str) -> float:
    """reasoning-gym's own score of the tagged answer (0 without one), binarised when asked."""
    answer = tagged_answer(tag, completion)
    if answer is None:
        return 0.0
    value = float(dataset.score_answer(answer=answer, entry=entry))
    return float(value >= 1.0) if binarize else value
