"""Lightning modules, losses, metrics, scalers and checkpoints (tiny, CPU)."""

import json
import math
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import torch

from fluidgpt.cnn import split_erosion
from fluidgpt.config import TrainConfig
from fluidgpt.losses import masked_mse, masked_r2, sliding_windows
from fluidgpt.module import (
    ErosionModule,
    GPTModule,
    SequenceModule,
    StopAtThreshold,
    load_module,
)
from fluidgpt.modulebase import warmup_cosine
from fluidgpt.rollout import rollout
from fluidgpt.scalers import Scaler
from tests.fluidgpt.factories import (
    K,
    T,
    erosion_config,
    filled,
    gpt_config,
    loader,
    lstm_config,
    paper_gpt_config,
    synthetic_cases,
)

SCALERS = {"positions": 3, "conditions": K}


def paper_module(**train):
    # P = 3, K = 2: raw tokens of 15 numbers, 3 heads.
    model = paper_gpt_config(n_particles=3, n_conditions=K, n_head=3)
    return GPTModule(model, TrainConfig.from_preset("paper-gpt", **train), SCALERS)


MODULES = {
    "gpt-paper": paper_module,
    "gpt-default": lambda: GPTModule(gpt_config(), TrainConfig.from_preset("fluidgpt"), SCALERS),
    "lstm": lambda: SequenceModule(lstm_config(), TrainConfig.from_preset("paper-lstm"), SCALERS),
    "bilstm": lambda: SequenceModule(lstm_config(bidirectional=True),
                                     TrainConfig.from_preset("paper-lstm"), SCALERS),
    "erosion-paper": lambda: ErosionModule(erosion_config(arch="paper", magnitude_head=False),
                                           TrainConfig.from_preset("paper-cnn"), SCALERS),
    "erosion-default": lambda: ErosionModule(erosion_config(),
                                             TrainConfig.from_preset("fluidgpt-cnn"), SCALERS),
    "erosion-paper-modes": lambda: ErosionModule(
        erosion_config(arch="paper", magnitude_head=True, output_modes=3),
        TrainConfig.from_preset("fluidgpt-cnn"), SCALERS),
}


def fitted(module):
    cases = synthetic_cases()
    module.scalers["positions"].fit(cases["positions"], cases["valid"])
    module.scalers["conditions"].fit(cases["conditions"])
    if "log_peak" in module.scalers:
        module.fit_log_peak(cases["erosion"])
    if module.kind == "erosion":
        module.fit_output_basis(cases["erosion"])
    return module


def trainer(**kwargs):
    values = dict(max_steps=2, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                  num_sanity_val_steps=0, limit_val_batches=1)
    values.update(kwargs)
    return L.Trainer(**values)


# -------------------------------------------------------------------------------- metrics
def test_masked_mse_by_hand_and_with_nan_in_invalid_entries():
    pred = torch.zeros(1, 2, 2, 3)
    target = torch.ones(1, 2, 2, 3)
    target[0, 1, 1] = torch.tensor([3.0, float("nan"), 5.0])
    valid = torch.tensor([[[True, True], [True, False]]])
    assert masked_mse(pred, target, valid).item() == pytest.approx(1.0)
    pred.requires_grad_(True)
    loss = masked_mse(pred, target, valid)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and torch.count_nonzero(pred.grad[0, 1, 1]) == 0
    torch.testing.assert_close(pred.grad[0, 0, 0], torch.full((3,), -2.0 / 9))
    assert masked_mse(torch.zeros(2, 3), torch.full((2, 3), 2.0)).item() == 4.0


def test_masked_r2_by_hand():
    target = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, -7.0]])  # (N, F)
    valid = torch.tensor([True, True, True, False])
    assert masked_r2(target, target, valid).item() == pytest.approx(1.0)
    mean = torch.tensor([[2.0, 20.0]]).expand(4, 2)
    assert masked_r2(mean, target, valid).item() == pytest.approx(0.0)
    # Feature 0 off by 1 everywhere: SS_res 3, SS_tot 2 -> R2 -0.5; feature 1 exact -> 1.
    off = target + torch.tensor([1.0, 0.0])
    assert masked_r2(off, target, valid).item() == pytest.approx((-0.5 + 1.0) / 2)


