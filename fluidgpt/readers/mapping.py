"""The mapping file of ``fluidgpt dataset import``: which of your columns is which, and the
conditions and time grid the data lacks (YAML; every key optional)::

    columns:                        # track tables: canonical name -> your column
      case: run_id                  # one table of several runs needs a case column
      particle: Particle ID
      time: t                       # a header without a unit is read in SI (s, m, m s-1)
      x: Points:0
      y: "Y [mm]"                   # a unit in the header is converted
      z: {column: pz, unit: mm}     # or give the unit here
    conditions:                     # per case label (or one case: name: value)
      run1: {main_inlet_speed: 8.0, side_inlet_speed: 20.0}
      run2: {main_inlet_speed: 12.0, side_inlet_speed: 30.0}
    # conditions_file: cases.csv    # or a CSV (a 'case' column; relative to this file)
    # condition_columns: {main_inlet_speed: U_in}   # or columns of the tables
    condition_units: {}             # units of conditions fluidgpt.schema does not know
    time: {steps: 11, interval: 0.004, start: 0.0}  # the grid the tracks are resampled on
    diameter: 5.0e-5                # [m], when the tables have no diameter column
    particles: [1, 2]               # keep these (default: all; every case must hold them)
    cloud: kinematicCloud           # OpenFOAM cases: the Lagrangian cloud
    erosion: {start: 0.04, end: 0.06, wall_density: 7800.0}  # OpenFOAM: <cloud>Q -> rate

An unknown key, a value of the wrong type, or a unit that is not one of the column's
quantity is a ValueError whose one line names the file and the key (``import.yaml:
columns.x.unit: expected a length unit (...), found 'kg'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..yamlfile import read_yaml
from .tracks import TRACK_COLUMNS
from .units import QUANTITY, column_unit, known_units, si_factor

__all__ = ["ImportMapping", "ErosionWindow", "load_mapping", "mapping_from_dict",
           "check_time_grid", "KEYS"]

#: The keys of a mapping file.
KEYS = ("columns", "conditions", "conditions_file", "condition_columns", "condition_units",
        "time", "diameter", "particles", "cloud", "erosion")
_CANONICAL = (*TRACK_COLUMNS, "case")


@dataclass(frozen=True)
class ErosionWindow:
    """Erosion rate between write times start < end [s] from the cumulative ``<cloud>Q``,
    with the wall density [kg m-3], on ``patches`` (None: every wall-type patch)."""

    start: float
    end: float
    wall_density: float
    patches: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ImportMapping:
    """What a mapping file (and the command line) says; every field may be empty.

    columns: canonical name -> source column; units: canonical name -> the unit stated for
    it; conditions: case label (text) -> {condition: value}, or {None: {...}} for the one
    case; conditions_file: a CSV path; condition_columns: condition -> source column;
    condition_units: condition -> unit; time: (steps, interval [s], start [s]); diameter [m];
    particles: labels to keep; cloud: the Lagrangian cloud of OpenFOAM cases; erosion.
    source: the file (named in messages); command_line: dotted key -> the option that gave it.
    """

    source: str = "command line"
    columns: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    conditions: Mapping[Any, Mapping[str, float]] | None = None
    conditions_file: Path | None = None
    condition_columns: Mapping[str, str] = field(default_factory=dict)
    condition_units: Mapping[str, str] = field(default_factory=dict)
    time: tuple[int, float, float] | None = None
    diameter: float | None = None
    particles: tuple | None = None
    cloud: str | None = None
    erosion: ErosionWindow | None = None
    command_line: Mapping[str, str] = field(default_factory=dict)

    def where(self, key: str) -> str:
        """Where ``key`` (dotted) was given, for a message: the option, or file and key."""
        return self.command_line.get(key, f"{self.source}: {key}")


def _fail(source: str, key: str, problem: str) -> ValueError:
    return ValueError(": ".join(p for p in (source, key, problem) if p))


def _section(value, source: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(source, key, f"expected a mapping (key: value lines), found {value!r}")
    return value


def _known(d: dict, allowed, source: str, key: str = "") -> None:
    for k in d:
        if k not in allowed:
            raise _fail(source, f"{key}.{k}" if key else str(k),
                        f"unknown key (expected one of {', '.join(allowed)})")


def _number(value, source: str, key: str, positive: bool = False) -> float:
    try:  # PyYAML reads 5e-5 (no dot) as text
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (positive and number <= 0):
        raise _fail(source, key, f"expected a {'positive ' if positive else ''}number, "
                                 f"found {value!r}")
    return number


def _text(value, source: str, key: str, what: str = "a column name") -> str:
    if not isinstance(value, str) or not value:
        raise _fail(source, key, f"expected {what} (text), found {value!r}")
    return value


def _unit(name: str, header: str, given, source: str, key: str) -> str | None:
    """The unit stated for column ``name`` (checked against its quantity and header)."""
    if given is not None:
        given = _text(given, source, f"{key}.unit", "a unit")
        if name not in QUANTITY:
            raise _fail(source, f"{key}.unit", f"{name} has no unit")
    try:
        unit = column_unit(name, header, given)
    except ValueError as e:
        raise _fail(source, key, str(e)) from None
    quantity = QUANTITY.get(name)
    if unit is not None and si_factor(unit, quantity) is None:
        place = f"{key}.unit" if given is not None else key
        hint = "" if given is not None else f" in the header {header!r}; give its unit: " \
                                            f"{{column: {header!r}, unit: ...}}"
        raise _fail(source, place, f"expected a {quantity} unit ({known_units(quantity)}), "
                                   f"found {unit!r}{hint}")
    return given


def _columns(data: dict, source: str) -> tuple[dict[str, str], dict[str, str]]:
    columns, units = {}, {}
    for name, spec in _section(data, source, "columns").items():
        key = f"columns.{name}"
        if name not in _CANONICAL:
            raise _fail(source, key, f"unknown key (expected one of {', '.join(_CANONICAL)})")
        if isinstance(spec, dict):
            _known(spec, ("column", "unit"), source, key)
            if "column" not in spec:
                raise _fail(source, key, "expected {column: HEADER} (and optionally unit)")
            header = _text(spec["column"], source, f"{key}.column")
        else:
            header, spec = _text(spec, source, key), {}
        given = _unit(name, header, spec.get("unit"), source, key)
        columns[name] = header
        if given is not None:
            units[name] = given
    return columns, units


def _conditions(data, source: str) -> dict:
    """{label: {name: value}} per case, or {None: {name: value}} for the one case."""
    data = _section(data, source, "conditions")
    nested = [isinstance(v, dict) for v in data.values()]
    if not data or (any(nested) and not all(nested)):
        raise _fail(source, "conditions", "expected condition: value lines (one case) or "
                                          "case: {condition: value, ...} for every case")
    if not all(nested):
        return {None: {str(n): _number(v, source, f"conditions.{n}") for n, v in data.items()}}
    out, names = {}, None
    for label, values in data.items():
        out[str(label)] = {str(n): _number(v, source, f"conditions.{label}.{n}")
                           for n, v in values.items()}
        if names is not None and sorted(out[str(label)]) != names:
            raise _fail(source, f"conditions.{label}", f"expected the conditions {names} "
                                                       f"of the other cases, found "
                                                       f"{sorted(out[str(label)])}")
        names = sorted(out[str(label)])
    return out


def check_time_grid(steps, interval, start,
                    keys: Sequence[str] = ("time.steps", "time.interval", "time.start")
                    ) -> tuple[int, float, float]:
    """(steps >= 2, interval > 0 [s], start [s]), or a ValueError naming the key (``keys``:
    how to name steps, interval and start, e.g. ``file: time.steps`` or ``--steps``)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"{keys[0]}: expected a whole number >= 2, found {steps!r}")
    return (steps, _number(interval, "", keys[1], positive=True),
            _number(start, "", keys[2]))


