"""Scale-out on existing engines: Lightning's DDP on 2 CPU processes (gloo) trains to the
weights of 1 process at the same global batch; statistics, climatology and scores computed
with dask on a local dask.distributed cluster equal the in-memory (numpy) ones."""

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from geoformer.climatology import compute_climatology
from geoformer.data import TimeRange, load_statistics, write_training_store
from geoformer.evaluation import evaluate
from geoformer.normalization import compute_statistics
from geoformer.references import persistence
from geoformer.resume import training_loader
from tests.conftest import mock_era5
from tests.geoformer.test_train import TINY_NETWORK

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
STEPS = 8  # two epochs of 4 steps: the second draws a new order


# ------------------------------------------------------------------------------ DDP
def _batches(world: int, rank: int, batch_size: int, step: int) -> list[list[int]]:
    """The training loader's batches (sample indices) on one rank, at a given step."""
    trainer = SimpleNamespace(world_size=world, global_rank=rank, global_step=step,
                              limit_train_batches=1.0, accumulate_grad_batches=1)
    return [b.tolist() for b in training_loader(list(range(16)), batch_size, trainer=trainer)]


def test_the_ranks_batches_together_are_the_one_process_batches():
    for step in (0, 4):  # epoch 0 and epoch 1
        one = _batches(1, 0, 4, step)
        ranks = [_batches(2, rank, 2, step) for rank in (0, 1)]
        assert len(one) == len(ranks[0]) == len(ranks[1]) == 4
        assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(b) for b in one]
        assert not set(sum(ranks[0], [])) & set(sum(ranks[1], []))  # disjoint shards
    assert _batches(1, 0, 4, 0) != _batches(1, 0, 4, 4)  # a new order each epoch


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A tiny store (16 training pairs) and an experiment without stochastic depth (its
    draws would differ between processes), in float64 (see the test)."""
    root = tmp_path_factory.mktemp("ddp")
    ds = mock_era5(n_time=24)
    store = write_training_store(ds, root / "train.zarr")
    t = [str(v)[:19] for v in ds.time.values]
    config = {
        "model": {"network": {**TINY_NETWORK, "drop_path": 0.0}, "lr": 1e-3,
                  "warmup_steps": 2},
        "data": {"store": str(store), "lead_hours": 6, "train": [t[0], t[16]],
                 "val": [t[17], t[23]], "batch_size": 4},
        "trainer": {"max_steps": STEPS, "max_epochs": -1, "accelerator": "cpu",
                    "precision": "64-true", "enable_progress_bar": False,
                    "enable_model_summary": False},
        "output": {"dir": str(root / "runs")},
    }
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(experiment, name: str, *extra: str) -> dict:
    """Run ``geoformer fit`` in a subprocess (Lightning's DDP launcher re-runs the command
    line for rank 1); the state of its last checkpoint."""
    args = [sys.executable, "-m", "geoformer.cli", "fit", "--config", str(experiment),
            f"--output.name={name}", *extra]
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    last = experiment.parent / "runs" / name / "checkpoints" / "last.ckpt"
    return torch.load(last, weights_only=True)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_to_the_one_process_weights(experiment):
    one = _fit(experiment, "one")  # batch 4 on 1 process
    two = _fit(experiment, "two", "--data.batch_size=2", "--trainer.devices=2",
               "--trainer.strategy=ddp")  # batch 2 on each of 2 processes (gloo)
    assert one["global_step"] == two["global_step"] == STEPS
    assert one["state_dict"].keys() == two["state_dict"].keys()
    # In float64 the two runs differ only by the order of the gradient sums (one batch of
    # 4 vs two batches of 2 averaged by the all-reduce): about 1e-15 after 8 AdamW steps.
    # In float32 that order alone gives about 3e-6 (Adam's first steps are lr * sign(g),
    # so near-zero gradients amplify rounding), too close to a real difference to tell.
    for key, value in one["state_dict"].items():
        if value.is_floating_point():
            assert value.dtype == torch.float64, key
            assert torch.allclose(value, two["state_dict"][key], rtol=0, atol=1e-12), key
        else:
            assert torch.equal(value, two["state_dict"][key]), key
    moments = [(a[m], b[m]) for a, b in zip(one["optimizer_states"][0]["state"].values(),
                                             two["optimizer_states"][0]["state"].values())
               for m in ("exp_avg", "exp_avg_sq")]
    # relative to each tensor's largest value (3e-15 seen): near-zero entries have no scale
    assert moments and all(torch.allclose(a, b, rtol=0, atol=1e-12 * float(a.abs().max()))
                           for a, b in moments)
    assert (experiment.parent / "runs" / "two" / "geoformer-6h.ckpt").exists()  # rank 0's


def test_only_rank_zero_caches_the_statistics_in_the_store(tmp_path, monkeypatch):
    """torchrun and srun start every rank at once: one writer of the statistics cache."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    ds = mock_era5(n_time=6)
    store = write_training_store(ds, tmp_path / "train.zarr")
    period = TimeRange(str(ds.time.values[0]), str(ds.time.values[-1]))
    upper, surface = ["temperature"], ["2m_temperature"]
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    stats = load_statistics(store, period, upper, surface, [])
    assert float(stats["temperature"].sel(statistic="std").min()) > 0
    assert not (store / "statistics").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    again = load_statistics(store, period, upper, surface, [])
    assert (store / "statistics").exists()
    xr.testing.assert_identical(stats, again)


