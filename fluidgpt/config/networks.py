"""Configurations of the fluidgpt networks, their presets and their settings types.

One frozen dataclass per network (:class:`GPTConfig`, :class:`LSTMConfig`,
:class:`ErosionConfig`), architecture kept apart from the task (training is in
:mod:`.training`). Sizes that come from the data (P particles, F state features per
particle, K conditions, T steps, wall faces) have the paper's values as defaults and are
overridden from the dataset, e.g. ``GPTConfig.from_preset("paper", n_particles=P,
n_conditions=K)``. :data:`GPTSettings`, :data:`LSTMSettings` and :data:`ErosionSettings` are
what an experiment file writes for each (see :func:`.base.settings_type`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import _Config, settings_type

__all__ = [
    "GPTConfig",
    "LSTMConfig",
    "ErosionConfig",
    "GPTSettings",
    "LSTMSettings",
    "ErosionSettings",
]


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
    activation: the MLP's (and the condition embedding's) GELU: "gelu_tanh", GPT-2's tanh
        approximation, or "gelu", the exact erf form (BERT, ViT). They differ by under 1e-3;
        on an AVX2 CPU the exact one runs about 2.5x faster forward and backward.
    dropout, attn_dropout: dropout of the embeddings, residual branches and MLP, and of the
        attention weights (None: ``dropout``, as GPT-2). With attention dropout, torch's
        scaled_dot_product_attention leaves its fused CPU kernel: measured at the demo's
        sizes on one AVX2 core, 6.1 ms forward against 0.93 ms without.
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
    attn_dropout: float | None = None
    max_steps: int = 64  # longest position index + 1 (learned, rotary and fixed tables)
    context: int = 0
    residual: bool = True
    predict_conditions: bool = False
    bias: bool = True
    layout: str = "case"
    activation: str = "gelu_tanh"
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
        need(self.activation in ("gelu_tanh", "gelu"),
             f"activation must be 'gelu_tanh' or 'gelu', found {self.activation!r}")
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
        need(self.attn_dropout is None or 0.0 <= self.attn_dropout < 1.0,
             f"attn_dropout must be None or in [0, 1), found {self.attn_dropout}")
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


GPTSettings = settings_type(GPTConfig)
LSTMSettings = settings_type(LSTMConfig)
ErosionSettings = settings_type(ErosionConfig)
