"""Pivot the estimator diagnostics (diagnostics.csv, diagnostics_maxk.csv in this folder) into diagnostics_digest.md:
the tables README.md reads its bias and variance findings from. Run from anywhere:
    python docs/toylab/make_digest.py
No new numbers: every cell is a value of the two CSVs written by `python -m passk_exp.toylab +toylab=estimators[_maxk]`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
PS = ["0.01", "0.1", "0.5", "0.9", "ladder"]
UNBIASED = ["reinforce", "rloo", "reinforce_k", "rloo_k", "wk25", "pkpo", "pkpo_loo", "pkpo_loo_minus_one", "passk_multi"]
BIASED = ["grpo", "skew_r", "entropy_reg", "grpo_k", "passk_shaping", "passk_mix", "biased_k", "biased_k(base=rloo)"]
FAMILY = ["reinforce_k", "rloo_k", "pkpo", "pkpo_loo", "pkpo_loo_minus_one", "biased_k(base=rloo)"]


def _grid(values: pd.DataFrame, cell, cols=PS, head=None) -> list[str]:
    names = list(values.index.names)
    head = head or [f"p={c}" for c in cols]
    out = ["| " + " | ".join(names + head) + " |", "|" + "---|" * (len(names) + len(cols))]
    for index, row in values.iterrows():
        index = index if isinstance(index, tuple) else (index,)
        cells = ["—" if pd.isna(row.get(c)) else cell(index, c) for c in cols]
        out.append("| " + " | ".join([str(i) for i in index] + cells) + " |")
    return out


def main() -> None:
    d = pd.read_csv(HERE / "diagnostics.csv")
    d["p"] = d["p"].astype(str)
    n64 = d[d.n == 64]
    text = ["# Estimator diagnostics digest (from diagnostics.csv and diagnostics_maxk.csv; `make_digest.py`)", ""]

    text += ["## A. Unbiased estimators: exact ratio E[ĝ]·g*/‖g*‖² (enumeration) and the largest |bias_z| (Monte Carlo)", "",
             "| method | n | non-saturated grid points | exact_ratio min–max | max abs(bias_z) |", "|---|---|---|---|---|"]
    for label in UNBIASED:
        for n in (16, 64):
            s = d[(d.label == label) & (d.n == n) & ~d.saturated]
            text.append(f"| {label} | {n} | {len(s)} | {s.exact_ratio.min():.4f}–{s.exact_ratio.max():.4f} | "
                        f"{s.bias_z.abs().max():.2f} |")

    text += ["", "## B. Biased estimators, n = 64: exact E[ĝ] against the surrogate of docs/methods.md (sur_exact_ratio; 1 = the "
             "population-limit surrogate is already exact at n = 64; the surrogates are claimed for n → ∞, which "
             "theorems.md follows as n grows)", ""]
    x = n64[n64.label.isin(BIASED)].pivot_table(index=["label", "K", "surrogate"], columns="p",
                                                values="sur_exact_ratio", sort=False)
    text += _grid(x, lambda i, c: f"{x.loc[i, c]:.3f}")

    text += ["", "## C. biased_k p̂ options, n = 64: Monte-Carlo ratio ± s.e. against ∇Pass@K (1 = unbiased for "
             "Pass@K; stateful p̂ has no enumeration)", ""]
    s = n64[n64.label.str.startswith("biased_k") & (n64.K > 1)]
    m = s.pivot_table(index=["label", "K"], columns="p", values="ratio", sort=False)
    e = s.pivot_table(index=["label", "K"], columns="p", values="ratio_se", sort=False)
    text += _grid(m, lambda i, c: f"{m.loc[i, c]:.3g} ± {e.loc[i, c]:.2g}")

    text += ["", "## D. Variance against K, binary rewards, n = 64: rel_var ± s.e. (E‖ĝ − Eĝ‖² / ‖∇Pass@K‖²)", ""]
    s = n64[n64.label.isin(FAMILY)]
    m = s.pivot_table(index=["label", "K"], columns="p", values="rel_var", sort=False)
    e = s.pivot_table(index=["label", "K"], columns="p", values="rel_var_se", sort=False)
    text += _grid(m, lambda i, c: f"{m.loc[i, c]:.3g} ± {e.loc[i, c]:.2g}")

    q = pd.read_csv(HERE / "diagnostics_maxk.csv")
    q["p"] = q["p"].astype(str)  # the continuous table's p column holds the offset |μ − t|
    offsets = ["0.5", "2.0", "4.0"]
    s = q[(q.n == 64) & q.label.str.startswith("pkpo")]
    m = s.pivot_table(index=["label", "K"], columns="p", values="rel_var", sort=False)
    e = s.pivot_table(index=["label", "K"], columns="p", values="rel_var_se", sort=False)
    z = s.pivot_table(index=["label", "K"], columns="p", values="bias_z", sort=False)
    m["max abs(bias_z)"] = z.abs().max(axis=1)
    text += ["", "## E. Continuous rewards (Gaussian toy, σ = 0.5), n = 64: rel_var ± s.e. against ∇max@K, by offset "
             "|μ − t|; last column: the largest |bias_z| over the offsets", ""]
    text += _grid(m, lambda i, c: f"{m.loc[i, c]:.2f}" if c == "max abs(bias_z)" else
                  f"{m.loc[i, c]:.3g} ± {e.loc[i, c]:.2g}", cols=offsets + ["max abs(bias_z)"],
                  head=[f"offset {o}" for o in offsets] + ["max abs(bias_z)"])
    (HERE / "diagnostics_digest.md").write_text("\n".join(text) + "\n")
    print(HERE / "diagnostics_digest.md")


if __name__ == "__main__":
    main()
