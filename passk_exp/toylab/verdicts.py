"""The toy lab's decision statistics: paired differences between arms, their t-intervals, and Holm's step-down test.

A toy phase runs every arm on the same units u = (training seed, population draw). Two arms are compared on the units
they share: d_u = value_A(u) − value_B(u), so the problems' difficulty (the draw) and, where it matters, the sampling
seed cancel out of the difference. The interval is Student's t over those units (df = units − 1, level 95% by default)
and the test is the two-sided one-sample t-test of mean(d) = 0. A family of such tests (every comparison one table makes
or one document states) is decided together with Holm's step-down procedure, which keeps the probability of any false
"A > B" in the family at most α (0.05) whatever the dependence between the tests.

Read the interval as conditional on the sampled draws: units that share a draw are not independent draws of a
population, so with 3 draws the t interval over 15 units is the seed-and-draw spread as sampled, not a claim about
every population one could draw (the per-draw sign count `draws_won` shows whether the draws agree).
What this file leaves out: reading runs (summary.py) and wording the documents (claims.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
LEVEL = 0.95


@dataclass(frozen=True)
class Paired:
    """Paired comparisons, one entry per comparison (arrays of shape [m])."""

    mean: np.ndarray  # mean of d over shared units
    lo: np.ndarray  # lower end of the t-interval (nan with fewer than 2 units)
    hi: np.ndarray
    p: np.ndarray  # two-sided p-value of mean(d) = 0 (nan with fewer than 2 units)
    units: np.ndarray  # shared units (int)


def paired_t(diffs: np.ndarray, level: float = LEVEL) -> Paired:
    """diffs [m, u] (nan where a unit is missing from either arm) → the t-interval and p-value of each row's mean.

    A row whose differences are all equal has zero spread: its interval is the point, its p-value 1 when that point
    is 0 (the two arms are the same runs) and 0 otherwise (a difference no seed changes). Rows with one unit get the
    mean only (no spread can be estimated from one unit)."""
    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    present = ~np.isnan(d)
    units = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(units > 0, np.nansum(d, axis=1) / np.maximum(units, 1), np.nan)
        dev = np.where(present, d - mean[:, None], 0.0)
        sd = np.sqrt((dev**2).sum(axis=1) / np.maximum(units - 1, 1))
        se = sd / np.sqrt(np.maximum(units, 1))
        df = np.maximum(units - 1, 1)
        half = stats.t.ppf(0.5 + level / 2, df) * se
        t = np.abs(mean) / se
        p = 2 * stats.t.sf(t, df)
    # Differences that agree to rounding have no spread worth a t statistic (1e-12 of the values' scale).
    flat = sd <= 1e-12 * np.maximum(np.nanmax(np.abs(d), axis=1, initial=0.0), 1e-300)
    p = np.where(flat, np.where(np.abs(mean) <= 1e-12, 1.0, 0.0), p)
    half = np.where(flat, 0.0, half)
    few = units < 2
    return Paired(
        mean=mean,
        lo=np.where(few, np.nan, mean - half),
        hi=np.where(few, np.nan, mean + half),
        p=np.where(few, np.nan, p),
        units=units,
    )


def holm(p: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjustment of a family of p-values [m] → (adjusted p [m], reject [m] at level alpha).

    The i-th smallest p is multiplied by m − i + 1, the running maximum keeps the adjusted values monotone; nan
    (no test possible) is never rejected and does not count towards m."""
    p = np.asarray(p, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m:
        order = np.argsort(p[ok], kind="stable")
        scaled = np.minimum(1.0, (m - np.arange(m)) * p[ok][order])
        values = np.empty(m)
        values[order] = np.maximum.accumulate(scaled)
        adjusted[ok] = values
    return adjusted, np.where(ok, adjusted <= alpha, False)


def decide(mean: np.ndarray, reject: np.ndarray, units: np.ndarray) -> np.ndarray:
    """'A > B', 'A < B' (rejected at the family's level, by the sign of the mean difference), 'not separated', or
    'one unit' where no test was possible."""
    mean, reject, units = np.asarray(mean, float), np.asarray(reject, bool), np.asarray(units)
    out = np.where(reject & (mean > 0), "A > B", np.where(reject & (mean < 0), "A < B", "not separated"))
    return np.where(units < 2, "one unit", out)


def draws_won(diffs: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, int]:
    """How many population draws have a positive mean difference, per row of diffs [m, u] (draws [u] labels the
    units), and how many draws there are."""
    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    labels = np.unique(draws)
    member = (np.asarray(draws)[None, :] == labels[:, None])[None, :, :] & ~np.isnan(d)[:, None, :]  # [m, G, u]
    sums = np.where(member, np.nan_to_num(d)[:, None, :], 0.0).sum(axis=2)
    counts = member.sum(axis=2)
    won = (counts > 0) & (sums > 0)  # a draw's mean difference is positive iff its sum is
    return won.sum(axis=1), len(labels)
