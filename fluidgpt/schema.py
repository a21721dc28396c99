"""The canonical fluidgpt dataset: particle trajectories, case conditions and wall erosion.

One xarray Dataset, SI units, CF-style ``units`` / ``long_name`` attributes:

==============  ==============================  ===========  ===============================
name            dims                            units        meaning
==============  ==============================  ===========  ===============================
position        (case, particle, step, xyz)     m            particle centre
velocity        (case, particle, step, xyz)     m s-1        particle velocity
diameter        (case, particle)                m            particle diameter
valid           (case, particle, step)          (bool)       sampled and inside the domain
time            (case, step) or (step,)         s            physical time of each step
conditions      (case, condition)               per column   case conditions (coord units)
erosion_rate    (case, face)                    kg m-2 s-1   wall erosion rate
face_centre     (face, xyz)                     m            wall-face centre (coordinate)
face_area       (face,)                         m2           wall-face area (coordinate)
patch           (face,)                         (str)        wall patch of the face (coord)
group           (case,)                         1            physically identical cases
seed            (case,)                         1            injection seed of the case
==============  ==============================  ===========  ===============================

Where ``valid`` is False (before injection, after the particle left), position and velocity
hold the last valid sample so the arrays never carry NaN. Cases that share a ``group`` are
the same physical simulation (replicas under inert labels, or the same conditions with
another injection seed): a split must keep a group on one side.
"""

from __future__ import annotations

import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import xarray as xr

from .atomic import atomic_write

__all__ = ["SchemaError", "validate", "open_dataset", "save_dataset", "write_dataset",
           "canonical_dataset", "check_condition", "PHYSICAL_CONDITIONS", "CONDITION_ATTRS",
           "CONDITION_BOUNDS", "XYZ", "VARIABLES"]

XYZ = ("x", "y", "z")

#: Conditions that change the physics of the elbow sweep, in canonical column order.
PHYSICAL_CONDITIONS = ("main_inlet_speed", "side_inlet_speed", "particle_diameter",
                       "particle_density", "restitution")

#: Known conditions: (units, long_name). The pressures are inert labels (paper-style variant).
CONDITION_ATTRS = {
    "main_inlet_speed": ("m s-1", "main-inlet gas speed"),
    "side_inlet_speed": ("m s-1", "side-inlet (branch) gas speed"),
    "particle_diameter": ("m", "particle diameter"),
    "particle_density": ("kg m-3", "particle material density"),
    "restitution": ("1", "normal restitution coefficient at the walls"),
    "main_inlet_pressure": ("Pa", "main-inlet gauge pressure label (inert)"),
    "side_inlet_pressure": ("Pa", "side-inlet gauge pressure label (inert)"),
}

#: Physically possible values of the known conditions: (lower, upper, lower excluded). An
#: inlet speed is a magnitude (0: a closed inlet); the pressure labels are unbounded gauges.
CONDITION_BOUNDS = {
    "main_inlet_speed": (0.0, math.inf, False),
    "side_inlet_speed": (0.0, math.inf, False),
    "particle_diameter": (0.0, math.inf, True),
    "particle_density": (0.0, math.inf, True),
    "restitution": (0.0, 1.0, False),
}


def check_condition(name: str, value: float) -> str | None:
    """Why ``value`` is not a possible value of condition ``name`` (None: it is, or the
    condition has no known bounds): ``condition NAME: expected RANGE UNITS, found VALUE``."""
    if name not in CONDITION_BOUNDS:
        return None
    low, high, open_low = CONDITION_BOUNDS[name]
    value = float(value)
    if math.isfinite(value) and (value > low or (value == low and not open_low)) \
            and value <= high:
        return None
    units = CONDITION_ATTRS[name][0]
    if high == math.inf:
        expected = f"{'>' if open_low else '>='} {low:g} {units}"
    else:
        expected = f"a value in {'(' if open_low else '['}{low:g}, {high:g}] ({units})"
    return f"condition {name}: expected {expected}, found {value:g}"


#: name: (dims, units, long_name); units None where the variable is not a quantity.
VARIABLES = {
    "position": (("case", "particle", "step", "xyz"), "m", "particle position"),
    "velocity": (("case", "particle", "step", "xyz"), "m s-1", "particle velocity"),
    "diameter": (("case", "particle"), "m", "particle diameter"),
    "valid": (("case", "particle", "step"), None, "particle sampled and inside the domain"),
    "conditions": (("case", "condition"), None, "case conditions"),
    "erosion_rate": (("case", "face"), "kg m-2 s-1", "wall erosion rate"),
    "face_centre": (("face", "xyz"), "m", "wall face centre"),
    "face_area": (("face",), "m2", "wall face area"),
    "patch": (("face",), None, "wall patch name"),
    "group": (("case",), "1", "physical-case group (identical physics share a group)"),
    "seed": (("case",), "1", "particle injection seed"),
}

