"""Speed and memory of the fluidgpt networks: prints numbers, asserts nothing.

    .venv/bin/python experiments/benchmarks/fluidgpt_speed.py [--particles 196] [--batch 16]
        [--steps 50] [--repeats 5] [--precision fp32|bf16] [--models paper,fluidgpt,...]

For each network: seconds per training step on a batch of whole trajectories (teacher
forcing for the GPTs, the whole sequence for the LSTMs) and seconds to generate a whole
trajectory from step 0 (the GPT with a KV cache where its config allows, and by recomputing
the context), plus the peak GPU memory on a CUDA device. The paper's network is the `paper`
GPT preset (about 120 M parameters at 196 particles).
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from timing import time_call

from fluidgpt.baselines import SequenceLSTM
from fluidgpt.config import GPTConfig, LSTMConfig
from fluidgpt.gpt import FluidGPT
from fluidgpt.rollout import rollout

MODELS = {
    "paper": lambda P, T: FluidGPT(GPTConfig.from_preset("paper", n_particles=P,
                                                         max_steps=max(T, 50))),
    "fluidgpt": lambda P, T: FluidGPT(GPTConfig.from_preset("fluidgpt", n_particles=P,
                                                            max_steps=max(T, 64))),
    "paper-lstm": lambda P, T: SequenceLSTM(LSTMConfig.from_preset("paper-lstm",
                                                                        n_particles=P)),
    "paper-bilstm": lambda P, T: SequenceLSTM(LSTMConfig.from_preset("paper-bilstm",
                                                                          n_particles=P)),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--particles", type=int, default=196)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--models", default="paper,fluidgpt,paper-lstm,paper-bilstm")
    p.add_argument("--epoch-cases", type=int, default=160,
                   help="cases of one training epoch (the shipped sample: 160): its seconds "
                        "are reported as the measured step time x the batches it takes")
    a = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    autocast = torch.autocast(device, dtype=dtype, enabled=a.precision == "bf16")

    def timed(fn) -> tuple[float, float | None]:
        return time_call(fn, a.repeats, device)

    for name in a.models.split(","):
        row = measure(name, a, device, autocast, timed)
        print(json.dumps(row), flush=True)


def measure(name: str, a: argparse.Namespace, device: str, autocast, timed) -> dict:
    """Train-step and rollout timings of one network."""
    B, T, P = a.batch, a.steps, a.particles
    torch.manual_seed(0)
    model = MODELS[name](P, T).to(device)
    cfg = model.config
    K, F = cfg.n_conditions, cfg.n_features
    states = torch.randn(B, T, P, F, device=device)
    cond = torch.randn(B, K, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gpt = isinstance(model, FluidGPT)

    def step() -> None:
        model.train()
        with autocast:
            if gpt:
                ctx = cfg.context or T - 1
                out = model(states[:, :ctx], cond)[..., :F]
                loss = (out.float() - states[:, 1:ctx + 1]).pow(2).mean()
            else:
                out = model(states[:, 0], cond, T)[..., :F]
                loss = (out.float() - states).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    row = {"model": name, "device": device, "precision": a.precision, "batch": B,
           "steps": T, "particles": P, "parameters": sum(x.numel() for x in model.parameters())}
    row["train_step_s"], row["train_step_peak_gib"] = timed(step)
    row["epoch_cases"] = a.epoch_cases
    row["epoch_s"] = round(row["train_step_s"] * math.ceil(a.epoch_cases / B), 4)
    model.eval()
    with torch.no_grad(), autocast:
        if gpt:
            row["rollout_s"], _ = timed(lambda: rollout(model, states[:, :1], cond, T - 1))
            if not cfg.context:
                row["rollout_recompute_s"], _ = timed(
                    lambda: rollout(model, states[:, :1], cond, T - 1, use_cache=False))
        else:
            row["rollout_s"], _ = timed(lambda: model(states[:, 0], cond, T))
    return row

if __name__ == "__main__":
    main()
