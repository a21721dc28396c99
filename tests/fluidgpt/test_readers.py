"""Readers: the committed raw OpenFOAM case, malformed files, track resampling, tables."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from fluidgpt.readers.foam_format import parse_field_value, parse_list
from fluidgpt.readers.openfoam import (
    FoamFormatError,
    erosion_rate,
    particle_key,
    read_boundary,
    read_cell_centre_boundary,
    read_cloud,
    read_eroded_volume,
    read_tracks,
    read_wall_faces,
    time_directories,
)
from fluidgpt.readers.tables import read_track_table, tracks_to_dataset
from fluidgpt.readers.tracks import resample_tracks
from fluidgpt.schema import PHYSICAL_CONDITIONS, validate

WALLS = ["wallStraight", "wallBend", "wallRiser", "wallBranch"]
CLOUD = "lagrangian/kinematicCloud"


# ---------------------------------------------------------------- the committed raw case
def test_tiny_case_tracks(tiny_case):
    table = read_tracks(tiny_case)
    assert list(table.columns) == ["particle", "orig_proc", "orig_id", "time", "x", "y", "z",
                                   "u", "v", "w", "diameter"]
    # the 4 tracked parcels (origId 0..3, injected first) are seen at every sampled time
    tracked = table[table["particle"].isin(particle_key(0, np.arange(4)))]
    assert sorted(tracked["orig_id"].unique()) == [0, 1, 2, 3]
    assert np.isfinite(table[["x", "y", "z", "u", "v", "w"]].to_numpy()).all()
    # inside the elbow's bounding box
    assert table["x"].between(0, 0.7).all() and table["y"].between(-0.1, 0.6).all()
    assert table["z"].between(0, 0.1).all()
    # every parcel has the recipe's diameter (written compactly as N{1e-04})
    np.testing.assert_allclose(table["diameter"], 1e-4)
    assert table["time"].max() <= 0.04 + 1e-12


def test_tiny_case_compact_list(tiny_case):
    path = _first_cloud_dir(tiny_case)
    text = (path / CLOUD / "d").read_text()
    assert "{" in text.split("FoamFile")[1].split("}", 1)[1], "d should be N{value}"
    cloud = read_cloud(path)
    assert cloud["d"].shape == (len(cloud["orig_id"]),)


def test_tiny_case_t_range(tiny_case):
    table = read_tracks(tiny_case, t_min=0.02, t_max=0.03)
    assert set(np.round(table["time"], 9)) <= {0.02, 0.03}


def test_wall_faces_match_openfoam_cell_centres(tiny_case):
    faces = read_wall_faces(tiny_case, WALLS)
    boundary = read_boundary(tiny_case)
    assert len(faces["face_area"]) == sum(boundary[w]["nFaces"] for w in WALLS)
    assert (faces["face_area"] > 0).all()
    reference = read_cell_centre_boundary(tiny_case, 0, WALLS)
    np.testing.assert_allclose(faces["face_centre"], reference, atol=1e-8)
    assert list(np.unique(faces["patch"])) == sorted(WALLS)


def test_wall_areas_by_hand(tiny_case):
    faces = read_wall_faces(tiny_case, WALLS)
    area = {w: faces["face_area"][faces["patch"] == w].sum() for w in WALLS}
    L1, W, H, L2, Lb, wb, hb = 0.5, 0.1, 0.1, 0.4, 0.1, 0.03, 0.03
    assert area["wallStraight"] == pytest.approx(2 * L1 * H + 2 * L1 * W - wb * hb, rel=1e-9)
    assert area["wallRiser"] == pytest.approx(2 * L2 * H + 2 * L2 * W, rel=1e-9)
    assert area["wallBranch"] == pytest.approx(2 * Lb * wb + 2 * Lb * hb, rel=1e-9)
    # the bend's faces are flat facets of the arcs: a little below the true area
    R = 0.1
    true_bend = 0.5 * np.pi * (R + R + W) * H + 2 * 0.25 * np.pi * ((R + W) ** 2 - R ** 2)
    assert 0.97 * true_bend < area["wallBend"] < true_bend


def test_default_walls_are_wall_type_patches(tiny_case):
    faces = read_wall_faces(tiny_case)
    assert set(faces["patch"]) == set(WALLS)


def test_erosion_rate_by_hand(tiny_case):
    faces = read_wall_faces(tiny_case, WALLS)
    q1 = read_eroded_volume(tiny_case, 0.04, WALLS)
    q2 = read_eroded_volume(tiny_case, 0.06, WALLS)
    assert (q2 >= q1).all() and (q2 > q1).any()
    rate = erosion_rate(tiny_case, 0.04, 0.06, 7800.0, faces["face_area"], WALLS)
    i = int(np.argmax(q2 - q1))
    assert rate[i] == pytest.approx(7800.0 * (q2[i] - q1[i]) / (faces["face_area"][i] * 0.02))
    assert (rate >= 0).all() and np.isfinite(rate).all()
    with pytest.raises(ValueError, match="t2 > t1"):
        erosion_rate(tiny_case, 0.06, 0.04, 7800.0, faces["face_area"], WALLS)
    with pytest.raises(FileNotFoundError, match="no write time 0.5"):
        read_eroded_volume(tiny_case, 0.5, WALLS)


def test_erosion_must_be_cumulative(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    # swap the two times: Q would decrease
    a, b = case / "0.04" / "kinematicCloudQ", case / "0.06" / "kinematicCloudQ"
    text_a, text_b = a.read_text(), b.read_text()
    a.write_text(text_b)
    b.write_text(text_a)
    faces = read_wall_faces(case, WALLS)
    with pytest.raises(FoamFormatError, match="must be cumulative"):
        erosion_rate(case, 0.04, 0.06, 7800.0, faces["face_area"], WALLS)


def test_decomposed_case_reads_every_processor(tiny_case, tmp_path):
    # the same parcels on two processors: origId restarts, origProcId tells them apart
    case = tmp_path / "decomposed"
    for proc in (0, 1):
        root = case / f"processor{proc}"
        for _, path in time_directories(tiny_case):
            if (path / CLOUD).is_dir():
                shutil.copytree(path / CLOUD, root / path.name / CLOUD)
                ids = root / path.name / CLOUD / "origProcId"
                ids.write_text(re.sub(r"(\d+)\{0\}", rf"\g<1>{{{proc}}}", ids.read_text()))
    serial, parallel = read_tracks(tiny_case), read_tracks(case)
    assert len(parallel) == 2 * len(serial)
    assert parallel["particle"].nunique() == 2 * serial["particle"].nunique()
    assert sorted(parallel["orig_proc"].unique()) == [0, 1]


def test_unknown_patch(tiny_case):
    with pytest.raises(FoamFormatError, match="not in the mesh"):
        read_wall_faces(tiny_case, ["wallNowhere"])


# -------------------------------------------------------------------------- malformed files
def _copy_case(tiny_case, tmp_path):
    case = tmp_path / "case"
    shutil.copytree(tiny_case, case)
    return case


def _first_cloud_dir(case):
    return next(p for _, p in time_directories(case) if (p / CLOUD / "positions").exists())


_LIST = re.compile(r"\n(\d+)\s*\(")  # the count and opening of the first list


def _bump_count(path, by: int) -> int:
    """Add `by` to the count of the file's list; returns the original count."""
    text = path.read_text()
    m = _LIST.search(text)
    path.write_text(text[:m.start(1)] + str(int(m.group(1)) + by) + text[m.end(1):])
    return int(m.group(1))


