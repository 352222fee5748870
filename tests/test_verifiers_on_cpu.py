"""Verifiers on hand-written answers: extraction edge cases, math-verify equivalences, crash isolation of the pool."""

from __future__ import annotations

import logging
import os
import time

import pytest

from passk_exp.benchmarks.answers import final_answer, hash_answer, last_boxed, last_number, numbers_equal
from passk_exp.benchmarks.mathcheck import equivalent, score_gsm8k, score_math
from passk_exp.benchmarks.scoring import VerifierPool, guarded


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 42.", "42"),
        ("3 apples and 4 pears make 7", "7"),
        ("It costs $1,200.50 in total.", "1200.50"),
        ("The temperature drops to -3 degrees", "-3"),
        ("1,2,3", "3"),  # a list, not a thousands-separated number
        ("x2 and y3", None),  # digits glued to words are not numbers
        ("no digits here", None),
        ("", None),
        ("7\n\n", "7"),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_hash_and_boxed_extraction():
    assert hash_answer("step one\n#### 72") == "72"
    assert hash_answer("#### 1\n#### 2\n") == "2"
    assert hash_answer("####   \n") is None
    assert last_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{\sqrt{2}}") == r"\sqrt{2}"
    assert last_boxed(r"\boxed{\left(1, \frac{3}{4}\right)}") == r"\left(1, \frac{3}{4}\right)"
    assert last_boxed(r"\fbox{5}") == "5"
    assert last_boxed(r"\boxed{\frac{1}{2}") is None  # unbalanced braces: no answer
    assert last_boxed("no box") is None


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("Half of 144 is 72.\n#### 72", "72"),
        ("#### $1,200.", "1200"),  # currency, thousands separator and a sentence period
        (r"The answer is \boxed{52}.", "52"),
        (r"\boxed{\frac{7}{2}}", r"\frac{7}{2}"),  # not a plain number: kept for the symbolic check
        ("#### 72\nActually 73 could also work", "72"),  # the #### line wins over later numbers
        ("First 10, then 20, so 30", "30"),
        ("I do not know", None),
    ],
)
def test_final_answer(completion, expected):
    assert final_answer(completion) == expected


def test_numbers_equal_is_exact():
    assert numbers_equal("8.0", 8) and numbers_equal("1,000", "1000") and numbers_equal("-2", "-2.00")
    assert not numbers_equal("0.333333", "0.333334") and not numbers_equal("abc", 1)


@pytest.mark.parametrize(
    "reference, completion, reward",
    [
        ("72", "She has 72 apples.", 1.0),
        ("72", "#### 72", 1.0),
        ("72", "#### $72.00", 1.0),
        ("12200", "So the library has 12,200 books.\n#### 12,200", 1.0),
        ("-2", "It ends at -2 degrees.", 1.0),
        ("0.5", r"The answer is \boxed{\frac{1}{2}}", 1.0),
        ("72", "First 72, then I recheck: 71", 0.0),  # the last number decides
        ("72", "#### 720", 0.0),
        ("72", "", 0.0),
        ("72", "seventy-two", 0.0),
        ("7", "#### 7/1", 1.0),
    ],
)
def test_gsm8k_verifier(reference, completion, reward):
    assert score_gsm8k(reference, completion) == reward


@pytest.mark.parametrize(
    "reference, completion, reward",
    [
        (r"\frac{1}{2}", r"so $\boxed{0.5}$", 1.0),
        (r"\frac{1}{2}", r"\boxed{\dfrac12}", 1.0),  # \dfrac and brace-less arguments
        (r"\frac{1}{2}", r"\boxed{\tfrac{2}{4}}", 1.0),
        (r"5\sqrt{2}", r"\boxed{\sqrt{50}}", 1.0),  # radicals simplify
        (r"\frac{\sqrt{3}}{3}", r"\boxed{\frac{1}{\sqrt{3}}}", 1.0),
        ("[1,4)", r"\boxed{[1, 4)}", 1.0),  # intervals
        ("[1,4)", r"\boxed{(1, 4)}", 0.0),  # wrong endpoint type
        (r"9\pi", r"\boxed{9 \pi}", 1.0),
        (r"9\pi", r"\boxed{28.27}", 0.0),  # a rounded decimal is not pi
        ("(5,1)", r"\boxed{(5, 1)}", 1.0),  # ordered pairs keep their order
        ("(5,1)", r"\boxed{(1, 5)}", 0.0),
        ("6", r"\boxed{x = 6}", 1.0),
        ("15", r"\boxed{15 \text{ ways}}", 1.0),
        ("3", "The final answer is 3.", 1.0),  # no box: math-verify's own final-answer anchor
        ("3", r"\boxed{3} or maybe \boxed{2}", 0.0),  # the last box is the answer
        (r"\frac{1}{3}", r"\boxed{0.33}", 0.0),
        (r"\frac{1}{3}", "", 0.0),
    ],
)
def test_math_verifier(reference, completion, reward):
    assert score_math(reference, completion) == reward


