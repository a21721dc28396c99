"""GeoFormerModule: loss, a real (tiny) training run, checkpoints loaded safely."""

import pytest
import torch

from geoformer.data import GeoDataModule, write_training_store
from geoformer.module import PANGU_LOSS_WEIGHTS, load_module
from tests.conftest import mock_era5, tiny_module


def _batch(module, B=2, steps=1):
    cfg = module.config
    V, Z, S = len(cfg.upper_vars), len(cfg.levels), len(cfg.surface_vars)
    H, W = cfg.grid
    g = torch.Generator().manual_seed(0)
    mean_u = module.normalizer.upper_mean[None, :, :, None, None]
    mean_s = module.normalizer.surface_mean[None, :, None, None]
    return {
        "upper": mean_u + torch.randn(B, V, Z, H, W, generator=g),
        "surface": mean_s + torch.randn(B, S, H, W, generator=g),
        "target_upper": mean_u[:, None] + torch.randn(B, steps, V, Z, H, W, generator=g),
        "target_surface": mean_s[:, None] + torch.randn(B, steps, S, H, W, generator=g),
    }


def test_loss_is_the_weighted_mae_with_a_quarter_surface_weight():
    module = tiny_module(mock_era5())
    cfg = module.config
    B, (H, W) = 1, cfg.grid
    V, Z, S = len(cfg.upper_vars), len(cfg.levels), len(cfg.surface_vars)
    zero_u, zero_s = torch.zeros(B, V, Z, H, W), torch.zeros(B, S, H, W)
    # Error 1 on geopotential only: upper term = 3.0 / V; error 2 on 2m_temperature only:
    # surface term = 0.25 * 2 * 3.0 / S.
    pu = zero_u.clone()
    pu[:, cfg.upper_vars.index("geopotential")] = 1.0
    ps = zero_s.clone()
    ps[:, cfg.surface_vars.index("2m_temperature")] = 2.0
    loss = module.loss((pu, ps), (zero_u, zero_s))
    expected = PANGU_LOSS_WEIGHTS["geopotential"] / V + 0.25 * 2 * PANGU_LOSS_WEIGHTS[
        "2m_temperature"] / S
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_multi_step_training_feeds_normalised_outputs_back():
    module = tiny_module(mock_era5())
    batch = _batch(module, steps=3)
    calls = []
    net_forward = module.net.forward

    def spy(u, s):
        calls.append(u.detach().clone())
        return net_forward(u, s)

    module.net.forward = spy
    loss, preds = module._shared_step(batch, 3)
    assert len(calls) == 3 and len(preds) == 3
    torch.testing.assert_close(calls[1], preds[0][0].detach())  # normalised, unchanged
    assert torch.isfinite(loss)


def test_forecast_step_is_normalise_net_denormalise():
    module = tiny_module(mock_era5()).eval()
    batch = _batch(module)
    u, s = module.forecast_step(batch["upper"], batch["surface"])
    nu, ns = module.normalizer.normalize(batch["upper"], batch["surface"])
    expected = module.normalizer.denormalize(*module.net(nu, ns))
    torch.testing.assert_close(u, expected[0])
    torch.testing.assert_close(s, expected[1])


@pytest.mark.slow
def test_training_reduces_the_loss_and_checkpoints_load_weights_only(tmp_path):
    import lightning as L

    ds = mock_era5(n_time=40)
    store = write_training_store(ds, tmp_path / "train.zarr")
    t = [str(v) for v in ds.time.values]
    dm = GeoDataModule(str(store), lead_hours=6, train=(t[0], t[29]), val=(t[30], t[39]),
                       batch_size=4)
    module = tiny_module(ds, lead_hours=6, embed_dim=16, heads=(2, 4, 4, 2))
    module.hparams.lr = 3e-3
    trainer = L.Trainer(max_epochs=8, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    before = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/loss"]
    trainer.fit(module, datamodule=dm)
    after = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/loss"]
    assert after < 0.8 * before
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)  # no pickled objects anywhere
    assert raw["hyper_parameters"]["contract"]["lead_hours"] == 6
    loaded = load_module(path)
    batch = _batch(module)
    module.eval()
    for a, b in zip(loaded.forecast_step(batch["upper"], batch["surface"]),
                    module.forecast_step(batch["upper"], batch["surface"])):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(loaded.net.constants, module.net.constants)


def test_load_module_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_module(tmp_path / "missing.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a geoformer checkpoint"):
        load_module(tmp_path / "other.ckpt")


def test_residual_task_adds_the_network_output_to_the_state():
    ds = mock_era5()
    plain, residual = tiny_module(ds), tiny_module(ds)
    residual.hparams.residual = True
    residual.net.load_state_dict(plain.net.state_dict())
    batch = _batch(plain)
    u, s = plain.normalizer.normalize(batch["upper"], batch["surface"])
    pu, ps = plain(u, s)
    ru, rs = residual(u, s)
    torch.testing.assert_close(ru, u + pu)
    torch.testing.assert_close(rs, s + ps)


