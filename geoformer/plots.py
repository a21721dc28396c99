"""Maps of forecast, truth and error (cartopy, offline coastlines) and score curves.

Coastlines come from the Natural Earth shapefiles shipped in ``geoformer/shapefiles``, so
drawing never needs the network. Each figure is built by a ``*_figure`` function that returns
the matplotlib figure (what the tests inspect) and saved by the matching ``plot_*`` function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .schema import GRAVITY, VARIABLES, canonical_name

__all__ = ["PROJECTIONS", "use_offline_natural_earth", "has_land", "long_name",
           "typeset_units", "map_title", "maps_figure", "plot_maps", "scores_figure",
           "plot_scores"]

_DATA_DIR = Path(__file__).parent  # holds shapefiles/natural_earth/physical/
PROJECTIONS = ("platecarree", "robinson", "orthographic")
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_METRIC_NAMES = {"rmse": "RMSE", "acc": "ACC", "bias": "bias", "mae": "MAE"}
_UNITLESS_METRICS = {"acc"}


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


def long_name(da: xr.DataArray | None = None, name: str | None = None) -> str:
    """A variable's name for a reader: its CF ``long_name``, else the schema's, else the id."""
    if da is not None and da.attrs.get("long_name"):
        return str(da.attrs["long_name"])
    name = str(name if name is not None else (da.name if da is not None else ""))
    info = VARIABLES.get(canonical_name(name))
    return info.long_name if info else name.replace("_", " ").capitalize()


def typeset_units(units: str) -> str:
    """CF/udunits spelling to print: ``m2 s-2`` -> ``m² s⁻²``, ``m s**-1`` -> ``m s⁻¹``.

    Dimensionless units (``1``, empty) typeset as an empty string.
    """
    units = str(units).strip()
    if units in ("", "1", "~", "dimensionless"):
        return ""

    def one(token: str) -> str:
        match = re.fullmatch(r"([A-Za-z%°]+)(?:\*\*|\^)?(-?\d+)?", token)
        if match is None:
            return token
        symbol, power = match.groups()
        return symbol + (power.translate(_SUPERSCRIPT) if power and power != "1" else "")

    return " ".join(one(t) for t in units.replace("/", " /").split())


def _time(value) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


def _scalar(da: xr.DataArray, coord: str):
    if coord in da.coords and da[coord].ndim == 0:
        return da[coord].values[()]
    return None


def map_title(forecast: xr.DataArray, init_time=None, lead_time=None, level=None,
              name: str | None = None) -> str:
    """Long name and level, then initial time, lead and valid time (UTC).

    Unset arguments are read from the field's scalar coordinates (``time``: initial time,
    ``prediction_timedelta``: lead, ``level``: hPa), as left by ``.sel`` on a forecast.
    """
    init = _time(init_time if init_time is not None else _scalar(forecast, "time"))
    lead = lead_time if lead_time is not None else _scalar(forecast, "prediction_timedelta")
    lead = None if lead is None else pd.Timedelta(lead)
    level = level if level is not None else _scalar(forecast, "level")
    head = long_name(forecast, name)
    if level is not None:
        head += f", {float(level):g} hPa"
    when = []
    if init is not None:
        when.append(f"initialised {init:%Y-%m-%d %H:%M} UTC")
    if lead is not None:
        when.append(f"lead {lead / pd.Timedelta(hours=1):g} h")
    if init is not None and lead is not None:
        when.append(f"valid {init + lead:%Y-%m-%d %H:%M} UTC")
    return head + ("\n" + ", ".join(when) if when else "")


def _projection(name: str):
    import cartopy.crs as ccrs

    makers = {"platecarree": lambda: ccrs.PlateCarree(central_longitude=180),
              "robinson": lambda: ccrs.Robinson(central_longitude=180),
              "orthographic": lambda: ccrs.Orthographic(central_longitude=0,
                                                        central_latitude=45)}
    if name not in makers:
        raise ValueError(f"unknown projection {name!r}; expected one of {PROJECTIONS}")
    return makers[name]()


def _cyclic(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Close the longitude seam so the map has no gap at 0/360 deg."""
    lon = np.append(da["longitude"].values, da["longitude"].values[0] + 360.0)
    values = da.transpose("latitude", "longitude").values
    return lon, da["latitude"].values, np.concatenate([values, values[:, :1]], axis=1)


