"""What a user needs to know about a configuration before training: sizes and memory.

Everything is computed on torch's meta device, so the 0.25 deg model is summarised in
seconds without allocating a single activation.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from .config import GeoFormerConfig
from .model import GeoFormer

__all__ = ["summarize", "activation_bytes", "format_summary", "time_step"]


def activation_bytes(model: GeoFormer, batch: int = 1) -> dict[str, int]:
    """Bytes autograd keeps for the backward pass of one training forward, in float32.

    Counted on the meta device with saved-tensor hooks: every tensor an operation saves for
    backward is counted once (views count their base once), parameters excluded. With
    per-block activation checkpointing, a block keeps only its input, and during backward one
    block's activations live at a time: that is the ``checkpointed`` figure.
    Returns {"full": bytes, "checkpointed": bytes}.
    """
    cfg = model.config
    H, W = cfg.grid
    params = {id(p) for p in model.parameters()}
    seen: set[int] = set()
    total = [0]

    def pack(t: Tensor) -> Tensor:
        base = t._base if t._base is not None else t
        if id(base) not in params and id(t) not in params and id(base) not in seen:
            seen.add(id(base))
            total[0] += base.numel() * base.element_size()
        return t

    per_block: list[tuple[int, int]] = []  # (bytes saved inside the block, input bytes)
    start: dict[int, int] = {}

    def before(block: torch.nn.Module, args: tuple[Tensor]) -> None:
        start[id(block)] = total[0]

    def after(block: torch.nn.Module, args: tuple[Tensor], out: Tensor) -> None:
        x = args[0]
        per_block.append((total[0] - start[id(block)], x.numel() * x.element_size()))

    hooks = []
    for block in model.blocks():
        hooks.append(block.register_forward_pre_hook(before))
        hooks.append(block.register_forward_hook(after))
    try:
        model.train()
        upper = torch.empty(batch, len(cfg.upper_vars), len(cfg.levels), H, W, device="meta")
        surface = torch.empty(batch, len(cfg.surface_vars), H, W, device="meta")
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(upper, surface)
    finally:
        for h in hooks:
            h.remove()
    inside = sum(b for b, _ in per_block)
    checkpointed = total[0] - inside + sum(i for _, i in per_block) + max(b for b, _ in per_block)
    return {"full": total[0], "checkpointed": checkpointed}


def summarize(config: GeoFormerConfig, memory: bool = True) -> dict[str, Any]:
    """Parameter counts, token grids, window types per stage and activation memory."""
    with torch.device("meta"):
        model = GeoFormer(config.replace(checkpoint_activations=False))
    stages = []
    for stage in (1, 2, 3, 4):
        g = config.token_grid(stage)
        stages.append({
            "stage": stage,
            "dim": config.stage_dims[stage - 1],
            "heads": config.heads[stage - 1],
            "depth": config.depths[stage - 1],
            "tokens": [g.levels, g.lat, g.lon],
            "padded_tokens": [g.padded_levels, g.padded_lat, g.lon],
            "window_types": g.window_types,
            "longitude_windows": g.lon_windows,
        })
    out: dict[str, Any] = {
        "preset": config.name,
        "grid": list(config.grid),
        "levels": len(config.levels),
        "upper_vars": list(config.upper_vars),
        "surface_vars": list(config.surface_vars),
        "constant_vars": list(config.constant_vars),
        "patch": list(config.patch),
        "window": list(config.window),
        "shift": list(config.shift),
        "parameters": model.num_parameters(),
        "bias_table_parameters": model.num_parameters(bias_tables_only=True),
        "bias_table_rows": config.bias_rows,
        "stages": stages,
    }
    if memory:
        act = activation_bytes(model)
        out["activation_bytes_per_sample"] = act["full"]
        out["activation_bytes_per_sample_checkpointed"] = act["checkpointed"]
    return out


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable text of :func:`summarize`'s dict."""
    lines = [
        f"geoformer '{s['preset']}' on a {s['grid'][0]} x {s['grid'][1]} grid, "
        f"{s['levels']} levels",
        f"  upper air: {', '.join(s['upper_vars'])}",
        f"  surface:   {', '.join(s['surface_vars'])}",
        f"  constants: {', '.join(s['constant_vars']) or '(none)'}",
        f"  patch {tuple(s['patch'])}, window {tuple(s['window'])}, shift {tuple(s['shift'])}",
        f"parameters: {s['parameters']:,} ({s['bias_table_parameters']:,} in Earth-specific "
        f"bias tables, {100 * s['bias_table_parameters'] / s['parameters']:.1f} %; "
        f"{s['bias_table_rows']} rows each)",
        "stage  dim  heads  depth  tokens (Z x H x W)   padded        window types  lon windows",
    ]
    for st in s["stages"]:
        tok = " x ".join(map(str, st["tokens"]))
        pad = " x ".join(map(str, st["padded_tokens"]))
        lines.append(f"{st['stage']:>5}  {st['dim']:>3}  {st['heads']:>5}  {st['depth']:>5}  "
                     f"{tok:<19}  {pad:<12}  {st['window_types']:>12}  "
                     f"{st['longitude_windows']:>11}")
    if "activation_bytes_per_sample" in s:
        lines.append(
            "activation memory per sample (float32, training): "
            f"{_gib(s['activation_bytes_per_sample'])}; with activation checkpointing per "
            f"block: {_gib(s['activation_bytes_per_sample_checkpointed'])}")
    return "\n".join(lines)


def time_step(config: GeoFormerConfig, repeats: int = 2) -> dict[str, float]:
    """Seconds of one forward and one forward+backward at batch 1 on this machine."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = GeoFormer(config).to(device)
    H, W = config.grid
    upper = torch.randn(1, len(config.upper_vars), len(config.levels), H, W, device=device)
    surface = torch.randn(1, len(config.surface_vars), H, W, device=device)

    def timed(fn) -> float:
        fn()  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / repeats

    def forward() -> None:
        with torch.no_grad():
            model(upper, surface)

    def step() -> None:
        u, s = model(upper, surface)
        (u.square().mean() + s.square().mean()).backward()

    return {"device": device, "forward_s": timed(forward), "train_step_s": timed(step)}
