"""Lightning modules around the pure networks: losses, metrics, optimisation, checkpoints.

One module per network: :class:`GPTModule`, :class:`SequenceModule` (LSTM / BiLSTM) and
:class:`ErosionModule`. Hyperparameters are saved as plain dicts (``config.to_dict()``), so
a checkpoint loads with ``torch.load(path, weights_only=True)`` and rebuilds with
``Module(**ckpt["hyper_parameters"])`` or ``Module.load_from_checkpoint(path)``.

A batch is a mapping (or an object with these attributes) of tensors already scaled by the
data pipeline:

* ``positions`` (B, T, P, 3), optional ``velocity`` (B, T, P, 3) (used when the network has
  F = 6 state features), ``conditions`` (B, K), optional ``valid`` (B, T, P) bool (False
  where a particle has left the domain: those entries are left out of every loss/metric and
  must only be finite in the inputs);
* for the erosion module, ``erosion`` (B, faces) in physical units (kg m^-2 s^-1): it is
  split here into pattern = map / max (unscaled) and ln max (scaled by ``scalers["log_peak"]``,
  which the caller fits on the training split, e.g. with :meth:`ErosionModule.fit_log_peak`).

``scalers`` maps a name to a feature count (e.g. ``{"positions": 3, "conditions": 5}``): each
becomes a :class:`~fluidgpt.scalers.Scaler` inside the module, so its statistics are stored
in the checkpoint; the caller fits and applies them (the DataModule does, in ``setup``).

The ``__init__`` signatures are the configuration schema of ``fluidgpt fit`` and of every
model section of ``fluidgpt compare`` (LightningCLI / jsonargparse validate them):
``model`` and ``train`` are settings (a preset name plus typed overrides, see
:data:`fluidgpt.config.GPTSettings`), ``contract`` the sizes read from the data
(:class:`~fluidgpt.casetensors.DataContract`, linked from the DataModule, never written in a
file). A checkpoint's hyperparameters are the full resolved configs, so
``Module(**hparams)`` rebuilds it without a contract.

What the modules share (hyperparameters, scalers, optimisers, batch access) is their base,
:class:`fluidgpt.modulebase._FluidModule`; the masked losses and training windows are in
:mod:`fluidgpt.losses`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
import torch
from torch import Tensor

from .baselines import SequenceLSTM
from .casetensors import DataContract
from .checkpoints import read_checkpoint
from .cnn import (
    PaperErosionCNN,
    build_erosion_model,
    join_erosion,
    pattern_modes,
    split_erosion,
)
from .config import (
    ConfigError,
    ErosionConfig,
    ErosionSettings,
    GPTConfig,
    GPTSettings,
    LSTMConfig,
    LSTMSettings,
    TrainSettings,
)
from .gpt import FluidGPT
from .losses import masked_mse, masked_r2, sliding_windows
from .modulebase import _as_config, _field, _FluidModule, _states
from .rollout import rollout
from .scalers import Scaler

__all__ = [
    "GPTModule",
    "SequenceModule",
    "ErosionModule",
    "StopAtThreshold",
    "MODULES",
    "load_module",
]


# ------------------------------------------------------------------------ batch shaping
def _with_conditions(states: Tensor, conditions: Tensor, out_features: int) -> Tensor:
    """Whole-token targets: states (B, T, P, F) + conditions broadcast when F_out = F + K."""
    if out_features == states.shape[-1]:
        return states
    B, T, P, _ = states.shape
    cond = conditions[:, None, None, :].expand(B, T, P, conditions.shape[-1])  # (B, T, P, K)
    return torch.cat([states, cond], dim=-1)  # (B, T, P, F+K)


def _draw_particles(states: Tensor, valid: Tensor | None,
                    k: int) -> tuple[Tensor, Tensor | None]:
    """k particles of each case at random: states (B, T, P, F) -> (B, T, k, F), valid alike."""
    B, T, P, F = states.shape
    pick = torch.rand(B, P, device=states.device).argsort(dim=1)[:, :k]  # (B, k)
    states = states.gather(2, pick[:, None, :, None].expand(B, T, k, F))
    if valid is not None:
        valid = valid.gather(2, pick[:, None, :].expand(B, T, k))
    return states, valid


# ------------------------------------------------------------------------------------ GPT
class GPTModule(_FluidModule):
    """Teacher-forced next-step training of :class:`~fluidgpt.gpt.FluidGPT`.

    Training: windows of ``train.window`` steps every ``train.stride`` (whole trajectories
    when 0), inputs steps 0..W-2, targets 1..W-1, masked MSE over all output features (the
    paper's whole token includes the repeated conditions); optionally plus a multi-step
    rollout loss. Validation also rolls out whole trajectories from the true first step:
    ``val/mse`` and ``val/r2`` on x, y, z over steps 1..T-1; ``val/loss`` is teacher-forced.
    """

    kind = "gpt"
    config_class = GPTConfig

    def __init__(self, model: GPTSettings | None = None, train: TrainSettings | None = None,
                 scalers: dict[str, int] | None = None,
                 contract: DataContract | None = None) -> None:
        """model: GPT settings (or a GPTConfig); train: training settings (or a
        TrainConfig); scalers: scaler sizes (None: from the contract); contract: the data's
        sizes (None: ``model`` holds them, as a checkpoint's full config does)."""
        super().__init__(model, train, scalers, contract)
        self.model = FluidGPT(self.config)

    @classmethod
    def data_sizes(cls, model: Any, contract: DataContract) -> dict[str, Any]:
        # positions over the whole trajectory: at least T steps of the position table
        preset = (model or {}).get("preset") if isinstance(model, Mapping) else None
        steps = GPTConfig.PRESETS.get(preset, {}).get("max_steps", GPTConfig.max_steps)
        return {**super().data_sizes(model, contract),
                "max_steps": max(int(steps), contract.n_steps)}

    def forward(self, states: Tensor, conditions: Tensor) -> Tensor:
        """states (B, T, P, F), conditions (B, K) -> next steps (B, T, P, F_out)."""
        return self.model(states, conditions)

    def forecast(self, first: Tensor, conditions: Tensor, steps: int) -> Tensor:
        """first (B, P, F), conditions (B, K) -> (B, steps, P, F), step 0 = ``first``."""
        return rollout(self.model, first[:, None], conditions, steps - 1)

    def losses(self, batch: Any) -> dict[str, Tensor]:
        cfg, t = self.config, self.train_config
        states = _states(batch, cfg.n_features)  # (B, T, P, F)
        cond = _field(batch, "conditions")
        valid = _field(batch, "valid", required=False)
        if t.window:
            n = states.shape[0]
            states = sliding_windows(states, t.window, t.window_stride)  # (B*nW, W, P, F)
            cond = cond.repeat_interleave(states.shape[0] // n, dim=0)  # (B*nW, K)
            if valid is not None:
                valid = sliding_windows(valid, t.window, t.window_stride)  # (B*nW, W, P)
        if (self.training and t.particles and cfg.layout == "particle"
                and t.particles < states.shape[2]):
            states, valid = _draw_particles(states, valid, t.particles)  # (B, T, p, F)
        v = valid[:, 1:] if valid is not None else None
        inputs = states[:, :-1]  # (B, T-1, P, F)
        if self.training and t.input_noise:
            inputs = inputs + t.input_noise * torch.randn_like(inputs)
        pred = self.model(inputs, cond)  # (B, T-1, P, F_out)
        target = _with_conditions(states[:, 1:], cond, cfg.out_features)
        out = {"loss": masked_mse(pred, target, v),
               "mse": masked_mse(pred[..., :3], target[..., :3], v),
               "r2": masked_r2(pred[..., :3], target[..., :3], v)}
        if t.rollout_steps and t.rollout_weight:
            k = min(t.rollout_steps, states.shape[1] - 1)
            gen = rollout(self.model, states[:, :1], cond, k)  # (B, 1+k, P, F)
            vk = valid[:, 1:k + 1] if valid is not None else None
            out["rollout_loss"] = masked_mse(gen[:, 1:], states[:, 1:k + 1], vk)
            out["loss"] = out["loss"] + t.rollout_weight * out["rollout_loss"]
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        out = {"loss": self.losses(batch)["loss"]}
        states = _states(batch, self.config.n_features)
        cond, valid = _field(batch, "conditions"), _field(batch, "valid", required=False)
        gen = self.forecast(states[:, 0], cond, states.shape[1])  # (B, T, P, F)
        v = valid[:, 1:] if valid is not None else None
        out["mse"] = masked_mse(gen[:, 1:, ..., :3], states[:, 1:, ..., :3], v)
        out["r2"] = masked_r2(gen[:, 1:, ..., :3], states[:, 1:, ..., :3], v)
        self._log_all("val", out, cond.shape[0])

    def predict_step(self, batch: Any, batch_idx: int = 0) -> Tensor:
        """(B, T, P, F) rolled out from each case's first step, in scaled units."""
        states = _states(batch, self.config.n_features)
        return self.forecast(states[:, 0], _field(batch, "conditions"), states.shape[1])


# --------------------------------------------------------------------------- LSTM / BiLSTM
class SequenceModule(_FluidModule):
    """The paper's LSTM / BiLSTM: the whole sequence from the first step, MSE over all steps
    and features (whole tokens); metrics on x, y, z over steps 1..T-1."""

    kind = "lstm"
    config_class = LSTMConfig

    def __init__(self, model: LSTMSettings | None = None, train: TrainSettings | None = None,
                 scalers: dict[str, int] | None = None,
                 contract: DataContract | None = None) -> None:
        """As :class:`GPTModule`, with LSTM settings (``bidirectional: true`` or the
        paper-bilstm / tiny-bilstm presets for the BiLSTM)."""
        super().__init__(model, train, scalers, contract)
        self.model = SequenceLSTM(self.config)

    def forward(self, first: Tensor, conditions: Tensor, steps: int) -> Tensor:
        return self.model(first, conditions, steps)

    def forecast(self, first: Tensor, conditions: Tensor, steps: int) -> Tensor:
        """first (B, P, F), conditions (B, K) -> (B, steps, P, F), step 0 = ``first``."""
        pred = self.model(first, conditions, steps)[:, 1:, ..., :self.config.n_features]
        return torch.cat([first[:, None], pred], dim=1)

    def losses(self, batch: Any) -> dict[str, Tensor]:
        cfg = self.config
        states = _states(batch, cfg.n_features)  # (B, T, P, F)
        cond, valid = _field(batch, "conditions"), _field(batch, "valid", required=False)
        pred = self.model(states[:, 0], cond, states.shape[1])  # (B, T, P, F_out)
        target = _with_conditions(states, cond, cfg.out_features)
        v = valid[:, 1:] if valid is not None else None
        return {"loss": masked_mse(pred, target, valid),
                "mse": masked_mse(pred[:, 1:, ..., :3], states[:, 1:, ..., :3], v),
                "r2": masked_r2(pred[:, 1:, ..., :3], states[:, 1:, ..., :3], v)}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._log_all("val", self.losses(batch), _field(batch, "conditions").shape[0])

    def predict_step(self, batch: Any, batch_idx: int = 0) -> Tensor:
        states = _states(batch, self.config.n_features)
        return self.forecast(states[:, 0], _field(batch, "conditions"), states.shape[1])


# -------------------------------------------------------------------------------- erosion
class ErosionModule(_FluidModule):
    """Erosion from trajectories: MSE on the normalised pattern (map / its max) plus
    ``train.magnitude_weight`` x MSE on the scaled ln(max) when the network has a magnitude
    head. Metrics: pattern mse and r2 (over all faces), log-peak mse (scaled units)."""

    kind = "erosion"
    config_class = ErosionConfig

    def __init__(self, model: ErosionSettings | None = None,
                 train: TrainSettings | None = None, scalers: dict[str, int] | None = None,
                 contract: DataContract | None = None) -> None:
        """As :class:`GPTModule`, with erosion settings; the contract must have wall faces."""
        data = {} if contract is None else self.data_sizes(model, contract)
        config = _as_config(ErosionConfig, model, **data)
        scalers = dict(contract.scalers() if scalers is None and contract is not None
                       else scalers or {})
        if config.magnitude_head:
            scalers.setdefault("log_peak", 1)
        super().__init__(config, train, scalers)
        self.model = build_erosion_model(self.config)

    @classmethod
    def data_sizes(cls, model: Any, contract: DataContract) -> dict[str, Any]:
        if not contract.n_faces:
            raise ConfigError("the erosion model needs erosion_rate in the dataset")
        return {**super().data_sizes(model, contract), "n_steps": contract.n_steps,
                "n_faces": contract.n_faces}

    def forward(self, trajectories: Tensor, conditions: Tensor,
                valid: Tensor | None = None) -> Any:
        return self.model(trajectories, conditions, valid)

    def fit_log_peak(self, rates: Tensor) -> Scaler:
        """Fit ``scalers["log_peak"]`` on training-split erosion maps (N, faces), physical."""
        return self.scalers["log_peak"].fit(split_erosion(rates)[1][:, None])

    def fit_output_basis(self, rates: Tensor) -> None:
        """Set the output basis (config.output_modes > 0) from training-split erosion maps
        (N, faces): the principal modes of their max-normalised patterns."""
        if not self.config.output_modes:
            return
        mean, basis = pattern_modes(split_erosion(rates.double())[0],
                                    self.config.output_modes)
        head = self.model.head if isinstance(self.model, PaperErosionCNN) else \
            self.model.pattern
        head.set_basis(mean.to(head.mean.dtype), basis.to(head.basis.dtype))

    def losses(self, batch: Any) -> dict[str, Tensor]:
        traj = _states(batch, self.config.n_features)
        cond, valid = _field(batch, "conditions"), _field(batch, "valid", required=False)
        pattern, log_peak = split_erosion(_field(batch, "erosion"))
        pred = self.model(traj, cond, valid)
        out = {"pattern_mse": masked_mse(pred.pattern[..., None], pattern[..., None]),
               "pattern_r2": masked_r2(pred.pattern[..., None], pattern[..., None])}
        out["loss"] = out["pattern_mse"]
        if pred.log_peak is not None:
            target = self.scalers["log_peak"](log_peak[:, None])[:, 0]
            out["log_peak_mse"] = masked_mse(pred.log_peak[:, None], target[:, None])
            out["loss"] = out["loss"] + self.train_config.magnitude_weight * out["log_peak_mse"]
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._log_all("val", self.losses(batch), _field(batch, "conditions").shape[0])

    def predict_step(self, batch: Any, batch_idx: int = 0) -> dict[str, Tensor]:
        """{"pattern": (B, faces)} and, with a magnitude head, "log_peak" (B,) = ln(max rate)
        and "rate" (B, faces) in the physical units of the training maps."""
        traj = _states(batch, self.config.n_features)
        pred = self.model(traj, _field(batch, "conditions"),
                          _field(batch, "valid", required=False))
        out = {"pattern": pred.pattern}
        if pred.log_peak is not None:
            log_peak = self.scalers["log_peak"].inverse(pred.log_peak[:, None])[:, 0]
            out["log_peak"] = log_peak
            out["rate"] = join_erosion(pred.pattern, log_peak)
        return out


# ------------------------------------------------------------------------------- helpers
class StopAtThreshold(L.Callback):
    """Stop once ``monitor`` <= ``threshold`` for ``patience`` validation epochs in a row
    (the paper: validation MSE <= 0.0065 for 3 epochs)."""

    def __init__(self, monitor: str = "val/loss", threshold: float = 0.0065,
                 patience: int = 3) -> None:
        self.monitor, self.threshold, self.patience = monitor, threshold, patience
        self.count = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        self.count = self.count + 1 if value is not None and value <= self.threshold else 0
        if self.count >= self.patience:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict["count"])


MODULES: dict[str, type[_FluidModule]] = {
    "gpt": GPTModule, "lstm": SequenceModule, "erosion": ErosionModule}


def load_module(path: str, map_location: str | torch.device = "cpu") -> _FluidModule:
    """Rebuild the module saved in a Lightning checkpoint, loading with weights_only=True
    and checking its format version (:func:`fluidgpt.checkpoints.read_checkpoint`)."""
    ckpt = read_checkpoint(path, map_location)
    kind = ckpt.get("fluidgpt_module")
    if kind not in MODULES:
        raise ValueError(f"{path} is not a fluidgpt checkpoint (module kind {kind!r}; expected "
                         f"one of {sorted(MODULES)})")
    module = MODULES[kind](**ckpt["hyper_parameters"])
    module.load_state_dict(_migrate(kind, ckpt["state_dict"]))
    return module


def _migrate(kind: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """State dicts of earlier versions, renamed to today's modules (the one place for it):
    before output bases, an erosion model's pattern layer was a bare Linear (model.head /
    model.pattern), now the ``linear`` of a PatternHead."""
    if kind != "erosion":
        return state
    old = re.compile(r"^model\.(head|pattern)\.(weight|bias)$")
    return {old.sub(r"model.\1.linear.\2", k): v for k, v in state.items()}
