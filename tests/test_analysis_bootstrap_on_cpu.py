"""analysis.bootstrap and analysis.intervals on synthetic experiments with known answers: Holm by hand, the replicate
means against a gather loop, the intervals against an independent plain-numpy bootstrap, their coverage of the known
population Pass@k, and the paired comparison finding a real difference but not a null one. No MLflow here (the
store-level tests are in test_analysis_records.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import bootstrap
from analysis.comparisons import compare
from analysis.intervals import arm_statistics
from analysis.load import Runs
from analysis.records import RunRecords


# ----------------------------------------------------------------------------------------------- pure math by hand
def test_holm_by_hand():
    adjusted, rejected = bootstrap.holm(np.array([0.01, 0.04, 0.03, 0.005]))
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> running max 0.06
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected.tolist() == [True, False, False, True]
    adjusted, rejected = bootstrap.holm(np.array([0.01, np.nan, 0.02]))  # NaN: not tested, not counted in m
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.02]) and np.isnan(adjusted[1])
    assert rejected.tolist() == [True, False, True]
    # Holm stops at the first failure even when a later p would pass its own threshold on its own
    adjusted, rejected = bootstrap.holm(np.array([0.02, 0.03]))  # 0.02·2 = 0.04 <= 0.05, then 0.03·1 -> max 0.04
    assert rejected.tolist() == [True, True]
    adjusted, rejected = bootstrap.holm(np.array([0.03, 0.04, 0.045]))  # 0.09 > 0.05: none
    assert adjusted == pytest.approx([0.09, 0.09, 0.09]) and not rejected.any()


def test_multiplicity_weights_are_resampling_counts():
    w = bootstrap.multiplicity_weights(np.random.default_rng(0), 7, 500)
    assert w.shape == (500, 7) and np.allclose(w.sum(axis=1), 1.0)
    assert np.allclose(w * 7, np.round(w * 7))  # counts / size
    assert np.array_equal(bootstrap.multiplicity_weights(np.random.default_rng(0), 1, 3), np.ones((3, 1)))


def test_resampled_means_equal_a_gather_loop():
    rng = np.random.default_rng(1)
    values = rng.random((3, 11))
    p_idx, s_idx = rng.integers(11, size=(50, 11)), rng.integers(3, size=(50, 3))
    p_w = np.stack([np.bincount(i, minlength=11) / 11 for i in p_idx])
    s_w = np.stack([np.bincount(i, minlength=3) / 3 for i in s_idx])
    loop = [values[s_idx[b]][:, p_idx[b]].mean() for b in range(50)]
    assert bootstrap.resampled_means(values, p_w, s_w) == pytest.approx(loop, abs=1e-12)


def test_bootstrap_p_value_cases():
    assert bootstrap.bootstrap_p_value(np.zeros(10)) == 1.0
    assert bootstrap.bootstrap_p_value(np.full(99, 0.1)) == pytest.approx(2 / 100)  # (1 + 0) / (B + 1), two-sided
    assert bootstrap.bootstrap_p_value(np.r_[np.full(50, 1.0), np.full(49, -1.0)]) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- synthetic experiments
def make_experiment(probabilities: dict[tuple[str, int], np.ndarray], n: int, rng: np.random.Generator,
                    ks=(1, 2, 4)) -> tuple[Runs, dict[str, RunRecords]]:
    """Runs and records of arms (method, K) whose seeds have the given per-problem success probabilities
    [S, P]: c ~ Binomial(n, p) per problem and seed. Logged finals equal the records' means, as the harness's do."""
    from passk_exp.metrics import pass_at_k

    rows, records = [], {}
    for (method, K), p in probabilities.items():
        for seed, p_seed in enumerate(np.atleast_2d(p)):
            c = rng.binomial(n, p_seed)
            rewards = tuple((np.arange(n) < ci).astype(float) for ci in c)
            run_id = f"{method}-{K}-{seed}"
            ids = tuple(f"q{i:04d}" for i in range(len(c)))
            records[run_id] = RunRecords(step=2, problem_ids=ids, n=np.full(len(c), n), c=c, rewards=rewards)
            row = {"run_id": run_id, "status": "FINISHED", "method": method, "K": K, "seed": seed, "n_eval": str(n),
                   "allow_overlap": False, "train_eval_overlap": 0}
            row.update({f"eval/pass_at_{k}": float(np.mean(pass_at_k(n, c, k))) for k in ks})
            rows.append(row)
    return Runs(pd.DataFrame(rows), {k: f"eval/pass_at_{k}" for k in ks}, {}, ["n_eval"]), records


def population_pass_at(p: np.ndarray, k: int) -> float:
    return float(np.mean(1 - (1 - p) ** k))


def independent_bootstrap(values: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """A plain, obviously-correct bootstrap of the mean of [S, P] values over seeds (when S >= 2) and problems."""
    rng = np.random.default_rng(seed)
    s, p = values.shape
    means = np.empty(resamples)
    for b in range(resamples):
        seeds = rng.integers(s, size=s) if s > 1 else np.zeros(1, dtype=int)
        problems = rng.integers(p, size=p)
        means[b] = values[seeds][:, problems].mean()
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_intervals_match_an_independent_bootstrap_and_means_match_the_logged_finals():
    from passk_exp.metrics import pass_at_k

    rng = np.random.default_rng(2)
    difficulty = rng.beta(0.6, 1.2, size=60)
    seed_shift = np.array([-0.05, 0.0, 0.05])[:, None]
    runs, records = make_experiment({("grpo", 1): np.clip(difficulty + seed_shift, 0, 1),
                                      ("grpo", 4): difficulty[None, :]}, n=16, rng=rng)
    stats = arm_statistics(runs, ["method", "K"], records, resamples=4000)
    assert stats.method == "bootstrap"
    for row, (_, arm) in enumerate(stats.table.iterrows()):
        run_ids = runs.frame.loc[(runs.frame["method"] == arm["method"]) & (runs.frame["K"] == arm["K"]), "run_id"]
        for k in (1, 4):
            values = np.stack([pass_at_k(16, records[r].c, k) for r in run_ids])
            assert arm[f"pass_at_{k}_mean"] == pytest.approx(runs.frame.loc[run_ids.index, f"eval/pass_at_{k}"].mean())
            lo, hi = independent_bootstrap(values, 4000, seed=100 + k)
            width = hi - lo
            assert arm[f"pass_at_{k}_hi"] - arm[f"pass_at_{k}_lo"] == pytest.approx(width, rel=0.1)
            assert abs(arm[f"pass_at_{k}_lo"] - lo) < 0.1 * width and abs(arm[f"pass_at_{k}_hi"] - hi) < 0.1 * width
    assert stats.table["seeds"].tolist() == [3, 1]
    assert np.isnan(stats.table.loc[1, "pass_at_1_std"])  # one seed: no fake ± 0 ...
    assert stats.table.loc[1, "pass_at_1_hi"] > stats.table.loc[1, "pass_at_1_lo"]  # ... but an interval from problems


def test_intervals_cover_the_population_pass_at_k():
    """Each replicate draws fresh problems (p ~ Beta) and outcomes; the 95% interval should hold the population
    Pass@k about 95% of the time (300 replicates: a range of 4 binomial standard errors around 0.95)."""
    rng = np.random.default_rng(3)
    a, b = 0.8, 1.5
    population = rng.beta(a, b, size=2_000_000)
    truth = {k: population_pass_at(population, k) for k in (1, 4)}
    covered = {1: 0, 4: 0}
    widths = []
    replicates = 300
    for _ in range(replicates):
        runs, records = make_experiment({("grpo", 1): rng.beta(a, b, size=80)}, n=16, rng=rng)
        stats = arm_statistics(runs, ["method", "K"], records, resamples=1000)
        row = stats.table.iloc[0]
        for k in covered:
            covered[k] += row[f"pass_at_{k}_lo"] <= truth[k] <= row[f"pass_at_{k}_hi"]
        widths.append(row["pass_at_1_hi"] - row["pass_at_1_lo"])
    for k, hits in covered.items():
        assert 0.90 <= hits / replicates <= 0.99, (k, hits)
    # width ≈ 2·1.96·sd(p)/sqrt(P) with sampling noise on top: the right order, not a degenerate interval
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    assert 0.9 * 2 * 1.96 * sd / np.sqrt(80) <= np.median(widths) <= 1.3 * 2 * 1.96 * sd / np.sqrt(80)


def test_paired_comparison_finds_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(11)
    logit = rng.normal(-0.5, 2.0, size=200)  # very unequal problems: pairing removes this spread from the difference
    base = 1 / (1 + np.exp(-logit))
    better = 1 / (1 + np.exp(-(logit + 0.6)))
    runs, records = make_experiment({("grpo", 1): np.stack([base, base]), ("grpo", 4): np.stack([better, better]),
                                     ("rloo_k", 1): np.stack([base, base])}, n=8, rng=rng)
    stats = arm_statistics(runs, ["method", "K"], records)
    table = compare(stats, ["method", "K"]).set_index(["method", "K", "k"])
    assert set(table.index.get_level_values(0)) == {"grpo", "rloo_k"}  # grpo K=1 is everyone's reference
    assert (table.loc[("grpo", 4), "verdict"] == "wins").all()
    assert (table.loc[("grpo", 4), "diff_lo"] > 0).all()
    assert (table.loc[("rloo_k", 1), "verdict"] == "no decision").all()
    # pairing: the interval of the difference is narrower than the two arms' intervals combined as if independent
    half = lambda r, k: (stats.table.loc[r, f"pass_at_{k}_hi"] - stats.table.loc[r, f"pass_at_{k}_lo"]) / 2
    paired_half = (table.loc[("grpo", 4, 1), "diff_hi"] - table.loc[("grpo", 4, 1), "diff_lo"]) / 2
    assert paired_half < 0.5 * np.hypot(half(0, 1), half(1, 1))


def test_null_comparisons_rarely_reject():
    """Arms drawn from the same distributions: over 60 experiments, Holm's verdicts say "wins"/"loses" in at most
    a few (the family-wise level is 5% per table)."""
    rng = np.random.default_rng(5)
    false = 0
    for _ in range(60):
        p = rng.beta(0.7, 1.3, size=60)
        runs, records = make_experiment({("grpo", 1): np.stack([p, p]), ("grpo", 4): np.stack([p, p])}, n=8, rng=rng)
        table = compare(arm_statistics(runs, ["method", "K"], records, resamples=1000), ["method", "K"])
        false += table["verdict"].isin(["wins", "loses"]).any()
    assert false <= 8  # expected about 3 (5% of 60); 8 is far in the binomial tail


def test_arms_on_different_problems_get_no_decision_and_seeds_on_different_problems_are_refused():
    from analysis.load import AnalysisError

    rng = np.random.default_rng(6)
    runs, records = make_experiment({("grpo", 1): rng.random(20), ("grpo", 4): rng.random(20)}, n=4, rng=rng)
    moved = records["grpo-4-0"]
    records["grpo-4-0"] = RunRecords(moved.step, tuple(f"x{i}" for i in range(20)), moved.n, moved.c, moved.rewards)
    table = compare(arm_statistics(runs, ["method", "K"], records, resamples=200), ["method", "K"])
    assert set(table["verdict"]) == {"no decision (different eval problems)"} and table["p"].isna().all()
    runs, records = make_experiment({("grpo", 1): rng.random((2, 20))}, n=4, rng=rng)
    moved = records["grpo-1-1"]
    records["grpo-1-1"] = RunRecords(moved.step, tuple(f"x{i}" for i in range(20)), moved.n, moved.c, moved.rewards)
    with pytest.raises(AnalysisError, match="different problem sets"):
        arm_statistics(runs, ["method", "K"], records)