def _edit(path, old, new, count=1):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def test_truncated_positions(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    path = _first_cloud_dir(case) / CLOUD / "positions"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(FoamFormatError, match="truncated") as info:
        read_tracks(case)
    assert str(path) in str(info.value)


def test_wrong_count(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    path = _first_cloud_dir(case) / CLOUD / "origId"
    n = _bump_count(path, 1)
    with pytest.raises(FoamFormatError, match=f"header says {n + 1} entries") as info:
        read_tracks(case)
    assert "origId" in str(info.value)


def test_count_differs_from_positions(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    d = _first_cloud_dir(case) / CLOUD / "d"
    text = d.read_text()
    n = len(read_cloud(d.parent.parent.parent)["d"])
    d.write_text(text.replace(f"{n}{{", f"{n + 2}{{"))
    with pytest.raises(FoamFormatError, match=f"{n + 2} entries, but positions has {n}"):
        read_tracks(case)


def test_garbage_value(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    path = _first_cloud_dir(case) / CLOUD / "U"
    text = path.read_text()
    start = _LIST.search(text).end()
    number = re.compile(r"-?\d+\.?\d*(e[-+]?\d+)?").search(text, start)
    path.write_text(text[:number.start()] + "banana" + text[number.end():])
    with pytest.raises(FoamFormatError, match="'banana' is not a number"):
        read_tracks(case)


def test_missing_header_and_binary(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    path = _first_cloud_dir(case) / CLOUD / "origProcId"
    path.write_text("4(0 0 0 0)\n")
    with pytest.raises(FoamFormatError, match="no 'FoamFile"):
        read_tracks(case)
    path.write_bytes(b"FoamFile\n{\n format binary;\n}\n\x00\xff\xfe")
    with pytest.raises(FoamFormatError, match="not a text file"):
        read_tracks(case)


def test_binary_format_refused(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    path = _first_cloud_dir(case) / CLOUD / "U"
    _edit(path, "format      ascii;", "format      binary;")
    with pytest.raises(FoamFormatError, match="only ascii is supported"):
        read_tracks(case)


def test_missing_positions_file(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    (_first_cloud_dir(case) / CLOUD / "positions").unlink()
    with pytest.raises(FoamFormatError, match="positions: file not found"):
        read_tracks(case)


def test_malformed_boundary_and_field(tiny_case, tmp_path):
    case = _copy_case(tiny_case, tmp_path)
    _edit(case / "constant/polyMesh/boundary", "nFaces", "nFacez")
    with pytest.raises(FoamFormatError, match="needs type, nFaces and startFace"):
        read_boundary(case)
    case = _copy_case(tiny_case, tmp_path / "b")
    path = case / "0.06" / "kinematicCloudQ"
    _edit(path, "wallBend", "wallBent")
    with pytest.raises(FoamFormatError, match="no 'value' for patch 'wallBend'"):
        read_eroded_volume(case, 0.06, WALLS)


def test_no_cloud_anywhere(tmp_path):
    (tmp_path / "0").mkdir()
    with pytest.raises(FileNotFoundError, match="no lagrangian/kinematicCloud"):
        read_tracks(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such OpenFOAM case"):
        read_tracks(tmp_path / "absent")


def test_list_forms():
    values, end = parse_list("3(1 2 3) tail", "scalar")
    np.testing.assert_array_equal(values, [1, 2, 3])
    assert "3(1 2 3) tail"[end:] == " tail"
    values, _ = parse_list("2{(1 0 0)}", "vector")
    np.testing.assert_array_equal(values, [[1, 0, 0], [1, 0, 0]])
    values, _ = parse_list("0()", "label")
    assert values.shape == (0,)
    with pytest.raises(FoamFormatError, match="expected a list"):
        parse_list("uniform 3", "scalar")
    with pytest.raises(FoamFormatError, match="3 components, expected 1"):
        parse_list("2{(1 0 0)}", "scalar")
    np.testing.assert_array_equal(parse_field_value("uniform 0", "scalar", 3), [0, 0, 0])
    with pytest.raises(FoamFormatError, match="2 values for 3 faces"):
        parse_field_value("nonuniform List<scalar> 2(1 2)", "scalar", 3)


# ------------------------------------------------------------------------------ resampling
def _table():
    return pd.DataFrame({
        "particle": [7, 7, 7, 3, 3],
        "time": [0.0, 0.1, 0.2, 0.1, 0.2],
        "x": [0.0, 1.0, 2.0, 5.0, 5.0], "y": [0.0, 0.0, 1.0, 0.0, 0.0],
        "z": [0.0] * 5, "diameter": [1e-4] * 3 + [2e-4] * 2})


def test_resample_linear_and_valid():
    traj = resample_tracks(_table(), np.array([0.0, 0.05, 0.15, 0.3]), particles=[7, 3])
    np.testing.assert_allclose(traj.position[0, :, 0], [0.0, 0.5, 1.5, 2.0])
    np.testing.assert_allclose(traj.position[0, :, 1], [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(traj.valid, [[True, True, True, False],
                                               [False, False, True, False]])
    # held outside the samples, so no NaN
    np.testing.assert_allclose(traj.position[1, :, 0], 5.0)
    # velocity from positions when the table has none: dx/dt = 10 m/s on the first leg
    assert traj.velocity[0, 1, 0] == pytest.approx(10.0)
    np.testing.assert_allclose(traj.diameter, [1e-4, 2e-4])


def test_resample_errors():
    with pytest.raises(ValueError, match="not in the track table"):
        resample_tracks(_table(), np.array([0.0, 0.1]), particles=[1])
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_tracks(_table(), np.array([0.1, 0.0]))
    with pytest.raises(ValueError, match="missing columns"):
        resample_tracks(_table().drop(columns="z"), np.array([0.0, 0.1]))
    bad = _table()
    bad.loc[0, "x"] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in columns \['x'\]"):
        resample_tracks(bad, np.array([0.0, 0.1]))


def test_tiny_case_to_trajectories(tiny_case):
    table = read_tracks(tiny_case)
    ids = particle_key(0, np.arange(4))
    traj = resample_tracks(table, np.array([0.01, 0.02, 0.03, 0.04]), particles=ids)
    assert traj.position.shape == (4, 4, 3) and traj.valid[:, 0].all()
    assert np.isfinite(traj.position).all()


# ---------------------------------------------------------------------------------- tables
def _fluent_like_csv(path):
    t = np.array([0.0, 0.01, 0.02])
    rows = []
    for case in ("a", "b"):
        for pid in (1, 2):
            for k, tk in enumerate(t):
                rows.append({"Case": case, "Particle ID": pid, "Residence Time": tk,
                             "X [mm]": 10.0 * k + pid, "Y [mm]": 2.0 * k, "Z [mm]": 5.0,
                             "Diameter": 5e-5})
    pd.DataFrame(rows).to_csv(path, index=False)


COLUMNS = {"case": "Case", "particle": "Particle ID", "time": "Residence Time",
           "x": "X [mm]", "y": "Y [mm]", "z": "Z [mm]", "diameter": "Diameter"}


def test_csv_table_to_dataset(tmp_path):
    path = tmp_path / "tracks.csv"
    _fluent_like_csv(path)
    table = read_track_table(path, COLUMNS)  # the [mm] of the headers converted to m
    assert table["x"].max() == pytest.approx(0.022)
    assert "x: 'X [mm]' converted from mm to m (x 0.001)" in table.attrs["notes"]
    conds = [[8.0, 20.0, 5e-5, 2650.0, 0.9], [10.0, 20.0, 5e-5, 2650.0, 0.9]]
    ds = tracks_to_dataset(table, np.array([0.0, 0.005, 0.01, 0.02]), conds, PHYSICAL_CONDITIONS)
    validate(ds, erosion=False)
    assert dict(ds.sizes)["case"] == 2 and dict(ds.sizes)["particle"] == 2
    np.testing.assert_allclose(ds["position"].values[0, 0, :, 0], [0.001, 0.006, 0.011, 0.021],
                               rtol=1e-5)
    np.testing.assert_allclose(ds["velocity"].values[0, 0, 0, 0], 1.0, rtol=1e-5)
    assert "converted from mm to m" in ds.attrs["notes"]


def test_exact_duplicate_rows_are_dropped_with_a_note(tmp_path):
    path = tmp_path / "tracks.csv"
    _fluent_like_csv(path)
    raw = pd.read_csv(path)
    pd.concat([raw, raw.iloc[[0, 4]]]).to_csv(path, index=False)
    table = read_track_table(path, COLUMNS)
    assert len(table) == len(raw)
    assert any("dropped 2 exact duplicate row(s)" in n for n in table.attrs["notes"])


def test_table_errors(tmp_path):
    path = tmp_path / "tracks.csv"
    _fluent_like_csv(path)
    with pytest.raises(ValueError, match=r"columns \['Vx'\] not found"):
        read_track_table(path, {**COLUMNS, "u": "Vx", "v": "X [mm]", "w": "X [mm]"})
    with pytest.raises(ValueError, match="all of u, v, w or none"):
        read_track_table(path, {**COLUMNS, "u": "X [mm]"})
    with pytest.raises(ValueError, match="are required"):
        read_track_table(path, {"particle": "Particle ID"})
    with pytest.raises(ValueError, match="unknown canonical names"):
        read_track_table(path, {**COLUMNS, "colour": "Case"})
    with pytest.raises(ValueError, match="unknown table format"):
        read_track_table(tmp_path / "tracks.xlsx", COLUMNS)
    with pytest.raises(ValueError, match="leave 'x' out of scale"):
        read_track_table(path, COLUMNS, scale={"x": 1e-3})
    table = read_track_table(path, COLUMNS)
    with pytest.raises(ValueError, match=r"conditions: expected shape \(2, 5\)"):
        tracks_to_dataset(table, np.array([0.0, 0.01]), [[1.0] * 5], PHYSICAL_CONDITIONS)
    no_d = table.drop(columns="diameter")
    with pytest.raises(ValueError, match="pass diameter="):
        tracks_to_dataset(no_d, np.array([0.0, 0.01]), [[1.0] * 5] * 2, PHYSICAL_CONDITIONS)
    ds = tracks_to_dataset(no_d, np.array([0.0, 0.01]), [[1.0] * 5] * 2, PHYSICAL_CONDITIONS,
                           diameter=1e-4)
    np.testing.assert_allclose(ds["diameter"].values, 1e-4)


def test_parquet_table(tmp_path):
    pytest.importorskip("pyarrow")
    csv = tmp_path / "tracks.csv"
    _fluent_like_csv(csv)
    pq = tmp_path / "tracks.parquet"
    pd.read_csv(csv).to_parquet(pq)
    pd.testing.assert_frame_equal(read_track_table(pq, COLUMNS), read_track_table(csv, COLUMNS))
