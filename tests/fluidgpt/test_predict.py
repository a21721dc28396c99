"""Checkpoints (every kind loads with weights_only) and predictions for new conditions."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fluidgpt import compare as C
from fluidgpt import predict as P
from fluidgpt import wall as W
from fluidgpt.casetensors import case_tensors
from fluidgpt.datainfo import DataInfo, read_data_info
from fluidgpt.datamodule import FluidDataModule
from fluidgpt.module import load_module
from fluidgpt.schema import open_dataset, validate
from tests.fluidgpt.test_compare import tiny_experiment

KINDS = {
    "gpt": ("gpt", {}),
    "gpt-paper": ("gpt", {"preset": "paper", "n_head": 2}),
    "lstm": ("lstm", {}),
    "bilstm": ("bilstm", {}),
    "erosion": ("erosion", {}),
    "erosion-paper": ("erosion", {"preset": "paper", "filters": [2, 3]}),
}


def _train(config, ds, kind, model_overrides, path):
    """One epoch of ``kind`` on the block split's non-test cases, saved to ``path``."""
    data = case_tensors(ds, config.data.conditions)
    split = C.split_of(ds, config, "block")
    section = config.erosion.model if kind == "erosion" else config.models[kind]
    init = section["init_args"]
    section = {**section, "init_args": {"model": {**init["model"], **model_overrides},
                                        "train": {**init["train"], "max_epochs": 1}}}
    module = C.build_module(kind, section, data)
    dm = FluidDataModule(data, split, None, 8)
    info = DataInfo.build(ds, data, split.trainval, split, None, "mock")
    return C.train_module(module, dm, None, 1, info=info, checkpoint=path), data, split


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A GPT and an erosion checkpoint over the mock dataset (one epoch each)."""
    tmp = tmp_path_factory.mktemp("predict")
    config = tiny_experiment(tmp)
    ds = C.load_data(config)
    gpt, data, split = _train(config, ds, "gpt", {}, tmp / "gpt.ckpt")
    cnn, _, _ = _train(config, ds, "erosion", {}, tmp / "erosion.ckpt")
    return {"gpt": gpt, "erosion": cnn, "data": data, "split": split, "ds": ds, "tmp": tmp}


@pytest.mark.parametrize("name", KINDS)
def test_every_checkpoint_kind_loads_with_weights_only(name, tmp_path):
    kind, overrides = KINDS[name]
    config = tiny_experiment(tmp_path)
    ds = C.load_data(config)
    trained, data, split = _train(config, ds, kind, overrides, tmp_path / f"{name}.ckpt")
    ckpt = torch.load(tmp_path / f"{name}.ckpt", weights_only=True)
    assert ckpt["fluidgpt_module"] == trained.module.kind
    assert ckpt["hyper_parameters"]["train"]["max_epochs"] == 1  # the epochs actually run
    info = read_data_info(str(tmp_path / f"{name}.ckpt"))
    assert info.conditions == list(data.condition_names)
    restored = load_module(str(tmp_path / f"{name}.ckpt"))
    test = data.subset(split.test)
    if kind == "erosion":
        a, b = C.predict_erosion(trained.module, test), C.predict_erosion(restored, test)
    else:
        a, b = C.forecast(trained.module, test), C.forecast(restored, test)
    assert torch.equal(a, b)
    for key, scaler in trained.module.scalers.items():
        assert torch.equal(restored.scalers[key].mean, scaler.mean) and scaler.fitted


def test_predicted_erosion_peak_is_the_magnitude_head(trained):
    module = trained["erosion"].module
    test = trained["data"].subset(trained["split"].test)
    rate, peak = C.predict_erosion(module, test, with_peak=True)
    assert torch.equal(rate, C.predict_erosion(module, test))
    out = module.predict_step(C.scaled_batch(test, module.scalers, 3))
    torch.testing.assert_close(peak, out["log_peak"].exp())
    torch.testing.assert_close(rate / peak[:, None], out["pattern"])


def test_data_info_needed_for_prediction(tmp_path, trained):
    plain = tmp_path / "plain.ckpt"
    ckpt = torch.load(trained["tmp"] / "gpt.ckpt", weights_only=True)
    del ckpt["fluidgpt_data"]
    torch.save(ckpt, plain)
    with pytest.raises(ValueError, match="no fluidgpt data description"):
        read_data_info(str(plain))


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_prediction_is_a_canonical_dataset_rolled_out_from_the_injection_points(
        suffix, tmp_path, trained):
    pipeline = P.load_pipeline([trained["tmp"] / "erosion.ckpt", trained["tmp"] / "gpt.ckpt"])
    data = trained["data"]
    cases = [0, 7]  # conditions of two known cases: the rollout must be the same
    table = pd.DataFrame(data.conditions[cases].double().numpy(),
                         columns=list(data.condition_names))
    with pytest.warns(UserWarning, match="step 0 differs"):  # the mock's injection varies
        ds = P.predict(pipeline, table)
    validate(ds)
    # The same rollout as from those cases with step 0 at the stored injection points.
    first = torch.tensor(pipeline.info.first_step)  # (P, 3)
    known = data.subset(cases)
    positions = known.positions.clone()
    positions[:, 0] = first
    expected = C.forecast(trained["gpt"].module, known.with_positions(positions))
    got = torch.from_numpy(ds["position"].transpose("case", "step", "particle", "xyz").values)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    rate = ds["erosion_rate"].values
    assert rate.shape == (2, trained["ds"].sizes["face"]) and (rate >= 0).all()
    np.testing.assert_allclose(ds["erosion_pattern"].max("face").values, 1.0, rtol=1e-6)
    np.testing.assert_allclose(ds["face_centre"].values, trained["ds"]["face_centre"].values)
    path = P.write_prediction(ds, tmp_path / f"pred{suffix}")
    back = open_dataset(path)
    np.testing.assert_allclose(back["position"].values, ds["position"].values)
    np.testing.assert_allclose(back["erosion_rate"].values, ds["erosion_rate"].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"pred{suffix}"]


@pytest.mark.filterwarnings("ignore:step 0 differs")
def test_a_failed_write_keeps_the_previous_prediction(tmp_path, trained, monkeypatch):
    pipeline = P.load_pipeline([trained["tmp"] / "gpt.ckpt"])
    names = read_data_info(str(trained["tmp"] / "gpt.ckpt")).conditions
    table = pd.DataFrame([trained["data"].conditions[0].double().numpy()], columns=names)
    ds = P.predict(pipeline, table)
    path = P.write_prediction(ds, tmp_path / "pred.nc")
    before = path.read_bytes()

    def broken(ds, out):
        out.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(P, "save_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        P.write_prediction(ds, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pred.nc"]
    with pytest.raises(ValueError, match="must end in .zarr or .nc"):
        P.write_prediction(ds, tmp_path / "pred.csv")


@pytest.mark.filterwarnings("ignore:step 0 differs")
def test_conditions_parsing_and_checks(tmp_path, trained):
    table = P.parse_conditions("main_inlet_speed=9, side_inlet_speed=2.5e1")
    assert table.to_dict("records") == [{"main_inlet_speed": 9.0, "side_inlet_speed": 25.0}]
    with pytest.raises(ValueError, match="name=value"):
        P.parse_conditions("main_inlet_speed")
    with pytest.raises(ValueError, match="not a number"):
        P.parse_conditions("main_inlet_speed=fast")
    csv = tmp_path / "c.csv"
    csv.write_text("main_inlet_speed,side_inlet_speed\n9,fast\n")
    with pytest.raises(ValueError, match="'side_inlet_speed': expected numbers, found 'fast'"):
        P.read_conditions_file(csv)
    with pytest.raises(FileNotFoundError):
        P.read_conditions_file(tmp_path / "missing.csv")
    pipeline = P.load_pipeline([trained["tmp"] / "gpt.ckpt"])
    names = pipeline.info.conditions
    with pytest.raises(ValueError, match=r"missing \['restitution'\]"):
        P.predict(pipeline, pd.DataFrame([{n: 1.0 for n in names if n != "restitution"}]))
    with pytest.raises(ValueError, match=r"unknown \['swirl'\]"):
        P.predict(pipeline, pd.DataFrame([{**{n: 1.0 for n in names}, "swirl": 1.0}]))
    high = {n: 2.0 * h if "speed" in n else h for n, h in zip(names, pipeline.info.high)}
    with pytest.warns(UserWarning, match=r"extrapolation\): main_inlet_speed=24 \(trained on"):
        P.predict(pipeline, pd.DataFrame([high]))
    with pytest.raises(ValueError, match=r"condition restitution: expected a value in \[0, 1\]"):
        P.predict(pipeline, pd.DataFrame([{**high, "restitution": 1.2}]))


def test_training_cases_typed_in_full_are_inside_the_stored_ranges(trained):
    """The ranges come from float32 conditions: every case of the dataset, given as its
    float64 values (a case at a bound included), is not extrapolation."""
    info = P.load_pipeline([trained["tmp"] / "gpt.ckpt"]).info
    table = pd.DataFrame(trained["ds"]["conditions"].sel(condition=info.conditions).values,
                         columns=info.conditions)  # float64, as in the dataset
    assert (table.min().to_numpy() != np.asarray(info.low)).any()  # rounding moved a bound
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        P._condition_matrix(table, info)


def test_the_docs_example_conditions_are_possible_and_inside_the_sample():
    """`fluidgpt predict --conditions "..."` of docs/fluidgpt.md against the ranges a model
    trained on the shipped sample stores (float32 minima and maxima)."""
    import re
    import types
    from pathlib import Path

    from fluidgpt.data import load_dataset

    docs = (Path(__file__).parents[2] / "docs" / "fluidgpt.md").read_text()
    table = P.parse_conditions(re.search(r'--conditions "([^"]+)"', docs).group(1))
    values = load_dataset(None)["conditions"].sel(condition=list(table.columns))
    info = types.SimpleNamespace(
        conditions=list(table.columns),
        low=values.min("case").values.astype(np.float32).tolist(),
        high=values.max("case").values.astype(np.float32).tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        P._condition_matrix(table, info)


def test_load_pipeline_errors(trained):
    tmp = trained["tmp"]
    with pytest.raises(ValueError, match="a trajectory checkpoint"):
        P.load_pipeline([tmp / "erosion.ckpt"])
    with pytest.raises(ValueError, match="exactly one trajectory"):
        P.load_pipeline([tmp / "gpt.ckpt", tmp / "gpt.ckpt"])
    with pytest.raises(FileNotFoundError):
        P.load_pipeline([tmp / "nothing.ckpt"])


# ------------------------------------------------------------------ engineering outputs
def _pipeline(trained, **info):
    """The GPT + erosion pipeline, its DataInfo changed by ``info``."""
    pipeline = P.load_pipeline([trained["tmp"] / "gpt.ckpt", trained["tmp"] / "erosion.ckpt"])
    return dataclasses.replace(pipeline, info=dataclasses.replace(pipeline.info, **info))


def _known_conditions(trained, cases=(0, 7)) -> pd.DataFrame:
    data = trained["data"]
    return pd.DataFrame(data.conditions[list(cases)].double().numpy(),
                        columns=list(data.condition_names))


def _face_corners(ds) -> np.ndarray:
    """Squares in the x-z plane around the mock's faces (along x, y = 0), sharing edges."""
    x = ds["face_centre"].sel(xyz="x").values
    z = float(ds["face_centre"].sel(xyz="z")[0])
    edges = np.concatenate([[x[0] - (x[1] - x[0]) / 2], (x[1:] + x[:-1]) / 2,
                            [x[-1] + (x[-1] - x[-2]) / 2]])  # (F + 1,)
    x0, x1 = edges[:-1], edges[1:]
    lo, hi = np.full_like(x0, z - 0.01), np.full_like(x0, z + 0.01)
    zero = np.zeros_like(x0)
    return np.stack([np.stack([x0, zero, lo], -1), np.stack([x1, zero, lo], -1),
                     np.stack([x1, zero, hi], -1), np.stack([x0, zero, hi], -1)], 1)  # (F, 4, 3)


