"""The one internal schema of reanalysis-like data, and the edge that maps data onto it.

Whatever comes in (WeatherBench 2 zarr, ERA5 netCDF or GRIB with short names, WeatherBench 1
with lat/lon, new CDS files with valid_time/pressure_level) leaves :func:`standardize` as:

- dims ``time`` (datetime64), optional ``number`` (ensemble member), ``level`` (int hPa,
  from the surface up: 1000 -> 50), ``latitude`` (degrees_north, north to south),
  ``longitude`` (degrees_east, ascending from 0 in [0, 360));
- WeatherBench 2 variable names with CF attributes and SI units (geopotential in m2 s-2).

A GRIB run time + step (cfgrib's ``time``, ``step``, ``valid_time``) becomes the valid time;
a single state (scalar time) gets a ``time`` dim of length 1. Every conversion made on the
way (geopotential height to geopotential, hPa to Pa, run time + step to valid time, ...) is
recorded in the dataset's ``history`` attribute and returned as notes, never silent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import grib_log, whole_netcdf
from .humidity import RH_NAMES, specific_humidity_from_rh
from .sources.grib import GribError, open_grib, valid_times

__all__ = [
    "GRAVITY",
    "VARIABLES",
    "UPPER_AIR",
    "SURFACE",
    "STATIC",
    "ALIASES",
    "SchemaError",
    "VariableInfo",
    "standardize",
    "validate",
    "open_dataset",
    "canonical_name",
]

GRAVITY = 9.80665  # m s-2, WMO standard gravity: geopotential = g * geopotential height


class SchemaError(ValueError):
    """Data that cannot be mapped onto the internal schema; the message names the problem."""


@dataclass(frozen=True)
class VariableInfo:
    kind: str  # "upper", "surface" or "static"
    units: str
    standard_name: str
    long_name: str


VARIABLES: dict[str, VariableInfo] = {
    "geopotential": VariableInfo("upper", "m2 s-2", "geopotential", "Geopotential"),
    "specific_humidity": VariableInfo("upper", "kg kg-1", "specific_humidity",
                                      "Specific humidity"),
    "temperature": VariableInfo("upper", "K", "air_temperature", "Temperature"),
    "u_component_of_wind": VariableInfo("upper", "m s-1", "eastward_wind",
                                        "U component of wind"),
    "v_component_of_wind": VariableInfo("upper", "m s-1", "northward_wind",
                                        "V component of wind"),
    "mean_sea_level_pressure": VariableInfo("surface", "Pa", "air_pressure_at_mean_sea_level",
                                            "Mean sea level pressure"),
    "surface_pressure": VariableInfo("surface", "Pa", "surface_air_pressure",
                                     "Surface pressure"),
    "10m_u_component_of_wind": VariableInfo("surface", "m s-1", "eastward_wind",
                                            "10 metre U wind component"),
    "10m_v_component_of_wind": VariableInfo("surface", "m s-1", "northward_wind",
                                            "10 metre V wind component"),
    "2m_temperature": VariableInfo("surface", "K", "air_temperature", "2 metre temperature"),
    "land_sea_mask": VariableInfo("static", "1", "land_binary_mask", "Land-sea mask"),
    "soil_type": VariableInfo("static", "1", "soil_type", "Soil type"),
    "geopotential_at_surface": VariableInfo("static", "m2 s-2", "surface_geopotential",
                                            "Geopotential at surface (orography)"),
}
UPPER_AIR = tuple(k for k, v in VARIABLES.items() if v.kind == "upper")
SURFACE = tuple(k for k, v in VARIABLES.items() if v.kind == "surface")
STATIC = tuple(k for k, v in VARIABLES.items() if v.kind == "static")

# Other names for the same variables: ERA5 / IFS short names (and cfgrib's), NCEP's (gh, prmsl,
# orog), WeatherBench 1 names.
ALIASES: dict[str, str] = {
    "z": "geopotential", "q": "specific_humidity", "t": "temperature",
    "u": "u_component_of_wind", "v": "v_component_of_wind",
    "msl": "mean_sea_level_pressure", "prmsl": "mean_sea_level_pressure",
    "sp": "surface_pressure",
    "u10": "10m_u_component_of_wind", "v10": "10m_v_component_of_wind",
    "10u": "10m_u_component_of_wind", "10v": "10m_v_component_of_wind",
    "t2m": "2m_temperature", "2t": "2m_temperature",
    "lsm": "land_sea_mask", "slt": "soil_type", "z_surface": "geopotential_at_surface",
    "orography": "geopotential_at_surface",  # WeatherBench 1: metres, converted below
    "orog": "geopotential_at_surface",  # GRIB (NCEP, IFS open data): metres, converted below
    "geopotential_height": "geopotential", "gh": "geopotential",  # metres, converted below
}

_COORDS = {
    "lat": "latitude", "lon": "longitude",
    "isobaricInhPa": "level", "pressure_level": "level", "plev": "level",
}

# Units taken to mean the canonical ones (spelling variants of CF/ECMWF/udunits).
_SAME_UNITS = {
    "m2 s-2": {"m2 s-2", "m**2 s**-2", "m^2 s^-2", "m2/s2", "m^2/s^2"},
    "kg kg-1": {"kg kg-1", "kg kg**-1", "kg/kg", "1"},
    "K": {"K", "kelvin"},
    "m s-1": {"m s-1", "m s**-1", "m/s"},
    "Pa": {"Pa", "pascal"},
    "1": {"1", "(0 - 1)", "0-1", "", "dimensionless", "~", "fraction"},
}
_HEIGHT_NAMES = {"orography", "orog", "geopotential_height", "gh"}
_HEIGHT_UNITS = {"m", "gpm", "metre", "metres", "meter", "meters"}


def canonical_name(name: str) -> str:
    """WeatherBench 2 name of a variable given under any known alias (or itself)."""
    return ALIASES.get(name, name)


def _note(notes: list[str], ds: xr.Dataset, text: str) -> None:
    notes.append(text)
    history = ds.attrs.get("history", "")
    ds.attrs["history"] = (history + "\n" if history else "") + f"geoformer: {text}"


def _rename(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    renames = {}
    for name in _HEIGHT_NAMES & set(map(str, ds.data_vars)):
        if not _units_of(ds[name]):  # WeatherBench 1's orography carries no units: metres
            ds[name].attrs["units"] = "m"
    level_dims = {"level", "isobaricInhPa", "pressure_level", "plev"}
    for name in list(ds.variables):
        target = _COORDS.get(str(name)) if name in ds.coords or name in ds.dims else None
        if target is None:
            target = ALIASES.get(str(name))
        if name == "z" and not level_dims & set(ds[name].dims):
            target = "geopotential_at_surface"  # ERA5 single-level files: orography
        if target and target != name:
            if target in ds.variables:
                raise SchemaError(
                    f"both {name!r} and {target!r} are present; they name the same quantity")
            renames[name] = target
    # New CDS files: valid_time is the time dimension.
    if "time" not in ds.dims and "valid_time" in ds.dims:
        renames["valid_time"] = "time"
    elif "time" in ds.dims and "valid_time" in ds.coords and "valid_time" not in ds.dims:
        ds = ds.drop_vars("valid_time")
    if renames:
        ds = ds.rename(renames)
        _note(notes, ds, "renamed " + ", ".join(f"{a} -> {b}" for a, b in renames.items()))
    return ds


def _valid_time(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    """Run time + step -> one dim ``time`` of valid times; a scalar time -> a dim of length 1."""
    try:
        ds, lines, single = valid_times(ds)
    except ValueError as err:
        raise SchemaError(str(err)) from None
    if single:  # constant fields of one state lose the time dim (GRIB gives lsm one)
        for name in [n for n in STATIC if n in ds.data_vars and "time" in ds[n].dims]:
            ds[name] = ds[name].isel(time=0, drop=True)
    for line in lines:
        _note(notes, ds, line)
    return ds


def _units_of(da: xr.DataArray) -> str:
    return str(da.attrs.get("units", "")).strip()


def _convert_units(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    for name in list(ds.data_vars):
        if name not in VARIABLES:
            continue
        info, da = VARIABLES[name], ds[name]
        units = _units_of(da)
        if info.units == "m2 s-2" and units in _HEIGHT_UNITS:
            ds[name] = da * GRAVITY
            _note(notes, ds, f"{name}: geopotential height in {units} multiplied by "
                             f"g = {GRAVITY} m s-2 to give geopotential in m2 s-2")
        elif info.units == "Pa" and units in {"hPa", "mbar", "millibars"}:
            ds[name] = da * 100.0
            _note(notes, ds, f"{name}: converted from {units} to Pa")
        elif info.units == "K" and units in {"degC", "C", "Celsius", "degrees_Celsius"}:
            ds[name] = da + 273.15
            _note(notes, ds, f"{name}: converted from {units} to K")
        elif units and units not in _SAME_UNITS[info.units]:
            raise SchemaError(
                f"variable {name!r} has units {units!r}; expected {info.units!r}"
                + (" (or geopotential height in m)" if info.units == "m2 s-2" else ""))
        ds[name].attrs.update(units=info.units, standard_name=info.standard_name,
                              long_name=info.long_name)
    return ds


def _order_coords(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    for dim in ("latitude", "longitude"):
        if dim not in ds.dims:
            raise SchemaError(
                f"no {dim!r} dimension (also looked for "
                f"{[k for k, v in _COORDS.items() if v == dim]}); found dims {list(ds.dims)}")
    if "level" in ds.dims:
        level = ds["level"]
        if str(level.attrs.get("units", "")).lower() in {"pa", "pascal"} or level.max() > 2000:
            ds = ds.assign_coords(level=level / 100.0)
            _note(notes, ds, "level: converted from Pa to hPa")
        ds = ds.assign_coords(level=np.round(ds["level"].values).astype(np.int64))
        ds = ds.sortby("level", ascending=False)  # from the surface up
        ds["level"].attrs.update(units="hPa", long_name="pressure level",
                                 standard_name="air_pressure", positive="down")
    ds = ds.sortby("latitude", ascending=False)  # north to south
    lon = ds["longitude"]
    if float(lon.min()) < 0:
        ds = ds.assign_coords(longitude=lon % 360.0)
        _note(notes, ds, "longitude: -180..180 mapped to 0..360")
    ds = ds.sortby("longitude")
    ds["latitude"].attrs.update(units="degrees_north", standard_name="latitude")
    ds["longitude"].attrs.update(units="degrees_east", standard_name="longitude")
    return ds


def _transpose(ds: xr.Dataset) -> xr.Dataset:
    order = [d for d in ("time", "prediction_timedelta", "number", "level", "latitude",
                         "longitude") if d in ds.dims]
    return ds.transpose(*order, ...)


def standardize(ds: xr.Dataset, notes: list[str] | None = None,
                humidity_from_rh: bool = False) -> xr.Dataset:
    """Map any supported dataset onto the internal schema (see the module docstring).

    ``notes`` (if given) receives one line per conversion made; the same lines are appended
    to ``ds.attrs["history"]``. ``humidity_from_rh`` derives specific humidity from relative
    humidity and temperature where the data has no specific humidity (see
    :mod:`geoformer.humidity` for the formula).
    """
    notes = [] if notes is None else notes
    ds = ds.copy()
    ds = _valid_time(_rename(ds, notes), notes)
    ds = _convert_units(ds, notes)
    ds = _order_coords(ds, notes)
    if humidity_from_rh:
        ds = _derive_humidity(ds, notes)
    return _transpose(ds)


def _derive_humidity(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    if "specific_humidity" in ds.data_vars:
        _note(notes, ds, "specific_humidity: in the data, so not derived from relative humidity")
        return ds
    try:
        q, text = specific_humidity_from_rh(ds)
    except ValueError as err:
        raise SchemaError(str(err)) from None
    info = VARIABLES["specific_humidity"]
    ds["specific_humidity"] = q.assign_attrs(units=info.units, standard_name=info.standard_name,
                                             long_name=info.long_name)
    _note(notes, ds, text)
    return ds


def validate(ds: xr.Dataset, upper_vars: Iterable[str] = (), surface_vars: Iterable[str] = (),
             static_vars: Iterable[str] = (), levels: Sequence[int] | None = None,
             check_finite: bool = True, source: str = "the dataset") -> None:
    """Check a standardised dataset holds what a model needs; raise SchemaError if not.

    Checks presence and dims of every variable, the requested levels, and (optionally)
    that no value is NaN or infinite.
    """
    dims_of = {"upper": ("level", "latitude", "longitude"), "surface": ("latitude", "longitude"),
               "static": ("latitude", "longitude")}
    wanted = [(v, "upper") for v in upper_vars] + [(v, "surface") for v in surface_vars] + [
        (v, "static") for v in static_vars]
    missing = [v for v, _ in wanted if v not in ds.data_vars]
    if missing:
        aliases = {v: [a for a, c in ALIASES.items() if c == v] for v in missing}
        raise SchemaError(
            f"{source} lacks variable(s) {missing} (also looked for {aliases}); "
            f"it has {sorted(map(str, ds.data_vars))}"
            + (_humidity_hint(ds) if "specific_humidity" in missing else ""))
    for name, kind in wanted:
        dims = ds[name].dims
        required = dims_of[kind]
        extra = [d for d in dims if d not in required + ("time", "number")]
        if any(d not in dims for d in required) or extra:
            raise SchemaError(f"{source}: variable {name!r} has dims {dims}; expected "
                              f"{('time',) if kind != 'static' else ()}{required}")
        if not np.issubdtype(ds[name].dtype, np.number):
            raise SchemaError(f"{source}: variable {name!r} holds {ds[name].dtype} values; "
                              "expected numbers")
    if levels is not None and upper_vars:
        have = [int(v) for v in ds["level"].values]
        lacking = [lv for lv in levels if lv not in have]
        if lacking:
            raise SchemaError(f"{source} lacks pressure level(s) {lacking} hPa; it has {have}")
    if check_finite:
        for name, _ in wanted:
            bad = int((~np.isfinite(ds[name])).sum())
            if bad:
                raise SchemaError(f"{source}: variable {name!r} has {bad} NaN or infinite "
                                  "value(s)")


def _humidity_hint(ds: xr.Dataset) -> str:
    rh = [n for n in RH_NAMES if n in ds.data_vars]
    if rh:
        return (f"; relative humidity {rh[0]!r} is present: derive specific humidity from it "
                "with --humidity-from-rh (Python: humidity_from_rh=True)")
    return ("; with relative humidity on pressure levels, --humidity-from-rh "
            "(Python: humidity_from_rh=True) derives it")


def _engine_for(path: str) -> str:
    p = path.rstrip("/").lower()
    if p.endswith((".grib", ".grb", ".grib1", ".grib2", ".grb2")):
        return "cfgrib"
    if p.endswith((".nc", ".nc4", ".netcdf", ".h5")):
        return "netcdf4"
    if p.endswith(".zarr") or p.startswith(("gs://", "s3://")) or Path(path).is_dir():
        return "zarr"
    if Path(path).is_file():  # operational names carry no suffix: gfs.t00z.pgrb2.0p25.f072
        with open(path, "rb") as f:
            head = f.read(1024)
        if head.startswith((b"CDF\x01", b"CDF\x02", b"\x89HDF")):
            return "netcdf4"
        if b"GRIB" in head:  # a GRIB message, perhaps after a WMO bulletin header
            return "cfgrib"
    raise SchemaError(f"cannot tell the format of {path!r}: expected a .zarr store, a netCDF "
                      "file (.nc) or a GRIB file (.grib, .grib2 or any file of GRIB messages)")


def open_dataset(path: str | Path, notes: list[str] | None = None,
                 chunks: dict | str | None = None, grib_filter: dict | None = None,
                 humidity_from_rh: bool = False) -> xr.Dataset:
    """Open ERA5-like data (zarr, netCDF or GRIB; local or gs:// / s3://) in the internal schema.

    Remote stores (e.g. the WeatherBench 2 stores on Google Cloud Storage) open anonymously
    with gcsfs / s3fs where the network allows. GRIB files may mix level types (operational
    GFS / IFS files): see :func:`geoformer.sources.grib.open_grib`; ``grib_filter`` is
    cfgrib's ``filter_by_keys`` (e.g. ``{"typeOfLevel": "isobaricInhPa"}``).
    ``humidity_from_rh`` derives specific humidity from relative humidity (see
    :func:`standardize`).
    """
    path = str(path)
    engine = _engine_for(path)
    remote = path.startswith(("gs://", "s3://"))
    if not remote and not Path(path).exists():
        raise SchemaError(f"no such file or store: {path}")
    if grib_filter and engine != "cfgrib":
        raise SchemaError(f"a GRIB filter ({grib_filter}) applies to GRIB files only; {path} "
                          f"opens as {engine}")
    kwargs: dict = {"chunks": chunks}
    if engine == "zarr":
        kwargs["consolidated"] = None
        if remote:
            kwargs["storage_options"] = {"token": "anon"} if path.startswith("gs://") else {
                "anon": True}
    elif engine == "cfgrib":
        try:
            import cfgrib  # noqa: F401
        except ImportError as err:
            raise SchemaError(f"reading GRIB ({path}) needs cfgrib and eccodes: "
                              "pip install 'sciforecast[grib]'") from err
    read: list[str] = []
    try:
        with grib_log() as skipped:  # cfgrib logs (tracebacks) and skips corrupted messages
            ds = open_grib(path, grib_filter, chunks, read) if engine == "cfgrib" else \
                xr.open_dataset(whole_netcdf(path), engine=engine, **kwargs)
    except GribError as err:
        raise SchemaError(str(err)) from err
    except Exception as err:
        raise SchemaError(f"could not open {path} as {engine}: {err}") from err
    if skipped:
        raise SchemaError(f"{path}: {len(skipped)} GRIB message(s) are corrupted or truncated "
                          "(expected whole messages; cfgrib would skip them)")
    notes = [] if notes is None else notes
    for line in read:
        _note(notes, ds, line)
    return _unused_note(standardize(ds, notes, humidity_from_rh), notes)


def _unused_note(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    """Say what will not be used, so nothing is dropped silently later."""
    unused = [str(v) for v in ds.data_vars if v not in VARIABLES and v not in RH_NAMES]
    if unused:
        _note(notes, ds, f"not in the schema, so not used: {', '.join(unused[:12])}"
                         + (f" and {len(unused) - 12} more" if len(unused) > 12 else ""))
    rh = [n for n in RH_NAMES if n in ds.data_vars]
    if rh and "specific_humidity" not in ds.data_vars:
        _note(notes, ds, f"specific_humidity: absent; relative humidity {rh[0]!r} is present: "
                         "pass --humidity-from-rh (Python: humidity_from_rh=True) to derive it")
    return ds
