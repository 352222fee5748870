"""pass@k / fail@k against exact rational arithmetic up to n = 1024, the curve, and max@k against brute force."""

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passk_exp.metrics import fail_at_k, max_at_k, pass_at_k, pass_at_k_curve


def exact_fail(n, c, k):
    return Fraction(math.comb(n - c, k), math.comb(n, k))


def test_pass_at_k_equals_fractions_on_random_cases_up_to_1024():
    rnd = random.Random(0)
    cases = [(1024, 0, 1024), (1024, 1, 1024), (1024, 1, 1), (1024, 5, 512), (1030, 5, 515), (1024, 1023, 1)]
    for _ in range(300):
        n = rnd.randint(1, 1024)
        cases.append((n, rnd.randint(0, n), rnd.randint(1, n)))
    n, c, k = (np.array(x) for x in zip(*cases))
    got_pass, got_fail = pass_at_k(n, c, k), fail_at_k(n, c, k)
    assert isinstance(got_pass, np.ndarray) and got_pass.shape == n.shape
    for (nn, cc, kk), p, f in zip(cases, got_pass, got_fail):
        ef = exact_fail(nn, cc, kk)
        assert abs(p - float(1 - ef)) <= 1e-12
        assert (f == 0.0) if ef == 0 else abs(f / float(ef) - 1) <= 1e-9, (nn, cc, kk)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 1024).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_scalar_matches_fractions(case):
    n, c, k = case
    out = pass_at_k(n, c, k)
    assert isinstance(out, float)
    assert abs(out - float(1 - exact_fail(n, c, k))) <= 1e-12


def test_edges_are_exact_and_n_k_1024_is_finite():
    assert pass_at_k(1024, 0, 1024) == 0.0
    assert pass_at_k(1024, 1, 1024) == 1.0
    assert pass_at_k(16, 0, 3) == 0.0 and pass_at_k(16, 14, 3) == 1.0 and pass_at_k(16, 13, 3) < 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4, abs=1e-15)
    out = pass_at_k(np.full(1025, 1024), np.arange(1025), 1024)
    assert np.all(np.isfinite(out)) and out[0] == 0.0 and np.all(out[1:] == 1.0)
    assert fail_at_k(1024, 600, 400) > 0  # tiny but kept with full relative accuracy
    assert fail_at_k(1024, 600, 400) == pytest.approx(float(exact_fail(1024, 600, 400)), rel=1e-9)


def test_pass_at_k_matches_the_human_eval_estimator():
    def human_eval(n, c, k):  # Chen et al. 2021, the numerically stable form
        return 1.0 if n - c < k else 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))

    for n, c, k in [(10, 3, 2), (200, 17, 100), (1024, 100, 64), (7, 7, 7)]:
        assert pass_at_k(n, c, k) == pytest.approx(human_eval(n, c, k), abs=1e-13)


@pytest.mark.parametrize(
    "args, match",
    [((4, 1, 5), r"k=5 with n=4"), ((4, 1, 0), r"k=0 with n=4"), ((4, 5, 2), r"c=5 with n=4"),
     ((4, -1, 2), r"c=-1 with n=4"), ((4, 1.5, 2), r"c=1.5 must be integer-valued")],
)
def test_pass_at_k_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(*args)


def test_pass_at_k_curve_is_the_mean_over_problems():
    rng = np.random.default_rng(0)
    correct = rng.random((50, 16)) < rng.random((50, 1))
    ks = [1, 2, 4, 8, 16]
    curve = pass_at_k_curve(correct, ks)
    c = correct.sum(1)
    for kk, v in zip(ks, curve):
        assert v == pytest.approx(float(np.mean([float(1 - exact_fail(16, int(ci), kk)) for ci in c])), abs=1e-13)
    assert curve[0] == pytest.approx(correct.mean(), abs=1e-13)
    assert np.all(np.diff(curve) >= 0)
    with pytest.raises(ValueError, match="k=17 with n=16"):
        pass_at_k_curve(correct, [17])
    with pytest.raises(ValueError, match="2-D"):
        pass_at_k_curve(correct[0], [1])


def test_max_at_k_matches_brute_force_and_pass_at_k_on_binary():
    rng = np.random.default_rng(1)
    rewards = rng.integers(0, 4, (6, 6)) / 3.0  # ties
    for k in range(1, 7):
        got = max_at_k(rewards, k)
        for row, v in zip(rewards, got):
            brute = np.mean([max(s) for s in itertools.combinations(row, k)])
            assert v == pytest.approx(brute, abs=1e-13)
    binary = (rng.random((20, 12)) < 0.3).astype(float)
    for k in (1, 5, 12):
        assert np.allclose(max_at_k(binary, k), pass_at_k(12, binary.sum(1).astype(int), k), atol=1e-13)
    assert isinstance(max_at_k([0.1, 0.9, 0.4], 2), float)
    assert np.all(np.isfinite(max_at_k(rng.random((2, 1024)), 512)))
    with pytest.raises(ValueError, match="k=4 with n=3"):
        max_at_k([0.1, 0.9, 0.4], 4)
    with pytest.raises(ValueError, match="non-finite"):
        max_at_k([0.1, np.nan], 1)
