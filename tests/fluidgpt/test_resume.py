"""Crash safety of `fluidgpt fit`: a fit killed with SIGKILL mid-epoch resumes from
OUTPUT/checkpoints/last.ckpt and ends with the weights, optimiser state and step of an
uninterrupted fit; the shuffled order is the one the plain DataLoader drew."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fluidgpt.resume import training_loader
from fluidgpt.schema import save_dataset
from tests.fluidgpt.conftest import mock_trajectories

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
EPOCHS, PER_EPOCH = 4, 4  # 16 training cases of the block split, batches of 4


@pytest.mark.parametrize("n, batch", [(7, 2), (16, 4), (30, 16)])
def test_the_order_is_the_plain_shuffled_loaders(n, batch):
    plain = DataLoader(list(range(n)), batch_size=batch, shuffle=True,
                       generator=torch.Generator().manual_seed(3))
    ours = training_loader(list(range(n)), batch, seed=3)
    for _ in range(5):
        assert [int(i) for b in ours for i in b] == [int(i) for b in plain for i in b]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return save_dataset(mock_trajectories(), tmp_path_factory.mktemp("resume") / "mock.nc")


def _fit(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fluidgpt.cli", "fit", "--config",
            str(REPO / "experiments" / "fluidgpt" / "fit.yaml"), f"--data.path={data}",
            "--data.split.kind=block", f"--trainer.max_epochs={EPOCHS}",
            "--model.model={preset: tiny, dropout: 0.3}", "--model.train.batch_size=4",
            "--erosion.model=null", "--runtime.workers=1", "--checkpoint.every_n_steps=1",
            f"--output={out}", *extra]


def _kill_mid_epoch(argv: list[str], last: Path, timeout: float = 600.0) -> int:
    """Start a fit, SIGKILL it as soon as its last checkpoint is mid-epoch; its step."""
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout and proc.poll() is None:
            if last.exists():
                ckpt = torch.load(last, weights_only=True)
                done = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
                step = ckpt["global_step"]
                if done["completed"] % PER_EPOCH and 4 < step < EPOCHS * PER_EPOCH - 2:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return step
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pytest.fail(f"the fit ended (status {proc.returncode}) before it could be killed")


def test_a_fit_killed_mid_epoch_resumes_to_the_uninterrupted_weights(data, tmp_path):
    whole = subprocess.run(_fit(data, tmp_path / "whole"), env=ENV, capture_output=True,
                           text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    step = _kill_mid_epoch(_fit(data, tmp_path / "killed"), last)
    # resuming writes into the output it left: no --overwrite needed
    resumed = subprocess.run(_fit(data, tmp_path / "killed", f"--ckpt_path={last}"), env=ENV,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "whole" / "gpt.ckpt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "gpt.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == EPOCHS * PER_EPOCH, step
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), (name, step)
    moments = [(s["exp_avg"], t["exp_avg"]) for s, t in zip(
        a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values())]
    assert moments and all(torch.equal(x, y) for x, y in moments), step


def test_without_the_random_states_the_resumed_fit_differs(data, tmp_path, monkeypatch):
    """The test above can fail: dropout draws from the global state, so a resume that does
    not put it back ends elsewhere (checks the test's power, not a guarantee)."""
    from fluidgpt.fitcli import run_fit
    from fluidgpt.resume import RandomStates

    whole = _fit(data, tmp_path / "whole")[3:]
    run_fit(whole)
    monkeypatch.setattr(RandomStates, "load_state_dict", lambda self, state: None)
    cut = [a for a in _fit(data, tmp_path / "cut")[3:] if not a.startswith("--trainer.max")]
    run_fit([*cut, f"--trainer.max_epochs={EPOCHS}", "--trainer.max_steps=6"])
    run_fit([*cut, f"--trainer.max_epochs={EPOCHS}",
             f"--ckpt_path={tmp_path / 'cut' / 'checkpoints' / 'last.ckpt'}"])
    a = torch.load(tmp_path / "whole" / "gpt.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "gpt.ckpt", weights_only=True)["state_dict"]
    assert any(not torch.equal(v, b[k]) for k, v in a.items())


def test_last_ckpt_is_not_written_at_the_last_batch_of_an_epoch(data, tmp_path, monkeypatch):
    """There Lightning still counts the batch as unfinished, and a resume from it drifted
    (measured: killed after step 8 of 4-step epochs, other weights); the next batch saves."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from fluidgpt.fitcli import run_fit

    saved, original = [], ModelCheckpoint.on_train_batch_end

    def record(self, trainer, *args, **kwargs):
        saved.append(trainer.global_step)
        return original(self, trainer, *args, **kwargs)

    monkeypatch.setattr(ModelCheckpoint, "on_train_batch_end", record)
    run_fit(_fit(data, tmp_path / "fit")[3:])
    every = set(range(1, EPOCHS * PER_EPOCH + 1))
    assert set(saved) == every - {PER_EPOCH * k for k in range(1, EPOCHS + 1)}
    assert (tmp_path / "fit" / "checkpoints" / "last.ckpt").is_file()


def test_a_save_put_off_at_the_epochs_last_batch_is_made_at_the_next(data, tmp_path,
                                                                      monkeypatch):
    """Saving every PER_EPOCH steps would otherwise never save (every due step is an epoch's
    last): the saves come one step later."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from fluidgpt.fitcli import run_fit

    saved, original = [], ModelCheckpoint._save_last_checkpoint

    def record(self, trainer, *args, **kwargs):
        saved.append(trainer.global_step)
        return original(self, trainer, *args, **kwargs)

    monkeypatch.setattr(ModelCheckpoint, "_save_last_checkpoint", record)
    argv = [a for a in _fit(data, tmp_path / "fit")[3:] if not a.startswith("--checkpoint.")]
    run_fit([*argv, f"--checkpoint.every_n_steps={PER_EPOCH}"])
    assert saved == [PER_EPOCH * k + 1 for k in range(1, EPOCHS)]
