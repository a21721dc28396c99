"""What a geoformer checkpoint holds: ``geoformer info --checkpoint FILE``.

The file is read as every command reads it (:func:`geoformer.checkpoints.load_checkpoint`:
weights_only, format version checked) and the module is rebuilt from it, so a checkpoint
that describes itself here also loads for a forecast. Nothing in it runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["sha256_file", "describe_checkpoint", "format_checkpoint"]

#: Network fields shown (the rest are training-time options such as drop_path).
_NETWORK = ("preset", "embed_dim", "patch", "window", "depths", "heads")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, as hex (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _grid(latitude: list[float], longitude: list[float]) -> dict[str, Any]:
    return {"latitude": len(latitude), "longitude": len(longitude),
            "latitude_range": [latitude[0], latitude[-1]],
            "longitude_range": [longitude[0], longitude[-1]]}


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """Kind, format version, hash, grid, levels, variables, statistics period, training data,
    network and parameter count of a checkpoint, as plain values (JSON-ready).

    kind is "lightning" (written by ``geoformer fit``: with optimiser and loop states, so a
    run resumes from it) or "slim" (exported to ship: weights, hyperparameters and the data
    contract only). A file that is not a checkpoint this release reads is a CheckpointError
    (or FileNotFoundError) naming it.
    """
    from .checkpoints import load_checkpoint
    from .module import rebuild_module, upgrade_hparams

    ckpt = load_checkpoint(path)
    module = rebuild_module(ckpt, path)
    hp = upgrade_hparams(ckpt["hyper_parameters"])
    c = hp["contract"]
    period = list(c["train_period"]) if c.get("train_period") else None
    stored = ckpt.get("format_version")
    return {
        "file": str(path), "sha256": sha256_file(path), "bytes": Path(path).stat().st_size,
        "package": "geoformer",
        "kind": "lightning" if "optimizer_states" in ckpt else "slim",
        "format_version": 1 if stored is None else stored,
        "format_version_stored": stored is not None,
        "lead_hours": c["lead_hours"],
        "grid": _grid(list(c["latitude"]), list(c["longitude"])),
        "levels": list(c["levels"]),
        "variables": {"upper_air": list(c["upper_vars"]), "surface": list(c["surface_vars"]),
                      "constants": list(c["constant_vars"])},
        "statistics": {"period": period, "store": c.get("store") or None},
        "training": {"store": c.get("store") or None, "period": period,
                     "rollout_steps": c.get("rollout_steps", 1), "epoch": ckpt.get("epoch"),
                     "global_step": ckpt.get("global_step"),
                     "lightning_version": ckpt.get("pytorch-lightning_version"),
                     "loss": hp.get("loss_kind"), "lr": hp.get("lr"),
                     "residual": bool(hp.get("residual"))},
        "network": {k: hp["network"].get(k) for k in _NETWORK},
        "parameters": sum(p.numel() for p in module.parameters()),
    }


def _join(values: list[Any], sep: str = ", ") -> str:
    return sep.join(map(str, values)) if values else "-"


def format_checkpoint(info: dict[str, Any]) -> str:
    """:func:`describe_checkpoint` as readable text, one fact a line."""
    g, v, t, n = info["grid"], info["variables"], info["training"], info["network"]
    version = str(info["format_version"]) + (
        "" if info["format_version_stored"]
        else " (none stored: written before versioning, read as 1)")
    kind = {"lightning": "lightning (written by geoformer fit: optimiser state, resumable)",
            "slim": "slim (exported: weights, hyperparameters and data contract only)"}
    period = _join(info["statistics"]["period"] or [], " .. ")
    rows = [
        ("kind", kind[info["kind"]]),
        ("format version", version),
        ("sha256", info["sha256"]),
        ("size", f"{info['bytes'] / 2**20:.1f} MiB"),
        ("lead time", f"{info['lead_hours']} h"),
        ("grid", f"{g['latitude']} x {g['longitude']} (latitude "
                 f"{_join(g['latitude_range'], ' .. ')}, longitude "
                 f"{_join(g['longitude_range'], ' .. ')})"),
        ("levels", f"{len(info['levels'])}: {_join(info['levels'], ' ')} hPa"),
        ("upper-air", _join(v["upper_air"])),
        ("surface", _join(v["surface"])),
        ("constants", _join(v["constants"])),
        ("statistics", f"mean and std per variable and level over {period}"),
        ("training data", f"{info['statistics']['store'] or '-'}, {period}, "
                          f"{t['rollout_steps']}-step rollouts"),
        ("trained", f"epoch {t['epoch']}, step {t['global_step']} (Lightning "
                    f"{t['lightning_version']}); loss {t['loss']}, lr {t['lr']}"
                    + (", residual" if t["residual"] else "")),
        ("network", f"{n['preset']}: embed {n['embed_dim']}, patch {_join(n['patch'], 'x')}, "
                    f"window {_join(n['window'], 'x')}, depths {_join(n['depths'], ',')}, "
                    f"heads {_join(n['heads'], ',')}"),
        ("parameters", f"{info['parameters']:,}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"geoformer checkpoint {info['file']}",
                      *(f"  {k:<{width}}  {value}" for k, value in rows)])
