"""The two study figures, each as a static PNG (matplotlib) and an interactive HTML page (plotly).

* Pass@k (or max@k) curves: final Pass@k against k (log2 axis), one line per method, the band is the 95% interval of
  `analysis.intervals`; k above n_eval/2 (high variance) is shaded grey. When the
  runs share one K schedule, there is one panel per training K (a dotted line marks k = K, the target), so a panel
  answers "which method is best at the Pass@k its K aims for"; otherwise (fixed vs adaptive K) one panel holds every
  arm. Further panels split by model, benchmark, ... when those vary.
* Pareto front: Pass@1 against Pass@k_hi (k_hi = 64 when logged), one point per method × K with 95% interval crosses;
  the front of the means is dashed, arms dominated at the interval level are hollow, the others ringed.
Both take the tables of `analysis.tables` and do no statistics of their own.
"""

from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.intervals import high_variance, metric_label  # noqa: E402
from analysis.tables import arm_label, panel_columns  # noqa: E402

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _colors(labels) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def _panel_title(key: tuple, names: list[str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in zip(names, key))


def _curve_panels(summary: pd.DataFrame, arms: list[str]) -> list[tuple[str, pd.DataFrame, int | None]]:
    """[(title, rows, the K of a per-K panel or None)] in drawing order. Per-K panels when every K is trained by
    several recipes under one schedule (phases 1 and 4); one panel for all arms otherwise (phases 2 and 3)."""
    split = panel_columns(arms)
    schedules_vary = any(c == "schedule" or c.startswith("schedule.") for c in arms)
    by_k = not schedules_vary and summary.groupby([*split, "K"], dropna=False).size().median() >= 2
    groups = list(summary.groupby(split, sort=True, dropna=False)) if split else [((), summary)]
    panels = []
    for key, rows in groups:
        where = _panel_title(key if isinstance(key, tuple) else (key,), split)
        if by_k:
            for k_value, at_k in rows.groupby("K", sort=True):
                panels.append(((f"K={k_value}" + (f" · {where}" if where else "")), at_k, int(k_value)))
        else:
            panels.append((where or "all arms", rows, None))
    return panels


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, 4)
    return (count + cols - 1) // cols, cols


