"""budget.model_epochs: a trajectory model's own epochs (chosen on validation), reaching
every one of its training runs; others keep budget.epochs; unknown models are refused."""

from __future__ import annotations

import pytest

from fluidgpt import compare as C
from fluidgpt.casetensors import case_tensors
from fluidgpt.config import ConfigError
from tests.fluidgpt.test_compare import tiny_experiment


def test_every_run_of_a_listed_model_gets_its_epochs(tmp_path):
    config = tiny_experiment(tmp_path, "--budget.model_epochs={gpt: 3}")
    ds = C.load_data(config)
    data = case_tensors(ds)
    split = C.split_of(ds, config, "interior")
    gpt = C.trajectory_jobs("gpt", config, ds, data, split, out_of_fold=True)
    lstm = C.trajectory_jobs("lstm", config, ds, data, split, out_of_fold=True)
    assert len(gpt) == split.n_folds + 1
    assert {job.epochs for job in gpt} == {3} and {job.epochs for job in lstm} == {2}


def test_budget_of_a_model():
    budget = C.BudgetSettings(epochs=40, model_epochs={"gpt": 320})
    assert budget.of(model="gpt") == (None, 320)
    assert budget.of(model="bilstm") == budget.of() == (None, 40)
    assert budget.of(erosion=True, model="gpt") == (None, 300)


@pytest.mark.parametrize("value, message", [
    ("{gtp: 3}", r"budget.model_epochs: 'gtp' is not a model of this experiment \(models: "
                 r"gpt, lstm, bilstm\)"),
    ("{gpt: 0}", r"budget.model_epochs.gpt must be a positive number or null, found 0"),
])
def test_a_wrong_entry_is_refused(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        tiny_experiment(tmp_path, f"--budget.model_epochs={value}")


def test_the_tuning_script_scores_each_model_at_each_epoch_budget(tmp_path):
    """tune.py --epochs: one trial per budget for each model, run for that many epochs."""
    import importlib.util

    import pandas as pd

    from tests.fluidgpt.test_cli import EXPERIMENTS

    spec = importlib.util.spec_from_file_location("tune", EXPERIMENTS / "tune.py")
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    out = tmp_path / "tune.csv"
    tune.main(["--config", str(EXPERIMENTS / "demo.yaml"), "--only", "lstm", "--workers", "1",
               "--output", str(out), "--budget.model_epochs={lstm: 9}",  # the trial's wins
               "--epochs", "1", "2"])
    table = pd.read_csv(out)
    assert list(table["model"]) == ["lstm", "lstm"] and list(table["epochs"]) == [1, 2]
    assert list(table["settings"]) == ["budget.epochs=1", "budget.epochs=2"]
