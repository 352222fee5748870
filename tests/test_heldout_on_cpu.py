"""Held out by construction: no benchmark trains on its eval problems (normalised question text), generated tasks with
too few training problems and one file for both splits are refused, and `allow_overlap` is the only way around."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from passk_exp.benchmarks import load_benchmark
from passk_exp.benchmarks.base import MIN_TRAIN_PROBLEMS, Record, normalise_question
from passk_exp.benchmarks.synthetic import distinct_problems

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GSM8K, GSM8K_TRAIN = FIXTURES / "gsm8k_mini.jsonl", FIXTURES / "gsm8k_mini_train.jsonl"
MATH, MATH_TRAIN = FIXTURES / "math_mini.jsonl", FIXTURES / "math_mini_train.jsonl"
HUMANEVAL_TRAIN = FIXTURES / "humaneval_train_mini.jsonl"
DRAWS = 2000  # training problems drawn from a generated stream: 16x the default job's 30 steps x 4 prompts


def test_normalise_question_ignores_case_spacing_and_unicode_width_but_keeps_words_and_numbers_apart():
    assert normalise_question("What is 3+5?") == normalise_question("  what IS 3 + 5 ?\n")
    assert normalise_question("Ｗhat is ３ + ５?") == normalise_question("What is 3 + 5?")  # full-width forms (NFKC)
    assert normalise_question("list 1 23") != normalise_question("list 12 3")
    assert normalise_question("What is 3 + 5?") != normalise_question("What is 5 + 3?")


SYNTHETIC = {
    "addition": {},
    "add_sub": {"ops": ["+", "-"]},
    "all_ops": {"ops": ["+", "-", "*"]},
    "two_digits": {"digits": 2, "ops": ["+", "-", "*"]},
    "three_terms": {"terms": 3, "ops": ["-", "*"]},
    "closeness": {"task": "closeness", "ops": ["+", "*"], "scale": 2.0, "eval_size": 100},
    "half_held_out": {"eval_size": 50},
}


@pytest.mark.parametrize("options", SYNTHETIC.values(), ids=SYNTHETIC.keys())
def test_synthetic_trains_only_on_the_complement_of_its_eval_set(options):
    bench = load_benchmark("synthetic", **options)
    eval_questions = {normalise_question(p.prompt[-1]["content"]) for p in bench.problems("test")}
    assert len(eval_questions) == bench.options.eval_size  # distinct eval problems
    stream = bench.train_stream(0)
    trained = {normalise_question(next(stream).prompt[-1]["content"]) for _ in range(DRAWS)}
    assert not eval_questions & trained
    assert not eval_questions & {normalise_question(p.prompt[-1]["content"]) for p in bench.problems("train")}
    assert bench.train_eval_overlap(0, DRAWS) == 0
    # every problem outside the eval set stays reachable: on the small tasks the draws cover the whole complement
    total = distinct_problems(bench.options)
    if total <= 200:
        assert len(trained) == total - len(eval_questions)


def test_synthetic_overlap_is_measured_not_assumed():
    # the opt-in draws from all 100 addition problems again, and the measure sees every eval problem in the draws
    bench = load_benchmark("synthetic", allow_overlap=True)
    assert bench.train_eval_overlap(0, DRAWS) == 40


@pytest.mark.parametrize(
    "options, left",
    [({"eval_size": 60}, 40), ({"eval_size": 100}, 0), ({"eval_size": 190, "ops": ["+", "-"]}, 10)],
)
def test_synthetic_refuses_too_few_distinct_training_problems(options, left):
    with pytest.raises(ValueError) as error:
        load_benchmark("synthetic", **options)
    message = str(error.value)
    assert "\n" not in message and f"leaves {left} distinct training problems" in message
    assert f"minimum {MIN_TRAIN_PROBLEMS}" in message and "lower eval_size" in message
    with pytest.raises(ValueError, match="eval_size=101 exceeds the 100 distinct problems"):
        load_benchmark("synthetic", eval_size=101, allow_overlap=True)
    load_benchmark("synthetic", allow_overlap=True, **options)  # the opt-in lifts the minimum


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "gsm_symbolic"])
def test_reasoning_gym_trains_on_no_eval_question(dataset):
    bench = load_benchmark("reasoning_gym", dataset=dataset, eval_size=100)
    eval_questions = {normalise_question(p.prompt[-1]["content"]) for p in bench.problems("test")}
    stream = bench.train_stream(0)
    trained = {normalise_question(next(stream).prompt[-1]["content"]) for _ in range(1000)}
    assert not eval_questions & trained
    assert bench.train_eval_overlap(0, 1000) == 0


def test_reasoning_gym_drops_repeated_eval_questions_and_refuses_a_tiny_dataset(monkeypatch):
    from passk_exp.benchmarks import procedural

    def tiny_entries(self, seed, size, split):  # a dataset with 60 questions, whatever the key
        return [Record(id=f"{split}/{seed}/{i}", question=f"Q{(seed + i) % 60}", answer="1", demo="1",
                       meta={"entry": {}}) for i in range(size)]

    monkeypatch.setattr(procedural.ReasoningGym, "_entries", tiny_entries)
    bench = load_benchmark("reasoning_gym", dataset="chain_sum", eval_size=5)
    assert bench.train_eval_overlap(0, 500) == 0
    assert len({r.question for r in bench._drawable_train_records(0, 500)}) == 55
    refused = f"gives 40 distinct training problems .* fewer than the minimum {MIN_TRAIN_PROBLEMS}"
    with pytest.raises(ValueError, match=refused):
        load_benchmark("reasoning_gym", dataset="chain_sum", eval_size=20).train_eval_overlap(0, 10)


@pytest.mark.parametrize("name, eval_file, train_file", [("gsm8k", GSM8K, GSM8K_TRAIN), ("math", MATH, MATH_TRAIN)])
def test_file_benchmarks_take_separate_train_and_eval_sources(name, eval_file, train_file, tmp_path):
    two_paths = load_benchmark(name, path=str(eval_file), train_path=str(train_file), workers=0)
    assert two_paths.train_eval_overlap(0, 10) == 0
    assert len(two_paths.problems("train")) == len(train_file.read_text().splitlines())
    # a folder of split files whose train file repeats two eval questions (respaced, recased): both are dropped
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    train_rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    key = "question" if name == "gsm8k" else "problem"
    repeats = [{**row, key: "  " + row[key].upper().replace(" ", "  ")} for row in rows[:2]]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows + repeats))
    (tmp_path / "test.jsonl").write_text(eval_file.read_text())
    folder = load_benchmark(name, path=str(tmp_path), workers=0)
    assert len(folder.problems("train")) == len(train_rows)
    assert folder.train_eval_overlap(0, 10) == 0
    assert load_benchmark(name, path=str(tmp_path), workers=0, allow_overlap=True).train_eval_overlap(0, 10) == 2


@pytest.mark.parametrize("name, eval_file", [("gsm8k", GSM8K), ("math", MATH)])
def test_one_file_for_both_splits_is_refused_with_one_line(name, eval_file, tmp_path):
    bench = load_benchmark(name, path=str(eval_file), workers=0)
    assert bench.problems("test")  # evaluating from one file is fine
    with pytest.raises(ValueError) as error:
        bench.problems("train")
    message = str(error.value)
    assert "\n" not in message and str(eval_file) in message
    assert "train_split='train'" in message and "test_split='test'" in message
    assert "benchmark.train_path=FILE" in message and "folder" in message
    (tmp_path / "test.jsonl").write_text(eval_file.read_text())  # a folder, but both split keys name one file
    with pytest.raises(ValueError, match="would serve both train_split='test' and test_split='test'"):
        load_benchmark(name, path=str(tmp_path), train_split="test", workers=0).problems("train")
    opted_in = load_benchmark(name, path=str(eval_file), eval_size=4, workers=0, allow_overlap=True)
    assert opted_in.train_eval_overlap(0, 10) == 4


def test_math_without_a_train_source_names_train_path():
    with pytest.raises(ValueError) as error:
        load_benchmark("math").problems("train")
    assert "MATH-500" in str(error.value) and "benchmark.train_path=" in str(error.value)


def test_humaneval_is_eval_only_unless_given_a_training_source():
    with pytest.raises(ValueError, match="humaneval is eval-only .* benchmark.train_path="):
        load_benchmark("humaneval", workers=0).problems("train")
    separate = load_benchmark("humaneval", workers=0, train_path=str(HUMANEVAL_TRAIN))
    assert [p.id for p in separate.problems("train")] == ["train/0", "train/1", "train/2"]
    assert separate.train_eval_overlap(0, 10) == 0
    assert len(separate.problems("test")) == 164
    assert load_benchmark("humaneval", workers=0, allow_overlap=True).train_eval_overlap(0, 10) == 164


def test_the_humaneval_training_fixture_passes_its_own_tests():
    with load_benchmark("humaneval", workers=0, train_path=str(HUMANEVAL_TRAIN)) as bench:
        problems = bench.problems("train")
        assert bench.score(problems, [p.answer for p in problems]) == [1.0] * len(problems)
        assert bench.score(problems, ["    return None\n"] * len(problems)) == [0.0] * len(problems)


def test_allow_overlap_is_a_run_tag_only_when_on():
    from conftest import compose

    from passk_exp.trainer import run_tags

    assert "allow_overlap" not in run_tags(compose([]))
    assert run_tags(compose(["benchmark.allow_overlap=true"]))["allow_overlap"] == "true"


def test_the_trainer_refuses_a_single_file_before_loading_a_model(monkeypatch, tmp_path):
    from conftest import compose, tiny_overrides

    from passk_exp import trainer

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the benchmark refused its source")

    monkeypatch.setattr(trainer, "load_policy", no_model)
    cfg = compose(tiny_overrides(tmp_path) + ["benchmark=gsm8k", f"benchmark.path={GSM8K}"])
    with pytest.raises(ValueError, match="would serve both train_split"):
        trainer.Trainer(cfg)
