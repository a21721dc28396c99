"""Configurations of the fluidgpt networks and of their training.

One frozen dataclass per network (:class:`GPTConfig`, :class:`LSTMConfig`,
:class:`ErosionConfig`) and one for the optimisation (:class:`TrainConfig`): architecture is
kept apart from the task. Each travels inside checkpoints as a plain dict (``to_dict`` /
``from_dict``: lists, numbers, strings, None) so that checkpoints load with
``torch.load(weights_only=True)``; unknown keys are an error. Every combination that cannot
work is refused at construction with a message that says why.

Sizes that come from the data (P particles, F state features per particle, K conditions, T
steps, wall faces) have the paper's values as defaults and are overridden from the dataset,
e.g. ``GPTConfig.from_preset("paper", n_particles=P, n_conditions=K)``.

What an experiment file writes for a network or its training is a *settings* mapping
(:data:`GPTSettings`, :data:`LSTMSettings`, :data:`ErosionSettings`, :data:`TrainSettings`):
an optional ``preset`` name plus any fields to override, every key typed, the sizes that come
from the data left out (``DATA_FIELDS``: they are read from the DataModule, never typed).
These TypedDicts are generated from the dataclasses, so the fields are written once; they are
the types of the LightningModules' ``model`` / ``train`` arguments, which LightningCLI
(jsonargparse) validates key by key. :meth:`_Config.from_settings` turns settings plus the
data's sizes into the frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

__all__ = [
    "ConfigError",
    "GPTConfig",
    "LSTMConfig",
    "ErosionConfig",
    "TrainConfig",
    "GPTSettings",
    "LSTMSettings",
    "ErosionSettings",
    "TrainSettings",
]

C = TypeVar("C", bound="_Config")


class ConfigError(ValueError):
    """A configuration that cannot describe a working network or run; the message says why."""


class _Config:
    """Serialisation and presets shared by every configuration dataclass."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    label: ClassVar[str] = "config"
    #: Fields whose values come from the data (the DataModule), not from a settings file.
    DATA_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if isinstance(getattr(self, f.name), list):  # lists from JSON/YAML compare equal
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        pass

    def _need(self, cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{self.label} config '{getattr(self, 'name', '?')}': {msg}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings, None): safe for weights_only loading."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown {cls.label} config key(s) {unknown}; valid keys are "
                              f"{cls.field_names()}")
        return cls(**d)

    @classmethod
    def from_preset(cls: type[C], name: str, **overrides: Any) -> C:
        """A named preset with any field overridden, e.g. ``n_particles=64``."""
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown {cls.label} preset {name!r}; available presets: "
                              f"{sorted(cls.PRESETS)}")
        values = {"name": name, **cls.PRESETS[name], **overrides}
        return cls.from_dict(values)

    @classmethod
    def from_settings(cls: type[C], settings: Mapping[str, Any] | None = None,
                      **data: Any) -> C:
        """The preset named by ``settings["preset"]`` (none: the dataclass defaults), then
        ``data`` (the sizes read from the data), then the other settings.

        A data-sized field written in the settings must agree with the data (a checkpoint's
        full dict holds them all; an experiment file never needs to write them).
        """
        values = dict(settings or {})
        preset = values.pop("preset", None)
        clash = {k: values[k] for k in cls.DATA_FIELDS if k in values and k in data
                 and values[k] != data[k]}
        if clash:
            raise ConfigError(f"{cls.label} config: {sorted(clash)} come from the data "
                              f"({ {k: data[k] for k in clash} }), found {clash}")
        if preset is None:
            return cls.from_dict({**data, **values})
        return cls.from_preset(preset, **{**data, **values})

    def replace(self: C, **changes: Any) -> C:
        return self.from_dict({**self.to_dict(), **changes})


