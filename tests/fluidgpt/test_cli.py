"""The fluidgpt command line: the shipped experiments, one end-to-end run, error paths."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fluidgpt import compare as C
from fluidgpt.cli import DEMO_CONFIG, main
from fluidgpt.schema import open_dataset
from tests.fluidgpt.test_compare import tiny_experiment

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments" / "fluidgpt"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fluidgpt {argv[0]}: error: "), err
    return lines[0]


@pytest.mark.parametrize("name", ["paper", "compare", "demo"])
def test_shipped_experiments_are_valid(name):
    config = C.load_experiment(EXPERIMENTS / f"{name}.yaml")
    assert isinstance(config, C.Experiment)
    if name == "paper":
        assert config.split.kind == ["interior", "random"]  # the leak, side by side
        assert config.models["gpt"]["init_args"]["model"]["preset"] == "paper"
        assert config.data.conditions == "all"
    assert DEMO_CONFIG == EXPERIMENTS / "demo.yaml"


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "compare" in out and "predict" in out


def test_bad_input_ends_with_one_line_and_status_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget:\n  secnds: 3\n")
    assert "budget.secnds: unknown key" in error_line(capsys, "compare", "--config",
                                                      str(bad))
    assert "does not exist" in error_line(capsys, "fit", "--config",
                                          str(tmp_path / "none.yaml"))
    good = Path(__file__).parents[2] / "experiments" / "fluidgpt" / "compare.yaml"
    assert "budget" in error_line(capsys, "compare", "--config", str(good),
                                  "--output", "x.csv", "budget")
    assert "no such checkpoint" in error_line(capsys, "predict", "--checkpoint", "none.ckpt",
                                              "--conditions", "a=1", "--output", "p.zarr")
    assert "either --conditions" in error_line(capsys, "predict", "--checkpoint", "x.ckpt",
                                               "--output", "p.zarr")
    assert ".zarr or .nc" in error_line(capsys, "predict", "--checkpoint", "x.ckpt",
                                        "--conditions", "a=1", "--output", "p.csv")
    assert "no such checkpoint" in error_line(capsys, "evaluate", "--checkpoint", "none.ckpt")
    assert "no such recipe" in error_line(capsys, "dataset", "build", "--recipe",
                                          str(tmp_path / "r.yaml"), "--output", "x.zarr")
    assert "--overwrite" in error_line(capsys, "dataset", "build", "--recipe", str(bad),
                                       "--output", str(bad))
    assert "each split must be one of" in error_line(
        capsys, "compare", "--config", str(good), "--output", str(tmp_path / "x.csv"),
        "--split.kind=interior,diagonal")


#: `fluidgpt fit` with the tiny networks, 2 epochs each (the LightningCLI spelling of TINY).
FIT_TINY = ["--trainer.max_epochs=2", "--model.model={preset: tiny}",
            "--model.train.batch_size=4", "--erosion.model.model={preset: tiny}",
            "--erosion.model.train.batch_size=4", "--erosion.epochs=2",
            "--runtime.workers=1"]


def test_fit_predict_evaluate_end_to_end(capsys, tmp_path):
    tiny_experiment(tmp_path)  # writes the mock dataset
    config = {"data": {"path": str(tmp_path / "mock.nc"),
                       "split": {"kind": "block", "n_folds": 2}},
              "output": str(tmp_path / "run")}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = run(capsys, "fit", "--config", str(EXPERIMENTS / "fit.yaml"),
                         "--config", str(path), *FIT_TINY)
    assert code == 0, err
    run_dir = tmp_path / "run"
    for name in ("gpt.ckpt", "gpt_fold0.ckpt", "gpt_fold1.ckpt", "erosion.ckpt", "scores.csv"):
        assert (run_dir / name).is_file(), name
        if name.endswith(".ckpt"):
            torch.load(run_dir / name, weights_only=True)
    scores = pd.read_csv(run_dir / "scores.csv")
    assert tuple(scores.columns) == C.TABLE_COLUMNS
    assert set(zip(scores["target"], scores["metric"])) == {
        ("trajectory", "mse"), ("trajectory", "r2"), ("erosion", "r2"),
        ("erosion", "rel_peak_error"), ("erosion", "hotspot_distance_m"),
        ("erosion", "rel_total_error")}

    ds = open_dataset(tmp_path / "mock.nc")
    case = ds["conditions"].isel(case=3)
    conditions = ",".join(f"{n}={float(v)!r}" for n, v in
                          zip(ds["condition"].values, case.values)
                          if n != "particle_density")  # constant in the mock grid
    code, out, err = run(capsys, "predict", "--checkpoint", str(run_dir / "gpt.ckpt"),
                         "--checkpoint", str(run_dir / "erosion.ckpt"), "--conditions",
                         conditions, "--output", str(tmp_path / "pred.zarr"))
    assert code == 0, err
    pred = open_dataset(tmp_path / "pred.zarr")
    assert pred.sizes["case"] == 1 and "erosion_rate" in pred
    message = error_line(capsys, "predict", "--checkpoint", str(run_dir / "gpt.ckpt"),
                         "--conditions", "main_inlet_speed=9", "--output",
                         str(tmp_path / "p.nc"))
    assert "missing [" in message and "'restitution'" in message
    assert not (tmp_path / "p.nc").exists()

    csv = tmp_path / "eval.csv"
    code, out, _ = run(capsys, "evaluate", "--checkpoint", str(run_dir / "gpt.ckpt"),
                       "--checkpoint", str(run_dir / "erosion.ckpt"), "--data",
                       str(tmp_path / "mock.nc"), "--split", "block", "--output", str(csv))
    assert code == 0
    evaluated = pd.read_csv(csv).set_index(["target", "metric"])["value"]
    fitted = scores.set_index(["target", "metric"])["value"]
    # The same held-out cases, the same models: the scores of fit are reproduced.
    pd.testing.assert_series_equal(evaluated.sort_index(), fitted.sort_index(), rtol=1e-5)
    assert "trained on the block split" in error_line(
        capsys, "evaluate", "--checkpoint", str(run_dir / "gpt.ckpt"), "--data",
        str(tmp_path / "mock.nc"), "--split", "random")

    # an earlier fit is not replaced without --overwrite; LightningCLI's test subcommand
    # scores the saved model on the test cases
    fit = ["--config", str(EXPERIMENTS / "fit.yaml"), "--config", str(path), *FIT_TINY]
    assert "--overwrite" in error_line(capsys, "fit", *fit)
    code, out, err = run(capsys, "test", *fit, "--ckpt_path", str(run_dir / "gpt.ckpt"))
    assert code == 0 and "test/mse" in out, err
    assert "data.fold" in error_line(capsys, "validate", *fit, "--ckpt_path",
                                     str(run_dir / "gpt.ckpt"))


def test_tuning_script_runs_the_same_grid_for_every_model(tmp_path, capsys):
    """experiments/fluidgpt/tune.py: equal trial counts, each trial's settings applied, scored
    on the validation fold (one epoch here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tune", EXPERIMENTS / "tune.py")
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    assert len({len(list(tune.trials(m))) for m in tune.GRIDS}) == 1
    out = tmp_path / "tune.csv"
    tune.main(["--config", str(EXPERIMENTS / "demo.yaml"), "--only", "lstm", "--workers", "1",
               "--output", str(out), "--budget.epochs=1"])
    table = pd.read_csv(out)
    assert list(table["model"]) == ["lstm"] * len(list(tune.trials("lstm")))
    assert table["settings"].is_unique and table["mse"].notna().all()
    assert table["mse"].nunique() == len(table)      # the settings reached the networks
    assert (table["epochs"] == 1).all()
    assert "best lstm" in capsys.readouterr().out


def test_erosion_tuning_script_scores_every_network_on_the_validation_fold(tmp_path, capsys):
    """experiments/fluidgpt/tune_erosion.py: every trial of the grid plus knn and pod, scored
    on fold 0 of the interior split's non-test cases (one epoch here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tune_erosion",
                                                  EXPERIMENTS / "tune_erosion.py")
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    out = tmp_path / "tune_erosion.csv"
    tune.main(["--config", str(EXPERIMENTS / "demo.yaml"), "--workers", "1",
               "--max-epochs", "1", "--output", str(out)])
    table = pd.read_csv(out)
    n = len(list(tune.trials()))
    assert list(table["trial"].astype(str)) == [str(i) for i in range(n)] + ["knn", "pod"]
    assert table[["r2", "hotspot_distance_m", "rel_peak_error",
                  "rel_total_error"]].notna().all().all()
    # the settings reached the networks (capped at one epoch, the two epoch budgets agree)
    assert table["r2"].iloc[:n].nunique() == n // 2
    assert "best erosion network" in capsys.readouterr().out
