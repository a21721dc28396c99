"""Erosion models: trajectories (B, T, P, F) + conditions (B, K) -> erosion of every wall face.

The paper divided every erosion map by its own maximum, so its CNN learned the pattern but
not the magnitude. Here an erosion map R (B, faces) in kg m^-2 s^-1 is split into
pattern = R / max(R) (in [0, 1]) and log_peak = ln max(R) (:func:`split_erosion`); models
return both (an :class:`ErosionPrediction`) and :func:`join_erosion` puts them back
together. log_peak is scaled by the caller (a 1-feature Scaler); the pattern is not.

* :class:`PaperErosionCNN`: the published network (pattern only unless magnitude_head).
* :class:`ErosionNet`: the default: each particle's whole trajectory (plus a validity flag
  per step) encoded by one MLP shared by all particles, plus a learned embedding of the
  particle's identity (its injection face); mean and max pooling over particles; a
  conditions MLP; a trunk feeding a pattern head (:class:`PatternHead`: a Linear to every
  face, or to the coefficients of an output basis with ``output_modes``) and a magnitude
  head (log peak rate).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .config import ErosionConfig

__all__ = [
    "ErosionPrediction",
    "PaperErosionCNN",
    "ErosionNet",
    "PatternHead",
    "pattern_modes",
    "build_erosion_model",
    "paper_volume",
    "conv_stack_shape",
    "split_erosion",
    "join_erosion",
]


class ErosionPrediction(NamedTuple):
    """pattern (B, faces): erosion / its maximum; log_peak (B,) scaled ln(max), or None."""

    pattern: Tensor
    log_peak: Tensor | None


# -------------------------------------------------------------------------- pure functions
def split_erosion(rate: Tensor, floor: float | None = None) -> tuple[Tensor, Tensor]:
    """rate (B, faces) >= 0 -> (pattern (B, faces) = rate / max, log_peak (B,) = ln max).

    A map without a positive value has no pattern: it is an error unless ``floor`` (a rate
    in the same units) is given, which is then used as its maximum.
    """
    peak = rate.amax(dim=-1)  # (B,)
    if floor is not None:
        peak = peak.clamp_min(floor)
    elif not (peak > 0).all():
        raise ValueError("an erosion map has no positive value, so it has no pattern; pass "
                         "floor= (a rate in the map's units) to use as its maximum")
    return rate / peak[:, None], peak.log()


def join_erosion(pattern: Tensor, log_peak: Tensor) -> Tensor:
    """(pattern (B, faces), log_peak (B,) unscaled) -> rate (B, faces)."""
    return pattern * log_peak.exp()[:, None]


def pattern_modes(patterns: Tensor, modes: int) -> tuple[Tensor, Tensor]:
    """The output basis of training patterns (N, faces): their mean (faces,) and the first
    k = min(modes, N - 1) principal modes (k, faces), each scaled by its singular value /
    sqrt(N), so that the training patterns' coefficients have unit variance."""
    n = patterns.shape[0]
    mean = patterns.mean(dim=0)
    _, s, vh = torch.linalg.svd(patterns - mean, full_matrices=False)  # s (r,), vh (r, faces)
    k = max(0, min(modes, n - 1, len(s)))
    return mean, vh[:k] * (s[:k, None] / n ** 0.5)


def paper_volume(trajectories: Tensor, conditions: Tensor) -> Tensor:
    """The paper's CNN input: (B, T, P, F), (B, K) -> (B, 1, T, F + K, P).

    Conditions are broadcast over steps and particles. The paper z-scored each of the F + K
    channels; here the caller's scalers already did (positions per axis, conditions each).
    """
    B, T, P, _ = trajectories.shape
    cond = conditions[:, None, None, :].expand(B, T, P, conditions.shape[-1])  # (B, T, P, K)
    x = torch.cat([trajectories, cond], dim=-1)  # (B, T, P, F+K)
    return x.transpose(2, 3)[:, None]  # (B, 1, T, F+K, P)


