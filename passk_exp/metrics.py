"""Unbiased evaluation metrics from n samples per problem: pass@k, fail@k, the pass@k curve and max@k.

pass@k = 1 − C(n−c, k)/C(n, k) (Chen et al. 2021; W Eq. 3) in product form 1 − Π_{j=n−c+1}^{n} (1 − k/j): no factorials,
no overflow at n = k = 1024, exactly 0 when c = 0 and exactly 1 when n − c < k. max@k is W's unbiased estimate of the
expected maximum of k iid rewards (W §3.1), which equals pass@k on 0/1 rewards. Plain numbers and numpy arrays in, the
same kind out. What this file leaves out: sampling and scoring (evaluation.py) and the training-time estimators.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from passk_exp.estimators.tables import order_weights


def _is_scalar(x: object) -> bool:
    return np.ndim(x) == 0


def _as_int_array(name: str, x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}={x!r} must be integer-valued")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}={x!r} must be integer-valued")
    return arr.astype(np.int64)


def _fail_table(n: int, k: int) -> np.ndarray:
    """fail@k(n, c) for c = 0..n: Π_{t<c} (n−t−k)/(n−t), one cumulative product (exactly 0 once n − c < k)."""
    out = np.zeros(n + 1, dtype=np.float64)
    out[0] = 1.0
    if n - k >= 1:
        j = np.arange(n, k, -1, dtype=np.float64)  # j = n, n−1, ..., k+1: the factors (j − k)/j, all > 0
        out[1 : n - k + 1] = np.cumprod((j - k) / j)
    return out


def fail_at_k(n, c, k):
    """C(n−c, k)/C(n, k) = Π_{j=n−c+1}^{n} (1 − k/j), vectorized over arrays of n, c and k (broadcast).

    Keeps full relative accuracy when tiny. Needs 1 ≤ k ≤ n and 0 ≤ c ≤ n (else ValueError). float or ndarray out.
    """
    n_a, c_a, k_a = np.broadcast_arrays(_as_int_array("n", n), _as_int_array("c", c), _as_int_array("k", k))
    if np.any(k_a < 1) or np.any(k_a > n_a):
        i = int(np.flatnonzero((k_a < 1) | (k_a > n_a))[0])
        bad_k, bad_n = int(k_a.flat[i]), int(n_a.flat[i])
        raise ValueError(f"k={bad_k} with n={bad_n}: pass@k needs 1 <= k <= n; raise n or lower k")
    if np.any(c_a < 0) or np.any(c_a > n_a):
        i = int(np.flatnonzero((c_a < 0) | (c_a > n_a))[0])
        raise ValueError(f"c={int(c_a.flat[i])} with n={int(n_a.flat[i])}: the number correct must be in [0, n]")
    out = np.empty(n_a.shape, dtype=np.float64)
    pairs = np.stack([n_a.ravel(), k_a.ravel()], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    flat_c, flat_out = c_a.ravel(), out.reshape(-1)
    for idx, (nn, kk) in enumerate(unique):  # one table per distinct (n, k); usually a single pair
        sel = inverse == idx
        flat_out[sel] = _fail_table(int(nn), int(kk))[flat_c[sel]]
    if _is_scalar(n) and _is_scalar(c) and _is_scalar(k):
        return float(out)
    return out


def pass_at_k(n, c, k):
    """Unbiased pass@k = 1 − C(n−c, k)/C(n, k) from c correct of n samples (W Eq. 3). float or ndarray out."""
    return 1.0 - fail_at_k(n, c, k)


def pass_at_k_curve(correct, ks: Sequence[int]) -> np.ndarray:
    """Mean unbiased pass@k over problems for each k in `ks`: correct bool [P, n] → float64 [len(ks)].

    Counts per problem are histogrammed once, so each k costs O(n), not O(P·k).
    """
    arr = np.asarray(correct)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"correct must be a non-empty 2-D [P, n] array; got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("correct must be boolean (or 0/1) [P, n]")
        arr = arr.astype(bool)
    n = arr.shape[1]
    ks_list = [int(_as_int_array("k", kk)) for kk in ks]
    counts = np.bincount(arr.sum(axis=1), minlength=n + 1).astype(np.float64)
    out = np.empty(len(ks_list), dtype=np.float64)
    for i, kk in enumerate(ks_list):
        if not 1 <= kk <= n:
            raise ValueError(f"k={kk} with n={n}: pass@k needs 1 <= k <= n; raise n or lower k")
        out[i] = float(counts @ (1.0 - _fail_table(n, kk))) / arr.shape[0]
    return out


def max_at_k(rewards, k: int):
    """Unbiased E[max of k iid rewards] per problem (W §3.1): rewards [P, n] → [P], or [n] → float.

    With g sorted ascending, ρ^(g)(n, k) = (1/C(n, k))·Σ_{i=k}^{n} C(i−1, k−1)·g_(i); the weights are exact ratios of
    integers. Equals pass@k on 0/1 rewards. Needs finite rewards and 1 ≤ k ≤ n.
    """
    arr = np.asarray(rewards, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise ValueError(f"rewards must be [n] or [P, n] with n >= 1; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("rewards hold a non-finite value: max@k needs finite rewards")
    n = arr.shape[-1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} with n={n}: max@k needs an integer 1 <= k <= n; raise n or lower k")
    weights = np.asarray(order_weights(n, int(k)), dtype=np.float64)
    out = np.sort(arr, axis=-1) @ weights
    return float(out) if arr.ndim == 1 else out
