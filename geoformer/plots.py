"""Maps of forecast, truth and error (cartopy, offline coastlines) and score curves.

Coastlines come from the Natural Earth shapefiles shipped in ``geoformer/shapefiles``, so
drawing never needs the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["use_offline_natural_earth", "has_land", "plot_maps", "plot_scores"]

_DATA_DIR = Path(__file__).parent  # holds shapefiles/natural_earth/physical/


def use_offline_natural_earth() -> None:
    """Point cartopy at the shipped Natural Earth files (no download at draw time)."""
    import cartopy

    cartopy.config["pre_existing_data_dir"] = str(_DATA_DIR)


def has_land(ds: xr.Dataset) -> bool:
    """False for a dataset that says it has no land (coastlines would mislead on its maps).

    The dataset says so with the global attribute ``land = "none"`` (written by the
    built-in Held-Suarez source); Held-Suarez stores built before that attribute existed
    are recognised by their title. Anything else is taken to be the real Earth.
    """
    if str(ds.attrs.get("land", "")).lower() == "none":
        return False
    return not str(ds.attrs.get("title", "")).startswith("Held-Suarez idealised")


def _cyclic(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Close the longitude seam so the map has no gap at 0/360 deg."""
    lon = np.append(da["longitude"].values, da["longitude"].values[0] + 360.0)
    values = da.transpose("latitude", "longitude").values
    return lon, da["latitude"].values, np.concatenate([values, values[:, :1]], axis=1)


def plot_maps(forecast: xr.DataArray, truth: xr.DataArray, path: str | Path, title: str = "",
              units: str = "", resolution: str = "110m", coastlines: bool = True) -> Path:
    """Forecast, truth and forecast-minus-truth maps side by side, to a PNG.

    forecast, truth: (latitude, longitude) fields on the same grid. coastlines: draw them
    (off for a planet without land, see :func:`has_land`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt

    use_offline_natural_earth()
    error = forecast - truth
    vmin = float(min(forecast.min(), truth.min()))
    vmax = float(max(forecast.max(), truth.max()))
    emax = float(np.abs(error).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8),
                             subplot_kw={"projection": ccrs.PlateCarree(central_longitude=180)})
    panels = [(forecast, "forecast", "viridis", vmin, vmax),
              (truth, "truth", "viridis", vmin, vmax),
              (error, "forecast - truth", "RdBu_r", -emax, emax)]
    for ax, (da, label, cmap, lo, hi) in zip(axes, panels):
        lon, lat, values = _cyclic(da)
        mesh = ax.pcolormesh(lon, lat, values, cmap=cmap, vmin=lo, vmax=hi,
                             transform=ccrs.PlateCarree(), shading="auto")
        if coastlines:
            ax.coastlines(resolution=resolution, linewidth=0.6)
        ax.set_global()
        ax.set_title(label)
        fig.colorbar(mesh, ax=ax, orientation="horizontal", pad=0.05, shrink=0.85,
                     label=units)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_scores(scores: pd.DataFrame, path: str | Path, variables: list[tuple] | None = None,
                region: str = "global") -> Path:
    """RMSE and ACC against lead time for every forecast in a score table, to a PNG.

    variables: (variable, level or None) pairs to draw; default all in the table.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = scores[scores["region"] == region] if "region" in scores else scores
    if variables is None:
        keys = table[["variable", "level"]].drop_duplicates().itertuples(index=False)
        variables = [(v, None if pd.isna(lv) else lv) for v, lv in keys]
    metrics = [m for m in ("rmse", "acc") if m in set(table["metric"])]
    fig, axes = plt.subplots(len(metrics), len(variables), squeeze=False,
                             figsize=(3.6 * len(variables), 3.0 * len(metrics)))
    for j, (var, level) in enumerate(variables):
        rows = table[table["variable"] == var]
        rows = rows[rows["level"].isna()] if level is None else rows[rows["level"] == level]
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            for name, group in rows[rows["metric"] == metric].groupby("forecast"):
                group = group.sort_values("lead_time_hours")
                ax.plot(group["lead_time_hours"] / 24, group["value"], marker="o", ms=3,
                        label=name)
            ax.set_title(f"{var}{'' if level is None else f' {int(level)} hPa'}", fontsize=9)
            ax.set_xlabel("lead time (days)")
            ax.set_ylabel(metric.upper())
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
