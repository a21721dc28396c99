"""experiments/geoformer: every experiment parses as LightningCLI YAML; the demo's runs train."""

from pathlib import Path

import pytest
import torch
import yaml

from geoformer.cli import main
from geoformer.data import write_training_store
from geoformer.demo import fit_args, load_plan, train_runs
from tests.conftest import mock_era5

EXPERIMENTS = Path(__file__).parents[2] / "experiments" / "geoformer"
PLAN = EXPERIMENTS / "demo_plan.yaml"


@pytest.mark.parametrize("name", ["held_suarez", "era5_1.5deg", "demo"])
def test_every_experiment_parses_with_print_config(name, capsys):
    assert main(["fit", "--config", str(EXPERIMENTS / f"{name}.yaml"), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {"model", "data", "trainer", "output"} <= set(printed)
    assert printed["model"]["network"]["preset"]


def test_every_demo_run_parses(capsys):
    plan = load_plan(PLAN)
    splits = {k: slice("2000-01-01T00:00", "2000-01-02T00:00")
              for k in ("train", "validation", "test")}
    for run in plan["runs"]:
        args = fit_args(EXPERIMENTS / "demo.yaml", run, "store.zarr", splits, Path("runs"))
        assert main([*args, "--print_config"]) == 0, run["name"]
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["output"] == {"dir": "runs", "name": run["name"]}


def test_a_plan_with_an_unknown_key_or_run_is_an_error(tmp_path):
    plan = yaml.safe_load(PLAN.read_text())
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**plan, "extra": 1}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['extra'\]"):
        load_plan(tmp_path / "a.yaml")
    plan["forecast"]["runs"] = ["geoformer-1h"]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(ValueError, match="not runs of"):
        load_plan(tmp_path / "b.yaml")


@pytest.mark.slow
def test_the_demo_runs_train_a_step_each_on_a_tiny_store(tmp_path):
    ds = mock_era5(n_time=40, grid=(32, 64), with_humidity=False)  # the demo's 5.625 deg grid
    store = write_training_store(ds, tmp_path / "train.zarr")
    t = [str(v)[:19] for v in ds.time.values]
    splits = {"train": slice(t[0], t[23]), "validation": slice(t[24], t[31]),
              "test": slice(t[32], t[39])}
    plan = load_plan(PLAN)
    for run in plan["runs"]:  # one step each (the budget stays the plan's max_time)
        run["args"] = [*run["args"], "--trainer.limit_train_batches=1",
                       "--trainer.limit_val_batches=1", "--trainer.max_epochs=1",
                       "--data.batch_size=2"]
    checkpoints = train_runs(plan, EXPERIMENTS / "demo.yaml", str(store), splits,
                             tmp_path / "runs")
    assert list(checkpoints) == [run["name"] for run in plan["runs"]]
    hp = torch.load(checkpoints["geoformer-24h-rollout"], weights_only=True)["hyper_parameters"]
    assert hp["contract"]["rollout_steps"] == 3 and hp["contract"]["lead_hours"] == 24
    assert hp["lr"] == 5e-4 and hp["warmup_steps"] == 20 and hp["schedule_seconds"] == 420.0
    assert hp["network"]["patch"] == [2, 4, 4] and hp["residual"] and hp["loss_kind"] == "mse"
    assert hp["contract"]["constant_vars"][-1] == "sin_latitude"
    config = yaml.safe_load((tmp_path / "runs" / "geoformer-24h-rollout" / "config.yaml")
                            .read_text())
    assert config["trainer"]["gradient_clip_val"] == 1.0
    assert config["init_from"] == str(checkpoints["geoformer-24h"])
    six = torch.load(checkpoints["geoformer-6h"], weights_only=True)["hyper_parameters"]
    assert six["contract"]["lead_hours"] == 6 and six["schedule_seconds"] == 90.0
