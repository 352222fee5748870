"""Interval and test math of the analysis: a two-level bootstrap over seeds × problems, percentile intervals, bootstrap
p-values, Holm's step-down correction, and the seed-level t fallback. Pure numpy/scipy; no pandas, no I/O.

The bootstrap resamples, in each of B replicates, the evaluation problems (with replacement, P of P) and, when an arm
has at least two seeds, its seeds (S of S); a replicate's statistic is the mean over the resampled seeds of each
seed's mean over the resampled problems. Replicates are represented by multiplicity weights (how often each index was
drawn, divided by the draw count), so a replicate mean is one matrix product instead of a gather: values [S, P],
problem weights [B, P], seed weights [B, S] -> [B]. Pairing: arms evaluated on the same problems share one problem
weight matrix, so a difference of two arms' replicates is a paired bootstrap of the difference; seeds are separate
trainings and are resampled independently per arm. What this file leaves out: which values to feed (`intervals`),
what the arms and references are (`comparisons`).
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000  # B
ALPHA = 0.05  # every interval is (1 - ALPHA), every verdict is at level ALPHA
RNG_SEED = 15  # fixed: the same store gives the same intervals on every run of the analysis


def multiplicity_weights(rng: np.random.Generator, size: int, resamples: int) -> np.ndarray:
    """[B, size]: row b counts how often each index was drawn in `size` draws with replacement, divided by `size`
    (each row sums to 1). size = 1 gives all ones: a single seed is not resampled."""
    if size < 1:
        raise ValueError(f"size={size}: a bootstrap needs at least one item")
    counts = rng.multinomial(size, np.full(size, 1.0 / size), size=resamples)
    return counts.astype(np.float64) / size


def resampled_means(values: np.ndarray, problem_weights: np.ndarray, seed_weights: np.ndarray) -> np.ndarray:
    """values [S, P] (finite), problem_weights [B, P], seed_weights [B, S] -> [B] replicate means."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a finite [S, P] array; got shape {values.shape}")
    if problem_weights.shape[1] != values.shape[1] or seed_weights.shape[1] != values.shape[0]:
        raise ValueError(f"weights {problem_weights.shape}, {seed_weights.shape} do not match values {values.shape}")
    per_seed = problem_weights @ values.T  # [B, S]: each seed's mean over the resampled problems
    return np.einsum("bs,bs->b", seed_weights, per_seed)


def percentile_interval(replicates: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) quantiles of the replicates: the percentile bootstrap interval."""
    lo, hi = np.quantile(np.asarray(replicates, dtype=np.float64), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" from replicates of a difference: twice the smaller tail mass at 0,
    with the +1 correction ((1 + count) / (B + 1)) so it is never exactly 0, capped at 1."""
    r = np.asarray(replicates, dtype=np.float64)
    if np.all(r == 0):  # a degenerate replicate set (e.g. identical arms): no evidence either way
        return 1.0
    tail = min(np.count_nonzero(r <= 0), np.count_nonzero(r >= 0))
    return float(min(1.0, 2 * (1 + tail) / (r.size + 1)))


def holm(p_values: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction of m p-values: (adjusted p-values, rejected). The i-th smallest p is compared with
    alpha / (m - i + 1) (i from 1); testing stops at the first that fails. Adjusted p_(i) = max_{j <= i} min(1,
    (m - j + 1) p_(j)), so rejected == adjusted <= alpha. NaN entries are not tested: they stay NaN, not rejected,
    and do not count in m."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = tested.size
    if m:
        order = tested[np.argsort(p[tested], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
        adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted, np.nan_to_num(adjusted, nan=np.inf) <= alpha


def t_interval(values: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """Student-t interval of the mean of S seed-level values; (nan, nan) with fewer than two values."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def welch(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> tuple[float, float, float]:
    """Welch's t-test of mean(a) - mean(b) on seed-level values: (p, lo, hi) of the (1 - alpha) interval; all NaN
    when either side has fewer than two values. Two sides that are each constant and equal give p = 1."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return float("nan"), float("nan"), float("nan")
    if a.std() == 0 and b.std() == 0:
        diff = float(a.mean() - b.mean())
        return (1.0 if diff == 0 else 0.0), diff, diff
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(1 - alpha)
    return float(result.pvalue), float(interval.low), float(interval.high)
