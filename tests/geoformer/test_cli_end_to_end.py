"""The shell path end to end at tiny size: convert, fit, forecast, climatology, evaluate, plot."""

import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from geoformer.cli import main
from tests.conftest import mock_era5

TINY_NETWORK = {"preset": "small-5.625", "patch": [2, 2, 2], "window": [2, 2, 4],
                "embed_dim": 8, "depths": [2, 2, 2, 2], "heads": [2, 2, 2, 2]}


@pytest.mark.slow
def test_shell_path_end_to_end(tmp_path, capsys):
    raw = mock_era5(n_time=40)
    raw.to_netcdf(tmp_path / "raw.nc")
    store = tmp_path / "train.zarr"
    assert main(["dataset", "convert", "--input", str(tmp_path / "raw.nc"),
                 "--output", str(store)]) == 0
    t = [str(v)[:19] for v in raw.time.values]
    experiment = {
        "model": {"network": TINY_NETWORK, "lr": 1e-3, "warmup_steps": 2},
        "data": {"store": str(store), "lead_hours": 6, "train": [t[0], t[23]],
                 "val": [t[24], t[31]], "test": [t[32], t[39]], "batch_size": 4},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
        "output": {"dir": str(tmp_path / "runs")},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(experiment))
    assert main(["fit", "--config", str(tmp_path / "exp.yaml")]) == 0
    ckpt6 = tmp_path / "runs" / "geoformer-6h" / "geoformer-6h.ckpt"
    # The 12 h model also exercises the short-budget options: latitude input, MSE, time schedule.
    assert main(["fit", "--config", str(tmp_path / "exp.yaml"), "--data.lead_hours=12",
                 "--output.name", "twelve", "--data.latitude_input=true",
                 "--model.loss_kind=mse", "--model.schedule=time",
                 "--trainer.max_time=00:00:05:00"]) == 0
    ckpt12 = tmp_path / "runs" / "twelve" / "geoformer-12h.ckpt"
    hp12 = torch.load(ckpt12, weights_only=True)["hyper_parameters"]
    assert hp12["contract"]["lead_hours"] == 12 and hp12["loss_kind"] == "mse"
    assert hp12["schedule_seconds"] == 300.0
    assert hp12["contract"]["constant_vars"][-1] == "sin_latitude"
    assert (tmp_path / "runs" / "geoformer-6h" / "metrics.csv").exists()

    fc_path = tmp_path / "fc.zarr"
    assert main(["forecast", "--checkpoint", str(ckpt6), "--checkpoint", str(ckpt12),
                 "--input", str(store), "--init", t[32], "--init", t[33], "--lead-time", "18h",
                 "--every", "6h", "--output", str(fc_path)]) == 0
    fc = xr.open_zarr(fc_path)
    assert fc.sizes["prediction_timedelta"] == 3 and fc.sizes["time"] == 2

    clim = tmp_path / "clim.zarr"
    assert main(["climatology", "--input", str(store), "--output", str(clim), "--kind",
                 "time_mean", "--period", t[0], t[23]]) == 0
    scores_csv = tmp_path / "scores.csv"
    assert main(["evaluate", "--forecast", str(fc_path), "--truth", str(store),
                 "--climatology", str(clim), "--train-period", t[0], t[23],
                 "--output", str(scores_csv), "--plot", str(tmp_path / "scores.png")]) == 0
    scores = pd.read_csv(scores_csv)
    assert list(scores.columns[:6]) == ["forecast", "variable", "level", "lead_time_hours",
                                        "metric", "value"]
    assert set(scores["forecast"]) == {"model", "persistence", "climatology",
                                       "damped_persistence"}
    assert set(scores["metric"]) >= {"rmse", "acc"}
    assert (tmp_path / "scores.png").stat().st_size > 0
    assert main(["evaluate", "--forecast", str(fc_path), "--truth", str(store),
                 "--climatology", str(clim), "--references", "", "--spectra",
                 "--output", str(tmp_path / "spectra.csv")]) == 0
    spectra = pd.read_csv(tmp_path / "spectra.csv")
    spectra = spectra[spectra["metric"].str.startswith("zonal_spectrum_")]
    assert set(spectra["forecast"]) == {"model", "truth"} and (spectra["value"] >= 0).all()

    assert main(["plot", "--forecast", str(fc_path), "--truth", str(store), "--variable",
                 "geopotential", "--level", "500", "--lead-time", "12h",
                 "--output", str(tmp_path / "map.png")]) == 0
    assert (tmp_path / "map.png").stat().st_size > 0


def test_cli_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    assert main(["dataset", "convert", "--input", str(tmp_path / "nope.nc"),
                 "--output", str(tmp_path / "x.zarr")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["fit", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config: File does not exist" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("data: {store: x, train: [a, b], val: [c, d]}\n"
                                       "trainer: {max_epoch: 3}\n")
    assert main(["fit", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "trainer.max_epoch: unknown key" in capsys.readouterr().err
    store = tmp_path / "s.zarr"
    mock_era5(n_time=8).to_zarr(store)
    assert main(["climatology", "--input", str(store), "--output", str(tmp_path / "c.zarr"),
                 "--window-days", "4"]) == 2
    assert "window" in capsys.readouterr().err
    assert main(["evaluate", "--forecast", str(store), "--truth", str(store),
                 "--references", "foo", "--output", str(tmp_path / "s.csv")]) == 2
    assert "unknown reference" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "s.zarr"]
