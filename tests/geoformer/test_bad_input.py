"""Bad input through the ``geoformer`` command line: one line on stderr naming the problem,
exit status 2, no traceback, and nothing left at the output path (an existing output kept
as it was).

Each case builds its files in ``tmp_path`` and returns the arguments, the strings the line
must hold and the output path(s) that must not change; the files every case shares (a tiny
data store, an untrained 6 h checkpoint and its forecast) are made once for the module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geoformer.cli import main
from tests.conftest import Payload, mock_era5, tiny_module

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments" / "geoformer"
GFS = Path(__file__).parent.parent / "data" / "gfs" / "gfs-2p5deg-f120-subset.grib2"
CASES: dict = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def _save_checkpoint(module, path: Path) -> Path:
    import lightning as L

    trainer = L.Trainer(logger=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    """data.zarr (6 times, 6 h apart), m6.ckpt (6 h model), g24.ckpt (another grid) and
    fc.zarr (inits 0 and 6 h, leads 6 and 12 h: valid times 6 .. 18 h)."""
    from geoformer.forecast import forecast, write_forecast

    tmp = tmp_path_factory.mktemp("shared")
    ds = mock_era5(n_time=6)
    ds.to_zarr(tmp / "data.zarr", zarr_format=2)
    m6 = _save_checkpoint(tiny_module(ds, 6), tmp / "m6.ckpt")
    _save_checkpoint(tiny_module(mock_era5(n_time=2, grid=(10, 16)), 24), tmp / "g24.ckpt")
    fc = forecast([m6], ds, ds.time.values[:2], lead_time="12h", every="6h")
    write_forecast(fc, tmp / "fc.zarr")
    return {"dir": tmp, "ds": ds, "data": tmp / "data.zarr", "m6": m6, "g24": tmp / "g24.ckpt",
            "fc": tmp / "fc.zarr"}


def _forecast(tmp: Path, shared: dict, checkpoint=None, data=None, *extra: str) -> list[str]:
    return ["forecast", "--checkpoint", str(checkpoint or shared["m6"]), "--input",
            str(data or shared["data"]), "--init", "2000-01-01T00", "--lead-time", "6h",
            "--output", str(tmp / "out.zarr"), *extra]


def _convert(tmp: Path, data) -> list[str]:
    return ["dataset", "convert", "--input", str(data), "--output", str(tmp / "out.zarr")]


def _store(tmp: Path, ds, name: str = "in.zarr") -> Path:
    ds.to_zarr(tmp / name, zarr_format=2)
    return tmp / name


# ------------------------------------------------------------------------- checkpoints
@case
def checkpoint_of_random_bytes(tmp, shared):
    (tmp / "random.ckpt").write_bytes(np.random.default_rng(1).bytes(4096))
    return (_forecast(tmp, shared, tmp / "random.ckpt"),
            ["random.ckpt: not a geoformer checkpoint", "not a torch file"], tmp / "out.zarr")


@case
def truncated_checkpoint(tmp, shared):
    (tmp / "cut.ckpt").write_bytes(shared["m6"].read_bytes()[:20000])
    return (_forecast(tmp, shared, tmp / "cut.ckpt"),
            ["cut.ckpt: not a geoformer checkpoint", "empty or truncated"], tmp / "out.zarr")


@case
def empty_checkpoint(tmp, shared):
    (tmp / "empty.ckpt").write_bytes(b"")
    return (_forecast(tmp, shared, tmp / "empty.ckpt"),
            ["empty.ckpt: not a geoformer checkpoint", "empty or truncated"], tmp / "out.zarr")


@case
def checkpoint_with_a_pickle_payload(tmp, shared):
    torch.save({"state_dict": Payload(tmp / "ran")}, tmp / "payload.ckpt")
    return (_forecast(tmp, shared, tmp / "payload.ckpt"),
            ["payload.ckpt: not a geoformer checkpoint", "pickled Python object",
             "refused unread"], tmp / "out.zarr")


@case
def checkpoint_that_is_not_a_dict(tmp, shared):
    torch.save(torch.zeros(3), tmp / "tensor.ckpt")
    return (_forecast(tmp, shared, tmp / "tensor.ckpt"),
            ["tensor.ckpt: not a geoformer checkpoint", "found a Tensor"], tmp / "out.zarr")


@case
def fluidgpt_checkpoint(tmp, shared):
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {}}, "fluidgpt_module": "gpt"},
               tmp / "fluid.ckpt")
    return (_forecast(tmp, shared, tmp / "fluid.ckpt"),
            ["fluid.ckpt: a fluidgpt checkpoint (gpt model), not a geoformer one"],
            tmp / "out.zarr")


@case
def checkpoints_of_two_grids(tmp, shared):
    argv = _forecast(tmp, shared, None, None, "--checkpoint", str(shared["g24"]))
    return argv, [f"checkpoints {shared['m6']} and {shared['g24']} differ in their latitudes"], \
        tmp / "out.zarr"


@case
def missing_checkpoint(tmp, shared):
    return (_forecast(tmp, shared, tmp / "none.ckpt"), [f"no checkpoint at {tmp / 'none.ckpt'}"],
            tmp / "out.zarr")


# ------------------------------------------------------------------ corrupted data files
def _garbage_chunk(tmp: Path, shared: dict) -> Path:
    store = tmp / "garbage.zarr"
    shutil.copytree(shared["data"], store)
    chunk = store / "temperature" / "0.0.0.0"
    chunk.write_bytes(np.random.default_rng(2).bytes(chunk.stat().st_size))
    return store


@case
def zarr_chunk_of_garbage_converted(tmp, shared):
    store = _garbage_chunk(tmp, shared)
    return (_convert(tmp, store), [f"{store}: could not read variable 'temperature'",
                                   "corrupted or truncated"], tmp / "out.zarr")


@case
def zarr_chunk_of_garbage_forecast(tmp, shared):
    store = _garbage_chunk(tmp, shared)
    return (_forecast(tmp, shared, None, store),
            [f"{store}: could not read variable 'temperature'"], tmp / "out.zarr")


@case
def zarr_without_metadata(tmp, shared):
    store = tmp / "bare.zarr"
    shutil.copytree(shared["data"], store)
    for name in (".zgroup", ".zmetadata", ".zattrs"):
        (store / name).unlink()
    return _convert(tmp, store), [f"could not open {store} as zarr"], tmp / "out.zarr"


@case
def empty_netcdf(tmp, shared):
    (tmp / "empty.nc").write_bytes(b"")
    return (_convert(tmp, tmp / "empty.nc"), [f"could not open {tmp / 'empty.nc'} as netcdf4"],
            tmp / "out.zarr")


@case
def truncated_netcdf(tmp, shared):
    shared["ds"].to_netcdf(tmp / "whole.nc", engine="netcdf4")
    data = (tmp / "whole.nc").read_bytes()
    (tmp / "cut.nc").write_bytes(data[: len(data) * 3 // 4])
    return (_convert(tmp, tmp / "cut.nc"), [f"{tmp / 'cut.nc'}", "could not open"],
            tmp / "out.zarr")


@case
def truncated_grib(tmp, shared):
    (tmp / "cut.grib2").write_bytes(GFS.read_bytes()[:100_000])
    return (_convert(tmp, tmp / "cut.grib2"),
            [f"{tmp / 'cut.grib2'}: 1 GRIB message(s) are corrupted or truncated"],
            tmp / "out.zarr")


@case
def grib_of_random_bytes(tmp, shared):
    (tmp / "noise.grib2").write_bytes(b"GRIB" + np.random.default_rng(3).bytes(5000))
    return (_convert(tmp, tmp / "noise.grib2"),
            [f"could not open {tmp / 'noise.grib2'} as cfgrib"], tmp / "out.zarr")


@case
def missing_input(tmp, shared):
    return (_convert(tmp, tmp / "none.zarr"), [f"no such file or store: {tmp / 'none.zarr'}"],
            tmp / "out.zarr")


# ----------------------------------------------------------------------- data contents
@case
def nan_in_the_input(tmp, shared):
    ds = shared["ds"].copy(deep=True)
    ds["2m_temperature"][2, 3, 4] = np.nan
    store = _store(tmp, ds)
    return (_convert(tmp, store), [f"{store}: ", "'2m_temperature' has 1 NaN or infinite"],
            tmp / "out.zarr")


@case
def inf_in_the_initial_state(tmp, shared):
    ds = shared["ds"].copy(deep=True)
    ds["temperature"][0, 1, 2, 3] = np.inf
    store = _store(tmp, ds)
    return (_forecast(tmp, shared, None, store),
            [f"{store}: the initial state's variable 'temperature' has 1 NaN or infinite"],
            tmp / "out.zarr")


@case
def strings_instead_of_numbers(tmp, shared):
    ds = shared["ds"].copy()
    ds["2m_temperature"] = ds["2m_temperature"].astype(str)
    store = _store(tmp, ds)
    return _convert(tmp, store), [f"{store}", "2m_temperature"], tmp / "out.zarr"


@case
def wrong_dim_names(tmp, shared):
    ds = shared["ds"].rename({"latitude": "row", "longitude": "column"})
    store = _store(tmp, ds)
    return _convert(tmp, store), [f"{store}", "latitude"], tmp / "out.zarr"


@case
def missing_variable_for_the_model(tmp, shared):
    store = _store(tmp, shared["ds"].drop_vars("temperature"))
    return (_forecast(tmp, shared, None, store), [f"{store}", "temperature"], tmp / "out.zarr")


# -------------------------------------------------------------------- forecast options
@case
def negative_lead_time(tmp, shared):
    argv = _forecast(tmp, shared)
    i = argv.index("--lead-time")
    argv[i:i + 2] = ["--lead-time=-6h"]  # a separate "-6h" would read as an option
    return argv, ["lead times must be a positive whole number of hours", "-6h"], \
        tmp / "out.zarr"


@case
def unreachable_lead_time(tmp, shared):
    argv = _forecast(tmp, shared)
    argv[argv.index("--lead-time") + 1] = "15h"
    return argv, ["15"], tmp / "out.zarr"


@case
def initial_time_not_in_the_data(tmp, shared):
    argv = _forecast(tmp, shared)
    argv[argv.index("--init") + 1] = "2010-01-01"
    return argv, ["initial time(s) ['2010-01-01 00:00:00'] are not in", str(shared["data"])], \
        tmp / "out.zarr"


@case
def climatology_of_an_empty_period(tmp, shared):
    return (["climatology", "--input", str(shared["data"]), "--output", str(tmp / "c.zarr"),
             "--kind", "time_mean", "--period", "2010-01-01", "2010-12-31"],
            [f"{shared['data']}: no time in --period 2010-01-01 .. 2010-12-31"], tmp / "c.zarr")


# ------------------------------------------------------------------ YAML and experiments
BROKEN_YAML = "model:\n  lr: [1, 2\n"


@case
def fit_with_a_broken_yaml(tmp, shared):
    (tmp / "broken.yaml").write_text(BROKEN_YAML)
    return (["fit", "--config", str(tmp / "broken.yaml")],
            [f"{tmp / 'broken.yaml'}: not valid YAML at line 3"], tmp / "runs")


@case
def recipe_with_a_broken_yaml(tmp, shared):
    (tmp / "broken.yaml").write_text(BROKEN_YAML)
    return (["dataset", "held-suarez", "--recipe", str(tmp / "broken.yaml"), "--output",
             str(tmp / "hs.zarr")], [f"{tmp / 'broken.yaml'}: not valid YAML"], tmp / "hs.zarr")


def _fit(tmp: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(EXPERIMENTS / "demo.yaml"), f"--output.dir={tmp / 'runs'}",
            "--output.name=run", *extra]


@case
def fit_with_an_unknown_key_at_depth(tmp, shared):
    return (_fit(tmp, "--model.network.embed_dimm=3"),
            ["model.network.embed_dimm: unknown key", "did you mean 'model.network.embed_dim'"],
            tmp / "runs")


@case
def fit_with_a_word_for_a_number(tmp, shared):
    return (_fit(tmp, "--trainer.max_epochs=two"),
            ["trainer.max_epochs: expected int or null, got 'two'"], tmp / "runs")


@case
def fit_with_a_word_for_a_rate(tmp, shared):
    return _fit(tmp, "--model.lr=fast"), ["model.lr: expected float, got 'fast'"], tmp / "runs"


# ---------------------------------------------------------------------------- evaluate
def _evaluate(tmp: Path, shared: dict, truth: Path, *extra: str) -> list[str]:
    return ["evaluate", "--forecast", str(shared["fc"]), "--truth", str(truth),
            "--references", "persistence", "--output", str(tmp / "scores.csv"), *extra]


@case
def truth_without_some_valid_times(tmp, shared):
    truth = _store(tmp, shared["ds"].drop_sel(time=shared["ds"].time.values[3]), "truth.zarr")
    return (_evaluate(tmp, shared, truth),
            [f"{truth} lacks the valid time of 1 of 4 (init, lead) pairs",
             "first 2000-01-01 18:00:00 = 2000-01-01 06:00:00 + 12 h",
             "--allow-missing-valid-times"], tmp / "scores.csv")


@case
def truth_with_nan_at_an_initial_time(tmp, shared):
    ds = shared["ds"].copy(deep=True)
    ds["temperature"][0, 0, 0, 0] = np.nan  # persistence starts from it
    truth = _store(tmp, ds, "truth.zarr")
    return (_evaluate(tmp, shared, truth),
            [f"{truth}: variable 'temperature' has NaN or infinite values",
             "the first 2000-01-01 00:00:00"], tmp / "scores.csv")


@case
def forecast_store_with_a_garbage_chunk(tmp, shared):
    store = tmp / "fc.zarr"
    shutil.copytree(shared["fc"], store)
    chunk = sorted((store / "temperature").glob("0.*"))[0]
    chunk.write_bytes(np.random.default_rng(4).bytes(chunk.stat().st_size))
    argv = _evaluate(tmp, shared, shared["data"])
    argv[argv.index("--forecast") + 1] = str(store)
    return argv, [f"{store}: could not read variable 'temperature'"], tmp / "scores.csv"


# -------------------------------------------------------------------- existing outputs
def _existing(path: Path) -> Path:
    if path.suffix == ".zarr":
        path.mkdir()
        (path / "mine.txt").write_text("earlier")
    else:
        path.write_text("earlier")
    return path


@case
def convert_over_an_existing_store(tmp, shared):
    # the input is missing too: the existing output must be refused before anything is read
    out = _existing(tmp / "out.zarr")
    return _convert(tmp, tmp / "none.zarr"), [f"{out} exists; pass --overwrite"], out


@case
def climatology_of_a_store_with_a_garbage_chunk(tmp, shared):
    # fails while computing: the atomic writer must leave nothing at the output path
    store = _garbage_chunk(tmp, shared)
    return (["climatology", "--input", str(store), "--output", str(tmp / "c.zarr"),
             "--kind", "time_mean"], [f"{store}: could not read variable 'temperature'"],
            tmp / "c.zarr")


@case
def forecast_over_an_existing_store(tmp, shared):
    out = _existing(tmp / "out.zarr")
    return _forecast(tmp, shared), [f"{out} exists; pass --overwrite"], out


@case
def climatology_over_an_existing_store(tmp, shared):
    out = _existing(tmp / "c.zarr")
    return (["climatology", "--input", str(shared["data"]), "--output", str(out), "--kind",
             "time_mean"], [f"{out} exists; pass --overwrite"], out)


@case
def held_suarez_over_an_existing_store(tmp, shared):
    out = _existing(tmp / "hs.zarr")
    return (["dataset", "held-suarez", "--output", str(out)], [f"{out} exists; pass --overwrite"],
            out)


@case
def evaluate_over_an_existing_table(tmp, shared):
    out = _existing(tmp / "scores.csv")
    return _evaluate(tmp, shared, shared["data"]), [f"{out} exists; pass --overwrite"], out


@case
def evaluate_over_an_existing_plot(tmp, shared):
    png = _existing(tmp / "scores.png")
    return (_evaluate(tmp, shared, shared["data"], "--plot", str(png)),
            [f"{png} exists; pass --overwrite"], (png, tmp / "scores.csv"))


@case
def plot_over_an_existing_png(tmp, shared):
    png = _existing(tmp / "map.png")
    return (["plot", "--forecast", str(shared["fc"]), "--truth", str(shared["data"]),
             "--variable", "2m_temperature", "--lead-time", "6h", "--output", str(png)],
            [f"{png} exists; pass --overwrite"], png)


@case
def fit_into_a_run_folder_that_holds_files(tmp, shared):
    run = tmp / "runs" / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("earlier")
    return _fit(tmp), [f"run folder {run} exists and holds files", "--overwrite"], run


# ---------------------------------------------------------------------------- the test
def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): f.read_bytes() for f in files if f.is_file()}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_exit_2(name, tmp_path, capsys, shared):
    argv, must, outputs = CASES[name](tmp_path, shared)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    before = [_snapshot(p) for p in outputs]
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith(f"geoformer {argv[0]}: "), err
    assert "Traceback" not in err and "weights_only=False" not in err
    for text in must:
        assert text in lines[0], lines[0]
    assert [_snapshot(p) for p in outputs] == before  # nothing new; an existing output kept
    assert not (tmp_path / "ran").exists()  # no payload ran
    left = [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not left, left  # no temporary file left behind


def test_the_matrix_is_large():
    assert len(CASES) >= 30


@pytest.mark.parametrize("change", ["ascending_latitude", "longitude_from_minus_180",
                                    "extra_variables"])
def test_accepted_inputs_are_normalised(change, tmp_path, capsys, shared):
    import xarray as xr

    ds = shared["ds"]
    if change == "ascending_latitude":
        ds = ds.isel(latitude=slice(None, None, -1))
    elif change == "longitude_from_minus_180":
        ds = ds.assign_coords(longitude=((ds.longitude + 180) % 360) - 180).sortby("longitude")
    else:
        ds = ds.assign(cloud_cover=ds["2m_temperature"] * 0)
    assert main(_convert(tmp_path, _store(tmp_path, ds))) == 0, capsys.readouterr().err
    store = xr.open_zarr(tmp_path / "out.zarr")
    assert float(store.latitude[0]) == 90.0 and float(store.longitude[0]) == 0.0
    assert (np.diff(store.longitude.values) > 0).all()
    xr.testing.assert_allclose(store["2m_temperature"].load(),
                               shared["ds"]["2m_temperature"].astype("float32"))
    assert "cloud_cover" not in store


def test_allow_missing_valid_times_scores_the_rest_with_a_note(tmp_path, capsys, shared):
    truth = _store(tmp_path, shared["ds"].drop_sel(time=shared["ds"].time.values[3]))
    assert main(_evaluate(tmp_path, shared, truth, "--allow-missing-valid-times")) == 0
    out = capsys.readouterr().out
    assert "note: lead 12 h: 1 of 2 initial times scored" in out
    assert "lead 6 h" not in out and (tmp_path / "scores.csv").is_file()


def test_score_table_refuses_missing_valid_times_unless_allowed(shared):
    import xarray as xr

    from geoformer.scores import score_table

    fc = xr.open_zarr(shared["fc"]).drop_vars("valid_time")
    truth = shared["ds"][list(fc.data_vars)].drop_sel(time=shared["ds"].time.values[3])
    with pytest.raises(ValueError, match=r"the truth lacks the valid time of 1 of 4 \(init"):
        score_table({"model": fc}, truth)
    notes: list[str] = []
    table = score_table({"model": fc, "again": fc}, truth, allow_missing_valid_times=True,
                        notes=notes)
    assert notes == ["lead 12 h: 1 of 2 initial times scored (the truth lacks the valid "
                     "times of the others)"]  # once, not once per forecast
    assert set(table["lead_time_hours"]) == {6.0, 12.0}


def test_debug_shows_the_traceback(tmp_path, shared):
    argv, _, _ = CASES["checkpoint_of_random_bytes"](tmp_path, shared)
    with pytest.raises(ValueError, match="not a geoformer checkpoint"):
        main(["--debug", *argv])
    store = _garbage_chunk(tmp_path, shared)
    with pytest.raises(ValueError, match="could not read variable 'temperature'"):
        main([*_convert(tmp_path, store), "--debug"])


def test_one_line_on_the_real_stderr(tmp_path):
    """The installed entry point, in a fresh process: torch's warnings do not add a line."""
    torch.save({"state_dict": Payload(tmp_path / "ran")}, tmp_path / "payload.ckpt")
    argv = ["forecast", "--checkpoint", str(tmp_path / "payload.ckpt"), "--input",
            str(tmp_path / "none.zarr"), "--init", "2000-01-01", "--output",
            str(tmp_path / "out.zarr")]
    done = subprocess.run([sys.executable, "-m", "geoformer.cli", *argv], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "payload.ckpt: not a geoformer checkpoint" in lines[0], lines
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out.zarr").exists()


def test_a_multi_line_message_is_joined_into_one_line(capsys):
    from geoformer.errors import guarded

    def run():
        raise ValueError("x: first\n  second")

    assert guarded(run, "geoformer convert") == 2
    assert capsys.readouterr().err == "geoformer convert: x: first second\n"
