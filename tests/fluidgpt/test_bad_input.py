"""Bad input through the ``fluidgpt`` command line: one line on stderr naming the problem,
exit status 2, no traceback, and nothing left at the output path (an existing output kept
as it was).

Each case builds its files in ``tmp_path`` and returns the arguments, the strings the line
must hold and the output path that must not appear; the predict cases share one GPT trained
for an epoch on the mock dataset.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fluidgpt import compare as C
from fluidgpt.cli import main
from tests.conftest import Payload
from tests.fluidgpt.test_compare import tiny_experiment
from tests.fluidgpt.test_predict import _train

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments" / "fluidgpt"
CASES: dict = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


@pytest.fixture(scope="module")
def gpt(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bad_input")
    config = tiny_experiment(tmp)
    _train(config, C.load_data(config), "gpt", {}, tmp / "gpt.ckpt")
    return tmp / "gpt.ckpt"


# ------------------------------------------------------------------------ track tables
COLUMNS = {"case": "Run", "particle": "Particle ID", "time": "Time [s]", "x": "X [mm]",
           "y": "Y [mm]", "z": "Z [mm]"}


def _rows(cases=("a", "b"), particles=(1, 2)) -> pd.DataFrame:
    """Two runs of two particles, three samples each; run b 100 mm along x from run a."""
    return pd.DataFrame([{"Run": c, "Particle ID": p, "Time [s]": t,
                          "X [mm]": 10.0 * k + p + 100.0 * i, "Y [mm]": 2.0 * k, "Z [mm]": 5.0}
                         for i, c in enumerate(cases) for p in particles
                         for k, t in enumerate((0.0, 0.01, 0.02))])


def _table(tmp: Path, rows: pd.DataFrame | str | None = None, columns=COLUMNS,
           conditions: pd.DataFrame | None = None, name: str = "tracks.csv"):
    """`fluidgpt dataset table` over ``rows`` (a frame, or the file's text)."""
    path = tmp / name
    rows = _rows() if rows is None else rows
    if isinstance(rows, str):
        path.write_text(rows)
    else:
        rows.to_csv(path, index=False)
    conditions = pd.DataFrame({"case": ["a", "b"], "main_inlet_speed": [8.0, 12.0],
                               "restitution": [0.8, 0.9]}) if conditions is None else conditions
    conditions.to_csv(tmp / "cases.csv", index=False)
    argv = ["dataset", "table", "--table", str(path), "--conditions-file",
            str(tmp / "cases.csv"), "--steps", "3", "--interval", "0.01", "--diameter",
            "5e-5", "--output", str(tmp / "out.zarr")]
    for canonical, header in columns.items():
        argv += ["--column", f"{canonical}={header}"]
    return argv, tmp / "out.zarr"


@case
def conflicting_duplicate_rows(tmp, gpt):
    rows = _rows()
    extra = rows.iloc[[1]].assign(**{"X [mm]": 99.0})
    argv, out = _table(tmp, pd.concat([rows, extra]))
    return argv, ["tracks.csv", "conflicting duplicate rows", "case='a', particle=1, "
                  "time=0.01", "11.0 vs 99.0"], out


@case
def several_runs_without_a_case_column(tmp, gpt):
    argv, out = _table(tmp, columns={k: v for k, v in COLUMNS.items() if k != "case"})
    return argv, ["tracks.csv", "particle=1, time=0.0", "1.0 vs 101.0",
                  "needs a case column"], out


@case
def particles_missing_from_a_case(tmp, gpt):
    rows = _rows()
    argv, out = _table(tmp, rows[~((rows["Run"] == "b") & (rows["Particle ID"] == 2))])
    return argv, ["tracks.csv", "case 'b' lacks particles [2]"], out


@case
def unknown_unit_in_a_header(tmp, gpt):
    argv, out = _table(tmp, _rows().rename(columns={"X [mm]": "X [furlong]"}),
                       {**COLUMNS, "x": "X [furlong]"})
    return argv, ["tracks.csv", "'X [furlong]'", "expected a length unit", "'furlong'"], out


@case
def unit_of_another_quantity(tmp, gpt):
    argv, out = _table(tmp, _rows().rename(columns={"Time [s]": "Time [mm]"}),
                       {**COLUMNS, "time": "Time [mm]"})
    return argv, ["'Time [mm]'", "expected a time unit", "found 'mm'"], out


@case
def empty_csv(tmp, gpt):
    argv, out = _table(tmp, "")
    return argv, ["tracks.csv: empty file"], out


@case
def csv_with_a_header_only(tmp, gpt):
    argv, out = _table(tmp, "Run,Particle ID,Time [s],X [mm],Y [mm],Z [mm]\n")
    return argv, ["tracks.csv: no rows"], out


@case
def truncated_csv(tmp, gpt):
    text = _rows().to_csv(index=False)
    argv, out = _table(tmp, text[:text.rstrip().rfind(",") - 2])  # the last line cut short
    return argv, ["tracks.csv: NaN or inf in columns", "data row 12"], out


@case
def nan_in_a_table(tmp, gpt):
    argv, out = _table(tmp, _rows().assign(**{"Y [mm]": [0.0] * 4 + [np.nan] + [0.0] * 7}))
    return argv, ["tracks.csv: NaN or inf in columns ['y']", "data row 5"], out


@case
def inf_in_a_table(tmp, gpt):
    argv, out = _table(tmp, _rows().assign(**{"Z [mm]": [np.inf] + [5.0] * 11}))
    return argv, ["tracks.csv: NaN or inf in columns ['z']", "data row 1"], out


@case
def text_in_a_numeric_column(tmp, gpt):
    argv, out = _table(tmp, _rows().assign(**{"X [mm]": ["1.0"] * 3 + ["abc"] + ["2"] * 8}))
    return argv, ["tracks.csv: column 'x': expected numbers, found 'abc'"], out


@case
def mapped_column_not_in_the_table(tmp, gpt):
    argv, out = _table(tmp, columns={**COLUMNS, "x": "X [km]"})
    return argv, ["tracks.csv: columns ['X [km]'] not found"], out


@case
def unknown_canonical_column(tmp, gpt):
    argv, out = _table(tmp, columns={**COLUMNS, "colour": "Run"})
    return argv, ["unknown canonical names ['colour']"], out


@case
def no_such_table(tmp, gpt):
    argv, out = _table(tmp)
    argv[argv.index("--table") + 1] = str(tmp / "none.csv")
    return argv, ["none.csv: no such track table"], out


@case
def unknown_table_format(tmp, gpt):
    argv, out = _table(tmp, name="tracks.xlsx")
    return argv, ["tracks.xlsx: unknown table format '.xlsx'"], out


@case
def conditions_file_lacks_a_case(tmp, gpt):
    argv, out = _table(tmp, conditions=pd.DataFrame({"case": ["a"], "restitution": [0.8]}))
    return argv, ["cases.csv", "missing ['b']"], out


@case
def impossible_condition_in_a_table_dataset(tmp, gpt):
    argv, out = _table(tmp, conditions=pd.DataFrame({"case": ["a", "b"],
                                                     "restitution": [0.8, 1.5]}))
    return argv, ["cases.csv: condition restitution: expected a value in [0, 1] (1), found "
                  "1.5 (case 'b')"], out


# ----------------------------------------------------------------------------- predict
def _predict(tmp, gpt, checkpoint=None, **conditions):
    values = {"main_inlet_speed": 9.0, "side_inlet_speed": 20.0, "particle_diameter": 5e-5,
              "restitution": 0.8, **conditions}  # the mock's density is constant: not read
    text = ",".join(f"{k}={v}" for k, v in values.items() if v is not None)
    out = tmp / "pred.zarr"
    return ["predict", "--checkpoint", str(checkpoint or gpt()), "--conditions", text,
            "--output", str(out)], out


@case
def negative_speed(tmp, gpt):
    argv, out = _predict(tmp, gpt, main_inlet_speed=-9)
    return argv, ["condition main_inlet_speed: expected >= 0 m s-1, found -9"], out


@case
def zero_density(tmp, gpt):
    argv, out = _predict(tmp, gpt, particle_density=0)
    return argv, ["condition particle_density: expected > 0 kg m-3, found 0"], out


@case
def negative_diameter(tmp, gpt):
    argv, out = _predict(tmp, gpt, particle_diameter=-5e-5)
    return argv, ["condition particle_diameter: expected > 0 m, found -5e-05"], out


@case
def restitution_above_one(tmp, gpt):
    argv, out = _predict(tmp, gpt, restitution=1.2)
    return argv, ["condition restitution: expected a value in [0, 1] (1), found 1.2"], out


@case
def nan_condition(tmp, gpt):
    argv, out = _predict(tmp, gpt, restitution="nan")
    return argv, ["condition restitution: expected a finite number, found nan"], out


@case
def condition_given_twice(tmp, gpt):
    argv, out = _predict(tmp, gpt)
    argv[argv.index("--conditions") + 1] += ",restitution=0.7"
    return argv, ["condition 'restitution': given twice"], out


@case
def missing_condition(tmp, gpt):
    argv, out = _predict(tmp, gpt, restitution=None)
    return argv, ["missing ['restitution']"], out


@case
def conditions_file_not_numeric(tmp, gpt):
    (tmp / "c.csv").write_text("main_inlet_speed,restitution\nfast,0.8\n")
    argv, out = _predict(tmp, gpt)
    i = argv.index("--conditions")
    argv[i:i + 2] = ["--conditions-file", str(tmp / "c.csv")]
    return argv, ["c.csv: condition 'main_inlet_speed': expected numbers, found 'fast'"], out


@case
def random_bytes_checkpoint(tmp, gpt):
    (tmp / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    argv, out = _predict(tmp, gpt, tmp / "random.ckpt")
    return argv, ["random.ckpt: not a fluidgpt checkpoint"], out


@case
def checkpoint_carrying_a_pickle_payload(tmp, gpt):
    torch.save({"state_dict": Payload(tmp / "ran")}, tmp / "evil.ckpt")
    argv, out = _predict(tmp, gpt, tmp / "evil.ckpt")
    return argv, ["evil.ckpt: not a fluidgpt checkpoint: it holds a Python object",
                  "system", "refused unread"], out


@case
def plain_pickle_payload(tmp, gpt):
    (tmp / "evil.ckpt").write_bytes(pickle.dumps(Payload(tmp / "ran"), protocol=2))
    argv, out = _predict(tmp, gpt, tmp / "evil.ckpt")
    return argv, ["evil.ckpt: not a fluidgpt checkpoint"], out


@case
def geoformer_checkpoint(tmp, gpt):
    torch.save({"epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.5.0",
                "state_dict": {"model.patch_embed.proj.weight": torch.zeros(8, 5, 2, 2)},
                "hyper_parameters": {"config": {"embed_dim": 8}}}, tmp / "geo.ckpt")
    argv, out = _predict(tmp, gpt, tmp / "geo.ckpt")
    return argv, ["geo.ckpt is not a fluidgpt checkpoint (module kind None"], out


@case
def truncated_checkpoint(tmp, gpt):
    (tmp / "cut.ckpt").write_bytes(gpt().read_bytes()[:2000])
    argv, out = _predict(tmp, gpt, tmp / "cut.ckpt")
    return argv, ["cut.ckpt: not a fluidgpt checkpoint"], out


@case
def existing_prediction(tmp, gpt):
    argv, out = _predict(tmp, gpt)
    out.mkdir()
    (out / "keep").write_text("earlier")
    return argv, [f"{out} exists; pass --overwrite"], out


# ------------------------------------------------------------ experiments and outputs
@case
def broken_yaml(tmp, gpt):
    (tmp / "broken.yaml").write_text("model: {class_path: [\n  x: 1\n")
    return (["fit", "--config", str(tmp / "broken.yaml"), f"--output={tmp / 'run'}"],
            ["broken.yaml: not valid YAML (line 3, column 1"], tmp / "run")


@case
def broken_yaml_in_compare(tmp, gpt):
    (tmp / "broken.yaml").write_text("budget:\n  epochs: 3\n    seconds: 2\n")
    return (["compare", "--config", str(tmp / "broken.yaml"), f"--output={tmp / 'c.csv'}"],
            ["broken.yaml: not valid YAML (line 3"], tmp / "c.csv")


@case
def binary_config(tmp, gpt):
    (tmp / "cfg.yaml").write_bytes(b"\x80\x81\xfe\xff" * 16)
    return (["fit", "--config", str(tmp / "cfg.yaml"), f"--output={tmp / 'run'}"],
            ["cfg.yaml: expected a YAML text file"], tmp / "run")


@case
def unknown_config_key(tmp, gpt):
    (tmp / "exp.yaml").write_text("model:\n  init_args:\n    model: {d_modle: 64}\n")
    return (["fit", "--config", str(EXPERIMENTS / "fit.yaml"), "--config", str(tmp / "exp.yaml"),
             f"--output={tmp / 'run'}"], ["model.model.d_modle: unknown key"], tmp / "run")


@case
def wrong_type_at_depth(tmp, gpt):
    return (["compare", "--config", str(EXPERIMENTS / "demo.yaml"),
             "--models.gpt.train.lr=fast", f"--output={tmp / 'c.csv'}"],
            ["models.gpt.train.lr: expected float, found 'fast'"], tmp / "c.csv")


@case
def fit_into_a_non_empty_output(tmp, gpt):
    (tmp / "run").mkdir()
    (tmp / "run" / "gpt.ckpt").write_text("earlier")
    return (["fit", "--config", str(EXPERIMENTS / "fit.yaml"), f"--output={tmp / 'run'}"],
            [f"output {tmp / 'run'} exists and is not an empty directory", "--overwrite"],
            tmp / "run")


@case
def fit_on_a_missing_dataset(tmp, gpt):
    return (["fit", "--config", str(EXPERIMENTS / "fit.yaml"),
             f"--data.path={tmp / 'none.zarr'}", f"--output={tmp / 'run'}"],
            ["none.zarr: no such dataset"], tmp / "run")


@case
def scoring_a_random_checkpoint(tmp, gpt):
    (tmp / "random.ckpt").write_bytes(np.random.default_rng(1).bytes(4096))
    return (["test", "--config", str(EXPERIMENTS / "fit.yaml"), "--ckpt_path",
             str(tmp / "random.ckpt"), f"--output={tmp / 'run'}"],
            ["random.ckpt: not a fluidgpt checkpoint"], tmp / "run")


@case
def compare_over_an_existing_table(tmp, gpt):
    (tmp / "c.csv").write_text("earlier")
    return (["compare", "--config", str(EXPERIMENTS / "demo.yaml"), f"--output={tmp / 'c.csv'}"],
            [f"{tmp / 'c.csv'} exists; pass --overwrite"], tmp / "c.csv")


@case
def demo_over_an_existing_table(tmp, gpt):
    (tmp / "demo").mkdir()
    (tmp / "demo" / "compare.csv").write_text("earlier")
    return (["demo", "--output", str(tmp / "demo")], ["compare.csv exists; pass --overwrite"],
            tmp / "demo" / "compare.csv")


@case
def evaluate_over_an_existing_table(tmp, gpt):
    (tmp / "scores.csv").write_text("earlier")
    return (["evaluate", "--checkpoint", str(gpt()), "--output", str(tmp / "scores.csv")],
            ["scores.csv exists; pass --overwrite"], tmp / "scores.csv")


@case
def evaluate_a_random_checkpoint(tmp, gpt):
    (tmp / "random.ckpt").write_bytes(np.random.default_rng(2).bytes(4096))
    return (["evaluate", "--checkpoint", str(tmp / "random.ckpt"), "--output",
             str(tmp / "scores.csv")], ["random.ckpt: not a fluidgpt checkpoint"],
            tmp / "scores.csv")


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): f.read_bytes() for f in files if f.is_file()}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_exit_2(name, tmp_path, capsys, request):
    argv, must, output = CASES[name](tmp_path, lambda: request.getfixturevalue("gpt"))
    before = _snapshot(output)
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith(f"fluidgpt {argv[0]}: error: "), err
    assert "Traceback" not in err
    for text in must:
        assert text in lines[0], lines[0]
    assert _snapshot(output) == before  # nothing new; an existing output as it was
    assert not (tmp_path / "ran").exists()  # no payload ran
    hidden = [p.name for p in tmp_path.rglob(".*") if p.is_file() or p.is_dir()]
    assert not hidden, hidden  # no temporary file left behind