def _in_units(forecast: xr.DataArray, truth: xr.DataArray, units: str, is_geopotential: bool,
              geopotential_in_dam: bool) -> tuple[xr.DataArray, xr.DataArray, str]:
    """The fields and their colour-bar label; geopotential optionally as height in dam."""
    if is_geopotential and geopotential_in_dam:
        scale = GRAVITY * 10.0  # Z / g is height in m; / 10 is dam
        return forecast / scale, truth / scale, "geopotential height, dam (Φ / 10 g)"
    return forecast, truth, typeset_units(units)


def maps_figure(forecast: xr.DataArray, truth: xr.DataArray, title: str | None = None,
                units: str | None = None, resolution: str = "110m", coastlines: bool = True,
                projection: str = "platecarree", geopotential_in_dam: bool = False,
                contours: bool | None = None, variable: str | None = None,
                figsize: tuple[float, float] = (16.0, 4.6)):
    """The forecast / truth / error figure (see :func:`plot_maps`); returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt

    use_offline_natural_earth()
    crs = _projection(projection)
    variable = str(variable or forecast.name or "")
    is_z = canonical_name(variable) == "geopotential"
    contours = is_z if contours is None else contours
    units = forecast.attrs.get("units", "") if units is None else units
    title = map_title(forecast, name=variable) if title is None else title
    forecast, truth, label = _in_units(forecast, truth, units, is_z, geopotential_in_dam)
    error = forecast - truth
    vmin = float(min(forecast.min(), truth.min()))
    vmax = float(max(forecast.max(), truth.max()))
    emax = float(np.abs(error).max()) or 1.0
    levels = np.linspace(vmin, vmax, 12)[1:-1] if vmax > vmin else None
    fig, axes = plt.subplots(1, 3, figsize=figsize, layout="constrained",
                             subplot_kw={"projection": crs})
    panels = [(forecast, "forecast", "viridis", vmin, vmax),
              (truth, "truth", "viridis", vmin, vmax),
              (error, "forecast − truth", "RdBu_r", -emax, emax)]
    meshes = []
    for i, (ax, (da, name, cmap, lo, hi)) in enumerate(zip(axes, panels)):
        lon, lat, values = _cyclic(da)
        meshes.append(ax.pcolormesh(lon, lat, values, cmap=cmap, vmin=lo, vmax=hi,
                                    transform=ccrs.PlateCarree(), shading="auto"))
        if contours and i < 2 and levels is not None:  # lines on the fields, not the error
            ax.contour(lon, lat, values, levels=levels, colors="k", linewidths=0.5,
                       transform=ccrs.PlateCarree())
        if coastlines:
            ax.coastlines(resolution=resolution, linewidth=0.6)
        ax.set_global()
        grid = ax.gridlines(draw_labels=True, linewidth=0.3, color="0.4", alpha=0.6,
                            linestyle="--")
        grid.top_labels = grid.right_labels = False
        grid.xlabel_style = grid.ylabel_style = {"size": 7}
        ax.set_title(name)
    bars = [fig.colorbar(meshes[0], ax=list(axes[:2]), orientation="horizontal", shrink=0.6,
                         aspect=40, label=label),
            fig.colorbar(meshes[2], ax=axes[2], orientation="horizontal", shrink=0.9,
                         aspect=20, label=f"error{f', {label}' if label else ''}")]
    for bar in bars:
        bar.formatter.set_useOffset(False)  # a reader wants 5520 dam, not 20 + 5.5e3
    if title:
        fig.suptitle(title)
    return fig


def plot_maps(forecast: xr.DataArray, truth: xr.DataArray, path: str | Path,
              title: str | None = None, units: str | None = None, resolution: str = "110m",
              coastlines: bool = True, projection: str = "platecarree",
              geopotential_in_dam: bool = False, contours: bool | None = None,
              variable: str | None = None, dpi: int = 150,
              figsize: tuple[float, float] = (16.0, 4.6)) -> Path:
    """Forecast, truth and forecast-minus-truth maps side by side, to a PNG.

    forecast, truth: (latitude, longitude) fields on the same grid. title: None (default)
    builds one from the field (:func:`map_title`: long name, level, initial time, lead and
    valid time); "" draws none. units: CF spelling (default the field's ``units``), typeset
    on the colour bar. coastlines: draw them (off for a planet without land, see
    :func:`has_land`). projection: one of :data:`PROJECTIONS`. geopotential_in_dam: draw
    geopotential as height in dam (divided by 10 g). contours: lines over the forecast and
    truth (default: for geopotential only). Forecast and truth share one colour scale and
    bar; the error has its own, symmetric about zero.
    """
    import matplotlib.pyplot as plt

    fig = maps_figure(forecast, truth, title, units, resolution, coastlines, projection,
                      geopotential_in_dam, contours, variable, figsize)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _panels(table: pd.DataFrame, variables: list[tuple] | None,
            metrics: Sequence[str]) -> list[list[tuple]]:
    """Rows of (metric, variable, level) panels: each metric's panels start a new row."""
    if variables is None:
        keys = table[["variable", "level"]].drop_duplicates().itertuples(index=False)
        variables = [(v, None if pd.isna(lv) else lv) for v, lv in keys]
    present = set(table["metric"])
    return [[(m, v, lv) for v, lv in variables] for m in metrics if m in present]


def _rows_of(table: pd.DataFrame, metric: str, var: str, level) -> pd.DataFrame:
    rows = table[(table["variable"] == var) & (table["metric"] == metric)]
    return rows[rows["level"].isna()] if level is None else rows[rows["level"] == level]


def _panel_title(var: str, level) -> str:
    return long_name(name=var) + ("" if level is None else f", {float(level):g} hPa")


def _ylabel(metric: str, var: str) -> str:
    name = _METRIC_NAMES.get(metric, metric)
    info = VARIABLES.get(canonical_name(var))
    units = "" if metric in _UNITLESS_METRICS or info is None else typeset_units(info.units)
    return f"{name} ({units})" if units else name


def scores_figure(scores: pd.DataFrame, variables: list[tuple] | None = None,
                  region: str = "global", metrics: Sequence[str] = ("rmse", "acc"),
                  columns: int = 4, panel_size: tuple[float, float] = (3.6, 2.6)):
    """The score grid (see :func:`plot_scores`); returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = scores[scores["region"] == region] if "region" in scores else scores
    blocks = _panels(table, variables, metrics)
    cols = max(1, min(columns, max((len(b) for b in blocks), default=1)))
    layout = [row for b in blocks for row in (b[i:i + cols] for i in range(0, len(b), cols))]
    nrows = max(1, len(layout))
    in_days = table["lead_time_hours"].max() >= 48 if len(table) else False
    scale, unit = (24.0, "days") if in_days else (1.0, "hours")
    names = sorted(table["forecast"].unique(), key=lambda n: (n != "model", n))
    colours = {n: f"C{i % 10}" for i, n in enumerate(names)}
    fig, axes = plt.subplots(nrows, cols, squeeze=False, sharex=True, layout="constrained",
                             figsize=(panel_size[0] * cols, panel_size[1] * nrows + 0.6))
    for r, row in enumerate(layout):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(row):
                ax.remove()
                continue
            metric, var, level = row[c]
            rows = _rows_of(table, metric, var, level)
            for name in names:
                group = rows[rows["forecast"] == name].sort_values("lead_time_hours")
                ax.plot(group["lead_time_hours"] / scale, group["value"], marker="o", ms=3,
                        color=colours[name], label=name,
                        linestyle="-" if name == "model" else "--")
            ax.set_title(_panel_title(var, level), fontsize=9)
            ax.set_ylabel(_ylabel(metric, var), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if r + 1 == nrows or c >= len(layout[r + 1]):  # lowest panel of its column
                ax.tick_params(labelbottom=True)
                ax.set_xlabel(f"lead time ({unit})", fontsize=8)
    handles = [plt.Line2D([], [], color=colours[n], marker="o", ms=3,
                          linestyle="-" if n == "model" else "--") for n in names]
    fig.legend(handles, names, loc="outside upper center", ncol=max(1, len(names)),
               fontsize=8, frameon=False)
    return fig


def plot_scores(scores: pd.DataFrame, path: str | Path, variables: list[tuple] | None = None,
                region: str = "global", metrics: Sequence[str] = ("rmse", "acc"),
                columns: int = 4, dpi: int = 110) -> Path:
    """Scores against lead time for every forecast in a score table, to a PNG.

    A grid of panels, one per metric, variable and level (``columns`` wide, rows as needed;
    each metric starts a new row), lead time shared along x (days when the longest lead is
    2 days or more, else hours), every forecast in the table (model and references) in
    every panel, one legend above. variables: (variable, level or None) pairs to draw;
    default all in the table. metrics: drawn where present in the table.
    """
    import matplotlib.pyplot as plt

    fig = scores_figure(scores, variables, region, metrics, columns)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
