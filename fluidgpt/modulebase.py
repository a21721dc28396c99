"""What every fluidgpt LightningModule shares (:class:`_FluidModule`, subclassed in
:mod:`fluidgpt.module`): configs from settings and the data contract, hyperparameters saved
as plain dicts, scalers stored in the checkpoint, batch access, the optimisers and learning-rate
schedules (:func:`warmup_cosine`), gradient clipping and logging.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import lightning.pytorch as L
import torch
from torch import Tensor, nn

from .casetensors import DataContract
from .checkpoints import FORMAT_VERSION
from .config import ConfigError, GPTConfig, TrainConfig
from .scalers import Scaler

# _FluidModule keeps its underscore: the public modules are those of fluidgpt.module, but
# fitcli takes the base as the schema of every model section.
__all__ = ["_FluidModule", "warmup_cosine"]


def warmup_cosine(total_steps: int, warmup_fraction: float,
                  floor: float) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over warmup_fraction of the steps, then cosine
    from 1 down to ``floor`` at the last step."""
    warm = int(round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _field(batch: Any, name: str, required: bool = True) -> Tensor | None:
    value = batch.get(name) if isinstance(batch, Mapping) else getattr(batch, name, None)
    if value is None and required:
        have = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise KeyError(f"the batch has no {name!r} (found {have})")
    return value


def _states(batch: Any, n_features: int) -> Tensor:
    """The network's per-particle state (B, T, P, F): positions, or positions + velocity."""
    positions = _field(batch, "positions")
    if n_features == 3:
        return positions
    if n_features == 6:
        return torch.cat([positions, _field(batch, "velocity")], dim=-1)  # (B, T, P, 6)
    raise ValueError(f"a network with {n_features} state features cannot be fed from "
                     "positions (3) or positions + velocity (6)")


def _as_config(cls: type, value: Any, **data: Any) -> Any:
    """A config dataclass from an instance or settings (preset + overrides), sized by
    ``data`` (the contract's sizes; an instance must agree with them)."""
    if isinstance(value, cls):
        clash = {k: getattr(value, k) for k in data if getattr(value, k) != data[k]}
        if clash:
            raise ConfigError(f"{cls.label} config {clash} does not match the data "
                              f"{ {k: data[k] for k in clash} }")
        return value
    return cls.from_settings(value, **data)


# ----------------------------------------------------------------------------------- base
class _FluidModule(L.LightningModule):
    """Hyperparameters, scalers, optimisers and gradient clipping shared by all modules."""

    kind: ClassVar[str] = ""
    config_class: ClassVar[type] = GPTConfig
    model: nn.Module

    def __init__(self, model: Any, train: Any, scalers: Mapping[str, int] | None,
                 contract: DataContract | None = None) -> None:
        super().__init__()
        data = {} if contract is None else self.data_sizes(model, contract)
        self.config = _as_config(self.config_class, model, **data)
        self.train_config = _as_config(TrainConfig, train)
        if scalers is None and contract is not None:
            scalers = contract.scalers()
        scalers = {str(k): int(v) for k, v in (scalers or {}).items()}
        self.save_hyperparameters({"model": self.config.to_dict(),
                                   "train": self.train_config.to_dict(), "scalers": scalers})
        self.scalers = nn.ModuleDict({k: Scaler(v) for k, v in scalers.items()})

    @classmethod
    def data_sizes(cls, model: Any, contract: DataContract) -> dict[str, Any]:
        """The config fields this module's network takes from the data."""
        return dict(n_particles=contract.n_particles, n_features=contract.n_features,
                    n_conditions=contract.n_conditions)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fluidgpt_module"] = self.kind
        checkpoint["format_version"] = FORMAT_VERSION  # checked by checkpoints.read_checkpoint

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """The validation metrics on the test cases, logged as ``test/...``."""
        self.validation_step(batch, batch_idx)

    def _log_all(self, stage: str, values: Mapping[str, Tensor], batch_size: int) -> None:
        if stage == "val" and self._trainer is not None and self.trainer.testing:
            stage = "test"
        self.log_dict({f"{stage}/{k}": v.detach() for k, v in values.items()},
                      batch_size=batch_size, prog_bar=stage == "val",
                      on_step=stage == "train", on_epoch=True)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        out = self.losses(batch)
        self._log_all("train", out, _field(batch, "conditions").shape[0])
        return out["loss"]

    def losses(self, batch: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    # -------------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """Decayed and non-decayed parameters (the model's no_weight_decay, else ndim < 2)."""
        model = self.model
        skip = (model.no_weight_decay() if hasattr(model, "no_weight_decay")
                else {n for n, p in model.named_parameters() if p.ndim < 2})
        decay = [p for n, p in model.named_parameters() if p.requires_grad and n not in skip]
        keep = [p for n, p in model.named_parameters() if p.requires_grad and n in skip]
        groups = [{"params": decay, "weight_decay": self.train_config.weight_decay},
                  {"params": keep, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> Any:
        t = self.train_config
        if t.optimizer == "adamw_cosine":
            opt = torch.optim.AdamW(self.param_groups(), lr=t.lr, betas=t.betas)
            total = max(1, int(self.trainer.estimated_stepping_batches))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, warmup_cosine(total, t.warmup_fraction, t.min_lr / t.lr))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        opt = torch.optim.Adam(self.model.parameters(), lr=t.lr, betas=t.betas,
                               weight_decay=t.weight_decay)
        if t.optimizer == "adam":
            return opt
        # The paper's cyclic rate, stepped once per epoch: cycle_epochs up, cycle_epochs down,
        # the amplitude shrinking by gamma every epoch (exp_range).
        sched = torch.optim.lr_scheduler.CyclicLR(
            opt, base_lr=t.min_lr, max_lr=t.lr, step_size_up=t.cycle_epochs, mode="exp_range",
            gamma=t.gamma, cycle_momentum=False)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        clip = self.train_config.grad_clip or gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip,
                                gradient_clip_algorithm=gradient_clip_algorithm or "norm")
