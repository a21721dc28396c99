"""`geoformer fit` on LightningCLI: one-line errors, the links, the time budget, one tiny run."""

import pytest
import torch
import yaml

from geoformer.cli import main
from geoformer.config import ConfigError
from geoformer.data import write_training_store
from geoformer.module import load_module
from geoformer.train import max_time_seconds, schedule_seconds
from tests.conftest import mock_era5

TINY_NETWORK = {"preset": "small-5.625", "patch": [2, 2, 2], "window": [2, 2, 4],
                "embed_dim": 8, "depths": [2, 2, 2, 2], "heads": [2, 2, 2, 2]}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A tiny store and an experiment YAML that trains on it in seconds."""
    root = tmp_path_factory.mktemp("fit")
    ds = mock_era5(n_time=24)
    store = write_training_store(ds, root / "train.zarr")
    t = [str(v)[:19] for v in ds.time.values]
    config = {
        "model": {"network": TINY_NETWORK, "lr": 1e-3, "warmup_steps": 2},
        "data": {"store": str(store), "lead_hours": 6, "train": [t[0], t[15]],
                 "val": [t[16], t[23]], "batch_size": 4},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False,
                    "enable_model_summary": False},
        "output": {"dir": str(root / "runs")},
    }
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("override, expected", [
    ("--trainer.max_epochs=two", "trainer.max_epochs: expected int or null, got 'two'"),
    ("--model.lr=fast", "model.lr: expected float, got 'fast'"),
    ("--data.lead_hours=6h", "data.lead_hours: expected int, got '6h'"),
    ("--model.network.embed_dim=[1]", "model.network.embed_dim: expected int or null, got"),
    ("--model.loss_kind=huber", "model.loss_kind: expected one of 'mae', 'mse', got 'huber'"),
    ("--model.network.preset=tiny", "model.network.preset: expected one of 'pangu'"),
    ("--model.network.patch=[2,2]", "model.network.patch: expected tuple[int, int, int]"),
    ("--trainer.max_epoch=3", "trainer.max_epoch: unknown key (value '3'); did you mean "
                              "'trainer.max_epochs'?"),
    ("--model.learning_rate=1", "model.learning_rate: unknown key"),
    ("--model.network.embedd=3", "model.network.embedd: unknown key (value '3'); did you mean "
                                 "'model.network.embed_dim'?"),
    ("--optim.lr=1", "optim.lr: unknown key (value '1'); the experiment takes: ckpt_path, data"),
    ("--model.contract=3", "model.contract: not an experiment key"),
    ("--model.schedule=time", "model.schedule=time needs trainer.max_time"),
])
def test_a_bad_override_is_one_line_and_exit_status_2(experiment, capsys, override, expected):
    assert main(["fit", "--config", str(experiment), override]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert captured.err.startswith("geoformer fit: ") and expected in captured.err, captured.err


@pytest.mark.parametrize("section, expected", [
    ({"trainer": {"max_epochs": "two"}}, "trainer.max_epochs: expected int or null, got 'two'"),
    ({"model": {"lr": "fast"}}, "model.lr: expected float, got 'fast'"),
    ({"model": {"loss_weights": {"geopotential": "heavy"}}},
     "model.loss_weights: expected dict[str, float] or null"),
    ({"trainer": {"max_epoch": 3}}, "trainer.max_epoch: unknown key; did you mean"),
    ({"model": {"network": {"embedd": 3}}}, "model.network.embedd: unknown key"),
    ({"data": {"bach_size": 3}}, "data.bach_size: unknown key; did you mean 'data.batch_size'?"),
    ({"optim": {"lr": 1e-3}}, "optim.lr: unknown key; the experiment takes: ckpt_path"),
])
def test_a_bad_key_in_the_yaml_is_one_line_and_exit_status_2(experiment, tmp_path, capsys,
                                                              section, expected):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(section))
    assert main(["fit", "--config", str(experiment), "--config", str(extra)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_check_their_arguments_too(experiment, capsys, command):
    assert main([command, "--config", str(experiment), "--trainer.max_epochs=two"]) == 2
    assert capsys.readouterr().err == (f"geoformer {command}: trainer.max_epochs: expected int "
                                       "or null, got 'two'\n")


def test_print_config_shows_the_typed_experiment_without_the_linked_contract(experiment,
                                                                             capsys):
    assert main(["fit", "--config", str(experiment), "--data.lead_hours=12",
                 "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["lead_hours"] == 12 and printed["model"]["lr"] == 0.001
    assert printed["model"]["network"]["embed_dim"] == 8
    assert printed["seed_everything"] == 0 and printed["trainer"]["max_epochs"] == 1
    assert not {"contract", "constants", "schedule_seconds"} & set(printed["model"])


def test_time_budget_links_max_time_to_the_schedule():
    assert max_time_seconds("00:01:02:03") == 3723.0
    assert max_time_seconds({"minutes": 9}) == 540.0
    with pytest.raises(ConfigError, match="DD:HH:MM:SS"):
        max_time_seconds("9 minutes")
    assert schedule_seconds("steps", "00:00:09:00") is None
    assert schedule_seconds("time", "00:00:09:00") == 540.0
    with pytest.raises(ConfigError, match="needs trainer.max_time"):
        schedule_seconds("time", None)


@pytest.mark.slow
def test_fit_links_the_data_contract_and_exports_a_weights_only_checkpoint(experiment, capsys):
    args = ["fit", "--config", str(experiment), "--data.latitude_input=true",
            "--model.schedule=time", "--trainer.max_time=00:00:05:00",
            "--trainer.limit_train_batches=2"]
    assert main(args) == 0
    final = experiment.parent / "runs" / "geoformer-6h" / "geoformer-6h.ckpt"
    assert f"checkpoint: {final}" in capsys.readouterr().out
    hp = torch.load(final, weights_only=True)["hyper_parameters"]
    contract = hp["contract"]
    assert contract["lead_hours"] == 6 and contract["constant_vars"][-1] == "sin_latitude"
    assert contract["levels"] == [1000, 850, 500] and len(contract["latitude"]) == 8
    assert hp["schedule_seconds"] == 300.0 and hp["network"]["embed_dim"] == 8
    assert hp["network"]["drop_path"] == 0.1  # the preset's value, written out
    module = load_module(final)
    assert module.net.constants.shape == (4, 8, 16)
    assert (experiment.parent / "runs" / "geoformer-6h" / "config.yaml").exists()

    # init_from: the same network starts from those weights; resume with --ckpt_path.
    assert main(["fit", "--config", str(experiment), "--data.latitude_input=true",
                 "--trainer.limit_train_batches=1", "--output.name=tuned",
                 f"--init_from={final}"]) == 0
    assert main(["fit", "--config", str(experiment), "--init_from", str(final)]) == 2
    assert "run folder" in capsys.readouterr().err  # geoformer-6h holds the first run
    assert main(["fit", "--config", str(experiment), "--init_from", str(final),
                 "--overwrite"]) == 2
    assert "cannot fine-tune" in capsys.readouterr().err
    last = experiment.parent / "runs" / "geoformer-6h" / "checkpoints" / "last.ckpt"
    assert main(["validate", "--config", str(experiment), "--data.latitude_input=true",
                 f"--ckpt_path={last}"]) == 0
    assert (experiment.parent / "runs" / "geoformer-6h" / "validate" / "metrics.csv").exists()


def test_a_missing_required_key_names_it(tmp_path, capsys):
    (tmp_path / "partial.yaml").write_text("model: {lr: 1.0e-3}\n")
    assert main(["fit", "--config", str(tmp_path / "partial.yaml")]) == 2
    assert capsys.readouterr().err == ("geoformer fit: the following arguments are required: "
                                       "data.store, data.lead_hours, data.train, data.val\n")