# ----------------------------------------------------------------------------- dask
UPPER, SURFACE, STATIC = ["geopotential", "temperature"], ["2m_temperature"], ["land_sea_mask"]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """A truth store chunked 4 time steps a chunk and a forecast store (persistence plus an
    offset) chunked 2 inits a chunk; 10 days every 6 hours on an 8 x 16 grid."""
    root = tmp_path_factory.mktemp("dask")
    truth = mock_era5(n_time=40)[UPPER + SURFACE + STATIC]
    truth.chunk({"time": 4}).to_zarr(root / "truth.zarr")
    inits = truth.time.values[28:34]
    leads = pd.to_timedelta([6, 12], unit="h")
    fc = persistence(truth, inits, leads)
    fc = (fc + 0.1 * truth[UPPER + SURFACE].std()).chunk({"time": 2})
    fc.to_zarr(root / "forecast.zarr")
    return root / "truth.zarr", root / "forecast.zarr"


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _ran_on_the_cluster(client, compute):
    """compute() under the client; its result, checking that tasks ran on the workers."""
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        result = compute()
    workers = {task["worker"] for task in stream.data}
    assert stream.data and workers <= set(client.scheduler_info()["workers"]), workers
    return result


@pytest.mark.slow
def test_statistics_with_dask_on_a_cluster_equal_the_in_memory_ones(chunked, client):
    lazy = xr.open_zarr(chunked[0])
    assert lazy["temperature"].chunks is not None  # dask arrays, 4 time steps a chunk
    period = slice(str(lazy.time.values[0]), str(lazy.time.values[23]))
    stats = _ran_on_the_cluster(client, lambda: compute_statistics(
        lazy, UPPER, SURFACE, STATIC, time=period))
    expected = compute_statistics(lazy.load(), UPPER, SURFACE, STATIC, time=period)
    for name in UPPER + SURFACE + STATIC:
        assert np.allclose(stats[name], expected[name], rtol=1e-12, atol=0), name


@pytest.mark.slow
def test_climatology_with_dask_on_a_cluster_equals_the_in_memory_one(chunked, client):
    lazy = xr.open_zarr(chunked[0])[["temperature", "2m_temperature"]]
    lazy = lazy.isel(time=(lazy.time.dt.hour == 0).values)  # one hour of day: fewer tasks
    clim = compute_climatology(lazy, kind="dayofyear_hour", window_days=3)
    assert clim["temperature"].chunks is not None  # lazy until computed on the cluster
    clim = _ran_on_the_cluster(client, clim.compute)
    expected = compute_climatology(lazy.load(), kind="dayofyear_hour", window_days=3)
    for name in lazy.data_vars:  # float32 means, summed in another order: rtol 1e-6
        assert np.allclose(clim[name], expected[name], rtol=1e-6, atol=0, equal_nan=True), name
    assert int(clim["temperature"].notnull().sum()) > 0


@pytest.mark.slow
def test_evaluation_with_dask_on_a_cluster_equals_the_in_memory_one(chunked, client):
    truth_path, forecast_path = chunked
    lazy_truth, lazy_fc = xr.open_zarr(truth_path), xr.open_zarr(forecast_path)
    train = (str(lazy_truth.time.values[0]), str(lazy_truth.time.values[23]))
    table = _ran_on_the_cluster(client, lambda: evaluate(
        lazy_fc, lazy_truth[UPPER + SURFACE], train_period=train, climatology_kind="time_mean"))
    expected = evaluate(lazy_fc.load(), lazy_truth[UPPER + SURFACE].load(),
                        train_period=train, climatology_kind="time_mean")
    assert set(table.forecast) == {"model", "persistence", "climatology", "damped_persistence"}
    keys = ["forecast", "variable", "level", "lead_time_hours", "metric", "region"]
    merged = table.merge(expected, on=keys, suffixes=("", "_numpy"), validate="1:1")
    assert len(merged) == len(expected) == len(table) > 0
    # The stores are float32 and dask sums chunk by chunk: a few float32 roundings apart.
    # An ACC near 0 (geopotential: anomalies ~1e-2 of the field) loses more digits, hence
    # also atol 1e-6 (ACC is dimensionless); the climatology's own ACC is NaN (0 / 0).
    assert np.allclose(merged["value"], merged["value_numpy"], rtol=1e-5, atol=1e-6,
                       equal_nan=True)