def test_debug_shows_the_traceback(tmp_path):
    argv, _, _ = CASES["random_bytes_checkpoint"](tmp_path, None)
    with pytest.raises(ValueError, match="not a fluidgpt checkpoint"):
        main(["--debug", *argv])
    with pytest.raises(ValueError, match="not a fluidgpt checkpoint"):
        main([*argv, "--debug"])


def test_one_line_on_the_real_stderr(tmp_path):
    """The installed entry point, in a fresh process: no warning or log line around it."""
    argv, must, output = CASES["restitution_above_one"](tmp_path,
                                                        lambda: tmp_path / "none.ckpt")
    done = subprocess.run([sys.executable, "-m", "fluidgpt.cli", *argv], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"fluidgpt predict: error: {tmp_path / 'none.ckpt'}: no such checkpoint"]
    assert not output.exists()


def test_a_failed_fit_leaves_nothing_in_a_new_or_empty_output(tmp_path, capsys, monkeypatch):
    """A fit that fails after it started writing (here: its second stage) removes what it
    wrote; --overwrite (bare) lets it write into a folder that is not empty."""
    import fluidgpt.fitcli as F
    from tests.fluidgpt.test_cli import FIT_TINY

    def refused(*args, **kwargs):
        raise ValueError("stage two refused (test)")

    monkeypatch.setattr(F, "fit_stage_two", refused)
    tiny_experiment(tmp_path)
    run = tmp_path / "run"
    argv = ["fit", "--config", str(EXPERIMENTS / "fit.yaml"),
            f"--data.path={tmp_path / 'mock.nc'}", "--data.split.kind=block", *FIT_TINY,
            f"--output={run}"]
    assert main(argv) == 2
    assert "stage two refused (test)" in capsys.readouterr().err
    assert not run.exists()
    run.mkdir()
    assert main(argv) == 2 and list(run.iterdir()) == []
    capsys.readouterr()
    (run / "notes.txt").write_text("mine")
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 2
    assert "stage two refused" in capsys.readouterr().err
    assert (run / "notes.txt").read_text() == "mine" and (run / "gpt.ckpt").is_file()


def test_a_multi_line_message_is_joined_into_one_line(capsys, monkeypatch):
    import fluidgpt.cli as cli
    from fluidgpt.cli import main

    def raise_two_lines(args):
        raise ValueError("x: first\n  second")

    monkeypatch.setattr(cli, "cmd_predict", raise_two_lines)
    code = main(["predict", "--checkpoint", "a.ckpt", "--conditions", "a=1", "--output",
                 "p.zarr"])
    assert code == 2
    assert capsys.readouterr().err == "fluidgpt predict: error: x: first second\n"
