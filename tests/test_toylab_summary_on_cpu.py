"""The toy-lab summary's tables from a synthetic runs frame (no MLflow): per-arm means and intervals, and the K-winner
verdicts, which pair arms by (seed, draw), decide with Holm's procedure over the table, and stay finite and say what
they are when an arm ran once. The statistics (verdicts.py) are checked against scipy's own t-test and a loop Holm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from passk_exp.toylab.summary import comparisons, final_table, winners, write_summary
from passk_exp.toylab.verdicts import decide, draws_won, holm, paired_t


def _runs(values: dict[int, list[float]], draws: list[int] | None = None) -> pd.DataFrame:
    """rloo_k runs at each K, one run per listed eval/pass_at_1 value (unit = its index: seed, and draw from `draws`);
    pass_at_4 = 2 × pass_at_1."""
    rows = [
        {"arm": "rloo_k", "method": "rloo_k", "K": k, "schedule": "fixed", "regularizer": "none",
         "benchmark": "toylab-mixed", "seed": unit, "draw": (draws or [0] * len(vs))[unit], "phase": "toy1",
         "eval/pass_at_1": v, "eval/pass_at_4": 2 * v}
        for k, vs in values.items() for unit, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def test_paired_t_matches_scipy_on_random_differences():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.02, 0.05, size=(6, 15))
    diffs[2, 3] = np.nan  # a unit missing from one arm: that row has 14 units
    got = paired_t(diffs)
    for row, d in enumerate(diffs):
        d = d[~np.isnan(d)]
        ref = stats.ttest_1samp(d, 0.0)
        ci = ref.confidence_interval(0.95)
        assert got.units[row] == len(d)
        assert got.mean[row] == pytest.approx(d.mean(), abs=1e-14)
        assert got.p[row] == pytest.approx(ref.pvalue, rel=1e-10)
        assert (got.lo[row], got.hi[row]) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_paired_t_without_spread_or_with_one_unit():
    got = paired_t(np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1], [0.3, np.nan, np.nan]]))
    assert got.p[0] == 1.0 and got.lo[0] == got.hi[0] == 0.0  # the same runs: no difference
    assert got.p[1] == 0.0 and got.lo[1] == pytest.approx(0.1)  # a difference no seed changes
    assert np.isnan(got.p[2]) and np.isnan(got.lo[2]) and got.mean[2] == pytest.approx(0.3) and got.units[2] == 1


def _holm_loop(p: list[float], alpha: float) -> tuple[list[float], list[bool]]:
    """Holm by the textbook: step through the sorted p-values, multiply the i-th by m − i, stop at the first accept."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    reject, stopped = [False] * m, False
    for rank, i in enumerate(order):
        stopped = stopped or p[i] > alpha / (m - rank)
        reject[i] = not stopped
    return adjusted, reject


def test_holm_matches_the_textbook_procedure():
    adjusted, reject = holm(np.array([0.01, 0.04, 0.03, 0.005]))
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject.tolist() == [True, False, False, True]
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = rng.uniform(0, 0.1, size=int(rng.integers(1, 12)))
        ref_adjusted, ref_reject = _holm_loop(p.tolist(), 0.05)
        got_adjusted, got_reject = holm(p, 0.05)
        assert got_adjusted == pytest.approx(ref_adjusted) and got_reject.tolist() == ref_reject
    adjusted, reject = holm(np.array([np.nan, 0.02, 0.02]))  # nan: no test, and not counted in m
    assert np.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.04, 0.04]) and not reject[0]


def test_decisions_and_draw_counts():
    assert decide(np.array([0.1, -0.1, 0.1, 0.1]), np.array([True, True, False, True]),
                  np.array([5, 5, 5, 1])).tolist() == ["A > B", "A < B", "not separated", "one unit"]
    won, draws = draws_won(np.array([[1.0, 1.0, -1.0, -3.0, 2.0, np.nan]]), np.array([0, 0, 1, 1, 2, 2]))
    assert won.tolist() == [2] and draws == 3


def test_pairing_by_draw_separates_what_a_large_draw_effect_hides():
    """Each draw shifts every arm by ±0.2; K = 1 is 0.01 ahead in every run. Unpaired, the arms' intervals overlap
    widely; paired by (seed, draw), K = 1 wins. Ks 4 and 16 are the same distribution: a tie."""
    draws = [0, 1, 2] * 5
    shift = {0: -0.2, 1: 0.0, 2: 0.2}
    noise = np.random.default_rng(2).normal(0, 0.002, size=(3, 15))
    base = [0.3 + shift[g] for g in draws]
    runs = _runs({1: [b + 0.01 + e for b, e in zip(base, noise[0])], 4: [b + e for b, e in zip(base, noise[1])],
                  16: [b + e for b, e in zip(base, noise[2])]}, draws)
    table = final_table(runs, ks=(1, 4))
    one, four = table.loc[table.K == 1].iloc[0], table.loc[table.K == 4].iloc[0]
    assert one["runs"] == 15 and one["draws"] == 3
    assert one["pass_at_1"] - one["pass_at_1_ci"] < four["pass_at_1"] + four["pass_at_1_ci"]  # unpaired: overlap
    compared = comparisons(runs, ks=(1, 4))
    assert len(compared) == 4 and set(compared["best"]) == {1}
    assert (compared["decision"] == "A > B").all() and (compared["draws_ahead"] == 3).all()
    won = winners(runs, ks=(1, 4))
    assert won.loc[0, "best K @1"].startswith("1 (") and won.loc[0, "best K @1"].endswith(") wins")
    tie = winners(runs[runs.K != 1], ks=(1,))
    assert "tie with" in tie.loc[0, "best K @1"]


def test_one_unit_gives_a_difference_never_an_interval_or_a_verdict(tmp_path):
    runs = _runs({1: [0.30], 4: [0.25]})
    won = winners(runs, ks=(1, 4))
    assert won.loc[0, "best K @1"] == "1 (0.300; vs 4: +0.050 abs; draws 1/1) one unit"
    assert won.loc[0, "best K @4"] == "1 (0.600; vs 4: +0.100 abs; draws 1/1) one unit"
    paths = write_summary(runs, tmp_path, "one-unit")
    text = paths[0].read_text()
    assert "inf" not in text and "one unit" in text
    assert paths[1].name == "one-unit_comparisons.csv"
