"""experiments/geoformer/tune_rollout.py refuses bad arguments in one line, exit 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "geoformer" / "tune_rollout.py"


def _earlier(tmp: Path) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "old.txt").write_text("earlier")
    return ["--output", str(tmp / "out")]


@pytest.mark.parametrize("args, message", [
    (lambda tmp: ["--init", str(tmp / "missing.ckpt")], "--init: expected a checkpoint file"),
    (lambda tmp: ["--train-steps", "0"], "expected positive integers"),
    (lambda tmp: ["--lr", "0"], "--lr: expected a positive learning rate, found 0.0"),
    (_earlier, "holds files of an earlier run; pass --overwrite"),
    (lambda tmp: ["--fit-arg=model.lr"], "--fit-arg: expected --key=value, found ['model.lr']"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), *args(tmp_path)], capture_output=True,
                          text=True)
    lines = [line for line in done.stderr.splitlines() if "Warning" not in line]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("tune_rollout.py: ") and message in lines[0]
    assert [p.name for p in tmp_path.rglob("*")] in ([], ["out", "old.txt"])


def test_an_unknown_fit_argument_is_one_line_before_any_work(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--fit-arg=--model.bogus=1",
                           "--output", str(out)], capture_output=True, text=True,
                          env={**os.environ, "SCIFORECAST_CACHE": str(tmp_path / "cache")})
    lines = [line for line in done.stderr.splitlines() if "Warning" not in line]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "model.bogus: unknown key" in lines[0]
    assert not out.exists() and not (tmp_path / "cache").exists()  # no store was built


TRIAL = SCRIPT.with_name("trial_lead_model.py")


@pytest.mark.parametrize("args, message", [
    (lambda tmp: ["--train-steps", "0"], "--train-steps: expected a positive integer, found 0"),
    (_earlier, "holds files of an earlier run; pass --overwrite"),
    (lambda tmp: ["--fit-arg=model.lr"], "--fit-arg: expected --key=value, found ['model.lr']"),
])
def test_the_lead_model_trial_refuses_bad_arguments_in_one_line(args, message, tmp_path):
    done = subprocess.run([sys.executable, str(TRIAL), *args(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if "Warning" not in line]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("trial_lead_model.py: ") and message in lines[0]
    assert [p.name for p in tmp_path.rglob("*")] in ([], ["out", "old.txt"])