# ------------------------------------------------------------------------------------- GPT
@dataclass(frozen=True)
class GPTConfig(_Config):
    """Decoder-only transformer over time steps: one token per step holding all P particles.

    embedding: "raw": the token is the flattened (P, F + K) array of every particle's state
        followed by the K conditions (the paper: 8 P numbers, d_model = 8 P, no learned
        embedding); "linear": a learned Linear(P F -> d_model) of the state.
    conditioning: "repeat" (raw tokens only: conditions copied into every particle's slot),
        "add" (a learned embedding of the K conditions added to every token) or "prefix" (the
        same embedding as a conditioning token before step 0).
    positions: "learned" (absolute, over the whole trajectory), "rotary", "sinusoidal"
        (Vaswani) or "trphysx" (the paper's encoding inherited from TrPhysX: even dimensions
        sin(pos / 10000^(2i/d)), but every odd dimension cos(pos) at one frequency).
    context: 0: attention over the whole trajectory so far, KV-cached generation; > 0: a
        sliding window of that many steps with positions restarting at 0 in every window (the
        paper's 4), recomputed every step (a KV cache cannot be reused when positions shift).
    residual: the network predicts the change of state, added to the input step.
    predict_conditions: raw tokens only: the output is a whole token (P, F + K), condition
        slots included, so the loss can cover all 8 P features as in the paper.
    layout: "case": one token per step holds all P particles (the paper); "particle": every
        particle's path is its own sequence of one-particle tokens, with the weights shared
        by all particles. The tracked particles are one-way coupled and never collide, so a
        path depends only on its own start and the conditions: "particle" learns one map
        from P times as many examples (learned embeddings only).
    """

    label: ClassVar[str] = "GPT"
    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("n_particles", "n_features", "n_conditions")

    n_particles: int = 196  # P
    n_features: int = 3  # F per particle per step: x, y, z (6 with velocity)
    n_conditions: int = 5  # K
    embedding: str = "linear"
    conditioning: str = "add"
    positions: str = "learned"
    d_model: int | None = 256  # None with raw tokens: the token size P (F + K)
    n_layer: int = 6
    n_head: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    max_steps: int = 64  # longest position index + 1 (learned, rotary and fixed tables)
    context: int = 0
    residual: bool = True
    predict_conditions: bool = False
    bias: bool = True
    layout: str = "case"
    name: str = field(default="custom", compare=False)

    @property
    def token_size(self) -> int:
        """Numbers in a raw token: P (F + K)."""
        return self.n_particles * (self.n_features + self.n_conditions)

    @property
    def width(self) -> int:
        """d_model actually used."""
        if self.embedding == "raw":
            return self.token_size
        assert self.d_model is not None
        return self.d_model

    @property
    def out_features(self) -> int:
        """Per-particle features of the output: F, or F + K with predict_conditions."""
        return self.n_features + (self.n_conditions if self.predict_conditions else 0)

    @property
    def prefix(self) -> int:
        """Tokens before step 0: 1 with a conditioning token, else 0."""
        return int(self.conditioning == "prefix")

    def _validate(self) -> None:
        need = self._need
        need(self.n_particles > 0 and self.n_features > 0 and self.n_conditions >= 0,
             f"n_particles and n_features must be positive, n_conditions >= 0; found P="
             f"{self.n_particles}, F={self.n_features}, K={self.n_conditions}")
        need(self.embedding in ("raw", "linear"),
             f"embedding must be 'raw' or 'linear', found {self.embedding!r}")
        need(self.conditioning in ("repeat", "add", "prefix"),
             f"conditioning must be 'repeat', 'add' or 'prefix', found {self.conditioning!r}")
        need((self.embedding == "raw") == (self.conditioning == "repeat"),
             "raw tokens carry the conditions by repeating them for every particle and learned "
             f"embeddings add or prefix them: embedding={self.embedding!r} does not go with "
             f"conditioning={self.conditioning!r}")
        need(self.layout in ("case", "particle"),
             f"layout must be 'case' or 'particle', found {self.layout!r}")
        need(self.layout == "case" or self.embedding == "linear",
             "layout 'particle' needs a learned embedding (embedding='linear'): raw tokens "
             "hold every particle of a step")
        need(self.positions in ("learned", "rotary", "sinusoidal", "trphysx"),
             "positions must be 'learned', 'rotary', 'sinusoidal' or 'trphysx', found "
             f"{self.positions!r}")
        if self.embedding == "raw":
            need(self.d_model in (None, self.token_size),
                 f"raw tokens fix d_model to P (F + K) = {self.token_size}; found d_model="
                 f"{self.d_model} (set it to None)")
        else:
            need(self.d_model is not None and self.d_model > 0,
                 f"a learned embedding needs a positive d_model, found {self.d_model}")
            need(not self.predict_conditions,
                 "predict_conditions needs raw tokens (only they have condition slots)")
        need(self.n_layer > 0 and self.n_head > 0,
             f"n_layer and n_head must be positive, found {self.n_layer}, {self.n_head}")
        need(self.width % self.n_head == 0,
             f"d_model {self.width} does not divide into {self.n_head} heads")
        need(self.positions != "rotary" or (self.width // self.n_head) % 2 == 0,
             f"rotary positions need an even head size, found {self.width // self.n_head}")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), found {self.dropout}")
        need(self.mlp_ratio > 0, f"mlp_ratio must be positive, found {self.mlp_ratio}")
        need(self.max_steps > 0, f"max_steps must be positive, found {self.max_steps}")
        need(0 <= self.context <= self.max_steps,
             f"context must be in [0, max_steps={self.max_steps}], found {self.context}")


