"""Properties of the readers' parsers over random inputs (hypothesis): OpenFOAM lists,
field values, dictionaries and whole files written in their ASCII forms parse back to the
same values; a unit named in a header converts to SI and back; a random valid track table
reads back to its values, and neither the row order, the file format nor exact duplicate
rows change the dataset. Derandomised, so CI sees the same examples every run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluidgpt.readers import FoamFormatError, read_track_table, table_dataset, uniform_times
from fluidgpt.readers.foam_format import (
    COMPONENTS,
    parse_dict,
    parse_field_value,
    parse_list,
    read_foam_file,
)
from fluidgpt.readers.units import header_unit, known_units, si_factor

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
spaces = st.sampled_from([" ", "  ", "\t", "\n", " \n  "])


# ------------------------------------------------------------------------ OpenFOAM lists
def _number(value: float, kind: str) -> str:
    return str(int(value)) if kind == "label" else repr(float(value))


def _element(row, kind: str) -> str:
    """One list entry as OpenFOAM writes it: ``v``, ``(x y z)`` or ``(x y z) celli``."""
    if kind in ("scalar", "label"):
        return _number(row, kind)
    if kind == "vector":
        return "(" + " ".join(map(repr, map(float, row))) + ")"
    return "(" + " ".join(map(repr, map(float, row[:3]))) + f") {int(row[3])}"


@st.composite
def foam_lists(draw):
    """(kind, values (N,) or (N, C), text of the list in one of its ASCII forms)."""
    kind = draw(st.sampled_from(sorted(COMPONENTS)))
    n, ncomp = draw(st.integers(0, 12)), COMPONENTS[kind]
    element = st.integers(-10**6, 10**6).map(float) if kind == "label" else floats
    if kind == "positions":  # the last number of a position is its cell label
        rows = st.tuples(floats, floats, floats, st.integers(0, 10**6).map(float))
    else:
        rows = st.tuples(*(element,) * ncomp)
    if n and draw(st.booleans()):  # N{value}: every entry the same
        row = draw(rows)
        values = np.array([row] * n, dtype=float)
        inner = _element(row[0] if ncomp == 1 else row, kind)
        text = f"{n}{draw(st.sampled_from(['', ' ']))}{{{inner}}}"
    else:
        values = np.array(draw(st.lists(rows, min_size=n, max_size=n)), dtype=float)
        values = values.reshape(n, ncomp)
        items = [_element(v[0] if ncomp == 1 else v, kind) for v in values]
        sep = draw(spaces)
        text = f"{n}{draw(spaces)}({sep}{sep.join(items)}{sep})"
    return kind, (values[:, 0] if ncomp == 1 else values), text


@PROPERTY
@given(case=foam_lists(), prefix=st.sampled_from(["", "\n\n", "  \n"]),
       suffix=st.sampled_from(["", "\n", "\n// end\n", " ;"]))
def test_a_written_list_parses_back_to_its_values_and_ends_where_it_ends(case, prefix, suffix):
    kind, values, text = case
    got, end = parse_list(prefix + text + suffix, kind, pos=0)
    np.testing.assert_array_equal(got, values)
    assert end == len(prefix + text)


@PROPERTY
@given(case=foam_lists(), extra=st.integers(1, 3))
def test_a_list_whose_count_disagrees_with_its_entries_is_refused(case, extra):
    kind, values, text = case
    n = len(values)
    if "{" in text:  # N{v} holds any count: cut the value's components instead
        return
    wrong = text.replace(str(n), str(n + extra), 1)
    with pytest.raises(FoamFormatError, match=f"header says {n + extra} entries"):
        parse_list(wrong, kind)


@PROPERTY
@given(case=foam_lists(), uniform=st.booleans())
def test_a_field_value_parses_back_in_both_forms(case, uniform):
    kind, values, text = case
    if kind == "positions":
        return  # positions are a cloud file, never a field value
    n = len(values)
    if uniform and n:
        first = values[0]
        raw = "uniform " + _element(first, kind)
        expected = np.broadcast_to(first, values.shape)
    else:
        raw = f"nonuniform List<{kind}> {text}"
        expected = values
    np.testing.assert_array_equal(parse_field_value(raw, kind, n), expected)


keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_.]{0,8}", fullmatch=True)
words = st.from_regex(r"[A-Za-z0-9_.+-]{1,8}", fullmatch=True)
entry_values = st.one_of(
    st.lists(words, min_size=1, max_size=3).map(" ".join),
    st.lists(words, min_size=0, max_size=3).map(lambda w: f"{len(w)}({' '.join(w)})"),
)
dicts = st.recursive(st.dictionaries(keys, entry_values, max_size=4),
                     lambda inner: st.dictionaries(keys, st.one_of(entry_values, inner),
                                                   max_size=3), max_leaves=8)


def _write_dict(d: dict, indent: str = "") -> str:
    out = []
    for key, value in d.items():
        if isinstance(value, dict):
            out.append(f"{indent}{key}\n{indent}{{\n{_write_dict(value, indent + '    ')}"
                       f"{indent}}}\n")
        else:
            out.append(f"{indent}{key:<16}{value};\n")
    return "".join(out)


@PROPERTY
@given(d=dicts)
def test_a_written_dictionary_parses_back_to_the_same_entries(d):
    assert parse_dict(_write_dict(d)) == d


HEADER = """/*--------------------------------*- C++ -*----------------------------------*\\
| =========                 |                                                 |
\\*---------------------------------------------------------------------------*/
FoamFile
{{
    version     2.0;
    format      ascii;
    class       {cls};
    object      {obj};
}}
// * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * * //

