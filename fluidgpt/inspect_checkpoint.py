"""What a fluidgpt checkpoint holds: ``fluidgpt info --checkpoint FILE [--json]``.

The file is read as every command reads it (:func:`fluidgpt.checkpoints.read_checkpoint`:
weights_only, format version checked) and its module is rebuilt
(:func:`fluidgpt.checkpoints.load_checkpoint`), so a checkpoint that describes itself here
also loads for ``predict``. Nothing in it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["sha256_file", "describe_checkpoint", "format_checkpoint", "add_info_parser",
           "cmd_info"]

#: What each kind of module is, in words.
_MODELS = {"gpt": "GPT trajectory model (FluidGPT)", "lstm": "LSTM trajectory baseline",
           "bilstm": "BiLSTM trajectory baseline", "erosion": "erosion CNN"}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, as hex (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _data(d: dict[str, Any] | None) -> dict[str, Any]:
    """Conditions (with training ranges), time steps, wall and training data of a
    checkpoint's ``fluidgpt_data`` (:class:`~fluidgpt.datainfo.DataInfo`); {} if it has none."""
    if not d:
        return {}
    split, time = d.get("split") or {}, d.get("time") or []
    return {
        "conditions": [{"name": n, "units": u, "low": lo, "high": hi} for n, u, lo, hi in
                       zip(d["conditions"], d["units"], d["low"], d["high"])],
        "time": {"steps": len(time), "first_s": time[0] if time else None,
                 "last_s": time[-1] if time else None},
        "wall": {"faces": len(d.get("face_area") or []),
                 "patches": sorted(set(d.get("patch") or [])),
                 "wall_density": d.get("wall_density")},
        "training_data": {"dataset": d.get("dataset") or None, "split": split.get("kind"),
                          "split_description": split.get("description"),
                          "cases": split.get("n_cases"),
                          "test_cases": len(split.get("test") or []), "fold": d.get("fold")},
    }


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """Kind, format version, hash, particles, conditions and their ranges, time steps, wall,
    training data, scalers, configuration and parameter count of a checkpoint, as plain
    values (JSON-ready). A file that is not one this release reads is a ValueError (or
    FileNotFoundError) naming it."""
    from .checkpoints import load_checkpoint, read_checkpoint

    ckpt = read_checkpoint(path)
    module = load_checkpoint(path)
    kind = module.kind
    if kind == "lstm" and module.config.bidirectional:
        kind = "bilstm"
    model, train = ckpt["hyper_parameters"]["model"], ckpt["hyper_parameters"]["train"]
    stored = ckpt.get("format_version")
    return {
        "file": str(path), "sha256": sha256_file(path), "bytes": Path(path).stat().st_size,
        "package": "fluidgpt", "kind": kind, "model": _MODELS.get(kind, kind),
        "format_version": 1 if stored is None else stored,
        "format_version_stored": stored is not None,
        "particles": model.get("n_particles"), "state_features": model.get("n_features"),
        "n_conditions": model.get("n_conditions"),
        **_data(ckpt.get("fluidgpt_data")),
        "scalers": dict(ckpt["hyper_parameters"].get("scalers") or {}),
        "network": {k: v for k, v in model.items() if k not in module.config.DATA_FIELDS},
        "config": {"model": model, "train": train},
        "trained": {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                    "lightning_version": ckpt.get("pytorch-lightning_version"),
                    "optimizer_state": "optimizer_states" in ckpt},
        "parameters": sum(p.numel() for p in module.parameters()),
    }


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _join(values: Any, sep: str = ", ") -> str:
    return sep.join(map(str, values)) if values else "-"


def format_checkpoint(info: dict[str, Any]) -> str:
    """:func:`describe_checkpoint` as readable text, one fact a line."""
    version = str(info["format_version"]) + (
        "" if info["format_version_stored"]
        else " (none stored: written before versioning, read as 1)")
    features = {3: "positions", 6: "positions + velocity"}.get(info["state_features"], "?")
    t, tr = info.get("time"), info["trained"]
    rows = [("kind", f"{info['kind']}: {info['model']}"), ("format version", version),
            ("sha256", info["sha256"]), ("size", _size(info["bytes"])),
            ("particles", f"{info['particles']} ({info['state_features']} state features: "
                          f"{features})")]
    if t:
        rows.append(("time steps", f"{t['steps']}, {t['first_s']:g} .. {t['last_s']:g} s"))
    if "conditions" in info:
        rows += [("conditions" if i == 0 else "", f"{c['name']} [{c['units']}] "
                  f"{c['low']:.6g} .. {c['high']:.6g}") for i, c in
                 enumerate(info["conditions"])]
        w, d = info["wall"], info["training_data"]
        rows += [("wall", f"{w['faces']} faces ({_join(w['patches'])})"
                          + (f", wall density {w['wall_density']:g} kg m-3"
                             if w["wall_density"] is not None else "")),
                 ("training data", f"{d['dataset'] or '-'}: {d['split_description'] or '-'}"
                                   + ("" if d["fold"] is None else f"; without fold {d['fold']}"))]
    else:
        rows.append(("conditions", f"{info['n_conditions']} (names and ranges not stored)"))
    rows += [("scalers", _join(f"{k} ({v})" for k, v in info["scalers"].items())),
             ("network", _join(f"{k}={v}" for k, v in info["network"].items())),
             ("trained", f"epoch {tr['epoch']}, step {tr['global_step']} (Lightning "
                         f"{tr['lightning_version']})"
                         + ("" if tr["optimizer_state"] else ", no optimiser state")),
             ("parameters", f"{info['parameters']:,}")]
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"fluidgpt checkpoint {info['file']}",
                      *(f"  {k:<{width}}  {value}" for k, value in rows)])


def cmd_info(args: argparse.Namespace) -> int:
    """``fluidgpt info --checkpoint FILE [--json]``."""
    info = describe_checkpoint(args.checkpoint)
    print(json.dumps(info, indent=2) if args.json else format_checkpoint(info))
    return 0


def add_info_parser(commands) -> None:
    """Add ``info`` to the subcommands of ``fluidgpt``."""
    p = commands.add_parser("info", help="what a checkpoint holds: kind, format version, "
                                         "sha256, particles, conditions and their ranges, "
                                         "training data, parameter count")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint written by fluidgpt fit or compare (read with "
                        "weights_only: nothing in it runs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)
