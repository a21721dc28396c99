"""Direct conditions -> erosion surrogates: baselines the two-stage pipeline must beat.

Both map the (already scaled) conditions of a case straight to its wall erosion map, with no
trajectories in between, and both predict the magnitude as well as the pattern:

* :class:`InverseDistanceErosion` ("knn"): the inverse-distance-weighted blend of the rate
  maps of the k nearest training cases (Shepard's interpolation). k = 1 is the nearest case.
* :class:`PODErosion` ("pod"): principal components (proper orthogonal decomposition, by SVD)
  of the training maps divided by their totals, and a Gaussian process per coefficient and
  for the log total and the log peak.

Shapes: N training cases, B queried cases, K conditions, F wall faces. Conditions go in
scaled (the nearest-case baseline's :class:`~fluidgpt.scalers.Scaler`, fitted on the training
cases only); maps in kg m-2 s-1. Every prediction is a dict with ``erosion`` (B, F), the rate
map, and ``peak`` (B,), the predicted maximum rate of each case, so that ``erosion / peak`` is
the predicted pattern (see :func:`fluidgpt.metrics.predicted_pattern`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from torch import Tensor

__all__ = ["idw_weights", "pod_modes", "InverseDistanceErosion", "PODErosion"]


def _training_data(conditions: Tensor, erosion: Tensor, least: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """(N, K) conditions and (N, F) maps as float64 arrays, checked."""
    c = conditions.detach().cpu().double().numpy()
    e = erosion.detach().cpu().double().numpy()
    if c.ndim != 2 or e.ndim != 2 or c.shape[0] != e.shape[0]:
        raise ValueError(f"conditions must be (N, K) and erosion (N, F) for the same N, found "
                         f"{tuple(conditions.shape)} and {tuple(erosion.shape)}")
    if c.shape[0] < least:
        raise ValueError(f"needs at least {least} training case(s), found {c.shape[0]}")
    if not (np.isfinite(c).all() and np.isfinite(e).all()):
        raise ValueError("training conditions and erosion maps must be finite")
    return c, e


def _queries(conditions: Tensor, train: np.ndarray | None, who: str) -> np.ndarray:
    if train is None:
        raise RuntimeError(f"{who}.fit() must be called before predicting")
    q = conditions.detach().cpu().double().numpy()
    if q.ndim != 2 or q.shape[1] != train.shape[1]:
        raise ValueError(f"conditions must be (B, {train.shape[1]}), found {tuple(q.shape)}")
    return q


# ------------------------------------------------------------------------------- knn
def idw_weights(query: np.ndarray, train: np.ndarray, k: int, power: float = 2.0) -> np.ndarray:
    """Inverse-distance weights (B, N) of the k nearest training cases of each query.

    query (B, K), train (N, K): scaled conditions. Weight 1 / d^power over the k nearest
    (Euclidean, ties to the first training case, as :class:`~fluidgpt.baselines.NearestCase`),
    normalised to sum 1, zero elsewhere; a query at zero distance from training cases among
    its k nearest takes their mean (their weights would be infinite).
    """
    k = min(int(k), train.shape[0])
    d = np.sqrt(((query[:, None] - train[None]) ** 2).sum(-1))  # (B, N)
    near = np.argsort(d, axis=1, kind="stable")[:, :k]  # (B, k)
    dk = np.take_along_axis(d, near, axis=1)  # (B, k)
    exact = dk == 0
    with np.errstate(divide="ignore"):
        w = np.where(exact.any(1, keepdims=True), exact.astype(float), dk ** -float(power))
    out = np.zeros_like(d)
    np.put_along_axis(out, near, w / w.sum(1, keepdims=True), axis=1)
    return out


class InverseDistanceErosion:
    """Blend the rate maps of the k nearest training cases, weights 1 / distance^power.

    The predicted peak is the same blend of the training peaks, so the predicted pattern
    (map / peak) is a convex blend of training patterns: spreading over the neighbours' hot
    spots is scored as the hedge it is, not re-inflated to a maximum of 1.

    Args:
        k: neighbours blended (capped at the number of training cases); 1 is the nearest case.
        power: the exponent of the inverse distance (2: Shepard's classic choice).
    """

    name = "knn"

    def __init__(self, k: int = 4, power: float = 2.0) -> None:
        if int(k) < 1 or not power > 0:
            raise ValueError(f"k must be >= 1 and power > 0, found k={k}, power={power}")
        self.k, self.power = int(k), float(power)
        self.conditions: np.ndarray | None = None
        self.erosion: np.ndarray | None = None

    def fit(self, conditions: Tensor, erosion: Tensor) -> InverseDistanceErosion:
        """conditions (N, K) scaled, erosion (N, F) kg m-2 s-1 of the training cases."""
        self.conditions, self.erosion = _training_data(conditions, erosion, 1)
        self.dtype = erosion.dtype
        return self

    def predict(self, conditions: Tensor) -> dict[str, Tensor]:
        """conditions (B, K) scaled -> {"erosion": (B, F), "peak": (B,)}."""
        q = _queries(conditions, self.conditions, type(self).__name__)
        w = idw_weights(q, self.conditions, self.k, self.power)  # (B, N)
        rate = w @ self.erosion  # (B, F)
        peak = w @ self.erosion.max(1)  # (B,)
        return {"erosion": torch.from_numpy(rate).to(self.dtype),
                "peak": torch.from_numpy(peak).to(self.dtype)}


# ------------------------------------------------------------------------------- pod
def pod_modes(maps: np.ndarray, energy: float = 0.99,
              max_modes: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (F,), modes (n, F) and coefficients (N, n) of maps (N, F) by SVD.

    n: the fewest modes whose share of the variance about the mean reaches ``energy``, at
    most ``max_modes`` (and at most the rank). maps ~ mean + coefficients @ modes.
    """
    if not 0 < energy <= 1 or int(max_modes) < 0:
        raise ValueError(f"energy must be in (0, 1] and max_modes >= 0, found {energy}, "
                         f"{max_modes}")
    mean = maps.mean(0)
    u, s, vt = np.linalg.svd(maps - mean, full_matrices=False)  # (N, r), (r,), (r, F)
    power = s**2
    # Singular values at rounding level are no modes: they only hold the SVD's noise.
    rank = int((s > s.max(initial=0.0) * 1e-10).sum())
    if rank == 0:
        return mean, vt[:0], u[:, :0]
    share = np.cumsum(power[:rank]) / power[:rank].sum()
    n = min(int(np.searchsorted(share, energy - 1e-12) + 1), int(max_modes), rank)
    return mean, vt[:n], u[:, :n] * s[:n]


def _gaussian_process(x: np.ndarray, y: np.ndarray, nu: float, restarts: int,
                      seed: int) -> GaussianProcessRegressor:
    """A GP y(x) with a Matern kernel (one length scale per condition) plus white noise,
    its hyperparameters by maximum marginal likelihood on (x (N, K), y (N,))."""
    K = x.shape[1]
    kernel = (ConstantKernel(1.0, (1e-3, 1e3))
              * Matern(np.ones(K), (1e-2, 1e3), nu=nu)
              + WhiteKernel(1e-4, (1e-10, 1e1)))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=restarts,
                                  random_state=seed)
    with warnings.catch_warnings():
        # A condition the target ignores runs its length scale to the bound: that is ARD
        # working, not a failed fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gp.fit(x, y)


