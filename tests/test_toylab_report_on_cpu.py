"""The diagnostics figures name every arm they draw (a tiny grid, no MLflow)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from passk_exp.toylab.report import _plot_biased_k, run_grid  # noqa: E402


def test_the_biased_k_figure_has_a_legend_entry_for_every_arm_the_default_included(tmp_path, monkeypatch):
    methods = [{"method": "biased_k"}, {"method": "biased_k", "params": {"base": "rloo"}}]
    df = run_grid(methods, [1, 4], [8], [0.2, 0.6], [], 0.5, 64, 0)
    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    assert _plot_biased_k(df, tmp_path / "bias.png")
    labels = [text.get_text() for fig in figures for ax in fig.axes if ax.get_legend()
              for text in ax.get_legend().get_texts()]
    drawn = sum(len(ax.get_lines()) > 0 for fig in figures for ax in fig.axes)
    assert drawn >= 1
    assert "(base=rloo)" in labels and "(default: base=grpo, p_hat=group)" in labels, labels
