"""The written claims as tests (claims.py) on synthetic runs and a synthetic diagnostics CSV with known answers: a
claim holds, is contradicted or is not separated exactly as the paired differences say, arms pair across
experiments by (seed, draw), and equality claims are never "confirmed"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from passk_exp.toylab.claims import Contrast, diagnostics_claims, training_claims, write_claims


def _runs() -> pd.DataFrame:
    """15 units (5 seeds × 3 draws, each draw shifting everything by 0.1·draw). Arms: 'good' K=4 is 'base' K=1 plus
    0.02 in every unit (experiment e1); 'twin' K=1 repeats 'base' exactly (e2); 'noisy' K=1 is 'base' plus zero-mean
    noise (e2)."""
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(5):
        for draw in range(3):
            base = 0.3 + 0.1 * draw + rng.normal(0, 0.01)
            for method, k, value, experiment in (
                ("base", 1, base, "e1"), ("good", 4, base + 0.02, "e1"), ("twin", 1, base, "e2"),
                ("noisy", 1, base + rng.normal(0, 0.01), "e2"),
            ):
                rows.append({"method": method, "K": k, "seed": seed, "draw": draw, "experiment": experiment,
                             "eval/pass_at_1": value})
    return pd.DataFrame(rows)


def test_training_verdicts_follow_the_paired_differences():
    contrasts = [
        Contrast("up", "good beats base", "ours", ("good", "4"), ("base", "1"), 1, experiments=("e1",)),
        Contrast("down", "base beats good", "ours", ("base", "1"), ("good", "4"), 1, experiments=("e1",)),
        Contrast("same", "twin equals base (across experiments)", "ours", ("twin", "1"), ("base", "1"), 1, "=",
                 experiments=("e1", "e2")),
        Contrast("tie", "noisy beats base", "ours", ("noisy", "1"), ("base", "1"), 1, experiments=("e1", "e2")),
        Contrast("absent", "an arm no run has", "ours", ("none", "1"), ("base", "1"), 1, experiments=("e1",)),
    ]
    table = training_claims(_runs(), contrasts).set_index("id")
    assert list(table.index) == ["up", "down", "same", "tie"]  # a contrast without runs is left out, not faked
    assert table.loc["up", "verdict"] == "holds" and table.loc["up", "diff"] == pytest.approx(0.02)
    assert table.loc["up", "units"] == 15 and table.loc["up", "draws_ahead"] == "3/3"
    assert table.loc["down", "verdict"] == "contradicted"
    assert table.loc["same", "verdict"] == "identical in every unit" and table.loc["same", "p_holm"] == 1.0
    assert table.loc["tie", "verdict"] == "not separated"
    assert table.loc["tie", "lo"] < 0 < table.loc["tie", "hi"]


def test_diagnostics_verdicts_use_both_standard_errors(tmp_path):
    pd.DataFrame([
        {"label": "a", "K": 4, "n": 64, "p": "0.5", "rel_var": 1.0, "rel_var_se": 0.01},
        {"label": "b", "K": 4, "n": 64, "p": "0.5", "rel_var": 2.0, "rel_var_se": 0.01},
        {"label": "a", "K": 4, "n": 64, "p": "ladder", "rel_var": 1.0, "rel_var_se": 0.3},
        {"label": "b", "K": 4, "n": 64, "p": "ladder", "rel_var": 1.5, "rel_var_se": 0.3},
    ]).to_csv(tmp_path / "d.csv", index=False)
    contrasts = [Contrast(f"{p}", "a has lower variance", "W", ("a", "4"), ("b", "4"), 0, "<", "rel_var", file="d.csv",
                          p=p) for p in ("0.5", "ladder", "0.9")]
    table = diagnostics_claims(tmp_path, contrasts).set_index("id")
    assert list(table.index) == ["0.5", "ladder"]  # no row at p = 0.9: left out
    assert table.loc["0.5", "verdict"] == "holds"
    # ladder: −0.5 ± 1.96·hypot(0.3, 0.3) = −0.5 ± 0.83: not separated
    assert table.loc["ladder", "verdict"] == "not separated"
    assert table.loc["ladder", "hi"] == pytest.approx(-0.5 + 1.959964 * np.hypot(0.3, 0.3), rel=1e-5)
    paths = write_claims(training_claims(_runs(), [Contrast("up", "x", "ours", ("good", "4"), ("base", "1"), 1,
                                                            experiments=("e1",))]), table.reset_index(), tmp_path)
    text = paths[0].read_text()
    assert "Training runs (1 contrasts" in text and "Estimator diagnostics (2 contrasts" in text