_TRAJECTORY = ("position", "velocity", "diameter", "valid")
_EROSION = ("erosion_rate", "face_centre", "face_area", "patch")


class SchemaError(ValueError):
    """A dataset that does not follow the canonical layout; the message says what and where."""


def _check_var(ds: xr.Dataset, name: str, problems: list[str]) -> bool:
    if name not in ds.variables:
        problems.append(f"{name}: missing (expected dims {VARIABLES[name][0]})")
        return False
    dims, units, _ = VARIABLES[name]
    var = ds[name]
    if var.dims != dims:
        problems.append(f"{name}: expected dims {dims}, found {var.dims}")
        return False
    if units is not None and var.attrs.get("units") != units:
        problems.append(f"{name}: expected units {units!r}, found {var.attrs.get('units')!r}")
    return True


def _check_time(ds: xr.Dataset, problems: list[str]) -> None:
    if "time" not in ds.variables:
        problems.append("time: missing (expected dims ('case', 'step') or ('step',), units 's')")
        return
    t = ds["time"]
    if t.dims not in (("case", "step"), ("step",)):
        problems.append(f"time: expected dims ('case', 'step') or ('step',), found {t.dims}")
        return
    if t.attrs.get("units") != "s":
        problems.append(f"time: expected units 's', found {t.attrs.get('units')!r}")
    if ds.sizes.get("step", 0) > 1 and not bool((t.diff("step") > 0).all()):
        problems.append("time: must increase strictly along step")


def _check_trajectories(ds: xr.Dataset, problems: list[str]) -> None:
    ok = [_check_var(ds, name, problems) for name in _TRAJECTORY]
    _check_time(ds, problems)
    if "xyz" in ds.coords and tuple(ds["xyz"].values.tolist()) != XYZ:
        problems.append(f"xyz: expected coordinate values {XYZ}, found "
                        f"{tuple(ds['xyz'].values.tolist())}")
    if ok[3] and ds["valid"].dtype != bool:
        problems.append(f"valid: expected dtype bool, found {ds['valid'].dtype}")
    for name, good in zip(("position", "velocity", "diameter"), ok[:3]):
        if good and not np.isfinite(ds[name].values).all():
            problems.append(f"{name}: contains NaN or inf (hold the last sample where invalid)")
    if ok[2] and not (ds["diameter"].values > 0).all():
        problems.append("diameter: every particle diameter must be > 0 m")


def _check_conditions(ds: xr.Dataset, problems: list[str]) -> None:
    if not _check_var(ds, "conditions", problems):
        return
    names = [str(n) for n in ds["condition"].values] if "condition" in ds.coords else []
    if not names:
        problems.append("condition: missing coordinate with the condition names")
        return
    if len(set(names)) != len(names):
        problems.append(f"condition: duplicate names in {names}")
    if "condition_units" not in ds.coords or ds["condition_units"].dims != ("condition",):
        problems.append("condition_units: missing coordinate (condition,) with each unit")
    else:
        for name, unit in zip(names, ds["condition_units"].values.astype(str).tolist()):
            known = CONDITION_ATTRS.get(name)
            if known is not None and unit != known[0]:
                problems.append(f"condition {name}: expected units {known[0]!r}, found {unit!r}")
    values = ds["conditions"].transpose("case", "condition").values  # (N, C)
    if not np.isfinite(values).all():
        problems.append("conditions: contains NaN or inf")
        return
    for name, column in zip(names, values.T):
        bad = [m for m in (check_condition(name, v) for v in column) if m]
        if bad:
            problems.append(f"{bad[0]} ({len(bad)} case(s))")


def _check_erosion(ds: xr.Dataset, problems: list[str]) -> None:
    ok = [_check_var(ds, name, problems) for name in _EROSION]
    if ok[0]:
        rate = ds["erosion_rate"].values
        if not np.isfinite(rate).all() or (rate < 0).any():
            problems.append("erosion_rate: must be finite and >= 0 kg m-2 s-1")
    if ok[2] and not (ds["face_area"].values > 0).all():
        problems.append("face_area: every wall face area must be > 0 m2")


