"""The experiment schema: the shipped YAMLs parse and run, `fluidgpt fit` and `fluidgpt
compare` read one model section alike, and every refused key or value is one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fluidgpt import compare as C
from fluidgpt.casetensors import case_tensors
from fluidgpt.cli import main
from fluidgpt.fitcli import FluidCLI
from fluidgpt.parsing import one_line
from fluidgpt.schema import save_dataset
from tests.fluidgpt.conftest import MOCK_GRID, mock_trajectories

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments" / "fluidgpt"
COMPARE_YAMLS = ["demo", "compare", "paper"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mock_path(tmp_path) -> Path:
    """The mock dataset with 36 cases and 40 wall faces: room for the shipped erosion
    networks' 20 output modes."""
    path = tmp_path / "mock.nc"
    grid = {**MOCK_GRID, "restitution": (0.6, 0.75, 0.9)}
    save_dataset(mock_trajectories(n_faces=40, grid=grid), path)
    return path


# ------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("name", COMPARE_YAMLS)
def test_compare_yaml_prints_a_config_that_parses_back_the_same(name, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--config", str(EXPERIMENTS / f"{name}.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed.pop("plots") is True  # the command's own options, not the experiment's
    assert printed.pop("overwrite") is False
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(printed))
    assert C.load_experiment(path) == C.load_experiment(EXPERIMENTS / f"{name}.yaml")