def test_data_info_carries_face_corners_and_wall_density(tmp_path, trained):
    ds = trained["ds"].assign_coords(face_vertex=(("face", "corner", "xyz"),
                                                  _face_corners(trained["ds"])))
    ds.attrs["recipe"] = yaml.safe_dump({"erosion": {"wall_density": 2700.0}})
    data, split = trained["data"], trained["split"]
    info = DataInfo.build(ds, data, split.trainval, split, None, "mock")
    assert info.wall_density == 2700.0
    np.testing.assert_array_equal(np.asarray(info.face_vertex), ds["face_vertex"].values)
    torch.save({"fluidgpt_data": info.to_dict()}, tmp_path / "info.ckpt")
    assert read_data_info(str(tmp_path / "info.ckpt")) == info  # weights_only-safe
    plain = DataInfo.build(trained["ds"], data, split.trainval, split, None, "mock")
    assert plain.face_vertex == [] and plain.wall_density is None


@pytest.mark.filterwarnings("ignore:step 0 differs")
def test_prediction_carries_wall_loss_and_hot_spots(trained):
    ds = P.predict(_pipeline(trained), _known_conditions(trained))
    rate = ds["erosion_rate"].transpose("case", "face").values
    per_year = 1000.0 * 365.25 * 86400 / 7800.0  # kg m-2 s-1 -> mm yr-1 of carbon steel
    loss = ds["wall_loss_rate"]
    assert loss.dims == ("case", "face") and loss.attrs["units"] == "mm yr-1"
    assert loss.attrs["wall_density"] == 7800.0 and "default" in loss.attrs["wall_density_source"]
    np.testing.assert_allclose(loss.values, rate * per_year, rtol=1e-6)
    centre = ds["face_centre"].transpose("face", "xyz").values
    np.testing.assert_allclose(ds["peak_erosion_rate"].values, rate.max(1), rtol=1e-6)
    np.testing.assert_array_equal(ds["peak_location"].values, centre[rate.argmax(1)])
    spots = W.hotspot(rate, centre, ds["face_area"].values, P.HOTSPOT_LENGTH)
    np.testing.assert_allclose(ds["smoothed_peak_erosion_rate"].values,
                               spots["smoothed_peak_value"])
    np.testing.assert_array_equal(ds["smoothed_peak_location"].values,
                                  spots["smoothed_peak_location"])
    assert ds["smoothed_peak_location"].dims == ("case", "xyz")
    steel = P.predict(_pipeline(trained, wall_density=2700.0), _known_conditions(trained))
    np.testing.assert_allclose(steel["wall_loss_rate"].values, rate * per_year * 7800 / 2700,
                               rtol=1e-6)
    assert steel["wall_loss_rate"].attrs["wall_density_source"] == "the training data"
    summary = P.prediction_summary(steel)
    np.testing.assert_allclose(summary["peak_wall_loss_mm_per_year"],
                               rate.max(1) * per_year * 7800 / 2700, rtol=1e-3)
    alone = P.predict(P.load_pipeline([trained["tmp"] / "gpt.ckpt"]), _known_conditions(trained))
    assert "wall_loss_rate" not in alone and "peak_location" not in alone


