"""Units named in the column headers of a track table (``X [mm]``, ``Time (s)``), to SI.

An export names its units in its headers more often than in a manual: a header that ends
in ``[unit]`` or ``(unit)`` is read in that unit and converted to SI when the unit is known
for the quantity of the column, and refused when it is not (never read as if it were SI).
"""

from __future__ import annotations

import re

__all__ = ["header_unit", "si_factor", "column_unit", "QUANTITY", "SI_UNIT", "known_units"]

#: The physical quantity of each numeric canonical column.
QUANTITY = {"time": "time", "x": "length", "y": "length", "z": "length",
            "diameter": "length", "u": "velocity", "v": "velocity", "w": "velocity"}
SI_UNIT = {"time": "s", "length": "m", "velocity": "m s-1"}

_LENGTH = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "micron": 1e-6, "microns": 1e-6,
           "micrometre": 1e-6, "micrometer": 1e-6, "nm": 1e-9, "in": 0.0254, "inch": 0.0254,
           "ft": 0.3048}
_TIME = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0}
_HEADER = re.compile(r"[\[(]\s*([^\[\]()]*?)\s*[\])]\s*$")
# "mm/s", "m s-1", "m s^-1", "m.s-1", "m*s^-1": a length over a time, with a separator (a
# bare "ms-1" is per millisecond to some and metres per second to others)
_PER = re.compile(r"(\w+)\s*/\s*(\w+)|(\w+)\s*[\s.*\u00b7]\s*(\w+)\s*\^?\s*-1")


def header_unit(header: str) -> str | None:
    """The unit a header names at its end (``'X [mm]'`` -> ``'mm'``), or None."""
    m = _HEADER.search(str(header))
    return m.group(1) if m else None


def _normal(unit: str) -> str:
    return unit.strip().lower().replace("\u00b5", "u").replace("\u03bc", "u")


def si_factor(unit: str, quantity: str) -> float | None:
    """The factor from ``unit`` to the SI unit of ``quantity`` (length, time, velocity), or
    None when the unit is not a known unit of that quantity."""
    unit = _normal(unit)
    if quantity == "length":
        return _LENGTH.get(unit)
    if quantity == "time":
        return _TIME.get(unit)
    m = _PER.fullmatch(unit)
    if quantity != "velocity" or m is None:
        return None
    length, time = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if length not in _LENGTH or time not in _TIME:
        return None
    return _LENGTH[length] / _TIME[time]


def column_unit(name: str, header: str, given: str | None) -> str | None:
    """The unit of canonical column ``name`` read from ``header``: ``given`` (a unit stated
    beside the column map, e.g. in a mapping file) or the one the header names, or None.

    A header that names a known unit and a ``given`` unit with another factor is a
    ValueError (the message names neither file nor key: the caller adds them); a header with
    an unknown unit may be corrected by ``given``.
    """
    named = header_unit(header) if name in QUANTITY else None
    if given is None or named is None:
        return given if given is not None else named
    factor = si_factor(named, QUANTITY[name])
    if factor is not None and factor != si_factor(given, QUANTITY[name]):
        raise ValueError(f"the header {header!r} names unit {named!r}, but {given!r} is given "
                         "for it; expected one unit (leave the given one out)")
    return given


def known_units(quantity: str) -> str:
    """The known units of a quantity, for a message."""
    if quantity == "velocity":
        return "a length unit over a time unit (m/s, mm/s, m s-1, ...)"
    return ", ".join(sorted(_LENGTH if quantity == "length" else _TIME))