GPTConfig.PRESETS = {
    # The published model: 8 P raw numbers per token, ~120 M parameters at P = 196.
    "paper": dict(
        n_conditions=5, embedding="raw", conditioning="repeat", positions="trphysx",
        d_model=None, n_layer=4, n_head=2, mlp_ratio=4.0, dropout=0.0, max_steps=50,
        context=4, residual=False, predict_conditions=True,
    ),
    # The better design: learned state/condition embeddings, positions over the whole
    # trajectory, KV-cached generation, residual steps; only the 3 conditions that change the
    # physics (particle diameter, main- and sub-inlet speeds).
    "fluidgpt": dict(
        n_conditions=3, embedding="linear", conditioning="add", positions="learned",
        d_model=256, n_layer=6, n_head=8, dropout=0.1, max_steps=64, context=0, residual=True,
    ),
    # A few-second CPU network for smoke runs and demos.
    "tiny": dict(
        n_conditions=3, embedding="linear", conditioning="add", positions="learned",
        d_model=32, n_layer=2, n_head=4, dropout=0.0, max_steps=64, context=0, residual=True,
    ),
}


# ------------------------------------------------------------------------------- baselines
@dataclass(frozen=True)
class LSTMConfig(_Config):
    """The paper's LSTM / BiLSTM baselines: the first raw token repeated T times -> T tokens.

    The token is the GPT's raw token (P (F + K) numbers); hidden None means the token size
    (the paper's "width d"). With predict_conditions the output is a whole token.
    """

    label: ClassVar[str] = "LSTM"
    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("n_particles", "n_features", "n_conditions")

    n_particles: int = 196
    n_features: int = 3
    n_conditions: int = 5
    hidden: int | None = None
    n_layer: int = 4
    bidirectional: bool = False
    dropout: float = 0.0
    predict_conditions: bool = True
    name: str = field(default="custom", compare=False)

    @property
    def token_size(self) -> int:
        return self.n_particles * (self.n_features + self.n_conditions)

    @property
    def width(self) -> int:
        return self.token_size if self.hidden is None else self.hidden

    @property
    def out_features(self) -> int:
        return self.n_features + (self.n_conditions if self.predict_conditions else 0)

    def _validate(self) -> None:
        self._need(self.n_particles > 0 and self.n_features > 0 and self.n_conditions >= 0,
                   "n_particles and n_features must be positive, n_conditions >= 0")
        self._need(self.hidden is None or self.hidden > 0,
                   f"hidden must be positive or None, found {self.hidden}")
        self._need(self.n_layer > 0, f"n_layer must be positive, found {self.n_layer}")
        self._need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), found {self.dropout}")


LSTMConfig.PRESETS = {
    "paper-lstm": dict(n_conditions=5, hidden=None, n_layer=4, bidirectional=False),
    "paper-bilstm": dict(n_conditions=5, hidden=None, n_layer=4, bidirectional=True),
    "tiny-lstm": dict(n_conditions=3, hidden=32, n_layer=2, bidirectional=False),
    "tiny-bilstm": dict(n_conditions=3, hidden=32, n_layer=2, bidirectional=True),
}