@pytest.mark.filterwarnings("ignore:step 0 differs")
@pytest.mark.parametrize("corners", [True, False])
def test_vtk_wall_maps_and_hotspot_plot(corners, tmp_path, trained):
    import meshio

    faces = _face_corners(trained["ds"])
    info = {"face_vertex": faces.tolist()} if corners else {}
    ds = P.predict(_pipeline(trained, **info), _known_conditions(trained))
    assert ("face_vertex" in ds.coords) == corners
    out = P.write_outputs(ds, tmp_path / "pred.nc", tmp_path / "vtk", tmp_path / "hot.png")
    assert out["vtk_faces"] == corners and out["prediction"] == tmp_path / "pred.nc"
    assert [p.name for p in out["vtk"]] == ["pred_case0.vtu", "pred_case1.vtu"]
    F = ds.sizes["face"]
    for case, path in enumerate(out["vtk"]):
        mesh = meshio.read(path)
        (block,) = mesh.cells
        assert block.type == ("quad" if corners else "vertex") and len(block.data) == F
        # shared corners merged: two rows of F + 1 points, or one point per face centre
        assert len(mesh.points) == (2 * (F + 1) if corners else F)
        np.testing.assert_allclose(mesh.cell_data["erosion_rate"][0],
                                   ds["erosion_rate"].isel(case=case).values, rtol=1e-7)
        np.testing.assert_allclose(mesh.cell_data["wall_loss_rate"][0],
                                   ds["wall_loss_rate"].isel(case=case).values, rtol=1e-7)
        if corners:  # each cell is its face: the mean of its corners is the face centre
            np.testing.assert_allclose(mesh.points[block.data].mean(1),
                                       ds["face_centre"].values, atol=1e-12)
    assert (tmp_path / "hot.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hot.png", "pred.nc", "vtk"]
    assert sorted(p.name for p in (tmp_path / "vtk").iterdir()) == [
        "pred_case0.vtu", "pred_case1.vtu"]


