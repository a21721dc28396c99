"""experiments/geoformer: every experiment parses as LightningCLI YAML; the demo's runs train."""

from pathlib import Path

import pytest
import torch
import yaml

from geoformer.cli import main
from geoformer.data import write_training_store
from geoformer.demo import PRETRAINED_DIR, export_checkpoint, fit_args, load_plan, train_runs
from geoformer.module import load_module
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
        assert printed["output"] == {"dir": "runs", "name": run["name"], "every_n_steps": None}


def test_a_plan_with_an_unknown_key_or_run_is_an_error(tmp_path):
    plan = yaml.safe_load(PLAN.read_text())
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**plan, "extra": 1}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['extra'\]"):
        load_plan(tmp_path / "a.yaml")
    plan["forecast"]["runs"] = ["geoformer-1h"]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(ValueError, match="not runs of"):
        load_plan(tmp_path / "b.yaml")


@pytest.fixture(scope="module")
def tiny_demo_store(tmp_path_factory):
    ds = mock_era5(n_time=40, grid=(32, 64), with_humidity=False)  # the demo's 5.625 deg grid
    store = write_training_store(ds, tmp_path_factory.mktemp("store") / "train.zarr")
    t = [str(v)[:19] for v in ds.time.values]
    splits = {"train": slice(t[0], t[23]), "validation": slice(t[24], t[31]),
              "test": slice(t[32], t[39])}
    return str(store), splits


def _one_step_each(plan):
    for run in plan["runs"]:  # one step each (the schedule stays the plan's max_steps)
        run["args"] = [*run["args"], "--trainer.limit_train_batches=1",
                       "--trainer.limit_val_batches=1", "--trainer.max_epochs=1",
                       "--data.batch_size=2"]
    return plan


@pytest.mark.slow
def test_the_demo_runs_train_a_step_each_on_a_tiny_store(tmp_path, tiny_demo_store):
    store, splits = tiny_demo_store
    plan = _one_step_each(load_plan(PLAN))
    checkpoints = train_runs(plan, EXPERIMENTS / "demo.yaml", store, splits, tmp_path / "runs")
    assert list(checkpoints) == [run["name"] for run in plan["runs"]]
    hp = torch.load(checkpoints["geoformer-24h"], weights_only=True)["hyper_parameters"]
    assert hp["contract"]["lead_hours"] == 24 and hp["schedule"] == "steps"
    assert hp["schedule_seconds"] is None and hp["lr"] == 3e-3
    assert hp["network"]["patch"] == [2, 4, 4] and hp["residual"] and hp["loss_kind"] == "mse"
    assert hp["contract"]["constant_vars"][-1] == "sin_latitude"
    config = yaml.safe_load((tmp_path / "runs" / "geoformer-24h" / "config.yaml").read_text())
    assert config["trainer"]["max_steps"] == 136 and config["trainer"]["max_time"] is None
    six = torch.load(checkpoints["geoformer-6h"], weights_only=True)["hyper_parameters"]
    assert six["contract"]["lead_hours"] == 6


@pytest.mark.slow
def test_the_pretrained_plan_trains_and_exports_slim_checkpoints(tmp_path, tiny_demo_store):
    store, splits = tiny_demo_store
    plan = _one_step_each(load_plan(EXPERIMENTS / "pretrained_plan.yaml"))
    checkpoints = train_runs(plan, EXPERIMENTS / "demo.yaml", store, splits, tmp_path / "runs")
    hp = torch.load(checkpoints["geoformer-24h-rollout"], weights_only=True)["hyper_parameters"]
    assert hp["contract"]["rollout_steps"] == 3 and hp["contract"]["lead_hours"] == 24
    assert hp["lr"] == 5e-4 and hp["warmup_steps"] == 20 and hp["schedule"] == "steps"
    config = yaml.safe_load((tmp_path / "runs" / "geoformer-24h-rollout" / "config.yaml")
                            .read_text())
    assert config["trainer"]["gradient_clip_val"] == 1.0
    assert config["trainer"]["max_steps"] == 150
    assert config["init_from"] == str(checkpoints["geoformer-24h"])
    five = torch.load(checkpoints["geoformer-24h-rollout5"], weights_only=True)["hyper_parameters"]
    assert five["contract"]["rollout_steps"] == 5 and five["lr"] == 5e-4
    config = yaml.safe_load((tmp_path / "runs" / "geoformer-24h-rollout5" / "config.yaml")
                            .read_text())
    assert config["trainer"]["max_steps"] == 300
    rollout5 = next(r for r in load_plan(EXPERIMENTS / "pretrained_plan.yaml")["runs"]
                    if r["name"] == "geoformer-24h-rollout5")
    assert "--data.batch_size=8" in rollout5["args"] and "--model.lr=5.0e-4" in rollout5["args"]
    assert config["init_from"] == str(checkpoints["geoformer-24h-rollout"])
    assert plan["export"] == {"geoformer-24h-rollout5": "geoformer/pretrained/held_suarez_24h.ckpt",
                              "geoformer-6h": "geoformer/pretrained/held_suarez_6h.ckpt"}
    assert plan["forecast"]["runs"] == ["geoformer-24h-rollout5", "geoformer-6h"]
    slim = export_checkpoint(checkpoints["geoformer-24h-rollout"], tmp_path / "slim.ckpt")
    content = torch.load(slim, weights_only=True)
    assert "optimizer_states" not in content and content["hyper_parameters"] == hp
    assert slim.stat().st_size < checkpoints["geoformer-24h-rollout"].stat().st_size
    full, small = load_module(checkpoints["geoformer-24h-rollout"]), load_module(slim)
    for (name, a), b in zip(full.state_dict().items(), small.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_shipped_checkpoints_load_safely_and_match_the_demo():
    plan = load_plan(PLAN)
    for name in plan["pretrained"]:
        path = PRETRAINED_DIR / name
        ckpt = torch.load(path, weights_only=True)
        assert "optimizer_states" not in ckpt
        module = load_module(path)
        assert module.hparams["network"]["patch"] == [2, 4, 4]
        contract = module.hparams["contract"]
        assert (len(contract["latitude"]), len(contract["longitude"])) == (32, 64)
    leads = sorted(load_module(PRETRAINED_DIR / n).hparams["contract"]["lead_hours"]
                   for n in plan["pretrained"])
    assert leads == [6, 24]
    # the 24 h model is the plan's last 24 h stage: fine-tuned on 5-step (120 h) rollouts
    day = load_module(PRETRAINED_DIR / "held_suarez_24h.ckpt").hparams["contract"]
    assert day["rollout_steps"] == 5
