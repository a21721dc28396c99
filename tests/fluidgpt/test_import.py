"""`fluidgpt dataset import`: several track tables or OpenFOAM cases and a mapping file ->
the canonical dataset, with labels kept; bad mapping files end in one line, exit 2, and
leave nothing at the output path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluidgpt.cli import main
from fluidgpt.readers.openfoam import (
    FoamFormatError,
    erosion_rate,
    particle_key,
    read_cloud,
    read_tracks,
    read_wall_faces,
)
from fluidgpt.readers.tracks import resample_tracks
from fluidgpt.schema import open_dataset

SPEEDS = {"run1": 8.0, "run2": 12.0}
SAMPLES = (0.0, 0.004, 0.008)
MAPPING = """\
columns:
  case: run_id
  particle: Particle ID
  time: t
  x: Points:0
  y: Points:1
  z: {column: pz, unit: mm}
  diameter: "d [um]"
conditions:
  run1: {main_inlet_speed: 8.0, side_inlet_speed: 20.0}
  run2: {main_inlet_speed: 12.0, side_inlet_speed: 30.0}
time: {steps: 4, interval: 0.004}
"""


def _run_rows(run: str) -> pd.DataFrame:
    """One run's export: x, y in m, z in mm (header without a unit), diameter in um."""
    speed = SPEEDS[run]
    return pd.DataFrame([{"run_id": run, "Particle ID": pid, "t": t,
                          "Points:0": 0.1 + 0.001 * speed * k + 0.01 * pid,
                          "Points:1": -0.1 + 0.02 * k, "pz": 40.0 + pid, "d [um]": 50.0}
                         for pid in (2, 1) for k, t in enumerate(SAMPLES)])


def _expected_position() -> np.ndarray:
    """(N, P, T, 3) by hand: the samples, then the last one held at t = 0.012 s."""
    k = np.array([0, 1, 2, 2])
    out = np.zeros((2, 2, 4, 3))
    for n, speed in enumerate(SPEEDS.values()):
        for p, pid in enumerate((1, 2)):
            out[n, p] = np.stack([0.1 + 0.001 * speed * k + 0.01 * pid, -0.1 + 0.02 * k,
                                  np.full(4, (40.0 + pid) * 1e-3)], -1)
    return out


def _inputs(tmp: Path, mapping: str = MAPPING, parquet: bool = False) -> list[str]:
    (tmp / "import.yaml").write_text(mapping)
    files = []
    for run in SPEEDS:
        path = tmp / (f"{run}.parquet" if parquet and run == "run2" else f"{run}.csv")
        rows = _run_rows(run)
        rows.to_parquet(path) if path.suffix == ".parquet" else rows.to_csv(path, index=False)
        files.append(str(path))
    return files


def _import(tmp: Path, *extra: str, files=None, mapping: str = MAPPING):
    files = _inputs(tmp, mapping) if files is None else files
    return main(["dataset", "import", *files, "--mapping", str(tmp / "import.yaml"),
                 "--output", str(tmp / "out.zarr"), *extra])


def _one_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fluidgpt dataset: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _hidden(tmp: Path) -> list[str]:
    return [p.name for p in tmp.rglob(".*")]


# ------------------------------------------------------------------------------ tables
def test_several_csv_files_and_a_mapping_file(tmp_path, capsys):
    assert _import(tmp_path) == 0
    out = capsys.readouterr().out
    assert "note: z: 'pz' converted from mm to m (x 0.001)" in out
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds["case"].values.tolist() == ["run1", "run2"]
    assert ds["particle"].values.tolist() == [1, 2]
    assert ds["condition"].values.tolist() == ["main_inlet_speed", "side_inlet_speed"]
    np.testing.assert_array_equal(ds["conditions"].values, [[8.0, 20.0], [12.0, 30.0]])
    np.testing.assert_allclose(ds["time"].values, [0.0, 0.004, 0.008, 0.012])
    np.testing.assert_allclose(ds["position"].values, _expected_position(), rtol=1e-6)
    np.testing.assert_array_equal(ds["valid"].values, np.tile([True] * 3 + [False], (2, 2, 1)))
    np.testing.assert_allclose(ds["diameter"].values, 5e-5)  # the header's um
    # velocity differenced from the samples: dx/dt = speed * 1 mm / 4 ms
    np.testing.assert_allclose(ds["velocity"].values[:, 0, 0, 0], [2.0, 3.0], rtol=1e-5)
    assert ds.attrs["mapping"] == "import.yaml"
    assert _hidden(tmp_path) == []