def _interval(row: pd.Series, ks: list[int], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) over ks; a missing interval (one seed without records) collapses onto the mean."""
    mean = np.array([row[f"{metric}_{k}_mean"] for k in ks], dtype=float)
    lo = np.array([row[f"{metric}_{k}_lo"] for k in ks], dtype=float)
    hi = np.array([row[f"{metric}_{k}_hi"] for k in ks], dtype=float)
    return mean, np.where(np.isnan(lo), mean, lo), np.where(np.isnan(hi), mean, hi)


def _high_variance_span(table: pd.DataFrame, ks: list[int]) -> tuple[float, float] | None:
    """The k range (log2-midpoints around the flagged ks) where a panel's Pass@k is high variance, k > n_eval/2 of its
    smallest n_eval; None when no logged k is."""
    n_eval = pd.Series(table.get("n_eval", pd.Series(dtype=float)), dtype="Float64").min()  # NA when unknown
    flagged = [i for i, k in enumerate(ks) if high_variance(k, n_eval)]
    if not flagged:
        return None
    first = flagged[0]
    start = np.sqrt(ks[first - 1] * ks[first]) if first > 0 else ks[0] / 2 ** 0.25
    return float(start), float(ks[-1] * 2 ** 0.25)


def passk_curves_png(summary: pd.DataFrame, arms: list[str], ks: list[int], title: str,
                     metric: str = "pass_at") -> bytes:
    panels = _curve_panels(summary, arms)
    rows, cols = _grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    labels = [arm_label(r, arms, with_k=p[2] is None) for p in panels for _, r in p[1].iterrows()]
    colors = _colors(labels)
    x = np.asarray(ks, dtype=float)
    for ax, (name, table, k_target) in zip(axes.flat, panels):
        for _, row in table.iterrows():
            label = arm_label(row, arms, with_k=k_target is None)
            mean, lo, hi = _interval(row, ks, metric)
            ax.plot(x, mean, marker="o", ms=3, color=colors[label], label=f"{label} ({row['seeds']} seeds)")
            ax.fill_between(x, lo, hi, color=colors[label], alpha=0.15, linewidth=0)
        if span := _high_variance_span(table, ks):
            ax.axvspan(*span, color="0.85", alpha=0.5, linewidth=0, label="k > n_eval/2 (high variance)")
        if k_target is not None and ks[0] <= k_target <= ks[-1]:
            ax.axvline(k_target, color="0.4", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(k) for k in ks])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"final {metric_label(metric)}k")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    _suptitle(fig, title)
    return _png(fig)


def passk_curves_html(
    summary: pd.DataFrame, arms: list[str], ks: list[int], title: str, include_plotlyjs: str | bool = "cdn",
    metric: str = "pass_at",
) -> str:
    from plotly.subplots import make_subplots

    panels = _curve_panels(summary, arms)
    name = metric_label(metric) + "k"
    rows, cols = _grid(len(panels))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in panels], shared_yaxes=True)
    labels = [arm_label(r, arms, with_k=p[2] is None) for p in panels for _, r in p[1].iterrows()]
    colors = _colors(labels)
    shown: set[str] = set()
    for index, (_, table, k_target) in enumerate(panels):
        row_i, col_i = index // cols + 1, index % cols + 1
        for _, row in table.iterrows():
            label = arm_label(row, arms, with_k=k_target is None)
            mean, lo, hi = _interval(row, ks, metric)
            fig.add_scatter(
                x=ks, y=mean, error_y=dict(type="data", symmetric=False, array=hi - mean, arrayminus=mean - lo,
                                           visible=True),
                mode="lines+markers", name=label, legendgroup=label, showlegend=label not in shown,
                line=dict(color=colors[label]), customdata=np.stack([lo, hi], axis=1),
                hovertemplate=f"{label}<br>k=%{{x}}<br>{name}=%{{y:.4f}} [%{{customdata[0]:.4f}}, "
                              f"%{{customdata[1]:.4f}}]<br>seeds={row['seeds']}<extra></extra>",
                row=row_i, col=col_i,
            )
            shown.add(label)
        if span := _high_variance_span(table, ks):
            fig.add_vrect(x0=np.log2(span[0]), x1=np.log2(span[1]), fillcolor="gray", opacity=0.15, line_width=0,
                          annotation_text="k > n_eval/2", row=row_i, col=col_i)
        if k_target is not None:
            fig.add_vline(x=np.log2(k_target), line_dash="dot", line_color="gray", row=row_i, col=col_i)
        fig.update_xaxes(type="log", tickvals=ks, ticktext=[str(k) for k in ks], title_text="k", row=row_i, col=col_i)
    fig.update_yaxes(title_text=f"final {name}", col=1)
    fig.update_layout(title=title, height=340 * rows, width=max(700, 420 * cols))
    return fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True)


def _point_label(row: pd.Series, arms: list[str]) -> str:
    """The recipe minus the method (the colour says it): "K=16", "adaptive K in [1, 64] ...", "ks=[1, 64] ..."."""
    return arm_label(row, arms).split(" · ", 1)[-1]


def _pareto_panels(pareto: pd.DataFrame, arms: list[str]) -> list[tuple[str, pd.DataFrame]]:
    split = panel_columns(arms)
    if not split:
        return [("", pareto)]
    return [(_panel_title(k if isinstance(k, tuple) else (k,), split), rows)
            for k, rows in pareto.groupby(split, sort=True, dropna=False)]


def pareto_png(pareto: pd.DataFrame, arms: list[str], k_hi: int, title: str) -> bytes:
    panels = _pareto_panels(pareto, arms)
    rows, cols = _grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.2 * rows), squeeze=False)
    colors = _colors(pareto["method"])
    for ax, (name, table) in zip(axes.flat, panels):
        for method, points in table.groupby("method", sort=True):
            ax.errorbar(points["x"], points["y"], xerr=_cross(points, "x"), yerr=_cross(points, "y"), fmt="none",
                        ecolor=colors[method], capsize=2, alpha=0.9)
            kept, dominated = points[points["on_front"]], points[~points["on_front"]]
            ax.scatter(kept["x"], kept["y"], color=colors[method], label=method, s=25, zorder=3)
            ax.scatter(dominated["x"], dominated["y"], facecolors="white", edgecolors=colors[method], s=25, zorder=3)
        # Arms that end on (nearly) the same point, common when Pass@64 takes few values on a small eval set, get
        # their labels stacked instead of printed over each other.
        span_x = max(float(table["x"].max() - table["x"].min()), 1e-9)
        span_y = max(float(table["y"].max() - table["y"].min()), 1e-9)
        placed: list[tuple[float, float, int]] = []
        for _, point in table.sort_values(["y", "x"]).iterrows():
            x, y = float(point["x"]), float(point["y"])
            near = [level for px, py, level in placed if abs(px - x) < 0.08 * span_x and abs(py - y) < 0.04 * span_y]
            level = max(near) + 1 if near else 0
            placed.append((x, y, level))
            ax.annotate(_point_label(point, arms), (x, y), fontsize=6, xytext=(3, 3 + 7 * level),
                        textcoords="offset points")
        front = table[table["on_front_of_means"]].sort_values("x")
        ax.plot(front["x"], front["y"], "k--", linewidth=1, label="front of the means")
        kept = table[table["on_front"]]
        ax.scatter(kept["x"], kept["y"], s=110, facecolors="none", edgecolors="k", linewidths=1,
                   label="not dominated at the CI level")
        ax.set_xlabel("final Pass@1")
        ax.set_ylabel(f"final Pass@{k_hi}")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    _suptitle(fig, title)
    return _png(fig)


def pareto_html(
    pareto: pd.DataFrame, arms: list[str], k_hi: int, title: str, include_plotlyjs: str | bool = "cdn"
) -> str:
    from plotly.subplots import make_subplots

    panels = _pareto_panels(pareto, arms)
    rows, cols = _grid(len(panels))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in panels])
    colors = _colors(pareto["method"])
    shown: set[str] = set()
    for index, (_, table) in enumerate(panels):
        row_i, col_i = index // cols + 1, index % cols + 1
        for method, points in table.groupby("method", sort=True):
            x_err, y_err = _cross(points, "x"), _cross(points, "y")
            fig.add_scatter(
                x=points["x"], y=points["y"], mode="markers+text", text=[_point_label(p, arms) for _, p in points.iterrows()],
                textposition="top right", name=method, legendgroup=method, showlegend=method not in shown,
                marker=dict(color=[colors[method] if kept else "white" for kept in points["on_front"]], size=9,
                            line=dict(color=colors[method], width=1.5)),
                error_x=dict(type="data", symmetric=False, array=x_err[1], arrayminus=x_err[0], visible=True),
                error_y=dict(type="data", symmetric=False, array=y_err[1], arrayminus=y_err[0], visible=True),
                customdata=np.stack([points["seeds"], np.where(points["on_front"], "", " (dominated at the CI level)")],
                                    axis=1),
                hovertemplate=f"{method}<br>Pass@1=%{{x:.4f}}<br>Pass@{k_hi}=%{{y:.4f}}<br>seeds=%{{customdata[0]}}"
                "%{customdata[1]}<extra></extra>",
                row=row_i, col=col_i,
            )
            shown.add(method)
        front = table[table["on_front_of_means"]].sort_values("x")
        fig.add_scatter(x=front["x"], y=front["y"], mode="lines", line=dict(color="black", dash="dash"),
                        name="front of the means", legendgroup="front", showlegend=index == 0, row=row_i, col=col_i)
        fig.update_xaxes(title_text="final Pass@1", row=row_i, col=col_i)
        fig.update_yaxes(title_text=f"final Pass@{k_hi}", row=row_i, col=col_i)
    fig.update_layout(title=title, height=420 * rows, width=max(600, 520 * cols))
    return fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True)


def _cross(points: pd.DataFrame, axis: str) -> np.ndarray:
    """[2, P] distances from the mean down to the interval's low end and up to its high end (0 without interval)."""
    mean = points[axis].to_numpy(dtype=float)
    lo = points[f"{axis}_lo"].to_numpy(dtype=float)
    hi = points[f"{axis}_hi"].to_numpy(dtype=float)
    return np.nan_to_num(np.stack([mean - lo, hi - mean]), nan=0.0).clip(min=0.0)


def _suptitle(fig, title: str) -> None:
    """The figure's title, wrapped to its width (about 11 characters an inch at font size 11)."""
    fig.suptitle(textwrap.fill(title, width=int(11 * fig.get_figwidth())), fontsize=11)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()
