"""Checkpoints + initial states -> an xarray forecast in the WeatherBench 2 layout.

``forecast(...)`` is the one Python call; ``write_forecast`` writes zarr or netCDF so that an
interrupted run leaves no half-written store behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from . import __version__
from .aggregation import aggregated_rollout, plans
from .atomic import atomic_write, atomic_write_zarr, netcdf_checksums
from .module import GeoFormerModule, load_module
from .perturbation import PERTURBATIONS, ensemble_noise
from .regrid import regrid_conservative
from .rollout import Step
from .schema import SchemaError, open_dataset, standardize, validate
from .state import State

__all__ = ["parse_hours", "load_models", "iter_forecasts", "forecast", "write_forecast"]


def parse_hours(value: str | int | float | pd.Timedelta) -> int:
    """'10d', '6h', '36', 36 or a Timedelta -> whole hours."""
    if isinstance(value, str):
        value = value.strip()
        if value.isdigit():
            value = int(value)
        elif value[-1:] in ("d", "D") and value[:-1].strip().replace(".", "", 1).isdigit():
            value = float(value[:-1]) * 24  # '10d': days
    td = pd.Timedelta(hours=value) if isinstance(value, (int, float)) else pd.Timedelta(value)
    hours = td / pd.Timedelta(hours=1)
    if hours != int(hours) or hours <= 0:
        raise ValueError(f"lead times must be a positive whole number of hours, found {value!r}")
    return int(hours)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_models(checkpoints: Sequence[str | Path]) -> dict[int, GeoFormerModule]:
    """Lead hours -> module for each checkpoint; all must share variables, levels and grid."""
    if not checkpoints:
        raise ValueError("at least one checkpoint is needed")
    models: dict[int, GeoFormerModule] = {}
    first: tuple[str, GeoFormerModule] | None = None
    for path in checkpoints:
        module = load_module(path)
        module.checkpoint_path = str(path)
        lead = int(module.contract.lead_hours)
        if lead in models:
            raise ValueError(f"two checkpoints have the same lead time {lead} h: "
                             f"{models[lead].checkpoint_path} and {path}")
        if first is None:
            first = (str(path), module)
        else:
            _check_compatible(first, (str(path), module))
        models[lead] = module
    return models


def _contract(module: GeoFormerModule) -> dict[str, Any]:
    c = module.config
    return {"upper-air variables": list(c.upper_vars), "surface variables": list(c.surface_vars),
            "levels": list(c.levels), "latitudes": list(module.contract.latitude),
            "longitudes": list(module.contract.longitude)}


def _check_compatible(a: tuple[str, GeoFormerModule], b: tuple[str, GeoFormerModule]) -> None:
    ca, cb = _contract(a[1]), _contract(b[1])
    for key in ca:
        if not np.array_equal(np.asarray(ca[key]), np.asarray(cb[key])):
            raise ValueError(f"checkpoints {a[0]} and {b[0]} differ in their {key}: "
                             f"{_brief(ca[key])} vs {_brief(cb[key])}")


def _brief(values: list) -> str:
    return str(values) if len(values) <= 5 else f"{len(values)} values from {values[0]} " \
                                                f"to {values[-1]}"


def _prepare_input(data: xr.Dataset | str | Path, module: GeoFormerModule,
                   init_times: Sequence[Any], notes: list[str]
                   ) -> tuple[xr.Dataset, str, bool]:
    """Standardise, check and pick the initial states (not read yet): (selection, name of
    the source, whether they need regridding to the checkpoint grid, which a note says)."""
    ds = open_dataset(data, notes) if isinstance(data, (str, Path)) else standardize(data, notes)
    c = module.config
    source = str(data) if isinstance(data, (str, Path)) else "the input data"
    validate(ds, c.upper_vars, c.surface_vars, levels=c.levels, check_finite=False,
             source=source)
    ds = ds[list(c.upper_vars) + list(c.surface_vars)].sel(level=list(c.levels))
    ds = _select_inits(ds, init_times, source)
    lat = np.asarray(module.contract.latitude)
    lon = np.asarray(module.contract.longitude)
    same = ds.sizes["latitude"] == lat.size and ds.sizes["longitude"] == lon.size and (
        np.allclose(ds["latitude"].values, lat) and np.allclose(ds["longitude"].values, lon))
    if not same:
        notes.append(f"input regridded conservatively from {ds.sizes['latitude']} x "
                     f"{ds.sizes['longitude']} to the checkpoint grid {lat.size} x {lon.size}")
    return ds, source, not same


def _read_part(ds: xr.Dataset, source: str, regrid: bool, module: GeoFormerModule
               ) -> xr.Dataset:
    """Some initial times of :func:`_prepare_input`'s selection, read, checked and (only
    those) regridded to the checkpoint grid."""
    part = _load_inits(ds, source)
    if regrid:
        part = regrid_conservative(part, np.asarray(module.contract.latitude),
                                   np.asarray(module.contract.longitude))
    return part


def _select_inits(ds: xr.Dataset, init_times: Sequence[Any], source: str) -> xr.Dataset:
    times = pd.DatetimeIndex([pd.Timestamp(t) for t in init_times])
    have = pd.DatetimeIndex(ds["time"].values)
    missing = [str(t) for t in times if t not in have]
    if missing:
        raise SchemaError(f"initial time(s) {missing} are not in {source}, which has "
                          f"{len(have)} times from {have.min()} to {have.max()}")
    return ds.sel(time=times)  # read later, a few initial times at a time


def _load_inits(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Read some initial states into memory, refusing NaN or infinite values."""
    ds = ds.load()
    for name in ds.data_vars:
        bad = int((~np.isfinite(ds[name])).sum())
        if bad:
            raise SchemaError(f"{source}: the initial state's variable {name!r} has {bad} NaN "
                              "or infinite value(s)")
    return ds


