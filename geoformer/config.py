"""Network configuration of the geoformer (Pangu-Weather's 3D Earth-specific transformer).

A configuration is a frozen dataclass. It travels inside checkpoints as a plain dict
(``to_dict`` / ``from_dict``) so that checkpoints load with ``torch.load(weights_only=True)``.
Every geometric constraint is checked at construction, so a configuration that would pad
longitude (and so break the periodic shifted windows) never reaches a forward pass.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "PANGU_LEVELS",
    "PANGU_UPPER_VARS",
    "PANGU_SURFACE_VARS",
    "PANGU_CONSTANT_VARS",
    "PRESETS",
    "GeoFormerConfig",
    "ConfigError",
    "TokenGrid",
    "Network",
    "CONTRACT_FIELDS",
    "PresetName",
]

# The released model's contract, in the package's internal order (levels from the surface up).
PANGU_LEVELS = (1000, 925, 850, 700, 600, 500, 400, 300, 250, 200, 150, 100, 50)
PANGU_UPPER_VARS = (
    "geopotential",
    "specific_humidity",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
)
PANGU_SURFACE_VARS = (
    "mean_sea_level_pressure",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
    "2m_temperature",
)
PANGU_CONSTANT_VARS = ("land_sea_mask", "soil_type", "geopotential_at_surface")


class ConfigError(ValueError):
    """A configuration that cannot describe a working network; the message says why."""


@dataclass(frozen=True)
class TokenGrid:
    """Token-grid geometry of one stage: sizes before and after padding to the window."""

    levels: int  # Z tokens (surface token included)
    lat: int  # H tokens
    lon: int  # W tokens
    padded_levels: int
    padded_lat: int
    window_types: int  # (padded_levels / Wz) * (padded_lat / Wh)
    lon_windows: int  # W / Ww


def _ceil_to(n: int, m: int) -> int:
    return math.ceil(n / m) * m


@dataclass(frozen=True)
class GeoFormerConfig:
    """Architecture and variable contract of one geoformer network.

    Grid sizes are (H, W) = (latitude, longitude) grid points; patch and window sizes are
    (Z, H, W) = (level, latitude, longitude). Levels are in the internal order, from the
    surface up (hPa), latitude runs north to south and longitude eastwards from 0.
    """

    grid: tuple[int, int] = (721, 1440)
    levels: tuple[int, ...] = PANGU_LEVELS
    upper_vars: tuple[str, ...] = PANGU_UPPER_VARS
    surface_vars: tuple[str, ...] = PANGU_SURFACE_VARS
    constant_vars: tuple[str, ...] = PANGU_CONSTANT_VARS
    patch: tuple[int, int, int] = (2, 4, 4)
    window: tuple[int, int, int] = (2, 6, 12)
    embed_dim: int = 192
    depths: tuple[int, int, int, int] = (2, 6, 6, 2)
    heads: tuple[int, int, int, int] = (6, 12, 12, 6)
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    attention: str = "sdpa"  # "sdpa" (torch's fused kernels) or "reference" (plain matmuls)
    checkpoint_activations: bool = False
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        # Normalise sequences to tuples so configs from YAML/JSON lists compare equal.
        for f in ("grid", "levels", "upper_vars", "surface_vars", "constant_vars", "patch",
                  "window", "depths", "heads"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        self._validate()

    # ----------------------------------------------------------------------------- checks
    def _validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"geoformer config '{self.name}': {msg}")

        need(len(self.grid) == 2 and all(int(g) > 0 for g in self.grid),
             f"grid must be (H, W) with positive sizes, found {self.grid}")
        need(len(self.patch) == 3 and all(p > 0 for p in self.patch),
             f"patch must be (Z, H, W) positive sizes, found {self.patch}")
        need(len(self.window) == 3 and all(w > 0 for w in self.window),
             f"window must be (Z, H, W) positive sizes, found {self.window}")
        need(len(self.depths) == 4 and self.depths[0] == self.depths[3]
             and self.depths[1] == self.depths[2] and all(d > 0 for d in self.depths),
             f"depths must be 4 positive stage depths (d1, d2, d2, d1), found {self.depths}")
        need(len(self.heads) == 4, f"heads must give 4 stage head counts, found {self.heads}")
        need(len(self.levels) > 0, "at least one pressure level is needed")
        need(len(self.upper_vars) > 0, "at least one upper-air variable is needed")
        need(len(self.surface_vars) > 0, "at least one surface variable is needed")
        for group in ("levels", "upper_vars", "surface_vars", "constant_vars"):
            values = getattr(self, group)
            need(len(set(values)) == len(values), f"{group} has duplicates: {values}")
        need(self.attention in ("sdpa", "reference"),
             f"attention must be 'sdpa' or 'reference', found {self.attention!r}")
        need(0.0 <= self.drop_path < 1.0, f"drop_path must be in [0, 1), found {self.drop_path}")
        need(self.mlp_ratio > 0, f"mlp_ratio must be positive, found {self.mlp_ratio}")
        for stage, (dim, nh) in enumerate(zip(self.stage_dims, self.heads), start=1):
            need(nh > 0 and dim % nh == 0,
                 f"stage {stage}: embedding dim {dim} does not divide into {nh} heads")

        _, W = self.grid
        pw, ww = self.patch[2], self.window[2]
        need(W % pw == 0,
             f"{W} longitudes do not divide by the longitude patch {pw}: longitude would be "
             "padded, which breaks the periodic (0/360 deg) windows; choose a patch that divides "
             "the longitude count")
        w1 = W // pw
        need(w1 % 2 == 0,
             f"{w1} longitude tokens at stage 1 are odd: down-sampling merges pairs of "
             "longitude tokens and would have to pad longitude")
        for stage, n in ((1, w1), (2, w1 // 2)):
            need(n % ww == 0,
                 f"stage {stage} has {n} longitude tokens, which do not divide by the longitude "
                 f"window {ww}: longitude would be padded, breaking the periodic shift; pick a "
                 f"window that divides {w1} and {w1 // 2} (e.g. "
                 f"{sorted(d for d in range(2, w1 // 2 + 1) if (w1 // 2) % d == 0)[-3:]})")

    # ---------------------------------------------------------------------------- geometry
    @property
    def stage_dims(self) -> tuple[int, int, int, int]:
        C = self.embed_dim
        return (C, 2 * C, 2 * C, C)

    @property
    def shift(self) -> tuple[int, int, int]:
        """Shift of the odd (shifted-window) blocks: half the window on every axis."""
        return tuple(w // 2 for w in self.window)  # type: ignore[return-value]

    @property
    def padded_grid(self) -> tuple[int, int, int]:
        """(Z, H, W) of the upper-air input after zero-padding to whole patches."""
        pz, ph, pw = self.patch
        return (_ceil_to(len(self.levels), pz), _ceil_to(self.grid[0], ph), self.grid[1])

    def token_grid(self, stage: int) -> TokenGrid:
        """Token-grid geometry of stage 1..4 (stages 2 and 3 are the down-sampled grid)."""
        if stage not in (1, 2, 3, 4):
            raise ConfigError(f"stage must be 1, 2, 3 or 4, found {stage}")
        pz, ph, pw = self.patch
        wz, wh, ww = self.window
        Zp, Hp, Wp = self.padded_grid
        Z, H, W = Zp // pz + 1, Hp // ph, Wp // pw  # +1: the surface is level-token 0
        if stage in (2, 3):
            H, W = math.ceil(H / 2), W // 2
        Zpad, Hpad = _ceil_to(Z, wz), _ceil_to(H, wh)
        return TokenGrid(Z, H, W, Zpad, Hpad, (Zpad // wz) * (Hpad // wh), W // ww)

    @property
    def bias_rows(self) -> int:
        """Rows of each Earth-specific bias table: (2 Ww - 1) Wh^2 Wz^2."""
        wz, wh, ww = self.window
        return (2 * ww - 1) * wh**2 * wz**2

    # ----------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings): safe for weights_only checkpoints."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeoFormerConfig:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(
                f"unknown geoformer config key(s) {unknown}; valid keys are {cls.field_names()}")
        return cls(**d)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GeoFormerConfig:
        """A named preset with any field overridden, e.g. ``grid=(121, 240)``."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}")
        values = {**PRESETS[name], **overrides}
        values.setdefault("name", name)
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> GeoFormerConfig:
        return self.from_dict({**self.to_dict(), **changes})