def test_fit_yaml_prints_its_config(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(EXPERIMENTS / "fit.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].endswith("GPTModule")
    assert printed["trainer"]["max_epochs"] == 320 and printed["data"]["split"]["n_folds"] == 2
    assert "contract" not in printed["model"]["init_args"]  # linked from the data, not written


def test_fit_yaml_takes_the_demo_gpt_section_as_it_is():
    """One model's section is the same in fit.yaml and demo.yaml: the same schema."""
    fit = yaml.safe_load((EXPERIMENTS / "fit.yaml").read_text())
    demo = C.load_experiment(EXPERIMENTS / "demo.yaml")
    assert fit["model"]["init_args"] == demo.models["gpt"]["init_args"]
    assert fit["erosion"]["model"]["init_args"] == demo.erosion.model["init_args"]


# --------------------------------------------------------------------------- one line
BAD_FIT = [  # (argument or YAML, key, expected type, value)
    ("--trainer.max_epochs=two", "trainer.max_epochs", "expected int", "'two'"),
    ("--model.train.lr=fast", "model.train.lr", "expected float", "'fast'"),
    ("--model.model.d_model=1.5", "model.model.d_model", "expected int", "'1.5'"),
    ("--model.model.preset=papr", "model.model.preset", "expected one of 'paper'", "'papr'"),
    ("--model.train.betas=[0.9,x]", "model.train.betas", "expected float", "'x'"),
    ("--data.split.n_folds=x", "data.split.n_folds", "expected int", "'x'"),
    ("--erosion.model.model.output_modes=x", "erosion.model.model.output_modes",
     "expected int", "'x'"),
    ("--model.model.d_modle=3", "model.model.d_modle", "unknown key", ""),
    ("--model.train.lrr=1", "model.train.lrr", "unknown key", ""),
    ("--trainer.max_epoch=3", "trainer.max_epoch", "unknown key", ""),
    ("--data.split.kindd=block", "data.split.kindd", "unknown key", ""),
    ("--model=fluidgpt.module.Nothing", "model", "expected a class path", "Nothing"),
    ("trainer: {max_epochs: two}", "trainer.max_epochs", "expected int", "'two'"),
    ("model: {class_path: fluidgpt.module.GPTModule, init_args: {train: {lr: fast}}}",
     "model.train.lr", "expected float", "'fast'"),
    ("model: {init_args: {model: {n_layer: four}}}", "model.model.n_layer", "expected int",
     "'four'"),
    ("model: {init_args: {model: {d_modle: 3}}}", "model.model.d_modle", "unknown key", ""),
    ("data: {split: {kindd: block}}", "data.split.kindd", "unknown key", ""),
]
BAD_COMPARE = [
    ("--budget.epochs=two", "budget.epochs", "expected int", "'two'"),
    ("--models.gpt.train.lr=fast", "models.gpt.train.lr", "expected float", "'fast'"),
    ("--models.lstm.model.hidden=x", "models.lstm.model.hidden", "expected int", "'x'"),
    ("--erosion.model.train.batch_size=x", "erosion.model.train.batch_size", "expected int",
     "'x'"),
    ("--compare.models=[gpt,podd]", "compare.models", "expected one of", "'podd'"),
    ("--runtime.workers=x", "runtime.workers", "expected int", "'x'"),
    ("--budget.secs=1", "budget.secs", "unknown key", ""),
    ("--models.gpt.model.d_modle=64", "models.gpt.model.d_modle", "unknown key", ""),
    ("--models.gpt=fluidgpt.module.SequenceModule", "models.gpt",
     "expected a subclass of GPTModule", "SequenceModule"),
    ("split: {n_folds: three}", "split.n_folds", "expected int", "'three'"),
    ("models: {gpt: {init_args: {model: {n_layer: four}}}}", "models.gpt.model.n_layer",
     "expected int", "'four'"),
    ("models: {bilstm: {init_args: {train: {lrr: 1}}}}", "models.bilstm.train.lrr",
     "unknown key", ""),
    ("budget: {secnds: 3}", "budget.secnds", "unknown key", ""),
    ("modelz: {gpt: 1}", "modelz.gpt", "unknown key", ""),
]


def _argv(tmp_path: Path, bad: str) -> list[str]:
    if bad.startswith("--"):
        return [bad]
    path = tmp_path / "bad.yaml"
    path.write_text(bad + "\n")
    return ["--config", str(path)]


def _assert_one_line(capsys, command, argv, key, expected, value):
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"fluidgpt {command}: error: {key}: "), line
    assert expected in line and value in line, line
    assert "Traceback" not in err


@pytest.mark.parametrize("bad, key, expected, value", BAD_FIT, ids=[b[0] for b in BAD_FIT])
def test_fit_refuses_a_bad_key_in_one_line(bad, key, expected, value, capsys, tmp_path):
    argv = ["fit", "--config", str(EXPERIMENTS / "fit.yaml"), *_argv(tmp_path, bad)]
    _assert_one_line(capsys, "fit", argv, key, expected, value)


@pytest.mark.parametrize("bad, key, expected, value", BAD_COMPARE,
                         ids=[b[0] for b in BAD_COMPARE])
def test_compare_refuses_a_bad_key_in_one_line(bad, key, expected, value, capsys, tmp_path):
    argv = ["compare", "--config", str(EXPERIMENTS / "demo.yaml"), *_argv(tmp_path, bad),
            "--output", str(tmp_path / "x.csv")]
    _assert_one_line(capsys, "compare", argv, key, expected, value)


def test_demo_refuses_a_bad_override_in_one_line(capsys):
    _assert_one_line(capsys, "demo", ["demo", "--seed=one"], "seed", "expected int", "'one'")


def test_one_line_keeps_what_it_does_not_know():
    assert one_line("something odd\n  happened") == "something odd happened"


# ------------------------------------------------------------------------- small runs
@pytest.mark.parametrize("name", COMPARE_YAMLS)
def test_compare_yaml_runs_an_epoch_on_the_mock_data(name, capsys, tmp_path, mock_path):
    out = tmp_path / "compare.csv"
    code, _, err = run(capsys, "compare", "--config", str(EXPERIMENTS / f"{name}.yaml"),
                       f"--data.path={mock_path}", "--budget.epochs=1",
                       "--budget.model_epochs=null", "--budget.erosion_epochs=1",
                       "--split.n_folds=2",
                       "--runtime.workers=1", "--no_plots", "--output", str(out))
    assert code == 0, err
    table = pd.read_csv(out)
    config = C.load_experiment(EXPERIMENTS / f"{name}.yaml")
    assert set(config.compare.models) <= set(table["model"])
    assert set(table["split"]) == set(config.split.kinds)


def test_fit_yaml_runs_an_epoch_on_the_mock_data(capsys, tmp_path, mock_path):
    code, out, err = run(capsys, "fit", "--config", str(EXPERIMENTS / "fit.yaml"),
                         f"--data.path={mock_path}", "--trainer.max_epochs=1",
                         "--erosion.epochs=1", "--runtime.workers=1",
                         f"--output={tmp_path / 'fit'}")
    assert code == 0, err
    for name in ("gpt.ckpt", "gpt_fold0.ckpt", "gpt_fold1.ckpt", "erosion.ckpt"):
        ckpt = torch.load(tmp_path / "fit" / name, weights_only=True)
        assert set(ckpt["hyper_parameters"]) == {"model", "train", "scalers"}
    assert (tmp_path / "fit" / "logs" / "interior" / "gpt_final" / "config.yaml").is_file()


def test_fit_trains_what_compare_trains_from_the_same_section(tmp_path, mock_path):
    """The model of `fluidgpt fit` is compare's final run of that section: the same sizes
    from the data, the same seed, the same weights after training."""
    section = ["--model.model={preset: tiny}", "--model.train.batch_size=4"]
    cli = FluidCLI(args=["fit", "--config", str(EXPERIMENTS / "fit.yaml"),
                         f"--data.path={mock_path}", "--data.split.kind=block",
                         "--trainer.max_epochs=2", "--erosion.model=null", *section,
                         f"--output={tmp_path / 'fit'}"])
    config = C.load_experiment(EXPERIMENTS / "demo.yaml", [
        f"--data.path={mock_path}", "--budget.epochs=2", "--budget.model_epochs={gpt: 2}",
        "--split.n_folds=2", *(s.replace("--model.", "--models.gpt.") for s in section)])
    ds = C.load_data(config)
    data = case_tensors(ds, config.data.conditions)
    job, = C.trajectory_jobs("gpt", config, ds, data, C.split_of(ds, config, "block"), False)
    assert job.section["init_args"] == {
        k: v for k, v in cli.config.fit.model.init_args.as_dict().items() if k != "contract"}
    ours, theirs = cli.model.state_dict(), C.run_job(job).module.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k])
