"""Figures from the tidy score table: zonal energy spectra and rank histograms.

Both read the rows :func:`geoformer.scores.score_table` writes (``zonal_spectrum_{k}`` and
``rank_histogram_{r}``), so a figure can be redrawn from a saved scores.csv. Each ``*_figure``
returns the matplotlib figure (what the tests inspect); the matching ``plot_*`` saves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .plots import _panel_title, typeset_units
from .schema import VARIABLES

__all__ = ["spectra_figure", "plot_spectra", "rank_histogram_figure", "plot_rank_histogram"]

_SPECTRUM, _RANK = "zonal_spectrum_", "rank_histogram_"


def _binned(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The rows of one binned metric with the bin as an int column ``bin``."""
    rows = table[table["metric"].str.startswith(prefix)].copy()
    rows["bin"] = rows["metric"].str.slice(len(prefix)).astype(int)
    return rows


def _select(rows: pd.DataFrame, variable: str, level) -> pd.DataFrame:
    rows = rows[rows["variable"] == variable]
    return rows[rows["level"].isna()] if level is None else rows[rows["level"] == float(level)]


def _figure(n: int, columns: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(size[0] * cols, size[1] * rows + 0.5))
    for ax in axes.flat[n:]:
        ax.remove()
    return fig, axes.flat[:n]


def spectra_figure(scores: pd.DataFrame, variables: Sequence[tuple],
                   lead_hours: Sequence[float] = (24.0, 120.0), columns: int = 3,
                   panel_size: tuple[float, float] = (3.8, 3.0)):
    """Zonal energy spectra (30..60 deg N) of each forecast and the truth against zonal
    wavenumber, log-log, one panel per (variable, level), a line per forecast and lead."""
    table = _binned(scores, _SPECTRUM)
    if table.empty:
        raise ValueError("the score table has no zonal_spectrum_* rows (score with spectra=True)")
    names = sorted(table["forecast"].unique(), key=lambda n: (n != "truth", n != "model", n))
    fig, axes = _figure(len(variables), columns, panel_size)
    styles = ["-", "--", ":", "-."]
    for ax, (var, level) in zip(axes, variables):
        rows = _select(table, var, level)
        for i, name in enumerate(names):
            for j, lead in enumerate(lead_hours):
                line = rows[(rows["forecast"] == name) & (rows["lead_time_hours"] == lead)]
                line = line[line["bin"] > 0].sort_values("bin")  # k = 0 is the zonal mean
                if line.empty:
                    continue
                ax.loglog(line["bin"], line["value"], color=f"C{i % 10}",
                          linestyle=styles[j % len(styles)], label=f"{name}, {lead:g} h")
        units = typeset_units(VARIABLES[var].units) if var in VARIABLES else ""
        ax.set_title(_panel_title(var, level), fontsize=9)
        ax.set_xlabel("zonal wavenumber", fontsize=8)
        ax.set_ylabel(f"energy (m ({units})²)" if units else "energy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=min(4, max(1, len(labels))),
               fontsize=7, frameon=False)
    return fig


def rank_histogram_figure(scores: pd.DataFrame, variables: Sequence[tuple],
                          lead_hours: Sequence[float] = (24.0, 120.0),
                          forecast: str | None = None, columns: int = 3,
                          panel_size: tuple[float, float] = (3.4, 2.6)):
    """Rank histograms of an ensemble: frequency of the truth's rank among the M members,
    bars per lead side by side, with the flat 1 / (M + 1) of a calibrated ensemble."""
    table = _binned(scores, _RANK)
    if forecast is not None:
        table = table[table["forecast"] == forecast]
    if table.empty:
        raise ValueError("the score table has no rank_histogram_* rows (an ensemble forecast "
                         "with a number dim)")
    fig, axes = _figure(len(variables), columns, panel_size)
    width = 0.8 / max(1, len(lead_hours))
    for ax, (var, level) in zip(axes, variables):
        rows = _select(table, var, level)
        bins = np.sort(rows["bin"].unique())
        for j, lead in enumerate(lead_hours):
            bars = rows[rows["lead_time_hours"] == lead].sort_values("bin")
            ax.bar(bars["bin"] + (j - (len(lead_hours) - 1) / 2) * width, bars["value"],
                   width=width, color=f"C{j % 10}", label=f"{lead:g} h")
        if len(bins):
            ax.axhline(1.0 / len(bins), color="k", linewidth=0.8, linestyle="--",
                       label="calibrated")
        ax.set_title(_panel_title(var, level), fontsize=9)
        ax.set_xlabel("rank of the truth among the members", fontsize=8)
        ax.set_ylabel("frequency", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=max(1, len(labels)),
               fontsize=8, frameon=False)
    return fig


def _save(fig, path: str | Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_spectra(scores: pd.DataFrame, path: str | Path, variables: Sequence[tuple],
                 lead_hours: Sequence[float] = (24.0, 120.0), dpi: int = 110) -> Path:
    """:func:`spectra_figure` to a PNG."""
    return _save(spectra_figure(scores, variables, lead_hours), path, dpi)


def plot_rank_histogram(scores: pd.DataFrame, path: str | Path, variables: Sequence[tuple],
                        lead_hours: Sequence[float] = (24.0, 120.0),
                        forecast: str | None = None, dpi: int = 110) -> Path:
    """:func:`rank_histogram_figure` to a PNG."""
    return _save(rank_histogram_figure(scores, variables, lead_hours, forecast), path, dpi)
