"""Per-feature standardisation, fitted on the training split only and stored in checkpoints.

A :class:`Scaler` holds the mean and standard deviation of each of C features as buffers, so
they travel in every ``state_dict`` (and Lightning checkpoint) with the network that was
trained on them. The data pipeline fits it on the training cases only and calls it on the
way in (``scaler(x)``) and out (``scaler.inverse(y)``); the networks never see physical
units.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["Scaler"]


class Scaler(nn.Module):
    """z = (x - mean) / std over the last dimension (C features).

    Features whose spread is below ``min_std`` (e.g. a condition that is constant in the
    training split) get std 1, so they are centred but never blown up.

    Args:
        num_features: C, the size of the last dimension of every tensor it scales.
        min_std: the smallest standard deviation treated as a real spread.
    """

    def __init__(self, num_features: int, min_std: float = 1e-8) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"a scaler needs at least one feature, found {num_features}")
        self.num_features = num_features
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))  # 0: not fitted

    @property
    def fitted(self) -> bool:
        return bool(self.count > 0)

    def _check(self, x: Tensor, what: str) -> None:
        if x.shape[-1] != self.num_features:
            raise ValueError(f"{what}: the last dimension must hold the scaler's "
                             f"{self.num_features} features, found shape {tuple(x.shape)}")

    # --------------------------------------------------------------------------------- fit
    @torch.no_grad()
    def fit(self, x: Tensor, valid: Tensor | None = None) -> Scaler:
        """Statistics of x (..., C) over every leading element where ``valid`` (...) is True."""
        return self.fit_batches([(x, valid)])

    @torch.no_grad()
    def fit_batches(self, batches: Iterable[tuple[Tensor, Tensor | None]]) -> Scaler:
        """Statistics over many (x (..., C), valid (...) or None) chunks of the training split.

        Chunks are merged with Chan's parallel update in float64, so the result equals fitting
        the concatenation (to rounding) without holding it in memory.
        """
        n = torch.zeros((), dtype=torch.float64)
        mean = torch.zeros(self.num_features, dtype=torch.float64)
        m2 = torch.zeros(self.num_features, dtype=torch.float64)
        for x, valid in batches:
            self._check(x, "fit")
            rows = x.detach().reshape(-1, self.num_features).double().cpu()  # (N, C)
            if valid is not None:
                if valid.shape != x.shape[:-1]:
                    raise ValueError(f"valid mask must have shape {tuple(x.shape[:-1])} (the "
                                     f"data without its feature axis), found "
                                     f"{tuple(valid.shape)}")
                rows = rows[valid.reshape(-1).cpu()]
            if not torch.isfinite(rows).all():
                raise ValueError("fit: data contains NaN or infinite values where valid")
            nb = rows.shape[0]
            if nb == 0:
                continue
            mb = rows.mean(0)
            m2b = (rows - mb).square().sum(0)
            delta = mb - mean
            total = n + nb
            mean = mean + delta * nb / total
            m2 = m2 + m2b + delta.square() * n * nb / total
            n = total
        if n == 0:
            raise ValueError("fit: no valid values to compute statistics from")
        std = (m2 / n).sqrt()
        std = torch.where(std < self.min_std, torch.ones_like(std), std)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))
        self.count.copy_(n)
        return self

    def set_statistics(self, mean: Tensor, std: Tensor) -> Scaler:
        """Use known statistics (C,), e.g. read from a statistics file."""
        mean, std = torch.as_tensor(mean).flatten(), torch.as_tensor(std).flatten()
        if mean.numel() != self.num_features or std.numel() != self.num_features:
            raise ValueError(f"mean and std must each hold {self.num_features} values, found "
                             f"{mean.numel()} and {std.numel()}")
        if not (std > 0).all():
            raise ValueError("std must be positive")
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.count.fill_(1.0)
        return self

    # --------------------------------------------------------------------------- transform
    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("this scaler was never fitted: call fit() on the training split "
                               "(or load a checkpoint that holds its statistics) first")

    def forward(self, x: Tensor) -> Tensor:
        """Physical x (..., C) -> standardised (..., C)."""
        self._require_fitted()
        self._check(x, "scale")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        """Standardised z (..., C) -> physical (..., C)."""
        self._require_fitted()
        self._check(z, "inverse")
        return z * self.std.to(z.dtype) + self.mean.to(z.dtype)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, fitted={self.fitted}"
