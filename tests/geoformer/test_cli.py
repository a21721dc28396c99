"""`geoformer info`: what a user reads before training."""

import json

import pytest

from geoformer.cli import main


def test_info_json_reports_the_released_model(capsys):
    assert main(["info", "--preset", "pangu", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 63e6 < info["parameters"] < 65.5e6
    assert [s["window_types"] for s in info["stages"]] == [124, 64, 64, 124]
    assert info["stages"][0]["tokens"] == [8, 181, 360]
    full = info["activation_bytes_per_sample"]
    assert full > info["activation_bytes_per_sample_checkpointed"] > 0


def test_info_text_with_grid_and_override(capsys):
    assert main(["info", "--preset", "pangu", "--grid", "121x240", "--network.window=[2,6,10]",
                 "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "121 x 240" in out and "window (2, 6, 10)" in out and "shift (1, 3, 5)" in out


def test_info_times_a_small_model(capsys):
    assert main(["info", "--preset", "small-5.625", "--time", "--json", "--no-memory"]) == 0
    timing = json.loads(capsys.readouterr().out)["timing_batch1"]
    assert timing["forward_s"] > 0 and timing["train_step_s"] > 0


def test_info_explains_a_bad_configuration(capsys):
    assert main(["info", "--preset", "pangu", "--grid", "121x240"]) == 2
    err = capsys.readouterr().err
    assert "longitude" in err and "window 12" in err


@pytest.mark.parametrize("args, expected", [
    (["--network.window=2"], "network.window: expected tuple[int, int, int] or null, got '2'"),
    (["--network.windw=[2,6,10]"], "did you mean 'network.window'"),
    (["--grid", "121"], "grid must be written HxW"),
    (["--preset", "huge"], "huge"),
])
def test_info_rejects_a_malformed_option_in_one_line(capsys, args, expected):
    assert main(["info", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_info_reads_a_network_section_from_yaml(tmp_path, capsys):
    (tmp_path / "net.yaml").write_text("preset: pangu\ngrid: 121x240\n"
                                       "network:\n  window: [2, 6, 10]\n")
    assert main(["info", "--config", str(tmp_path / "net.yaml"), "--no-memory"]) == 0
    assert "window (2, 6, 10)" in capsys.readouterr().out


def test_forecast_writes_a_perlin_ensemble(tmp_path, capsys):
    import lightning as L
    import xarray as xr

    from tests.conftest import mock_era5, tiny_module

    ds = mock_era5(n_time=4)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(tiny_module(ds, 6))
    trainer.save_checkpoint(tmp_path / "m6.ckpt")
    ds.to_zarr(tmp_path / "data.zarr", zarr_format=3)  # a v3 input's codecs are not carried
    out = tmp_path / "ens.zarr"
    assert main(["forecast", "--checkpoint", str(tmp_path / "m6.ckpt"), "--input",
                 str(tmp_path / "data.zarr"), "--init", str(ds.time.values[0]),
                 "--lead-time", "6h", "--output", str(out), "--members", "3",
                 "--perturbation", "perlin", "--perturbation-scale", "0.1",
                 "--seed", "4"]) == 0
    assert "3 members" in capsys.readouterr().out
    fc = xr.open_zarr(out)
    assert fc.sizes["number"] == 3 and fc["number"].attrs["standard_name"] == "realization"
    t = fc["temperature"].values
    assert not (t[:, 1] == t[:, 0]).all()


@pytest.mark.parametrize("option,message", [
    (["--members", "0"], "--members must be at least 1"),
    (["--perturbation-scale", "-0.5"], "--perturbation-scale must be >= 0"),
    (["--perturbation", "gaussian"], "--perturbation must be one of ['perlin']"),
])
def test_forecast_rejects_bad_ensemble_options(tmp_path, capsys, option, message):
    code = main(["forecast", "--checkpoint", str(tmp_path / "none.ckpt"), "--input",
                 str(tmp_path / "none.zarr"), "--init", "2000-01-01", "--output",
                 str(tmp_path / "fc.zarr"), "--members", "2", *option])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["plot", "--forecast", "f.zarr", "--truth", "t.zarr", "--output", "o.png",
     "--coastlines", "maybe"],
    ["plot", "--forecast", "f.zarr", "--truth", "t.zarr", "--output", "o.png",
     "--projection", "mercator"],
    ["forecast", "--no-such-option"],
])
def test_an_argparse_error_is_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    from geoformer.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("geoformer ") and "usage" not in err
    assert not (tmp_path / "o.png").exists()


def test_demo_refuses_an_earlier_demos_output_without_overwrite(tmp_path, capsys):
    (tmp_path / "scores.csv").write_text("earlier")
    assert main(["demo", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --overwrite" in err and str(tmp_path) in err, err
    assert (tmp_path / "scores.csv").read_text() == "earlier"


class _Unreadable:
    """A dataset whose samples fail to read, as a corrupted chunk does in a worker."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        from geoformer.schema import SchemaError

        raise SchemaError(f"train.zarr: chunk {i} of temperature is unreadable")


def test_a_read_error_in_a_dataloader_worker_is_one_line_without_its_traceback(capsys):
    from torch.utils.data import DataLoader

    from geoformer.errors import guarded

    def read_all():
        list(DataLoader(_Unreadable(), num_workers=1))
        return 0

    assert guarded(read_all, "geoformer fit") == 2
    err = capsys.readouterr().err
    assert err == "geoformer fit: train.zarr: chunk 0 of temperature is unreadable\n", err


def test_a_classic_netcdf_cut_short_is_refused_not_read_as_zeros(tmp_path, capsys):
    from tests.conftest import mock_era5

    whole = tmp_path / "whole.nc"
    mock_era5(n_time=2).to_netcdf(whole, format="NETCDF3_CLASSIC")
    cut = tmp_path / "cut.nc"
    cut.write_bytes(whole.read_bytes()[:-200])
    out = tmp_path / "store.zarr"
    assert main(["dataset", "convert", "--input", str(cut), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(cut) in err and "truncated" in err, err
    assert not out.exists()
    assert main(["dataset", "convert", "--input", str(whole), "--output", str(out)]) == 0