# Named presets: field values on top of the dataclass defaults (which are the released model).
PRESETS: dict[str, dict[str, Any]] = {
    # The released 0.25 deg model: ~64 M parameters per lead-time model.
    "pangu": {},
    # Pangu-lite: coarser patches (2, 8, 8) so 180 and 90 longitude tokens: window (2, 6, 10).
    "pangu-lite": {"patch": (2, 8, 8), "window": (2, 6, 10)},
    # 1.5 deg (WeatherBench 2 240x121, poles included): 60 and 30 longitude tokens.
    "pangu-1.5": {"grid": (121, 240), "window": (2, 6, 10)},
    # 5.625 deg (WeatherBench 2 64x32, no poles): patch 2 gives 32 and 16 longitude tokens.
    "pangu-5.625": {"grid": (32, 64), "patch": (2, 2, 2), "window": (2, 4, 8)},
    # A small 5.625 deg network that trains on a CPU in minutes (demos, smoke runs).
    "small-5.625": {
        "grid": (32, 64), "patch": (2, 2, 2), "window": (2, 4, 8), "embed_dim": 64,
        "depths": (2, 2, 2, 2), "heads": (2, 4, 4, 2), "drop_path": 0.1,
    },
}


#: GeoFormerConfig fields that come from the data (the data-to-model contract), never typed by
#: a user: an experiment chooses the architecture (:class:`Network`), the data the rest.
CONTRACT_FIELDS = ("grid", "levels", "upper_vars", "surface_vars", "constant_vars")

