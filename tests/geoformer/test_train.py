"""Experiment files: defaults, overrides, unknown keys, numbers as YAML 1.1 reads them."""

import pytest

from geoformer.config import ConfigError
from geoformer.train import load_experiment

ESSENTIAL = ["data.store=x.zarr", "data.train=[2000-01-01, 2000-06-30]",
             "data.val=[2000-07-01, 2000-08-01]"]


def test_overrides_and_yaml_file_merge_over_the_defaults(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("optim: {lr: 2e-3}\ntrainer: {max_epochs: 3}\nmodel: {embed_dim: 32}\n")
    exp = load_experiment(path, [*ESSENTIAL, "trainer.max_epochs=5", "--data.lead_hours=6"])
    assert exp["optim"]["lr"] == 0.002 and isinstance(exp["optim"]["lr"], float)
    assert exp["trainer"]["max_epochs"] == 5 and exp["data"]["lead_hours"] == 6
    assert exp["model"] == {"preset": "small-5.625", "embed_dim": 32}
    assert exp["optim"]["weight_decay"] == 3e-6  # untouched default


def test_unknown_keys_and_missing_essentials_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown experiment key 'optim.learning_rate'"):
        load_experiment(None, [*ESSENTIAL, "optim.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"data.train must be given"):
        load_experiment(None, ["data.store=x.zarr"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_experiment(None, [*ESSENTIAL, "trainer.max_epochs"])


def test_time_schedule_needs_a_time_budget_and_reads_it():
    from geoformer.train import _schedule_seconds, max_time_seconds

    assert max_time_seconds("00:01:02:03") == 3723.0
    assert max_time_seconds({"minutes": 9}) == 540.0
    with pytest.raises(ConfigError, match="DD:HH:MM:SS"):
        max_time_seconds("9 minutes")
    exp = load_experiment(None, [*ESSENTIAL, "optim.schedule=time"])
    with pytest.raises(ConfigError, match="needs trainer.max_time"):
        _schedule_seconds(exp)
    exp = load_experiment(None, [*ESSENTIAL, "optim.schedule=time",
                                 "trainer.max_time=00:00:09:00"])
    assert _schedule_seconds(exp) == 540.0
    assert _schedule_seconds(load_experiment(None, ESSENTIAL)) is None
    with pytest.raises(ConfigError, match="'steps' or 'time'"):
        _schedule_seconds(load_experiment(None, [*ESSENTIAL, "optim.schedule=epochs"]))