def _check_case_vars(ds: xr.Dataset, problems: list[str]) -> None:
    for name in ("group", "seed"):
        if name not in ds.variables:
            if name == "group":
                problems.append("group: missing (case,) integer; use arange(n_case) when every "
                                "case is physically distinct")
            continue
        if _check_var(ds, name, problems) and not np.issubdtype(ds[name].dtype, np.integer):
            problems.append(f"{name}: expected an integer dtype, found {ds[name].dtype}")


def validate(ds: xr.Dataset, erosion: bool = True) -> xr.Dataset:
    """Check `ds` against the canonical layout; raise SchemaError listing every problem.

    erosion: also require erosion_rate and its face coordinates. Returns `ds` unchanged.
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"expected an xarray.Dataset, found {type(ds).__name__}")
    problems: list[str] = []
    _check_trajectories(ds, problems)
    _check_conditions(ds, problems)
    _check_case_vars(ds, problems)
    if erosion:
        _check_erosion(ds, problems)
    if problems:
        raise SchemaError("dataset does not follow the fluidgpt schema:\n  - "
                          + "\n  - ".join(problems))
    return ds


def _attrs(name: str) -> dict:
    _, units, long_name = VARIABLES[name]
    return {"long_name": long_name, **({"units": units} if units else {})}


def canonical_dataset(position, valid, time, conditions, condition_names, *, velocity=None,
                      diameter=None, condition_units=None, erosion_rate=None, face_centre=None,
                      face_area=None, patch=None, group=None, seed=None, attrs=None,
                      face_vertices=None) -> xr.Dataset:
    """Assemble arrays into the canonical dataset (SI units) and validate it.

    position, velocity: (N, P, T, 3); valid: (N, P, T) bool; time: (N, T) or (T,) [s];
    conditions: (N, C) with names (C,) and units (C,) (looked up in CONDITION_ATTRS when
    omitted); diameter: (N, P); erosion_rate: (N, F) with face_centre (F, 3), face_area (F,),
    patch (F,) and optionally face_vertices (F, K, 3), the corners of each wall face (for
    VTK output on the wall mesh). velocity defaults to the finite difference of position; group to
    arange(N); seed to zeros.
    """
    position = np.asarray(position, dtype=np.float32)
    N, P, T, _ = position.shape
    time = np.asarray(time, dtype=np.float64)
    if velocity is None:
        t = np.broadcast_to(time, (N, T))[:, None, :, None]   # (N, 1, T, 1)
        velocity = np.gradient(position, axis=2) / np.gradient(t, axis=2)
    names = [str(n) for n in condition_names]
    if condition_units is None:
        missing = [n for n in names if n not in CONDITION_ATTRS]
        if missing:
            raise SchemaError(f"condition_units needed for unknown conditions {missing}")
        condition_units = [CONDITION_ATTRS[n][0] for n in names]
    data = {
        "position": (VARIABLES["position"][0], position, _attrs("position")),
        "velocity": (VARIABLES["velocity"][0], np.asarray(velocity, np.float32),
                     _attrs("velocity")),
        "diameter": (("case", "particle"), np.asarray(diameter, np.float32).reshape(N, P)
                     if diameter is not None else np.zeros((N, P), np.float32),
                     _attrs("diameter")),
        "valid": (VARIABLES["valid"][0], np.asarray(valid, dtype=bool), _attrs("valid")),
        "conditions": (("case", "condition"), np.asarray(conditions, np.float64),
                       _attrs("conditions")),
        "group": (("case",), np.arange(N) if group is None else np.asarray(group, np.int64),
                  _attrs("group")),
        "seed": (("case",), np.zeros(N, np.int64) if seed is None else
                 np.asarray(seed, np.int64), _attrs("seed")),
    }
    coords = {
        "xyz": ("xyz", list(XYZ)),
        "condition": ("condition", names),
        "condition_units": ("condition", [str(u) for u in condition_units]),
        "time": (("case", "step") if time.ndim == 2 else ("step",), time,
                 {"units": "s", "long_name": "time since injection"}),
    }
    if erosion_rate is not None:
        data["erosion_rate"] = (("case", "face"), np.asarray(erosion_rate, np.float32),
                                _attrs("erosion_rate"))
        coords["face_centre"] = (("face", "xyz"), np.asarray(face_centre, np.float64),
                                 _attrs("face_centre"))
        coords["face_area"] = (("face",), np.asarray(face_area, np.float64),
                               _attrs("face_area"))
        coords["patch"] = (("face",), [str(p) for p in patch], _attrs("patch"))
        if face_vertices is not None:
            coords["face_vertex"] = (("face", "corner", "xyz"),
                                     np.asarray(face_vertices, np.float64),
                                     {"units": "m", "long_name": "corners of each wall face, "
                                      "in the mesh's order"})
    ds = xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))
    ds.attrs.setdefault("Conventions", "CF-1.10")
    ds["condition_units"].attrs["long_name"] = "units of each condition"
    return validate(ds, erosion=erosion_rate is not None)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in (".zarr.zip", ".zarr", ".nc"):
        if name.endswith(s):
            return s
    raise SchemaError(f"{path}: unknown dataset format; expected .nc, .zarr or .zarr.zip")


def open_dataset(path, erosion: bool | None = None) -> xr.Dataset:
    """Open a canonical dataset (.nc, .zarr directory or .zarr.zip), loaded and validated.

    erosion: require the erosion variables (None: only when erosion_rate is present).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset")
    kind = _suffix(path)
    try:  # backends raise many kinds on bytes they cannot decode (corrupted, truncated)
        if kind == ".nc":
            ds = xr.open_dataset(path, engine="netcdf4")
        elif kind == ".zarr.zip":
            import zarr

            ds = xr.open_zarr(zarr.storage.ZipStore(path, mode="r"), consolidated=False)
        else:
            ds = xr.open_zarr(path, consolidated=False)
        ds = ds.load()
        ds.close()
    except Exception as err:
        found = " ".join(str(err).split())[:160]
        raise SchemaError(f"{path}: not a readable {kind} dataset (expected a canonical "
                          f"dataset; found {type(err).__name__}: {found})") from err
    strings = {name: var.copy(data=np.array(var.values.tolist(), dtype=str))
               for name, var in ds.variables.items() if var.dtype.kind in "OT"}
    ds = ds.assign_coords({k: v for k, v in strings.items() if k in ds.coords})
    ds = ds.assign({k: v for k, v in strings.items() if k not in ds.coords})
    if "valid" in ds and ds["valid"].dtype != bool:
        ds["valid"] = ds["valid"].astype(bool)
    return validate(ds, erosion="erosion_rate" in ds if erosion is None else erosion)


