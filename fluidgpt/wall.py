"""Engineering quantities of a wall erosion map: wall thinning, hot spots, eroded mass.

A map is the erosion rate of every wall face, ``rate`` (F,) or (N, F) for N cases, in
kg m-2 s-1, with the face geometry of the canonical dataset: ``face_centre`` (F, 3) in m and
``face_area`` (F,) in m2. DataArrays with a ``face`` dim are accepted wherever a map is.

* Wall loss: the rate divided by the wall density is the speed the wall surface recedes;
  ``wall_loss_mm_per_year`` gives it in mm per year (a year of 365.25 days), the unit a
  pipe-integrity engineer compares with a corrosion allowance.
* Smoothing: one face of a fine mesh catches few particle impacts, so the raw maximum is
  noisy. ``smooth_on_wall`` averages each map with an area-weighted Gaussian kernel over the
  3-D distance between face centres; "smoothed over 2 cm of wall" means ``length=0.02``, the
  kernel's standard deviation in m. The kernel is normalised per face, so a constant map
  stays exactly constant and the area-weighted mean is kept approximately.
* Hot spot: the face holding the maximum rate (``peak_*``) and the face holding the maximum
  of the smoothed map (``smoothed_peak_*``), the latter being the location to compare
  between a prediction and the truth (``hotspot_distance``).
* ``area_integrated``: the eroded mass per second of the whole wall, sum of rate * area.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = [
    "SECONDS_PER_YEAR",
    "DEFAULT_WALL_DENSITY",
    "wall_loss_mm_per_year",
    "smooth_on_wall",
    "hotspot",
    "hotspot_distance",
    "area_integrated",
]

#: Julian year [s].
SECONDS_PER_YEAR = 365.25 * 86400.0

#: Carbon steel [kg m-3], the recipe's ``erosion.wall_density``.
DEFAULT_WALL_DENSITY = 7800.0

# Target faces per kernel chunk: a chunk holds _CHUNK * F floats (F = 5000: 40 MB).
_CHUNK = 1024


def wall_loss_mm_per_year(rate, wall_density: float = DEFAULT_WALL_DENSITY):
    """Wall thinning [mm yr-1] of an erosion rate [kg m-2 s-1]; same type and shape as ``rate``.

    ``rate / wall_density`` is the recession speed in m s-1; times 1000 mm/m and the seconds
    of a 365.25-day year. A DataArray keeps its dims and coords and gets ``units`` and
    ``long_name`` (and the density used) in its attrs.
    """
    if not wall_density > 0:
        raise ValueError(f"wall_density must be > 0 kg m-3, found {wall_density}")
    factor = 1000.0 * SECONDS_PER_YEAR / float(wall_density)
    if isinstance(rate, xr.DataArray):
        out = rate * factor
        out.attrs = {"units": "mm yr-1", "long_name": "wall thinning rate",
                     "wall_density": float(wall_density)}
        return out.rename("wall_loss_rate")
    return np.asarray(rate, dtype=float) * factor


def _geometry(face_centre, face_area) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(face_centre, xr.DataArray) and set(face_centre.dims) == {"face", "xyz"}:
        face_centre = face_centre.transpose("face", "xyz")
    centre = np.asarray(face_centre, dtype=float)
    area = np.asarray(face_area, dtype=float)
    if centre.ndim != 2 or centre.shape[1] != 3:
        raise ValueError(f"face_centre must be (F, 3) in m, found shape {centre.shape}")
    if area.shape != (centre.shape[0],):
        raise ValueError(f"face_area must be (F,) = ({centre.shape[0]},) in m2, "
                         f"found shape {area.shape}")
    return centre, area


def _maps(rate, n_faces: int) -> tuple[np.ndarray, bool]:
    """``rate`` as (N, F) floats, and whether it was a single map (F,)."""
    if isinstance(rate, xr.DataArray):
        rate = rate.transpose(..., "face")
    maps = np.asarray(rate, dtype=float)
    if maps.ndim not in (1, 2) or maps.shape[-1] != n_faces:
        raise ValueError(f"rate must be (F,) or (N, F) with F = {n_faces} faces, "
                         f"found shape {maps.shape}")
    return np.atleast_2d(maps), maps.ndim == 1


def _smooth(maps: np.ndarray, centre: np.ndarray, area: np.ndarray,
            length: float) -> np.ndarray:
    """(N, F) maps smoothed with the area-weighted Gaussian kernel, chunked over faces."""
    if not length > 0:
        raise ValueError(f"length must be > 0 m, found {length}")
    out = np.empty_like(maps)
    for start in range(0, centre.shape[0], _CHUNK):
        stop = start + _CHUNK
        d2 = ((centre[start:stop, None, :] - centre[None, :, :]) ** 2).sum(-1)  # (c, F)
        kernel = np.exp(-0.5 * d2 / length**2) * area[None, :]  # (c, F)
        out[:, start:stop] = maps @ kernel.T / kernel.sum(1)  # (N, c)
    return out


def smooth_on_wall(rate, face_centre, face_area, length: float = 0.02):
    """Each map averaged over the wall with a Gaussian of standard deviation ``length`` [m].

    ``rate`` (F,) or (N, F) (a DataArray: any dims with ``face`` among them, which is moved
    last); returns the same shape (a DataArray with the same coords and attrs). Face i gets
    ``sum_j w_ij a_j r_j / sum_j w_ij a_j`` with ``w_ij = exp(-|c_i - c_j|^2 / (2 length^2))``,
    the distance straight through 3-D space between face centres, so faces across a thin
    duct within a few ``length`` of each other mix too. ``length=0.02``: smoothed over 2 cm.
    Within a few ``length`` of where the wall ends (an inlet, an outlet) the kernel sees
    faces on one side only, which pulls a smoothed hot spot a little towards the end.
    """
    centre, area = _geometry(face_centre, face_area)
    if isinstance(rate, xr.DataArray):
        ordered = rate.transpose(..., "face")
        flat = ordered.values.reshape(-1, centre.shape[0])  # (N, F)
        smooth = _smooth(flat.astype(float), centre, area, length)
        return ordered.copy(data=smooth.reshape(ordered.shape))
    maps, single = _maps(rate, centre.shape[0])
    smooth = _smooth(maps, centre, area, length)
    return smooth[0] if single else smooth


def hotspot(rate, face_centre, face_area, length: float = 0.02) -> dict[str, np.ndarray]:
    """The raw and the smoothed hot spot of each map.

    Returns ``peak_value`` (N,) [rate units], ``peak_location`` (N, 3) [m] (the centre of the
    face holding the maximum), ``smoothed_peak_value`` (N,) and ``smoothed_peak_location``
    (N, 3) (the same of ``smooth_on_wall(..., length)``). For a single map (F,): scalars and
    (3,) locations.
    """
    centre, area = _geometry(face_centre, face_area)
    maps, single = _maps(rate, centre.shape[0])
    smooth = _smooth(maps, centre, area, length)
    cases = np.arange(maps.shape[0])
    raw_face, smooth_face = maps.argmax(1), smooth.argmax(1)  # (N,)
    spots = {
        "peak_value": maps[cases, raw_face],
        "peak_location": centre[raw_face],  # (N, 3)
        "smoothed_peak_value": smooth[cases, smooth_face],
        "smoothed_peak_location": centre[smooth_face],  # (N, 3)
    }
    return {k: v[0] for k, v in spots.items()} if single else spots


def hotspot_distance(pred, true, face_centre, face_area, length: float = 0.02) -> np.ndarray:
    """Distance [m] between the smoothed hot spots of ``pred`` and ``true``: (N,) (or scalar).

    Both maps (F,) or (N, F) of the same shape; the straight 3-D distance between the two
    face centres found by ``hotspot(..., length)``.
    """
    if np.shape(pred) != np.shape(true):
        raise ValueError(f"pred and true must have the same shape, found {np.shape(pred)} "
                         f"and {np.shape(true)}")
    at_pred = hotspot(pred, face_centre, face_area, length)["smoothed_peak_location"]
    at_true = hotspot(true, face_centre, face_area, length)["smoothed_peak_location"]
    return np.linalg.norm(at_pred - at_true, axis=-1)


def area_integrated(rate, face_area):
    """Eroded mass rate of the whole wall [kg s-1]: sum over faces of rate * area.

    ``rate`` (F,) or (N, F) gives a scalar or (N,); a DataArray is summed over its ``face``
    dim and keeps its other dims.
    """
    area = np.asarray(face_area, dtype=float)
    if isinstance(rate, xr.DataArray):
        if area.shape != (rate.sizes["face"],):
            raise ValueError(f"face_area must be (F,) = ({rate.sizes['face']},) in m2, "
                             f"found shape {area.shape}")
        out = (rate * xr.DataArray(area, dims="face")).sum("face")
        out.attrs = {"units": "kg s-1", "long_name": "area-integrated erosion rate"}
        return out
    if area.ndim != 1:
        raise ValueError(f"face_area must be (F,) in m2, found shape {area.shape}")
    maps, single = _maps(rate, area.shape[0])
    total = maps @ area  # (N,)
    return total[0] if single else total