def _time(data, source: str) -> tuple[int, float, float]:
    data = _section(data, source, "time")
    _known(data, ("steps", "interval", "start"), source, "time")
    missing = [k for k in ("steps", "interval") if k not in data]
    if missing:
        raise _fail(source, "time", f"expected steps and interval, {missing} missing")
    return check_time_grid(data["steps"], data["interval"], data.get("start", 0.0),
                           [f"{source}: time.{k}" for k in ("steps", "interval", "start")])


def _erosion(data, source: str) -> ErosionWindow:
    data = _section(data, source, "erosion")
    _known(data, ("start", "end", "wall_density", "patches"), source, "erosion")
    missing = [k for k in ("start", "end", "wall_density") if k not in data]
    if missing:
        raise _fail(source, "erosion", f"expected start, end and wall_density, {missing} "
                                       "missing")
    start, end = (_number(data[k], source, f"erosion.{k}") for k in ("start", "end"))
    if not end > start:
        raise _fail(source, "erosion.end", f"expected a time after start ({start:g} s), "
                                           f"found {end:g}")
    patches = data.get("patches")
    if patches is not None:
        if not isinstance(patches, list) or not patches:
            raise _fail(source, "erosion.patches", f"expected a list of patch names, found "
                                                   f"{patches!r}")
        patches = tuple(_text(p, source, "erosion.patches", "a patch name") for p in patches)
    return ErosionWindow(start, end, _number(data["wall_density"], source,
                                             "erosion.wall_density", positive=True), patches)