def test_unparseable_reference_raises_so_the_pool_reports_it():
    with pytest.raises(ValueError, match="reference"):
        equivalent("", "1")


# -- the verifier pool ------------------------------------------------------------------------------------------------
# Module-level so spawn workers can import them by reference.
def crash_on_seven(x: int) -> float:
    if x == 7:
        raise RuntimeError("verifier bug")
    return 1.0 if x % 2 else 0.0


def die_on_seven(x: int) -> float:
    if x == 7:
        os._exit(3)  # the worker process dies mid-call
    return 1.0 if x % 2 else 0.0


def hang_on_seven(x: int) -> float:
    if x == 7:
        time.sleep(3600)
    return 1.0 if x % 2 else 0.0


def out_of_range(x: int) -> float:
    return {0: float("nan"), 1: 1.5, 2: -0.1}.get(x, 0.25)


def test_guarded_turns_exceptions_and_bad_values_into_zero():
    assert guarded(crash_on_seven, (7,)) == (0.0, "RuntimeError: verifier bug")
    assert guarded(crash_on_seven, (3,)) == (1.0, None)
    assert [guarded(out_of_range, (x,))[0] for x in range(4)] == [0.0, 0.0, 0.0, 0.25]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_crashing_verifier_gives_zero_and_a_warning(workers, caplog):
    pool = VerifierPool("unit", workers=workers, item_timeout_s=5.0)
    try:
        with caplog.at_level(logging.WARNING):
            rewards = pool.map(crash_on_seven, [(x,) for x in range(10)], [f"p{x}" for x in range(10)])
    finally:
        pool.close()
    assert rewards == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert "verifier failed on 1 of 10" in caplog.text and "p7" in caplog.text


def test_a_dying_worker_costs_only_its_own_item(caplog):
    pool = VerifierPool("unit", workers=2, item_timeout_s=5.0)
    try:
        with caplog.at_level(logging.WARNING):
            rewards = pool.map(die_on_seven, [(x,) for x in range(10)], [f"p{x}" for x in range(10)])
        assert rewards == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        assert "p7: verifier process died" in caplog.text
        assert pool.map(die_on_seven, [(1,), (3,)], ["a", "b"]) == [1.0, 1.0]  # the pool was rebuilt
    finally:
        pool.close()


def test_a_hanging_verifier_is_cut_at_the_deadline_and_the_pool_recovers():
    # startup_s: starting 2 spawn workers took 2 s at load 8.7 on 2 cores; 30 s leaves room for far worse, so only the
    # hanging item misses the batch deadline (4 items a worker x 0.5 s + 30 s).
    pool = VerifierPool("unit", workers=2, item_timeout_s=0.5, startup_s=30.0)
    try:
        start = time.monotonic()
        rewards = pool.map(hang_on_seven, [(x,) for x in range(8)], [f"p{x}" for x in range(8)])
        # The hang lasts 3600 s: only a pool that waits for it, instead of cutting it at its 32 s deadline, gets here
        # after 600 s, however loaded the machine.
        assert time.monotonic() - start < 600
        assert rewards[7] == 0.0 and rewards[1] == 1.0 and rewards[0] == 0.0
        assert pool.map(hang_on_seven, [(1,), (2,)], ["a", "b"]) == [1.0, 0.0]
    finally:
        pool.close()