def test_mse_loss_squares_the_same_weighted_terms():
    ds = mock_era5()
    module = tiny_module(ds, module_args={"loss_kind": "mse"})
    cfg = module.config
    B, (H, W) = 1, cfg.grid
    V, Z, S = len(cfg.upper_vars), len(cfg.levels), len(cfg.surface_vars)
    zero_u, zero_s = torch.zeros(B, V, Z, H, W), torch.zeros(B, S, H, W)
    pu = zero_u.clone()
    pu[:, cfg.upper_vars.index("temperature")] = 3.0
    ps = zero_s.clone()
    ps[:, cfg.surface_vars.index("mean_sea_level_pressure")] = -2.0
    loss = module.loss((pu, ps), (zero_u, zero_s))
    expected = 9.0 * PANGU_LOSS_WEIGHTS["temperature"] / V + 0.25 * 4.0 * PANGU_LOSS_WEIGHTS[
        "mean_sea_level_pressure"] / S
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_time_schedule_decays_with_training_seconds_not_steps():
    ds = mock_era5()
    module = tiny_module(ds, module_args={"schedule": "time", "schedule_seconds": 100.0})

    class _Trainer:
        estimated_stepping_batches = 10**6  # a step-based cosine would barely have moved

    module._trainer = _Trainer()
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    factor = sched.lr_lambdas[0]
    assert factor(0) == pytest.approx(0.5)  # warm-up (2 steps) is still by steps
    clock = {"now": 0.0}
    module.training_seconds = lambda: clock["now"]
    for seconds, expected in ((0.0, 1.0), (50.0, 0.5), (100.0, 0.0), (250.0, 0.0)):
        clock["now"] = seconds
        assert factor(5) == pytest.approx(expected, abs=1e-12), seconds


def test_bad_loss_kind_and_schedule_are_rejected():
    with pytest.raises(ValueError, match="loss_kind must be 'mae' or 'mse'"):
        tiny_module(mock_era5(), module_args={"loss_kind": "huber"})
    with pytest.raises(ValueError, match="schedule_seconds must be positive"):
        tiny_module(mock_era5(), module_args={"schedule": "time", "schedule_seconds": 0})
    with pytest.raises(ValueError, match="needs schedule_seconds"):
        tiny_module(mock_era5(), module_args={"schedule": "time"})


def test_an_untrained_residual_module_is_persistence_and_still_learns():
    module = tiny_module(mock_era5(), module_args={"residual": True})
    batch = _batch(module)
    u, s = module.normalizer.normalize(batch["upper"], batch["surface"])
    pu, ps = module(u, s)
    assert torch.equal(pu, u) and torch.equal(ps, s)
    loss, _ = module._shared_step(batch, 1)
    loss.backward()
    assert module.net.recover.upper.weight.grad.abs().sum() > 0
    assert module.net.recover.surface.weight.grad.abs().sum() > 0


def test_checkpoints_from_before_the_lightningcli_schema_still_load(tmp_path):
    module = tiny_module(mock_era5(), module_args={"loss_kind": "mse"}).eval()
    c = module.contract
    old = {"model": module.config.to_dict(), "normalization": c.normalization,
           "lead_hours": c.lead_hours, "latitude": list(c.latitude),
           "longitude": list(c.longitude), "loss_weights": None, "surface_weight": 0.25,
           "lr": 5e-4, "weight_decay": 3e-6, "warmup_steps": 2, "min_lr": 0.0,
           "rollout_steps": 1, "residual": False, "data": {"store": "x.zarr"},
           "schedule_seconds": None, "loss_kind": "mse"}
    torch.save({"hyper_parameters": old, "state_dict": module.state_dict()}, tmp_path / "o.ckpt")
    loaded = load_module(tmp_path / "o.ckpt")
    assert loaded.config == module.config and loaded.contract.store == "x.zarr"
    assert loaded.hparams.loss_kind == "mse" and loaded.hparams.schedule == "steps"
    batch = _batch(module)
    for a, b in zip(loaded.forecast_step(batch["upper"], batch["surface"]),
                    module.forecast_step(batch["upper"], batch["surface"])):
        torch.testing.assert_close(a, b)


def test_the_network_comes_from_the_preset_and_the_grid_from_the_contract():
    module = tiny_module(mock_era5(grid=(8, 16)))
    assert module.config.grid == (8, 16) == module.contract.grid
    assert module.hparams.network["embed_dim"] == module.config.embed_dim  # written out
    assert "grid" not in module.hparams.network