{body}

// ************************************************************************* //
"""


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="foam-properties-") as tmp:
        yield Path(tmp)


@PROPERTY
@given(case=foam_lists())
def test_a_written_file_reads_back_its_header_and_list(case, folder):
    kind, values, text = case
    path = folder / "field"
    cls = {"scalar": "scalarField", "label": "labelField", "vector": "vectorField",
           "positions": "Cloud<basicKinematicCollidingParcel>"}[kind]
    path.write_text(HEADER.format(cls=cls, obj="field", body=text))
    f = read_foam_file(path)
    assert f.header == {"version": "2.0", "format": "ascii", "class": cls, "object": "field"}
    got, end = parse_list(f.body, kind, f)
    np.testing.assert_array_equal(got, values)
    assert not f.body[end:].strip()  # the trailing comment is gone with the others


# ------------------------------------------------------------------------------ units
def _units(quantity: str) -> list[str]:
    return known_units(quantity).split(", ")


velocity_units = st.builds(
    lambda length, time, form: form.format(length, time), st.sampled_from(_units("length")),
    st.sampled_from(_units("time")),
    st.sampled_from(["{}/{}", "{} / {}", "{} {}-1", "{} {}^-1", "{}.{}-1", "{}*{}^-1"]))


@PROPERTY
@given(base=st.text(st.characters(categories=["L", "N", "Zs"], exclude_characters="[]()"),
                    max_size=12),
       unit=st.text(st.characters(categories=["L", "N"], include_characters=" /^.*-"),
                    min_size=1, max_size=8), bracket=st.sampled_from(["[]", "()"]))
def test_header_unit_is_the_text_of_the_last_bracket(base, unit, bracket):
    assert header_unit(f"{base} {bracket[0]}{unit}{bracket[1]}") == unit.strip()
    assert header_unit(base) is None


@PROPERTY
@given(length=st.sampled_from(_units("length")), time=st.sampled_from(_units("time")),
       velocity=velocity_units)
def test_known_units_convert_and_a_velocity_is_a_length_over_a_time(length, time, velocity):
    assert si_factor(length, "length") > 0 and si_factor(time, "time") > 0
    assert si_factor(length.upper(), "length") is not None  # headers are read case-blind
    assert si_factor(length, "time") is None and si_factor(time, "length") is None
    words = velocity.replace("/", " ").replace(".", " ").replace("*", " ").replace("^", " ")
    num, den = words.replace("-1", " ").split()
    assert si_factor(velocity, "velocity") == pytest.approx(
        si_factor(num, "length") / si_factor(den, "time"), rel=1e-15)


# ------------------------------------------------------------------------ track tables
STEPS, DT = 6, 0.01


@st.composite
def track_tables(draw):
    """A valid multi-case track table in SI, plus units for its headers.

    Returns (rows, units): rows with columns case, particle, time, x, y, z, u, v, w (SI);
    every case holds the same particles, each sampled at two or more grid times.
    """
    cases = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3, unique=True))
    particles = draw(st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rows = []
    for case in cases:
        for p in particles:
            k = np.sort(rng.choice(STEPS, size=int(rng.integers(2, STEPS + 1)),
                                   replace=False))
            for step in k:
                rows.append({"case": case, "particle": p, "time": step * DT,
                             **dict(zip("xyzuvw", rng.normal(0.0, 0.2, 6)))})
    units = {"time": draw(st.sampled_from(["s", "ms"])),
             "x": draw(st.sampled_from(["m", "mm", "cm", "in"])),
             "u": draw(velocity_units)}
    return pd.DataFrame(rows), units


HEADERS = {"case": "Run", "particle": "Particle ID", "time": "Time", "x": "X", "y": "Y",
           "z": "Z", "u": "U", "v": "V", "w": "W"}


def _write(rows: pd.DataFrame, units: dict, path: Path) -> dict[str, str]:
    """Write the SI rows in the units of ``units`` (y, z as x; v, w as u); returns the
    column mapping of the written headers."""
    columns, out = {}, {}
    for name, header in HEADERS.items():
        unit = units.get({"y": "x", "z": "x", "v": "u", "w": "u"}.get(name, name))
        columns[name] = f"{header} [{unit}]" if unit else header
        factor = si_factor(unit, {"time": "time", "u": "velocity", "v": "velocity",
                                  "w": "velocity"}.get(name, "length")) if unit else 1.0
        out[columns[name]] = rows[name] / factor if unit else rows[name]
    frame = pd.DataFrame(out)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return columns


def _conditions(rows: pd.DataFrame, path: Path) -> Path:
    cases = sorted(rows["case"].unique())
    pd.DataFrame({"case": cases, "main_inlet_speed": np.linspace(5.0, 10.0, len(cases)),
                  "restitution": 0.8}).to_csv(path, index=False)
    return path


@PROPERTY
@given(table=track_tables())
def test_a_track_table_reads_back_to_its_si_values(table, folder):
    rows, units = table
    columns = _write(rows, units, folder / "tracks.csv")
    got = read_track_table(folder / "tracks.csv", columns)
    want = rows.sort_values(["case", "particle", "time"], kind="stable")
    for name in ("time", "x", "y", "z", "u", "v", "w"):
        np.testing.assert_allclose(got[name].to_numpy(float), want[name].to_numpy(float),
                                   rtol=1e-12, atol=1e-15, err_msg=name)
    assert got["case"].tolist() == want["case"].tolist()
    assert got["particle"].tolist() == want["particle"].tolist()


@pytest.mark.slow  # four datasets per example
@settings(PROPERTY, max_examples=20)
@given(table=track_tables(), order=st.randoms(use_true_random=False))
def test_row_order_format_and_exact_duplicates_leave_the_dataset_unchanged(table, order,
                                                                           folder):
    rows, units = table
    times = uniform_times(STEPS, DT)
    conditions = _conditions(rows, folder / "cases.csv")

    def dataset(frame: pd.DataFrame, name: str) -> xr.Dataset:
        columns = _write(frame, units, folder / name)
        return table_dataset(folder / name, columns, conditions, times, diameter=5e-5)

    ds = dataset(rows, "tracks.csv")
    shuffled = rows.sample(frac=1.0, random_state=order.randint(0, 2**31))
    xr.testing.assert_equal(dataset(shuffled, "shuffled.csv"), ds)
    xr.testing.assert_equal(dataset(rows, "tracks.parquet"), ds)
    repeated = pd.concat([rows, rows.iloc[::2]], ignore_index=True)
    xr.testing.assert_equal(dataset(repeated, "repeated.csv"), ds)
    # every sample sits on the time grid: the dataset holds it exactly where it was taken
    cases, particles = sorted(rows["case"].unique()), sorted(rows["particle"].unique())
    for (case, particle), g in rows.groupby(["case", "particle"]):
        steps = np.rint(g["time"].to_numpy() / DT).astype(int)
        at = dict(case=cases.index(case), particle=particles.index(particle))
        np.testing.assert_allclose(ds.position.isel(at).isel(step=steps).values,
                                   g[["x", "y", "z"]].to_numpy(), rtol=1e-6, atol=1e-7)
        valid = ds.valid.isel(at).values.tolist()
        assert valid == [steps[0] <= k <= steps[-1] for k in range(STEPS)]


@PROPERTY
@given(table=track_tables(), row=st.integers(0, 10**6), delta=st.floats(1e-3, 1.0))
def test_a_key_repeated_with_other_values_is_refused(table, row, delta, folder):
    rows, units = table
    twin = rows.iloc[[row % len(rows)]].copy()
    twin["x"] += delta
    columns = _write(pd.concat([rows, twin], ignore_index=True), units, folder / "twin.csv")
    with pytest.raises(ValueError, match="twin.csv: conflicting duplicate rows"):
        read_track_table(folder / "twin.csv", columns)