@pytest.mark.filterwarnings("ignore:step 0 differs")
def test_outputs_are_refused_when_present_and_all_or_nothing(tmp_path, trained, monkeypatch):
    ds = P.predict(_pipeline(trained), _known_conditions(trained, (3,)))
    targets = (tmp_path / "pred.zarr", tmp_path / "vtk", tmp_path / "hot.png")
    P.write_outputs(ds, *targets)
    vtu = tmp_path / "vtk" / "pred_case0.vtu"
    before = vtu.read_bytes()
    with pytest.raises(FileExistsError, match="pred.zarr"):
        P.write_outputs(ds, *targets)
    assert vtu.read_bytes() == before
    P.write_outputs(ds, *targets, overwrite=True)

    def broken(ds, out):
        raise OSError("disk full")

    monkeypatch.setattr(P, "save_dataset", broken)
    fresh = (tmp_path / "new.nc", tmp_path / "new_vtk", tmp_path / "new.png")
    with pytest.raises(OSError, match="disk full"):
        P.write_outputs(ds, *fresh)
    assert not any(p.exists() for p in fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hot.png", "pred.zarr", "vtk"]
    assert [p.name for p in (tmp_path / "vtk").iterdir()] == ["pred_case0.vtu"]
    alone = P.predict(P.load_pipeline([trained["tmp"] / "gpt.ckpt"]),
                      _known_conditions(trained, (3,)))
    with pytest.raises(ValueError, match="need predicted erosion rates"):
        P.write_outputs(alone, tmp_path / "x.nc", tmp_path / "vtk2")


@pytest.mark.filterwarnings("ignore:step 0 differs")
def test_predict_command_writes_vtk_and_plot(tmp_path, trained, capsys):
    from fluidgpt.cli import main

    names = P.load_pipeline([trained["tmp"] / "gpt.ckpt"]).info.conditions
    values = trained["data"].conditions[3].double().tolist()
    conditions = ",".join(f"{n}={v!r}" for n, v in zip(names, values))
    gpt, cnn = str(trained["tmp"] / "gpt.ckpt"), str(trained["tmp"] / "erosion.ckpt")
    argv = ["predict", "--checkpoint", gpt, "--checkpoint", cnn, "--conditions", conditions,
            "--output", str(tmp_path / "pred.zarr"), "--vtk", "--plot",
            str(tmp_path / "hot.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "peak_wall_loss_mm_per_year" in out and "note: the training data has no face" in out
    assert (tmp_path / "pred_case0.vtu").is_file() and (tmp_path / "hot.png").is_file()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["predict", "--checkpoint", gpt, "--conditions", conditions, "--output",
                 str(tmp_path / "p.nc"), "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot need predicted erosion rates" in capsys.readouterr().err
    assert not (tmp_path / "p.nc").exists() and not (tmp_path / "p.png").exists()
