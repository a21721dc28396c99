"""Units named in track-table headers (fluidgpt.readers.units), and scale where none is."""

from __future__ import annotations

import pandas as pd
import pytest

from fluidgpt.readers.tables import read_track_table
from fluidgpt.readers.units import QUANTITY, header_unit, si_factor
from tests.fluidgpt.test_readers import COLUMNS, _fluent_like_csv


@pytest.mark.parametrize("header, name, factor", [
    ("X [mm]", "x", 1e-3), ("X (cm)", "x", 1e-2), ("X [m]", "x", 1.0), ("D [um]", "diameter", 1e-6),
    ("D [\u00b5m]", "diameter", 1e-6), ("T (ms)", "time", 1e-3), ("U [mm/s]", "u", 1e-3),
    ("U [m s-1]", "u", 1.0), ("U [ft s^-1]", "u", 0.3048), ("U [ms-1]", "u", None)])
def test_header_units_to_si(header, name, factor):
    got = si_factor(header_unit(header), QUANTITY[name])
    assert got == (None if factor is None else pytest.approx(factor))


def test_header_without_unit_takes_scale(tmp_path):
    path = tmp_path / "tracks.csv"
    _fluent_like_csv(path)
    plain = pd.read_csv(path).rename(columns=lambda c: c.replace(" [mm]", ""))
    plain.to_csv(path, index=False)
    columns = {**COLUMNS, "x": "X", "y": "Y", "z": "Z"}
    assert read_track_table(path, columns)["x"].max() == pytest.approx(22.0)  # as SI
    table = read_track_table(path, columns, scale={"x": 1e-3, "y": 1e-3, "z": 1e-3})
    assert table["x"].max() == pytest.approx(0.022)
    assert "x: 'X' multiplied by 0.001 (scale)" in table.attrs["notes"]
