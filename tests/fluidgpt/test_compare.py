"""The data edge, the experiment configuration and the comparison pipeline (tiny, CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from fluidgpt import compare as C
from fluidgpt.casetensors import case_tensors, select_conditions, to_dataarray
from fluidgpt.compare import jobs
from fluidgpt.config import ConfigError
from fluidgpt.data import make_split
from fluidgpt.datamodule import FluidDataModule
from fluidgpt.schema import save_dataset
from fluidgpt.sources.variants import paper_style_variant
from tests.fluidgpt.conftest import mock_trajectories

TINY = [
    "--models.gpt.model.preset=tiny", "--models.lstm.model.preset=tiny-lstm",
    "--models.bilstm.model.preset=tiny-bilstm", "--erosion.model.model.preset=tiny",
    "--budget.epochs=2", "--budget.erosion_epochs=2", "--split.n_folds=2",
    "--models.gpt.train.batch_size=4", "--models.lstm.train.batch_size=4",
    "--models.bilstm.train.batch_size=4", "--erosion.model.train.batch_size=4",
]


def tiny_experiment(tmp_path, *extra: str) -> C.Experiment:
    """An experiment over the mock dataset (24 cases, 4 particles, 6 steps, 10 faces) with
    the tiny networks, 2 epochs each: seconds on a CPU."""
    path = tmp_path / "mock.nc"
    if not path.exists():
        save_dataset(mock_trajectories(), path)
    return C.load_experiment(None, [f"--data.path={path}",
                                    f"--output={tmp_path / 'out' / 'compare.csv'}",
                                    *TINY, *extra])


# ------------------------------------------------------------------------------ data edge
def test_case_tensors_round_trip_to_named_dims(mock_ds):
    data = case_tensors(mock_ds)
    N, P, T = mock_ds.sizes["case"], mock_ds.sizes["particle"], mock_ds.sizes["step"]
    assert data.positions.shape == (N, T, P, 3) and data.valid.shape == (N, T, P)
    back = to_dataarray(data.positions)
    np.testing.assert_allclose(back.values, mock_ds["position"].values, rtol=1e-6)
    assert back.dims == mock_ds["position"].dims
    np.testing.assert_array_equal(to_dataarray(data.valid).values, mock_ds["valid"].values)
    assert data.erosion.shape == (N, mock_ds.sizes["face"])


def test_physical_conditions_drop_inert_labels_and_constant_columns(mock_ds):
    # The mock grid holds one particle density: a constant column carries no information.
    assert select_conditions(mock_ds) == ["main_inlet_speed", "side_inlet_speed",
                                          "particle_diameter", "restitution"]
    paper = paper_style_variant(mock_ds, {"main_inlet_pressure": (1.4e7, 1.5e7)})
    assert select_conditions(paper) == select_conditions(mock_ds)
    assert "main_inlet_pressure" in select_conditions(paper, "all")
    with pytest.raises(ValueError, match="not in the dataset"):
        select_conditions(mock_ds, ["swirl"])
    with pytest.raises(ValueError, match="'physical', 'all' or a list"):
        select_conditions(mock_ds, "some")


def test_scalers_are_fitted_on_the_training_cases_only(mock_ds):
    data = case_tensors(mock_ds)
    split = make_split(mock_ds, "block", n_folds=2)
    config = C.load_experiment(None, TINY)
    module = C.build_module("gpt", config.models["gpt"], data)
    dm = FluidDataModule(data, split, fold=0, batch_size=4)
    dm.fit_scalers(module)
    train = data.subset(split.train(0))
    pos = train.positions[train.valid]  # (n, 3) valid samples of the training cases
    torch.testing.assert_close(module.scalers["positions"].mean, pos.double().mean(0).float())
    torch.testing.assert_close(module.scalers["conditions"].mean,
                               train.conditions.double().mean(0).float())
    every = data.positions[data.valid].double().mean(0).float()
    assert not torch.allclose(module.scalers["positions"].mean, every)
    batch = next(iter(dm.val_dataloader()))
    val = data.subset(split.val(0))
    torch.testing.assert_close(module.scalers["positions"].inverse(batch["positions"]),
                               val.positions[: len(batch["positions"])])
    assert set(dm.indices("train")).isdisjoint(dm.indices("val"))
    assert set(dm.indices("train")).isdisjoint(split.test)


def test_datamodule_refuses_a_split_of_another_dataset(mock_ds):
    data = case_tensors(mock_ds)
    other = make_split(mock_ds.isel(case=slice(0, 20)), "random", n_folds=2)
    with pytest.raises(ValueError, match="split is over 20 cases"):
        FluidDataModule(data, other)


# -------------------------------------------------------------------------- configuration
def test_experiment_reads_yaml_then_overrides_and_refuses_unknown_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("split:\n  kind: random\nmodels:\n  gpt:\n    class_path: "
                    "fluidgpt.module.GPTModule\n    init_args:\n      model: {preset: "
                    "fluidgpt, d_model: 64}\n")
    config = C.load_experiment(path, ["--budget.seconds=12", "--models.gpt.train.lr=3e-4"])
    defaults = C.Experiment()
    assert config.split.kind == "random" and config.budget.seconds == 12
    assert config.budget.epochs == defaults.budget.epochs
    init = config.models["gpt"]["init_args"]
    assert init["model"] == {"preset": "fluidgpt", "d_model": 64}
    assert init["train"] == {"preset": "fluidgpt", "lr": 3e-4}  # the default's, plus lr
    assert config.split.n_folds == defaults.split.n_folds
    assert config.models["lstm"] == defaults.models["lstm"]
    with pytest.raises(ConfigError, match=r"^split.sedd: unknown key"):
        C.load_experiment(None, ["--split.sedd=3"])
    with pytest.raises(ConfigError, match="split.kind: each split must be one of"):
        C.load_experiment(None, ["--split.kind=stratified"])
    with pytest.raises(ConfigError, match="split.kind: each split must be one of"):
        C.load_experiment(None, ["--split.kind=[interior,interior]"])
    assert C.split_kinds("all") == ["interior", "block", "random"]
    assert C.split_kinds("interior,block") == C.split_kinds(["interior", "block"])
    assert C.load_experiment(None).split.kind == "interior"
    with pytest.raises(ConfigError, match="erosion.inputs: expected one of .*'transformer'"):
        C.load_experiment(None, ["--erosion.inputs=[gpt,transformer]"])
    with pytest.raises(ConfigError, match="budget.epochs must be a positive number"):
        C.load_experiment(None, ["--budget.epochs=-3"])
    with pytest.raises(ConfigError, match="bilstm is bidirectional"):
        C.load_experiment(None, ["--models.bilstm.model.preset=paper-lstm"])
    with pytest.raises(ConfigError, match="models.gpt: expected a subclass of GPTModule"):
        C.load_experiment(None, ["--models.gpt=fluidgpt.module.SequenceModule"])
    with pytest.raises(FileNotFoundError, match="no such experiment"):
        C.load_experiment(tmp_path / "missing.yaml")


def test_network_keys_are_checked_by_the_network_config(mock_ds):
    with pytest.raises(ConfigError, match=r"^models.gpt.model.d_modle: unknown key"):
        C.load_experiment(None, ["--models.gpt.model.d_modle=64"])
    with pytest.raises(ConfigError, match="does not divide into 5 heads"):
        C.load_experiment(None, ["--models.gpt.model.n_head=5"])
    config = C.load_experiment(None)
    section = {**config.models["gpt"], "init_args": {"model": {"d_modle": 64}}}
    with pytest.raises(ConfigError, match="d_modle"):
        C.build_module("gpt", section, case_tensors(mock_ds))


def test_a_section_sizes_its_network_from_the_data(mock_ds):
    """The sizes come from the data; a section that writes one differently is refused."""
    data = case_tensors(mock_ds)
    config = C.load_experiment(None, TINY)
    module = C.build_module("gpt", config.models["gpt"], data)
    assert (module.config.n_particles, module.config.n_conditions) == (4, 4)
    assert module.config.max_steps == 64  # the tiny preset's table covers the 6 steps
    cnn = C.build_module("erosion", config.erosion.model, data)
    assert (cnn.config.n_steps, cnn.config.n_faces) == (6, 10)
    section = {**config.models["gpt"], "init_args": {"model": {"n_particles": 9}}}
    with pytest.raises(ConfigError, match="come from the data"):
        C.build_module("gpt", section, data)
    no_maps = dataclasses.replace(data, erosion=None)
    with pytest.raises(ConfigError, match="needs erosion_rate"):
        C.build_module("erosion", config.erosion.model, no_maps)


# ------------------------------------------------------------------------------- pipeline
def test_erosion_model_learns_from_out_of_fold_rollouts_only(tmp_path, monkeypatch):
    """Every rollout of a non-test case comes from a model that did not train on it, and the
    test cases are rolled out by the final model, trained on every non-test case."""
    config = tiny_experiment(tmp_path)
    ds = C.load_data(config)
    data = case_tensors(ds)
    split = C.split_of(ds, config, "block")
    trained_on, predicted = {}, []
    real_train, real_forecast = C.train_module, C.forecast

    def spy_train(module, dm, *args, **kwargs):
        trained_on[id(module)] = set(dm.indices("train").tolist())
        return real_train(module, dm, *args, **kwargs)

    def spy_forecast(module, cases, *args, **kwargs):
        predicted.append((id(module), set(cases.index.tolist())))
        return real_forecast(module, cases, *args, **kwargs)

    # run_job looks both up in fluidgpt.compare.jobs: patch them there.
    monkeypatch.setattr(jobs, "train_module", spy_train)
    monkeypatch.setattr(jobs, "forecast", spy_forecast)
    stage = C.fit_trajectory_model("gpt", config, ds, data, split, True, echo=lambda m: None)
    assert len(stage.folds) == split.n_folds and stage.oof.shape[0] == len(split.trainval)
    covered = set()
    for module_id, cases in predicted:
        assert cases.isdisjoint(trained_on[module_id])
        covered |= cases
    assert covered == set(range(len(data)))
    assert trained_on[id(stage.final.module)] == set(split.trainval.tolist())
    # The out-of-fold rollouts are what the fold models predict, in split.trainval order.
    f = 1
    val = split.val(f)
    where = [int(np.flatnonzero(split.trainval == c)[0]) for c in val]
    torch.testing.assert_close(stage.oof[where],
                               real_forecast(stage.folds[f].module, data.subset(val)))


def test_nearest_case_shows_the_random_split_leak(mock_ds):
    """With replicated cases (inert labels), a random split puts a twin of every test case in
    training: the nearest case copies it exactly. The block split does not."""
    paper = paper_style_variant(mock_ds, {"main_inlet_pressure": (1.4e7, 1.5e7, 1.6e7)})
    data = case_tensors(paper)  # physical conditions: the labels are left out
    random_split = make_split(paper, "random", n_folds=3)
    group = paper["group"].values
    twins = [c for c in random_split.test if np.isin(group[c], group[random_split.trainval])]
    assert twins  # with 3 replicas per group, a random test case has a twin in training
    pred, _ = C._nearest(data, random_split)
    truth = data.subset(random_split.test)
    for i, c in enumerate(random_split.test):
        if c in twins:
            assert torch.equal(pred["trajectories"][i], truth.positions[i])
    for kind in ("block", "interior"):
        leak_free = make_split(paper, kind, n_folds=3)
        pred, _ = C._nearest(data, leak_free)
        truth = data.subset(leak_free.test)
        assert C._trajectory_scores(pred["trajectories"], truth)["mse"] > 0


def test_noise_ceiling_rows_from_paired_seeds(mock_ds):
    base = mock_ds.isel(case=[0, 5])
    pair = base.copy(deep=True)
    pair["seed"] = pair["seed"] + 1
    pair["erosion_rate"] = pair["erosion_rate"] * 2.0  # same pattern, twice the peak
    import xarray as xr

    ds = xr.concat([base, pair], dim="case")
    rows = C.noise_ceiling_rows(ds, "block", echo=lambda m: None)
    table = pd.DataFrame(rows).set_index(["target", "metric"])["value"]
    assert table[("trajectory", "mse")] == 0.0  # same particles, same positions here
    assert table[("erosion", "r2")] == pytest.approx(1.0)
    # One seed as the other's prediction: |2 - 1| / 1 and |1 - 2| / 2 -> mean 0.75.
    assert table[("erosion", "rel_peak_error")] == pytest.approx(0.75)
    # Every erosion row has the wall scores: the same hot spot, totals off as the peaks.
    assert table[("erosion", "hotspot_distance_m")] == 0.0
    assert table[("erosion", "rel_total_error")] == pytest.approx(0.75)
    assert C.noise_ceiling_rows(mock_ds, "block") == []
    assert C.noise_ceiling_rows(None, "block") == []


EROSION_METRICS = {"r2", "rel_peak_error", "hotspot_distance_m", "rel_total_error"}


def test_compare_scores_the_erosion_surrogates_on_every_split(tmp_path):
    """knn and pod (conditions -> erosion, no trajectories) get erosion rows on every split,
    with the four erosion scores of every model that predicts the magnitude."""
    config = tiny_experiment(tmp_path, "--compare.models=[nearest,knn,pod]",
                             "--erosion.inputs=[cfd]")
    kinds = C.split_kinds("all")
    result = C.run_compare(config, "all", echo=lambda m: None)
    table = result.table
    assert set(table["split"]) == set(kinds)
    for kind in kinds:
        rows = table[(table["split"] == kind) & (table["target"] == "erosion")]
        for model in ("nearest", "knn", "pod", "cnn"):
            assert set(rows[rows["model"] == model]["metric"]) == EROSION_METRICS, model
        # The rows score the predictions kept for the plots.
        truth = result.truth[kind]
        pred = result.predictions[kind]["knn"]["erosion"]
        assert pred.shape == truth.erosion.shape and (pred >= 0).all()
    assert (table[table["model"].isin(["knn", "pod"])]["target"] == "erosion").all()
    assert np.isfinite(table["value"]).all()
    with pytest.raises(ConfigError, match=r"compare.models: expected one of .*'podd'"):
        C.load_experiment(None, ["--compare.models=[gpt,podd]"])


def test_erosion_surrogates_never_see_the_test_maps(mock_ds):
    data = case_tensors(mock_ds)
    split = make_split(mock_ds, "block", n_folds=2)
    erosion = data.erosion.clone()
    erosion[split.test] *= 10.0
    other = dataclasses.replace(data, erosion=erosion)
    area = mock_ds["face_area"].values
    for name in C.EROSION_SURROGATES:
        a, _ = C._surrogate(name, data, split, area)
        b, _ = C._surrogate(name, other, split, area)
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    with pytest.raises(ConfigError, match="unknown erosion surrogate"):
        C._surrogate("gp", data, split, area)


@pytest.mark.slow
def test_compare_writes_the_tidy_table(tmp_path):
    config = tiny_experiment(tmp_path, "--erosion.inputs=[gpt,cfd]")
    out = tmp_path / "compare.csv"
    result = C.run_compare(config, "block,random", out, echo=lambda m: None)
    table = pd.read_csv(out)
    assert tuple(table.columns) == C.TABLE_COLUMNS
    assert set(table["split"]) == {"block", "random"}
    assert set(table["model"]) == {"gpt", "lstm", "bilstm", "nearest", "knn", "pod", "cnn"}
    assert set(table["metric"]) <= {"mse", "r2", "rel_peak_error", "hotspot_distance_m",
                                    "rel_total_error"}
    for split in ("block", "random"):
        rows = table[table["split"] == split]
        have = set(zip(rows["model"], rows["target"]))
        assert have == {("gpt", "trajectory"), ("lstm", "trajectory"),
                        ("bilstm", "trajectory"), ("nearest", "trajectory"),
                        ("gpt", "erosion"), ("nearest", "erosion"), ("knn", "erosion"),
                        ("pod", "erosion"), ("cnn", "erosion")}
    assert np.isfinite(table["value"]).all() and (table["train_seconds"] >= 0).all()
    # The table holds exactly the scores of the predictions kept for the plots.
    truth = result.truth["block"]
    again = C._trajectory_scores(result.predictions["block"]["gpt"]["trajectory"], truth)
    row = table[(table["split"] == "block") & (table["model"] == "gpt")
                & (table["target"] == "trajectory") & (table["metric"] == "mse")]
    assert row["value"].item() == pytest.approx(again["mse"], rel=1e-6)
    assert "nearest" in C.format_table(result.table)


def test_tuning_view_never_holds_a_test_case(mock_ds):
    data = case_tensors(mock_ds)
    split = make_split(mock_ds, "block", n_folds=3)
    ds, sub, view = C.tuning_view(mock_ds, data, split)
    assert len(sub) == len(split.trainval) and ds.sizes["case"] == len(split.trainval)
    assert set(sub.index.tolist()) == set(split.trainval.tolist())
    # Local fold 0 is the split's fold 0; the other folds keep their cases.
    assert set(sub.index[view.test].tolist()) == set(split.folds[0].tolist())
    for local, fold in zip(view.folds, split.folds[1:]):
        assert set(sub.index[local].tolist()) == set(fold.tolist())
    with pytest.raises(ConfigError, match="n_folds >= 3"):
        C.tuning_view(mock_ds, data, make_split(mock_ds, "block", n_folds=2))