def _particles(data, source: str) -> tuple:
    if not isinstance(data, list) or not data:
        raise _fail(source, "particles", f"expected a list of particle labels, found {data!r}")
    if len(set(map(str, data))) != len(data):
        raise _fail(source, "particles", "expected each particle label once")
    return tuple(data)


def _names(data, source: str, key: str, what: str) -> dict[str, str]:
    return {str(n): _text(v, source, f"{key}.{n}", what)
            for n, v in _section(data, source, key).items()}


def mapping_from_dict(data: Mapping, source: str = "mapping", base: Path | None = None
                      ) -> ImportMapping:
    """Check a mapping file's contents; ``base``: the folder relative paths start from."""
    data = _section(dict(data) if isinstance(data, Mapping) else data, source, "")
    _known(data, KEYS, source)
    out: dict[str, Any] = {"source": source}
    if "columns" in data:
        out["columns"], out["units"] = _columns(data["columns"], source)
    if "conditions" in data:
        out["conditions"] = _conditions(data["conditions"], source)
    if "conditions_file" in data:
        path = Path(_text(data["conditions_file"], source, "conditions_file", "a path"))
        out["conditions_file"] = path if path.is_absolute() or base is None else base / path
    for key, what in (("condition_columns", "a column name"), ("condition_units", "a unit")):
        if key in data:
            out[key] = _names(data[key], source, key, what)
    given = [k for k in ("conditions", "conditions_file", "condition_columns") if k in data]
    if len(given) > 1:
        raise _fail(source, ", ".join(given), "expected one source of conditions")
    if "time" in data:
        out["time"] = _time(data["time"], source)
    if "diameter" in data:
        out["diameter"] = _number(data["diameter"], source, "diameter", positive=True)
    if "particles" in data:
        out["particles"] = _particles(data["particles"], source)
    if "cloud" in data:
        out["cloud"] = _text(data["cloud"], source, "cloud", "a cloud name")
    if "erosion" in data:
        out["erosion"] = _erosion(data["erosion"], source)
    return ImportMapping(**out)


def load_mapping(path) -> ImportMapping:
    """Read and check a mapping file (YAML); relative paths in it start at its folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mapping file")
    data = read_yaml(path)
    return mapping_from_dict({} if data is None else data, str(path), path.parent)
