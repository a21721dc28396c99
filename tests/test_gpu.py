"""Contracts that need a CUDA device (skipped elsewhere; run with ``pytest -m gpu``).

The CPU suite already pins the mathematics; these check that the same networks run on a GPU,
give the CPU's answer there, and train with bf16 autocast and activation checkpointing.
"""

import pytest
import torch

from tests.conftest import random_inputs, tiny_model

pytestmark = pytest.mark.gpu


def _cuda_pair(model):
    """(cpu copy, cuda copy) of a network with identical weights, both in eval mode."""
    import copy

    return copy.deepcopy(model).eval(), copy.deepcopy(model).cuda().eval()


@pytest.mark.parametrize("attention", ["sdpa", "reference"])
def test_geoformer_on_cuda_gives_the_cpu_answer(attention):
    cpu, gpu = _cuda_pair(tiny_model(attention=attention))
    upper, surface = random_inputs(cpu.config)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        u_cpu, s_cpu = cpu(upper, surface)
        u_gpu, s_gpu = gpu(upper.cuda(), surface.cuda())
    torch.testing.assert_close(u_gpu.cpu(), u_cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, rtol=1e-4, atol=1e-4)


def test_geoformer_bf16_training_step_with_checkpointing_on_cuda():
    torch.manual_seed(0)
    plain = tiny_model(checkpoint_activations=False).cuda().train()
    ckpt = tiny_model(checkpoint_activations=True).cuda().train()
    ckpt.load_state_dict(plain.state_dict())
    upper, surface = (x.cuda() for x in random_inputs(plain.config))
    grads = []
    for net in (plain, ckpt):
        torch.manual_seed(1)  # same drop-path draws in both
        with torch.autocast("cuda", dtype=torch.bfloat16):
            u, s = net(upper, surface)
            loss = u.float().abs().mean() + 0.25 * s.float().abs().mean()
        loss.backward()
        assert torch.isfinite(loss)
        grads.append({n: p.grad.detach().clone() for n, p in net.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(grads[1][name], g, rtol=2e-2, atol=2e-3, msg=name)


def fit_tiny_module(accelerator: str, precision: str, steps: int = 3) -> None:
    """Three optimiser steps of GeoFormerModule under a Lightning Trainer on synthetic batches."""
    import lightning as L
    from torch.utils.data import DataLoader

    from tests.conftest import mock_era5, tiny_module

    module = tiny_module(mock_era5(n_time=4), lead_hours=6)
    cfg = module.config
    V, Z, S = len(cfg.upper_vars), len(cfg.levels), len(cfg.surface_vars)
    H, W = cfg.grid
    g = torch.Generator().manual_seed(0)
    mean_u = module.normalizer.upper_mean[:, :, None, None]
    mean_s = module.normalizer.surface_mean[:, None, None]
    samples = [{"upper": mean_u + torch.randn(V, Z, H, W, generator=g),
                "surface": mean_s + torch.randn(S, H, W, generator=g),
                "target_upper": mean_u[None] + torch.randn(1, V, Z, H, W, generator=g),
                "target_surface": mean_s[None] + torch.randn(1, S, H, W, generator=g)}
               for _ in range(2 * steps)]
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision,
                        max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer.fit(module, train_dataloaders=DataLoader(samples, batch_size=2))
    assert trainer.global_step == steps
    assert all(torch.isfinite(p).all() for p in module.parameters())
    changed = [n for n, p in module.named_parameters()
               if not torch.equal(p.detach().cpu(), before[n].cpu())]
    assert changed, "no parameter moved in the optimiser steps"


def test_geoformer_module_fits_on_cuda_with_bf16():
    fit_tiny_module("cuda", "bf16-mixed")


def test_fluidgpt_kv_cached_rollout_on_cuda_matches_recompute_and_cpu():
    from fluidgpt.gpt import FluidGPT
    from fluidgpt.rollout import rollout
    from tests.fluidgpt.factories import gpt_config

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = FluidGPT(gpt_config()).eval()
    gpu = FluidGPT(gpt_config()).cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    cfg = cpu.config
    g = torch.Generator().manual_seed(0)
    first = torch.randn(3, 1, cfg.n_particles, cfg.n_features, generator=g)
    cond = torch.randn(3, cfg.n_conditions, generator=g)
    with torch.no_grad():
        ref = rollout(cpu, first, cond, steps=8)
        cached = rollout(gpu, first.cuda(), cond.cuda(), steps=8, use_cache=True)
        recomputed = rollout(gpu, first.cuda(), cond.cuda(), steps=8, use_cache=False)
    torch.testing.assert_close(cached, recomputed, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cached.cpu(), ref, rtol=1e-3, atol=1e-3)