#: The names of :data:`PRESETS`, as a type (so an experiment's unknown preset is a type error).
PresetName = Literal["pangu", "pangu-lite", "pangu-1.5", "pangu-5.625", "small-5.625"]


@dataclass(frozen=True)
class Network:
    """The architecture an experiment chooses: a preset plus any of its fields overridden.

    ``None`` keeps the preset's value. Grid, levels and variables are not here: they come from
    the data (:data:`CONTRACT_FIELDS`). This is the ``model.network`` section of a
    ``geoformer fit`` experiment; checkpoints store it :meth:`resolved` (every field written
    out), so a later change of a preset never changes a trained network.

    Args:
        preset: the named configuration the other fields override (:data:`PRESETS`).
        patch: patch size (Z, H, W) of the embedding.
        window: attention window (Z, H, W); the longitude tokens of stages 1 and 2 must
            divide by its W.
        embed_dim: channels C of stages 1 and 4 (2C in stages 2 and 3).
        depths: blocks per stage (d1, d2, d2, d1).
        heads: attention heads per stage.
        mlp_ratio: MLP hidden size over C.
        drop_path: largest stochastic-depth rate.
        attention: "sdpa" (torch's fused kernels) or "reference" (plain matrix products).
        checkpoint_activations: recompute each block in the backward pass (less memory).
    """

    preset: PresetName = "small-5.625"
    patch: tuple[int, int, int] | None = None  # (Z, H, W)
    window: tuple[int, int, int] | None = None  # (Z, H, W)
    embed_dim: int | None = None
    depths: tuple[int, int, int, int] | None = None
    heads: tuple[int, int, int, int] | None = None
    mlp_ratio: float | None = None
    drop_path: float | None = None
    attention: Literal["sdpa", "reference"] | None = None
    checkpoint_activations: bool | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; available presets: "
                              f"{sorted(PRESETS)}")
        for f in ("patch", "window", "depths", "heads"):
            if getattr(self, f) is not None:
                object.__setattr__(self, f, tuple(getattr(self, f)))

    def overrides(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "preset" and getattr(self, f.name) is not None}

    def config(self, **contract: Any) -> GeoFormerConfig:
        """The network configuration on the data's grid, levels and variables."""
        unknown = sorted(set(contract) - set(CONTRACT_FIELDS))
        if unknown:
            raise ConfigError(f"{unknown} are not data-contract fields {list(CONTRACT_FIELDS)}")
        return GeoFormerConfig.from_preset(self.preset, **self.overrides(), **contract)

    def resolved(self) -> Network:
        """The same network with every field written out (what checkpoints store)."""
        config = GeoFormerConfig.from_preset(self.preset, **self.overrides())
        return Network(preset=self.preset, **{f.name: getattr(config, f.name)
                                              for f in dataclasses.fields(self)
                                              if f.name != "preset"})

    def to_dict(self) -> dict[str, Any]:
        """Plain values only: safe for weights_only checkpoints."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Network:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown network key(s) {unknown}; valid keys are "
                              f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**d)