def test_sliding_windows_are_the_papers_4_step_stride_2_windows():
    x = torch.arange(2 * 8.0).reshape(2, 8, 1, 1).expand(2, 8, 3, 2)  # (B, T, P, F)
    w = sliding_windows(x, 4, 2)
    assert w.shape == (2 * 3, 4, 3, 2)
    starts = [0, 2, 4]
    for b in range(2):
        for i, s in enumerate(starts):
            assert torch.equal(w[3 * b + i], x[b, s:s + 4])
    with pytest.raises(ValueError, match="shorter than the training window"):
        sliding_windows(x, 9, 2)


def test_warmup_cosine_by_hand():
    f = warmup_cosine(total_steps=110, warmup_fraction=10 / 110, floor=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


# -------------------------------------------------------------------------------- scalers
def test_scaler_statistics_by_hand_ignore_invalid_entries():
    x = torch.tensor([[1.0, 10.0], [3.0, 10.0], [1000.0, -1000.0]])
    scaler = Scaler(2).fit(x, valid=torch.tensor([True, True, False]))
    torch.testing.assert_close(scaler.mean, torch.tensor([2.0, 10.0]))
    # Feature 0: population std 1; feature 1 is constant: std 1 (centred, not blown up).
    torch.testing.assert_close(scaler.std, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(scaler(torch.tensor([[4.0, 12.0]])), torch.tensor([[2.0, 2.0]]))


def test_scaler_round_trip_and_state_dict():
    g = torch.Generator().manual_seed(0)
    x = 5.0 + 3.0 * torch.randn(4, 8, 3, 3, generator=g)
    scaler = Scaler(3).fit(x)
    z = scaler(x)
    torch.testing.assert_close(z.mean(dim=(0, 1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 1, 2), unbiased=False), torch.ones(3))
    torch.testing.assert_close(scaler.inverse(z), x)
    restored = Scaler(3)
    restored.load_state_dict(scaler.state_dict())
    assert set(scaler.state_dict()) == {"mean", "std", "count"}
    assert torch.equal(restored(x), z)


def test_scaler_fit_in_chunks_equals_fit_at_once():
    g = torch.Generator().manual_seed(1)
    x = 100.0 + torch.randn(10, 4, generator=g)
    valid = torch.rand(10, generator=g) > 0.3
    once = Scaler(4).fit(x, valid)
    chunks = Scaler(4).fit_batches([(x[:3], valid[:3]), (x[3:7], valid[3:7]),
                                    (x[7:], valid[7:])])
    torch.testing.assert_close(chunks.mean, once.mean)
    torch.testing.assert_close(chunks.std, once.std)
    assert chunks.count == once.count == valid.sum()
    torch.testing.assert_close(Scaler(4).fit(x).std, Scaler(4).fit(x, torch.ones(10) > 0).std)


def test_scaler_errors():
    with pytest.raises(RuntimeError, match="never fitted"):
        Scaler(3)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="3 features, found shape \\(2, 4\\)"):
        Scaler(3).fit(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no valid values"):
        Scaler(1).fit(torch.zeros(2, 1), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        Scaler(1).fit(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="valid mask must have shape \\(2,\\)"):
        Scaler(1).fit(torch.zeros(2, 1), torch.ones(3, dtype=torch.bool))


# ------------------------------------------------------------------------------- modules
def test_paper_gpt_loss_is_teacher_forced_mse_over_windows_of_whole_tokens():
    module = paper_module()
    cases = filled(synthetic_cases())
    states, cond, valid = cases["positions"], cases["conditions"], cases["valid"]
    total, count = 0.0, 0
    for b in range(states.shape[0]):
        for s in range(0, T - 4 + 1, 2):  # windows of 4 steps, stride 2
            pred = module.model(states[b:b + 1, s:s + 3], cond[b:b + 1])  # steps s..s+2
            target = torch.cat([states[b:b + 1, s + 1:s + 4],
                                cond[b:b + 1, None, None].expand(1, 3, 3, K)], -1)
            err = (pred - target).square() * valid[b:b + 1, s + 1:s + 4, :, None]
            total, count = total + err.sum(), count + valid[b, s + 1:s + 4].sum() * (3 + K)
    torch.testing.assert_close(module.losses(cases)["loss"], total / count)


def test_hyperparameters_are_plain_values():
    for make in MODULES.values():
        module = make()
        hp = dict(module.hparams)
        assert json.loads(json.dumps(hp)) == hp
        assert set(hp) == {"model", "train", "scalers"}


def test_paper_optimiser_is_adam_with_an_epoch_cyclic_rate():
    module = paper_module()
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert type(opt) is torch.optim.Adam and conf["lr_scheduler"]["interval"] == "epoch"
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-7)
    for _ in range(5):
        opt.step()
        sched.step()
    # exp_range at the top of the first cycle: base + (max - base) * gamma ** epoch.
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-7 + (2e-3 - 1e-7) * 0.85**5)


def test_default_optimiser_does_not_decay_biases_norms_and_positions():
    module = MODULES["gpt-default"]()
    module.trainer = SimpleNamespace(estimated_stepping_batches=100)
    opt = module.configure_optimizers()["optimizer"]
    assert type(opt) is torch.optim.AdamW
    decay, keep = opt.param_groups
    assert decay["weight_decay"] == 0.05 and keep["weight_decay"] == 0.0
    kept = {id(p) for p in keep["params"]}
    for name, p in module.model.named_parameters():
        assert (id(p) in kept) == (p.ndim < 2 or name.startswith("pos_embed")), name


def test_multi_step_rollout_loss_is_added():
    cases = filled(synthetic_cases())
    plain = GPTModule(gpt_config(), TrainConfig.from_preset("fluidgpt"))
    multi = GPTModule(gpt_config(), TrainConfig.from_preset("fluidgpt", rollout_steps=3,
                                                            rollout_weight=0.5))
    multi.load_state_dict(plain.state_dict())
    a, b = plain.losses(cases), multi.losses(cases)
    gen = rollout(multi.model, cases["positions"][:, :1], cases["conditions"], 3)
    expected = masked_mse(gen[:, 1:], cases["positions"][:, 1:4], cases["valid"][:, 1:4])
    torch.testing.assert_close(b["rollout_loss"], expected)
    torch.testing.assert_close(b["loss"], a["loss"] + 0.5 * expected)


def test_particle_layout_trains_on_a_random_subset_of_particles_and_validates_on_all():
    cases = filled(synthetic_cases())
    P = cases["positions"].shape[2]
    module = GPTModule(gpt_config(layout="particle"),
                       TrainConfig.from_preset("fluidgpt", particles=2))
    torch.manual_seed(0)
    module.train()
    sub = module.losses(cases)["loss"]
    torch.manual_seed(0)  # the same draw, made by hand
    pick = torch.rand(cases["positions"].shape[0], P).argsort(dim=1)[:, :2]
    picked = {**cases,
              "positions": torch.stack([c[:, i] for c, i in zip(cases["positions"], pick)]),
              "valid": torch.stack([v[:, i] for v, i in zip(cases["valid"], pick)])}
    whole = GPTModule(gpt_config(layout="particle"), TrainConfig.from_preset("fluidgpt"))
    whole.load_state_dict(module.state_dict())
    whole.train()
    torch.manual_seed(1)  # dropout is off in the tiny config; the draw is the only randomness
    torch.testing.assert_close(sub, whole.losses(picked)["loss"])
    module.eval()
    torch.testing.assert_close(module.losses(cases)["loss"], whole.eval().losses(cases)["loss"])


def test_erosion_loss_uses_the_pattern_and_the_scaled_log_peak():
    module = fitted(MODULES["erosion-default"]())
    cases = filled(synthetic_cases())
    pattern, log_peak = split_erosion(cases["erosion"])
    pred = module.model(cases["positions"], cases["conditions"], cases["valid"])
    scaler = module.scalers["log_peak"]
    expected = ((pred.pattern - pattern).square().mean()
                + ((pred.log_peak - (log_peak - scaler.mean) / scaler.std).square().mean()))
    torch.testing.assert_close(module.losses(cases)["loss"], expected)
    out = module.predict_step(cases)
    torch.testing.assert_close(out["rate"], out["pattern"] * out["log_peak"].exp()[:, None])


def test_forecasts_start_from_the_true_first_step():
    cases = filled(synthetic_cases())
    for name in ("gpt-paper", "gpt-default", "lstm"):
        module = MODULES[name]().eval()
        with torch.no_grad():
            out = module.predict_step(cases)
        assert out.shape == cases["positions"].shape
        assert torch.equal(out[:, 0], cases["positions"][:, 0])


def test_stop_at_threshold_needs_patience_epochs_in_a_row():
    stop = StopAtThreshold("val/loss", threshold=0.5, patience=2)
    t = SimpleNamespace(sanity_checking=False, should_stop=False, callback_metrics={})
    for value, should_stop in [(0.4, False), (0.6, False), (0.4, False), (0.3, True)]:
        t.callback_metrics = {"val/loss": torch.tensor(value)}
        stop.on_validation_end(t, None)
        assert t.should_stop == should_stop
    restored = StopAtThreshold()
    restored.load_state_dict(stop.state_dict())
    assert restored.count == 2


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", MODULES)
def test_lightning_checkpoint_loads_with_weights_only_and_restores_the_model(name, tmp_path):
    module = fitted(MODULES[name]())
    cases = filled(synthetic_cases())
    fit = trainer()
    fit.fit(module, loader(cases, 2), loader(cases, 2))
    path = tmp_path / "model.ckpt"
    fit.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["hyper_parameters"] == dict(module.hparams)
    restored = type(module)(**ckpt["hyper_parameters"])
    restored.load_state_dict(ckpt["state_dict"])
    also = load_module(str(path))
    third = type(module).load_from_checkpoint(path, weights_only=True)
    module.eval()
    with torch.no_grad():
        expected = module.predict_step(cases)
        for other in (restored, also, third):
            other.eval()
            assert type(other) is type(module)
            got = other.predict_step(cases)
            if isinstance(expected, dict):
                for key in expected:
                    assert torch.equal(got[key], expected[key])
            else:
                assert torch.equal(got, expected)
            for key in module.scalers:
                assert torch.equal(other.scalers[key].mean, module.scalers[key].mean)
                assert other.scalers[key].fitted
    assert ckpt["global_step"] == 2 and ckpt["fluidgpt_module"] == module.kind


def test_gradient_norm_is_clipped_as_configured():
    cases = filled(synthetic_cases())
    norms = {}
    for clip in (0.0, 0.01):
        torch.manual_seed(0)
        module = paper_module(grad_clip=clip)
        trainer(max_steps=1, limit_val_batches=0).fit(module, loader(cases, 4))
        grads = [p.grad for p in module.model.parameters() if p.grad is not None]
        norms[clip] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
    assert norms[0.0] > 0.02  # the gradient is larger than the clip...
    assert norms[0.01] == pytest.approx(0.01, rel=1e-3)  # ...and clipped to it


def test_not_a_fluidgpt_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a fluidgpt checkpoint"):
        load_module(str(path))


# -------------------------------------------------------------------------------- overfit
@pytest.mark.parametrize("name", ["gpt-default", "gpt-paper", "lstm", "erosion-default"])
def test_a_few_dozen_steps_overfit_a_tiny_set(name):
    torch.manual_seed(0)
    module = fitted(MODULES[name]())
    cases = filled(synthetic_cases())
    for key in ("positions", "velocity"):  # scaled, as the pipeline feeds the networks
        cases[key] = module.scalers["positions"](cases[key])
    cases["conditions"] = module.scalers["conditions"](cases["conditions"])
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = module.losses(cases)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert math.isfinite(losses[-1])
    assert losses[-1] < 0.2 * losses[0], f"{losses[0]:.4f} -> {losses[-1]:.4f}"


def test_an_erosion_checkpoint_from_before_output_bases_still_loads(tmp_path):
    """The pattern layer used to be a bare Linear (model.head.weight); load_module renames."""
    module = fitted(MODULES["erosion-paper"]())
    cases = filled(synthetic_cases())
    fit = trainer()
    fit.fit(module, loader(cases, 2), loader(cases, 2))
    path = tmp_path / "old.ckpt"
    fit.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {k.replace("head.linear.", "head."): v
                          for k, v in ckpt["state_dict"].items()}
    assert "model.head.weight" in ckpt["state_dict"]
    torch.save(ckpt, path)
    restored = load_module(str(path))
    module.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(restored.predict_step(cases)["pattern"],
                           module.predict_step(cases)["pattern"])
