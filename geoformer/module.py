"""GeoFormerModule: the paper's training recipe around one lead-time network.

Everything needed at inference travels in the checkpoint as plain values (configuration,
variables, levels, grid coordinates, normalisation statistics, lead time), so a checkpoint
loads with ``torch.load(weights_only=True)`` and nothing else.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch import Tensor

from .area import latitude_weights
from .checkpoints import FORMAT_VERSION, CheckpointError, load_checkpoint
from .config import CONTRACT_FIELDS, PRESETS, ConfigError, Network
from .data import DataContract
from .model import GeoFormer
from .normalization import Normalizer
from .rollout import rollout
from .state import State

__all__ = ["PANGU_LOSS_WEIGHTS", "GeoFormerModule", "load_module", "rebuild_module",
           "upgrade_hparams", "init_from_checkpoint"]

# Per-variable loss weights (Pangu-Weather, as two re-implementations give them); others 1.0.
PANGU_LOSS_WEIGHTS = {
    "geopotential": 3.00, "specific_humidity": 0.60, "temperature": 1.50,
    "u_component_of_wind": 0.77, "v_component_of_wind": 0.54,
    "mean_sea_level_pressure": 1.50, "10m_u_component_of_wind": 0.77,
    "10m_v_component_of_wind": 0.66, "2m_temperature": 3.00,
}
_LOGGED_LEVELS = (500, 850)
DEFAULT_NETWORK = Network()  # small-5.625 as its preset gives it


class GeoFormerModule(L.LightningModule):
    """Training, validation and test of one lead-time geoformer.

    Its typed arguments are the ``model`` section of a ``geoformer fit`` experiment, except
    ``contract`` and ``constants``, which ``geoformer fit`` takes from the data module, and
    ``schedule_seconds``, which it takes from ``trainer.max_time``.

    Args:
        contract: the data-to-model contract (lead time, variables, levels, grid coordinates,
            normalisation statistics): :attr:`GeoDataModule.contract`, or the dict of its
            fields that checkpoints hold.
        network: the architecture: a preset and any of its fields overridden (a dict of the
            same fields is accepted, as in checkpoints). Grid, levels and variables come from
            the contract.
        constants: (K, H, W) normalised constant fields (not a hyperparameter: a model buffer).
        loss_kind: "mae" (the paper) or "mse" (the squared error of the same weighted terms,
            which targets the conditional mean that RMSE rewards).
        surface_weight: weight of the surface term relative to the upper-air term (0.25 in
            the paper).
        loss_weights: per-variable loss weights over Pangu's (others 1.0).
        lr: AdamW learning rate after the linear warm-up.
        weight_decay: AdamW weight decay (bias tables, biases and norms are not decayed).
        warmup_steps: linear warm-up steps before the cosine decay.
        min_lr: learning rate at the end of the cosine decay.
        schedule: "steps" spreads the cosine over the trainer's steps (max_epochs or
            max_steps); "time" spreads it over ``schedule_seconds`` of training wall-clock,
            for runs cut by a time budget (``trainer.max_time``), so the learning rate has
            decayed when time runs out. The clock starts with each fit.
        schedule_seconds: the time budget of ``schedule="time"`` (``geoformer fit`` sets it
            from ``trainer.max_time``).
        residual: the network predicts the change of the normalised state over one lead time
            (state + net(state)) instead of the next state itself, as Pangu-Weather does
            (False, the default). A training-efficiency option for small data and short
            budgets; the network is the same either way, except that its output layer starts
            at zero, so an untrained residual model is persistence.
        area_weighted_loss: weight each grid row's error by its cell area (mean 1), as
            WeatherBench 2's scores do and GraphCast's loss does; False (the paper's
            unweighted mean over grid points) by default.
    """

    def __init__(self, contract: DataContract, network: Network = DEFAULT_NETWORK,
                 constants: Tensor | None = None, loss_kind: Literal["mae", "mse"] = "mae",
                 surface_weight: float = 0.25, loss_weights: dict[str, float] | None = None,
                 lr: float = 5e-4, weight_decay: float = 3e-6, warmup_steps: int = 100,
                 min_lr: float = 0.0, schedule: Literal["steps", "time"] = "steps",
                 schedule_seconds: float | None = None, residual: bool = False,
                 area_weighted_loss: bool = False) -> None:
        super().__init__()
        if loss_kind not in ("mae", "mse"):
            raise ValueError(f"loss_kind must be 'mae' or 'mse', found {loss_kind!r}")
        if schedule not in ("steps", "time"):
            raise ValueError(f"schedule must be 'steps' or 'time', found {schedule!r}")
        if schedule == "time" and schedule_seconds is None:
            raise ValueError("schedule='time' needs schedule_seconds (geoformer fit sets it "
                             "from trainer.max_time: give trainer.max_time)")
        if schedule_seconds is not None and not schedule_seconds > 0:
            raise ValueError(f"schedule_seconds must be positive, found {schedule_seconds!r}")
        if not isinstance(contract, DataContract):
            contract = DataContract.from_dict(dict(contract))
        if not isinstance(network, Network):
            network = Network.from_dict(dict(network))
        self.contract, self.network = contract, network.resolved()
        self.save_hyperparameters(ignore=["constants", "contract", "network"])
        # Plain values only, so checkpoints load with torch.load(weights_only=True).
        self.hparams.update(contract=contract.to_dict(), network=self.network.to_dict())
        self._fit_start: float | None = None
        self.config = self.network.config(**contract.network_fields())
        self.net = GeoFormer(self.config, constants=constants)
        if residual:
            # Start from persistence: the predicted change is exactly zero until one is
            # learnt (zero output layer), so early training cannot make forecasts worse
            # than the state they start from.
            for layer in (self.net.recover.upper, self.net.recover.surface):
                torch.nn.init.zeros_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
        self.normalizer = Normalizer.from_dict(contract.normalization)
        weights = {**PANGU_LOSS_WEIGHTS, **(loss_weights or {})}
        self.register_buffer("upper_weights", torch.tensor(
            [weights.get(v, 1.0) for v in self.config.upper_vars]), persistent=False)
        self.register_buffer("surface_weights", torch.tensor(
            [weights.get(v, 1.0) for v in self.config.surface_vars]), persistent=False)
        area = latitude_weights(xr.DataArray(np.asarray(contract.latitude), dims="latitude"))
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

    def state(self, upper: Tensor, surface: Tensor) -> State:
        """A batch (B, V, Z, H, W), (B, S, H, W) as a State on this model's variables,
        levels and grid."""
        c = self.contract
        return State(upper, surface, c.upper_vars, c.surface_vars, c.levels, c.latitude,
                     c.longitude, dims=("batch",))

    # ---------------------------------------------------------------------------- losses
    def loss(self, pred: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor]) -> Tensor:
        """Weighted MAE in normalised space: mean over variables of w_v * MAE_v, with the
        surface term weighted ``surface_weight`` relative to the upper-air term (squared
        errors instead of absolute ones with ``loss_kind="mse"``; each row's error weighted by
        its cell area with ``area_weighted_loss``)."""
        (pu, ps), (tu, ts) = pred, target
        kind = torch.abs if self.hparams.loss_kind == "mae" else torch.square
        if self.hparams.area_weighted_loss:
            area = self.area[:, None]  # (H, 1), mean 1

            def err(x: Tensor) -> Tensor:
                return kind(x) * area
        else:
            err = kind
        upper = (err(pu - tu).mean(dim=(0, 2, 3, 4)) * self.upper_weights).mean()
        surface = (err(ps - ts).mean(dim=(0, 2, 3)) * self.surface_weights).mean()
        return upper + self.hparams.surface_weight * surface

    def _shared_step(self, batch: dict[str, Tensor], steps: int) -> tuple[Tensor, list]:
        state = self.state(*self.normalizer.normalize(batch["upper"], batch["surface"]))
        losses, preds = [], []
        for k, pred in enumerate(rollout(self, state, steps)):
            target = self.normalizer.normalize(batch["target_upper"][:, k],
                                               batch["target_surface"][:, k])
            losses.append(self.loss((pred.upper, pred.surface), target))
            preds.append((pred.upper, pred.surface))
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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["format_version"] = FORMAT_VERSION  # checked by checkpoints.load_checkpoint

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

        seconds = hp.schedule_seconds if hp.schedule == "time" else None

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


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Checkpoint hyperparameters in today's form; the one place that knows older forms.

    Before ``geoformer fit`` ran on LightningCLI (sciforecast 0.1.0), checkpoints held the
    resolved network configuration as ``model`` and the contract as loose keys.
    """
    hp = dict(hparams)
    if "contract" in hp:
        return hp
    model = dict(hp.pop("model"))
    data = hp.pop("data", None) or {}
    hp["contract"] = {
        "lead_hours": hp.pop("lead_hours"), "latitude": hp.pop("latitude"),
        "longitude": hp.pop("longitude"), "normalization": hp.pop("normalization"),
        **{k: model[k] for k in ("upper_vars", "surface_vars", "constant_vars", "levels")},
        "store": data.get("store", ""), "train_period": data.get("train_period"),
        "rollout_steps": hp.pop("rollout_steps", 1)}
    name = model.pop("name", None)
    hp["network"] = {"preset": name if name in PRESETS else "pangu",
                     **{k: v for k, v in model.items() if k not in CONTRACT_FIELDS}}
    hp["schedule"] = "time" if hp.get("schedule_seconds") else "steps"
    return hp


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> GeoFormerModule:
    """A trained module from a checkpoint, loaded safely (``weights_only=True``, see
    :func:`geoformer.checkpoints.load_checkpoint`); a file that is not one, or one this
    version cannot rebuild, is a CheckpointError naming it."""
    return rebuild_module(load_checkpoint(path, map_location), path)


def rebuild_module(ckpt: Mapping[str, Any], path: str | Path) -> GeoFormerModule:
    """The module of a checkpoint dict that :func:`~geoformer.checkpoints.load_checkpoint`
    read from ``path``; one this version cannot rebuild is a CheckpointError naming it."""
    try:
        module = GeoFormerModule(**upgrade_hparams(ckpt["hyper_parameters"]))
        module.load_state_dict(ckpt["state_dict"])
    except (TypeError, KeyError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"{path}: a geoformer checkpoint this version cannot rebuild "
                              f"({first})") from err
    return module.eval()


def init_from_checkpoint(module: GeoFormerModule, path: str | Path) -> None:
    """Start ``module`` from the network weights of a checkpoint (fine-tuning: weights only,
    no optimiser state or epoch); the network configurations must agree."""
    source = load_module(path)
    same = dict(name=module.config.name, drop_path=module.config.drop_path,
                checkpoint_activations=module.config.checkpoint_activations,
                attention=module.config.attention)
    if source.config.replace(**same) != module.config:
        raise ConfigError(f"cannot fine-tune from {path}: its network configuration differs "
                          f"from this experiment's")
    module.net.load_state_dict(source.net.state_dict())
