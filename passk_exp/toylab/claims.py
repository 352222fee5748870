"""The written claims of docs/toylab/README.md as tests: each one a paired contrast between two arms of the toy phases
(or two rows of the estimator diagnostics), with its 95% interval and a decision at α = 0.05 under Holm's procedure
over the whole family of claims.

    python -m passk_exp.toylab.claims --tracking-uri URI --diagnostics DIR --out DIR

Training contrasts pair the two arms by (training seed, population draw) across the named experiments (phases share
the `mixed` population and its draws, so phase 3's annealed arm is paired with phase 1's K = 1 arm); the family is
every training contrast below. Diagnostics contrasts compare two Monte-Carlo estimates with a z-test on their
standard errors (conservative: rows of one grid point share the seed, so their errors are positively correlated);
they are a second family. A claim with `expect=">"` holds when A > B is decided, is contradicted when A < B is, and is
otherwise not separated; `expect="="` (a claim of equality) is contradicted when the two are separated and otherwise
only "not separated", with the interval saying how large a difference the data leave room for; two arms whose
runs agree exactly in every unit are "identical in every unit". `who` says whose
claim it is and in what scope (population limit or finite n; stated by the seed text or inferred by us).
What this file leaves out: the per-method K tables (summary.py) and the statistics themselves (verdicts.py).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from passk_exp.toylab.report import markdown_table
from passk_exp.toylab.summary import UNIT, load_runs
from passk_exp.toylab.verdicts import ALPHA, LEVEL, decide, draws_won, holm, paired_t


@dataclass(frozen=True)
class Contrast:
    """A − B on one metric. Training: arms (method label, K or schedule prefix), metric `eval/<metric>_<k>`.
    Diagnostics: rows (label, K, n, p) of the diagnostics CSV `file`, column `metric` with `<metric>_se`."""

    id: str
    claim: str
    who: str
    a: tuple[str, str]
    b: tuple[str, str]
    k: int
    expect: str = ">"
    metric: str = "pass_at"
    experiments: tuple[str, ...] = ("toylab-phase1",)
    file: str = ""  # diagnostics only
    n: int = 64
    p: str = ""


P1, P3, P13 = ("toylab-phase1",), ("toylab-phase3",), ("toylab-phase1", "toylab-phase3")
P2, MAXK = ("toylab-phase2", "toylab-phase1"), ("toylab-maxk",)  # phase 2 reads phase 1's runs of 4 methods
ADAPTIVE, ANNEAL = "adaptive", "anneal"

TRAINING = [
    Contrast("T1", "the biased plug-in beats the unbiased rloo_k at large k: biased_k K=16 vs rloo_k K=16, Pass@16",
             "ours (finite n, this toy)", ("biased_k", "16"), ("rloo_k", "16"), 16),
    Contrast("T2", "biased_k K=16 vs rloo_k K=64 (rloo_k's best Pass@64 arm), Pass@64", "ours",
             ("biased_k", "16"), ("rloo_k", "64"), 64),
    Contrast("T3", "grpo-based K=1 (biased_k K=1 runs as grpo) beats rloo-based K=1 (rloo_k K=1) at Pass@1", "ours",
             ("biased_k", "1"), ("rloo_k", "1"), 1),
    Contrast("T4", "at K=4 rloo_k beats pkpo_loo_minus_one (= reinforce_k) at Pass@16", "ours",
             ("rloo_k", "4"), ("pkpo_loo_minus_one", "4"), 16),
    Contrast("T5", "C: Pass@k shaping trades Pass@1 for Pass@k — passk_shaping K=16 vs K=1 at Pass@64",
             "C (finite n, training)", ("passk_shaping", "16"), ("passk_shaping", "1"), 64),
    Contrast("T6", "C: ... and pays in Pass@1 — passk_shaping K=1 vs K=16 at Pass@1", "C (finite n, training)",
             ("passk_shaping", "1"), ("passk_shaping", "16"), 1),
    *[Contrast(f"T7{m[0]}@{k}", f"N §2: adaptive K beats fixed K — {m} adaptive vs fixed K=16 at Pass@{k}",
               "N (proposal, no proof)", (m, ADAPTIVE), (m, "16"), k, experiments=P3)
      for m in ("rloo_k", "pkpo_loo_minus_one", "biased_k") for k in (1, 64)],
    Contrast("T8a", "W §5.2.3: annealing 16→1 recovers Pass@1 — rloo_k anneal vs rloo_k K=1 at Pass@1",
             "W (training, their scale)", ("rloo_k", ANNEAL), ("rloo_k", "1"), 1, expect="=", experiments=P13),
    Contrast("T8b", "W §5.2.3: ... and keeps Pass@k — rloo_k anneal vs K=1 at Pass@64", "W (training)",
             ("rloo_k", ANNEAL), ("rloo_k", "1"), 64, experiments=P13),
    Contrast("T8c", "... but not all of it — rloo_k fixed K=16 vs anneal at Pass@64", "ours",
             ("rloo_k", "16"), ("rloo_k", ANNEAL), 64, experiments=P3),
    Contrast("T9a", "U: the Pass@K mixtures collapse to skew-R — passk_mix K=4 vs skew_r at Pass@1",
             "U remark; our passk_mix orientation was chosen from it (cannot confirm it)",
             ("passk_mix", "4"), ("skew_r", "1"), 1, expect="=", experiments=P2),
    Contrast("T9b", "... passk_mix K=4 vs skew_r at Pass@64", "U remark; convention chosen from it",
             ("passk_mix", "4"), ("skew_r", "1"), 64, expect="=", experiments=P2),
    Contrast("T9c", "... passk_mix K=64 vs skew_r at Pass@64 (identical by construction: shaping is 0 at K=n)",
             "U remark; convention chosen from it", ("passk_mix", "64"), ("skew_r", "1"), 64, expect="=",
             experiments=P2),
    Contrast("T10", "pkpo_loo_minus_one ≡ reinforce_k on binary rewards (K=4, Pass@64)", "ours (algebra)",
             ("pkpo_loo_minus_one", "4"), ("reinforce_k", "4"), 64, expect="=", experiments=P2),
    Contrast("T11", "lower variance did not train better: pkpo_loo K=4 beats pkpo_loo_minus_one K=4 at Pass@64",
             "ours", ("pkpo_loo", "4"), ("pkpo_loo_minus_one", "4"), 64, experiments=P2),
    Contrast("T12", "the baseline matters on continuous rewards: loo−1 K=64 beats pkpo_loo K=64 at max@64", "ours",
             ("pkpo_loo_minus_one", "64"), ("pkpo_loo", "64"), 64, metric="max_at", experiments=MAXK),
]

_VAR = "rel_var"
DIAGNOSTICS = [
    *[Contrast(f"D1 p={p} K={k}", f"U: the leave-one-out baseline lowers variance — rloo_k vs reinforce_k, K={k}, "
               f"p={p}", "U (baseline as variance reduction; inferred by us from the RLOO form, Eq. 16)",
               ("rloo_k", str(k)), ("reinforce_k", str(k)), 0, expect="<", metric=_VAR, file="diagnostics.csv", p=p)
      for k in (4, 16) for p in ("0.01", "0.1", "0.5", "0.9", "ladder")],
    *[Contrast(f"D2 p={p} K={k}", f"W: loo−1 is the lowest-variance PKPO estimator — vs pkpo_loo, K={k}, p={p}",
               "W (stated, finite n)", ("pkpo_loo_minus_one", str(k)), ("pkpo_loo", str(k)), 0, expect="<",
               metric=_VAR, file="diagnostics.csv", p=p)
      for k in (4, 16) for p in ("0.01", "0.1", "0.5", "0.9", "ladder")],
    *[Contrast(f"D3 offset={o} K={k}", f"W: loo−1 lowest variance on continuous rewards — vs pkpo_loo, K={k}, "
               f"offset {o}", "W (stated, finite n)", ("pkpo_loo_minus_one", str(k)), ("pkpo_loo", str(k)), 0,
               expect="<", metric=_VAR, file="diagnostics_maxk.csv", p=o)
      for k in (4, 16) for o in ("0.5", "2.0", "4.0")],
]


def _arm_rows(runs: pd.DataFrame, arm: tuple[str, str]) -> pd.DataFrame:
    method, k = arm
    label = runs["K"].astype(str)
    match = label.str.startswith(k) if k in (ADAPTIVE, ANNEAL) else (label == k)
    return runs[(runs["method"] == method) & match]


def _verdict(expect: str, decision: str) -> str:
    if decision == "one unit":
        return "no test (one unit)"
    if expect == "=":
        return "not separated" if decision == "not separated" else "contradicted (separated)"
    wanted, opposite = ("A > B", "A < B") if expect == ">" else ("A < B", "A > B")
    return {wanted: "holds", opposite: "contradicted"}.get(decision, "not separated")


def training_claims(runs: pd.DataFrame, contrasts: Sequence[Contrast] = TRAINING, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per contrast found in `runs` (arms and metric present): A − B paired by unit, interval, Holm over the
    rows, verdict. runs: summary.load_runs of every experiment the contrasts name (column `experiment` added)."""
    units = runs[UNIT].drop_duplicates().sort_values(UNIT).reset_index(drop=True)
    meta, rows = [], []
    for c in contrasts:
        col = f"eval/{c.metric}_{c.k}"
        pool = runs[runs["experiment"].isin(c.experiments)]
        a, b = _arm_rows(pool, c.a), _arm_rows(pool, c.b)
        if a.empty or b.empty or col not in pool:
            continue
        va = units.merge(a.groupby(UNIT)[col].mean().reset_index(), on=UNIT, how="left")[col]
        vb = units.merge(b.groupby(UNIT)[col].mean().reset_index(), on=UNIT, how="left")[col]
        meta.append(c)
        rows.append((va - vb).to_numpy(dtype=float))
    if not rows:
        return pd.DataFrame()
    diffs = np.stack(rows)
    test = paired_t(diffs)
    adjusted, reject = holm(test.p, alpha)
    won, draws = draws_won(diffs, units["draw"].to_numpy())
    decision = decide(test.mean, reject, test.units)
    return pd.DataFrame(
        {"id": [c.id for c in meta], "claim": [c.claim for c in meta], "who": [c.who for c in meta],
         "metric": [f"{c.metric}_{c.k}" for c in meta], "diff": test.mean, "lo": test.lo, "hi": test.hi,
         "units": test.units, "draws_ahead": [f"{w}/{draws}" for w in won], "p_holm": adjusted,
         "verdict": [("identical in every unit" if np.all(row[~np.isnan(row)] == 0) else _verdict(c.expect, d))
                     for c, d, row in zip(meta, decision, diffs)]}
    )


