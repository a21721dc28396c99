"""Format versions of fluidgpt checkpoints, and `fluidgpt info --checkpoint`."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from fluidgpt import compare as C
from fluidgpt.checkpoints import FORMAT_VERSION, load_checkpoint, read_checkpoint
from fluidgpt.cli import main
from fluidgpt.datainfo import read_data_info
from fluidgpt.module import load_module
from tests.fluidgpt.test_cli import error_line, run
from tests.fluidgpt.test_compare import tiny_experiment
from tests.fluidgpt.test_predict import KINDS, _train

#: Every kind of checkpoint the package writes (trajectory models and the erosion CNN; the
#: scalers travel inside each; the direct surrogates are refitted, never saved).
NAMES = ["gpt", "lstm", "bilstm", "erosion"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One checkpoint of each kind, one epoch each over the mock dataset, as compare and
    fit write them (Trainer.save_checkpoint with the data description)."""
    tmp = tmp_path_factory.mktemp("versions")
    config = tiny_experiment(tmp)
    ds = C.load_data(config)
    paths = {}
    for name in NAMES:
        kind, overrides = KINDS[name]
        _, data, _ = _train(config, ds, kind, overrides, tmp / f"{name}.ckpt")
        paths[name] = tmp / f"{name}.ckpt"
    return {"paths": paths, "conditions": list(data.condition_names)}


def _resaved(src, dst, **changes):
    ckpt = torch.load(src, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del ckpt[key]
        else:
            ckpt[key] = value
    torch.save(ckpt, dst)
    return dst


# ------------------------------------------------------------------------- what is written
@pytest.mark.parametrize("name", NAMES)
def test_every_checkpoint_kind_loads_with_weights_only_and_carries_the_version(written, name):
    ckpt = torch.load(written["paths"][name], weights_only=True)
    assert ckpt["format_version"] == FORMAT_VERSION == 1
    assert read_checkpoint(written["paths"][name])["format_version"] == 1
    assert load_checkpoint(written["paths"][name]).kind == KINDS[name][0].replace("bi", "")


# --------------------------------------------------------------- versions this release reads
@pytest.mark.parametrize("version, message", [
    (7, "checkpoint format version 7; this release reads version 1; a newer release wrote it"),
    (0, "checkpoint format version 0; this release reads version 1"),
    (1.0, "checkpoint format version 1.0 is not an integer; this release reads version 1"),
])
def test_a_version_this_release_does_not_read_is_refused(written, tmp_path, version, message):
    path = _resaved(written["paths"]["gpt"], tmp_path / "other.ckpt", format_version=version)
    for load in (load_module, load_checkpoint, read_data_info):
        with pytest.raises(ValueError) as err:
            load(str(path))
        assert str(err.value) == f"{path}: {message}", load.__name__


@pytest.mark.parametrize("command", ["info", "predict"])
def test_a_future_version_is_one_line_and_exit_status_2(written, tmp_path, capsys, command):
    path = _resaved(written["paths"]["erosion"], tmp_path / "future.ckpt", format_version=7)
    argv = {"info": ["info", "--checkpoint", str(path)],
            "predict": ["predict", "--checkpoint", str(path), "--conditions",
                        "main_inlet_speed=9", "--output", str(tmp_path / "p.zarr")]}[command]
    line = error_line(capsys, *argv)
    assert line.endswith(f"{path}: checkpoint format version 7; this release reads version 1;"
                         " a newer release wrote it")
    assert not (tmp_path / "p.zarr").exists()


def test_a_checkpoint_without_a_version_reads_as_version_1(written, tmp_path, capsys):
    path = _resaved(written["paths"]["lstm"], tmp_path / "old.ckpt", format_version=None)
    assert load_module(str(path)).kind == "lstm"
    code, out, err = run(capsys, "info", "--checkpoint", str(path), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["format_version"] == 1 and info["format_version_stored"] is False


def test_another_packages_checkpoint_is_refused_by_its_kind_not_its_version(tmp_path):
    torch.save({"format_version": 7, "state_dict": {}, "hyper_parameters": {"contract": {}}},
               tmp_path / "geo.ckpt")
    with pytest.raises(ValueError, match="is not a fluidgpt checkpoint"):
        load_module(str(tmp_path / "geo.ckpt"))


# ----------------------------------------------------------------- fluidgpt info --checkpoint
@pytest.mark.parametrize("name", NAMES)
def test_info_json_parses_and_agrees_with_the_file(written, capsys, name):
    path = written["paths"][name]
    code, out, err = run(capsys, "info", "--checkpoint", str(path), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["kind"] == name and info["package"] == "fluidgpt"
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["format_version"] == 1 and info["format_version_stored"] is True
    data = read_data_info(str(path))
    assert [c["name"] for c in info["conditions"]] == written["conditions"] == data.conditions
    assert [[c["low"], c["high"]] for c in info["conditions"]] == [
        list(r) for r in zip(data.low, data.high)]
    assert info["particles"] == 4 and info["time"]["steps"] == 6 and info["wall"]["faces"] == 10
    assert info["training_data"]["dataset"] == "mock"
    assert info["training_data"]["split"] == "block"
    module = load_module(str(path))
    assert info["parameters"] == sum(p.numel() for p in module.parameters())
    assert set(info["scalers"]) == set(module.scalers)


def test_info_text_names_kind_conditions_version_and_hash(written, capsys):
    path = written["paths"]["bilstm"]
    code, out, err = run(capsys, "info", "--checkpoint", str(path))
    assert code == 0, err
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256          {sha}\n" in out
    assert "kind            bilstm: BiLSTM trajectory baseline" in out
    assert "format version  1\n" in out
    assert "conditions      main_inlet_speed [m s-1] 6 .. 12\n" in out
    assert "particle_diameter [m] 2e-05 .. 0.0001\n" in out
    assert "particles       4 (3 state features: positions)" in out


@pytest.mark.parametrize("content, expected", [
    (b"", "the file is empty or truncated"),
    (bytes(range(256)) * 8, "not a fluidgpt checkpoint"),
])
def test_info_of_a_bad_file_is_one_line(tmp_path, capsys, content, expected):
    (tmp_path / "bad.ckpt").write_bytes(content)
    assert expected in error_line(capsys, "info", "--checkpoint", str(tmp_path / "bad.ckpt"))
    assert "no such checkpoint" in error_line(capsys, "info", "--checkpoint",
                                              str(tmp_path / "none.ckpt"))
    with pytest.raises(SystemExit) as stop:  # --checkpoint is required
        main(["info"])
    assert stop.value.code == 2
