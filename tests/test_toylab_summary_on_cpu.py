"""The toy-lab summary's tables from a synthetic runs frame (no MLflow): per-arm means and standard errors, and the
K-winner margins, which must stay finite and say what they are when an arm has one seed (phases 2 and 4)."""

from __future__ import annotations

import pandas as pd
import pytest

from passk_exp.toylab.summary import final_table, winners, write_summary


def _runs(values: dict[int, list[float]]) -> pd.DataFrame:
    """rloo_k runs at each K, one run per listed eval/pass_at_1 value (seed = its index); pass_at_4 = 2 × pass_at_1."""
    rows = [
        {"arm": "rloo_k", "method": "rloo_k", "K": k, "schedule": "fixed", "regularizer": "none",
         "benchmark": "toylab-mixed", "seed": seed, "phase": "toy1", "eval/pass_at_1": v, "eval/pass_at_4": 2 * v}
        for k, vs in values.items() for seed, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def test_the_margin_is_in_standard_errors_when_there_are_seeds():
    table = final_table(_runs({1: [0.30, 0.32], 4: [0.20, 0.22]}), ks=(1, 4))
    assert table.loc[table.K == 1, "pass_at_1"].item() == pytest.approx(0.31)
    assert table.loc[table.K == 1, "pass_at_1_se"].item() == pytest.approx(0.01)
    won = winners(table, ks=(1, 4))
    # (0.31 − 0.21) / hypot(0.01, 0.01) = 7.07 s.e.
    assert won.loc[0, "best K @1"] == "1 (0.310, +7.1se)"


def test_one_seed_gives_an_absolute_margin_never_an_infinite_one(tmp_path):
    runs = _runs({1: [0.30], 4: [0.25]})
    won = winners(final_table(runs, ks=(1, 4)), ks=(1, 4))
    assert won.loc[0, "best K @1"] == "1 (0.300, +0.050 abs)"
    assert won.loc[0, "best K @4"] == "1 (0.600, +0.100 abs)"
    text = write_summary(runs, tmp_path, "one-seed")[0].read_text()
    assert "inf" not in text and "abs" in text
