"""The configuration of fluidgpt training, shared by every module, and its presets.

:class:`TrainConfig` holds the optimisation and the training task (windows, rollout loss,
particle subsets, loss weights, batch size, epochs, early stopping), kept apart from the
networks (:mod:`.networks`); :data:`TrainSettings` is what an experiment file writes for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import _Config, settings_type

__all__ = ["TrainConfig", "TrainSettings"]


@dataclass(frozen=True)
class TrainConfig(_Config):
    """Optimisation and training-task settings, shared by all modules.

    optimizer: "adam" (constant lr), "adam_cyclic" (the paper: Adam + CyclicLR exp_range
        between min_lr and lr, stepped once per epoch, cycle_epochs up, amplitude times
        gamma**epoch) or "adamw_cosine" (AdamW, linear warm-up over warmup_fraction of the
        steps, cosine decay to min_lr, biases/norms/embeddings not decayed).
    grad_clip: gradient-norm clip (0: off; the paper's 0.01).
    window, stride: GPT teacher-forcing windows of ``window`` steps (inputs window - 1 steps),
        ``stride`` apart (0: whole trajectories). The paper: 4 and 2.
    rollout_steps, rollout_weight: an extra multi-step loss over a free-running rollout of
        this many steps from the first step of each window (0: off).
    input_noise: GPT only: standard deviation (in scaled units) of Gaussian noise added to
        the teacher-forced input steps in training, the targets left clean, so the network
        learns to pull a perturbed state back onto the path (Sanchez-Gonzalez et al. 2020's
        remedy for error build-up in learned simulators; 0: off).
    particles: GPT with ``layout: particle`` only: train every batch on this many particles
        of each case, drawn at random (0: all of them). Each particle's path is its own
        sequence there, so a subset is a smaller batch of the same task.
    magnitude_weight: weight of the log-peak loss of the erosion model.
    batch_size, max_epochs, early_stop_mse, early_stop_patience: for the CLI's data loader and
        Trainer (the paper stopped once validation MSE <= 0.0065 for 3 epochs; 0: off).
    """

    label: ClassVar[str] = "train"

    optimizer: str = "adamw_cosine"
    lr: float = 1e-3
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    gamma: float = 0.85
    cycle_epochs: int = 5
    grad_clip: float = 1.0
    window: int = 0
    stride: int = 0
    rollout_steps: int = 0
    rollout_weight: float = 0.0
    input_noise: float = 0.0
    particles: int = 0
    magnitude_weight: float = 1.0
    batch_size: int = 16
    max_epochs: int = 100
    early_stop_mse: float = 0.0
    early_stop_patience: int = 3
    name: str = field(default="custom", compare=False)

    def _validate(self) -> None:
        need = self._need
        need(self.optimizer in ("adam", "adam_cyclic", "adamw_cosine"),
             f"optimizer must be 'adam', 'adam_cyclic' or 'adamw_cosine', found "
             f"{self.optimizer!r}")
        need(self.lr > 0 and 0 <= self.min_lr <= self.lr,
             f"need 0 <= min_lr <= lr and lr > 0, found lr={self.lr}, min_lr={self.min_lr}")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), found {self.betas}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, found {self.weight_decay}")
        need(0 <= self.warmup_fraction < 1,
             f"warmup_fraction must be in [0, 1), found {self.warmup_fraction}")
        need(0 < self.gamma <= 1, f"gamma must be in (0, 1], found {self.gamma}")
        need(self.cycle_epochs > 0, f"cycle_epochs must be positive, found {self.cycle_epochs}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0, found {self.grad_clip}")
        need(self.window == 0 or self.window >= 2,
             f"window must be 0 (whole trajectories) or >= 2 steps, found {self.window}")
        need(self.stride >= 0, f"stride must be >= 0, found {self.stride}")
        need(self.rollout_steps >= 0 and self.rollout_weight >= 0,
             "rollout_steps and rollout_weight must be >= 0")
        need(self.input_noise >= 0, f"input_noise must be >= 0, found {self.input_noise}")
        need(self.particles >= 0, f"particles must be >= 0, found {self.particles}")
        need(self.batch_size > 0 and self.max_epochs > 0,
             "batch_size and max_epochs must be positive")

    @property
    def window_stride(self) -> int:
        return self.stride or self.window


TrainConfig.PRESETS = {
    "paper-gpt": dict(optimizer="adam_cyclic", lr=2e-3, min_lr=1e-7, betas=(0.9, 0.999),
                      weight_decay=0.0, gamma=0.85, cycle_epochs=5, grad_clip=0.01, window=4,
                      stride=2, batch_size=64, max_epochs=100, early_stop_mse=0.0065,
                      early_stop_patience=3),
    "paper-lstm": dict(optimizer="adam", lr=1e-4, min_lr=0.0, betas=(0.9, 0.999),
                       weight_decay=0.0, grad_clip=0.0, batch_size=64, max_epochs=100),
    "paper-cnn": dict(optimizer="adam", lr=1e-3, min_lr=0.0, betas=(0.9, 0.999),
                      weight_decay=0.0, grad_clip=0.0, batch_size=64, max_epochs=300),
    "fluidgpt": dict(optimizer="adamw_cosine", lr=1e-3, min_lr=1e-5, weight_decay=0.05,
                     warmup_fraction=0.05, grad_clip=1.0, window=0, rollout_steps=0,
                     batch_size=16, max_epochs=200),
    "fluidgpt-cnn": dict(optimizer="adamw_cosine", lr=1e-3, min_lr=1e-5, weight_decay=0.05,
                         warmup_fraction=0.05, grad_clip=1.0, magnitude_weight=1.0,
                         batch_size=16, max_epochs=300),
}


TrainSettings = settings_type(TrainConfig)