def _write_zarr_zip(ds: xr.Dataset, path: Path) -> None:
    # Writing straight into a ZipStore rewrites metadata keys (duplicate zip entries), so
    # write a directory store and pack it; chunks are already compressed: store, not deflate.
    with tempfile.TemporaryDirectory() as tmp:
        _to_zarr(ds, Path(tmp) / "data.zarr")
        root = Path(tmp) / "data.zarr"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for file in sorted(root.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(root).as_posix())


def save_dataset(ds: xr.Dataset, path) -> Path:
    """Write a canonical dataset to .nc (zlib-compressed) or .zarr / .zarr.zip, in place (the
    format step of :func:`write_dataset`, which the commands use: whole or nothing)."""
    path = Path(path)
    kind = _suffix(path)
    validate(ds, erosion="erosion_rate" in ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".nc":
        # Fletcher-32: a corrupted chunk is a read error, never wrong numbers
        encoding = {name: {"zlib": True, "complevel": 5, "shuffle": True, "fletcher32": True}
                    for name, var in ds.variables.items()
                    if var.dtype.kind in "fiub" and var.ndim > 0}
        ds.to_netcdf(path, engine="netcdf4", encoding=encoding)
    elif kind == ".zarr.zip":
        _write_zarr_zip(ds, path)
    else:
        _to_zarr(ds, path)
    return path


def write_dataset(ds: xr.Dataset, path, overwrite: bool = False) -> Path:
    """:func:`save_dataset` through :func:`fluidgpt.atomic.atomic_write`: a failure (or a
    kill) leaves the previous dataset at ``path``, or nothing. An existing ``path`` is
    refused unless ``overwrite``."""
    _suffix(Path(path))  # an unknown format is refused before anything is written
    return atomic_write(path, lambda tmp: save_dataset(ds, tmp), overwrite=overwrite)


def _to_zarr(ds: xr.Dataset, path: Path) -> None:
    import zarr.codecs

    # Zarr v3 has a stable variable-length string type but not a fixed-width one.
    strings = {name: var.astype(object) for name, var in ds.variables.items()
               if var.dtype.kind == "U"}
    ds = ds.assign_coords(**{k: v for k, v in strings.items() if k in ds.coords}).assign(
        **{k: v for k, v in strings.items() if k not in ds.coords})
    # zarr's default zstd frames carry no checksum (a flipped byte decodes to wrong numbers):
    # a CRC32C on every chunk makes a corrupted one a read error
    codecs = {"compressors": (zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec())}
    ds.to_zarr(path, mode="w", consolidated=False,
               encoding={str(name): dict(codecs) for name in ds.variables})