# --------------------------------------------------------------------------------- erosion
@dataclass(frozen=True)
class ErosionConfig(_Config):
    """Trajectories (B, T, P, F) + conditions (B, K) -> erosion of every wall face.

    arch: "paper": the published Conv3d stack over the (1, T, F + K, P) volume, one value per
        face (the map divided by its own maximum); "pooled": a per-particle trajectory encoder
        shared by all particles, a particle-identity embedding, mean/max pooling over
        particles and a conditions MLP (see :class:`fluidgpt.cnn.ErosionNet`).
    magnitude_head: also predict the log of the peak erosion rate (scaled), which the paper's
        per-map normalisation threw away.
    output_modes: 0 (the paper): the pattern head predicts one value per face; k > 0: it
        predicts k coefficients of the training patterns' principal modes (POD), and the
        pattern is their mean plus the modes weighted by the coefficients: every prediction
        lies in the span of what the wall maps do, which a few hundred training cases cannot
        teach a face-by-face output layer of thousands of faces. The modes are computed from
        the training maps when the scalers are fitted (ErosionModule.fit_output_basis).
    """

    label: ClassVar[str] = "erosion"
    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("n_steps", "n_particles", "n_features",
                                              "n_conditions", "n_faces")

    arch: str = "pooled"
    n_steps: int = 50  # T
    n_particles: int = 196
    n_features: int = 3
    n_conditions: int = 5
    n_faces: int = 38312
    filters: tuple[int, ...] = (10, 20, 30, 40)  # paper arch
    hidden: int = 256  # pooled arch
    magnitude_head: bool = True
    dropout: float = 0.0
    output_modes: int = 0
    name: str = field(default="custom", compare=False)

    def _validate(self) -> None:
        need = self._need
        need(self.arch in ("paper", "pooled"), f"arch must be 'paper' or 'pooled', found "
             f"{self.arch!r}")
        need(min(self.n_steps, self.n_particles, self.n_features, self.n_faces) > 0
             and self.n_conditions >= 0,
             "n_steps, n_particles, n_features and n_faces must be positive, n_conditions >= 0")
        need(len(self.filters) > 0 and all(f > 0 for f in self.filters),
             f"filters must be positive channel counts, found {self.filters}")
        need(self.hidden > 0, f"hidden must be positive, found {self.hidden}")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), found {self.dropout}")
        need(0 <= self.output_modes <= self.n_faces, f"output_modes must be in [0, n_faces], "
             f"found {self.output_modes}")


ErosionConfig.PRESETS = {
    "paper": dict(arch="paper", n_conditions=5, filters=(10, 20, 30, 40),
                  magnitude_head=False),
    "fluidgpt": dict(arch="pooled", n_conditions=3, hidden=256, magnitude_head=True,
                     dropout=0.1),
    "tiny": dict(arch="pooled", n_conditions=3, hidden=32, magnitude_head=True),
}


# -------------------------------------------------------------------------------- training
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


# ------------------------------------------------------------------------------ settings
def settings_type(cls: type[_Config]) -> type:
    """The TypedDict of what a settings file may write for ``cls``: ``preset`` (one of its
    presets) and every field except ``name`` and the data-sized ones, all optional."""
    hints = typing.get_type_hints(cls)
    keys: dict[str, Any] = {}
    if cls.PRESETS:
        keys["preset"] = Literal[tuple(cls.PRESETS)]  # type: ignore[valid-type]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name != "name" and f.name not in cls.DATA_FIELDS:
            keys[f.name] = hints[f.name]
    name = cls.__name__.replace("Config", "Settings")
    settings = TypedDict(name, keys, total=False)  # type: ignore[operator]
    settings.__module__ = __name__
    settings.__doc__ = (f"Settings of a {cls.__name__}: an optional preset "
                        f"({', '.join(cls.PRESETS) or 'none'}) and fields to override; sizes "
                        f"from the data ({', '.join(cls.DATA_FIELDS) or 'none'}) are not "
                        "written.")
    return settings


GPTSettings = settings_type(GPTConfig)
LSTMSettings = settings_type(LSTMConfig)
ErosionSettings = settings_type(ErosionConfig)
TrainSettings = settings_type(TrainConfig)
