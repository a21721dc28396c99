"""Format versions of checkpoints and statistics, and `geoformer info --checkpoint`."""

import hashlib
import json

import lightning as L
import pytest
import torch
import xarray as xr

from geoformer.checkpoints import (
    FORMAT_VERSION,
    STATISTICS_VERSION,
    CheckpointError,
    load_checkpoint,
)
from geoformer.cli import main
from geoformer.data import GeoDataModule, TimeRange, load_statistics, write_training_store
from geoformer.demo import PRETRAINED_DIR, export_checkpoint
from geoformer.module import GeoFormerModule, load_module
from tests.conftest import mock_era5

TINY_NETWORK = {"preset": "small-5.625", "patch": [2, 2, 2], "window": [2, 2, 4],
                "embed_dim": 8, "depths": [2, 2, 2, 2], "heads": [2, 2, 2, 2]}
SHIPPED = sorted(PRETRAINED_DIR.glob("*.ckpt"))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A tiny store (its statistics cache written by the data module), a Lightning checkpoint
    of one training step on it and the slim export of that checkpoint."""
    root = tmp_path_factory.mktemp("versions")
    ds = mock_era5(n_time=12)
    store = write_training_store(ds, root / "train.zarr")
    t = [str(v)[:19] for v in ds.time.values]
    dm = GeoDataModule(str(store), 6, train=(t[0], t[7]), val=(t[8], t[11]), batch_size=2)
    module = GeoFormerModule(contract=dm.contract, network=TINY_NETWORK,
                             constants=dm.constants(), warmup_steps=1)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(root / "lightning.ckpt")
    slim = export_checkpoint(root / "lightning.ckpt", root / "slim.ckpt")
    return {"store": store, "train": TimeRange(t[0], t[7]), "dm": dm, "root": root,
            "lightning": root / "lightning.ckpt", "slim": slim}


def _variables(dm):
    return dm.upper_vars, dm.surface_vars, dm.static_vars


def _with_version(src, dst, version):
    ckpt = torch.load(src, weights_only=True)
    ckpt["format_version"] = version
    torch.save(ckpt, dst)
    return dst


# ------------------------------------------------------------------------- what is written
@pytest.mark.parametrize("kind", ["lightning", "slim"])
def test_every_checkpoint_kind_loads_with_weights_only_and_carries_the_version(written, kind):
    ckpt = torch.load(written[kind], weights_only=True)
    assert ckpt["format_version"] == FORMAT_VERSION == 1
    assert ("optimizer_states" in ckpt) == (kind == "lightning")
    assert load_checkpoint(written[kind])["format_version"] == 1
    load_module(written[kind])


def test_the_statistics_cache_carries_its_version(written):
    cached = xr.open_zarr(written["store"], group="statistics")
    assert cached.attrs["format_version"] == STATISTICS_VERSION == 1
    assert cached.attrs["train_period"] == f"{written['train'].start}..{written['train'].stop}"


# --------------------------------------------------------------- versions this release reads
@pytest.mark.parametrize("version, message", [
    (7, "checkpoint format version 7; this release reads version 1; a newer release wrote it"),
    (0, "checkpoint format version 0; this release reads version 1"),
    ("1", "checkpoint format version '1' is not an integer; this release reads version 1"),
])
def test_a_version_this_release_does_not_read_is_refused(written, tmp_path, version, message):
    path = _with_version(written["slim"], tmp_path / "other.ckpt", version)
    with pytest.raises(CheckpointError) as err:
        load_module(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_future_version_is_one_line_and_exit_status_2(written, tmp_path, capsys):
    path = _with_version(written["lightning"], tmp_path / "future.ckpt", 7)
    assert main(["info", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"geoformer info: {path}: checkpoint format version 7; this release reads version 1; "
        "a newer release wrote it"]


def test_a_checkpoint_without_a_version_reads_as_version_1(written, tmp_path, capsys):
    ckpt = torch.load(written["slim"], weights_only=True)
    del ckpt["format_version"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    load_module(tmp_path / "old.ckpt")
    assert main(["info", "--checkpoint", str(tmp_path / "old.ckpt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format_version"] == 1 and info["format_version_stored"] is False


def test_a_statistics_cache_of_another_version_is_refused_and_kept(written):
    store, (upper, surface, static) = written["store"], _variables(written["dm"])
    stats = xr.open_zarr(store, group="statistics").load()
    stats.attrs["format_version"] = 7
    stats.to_zarr(store, group="statistics", mode="w", zarr_format=2)
    try:
        with pytest.raises(CheckpointError, match=r"train\.zarr/statistics: statistics format "
                                                  "version 7; this release reads version 1"):
            load_statistics(store, written["train"], upper, surface, static)
        # refused, not recomputed over: the release that wrote it still finds it
        assert xr.open_zarr(store, group="statistics").attrs["format_version"] == 7
        # one written before versioning (no attribute) is read as version 1, not recomputed
        del stats.attrs["format_version"]
        stats.attrs["marker"] = "cached"
        stats.to_zarr(store, group="statistics", mode="w", zarr_format=2)
        again = load_statistics(store, written["train"], upper, surface, static)
        assert again.attrs["marker"] == "cached"
    finally:
        stats.attrs.pop("marker", None)
        stats.attrs["format_version"] = STATISTICS_VERSION
        stats.to_zarr(store, group="statistics", mode="w", zarr_format=2)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_shipped_checkpoints_load_as_versioned_or_pre_versioning_files(path):
    ckpt = load_checkpoint(path)
    # both were exported with a version on 2026-12-03 (make pretrained)
    assert ckpt["format_version"] == FORMAT_VERSION
    module = load_module(path)
    assert module.hparams["contract"]["lead_hours"] in (6, 24)


# ---------------------------------------------------------------- geoformer info --checkpoint
def test_info_text_names_kind_variables_version_and_hash(written, capsys):
    assert main(["info", "--checkpoint", str(written["lightning"])]) == 0
    out = capsys.readouterr().out
    sha = hashlib.sha256(written["lightning"].read_bytes()).hexdigest()
    assert f"sha256          {sha}" in out
    assert "kind            lightning" in out and "format version  1\n" in out
    assert f"upper-air       {', '.join(written['dm'].upper_vars)}\n" in out
    assert "grid            8 x 16" in out and "levels          3: 1000 850 500 hPa" in out
    assert f"{written['train'].start} .. {written['train'].stop}" in out
    assert str(written["store"]) in out


@pytest.mark.parametrize("kind", ["lightning", "slim"])
def test_info_json_parses_and_agrees_with_the_file(written, capsys, kind):
    assert main(["info", "--checkpoint", str(written[kind]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == kind and info["package"] == "geoformer"
    assert info["sha256"] == hashlib.sha256(written[kind].read_bytes()).hexdigest()
    assert info["format_version"] == 1 and info["format_version_stored"] is True
    dm = written["dm"]
    assert info["variables"] == {"upper_air": dm.upper_vars, "surface": dm.surface_vars,
                                 "constants": dm.constant_vars}
    assert info["grid"]["latitude"] == 8 and info["grid"]["longitude"] == 16
    assert info["grid"]["latitude_range"] == [90.0, -90.0]
    assert info["statistics"]["period"] == [written["train"].start, written["train"].stop]
    assert info["training"]["store"] == str(written["store"])
    module = load_module(written[kind])
    assert info["parameters"] == sum(p.numel() for p in module.parameters())


def test_info_of_a_checkpoint_written_before_versioning_says_so(tmp_path, capsys):
    # What the shipped 6 h file was until 2026-12-03: the slim layout without the key.
    ckpt = torch.load(PRETRAINED_DIR / "held_suarez_6h.ckpt", weights_only=True)
    del ckpt["format_version"]
    path = tmp_path / "unversioned.ckpt"
    torch.save(ckpt, path)
    assert main(["info", "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kind            slim" in out and "lead time       6 h" in out
    assert "format version  1 (none stored: written before versioning, read as 1)" in out


@pytest.mark.parametrize("args, expected", [
    ([], "not a geoformer checkpoint"),
    (["--grid", "8x16"], "--checkpoint describes a file"),
])
def test_info_of_a_bad_file_or_with_network_options_is_one_line(tmp_path, capsys, args,
                                                                 expected):
    (tmp_path / "random.ckpt").write_bytes(bytes(range(256)) * 8)
    assert main(["info", "--checkpoint", str(tmp_path / "random.ckpt"), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
