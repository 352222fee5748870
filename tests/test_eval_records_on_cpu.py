"""Per-problem eval records: the schema, the counts in each row, the records <-> logged Pass@k equality, eval_ks, and
each benchmark's final-answer hook (the distinct-answer count)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from conftest import compose, tiny_overrides
from passk_exp.benchmarks import load_benchmark
from passk_exp.config import validate_config
from passk_exp.eval_records import SCHEMA, eval_records, pass_at_k_of_records, read_records, records_parquet
from passk_exp.evaluation import evaluate, extracts_final_answers, k_grid
from passk_exp.rollout.base import RolloutBatch, SamplingParams

FIXTURES = Path(__file__).resolve().parent / "fixtures"
COLUMNS = ["problem_id", "n", "c", "rewards", "mean_len", "truncated", "distinct_answers"]


def _comb_pass_at_k(n: int, c: int, k: int) -> float:
    """The textbook form 1 - C(n-c, k) / C(n, k), in exact integers: an independent check of the product form."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_records_have_the_fixed_columns_types_and_per_problem_counts():
    rewards = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.999, 1.0, 0.2, 1 - 1e-12]])
    lengths = np.array([[3, 5, 4, 4], [6, 6, 6, 2], [1, 1, 1, 1]])
    truncated = np.array([[False] * 4, [True, True, True, False], [False] * 4])
    answers = [["8", "7", "8", "8"], [None, None, None, None], ["1", "2", None, "1"]]
    table = eval_records(["a", "b", "c"], rewards, lengths, truncated, answers)
    assert table.schema == SCHEMA and table.column_names == COLUMNS
    assert table.schema.field("problem_id").type == pa.string()
    assert table.schema.field("rewards").type == pa.list_(pa.float64())
    for name in ("n", "c", "truncated", "distinct_answers"):
        assert table.schema.field(name).type == pa.int64(), name
    rows = table.to_pylist()
    assert [r["problem_id"] for r in rows] == ["a", "b", "c"]
    assert [r["n"] for r in rows] == [4, 4, 4]
    assert [r["c"] for r in rows] == [3, 0, 2]  # 0.999 is not a 1; 1 - 1e-12 is (float noise)
    assert [r["rewards"] for r in rows] == rewards.tolist()
    assert [r["mean_len"] for r in rows] == [4.0, 5.0, 1.0]
    assert [r["truncated"] for r in rows] == [0, 3, 0]
    assert [r["distinct_answers"] for r in rows] == [2, 0, 2]  # samples without an answer are not an answer
    without = eval_records(["a", "b", "c"], rewards, lengths, truncated, None)
    assert without.column("distinct_answers").null_count == 3