def _at_p(column: pd.Series, p: str) -> pd.Series:
    """Rows at grid point p: 'ladder', or a number compared as a number (the CSV writes 0.5 and 2.0 alike)."""
    if p == "ladder":
        return column.astype(str) == "ladder"
    return pd.to_numeric(column, errors="coerce") == float(p)


def diagnostics_claims(folder: Path, contrasts: Sequence[Contrast] = DIAGNOSTICS, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per diagnostics contrast whose rows exist (and are not saturated): A − B of `metric` with a z interval
    on hypot(se_A, se_B), Holm over the rows, verdict."""
    frames: dict[str, pd.DataFrame] = {}
    meta, values = [], []
    for c in contrasts:
        if c.file not in frames:
            path = folder / c.file
            frames[c.file] = pd.read_csv(path, dtype={"p": str}) if path.exists() else pd.DataFrame()
        df = frames[c.file]
        if df.empty:
            continue
        at_p = _at_p(df["p"], c.p)
        pick = [df[(df["label"] == label) & (df["K"] == int(k)) & (df["n"] == c.n) & at_p] for label, k in (c.a, c.b)]
        if any(len(rows) != 1 for rows in pick) or any(rows[c.metric].isna().any() for rows in pick):
            continue
        (ra,), (rb,) = (rows.to_dict("records") for rows in pick)
        meta.append(c)
        values.append((ra[c.metric], rb[c.metric], float(np.hypot(ra[f"{c.metric}_se"], rb[f"{c.metric}_se"]))))
    if not meta:
        return pd.DataFrame()
    a, b, se = (np.array(v, dtype=float) for v in zip(*values))
    diff = a - b
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    p = 2 * stats.norm.sf(np.abs(diff) / se)
    adjusted, reject = holm(p, alpha)
    decision = decide(diff, reject, np.full(len(diff), 2))
    return pd.DataFrame(
        {"id": [c.id for c in meta], "claim": [c.claim for c in meta], "who": [c.who for c in meta], "A": a, "B": b,
         "diff": diff, "lo": diff - z * se, "hi": diff + z * se, "p_holm": adjusted,
         "verdict": [_verdict(c.expect, d) for c, d in zip(meta, decision)]}
    )


def write_claims(training: pd.DataFrame, diagnostics: pd.DataFrame, out: Path) -> list[Path]:
    """claims.md (both families) and claims.csv into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    text = ["# The toy lab's written claims as tests (generated by `python -m passk_exp.toylab.claims`)\n\n",
            "diff = A − B with its 95% interval; p_holm = Holm-adjusted p-value within the family; a verdict is a "
            "decision at α = 0.05 after Holm. Training: paired by (training seed, population draw), t-interval over "
            "units, draws_ahead = population draws on which A − B > 0. Diagnostics: z-interval on the two "
            "Monte-Carlo standard errors. Intervals are per contrast; verdicts use the Holm-adjusted p, so an "
            "interval that just excludes 0 can still be 'not separated'.\n"]
    if not training.empty:
        text += [f"\n## Training runs ({len(training)} contrasts, one Holm family)\n\n",
                 markdown_table(training, list(training.columns))]
    if not diagnostics.empty:
        text += [f"\n## Estimator diagnostics ({len(diagnostics)} contrasts, one Holm family)\n\n",
                 markdown_table(diagnostics, list(diagnostics.columns))]
    paths = [out / "claims.md", out / "claims.csv"]
    paths[0].write_text("".join(text))
    pd.concat([training.assign(family="training"), diagnostics.assign(family="diagnostics")]).to_csv(
        paths[1], index=False, float_format="%.6g")
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m passk_exp.toylab.claims", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--diagnostics", type=Path, required=True, help="folder with diagnostics{,_maxk}.csv")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    names = sorted({name for c in TRAINING for name in c.experiments})
    runs = pd.concat([load_runs(args.tracking_uri, [name]).assign(experiment=name) for name in names])
    for path in write_claims(training_claims(runs), diagnostics_claims(args.diagnostics), args.out):
        print(path)


if __name__ == "__main__":
    main()
