"""GeoFormerModule: the paper's training recipe around one lead-time network.

Everything needed at inference travels in the checkpoint as plain values (configuration,
variables, levels, grid coordinates, normalisation statistics, lead time), so a checkpoint
loads with ``torch.load(weights_only=True)`` and nothing else.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch import Tensor

from .config import GeoFormerConfig
from .metrics import latitude_weights
from .model import GeoFormer
from .normalization import Normalizer
from .rollout import rollout

__all__ = ["PANGU_LOSS_WEIGHTS", "GeoFormerModule", "load_module"]

# Per-variable loss weights (Pangu-Weather, as two re-implementations give them); others 1.0.
PANGU_LOSS_WEIGHTS = {
    "geopotential": 3.00, "specific_humidity": 0.60, "temperature": 1.50,
    "u_component_of_wind": 0.77, "v_component_of_wind": 0.54,
    "mean_sea_level_pressure": 1.50, "10m_u_component_of_wind": 0.77,
    "10m_v_component_of_wind": 0.66, "2m_temperature": 3.00,
}
_LOGGED_LEVELS = (500, 850)


class GeoFormerModule(L.LightningModule):
    """Training, validation and test of one lead-time geoformer.

    Args:
        model: ``GeoFormerConfig.to_dict()``.
        normalization: ``Normalizer.to_dict()`` (statistics of the training period).
        lead_hours: the lead time of this network.
        latitude, longitude: grid coordinates (degrees), stored for inference and scoring.
        constants: (K, H, W) normalised constant fields (not a hyperparameter: a model buffer).
        loss_weights: per-variable MAE weights (default: Pangu's); surface_weight: weight of
            the surface term relative to the upper-air term (0.25 in the paper).
        lr, weight_decay, warmup_steps, min_lr: AdamW with linear warm-up then cosine decay.
        schedule_seconds: None (the default) spreads the cosine over the trainer's steps
            (max_epochs or max_steps); a number spreads it over that many seconds of training
            wall-clock instead, for runs cut by a time budget (``trainer.max_time``), so the
            learning rate has decayed when time runs out. The clock starts with each fit.
        loss_kind: "mae" (the paper) or "mse" (the squared error of the same weighted terms,
            which targets the conditional mean that RMSE rewards).
        rollout_steps: > 1 trains on a multi-step rollout (mean loss over the steps).
        residual: the network predicts the change of the normalised state over one lead time
            (state + net(state)) instead of the next state itself, as Pangu-Weather does
            (False, the default). A training-efficiency option for small data and short
            budgets; the network is the same either way, except that its output layer starts
            at zero, so an untrained residual model is persistence.
        data: plain description of the training data (provenance).
    """

    def __init__(self, model: Mapping[str, Any], normalization: Mapping[str, Any],
                 lead_hours: int, latitude: Sequence[float], longitude: Sequence[float],
                 constants: Tensor | None = None, loss_weights: Mapping[str, float] | None = None,
                 surface_weight: float = 0.25, lr: float = 5e-4, weight_decay: float = 3e-6,
                 warmup_steps: int = 100, min_lr: float = 0.0, rollout_steps: int = 1,
                 residual: bool = False, data: Mapping[str, Any] | None = None,
                 schedule_seconds: float | None = None, loss_kind: str = "mae") -> None:
        super().__init__()
        if loss_kind not in ("mae", "mse"):
            raise ValueError(f"loss_kind must be 'mae' or 'mse', found {loss_kind!r}")
        if schedule_seconds is not None and not schedule_seconds > 0:
            raise ValueError(f"schedule_seconds must be positive, found {schedule_seconds!r}")
        self.save_hyperparameters(ignore=["constants"])
        self._fit_start: float | None = None
        self.config = GeoFormerConfig.from_dict(dict(model))
        if (len(latitude), len(longitude)) != self.config.grid:
            raise ValueError(f"grid coordinates ({len(latitude)} x {len(longitude)}) do not "
                             f"match the network grid {self.config.grid}")
        self.net = GeoFormer(self.config, constants=constants)
        if residual:
            # Start from persistence: the predicted change is exactly zero until one is
            # learnt (zero output layer), so early training cannot make forecasts worse
            # than the state they start from.
            for layer in (self.net.recover.upper, self.net.recover.surface):
                torch.nn.init.zeros_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
        self.normalizer = Normalizer.from_dict(normalization)
        weights = {**PANGU_LOSS_WEIGHTS, **(loss_weights or {})}
        self.register_buffer("upper_weights", torch.tensor(
            [weights.get(v, 1.0) for v in self.config.upper_vars]), persistent=False)
        self.register_buffer("surface_weights", torch.tensor(
            [weights.get(v, 1.0) for v in self.config.surface_vars]), persistent=False)
        area = latitude_weights(xr.DataArray(np.asarray(latitude), dims="latitude"))
        self.register_buffer("area", torch.tensor(area.values, dtype=torch.float32),
                             persistent=False)
        self._squared_errors: dict[str, Tensor] = {}

    # ------------------------------------------------------------------------ the network
    def forward(self, upper: Tensor, surface: Tensor) -> tuple[Tensor, Tensor]:
        """One lead time on, in normalised space: (B, V, Z, H, W), (B, S, H, W)."""
        u, s = self.net(upper, surface)
        if self.hparams.residual:
            return upper + u, surface + s
        return u, s

    def forecast_step(self, upper: Tensor, surface: Tensor) -> tuple[Tensor, Tensor]:
        """One lead time on, in physical units."""
        u, s = self.normalizer.normalize(upper, surface)
        return self.normalizer.denormalize(*self(u, s))

    # ---------------------------------------------------------------------------- losses
    def loss(self, pred: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor]) -> Tensor:
        """Weighted MAE in normalised space: mean over variables of w_v * MAE_v, with the
        surface term weighted ``surface_weight`` relative to the upper-air term (squared
        errors instead of absolute ones with ``loss_kind="mse"``)."""
        (pu, ps), (tu, ts) = pred, target
        err = torch.abs if self.hparams.loss_kind == "mae" else torch.square
        upper = (err(pu - tu).mean(dim=(0, 2, 3, 4)) * self.upper_weights).mean()
        surface = (err(ps - ts).mean(dim=(0, 2, 3)) * self.surface_weights).mean()
        return upper + self.hparams.surface_weight * surface

    def _shared_step(self, batch: dict[str, Tensor], steps: int) -> tuple[Tensor, list]:
        upper, surface = self.normalizer.normalize(batch["upper"], batch["surface"])
        losses, preds = [], []
        for k, pred in enumerate(rollout(self, upper, surface, steps)):
            target = self.normalizer.normalize(batch["target_upper"][:, k],
                                               batch["target_surface"][:, k])
            losses.append(self.loss(pred, target))
            preds.append(pred)
        return torch.stack(losses).mean(), preds

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self._shared_step(batch, batch["target_upper"].shape[1])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["upper"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        loss, preds = self._shared_step(batch, 1)
        B = batch["upper"].shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=B, sync_dist=True)
        pu, ps = self.normalizer.denormalize(*preds[0])
        tu, ts = batch["target_upper"][:, 0], batch["target_surface"][:, 0]
        area = self.area[:, None]  # (H, 1)
        cfg = self.config
        fields = [(f"{name}_{lv}", pu[:, v, cfg.levels.index(lv)], tu[:, v, cfg.levels.index(lv)])
                  for v, name in enumerate(cfg.upper_vars) for lv in _LOGGED_LEVELS
                  if lv in cfg.levels]
        fields += [(name, ps[:, s], ts[:, s]) for s, name in enumerate(cfg.surface_vars)]
        for key, p, t in fields:
            # Sum of per-sample weighted MSE and the sample count; RMSE at the epoch end is
            # sqrt(time-mean MSE), WeatherBench 2's headline convention.
            sse = ((p - t) ** 2 * area).mean(dim=(-2, -1)).double().sum()
            total = self._squared_errors.setdefault(key, torch.zeros(2, dtype=torch.float64,
                                                                    device=self.device))
            total += torch.stack([sse, sse.new_tensor(float(B))])
        return loss

    def _log_rmse(self, stage: str) -> None:
        for key, total in self._squared_errors.items():
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
            self.log(f"{stage}/rmse/{key}", (total[0] / total[1]).sqrt().float(),
                     sync_dist=False)
        self._squared_errors = {}

    def on_validation_epoch_start(self) -> None:
        self._squared_errors = {}

    def on_validation_epoch_end(self) -> None:
        self._log_rmse("val")

    def on_test_epoch_start(self) -> None:
        self._squared_errors = {}

    def on_test_epoch_end(self) -> None:
        self._log_rmse("test")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    # ------------------------------------------------------------------------ optimiser
    def on_fit_start(self) -> None:
        self._fit_start = time.monotonic()

    def training_seconds(self) -> float:
        """Wall-clock seconds since this fit started (0 before it starts)."""
        return 0.0 if self._fit_start is None else time.monotonic() - self._fit_start

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.net.param_groups(hp.weight_decay), lr=hp.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(hp.warmup_steps, max(total - 1, 0))
        floor = hp.min_lr / hp.lr if hp.lr > 0 else 0.0

        seconds = hp.schedule_seconds

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if seconds:
                progress = min(self.training_seconds() / seconds, 1.0)
            else:
                progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> GeoFormerModule:
    """A trained module from a checkpoint, loaded safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a geoformer checkpoint (it has keys {sorted(ckpt)})")
    module = GeoFormerModule(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()
