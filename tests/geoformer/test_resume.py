"""Crash safety of `geoformer fit`: a run killed with SIGKILL mid-epoch resumes from its last
checkpoint and ends with the weights, optimiser state and step of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from geoformer.data import write_training_store
from tests.conftest import mock_era5
from tests.geoformer.test_train import TINY_NETWORK

pytestmark = pytest.mark.slow
MAX_STEPS = 14
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A tiny store (4 training batches an epoch) and an experiment with stochastic depth
    (random draws every step) that checkpoints after every step."""
    root = tmp_path_factory.mktemp("resume")
    ds = mock_era5(n_time=24)
    store = write_training_store(ds, root / "train.zarr")
    t = [str(v)[:19] for v in ds.time.values]
    config = {
        "model": {"network": {**TINY_NETWORK, "drop_path": 0.3}, "lr": 1e-3,
                  "warmup_steps": 2},
        "data": {"store": str(store), "lead_hours": 6, "train": [t[0], t[16]],
                 "val": [t[17], t[23]], "batch_size": 4},
        "trainer": {"max_steps": MAX_STEPS, "max_epochs": -1, "accelerator": "cpu",
                    "enable_progress_bar": False, "enable_model_summary": False},
        "output": {"dir": str(root / "runs"), "every_n_steps": 1},
    }
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(experiment, name, *extra):
    return [sys.executable, "-m", "geoformer.cli", "fit", "--config", str(experiment),
            f"--output.name={name}", *extra]


def _last(experiment, name):
    return experiment.parent / "runs" / name / "checkpoints" / "last.ckpt"


def _batches_done(path) -> tuple[int, int]:
    """(global step, batches done in the current epoch) of a checkpoint."""
    ckpt = torch.load(path, weights_only=True)
    progress = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    return ckpt["global_step"], progress["completed"]


def _kill_mid_epoch(experiment, name, timeout=600.0) -> int:
    """Start a fit, SIGKILL it as soon as its last checkpoint is mid-epoch; its step."""
    proc = subprocess.Popen(_fit(experiment, name), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last, start = _last(experiment, name), time.monotonic()
    try:
        while time.monotonic() - start < timeout and proc.poll() is None:
            if last.exists():
                step, done = _batches_done(last)
                if done % 4 and step < MAX_STEPS - 2:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return step
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pytest.fail(f"the fit ended (status {proc.returncode}) before it could be killed")


def test_a_fit_killed_mid_epoch_resumes_to_the_uninterrupted_weights(experiment):
    subprocess.run(_fit(experiment, "whole"), env=ENV, check=True, capture_output=True)
    killed_at = _kill_mid_epoch(experiment, "killed")
    assert 0 < killed_at < MAX_STEPS
    # the checkpoint the kill left is whole (written atomically) and mid-epoch
    step, done = _batches_done(_last(experiment, "killed"))
    assert step >= killed_at and done % 4, (step, done)
    resumed = subprocess.run(_fit(experiment, "killed",
                                  f"--ckpt_path={_last(experiment, 'killed')}"),
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    whole = torch.load(_last(experiment, "whole"), weights_only=True)
    again = torch.load(_last(experiment, "killed"), weights_only=True)
    assert whole["global_step"] == again["global_step"] == MAX_STEPS
    assert whole["state_dict"].keys() == again["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, again["state_dict"][key]), key
    moments = [(a, b) for a, b in zip(whole["optimizer_states"][0]["state"].values(),
                                      again["optimizer_states"][0]["state"].values())]
    assert moments and all(torch.equal(a["exp_avg"], b["exp_avg"]) for a, b in moments)