def iter_forecasts(checkpoints: Sequence[str | Path] | Mapping[int, GeoFormerModule],
                   data: xr.Dataset | str | Path, init_times: Sequence[Any],
                   lead_time: str | int = "10d", every: str | int | None = None,
                   batch_size: int = 1, device: str | None = None,
                   notes: list[str] | None = None, members: int = 1,
                   perturbation: str = "perlin", perturbation_scale: float = 0.2,
                   seed: int = 0, compile: bool = False) -> Iterator[tuple[int, xr.Dataset]]:
    """:func:`forecast`, a few initial times at a time: yields (index of the first initial
    time, its forecast Dataset). Each part holds as many initial times as one model call
    takes (``batch_size`` states, at least one initial time with all its members), so
    memory is bounded by one part whatever the number of initial times. Everything that
    can be refused (checkpoints, lead times, variables, missing initial times) is refused
    before the first part is computed; a NaN initial state, when its part is read.
    ``compile``: run the networks through ``torch.compile`` (minutes of compiling first;
    float-noise differences only). On the CPU the eager network's oneDNN linear layers
    were faster (docs/benchmarks.md); on a GPU it has not been measured."""
    notes = [] if notes is None else notes
    models = dict(checkpoints) if isinstance(checkpoints, Mapping) else load_models(checkpoints)
    named = [(getattr(m, "checkpoint_path", f"the {h} h model"), m) for h, m in models.items()]
    for other in named[1:]:
        _check_compatible(named[0], other)
    lead = parse_hours(lead_time)
    step = parse_hours(every) if every is not None else lead
    if lead % step:
        raise ValueError(f"the lead time ({lead} h) is not a multiple of every ({step} h)")
    leads = list(range(step, lead + 1, step))
    plans(leads, models.keys())  # unreachable lead times fail before any work
    _check_ensemble(members, perturbation, perturbation_scale)
    reference = models[max(models)]
    selection, source, regrid = _prepare_input(data, reference, init_times, notes)
    if members > 1 and "number" in selection.dims:
        raise ValueError("the input already has ensemble members (dim 'number'); "
                         "use members=1 or an input without them")
    if members > 1:
        notes.append(f"ensemble of {members} members: member 0 is the control, the others "
                     f"add {perturbation} noise of scale {perturbation_scale} standard "
                     f"deviations to the initial state (seed {seed})")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    for m in models.values():
        m.to(device).eval()
        if compile:
            m.net.compile()  # in place: the state dict keeps its keys
    c = reference.config
    steps = {h: m.forecast_step for h, m in models.items()}
    per_init = members * selection.sizes.get("number", 1)
    size = max(1, batch_size // per_init)
    for first in range(0, selection.sizes["time"], size):
        ds = _read_part(selection.isel(time=slice(first, first + size)), source, regrid,
                        reference)
        state = State.from_xarray(ds, c.upper_vars, c.surface_vars)  # dims (time, [number])
        if members > 1:
            state = _perturbed(state, reference, members, perturbation, perturbation_scale,
                               seed, first=first)
        out = _run(steps, state, leads, batch_size, device)  # dims (time, [number,] lead)
        yield first, _to_dataset(out, ds, models, notes)


def forecast(checkpoints: Sequence[str | Path] | Mapping[int, GeoFormerModule],
             data: xr.Dataset | str | Path, init_times: Sequence[Any],
             lead_time: str | int = "10d", every: str | int | None = None,
             batch_size: int = 1, device: str | None = None,
             notes: list[str] | None = None, members: int = 1,
             perturbation: str = "perlin", perturbation_scale: float = 0.2,
             seed: int = 0, compile: bool = False) -> xr.Dataset:
    """Forecast from each initial time out to ``lead_time``, every ``every`` hours, in
    memory (:func:`geoformer.forecast_store.forecast_to_store` streams to a store instead).

    Lead-time models are chained by hierarchical temporal aggregation (fewest steps, shared
    intermediate states). An input with an ensemble dim ``number`` gives one forecast per
    member. Returns a Dataset with dims (time, [number,] prediction_timedelta, level,
    latitude, longitude), WeatherBench 2 variable names, CF attributes and provenance.
    """
    parts = [part for _, part in iter_forecasts(
        checkpoints, data, init_times, lead_time=lead_time, every=every,
        batch_size=batch_size, device=device, notes=notes, members=members,
        perturbation=perturbation, perturbation_scale=perturbation_scale, seed=seed,
        compile=compile)]
    if len(parts) == 1:
        return parts[0]
    return xr.concat(parts, dim="time", data_vars="minimal", coords="minimal",
                     compat="override", combine_attrs="override")


def _run(steps: Mapping[int, Step], state: State, leads: list[int], batch_size: int,
         device: str) -> State:
    """Initial states (*B, ...) -> forecasts (*B, L, ...) at ``leads`` hours, computed
    ``batch_size`` initial states at a time on ``device`` and gathered on the CPU."""
    flat = state.flatten()  # (B, V, Z, H, W), (B, S, H, W)
    B, L = len(flat), len(leads)
    upper = torch.empty(B, L, *flat.upper.shape[1:], dtype=torch.float32)  # (B, L, V, Z, H, W)
    surface = torch.empty(B, L, *flat.surface.shape[1:], dtype=torch.float32)  # (B, L, S, H, W)
    position = {h: i for i, h in enumerate(leads)}
    with torch.no_grad():
        for start in range(0, B, batch_size):
            part = flat[start:start + batch_size].to(device)
            for h, (u, s) in aggregated_rollout(steps, part.upper, part.surface, leads):
                upper[start:start + len(part), position[h]] = u.float().cpu()
                surface[start:start + len(part), position[h]] = s.float().cpu()
    lead = pd.to_timedelta(leads, unit="h").values
    out = flat.replace(upper=upper, surface=surface, dims=("batch", "prediction_timedelta"),
                       coords={"prediction_timedelta": lead})
    return out.unflatten(state)


def _check_ensemble(members: int, perturbation: str, scale: float) -> None:
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
        raise ValueError(f"members must be a whole number >= 1, found {members!r}")
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; known: {list(PERTURBATIONS)}")
    if not scale >= 0:
        raise ValueError(f"the perturbation scale must be >= 0, found {scale}")


def _perturbed(state: State, module: GeoFormerModule, members: int, perturbation: str,
               scale: float, seed: int, first: int = 0) -> State:
    """Initial states (T, V, Z, H, W), (T, S, H, W) -> an ensemble (T, N, V, Z, H, W),
    (T, N, S, H, W) with dims (time, number); member 0 is the state itself.

    The noise is drawn in normalised space and multiplied by each field's std, which is the
    same as normalise, add, denormalise, but leaves the control member bit for bit unchanged.
    ``first`` is the index of the first of these initial times among all of the forecast's
    (each initial time draws its own noise, however the times are split into parts).
    """
    norm = module.normalizer
    std_u = norm.upper_std.detach().cpu().numpy()[:, :, None, None]  # (V, Z, 1, 1)
    std_s = norm.surface_std.detach().cpu().numpy()[:, None, None]  # (S, 1, 1)
    std_u, std_s = np.where(std_u > 0, std_u, 1), np.where(std_s > 0, std_s, 1)  # as Normalizer
    lat, lon = module.contract.latitude, module.contract.longitude
    upper, surface = state.upper.numpy(), state.surface.numpy()
    out_u = np.empty((upper.shape[0], members, *upper.shape[1:]), np.float32)
    out_s = np.empty((surface.shape[0], members, *surface.shape[1:]), np.float32)
    for t in range(upper.shape[0]):
        du, ds = ensemble_noise(members, upper.shape[1:3], surface.shape[1], lat, lon, scale,
                                seed, draw=first + t, perturbation=perturbation)
        out_u[t] = upper[t][None] + du * std_u  # (N, V, Z, H, W)
        out_s[t] = surface[t][None] + ds * std_s  # (N, S, H, W)
    return state.replace(upper=torch.from_numpy(out_u), surface=torch.from_numpy(out_s),
                         dims=(*state.dims, "number"),
                         coords={**state.coords, "number": np.arange(members)})


def _to_dataset(state: State, ds: xr.Dataset, models: Mapping[int, GeoFormerModule],
                notes: list[str]) -> xr.Dataset:
    """Forecasts with dims (time, [number,] prediction_timedelta) -> the CF forecast Dataset;
    ``ds`` (the input) lends its coordinates' attributes."""
    out = state.to_xarray()
    for name in ("number", "level", "latitude", "longitude"):
        if name in out.coords and name in ds.coords:
            out[name].attrs = dict(ds[name].attrs)
    out["valid_time"] = out["time"] + out["prediction_timedelta"]
    out = out.set_coords("valid_time")
    out["time"].attrs = {"standard_name": "forecast_reference_time",
                         "long_name": "initialisation time"}
    out["prediction_timedelta"].attrs = {"standard_name": "forecast_period",
                                         "long_name": "lead time"}
    out["valid_time"].attrs = {"standard_name": "time", "long_name": "valid time"}
    if "number" in out.dims and not out["number"].attrs:
        out["number"].attrs = {"standard_name": "realization",
                               "long_name": "ensemble member (0: control)"}
    out.attrs = {
        "Conventions": "CF-1.8",
        "title": "geoformer forecast",
        "source": f"geoformer {__version__} (Pangu-Weather 3D Earth-specific transformer)",
        "lead_time_models_hours": [int(h) for h in sorted(models)],
        "checkpoints": [_describe(m) for _, m in sorted(models.items())],
        "history": "\n".join([f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} "
                              f"created by geoformer {__version__}", *notes]),
    }
    return out


def _describe(module: GeoFormerModule) -> str:
    path = getattr(module, "checkpoint_path", None)
    lead = int(module.contract.lead_hours)
    if path is None:
        return f"{lead} h: in-memory model"
    return f"{lead} h: {path} (sha256 {_sha256(Path(path))[:16]})"


def write_forecast(ds: xr.Dataset, path: str | Path, overwrite: bool = False) -> Path:
    """Write a forecast to .zarr or .nc atomically (temporary sibling, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        encoding = {v: {"dtype": "float32"} for v in ds.data_vars}
        chunks = {d: (1 if d in ("time", "number", "prediction_timedelta") else -1)
                  for d in ds.dims}
        return atomic_write_zarr(ds.chunk(chunks), path, overwrite=overwrite, encoding=encoding)
    if suffix in (".nc", ".nc4"):
        return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4",
                                                           encoding=netcdf_checksums(ds)),
                            overwrite=overwrite)
    raise ValueError(f"forecast output must end in .zarr or .nc, found {path.name!r}")
