"""`python -m passk_exp.data`: the files it writes are the ones the benchmarks read (fields, splits, answers), MATH
train rows that are also test rows are dropped, and without the Hub it writes nothing and prints one line. The Hub
loader is replaced by the fixtures (tests/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from passk_exp import data
from passk_exp.benchmarks import load_benchmark

FIXTURES = Path(__file__).parent / "fixtures"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def fake_hub(dataset: str, config, split: str) -> list[dict]:
    gsm8k = _rows("gsm8k_mini.jsonl")
    math = _rows("math_mini.jsonl")
    if dataset == "openai/gsm8k":
        return gsm8k[:8] if split == "train" else gsm8k[8:]
    if dataset == "HuggingFaceH4/MATH-500":
        return math[:5]
    if dataset == "EleutherAI/hendrycks_math":  # MATH rows carry `type` and a solution, no `answer`
        own = [r for r in math if r["subject"].lower().replace(" ", "_") == config]
        return [{"problem": r["problem"], "solution": r["solution"], "type": r["subject"], "level": r["level"]}
                for r in own]
    raise AssertionError(dataset)


def test_gsm8k_folder_serves_both_splits(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load_split", fake_hub)
    assert data.main(["gsm8k", "--out", str(tmp_path / "gsm8k")]) == 0
    assert sorted(p.name for p in (tmp_path / "gsm8k").iterdir()) == ["test.jsonl", "train.jsonl"]
    bench = load_benchmark("gsm8k", path=str(tmp_path / "gsm8k"), eval_size=None, workers=1)
    try:
        test = bench.problems("test")
        assert len(test) == len(_rows("gsm8k_mini.jsonl")) - 8
        assert bench.score([test[0]], [f"#### {test[0].answer}"]) == [1.0]
        assert next(bench.train_stream(0)).prompt is not None
    finally:
        bench.close()


def test_math_train_from_math_test_from_math500_without_overlap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "load_split", fake_hub)
    assert data.main(["math", "--out", str(tmp_path / "math")]) == 0
    train = [json.loads(l) for l in (tmp_path / "math" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(l) for l in (tmp_path / "math" / "test.jsonl").read_text().splitlines()]
    assert len(test) == 5 and {r["problem"] for r in train}.isdisjoint(r["problem"] for r in test)
    fixture = _rows("math_mini.jsonl")
    expected_train = [r for r in fixture[5:] if r["subject"].lower().replace(" ", "_") in data.MATH_SUBJECTS]
    dropped = sum(r["subject"].lower().replace(" ", "_") in data.MATH_SUBJECTS for r in fixture[:5])
    assert len(train) == len(expected_train) and f"{dropped} train rows dropped" in capsys.readouterr().out
    # Each train answer is the solution's last \boxed{}: math-verify finds it equivalent to the fixture's own answer.
    answers = {r["answer"]: by["answer"] for r in train for by in fixture if by["problem"] == r["problem"]}
    as_test = load_benchmark("math", path=str(tmp_path / "math" / "train.jsonl"), eval_size=None, workers=1)
    try:
        rows = as_test.problems("test")
        replies = [f"\\boxed{{{answers[p.answer]}}}" for p in rows]
        assert len(rows) == len(train) and as_test.score(rows, replies) == [1.0] * len(rows)
    finally:
        as_test.close()
    bench = load_benchmark("math", path=str(tmp_path / "math"), eval_size=None, workers=1)
    try:
        problems = bench.problems("test")
        assert len(problems) == 5
        assert bench.score([problems[0]], [f"\\boxed{{{problems[0].answer}}}"]) == [1.0]
    finally:
        bench.close()


def test_without_the_hub_nothing_is_written_and_one_line_says_what_to_copy(tmp_path, monkeypatch, capsys):
    def offline(dataset, config, split):
        raise data.HubUnavailable(f"{dataset}: no network")

    monkeypatch.setattr(data, "load_split", offline)
    out = tmp_path / "math"
    assert data.main(["math", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "copy DIR/train.jsonl and DIR/test.jsonl to" in err and str(out) in err
    assert not out.exists()


def test_the_real_loader_without_datasets_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(data.HubUnavailable, match="`datasets` package is not installed"):
        data.load_split("openai/gsm8k", "main", "train")
