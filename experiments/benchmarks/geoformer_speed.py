"""Speed and memory of the geoformer network: prints numbers, asserts nothing.

    .venv/bin/python experiments/benchmarks/geoformer_speed.py [--preset pangu] [--grid 721x1440]
        [--batch 1] [--repeats 3] [--precision bf16|fp32] [--checkpointing] [--attention sdpa]

On a CUDA device: seconds per forward (inference) and per training step, and the peak GPU
memory of a training step. On a CPU the same timings (use small grids: pangu-5.625 or
small-5.625). The paper's reference: about 1.4 s per 24 h forecast on one V100 at 0.25 deg.
"""

from __future__ import annotations

import argparse
import json

import torch
from timing import time_call

from geoformer import GeoFormer, GeoFormerConfig
from geoformer.cli import parse_grid


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="small-5.625")
    p.add_argument("--grid", type=parse_grid)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--attention", choices=["sdpa", "reference"], default="sdpa")
    a = p.parse_args()
    overrides = {"checkpoint_activations": a.checkpointing, "attention": a.attention}
    if a.grid:
        overrides["grid"] = a.grid
    cfg = GeoFormerConfig.from_preset(a.preset, **overrides)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = GeoFormer(cfg).to(device)
    H, W = cfg.grid
    upper = torch.randn(a.batch, len(cfg.upper_vars), len(cfg.levels), H, W, device=device)
    surface = torch.randn(a.batch, len(cfg.surface_vars), H, W, device=device)
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    autocast = torch.autocast(device, dtype=dtype, enabled=a.precision == "bf16")
    opt = torch.optim.AdamW(model.param_groups(3e-6), lr=5e-4)

    def forward() -> None:
        with torch.no_grad(), autocast:
            model(upper, surface)

    def step() -> None:
        with autocast:
            u, s = model(upper, surface)
            loss = u.float().abs().mean() + 0.25 * s.float().abs().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    result = {"preset": a.preset, "grid": list(cfg.grid), "device": device,
              "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "batch": a.batch, "precision": a.precision, "checkpointing": a.checkpointing,
              "attention": a.attention, "parameters": model.num_parameters()}
    for name, fn in (("forward_s", forward), ("train_step_s", step)):
        model.train(name == "train_step_s")
        result[name], peak = time_call(fn, a.repeats, device)
        if peak is not None:
            result[name[:-2] + "_peak_gib"] = peak
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