def test_records_reject_misaligned_inputs():
    rewards = np.zeros((2, 3))
    with pytest.raises(ValueError, match="P = 3 problems"):
        eval_records(["a", "b", "c"], rewards, np.zeros((2, 3)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="truncated"):
        eval_records(["a", "b"], rewards, np.zeros((2, 3)), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="answers must hold 3 entries"):
        eval_records(["a", "b"], rewards, np.zeros((2, 3)), np.zeros((2, 3), bool), [["x"] * 3, ["x"] * 2])


def test_pass_at_k_of_records_is_the_unbiased_estimator_and_survives_parquet_exactly():
    rng = np.random.default_rng(0)
    rewards = (rng.random((13, 8)) < rng.random((13, 1))).astype(np.float64)
    table = eval_records([str(i) for i in range(13)], rewards, np.ones((13, 8)), np.zeros((13, 8), bool))
    ks = k_grid(8)
    curve = pass_at_k_of_records(table, ks)
    back = read_records(records_parquet(table))
    assert back.equals(table)
    assert pass_at_k_of_records(back, ks) == curve  # bit for bit
    counts = rewards.sum(axis=1).astype(int)
    for k, value in zip(ks, curve):
        assert value == pytest.approx(np.mean([_comb_pass_at_k(8, int(c), k) for c in counts]), abs=1e-12)


class _FixedBackend:
    """generate() returns given texts, lengths and truncation flags: evaluation without a model."""

    def __init__(self, texts, lengths, truncated):
        self.texts, self.lengths, self.truncated = texts, torch.tensor(lengths), torch.tensor(truncated)

    def generate(self, prompts, n, sampling):
        groups, width = len(prompts), int(self.lengths.max())
        mask = (torch.arange(width)[None, None, :] < self.lengths[..., None]).long()
        return RolloutBatch(
            prompt_ids=torch.ones(groups, 1, dtype=torch.long),
            prompt_mask=torch.ones(groups, 1, dtype=torch.long),
            completion_ids=torch.ones(groups, n, width, dtype=torch.long),
            completion_mask=mask,
            texts=self.texts,
            truncated=self.truncated,
        )


@pytest.mark.parametrize("ks", [None, [1, 3]])
def test_evaluate_logs_pass_at_k_equal_to_its_records_and_the_truncation_rate(ks):
    bench = load_benchmark("synthetic", eval_size=3)
    problems = bench.problems("test")
    right = [str(p.answer) for p in problems]
    texts = [
        [right[0], right[0] + ".0", "1000", "no number"],
        ["1000", "1001", "1002", "1003"],
        [right[2]] * 4,
    ]
    lengths = [[2, 3, 4, 5], [4, 4, 4, 4], [1, 1, 1, 1]]
    truncated = [[False, False, False, True], [True, True, True, True], [False] * 4]
    result = evaluate(_FixedBackend(texts, lengths, truncated), bench, problems, 4, SamplingParams(4), ks)
    rows = result.records.to_pylist()
    assert [r["c"] for r in rows] == [2, 0, 4]
    assert [r["distinct_answers"] for r in rows] == [2, 4, 1]  # "8" and "8.0" are one answer
    assert [r["truncated"] for r in rows] == [1, 4, 0]
    assert [r["mean_len"] for r in rows] == [3.5, 4.0, 1.0]
    expected_ks = [1, 3] if ks else [1, 2, 4]
    assert result.ks == expected_ks
    assert sorted(k for k in result.metrics if "pass_at" in k) == sorted(f"eval/pass_at_{k}" for k in expected_ks)
    recomputed = pass_at_k_of_records(read_records(records_parquet(result.records)), expected_ks)
    assert [result.metrics[f"eval/pass_at_{k}"] for k in expected_ks] == recomputed
    for k in expected_ks:
        independent = np.mean([_comb_pass_at_k(4, c, k) for c in (2, 0, 4)])
        assert result.metrics[f"eval/pass_at_{k}"] == pytest.approx(independent, abs=1e-12)
    assert result.metrics["eval/truncation_rate"] == 5 / 12
    assert result.metrics["eval/completion_len"] == pytest.approx(np.mean(lengths))


def test_a_benchmark_without_answer_extraction_leaves_distinct_answers_null():
    bench = load_benchmark("humaneval")
    assert not extracts_final_answers(bench)
    assert bench.final_answer(None, "def f(): return 1") is None
    for name, options in (("synthetic", {}), ("gsm8k", {"path": str(FIXTURES / "gsm8k_mini.jsonl")})):
        assert extracts_final_answers(load_benchmark(name, **options))


def test_final_answers_are_what_each_verifier_reads_in_canonical_form():
    synthetic = load_benchmark("synthetic")
    problem = synthetic.problems("test")[0]
    assert synthetic.final_answer(problem, "3 + 5 = 8.0.") == "8" and synthetic.final_answer(problem, "hm") is None
    with load_benchmark("gsm8k", path=str(FIXTURES / "gsm8k_mini.jsonl")) as gsm8k:
        problem = gsm8k.problems("test")[0]
        assert gsm8k.final_answer(problem, "so 3 then\n#### $1,200.") == "1200"
        assert gsm8k.final_answer(problem, "it is 7.50 dollars") == "15/2"
        assert gsm8k.final_answer(problem, "no idea") is None
    with load_benchmark("math", path=str(FIXTURES / "math_mini.jsonl")) as competition:
        problem = competition.problems("test")[0]
        assert competition.final_answer(problem, r"\boxed{2} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
        assert competition.final_answer(problem, r"\boxed{0.50}") == "1/2"
        assert competition.final_answer(problem, "the answer is 3") is None
    gym = load_benchmark("reasoning_gym", dataset="basic_arithmetic", eval_size=2)
    problem = gym.problems("test")[0]
    assert gym.final_answer(problem, "think <answer> 42 </answer>") == "42"
    assert gym.final_answer(problem, "no tag 42") is None
    whole = load_benchmark("reasoning_gym", dataset="basic_arithmetic", eval_size=2, answer_tag=None)
    assert whole.final_answer(problem, " 42 \n") == "42"


@pytest.mark.parametrize("value", ["[0,2]", "[1,5]", "[]"])
def test_eval_ks_outside_one_to_n_eval_is_a_one_line_config_error(tmp_path, value):
    with pytest.raises(ValueError) as error:
        validate_config(compose(tiny_overrides(tmp_path, n_eval=4, eval_ks=value)))
    message = str(error.value)
    assert message.startswith("eval_ks=") and "\n" not in message
    assert ("k=0" in message) if value == "[0,2]" else ("k=5" in message) if value == "[1,5]" else "empty" in message


def test_eval_ks_composes_and_validates(tmp_path):
    cfg = compose(tiny_overrides(tmp_path, n_eval=4, eval_ks="[1,3,4]"))
    validate_config(cfg)
    assert list(cfg.eval_ks) == [1, 3, 4]
    assert compose(tiny_overrides(tmp_path)).eval_ks is None