def test_what_fit_reads(tmp_path):
    """The imported dataset goes through the loader and tensors that `fluidgpt fit` uses."""
    from fluidgpt.casetensors import case_tensors
    from fluidgpt.data import load_dataset

    assert _import(tmp_path) == 0
    tensors = case_tensors(load_dataset(tmp_path / "out.zarr"))
    assert tuple(tensors.positions.shape) == (2, 4, 2, 3)  # (N, T, P, 3)
    assert tensors.condition_names == ("main_inlet_speed", "side_inlet_speed")


def test_parquet_and_csv_give_the_same_dataset(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    assert _import(tmp_path / "a") == 0
    files = _inputs(tmp_path / "b", parquet=True)
    assert files[1].endswith(".parquet")
    assert _import(tmp_path / "b", files=files) == 0
    a, b = (open_dataset(tmp_path / d / "out.zarr") for d in ("a", "b"))
    assert b.attrs["source"].startswith("particle-track tables run1.csv, run2.parquet")
    a.attrs, b.attrs = {}, {}
    xr.testing.assert_identical(a, b)


def test_files_without_a_case_column_are_one_case_each(tmp_path, capsys):
    """No case column mapped: each file is a case labelled by its name, conditions from a
    CSV (--conditions-file); the arrays are those of the run_id column."""
    mapping = MAPPING.replace("  case: run_id\n", "").split("conditions:")[0] + \
        "time: {steps: 4, interval: 0.004}\n"
    files = _inputs(tmp_path, mapping)
    pd.DataFrame({"case": ["run2", "run1"], "main_inlet_speed": [12.0, 8.0],
                  "side_inlet_speed": [30.0, 20.0]}).to_csv(tmp_path / "cases.csv",
                                                             index=False)
    assert _import(tmp_path, "--conditions-file", str(tmp_path / "cases.csv"),
                   files=files, mapping=mapping) == 0
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds["case"].values.tolist() == ["run1", "run2"]
    np.testing.assert_allclose(ds["position"].values, _expected_position(), rtol=1e-6)
    np.testing.assert_array_equal(ds["conditions"].values, [[8.0, 20.0], [12.0, 30.0]])


def test_conditions_from_columns_of_the_tables(tmp_path, capsys):
    mapping = MAPPING.split("conditions:")[0] + \
        "condition_columns: {main_inlet_speed: U}\ntime: {steps: 3, interval: 0.004}\n"
    files = _inputs(tmp_path, mapping)
    for f in files:
        rows = pd.read_csv(f)
        rows.assign(U=SPEEDS[rows["run_id"][0]]).to_csv(f, index=False)
    assert _import(tmp_path, files=files, mapping=mapping) == 0
    ds = open_dataset(tmp_path / "out.zarr")
    np.testing.assert_array_equal(ds["conditions"].values, [[8.0], [12.0]])
    rows = pd.read_csv(files[0])
    rows.loc[0, "U"] = 9.0
    rows.to_csv(files[0], index=False)
    assert _import(tmp_path, "--overwrite", files=files, mapping=mapping) == 2
    line = _one_line(capsys)
    assert "run1.csv: condition column 'U' (" in line and "import.yaml: condition_columns." \
        "main_inlet_speed) takes several values in case 'run1'" in line


def test_the_track_checks_apply_across_files(tmp_path, capsys):
    files = _inputs(tmp_path)
    again = tmp_path / "again.csv"
    _run_rows("run1").assign(**{"Points:1": 0.5}).to_csv(again, index=False)
    assert _import(tmp_path, files=[*files, str(again)]) == 2
    line = _one_line(capsys)
    assert "run1.csv, " in line and "again.csv: conflicting duplicate rows for " \
        "case='run1', particle=1, time=0.0: y=-0.1 vs 0.5" in line
    rows = _run_rows("run2")
    rows[rows["Particle ID"] == 1].to_csv(files[1], index=False)
    assert _import(tmp_path, files=files) == 2
    assert "case 'run2' lacks particles [2] (1 of 2)" in _one_line(capsys)
    assert not (tmp_path / "out.zarr").exists()


def test_the_table_spelling_still_works(tmp_path, capsys):
    files = _inputs(tmp_path)
    one = pd.concat([pd.read_csv(f) for f in files])
    one.to_csv(tmp_path / "tracks.csv", index=False)
    pd.DataFrame({"case": list(SPEEDS), "main_inlet_speed": [8.0, 12.0],
                  "side_inlet_speed": [20.0, 30.0]}).to_csv(tmp_path / "cases.csv",
                                                           index=False)
    columns = ["case=run_id", "particle=Particle ID", "time=t", "x=Points:0", "y=Points:1",
               "z=pz", "diameter=d [um]"]
    argv = ["dataset", "table", "--table", str(tmp_path / "tracks.csv"), "--conditions-file",
            str(tmp_path / "cases.csv"), "--steps", "4", "--interval", "0.004",
            "--output", str(tmp_path / "table.zarr")]
    assert main([*argv, *(a for c in columns for a in ("--column", c))]) == 0
    ds = open_dataset(tmp_path / "table.zarr")
    expected = _expected_position()
    expected[..., 2] *= 1e3  # pz has no unit in its header and none was given: SI
    np.testing.assert_allclose(ds["position"].values, expected, rtol=1e-6)


def test_overwrite(tmp_path, capsys):
    assert _import(tmp_path) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out.zarr").rglob("*") if p.is_file()}
    changed = MAPPING.replace("main_inlet_speed: 12.0", "main_inlet_speed: 14.0")
    assert _import(tmp_path, mapping=changed) == 2
    assert "out.zarr exists; pass --overwrite to replace it" in _one_line(capsys)
    assert {p: p.read_bytes() for p in (tmp_path / "out.zarr").rglob("*")
            if p.is_file()} == before
    assert _import(tmp_path, "--overwrite", mapping=changed) == 0
    assert open_dataset(tmp_path / "out.zarr")["conditions"].values[1, 0] == 14.0
    assert _hidden(tmp_path) == []


def test_a_failed_write_leaves_nothing(tmp_path, capsys, monkeypatch):
    import fluidgpt.schema as S

    def half_written(ds, path):
        Path(path).mkdir()
        (Path(path) / "zarr.json").write_text("{")
        raise OSError(f"{path}: disk full")

    monkeypatch.setattr(S, "save_dataset", half_written)
    assert _import(tmp_path) == 2
    assert "disk full" in _one_line(capsys)
    assert not (tmp_path / "out.zarr").exists() and _hidden(tmp_path) == []


def test_debug_shows_the_traceback(tmp_path):
    files = _inputs(tmp_path, MAPPING + "colums: {}\n")
    with pytest.raises(ValueError, match="colums: unknown key"):
        main(["--debug", "dataset", "import", *files, "--mapping",
              str(tmp_path / "import.yaml"), "--output", str(tmp_path / "out.zarr")])


def _swap(old: str, new: str) -> str:
    assert old in MAPPING
    return MAPPING.replace(old, new)


BAD_MAPPINGS = {
    "unknown_key": (MAPPING + "colums: {x: px}\n", ["import.yaml: colums: unknown key"]),
    "unknown_column_key": (_swap("unit: mm}", "units: mm}"),
                           ["import.yaml: columns.z.units: unknown key"]),
    "unknown_canonical_name": (_swap("  time: t\n", "  time: t\n  colour: t\n"),
                               ["import.yaml: columns.colour: unknown key"]),
    "missing_column": (_swap("x: Points:0", "x: Points:9"),
                       ["run1.csv: columns ['Points:9'] not found (",
                        "import.yaml: columns.x); the file has ['run_id',"]),
    "unit_of_another_kind": (_swap("unit: mm}", "unit: kg}"),
                             ["import.yaml: columns.z.unit: expected a length unit",
                              "found 'kg'"]),
    "length_unit_for_time": (_swap("time: t\n", "time: {column: t, unit: mm}\n"),
                             ["import.yaml: columns.time.unit: expected a time unit"]),
    "unknown_unit_in_a_header": (_swap('"d [um]"', '"d [furlong]"'),
                                 ["import.yaml: columns.diameter: expected a length unit",
                                  "'furlong' in the header"]),
    "header_and_mapping_disagree": (_swap('diameter: "d [um]"',
                                          'diameter: {column: "d [um]", unit: mm}'),
                                    ["import.yaml: columns.diameter:", "names unit 'um'"]),
    "unit_for_a_label": (_swap("case: run_id", "case: {column: run_id, unit: m}"),
                         ["import.yaml: columns.case.unit: case has no unit"]),
    "wrong_type": (_swap("steps: 4", "steps: four"),
                   ["import.yaml: time.steps: expected a whole number >= 2, found 'four'"]),
    "broken_yaml": (MAPPING + "time: [1, 2\n", ["import.yaml: not valid YAML (line"]),
    "unknown_case": (_swap("  run2:", "  run3:"),
                     ["import.yaml: conditions: expected each case", "unknown ['run3']"]),
    "two_sources_of_conditions": (MAPPING + "conditions_file: cases.csv\n",
                                  ["import.yaml: conditions, conditions_file: expected one "
                                   "source of conditions"]),
    "wrong_condition_unit": (MAPPING + "condition_units: {main_inlet_speed: km/h}\n",
                             ["import.yaml: condition_units.main_inlet_speed: expected "
                              "'m s-1'"]),
    "impossible_condition": (_swap("main_inlet_speed: 8.0", "main_inlet_speed: -8.0"),
                             ["import.yaml: conditions: condition main_inlet_speed: "
                              "expected >= 0 m s-1, found -8 (case 'run1')"]),
    "erosion_for_tables": (MAPPING + "erosion: {start: 0, end: 1, wall_density: 7800}\n",
                           ["import.yaml: erosion: only for OpenFOAM cases"]),
}


@pytest.mark.parametrize("name", BAD_MAPPINGS)
def test_bad_mapping_file(name, tmp_path, capsys):
    mapping, must = BAD_MAPPINGS[name]
    assert _import(tmp_path, mapping=mapping) == 2
    line = _one_line(capsys)
    for text in must:
        assert text in line, line
    assert not (tmp_path / "out.zarr").exists() and _hidden(tmp_path) == []


def test_command_line_errors(tmp_path, capsys):
    files = _inputs(tmp_path)
    out = str(tmp_path / "out.zarr")
    assert main(["dataset", "import", *files, "--mapping", str(tmp_path / "import.yaml"),
                 "--conditions-file", "cases.csv", "--output", out]) == 2
    assert "import.yaml: conditions and --conditions-file: expected one source of " \
        "conditions" in _one_line(capsys)
    assert main(["dataset", "import", *files, "--mapping", str(tmp_path / "none.yaml"),
                 "--output", out]) == 2
    assert "none.yaml: no such mapping file" in _one_line(capsys)
    assert main(["dataset", "import", *files, "--column", "x", "--output", out]) == 2
    assert "--column 'x': expected NAME=HEADER" in _one_line(capsys)
    assert main(["dataset", "import", *files, "--mapping", str(tmp_path / "import.yaml"),
                 "--steps", "1", "--interval", "0.1", "--output", out]) == 2
    assert "--steps: expected a whole number >= 2, found 1" in _one_line(capsys)
    assert not Path(out).exists()


# ----------------------------------------------------------------------- OpenFOAM cases
def _barycentric_zero(case: Path) -> Path:
    """A mapped 0/ (mapFields): the cloud as barycentric coordinates only."""
    cloud = case / "0" / "lagrangian" / "kinematicCloud"
    cloud.mkdir(parents=True)
    (cloud / "coordinates").write_text("FoamFile\n{\n    format ascii;\n    class "
                                       "Cloud<basicKinematicCollidingParcel>;\n    object "
                                       "coordinates;\n}\n0()\n")
    return case / "0"


def test_time_without_positions_is_skipped_with_a_note(tiny_case, tmp_path):
    case = tmp_path / "case"
    shutil.copytree(tiny_case, case)
    zero = _barycentric_zero(case)
    table = read_tracks(case)
    assert table.attrs["notes"] == [f"{zero}: skipped: lagrangian/kinematicCloud holds only "
                                    "barycentric coordinates, no legacy positions (a mapped "
                                    "time?)"]
    pd.testing.assert_frame_equal(table, read_tracks(tiny_case))
    with pytest.raises(FoamFormatError, match="only barycentric coordinates"):
        read_cloud(zero)
    only = tmp_path / "only"
    _barycentric_zero(only)
    with pytest.raises(FileNotFoundError, match=r"\(1 with only barycentric coordinates\)"):
        read_tracks(only)


def test_openfoam_cases(tiny_case, tmp_path, capsys):
    for name in ("b", "a"):
        shutil.copytree(tiny_case, tmp_path / name)
    zero = _barycentric_zero(tmp_path / "b")
    (tmp_path / "import.yaml").write_text(
        "conditions:\n  a: {main_inlet_speed: 10.0, side_inlet_speed: 30.0}\n"
        "  b: {main_inlet_speed: 12.0, side_inlet_speed: 30.0}\n"
        "time: {steps: 4, interval: 0.01, start: 0.01}\nparticles: [0, 1, 2, 3]\n"
        "erosion: {start: 0.04, end: 0.06, wall_density: 7800.0}\n")
    assert main(["dataset", "import", str(tmp_path / "b"), str(tmp_path / "a"), "--mapping",
                 str(tmp_path / "import.yaml"), "--output", str(tmp_path / "cfd.nc")]) == 0
    assert f"note: {zero}: skipped: lagrangian/kinematicCloud holds only barycentric" \
        in capsys.readouterr().out
    ds = open_dataset(tmp_path / "cfd.nc", erosion=True)
    assert ds["case"].values.tolist() == ["a", "b"]
    ids = particle_key(0, np.arange(4))
    assert ds["particle"].values.tolist() == ids.tolist()
    traj = resample_tracks(read_tracks(tiny_case), np.array([0.01, 0.02, 0.03, 0.04]), ids)
    for n in range(2):
        np.testing.assert_allclose(ds["position"].values[n], traj.position, rtol=1e-6)
        np.testing.assert_array_equal(ds["valid"].values[n], traj.valid)
    faces = read_wall_faces(tiny_case)
    rate = erosion_rate(tiny_case, 0.04, 0.06, 7800.0, faces["face_area"])
    np.testing.assert_allclose(ds["erosion_rate"].values, [rate, rate], rtol=1e-6)
    np.testing.assert_allclose(ds["face_area"].values, faces["face_area"])


def test_openfoam_refuses_table_keys_and_mixed_inputs(tiny_case, tmp_path, capsys):
    (tmp_path / "import.yaml").write_text("columns: {x: X}\n")
    out = str(tmp_path / "out.zarr")
    assert main(["dataset", "import", str(tiny_case), "--mapping",
                 str(tmp_path / "import.yaml"), "--output", out]) == 2
    assert "import.yaml: columns: only for track tables; the inputs are OpenFOAM case " \
        "directories" in _one_line(capsys)
    files = _inputs(tmp_path)
    assert main(["dataset", "import", str(tiny_case), files[0], "--output", out]) == 2
    assert "expected OpenFOAM case directories or track tables, found both" in \
        _one_line(capsys)
    assert not Path(out).exists()
