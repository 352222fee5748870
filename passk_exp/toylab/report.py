"""task=diagnose: run the estimator diagnostics over a grid and write the tables (CSV, markdown) and figures (PNG).

The grid is (method entry × K × n × p) for the binary toy, a single problem at each p plus the whole ladder of ps read
as one population (which shows how a method reweights problems of different difficulty), and (method × K × n ×
offset) for the continuous toy with the methods that accept real rewards. Combinations a method cannot run (K > n for
the methods that estimate C(·, K), K > 1 for methods that ignore K) are skipped, not faked. Figures: relative variance
against K for the PKPO family and the direct Pass@K estimators; the bias of biased_k for each p̂ option and base
against p; the single-group cosine to the true gradient against p. What this file leaves out: the statistics
(diagnostics.py) and the training runs (summary.py reads those back from MLflow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from passk_exp import estimators
from passk_exp.toylab.diagnostics import diagnose, gaussian_problem, ladder

TABLE_COLUMNS = [
    "label", "K", "n", "p", "objective", "ratio", "ratio_se", "exact_ratio", "bias_z", "rel_var", "rel_var_se", "cos",
    "cos_mean", "ess", "zero_frac", "surrogate", "sur_exact_ratio", "sur_ratio", "sur_ratio_se",
]
PKPO_FAMILY = ("pkpo", "pkpo_loo", "pkpo_loo_minus_one", "reinforce_k", "rloo_k")


def method_label(method: str, params: Mapping[str, Any] | None) -> str:
    """'biased_k(base=rloo,p_hat=global)': the method name and its non-default params."""
    if not params:
        return method
    return f"{method}({','.join(f'{key}={value}' for key, value in sorted(params.items()))})"


def _entries(methods: Iterable[Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for entry in methods:
        if isinstance(entry, str):
            out.append((entry, {}))
        else:
            entry = dict(entry)
            out.append((entry["method"], dict(entry.get("params") or {})))
    return out


def _runnable(method: str, k: int, n: int) -> bool:
    info = estimators.method_info(method)
    if k > 1 and not info.uses_k:
        return False
    return n >= info.min_n and not (info.needs_k_le_n and k > n)


def run_grid(
    methods: Iterable[Any],
    ks: Sequence[int],
    ns: Sequence[int],
    ps: Sequence[float],
    offsets: Sequence[float] = (),
    sigma: float = 0.5,
    replicates: int = 20000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every runnable grid point as one row (see diagnostics.diagnose for the columns); p='ladder' rows read all ps as
    one population; `toy` is 'binary' or 'continuous' (then p is the offset |μ − t|)."""
    rows = []
    for method, params in _entries(methods):
        label = method_label(method, params)
        continuous_ok = estimators.reward_domain(method) != "binary"
        for n in ns:
            for k in ks:
                if not _runnable(method, k, n):
                    continue
                binary = {"label": label, "toy": "binary"}
                for p in ps:
                    rows.append({**diagnose(ladder([p]), method, k, n, params, replicates, seed), **binary, "p": p})
                if len(ps) > 1:
                    row = diagnose(ladder(ps), method, k, n, params, replicates // len(ps), seed)
                    rows.append({**row, **binary, "p": "ladder"})
                for offset in offsets if continuous_ok else ():
                    row = diagnose(gaussian_problem(offset, sigma), method, k, n, params, replicates, seed)
                    rows.append({**row, "label": label, "toy": "continuous", "p": offset})
    return pd.DataFrame(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return ""
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"
    return "" if value is None else str(value)


def markdown_table(df: pd.DataFrame, columns: Sequence[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df[cols].iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _plot_variance_vs_k(df: pd.DataFrame, path: Path, toy: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = df[(df["toy"] == toy) & (df["p"] != "ladder") & df["label"].isin(PKPO_FAMILY)]
    if sub.empty:
        return False
    n = int(sub["n"].max())
    sub = sub[sub["n"] == n]
    if sub["K"].nunique() < 2:
        return False
    points = sorted(sub["p"].unique())
    fig, axes = plt.subplots(1, len(points), figsize=(3.2 * len(points), 3.0), dpi=110, squeeze=False)
    for ax, p in zip(axes[0], points):
        for label, group in sub[sub["p"] == p].groupby("label"):
            group = group.sort_values("K")
            ax.errorbar(group["K"], group["rel_var"], yerr=2 * group["rel_var_se"], marker="o", label=label, ms=3)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{'p' if toy == 'binary' else '|μ−t|'}={p}, n={n}", fontsize=9)
        ax.set_xlabel("K")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Var[ĝ] / ‖∇target‖²")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _plot_biased_k(df: pd.DataFrame, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = df[(df["toy"] == "binary") & (df["p"] != "ladder") & df["label"].str.startswith("biased_k")]
    if sub.empty:
        return False
    n = int(sub["n"].max())
    sub = sub[(sub["n"] == n) & (sub["K"] > 1)]
    if sub.empty:
        return False
    ks = sorted(sub["K"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(3.4 * len(ks), 3.0), dpi=110, squeeze=False)
    for ax, k in zip(axes[0], ks):
        for label, group in sub[sub["K"] == k].groupby("label"):
            group = group.sort_values("p")
            ax.errorbar(group["p"].astype(float), group["ratio"], yerr=2 * group["ratio_se"], marker="o", ms=3,
                        label=label.replace("biased_k", "") or "(default: base=grpo, p_hat=group)")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"biased_k K={k}, n={n}", fontsize=9)
        ax.set_xlabel("p")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("E[ĝ]·∇Pass@K / ‖∇Pass@K‖²  (1 = unbiased)")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(df: pd.DataFrame, out: Path, stem: str = "diagnostics") -> list[Path]:
    """<stem>.csv, <stem>.md (one table per toy) and the PNG figures into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.csv", out / f"{stem}.md"]
    df.to_csv(files[0], index=False)
    parts = [
        "# Toy-lab estimator diagnostics (generated by `python -m passk_exp.toylab task=diagnose`)\n",
        "ratio = ⟨ĝ, ∇objective⟩/‖∇objective‖² (1 = unbiased, ± ratio_se the Monte-Carlo standard error, "
        "exact_ratio by enumeration where the method is stateless); rel_var = E‖ĝ − Eĝ‖²/‖∇objective‖²; cos = E cos(ĝ, ∇objective) "
        "of one group's estimate; ess = Kish effective number of samples carrying weight; zero_frac = share of groups "
        "with no gradient; sur_* = the same against the surrogate docs/methods.md states.\n",
    ]
    for toy in ("binary", "continuous"):
        sub = df[df["toy"] == toy]
        if not sub.empty:
            parts.append(f"\n## {toy} rewards\n\n" + markdown_table(sub, TABLE_COLUMNS))
    files[1].write_text("".join(parts))
    for name, draw in (
        (f"{stem}_variance_vs_k.png", lambda p: _plot_variance_vs_k(df, p, "binary")),
        (f"{stem}_variance_vs_k_continuous.png", lambda p: _plot_variance_vs_k(df, p, "continuous")),
        (f"{stem}_biased_k_bias.png", lambda p: _plot_biased_k(df, p)),
    ):
        if draw(out / name):
            files.append(out / name)
    return files