def conv_stack_shape(size: tuple[int, ...], blocks: int) -> tuple[int, ...]:
    """Spatial size after ``blocks`` x [Conv3d(kernel 2, pad 1) -> MaxPool3d(2, pad 1)].

    The convolution grows each axis by one (n + 2 - 2 + 1) and the pooling maps m to
    floor(m / 2) + 1 (floor((m + 2 - 2) / 2) + 1).
    """
    out = tuple(size)
    for _ in range(blocks):
        out = tuple((n + 1) // 2 + 1 for n in out)
    return out


# -------------------------------------------------------------------------------- models
class PatternHead(nn.Module):
    """Features (B, H) -> pattern (B, faces): one Linear per face (modes 0), or a Linear to
    ``modes`` coefficients of a fixed output basis, pattern = mean + coefficients @ basis.

    The basis (buffers ``mean`` (faces,) and ``basis`` (modes, faces), saved with the
    weights) is set from data by :meth:`set_basis`; until then it is zero.
    """

    def __init__(self, features: int, faces: int, modes: int = 0) -> None:
        super().__init__()
        self.modes = modes
        self.linear = nn.Linear(features, modes or faces)
        if modes:
            self.register_buffer("mean", torch.zeros(faces))
            self.register_buffer("basis", torch.zeros(modes, faces))

    def set_basis(self, mean: Tensor, basis: Tensor) -> None:
        """mean (faces,), basis (k, faces) with k <= modes (missing modes stay zero)."""
        if not self.modes:
            raise ValueError("this head has no output basis (output_modes 0)")
        if mean.shape != self.mean.shape or basis.ndim != 2 or basis.shape[1] != len(mean) \
                or basis.shape[0] > self.modes:
            raise ValueError(f"the basis must be mean {tuple(self.mean.shape)} and at most "
                             f"{tuple(self.basis.shape)}, found {tuple(mean.shape)} and "
                             f"{tuple(basis.shape)}")
        self.mean.copy_(mean)
        self.basis.zero_()
        self.basis[:basis.shape[0]].copy_(basis)

    def forward(self, h: Tensor) -> Tensor:
        out = self.linear(h)  # (B, faces) or (B, modes)
        return self.mean + out @ self.basis if self.modes else out  # (B, faces)


def _check_inputs(cfg: ErosionConfig, trajectories: Tensor, conditions: Tensor) -> None:
    T, P, F, K = cfg.n_steps, cfg.n_particles, cfg.n_features, cfg.n_conditions
    if trajectories.ndim != 4 or tuple(trajectories.shape[1:]) != (T, P, F):
        raise ValueError(f"trajectories must be (B, T, P, F) = (B, {T}, {P}, {F}), found "
                         f"{tuple(trajectories.shape)}")
    if conditions.shape != (trajectories.shape[0], K):
        raise ValueError(f"conditions must be (B, K) = ({trajectories.shape[0]}, {K}), found "
                         f"{tuple(conditions.shape)}")


class PaperErosionCNN(nn.Module):
    """The published CNN: 4 x [Conv3d(k 2, pad 1) -> MaxPool3d(2, pad 1) -> GELU] with
    10, 20, 30, 40 filters over the (1, T, F + K, P) volume, flatten, Linear to one value per
    wall face, LeakyReLU. With ``magnitude_head`` a Linear(flat, 1) also predicts log_peak;
    with ``output_modes`` the Linear predicts the coefficients of an output basis
    (:class:`PatternHead`) before the LeakyReLU.
    """

    def __init__(self, config: ErosionConfig) -> None:
        super().__init__()
        self.config = cfg = config
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in cfg.filters:
            layers += [nn.Conv3d(c_in, c_out, kernel_size=2, padding=1),
                       nn.MaxPool3d(kernel_size=2, padding=1), nn.GELU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        size = conv_stack_shape((cfg.n_steps, cfg.n_features + cfg.n_conditions,
                                 cfg.n_particles), len(cfg.filters))
        flat = cfg.filters[-1] * size[0] * size[1] * size[2]
        self.head = PatternHead(flat, cfg.n_faces, cfg.output_modes)
        self.act = nn.LeakyReLU()
        self.magnitude = nn.Linear(flat, 1) if cfg.magnitude_head else None

    def forward(self, trajectories: Tensor, conditions: Tensor,
                valid: Tensor | None = None) -> ErosionPrediction:
        """(B, T, P, F), (B, K) -> pattern (B, faces), log_peak (B,) or None.

        ``valid`` is accepted for a common signature and ignored, as in the paper.
        """
        _check_inputs(self.config, trajectories, conditions)
        h = self.features(paper_volume(trajectories, conditions)).flatten(1)  # (B, flat)
        log_peak = self.magnitude(h).squeeze(-1) if self.magnitude is not None else None
        return ErosionPrediction(self.act(self.head(h)), log_peak)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ErosionNet(nn.Module):
    """Per-particle trajectory encoder + pooling + conditions MLP -> pattern and magnitude.

    Every particle's trajectory (T steps x (F features + a validity flag), invalid steps
    zeroed) goes through the same MLP, with a learned embedding of the particle's identity
    added after the first layer (a stream's injection face matters beyond its path). Mean
    and max over particles make the code independent of particle order; the conditions MLP
    is concatenated before a two-layer trunk. The pattern head is a :class:`PatternHead`; the
    magnitude head an MLP to the (scaled) log peak rate.
    """

    def __init__(self, config: ErosionConfig) -> None:
        super().__init__()
        self.config = cfg = config
        h = cfg.hidden
        self.particle_in = nn.Linear(cfg.n_steps * (cfg.n_features + 1), h)
        self.identity = nn.Parameter(torch.zeros(cfg.n_particles, h))
        self.particle_out = nn.Sequential(nn.GELU(), nn.Linear(h, h))
        self.conditions = nn.Sequential(nn.Linear(cfg.n_conditions, h), nn.GELU(),
                                        nn.Linear(h, h))
        self.trunk = nn.Sequential(nn.LayerNorm(3 * h), nn.Linear(3 * h, h), nn.GELU(),
                                   nn.Dropout(cfg.dropout), nn.Linear(h, h), nn.GELU())
        self.pattern = PatternHead(h, cfg.n_faces, cfg.output_modes)
        self.magnitude = (nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
                          if cfg.magnitude_head else None)
        nn.init.normal_(self.identity, std=0.02)

    def forward(self, trajectories: Tensor, conditions: Tensor,
                valid: Tensor | None = None) -> ErosionPrediction:
        """(B, T, P, F), (B, K), valid (B, T, P) bool or None -> pattern (B, faces),
        log_peak (B,) (None without a magnitude head)."""
        _check_inputs(self.config, trajectories, conditions)
        B, T, P, F = trajectories.shape
        if valid is None:
            valid = torch.ones(B, T, P, dtype=torch.bool, device=trajectories.device)
        elif valid.shape != (B, T, P):
            raise ValueError(f"valid must be (B, T, P) = {(B, T, P)}, found "
                             f"{tuple(valid.shape)}")
        v = valid[..., None].to(trajectories.dtype)  # (B, T, P, 1)
        x = torch.cat([trajectories * v, v], dim=-1)  # (B, T, P, F+1)
        x = x.permute(0, 2, 1, 3).flatten(2)  # (B, P, T*(F+1))
        e = self.particle_out(self.particle_in(x) + self.identity)  # (B, P, h)
        pooled = torch.cat([e.mean(dim=1), e.amax(dim=1), self.conditions(conditions)], -1)
        z = self.trunk(pooled)  # (B, h)
        log_peak = self.magnitude(z).squeeze(-1) if self.magnitude is not None else None
        return ErosionPrediction(self.pattern(z), log_peak)

    def no_weight_decay(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.ndim < 2 or n == "identity"}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_erosion_model(config: ErosionConfig) -> PaperErosionCNN | ErosionNet:
    """The network named by ``config.arch``."""
    return PaperErosionCNN(config) if config.arch == "paper" else ErosionNet(config)
