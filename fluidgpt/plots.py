"""PNG figures: rolled-out vs true trajectories, erosion on the wall, its hot spots, learning
curves.

matplotlib with the Agg backend (no display needed). Each function takes plain arrays in
physical units (or the paths of Lightning CSV logs), writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors  # noqa: E402

from .atomic import atomic_write  # noqa: E402

__all__ = ["plot_trajectories", "plot_erosion", "plot_hotspot", "plot_learning_curves",
           "read_metrics_csv"]

_STYLES = {"true": dict(color="black", lw=2.0, ls="-")}
_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"),
                            overwrite=True)
    finally:
        plt.close(fig)


def plot_trajectories(true: np.ndarray, predictions: Mapping[str, np.ndarray],
                      valid: np.ndarray | None, path: str | Path, title: str = "",
                      particles: Sequence[int] | None = None) -> Path:
    """One case's particle paths: true (T, P, 3) against each model's (T, P, 3), metres.

    Panels: the x-y plane (the elbow's plane) and each coordinate against the step, over the
    steps where the true particle is in the domain (the models do not predict when it
    leaves); ``particles`` picks a few (default: up to 6 spread over the injection order).
    """
    true = np.asarray(true)
    T, P, _ = true.shape
    if valid is None:
        valid = np.ones((T, P), dtype=bool)
    if particles is None:
        particles = np.unique(np.linspace(0, P - 1, min(6, P)).round().astype(int))
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    steps = np.arange(T)
    series = {"true": true, **{k: np.asarray(v) for k, v in predictions.items()}}
    for n, (name, traj) in enumerate(series.items()):
        style = _STYLES.get(name, dict(color=_COLOURS[(n - 1) % len(_COLOURS)], lw=1.3,
                                       ls="--"))
        for i, p in enumerate(particles):
            m = valid[:, p]
            label = name if i == 0 else None
            axes[0].plot(traj[m, p, 0], traj[m, p, 1], label=label, **style)
            for a in range(3):
                axes[a + 1].plot(steps[m], traj[m, p, a], **style)
    axes[0].set(xlabel="x (m)", ylabel="y (m)", title="x-y plane")
    axes[0].set_aspect("equal", adjustable="datalim")
    for a, name in enumerate("xyz"):
        axes[a + 1].set(xlabel="step", ylabel=f"{name} (m)", title=f"{name} against step")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "rolled-out vs true trajectories")
    return _save(fig, path)


def plot_erosion(face_centre: np.ndarray, true: np.ndarray, pred: np.ndarray,
                 path: str | Path, title: str = "", normalise: bool = True) -> Path:
    """Erosion on the wall: true, predicted and error, each a scatter of the face centres
    (faces, 3) projected on the x-y plane, coloured by the rate (faces,).

    normalise: divide each map by its own maximum (the paper's pattern); otherwise the
    rates are drawn in kg m-2 s-1 on one shared colour scale.
    """
    c = np.asarray(face_centre)
    t, p = np.asarray(true, float), np.asarray(pred, float)
    unit = "kg m-2 s-1"
    if normalise:
        t = t / t.max() if t.max() > 0 else t
        p = p / p.max() if p.max() > 0 else p
        unit = "/ max"
    vmax = max(t.max(), p.max())
    err = p - t
    emax = float(np.abs(err).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharex=True, sharey=True)
    # Erosion sits on a few faces: a square-root colour scale.
    panels = [("true", t, "viridis", colors.PowerNorm(0.5, 0.0, vmax)),
              ("predicted", p, "viridis", colors.PowerNorm(0.5, 0.0, vmax)),
              ("predicted - true", err, "RdBu_r", colors.Normalize(-emax, emax))]
    for ax, (name, values, cmap, norm) in zip(axes, panels):
        sc = _wall_scatter(ax, c, values, norm, cmap)
        ax.set(title=name, xlabel="x (m)")
        ax.set_aspect("equal")
        fig.colorbar(sc, ax=ax, shrink=0.8, label=f"erosion ({unit})")
    axes[0].set_ylabel("y (m)")
    fig.suptitle(title or "erosion rate on the wall")
    return _save(fig, path)


def _wall_scatter(ax: plt.Axes, centre: np.ndarray, values: np.ndarray,
                  norm: colors.Normalize, cmap: str = "viridis"):
    # Erosion sits on a few faces: the strongest drawn last and larger, so that the faces
    # behind them in the x-y projection do not hide them.
    order = np.argsort(np.abs(values))
    size = 3 + 30 * np.abs(values[order]) / (np.abs(values).max() or 1.0)
    return ax.scatter(centre[order, 0], centre[order, 1], c=values[order], s=size, cmap=cmap,
                      norm=norm)


def plot_hotspot(face_centre: np.ndarray, rate: np.ndarray, face_area: np.ndarray,
                 path: str | Path, wall_density: float = 7800.0, length: float = 0.02,
                 title: str = "") -> Path:
    """One erosion map (faces,) [kg m-2 s-1] as wall loss [mm/yr] with its hot spots.

    Two panels over the face centres (faces, 3) projected on the x-y plane: the map and the
    map smoothed over ``length`` m of wall (:func:`fluidgpt.wall.smooth_on_wall`, face areas
    (faces,) in m2), both marking the raw hot spot (the face with the largest rate, x) and
    the smoothed one (o), each labelled with its value in mm/yr.
    """
    from .wall import hotspot, smooth_on_wall, wall_loss_mm_per_year

    c = np.asarray(face_centre, float)
    loss = wall_loss_mm_per_year(np.asarray(rate, float), wall_density)  # (faces,)
    smooth = smooth_on_wall(loss, c, face_area, length)  # (faces,)
    spots = hotspot(loss, c, face_area, length)
    marks = [("peak", "x", "tab:red", spots["peak_location"], spots["peak_value"], 25),
             (f"smoothed peak ({100 * length:g} cm)", "o", "magenta",
              spots["smoothed_peak_location"], spots["smoothed_peak_value"], -35)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharex=True, sharey=True)
    for ax, (name, values) in zip(axes, [("wall loss", loss),
                                         (f"smoothed over {100 * length:g} cm", smooth)]):
        # each panel its own square-root scale: smoothing lowers the peak several times
        sc = _wall_scatter(ax, c, values, colors.PowerNorm(0.5, 0.0, float(values.max())
                                                           or 1.0))
        for label, marker, colour, at, value, dy in marks:
            ring = marker == "o"
            ax.scatter(at[0], at[1], marker=marker, s=140, linewidths=2, zorder=3,
                       c="none" if ring else colour, edgecolors=colour if ring else None,
                       label=f"{label}: {value:.3g} mm/yr")
            inward = -95 if at[0] > 0.5 * (c[:, 0].min() + c[:, 0].max()) else 25
            ax.annotate(f"{value:.3g} mm/yr", (at[0], at[1]), xytext=(inward, dy),
                        textcoords="offset points", color=colour, fontsize=9,
                        arrowprops=dict(arrowstyle="-", color=colour, lw=0.8),
                        bbox=dict(facecolor="white", alpha=0.8, lw=0))
        ax.set(title=name, xlabel="x (m)")
        ax.set_aspect("equal")
        ax.set_facecolor("0.85")
        fig.colorbar(sc, ax=ax, shrink=0.8, label="wall loss (mm/yr)")
    axes[0].set_ylabel("y (m)")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title or f"wall loss at a wall density of {wall_density:g} kg m-3")
    return _save(fig, path)


def read_metrics_csv(path: str | Path) -> pd.DataFrame:
    """A Lightning CSVLogger metrics.csv (a directory holding one, or the file), one row per
    epoch with every logged column (train/loss_epoch, val/loss, val/mse, ...)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no Lightning metrics.csv")
    table = pd.read_csv(path)
    if "epoch" not in table:
        raise ValueError(f"{path}: no epoch column; not a Lightning CSV log")
    return table.groupby("epoch").last().reset_index()


def plot_learning_curves(logs: Mapping[str, str | Path], path: str | Path,
                         metrics: Sequence[str] = ("train/loss_epoch", "val/mse"),
                         title: str = "") -> Path:
    """Loss against epoch from Lightning CSV logs, one line per (run, metric), log scale.

    The default pair: the training loss (for a GPT the teacher-forced one-step loss, for an
    LSTM the whole free-running sequence) and, for runs with a validation fold, ``val/mse``:
    x, y, z of the validation cases rolled out from step 0 (comparable across models)."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    drawn = 0
    for n, (name, log_path) in enumerate(logs.items()):
        table = read_metrics_csv(log_path)
        for metric, ls in zip(metrics, ("-", "--", ":")):
            if metric in table and table[metric].notna().any():
                rows = table[table[metric].notna()]
                ax.plot(rows["epoch"], rows[metric], ls=ls, color=_COLOURS[n % len(_COLOURS)],
                        label=f"{name} {metric}")
                drawn += 1
    if not drawn:
        raise ValueError(f"none of {list(metrics)} is in the logs {list(logs)}")
    ax.set(xlabel="epoch", ylabel="loss / MSE (scaled units)", yscale="log",
           title=title or "learning curves")
    ax.legend(fontsize=8)
    return _save(fig, path)