class PODErosion:
    """Erosion from conditions: POD of the training maps, each divided by its eroded mass per
    second (its shape), and Gaussian processes for the POD coefficients, the log of that
    total and the log of the peak.

    Why shapes and log magnitudes, not the rates: the magnitude of a map follows the impact
    speed to a power of about 2.6 and the particle mass flow, so across conditions the rates
    span decades; a POD of the rates would spend its first modes on magnitude and fit the
    largest cases only, while the log of a power law is a straight line, easy for a GP. Why
    divided by the total (sum of rate * area, kg s-1) and not by the peak: the peak is the
    maximum of one face, which catches few impacts, so it is noisy, and dividing by it puts
    its noise on every face; the total sums every impact. (On the shipped sample this gave
    the better pattern R^2 on average over held-out groups and half the error of the total.)
    The peak is regressed apart, as the CNN's magnitude head does, since the scores divide by
    it; the maximum of a blurred reconstruction would understate it. (log1p of the rates
    instead would make the reconstruction nonlinear, its mean biased.) The POD is not
    area-weighted: the pattern R^2 weighs every face alike.

    Each GP: Matern (nu 2.5) with one length scale per scaled condition, times a constant,
    plus white noise; hyperparameters by maximum marginal likelihood on the training cases
    (``restarts`` seeded restarts: deterministic). Modes: the fewest holding ``energy`` of the
    variance of the training shapes, at most ``max_modes``. Negative rates are clipped to 0.
    """

    name = "pod"

    def __init__(self, energy: float = 0.99, max_modes: int = 20, nu: float = 2.5,
                 restarts: int = 2, seed: int = 0) -> None:
        self.energy, self.max_modes, self.nu = float(energy), int(max_modes), float(nu)
        self.restarts, self.seed = int(restarts), int(seed)
        self.conditions: np.ndarray | None = None

    def fit(self, conditions: Tensor, erosion: Tensor,
            face_area: np.ndarray | Tensor | None = None) -> PODErosion:
        """conditions (N, K) scaled, erosion (N, F) kg m-2 s-1 of the training cases;
        face_area (F,) m2 (None: every face alike)."""
        c, e = _training_data(conditions, erosion, 2)
        area = np.ones(e.shape[1]) if face_area is None else np.asarray(face_area, float)
        if area.shape != (e.shape[1],) or not (area > 0).all():
            raise ValueError(f"face_area must be ({e.shape[1]},) positive areas, found shape "
                             f"{area.shape}")
        total, peak = e @ area, e.max(1)  # (N,) kg s-1, (N,) kg m-2 s-1
        if not (peak > 0).all():
            raise ValueError("a training erosion map has no positive rate: its shape and log "
                             "magnitudes are undefined")
        self.mean, self.modes, coeff = pod_modes(e / total[:, None], self.energy,
                                                 self.max_modes)
        targets = np.column_stack([np.log(total), np.log(peak), coeff])  # (N, 2 + n)
        self.gps = [_gaussian_process(c, y, self.nu, self.restarts, self.seed)
                    for y in targets.T]
        self.conditions, self.dtype = c, erosion.dtype
        return self

    @property
    def n_modes(self) -> int:
        return int(self.modes.shape[0])

    def predict(self, conditions: Tensor) -> dict[str, Tensor]:
        """conditions (B, K) scaled -> {"erosion": (B, F), "peak": (B,), "pattern": (B, F)
        (erosion / peak)}."""
        q = _queries(conditions, self.conditions, type(self).__name__)
        out = np.column_stack([gp.predict(q) for gp in self.gps])  # (B, 2 + n)
        shape = np.clip(self.mean + out[:, 2:] @ self.modes, 0.0, None)  # (B, F) m-2
        rate = np.exp(out[:, :1]) * shape  # (B, F)
        peak = np.exp(out[:, 1])  # (B,)
        return {k: torch.from_numpy(v).to(self.dtype) for k, v in
                (("erosion", rate), ("peak", peak), ("pattern", rate / peak[:, None]))}
