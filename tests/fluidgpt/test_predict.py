"""Checkpoints (every kind loads with weights_only) and predictions for new conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fluidgpt import compare as C
from fluidgpt import predict as P
from fluidgpt.datamodule import DataInfo, FluidDataModule, case_tensors, read_data_info
from fluidgpt.lightning import load_module
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
    """One epoch of ``kind`` on the grouped split's non-test cases, saved to ``path``."""
    data = case_tensors(ds, config["data"]["conditions"])
    split = C.split_of(ds, config, "grouped")
    section = config["erosion"] if kind == "erosion" else config["models"][kind]
    section = {**section, "model": {**section["model"], **model_overrides},
               "train": {**section["train"], "max_epochs": 1}}
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
    with pytest.raises(ValueError, match="not numeric"):
        P.read_conditions_file(csv)
    with pytest.raises(FileNotFoundError):
        P.read_conditions_file(tmp_path / "missing.csv")
    pipeline = P.load_pipeline([trained["tmp"] / "gpt.ckpt"])
    names = pipeline.info.conditions
    with pytest.raises(ValueError, match=r"missing \['restitution'\]"):
        P.predict(pipeline, pd.DataFrame([{n: 1.0 for n in names if n != "restitution"}]))
    with pytest.raises(ValueError, match=r"unknown \['swirl'\]"):
        P.predict(pipeline, pd.DataFrame([{**{n: 1.0 for n in names}, "swirl": 1.0}]))
    high = {n: 2.0 * h for n, h in zip(names, pipeline.info.high)}
    with pytest.warns(UserWarning, match="extrapolation"):
        P.predict(pipeline, pd.DataFrame([high]))


def test_load_pipeline_errors(trained):
    tmp = trained["tmp"]
    with pytest.raises(ValueError, match="a trajectory checkpoint"):
        P.load_pipeline([tmp / "erosion.ckpt"])
    with pytest.raises(ValueError, match="exactly one trajectory"):
        P.load_pipeline([tmp / "gpt.ckpt", tmp / "gpt.ckpt"])
    with pytest.raises(FileNotFoundError):
        P.load_pipeline([tmp / "nothing.ckpt"])
