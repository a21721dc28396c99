"""Area weights and latitude regions of a regular latitude/longitude grid.

Pure functions of xarray coordinates, the WeatherBench 2 way: :func:`latitude_weights` (the
normalised cell areas, poles included), :data:`REGIONS` and :func:`region_mask` (latitude
bands), :func:`select_region` (a field restricted to a region, with the whole grid's cell
areas). The area-weighted means and the scores built on them are in ``metrics.py``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = [
    "REGIONS",
    "SPATIAL_DIMS",
    "latitude_weights",
    "region_mask",
    "select_region",
]

Data = xr.DataArray | xr.Dataset

SPATIAL_DIMS = ("latitude", "longitude")

# Latitude bounds in degrees_north, both ends inclusive (as WeatherBench 2's slices), so a
# row at exactly +-20 deg belongs to the tropics and to that hemisphere's extratropics.
REGIONS: dict[str, tuple[float, float]] = {
    "global": (-90.0, 90.0),
    "tropics": (-20.0, 20.0),
    "extratropics_north": (20.0, 90.0),
    "extratropics_south": (-90.0, -20.0),
}


# --------------------------------------------------------------------------- area weights


def latitude_weights(latitude: xr.DataArray) -> xr.DataArray:
    """Normalised cell areas, (latitude,), mean 1, aligned to the input order.

    On latitudes sorted ascending, each row's weight is sin(upper) - sin(lower), with the
    bounds at the midpoints between neighbouring rows. The outer bounds lie half a spacing
    beyond the outer rows, clipped to +-90 deg: for any global grid, with or without poles,
    that is +-90 deg exactly as in WeatherBench 2, and a regional crop keeps sensible edge
    rows. Pole rows get the area of their polar cap, not the zero weight of cos(lat).

    latitude: (latitude,) in degrees_north, any order, no duplicates.
    """
    lat = np.asarray(latitude.values, dtype=np.float64)
    if lat.ndim != 1 or lat.size == 0:
        raise ValueError(f"latitude must be a non-empty 1-D coordinate, got shape {lat.shape}")
    if np.abs(lat).max() > 90.0:
        raise ValueError(f"latitude must be in degrees within [-90, 90], got max |lat| = "
                         f"{np.abs(lat).max()}")
    order = np.argsort(lat)
    ascending = lat[order]
    if np.any(np.diff(ascending) == 0):
        raise ValueError("latitude has duplicate values; cell areas are undefined")
    area = _cell_areas_ascending(ascending)
    weights = np.empty_like(area)
    weights[order] = area / area.mean()  # back to the caller's order
    return xr.DataArray(weights, dims=latitude.dims, coords={latitude.dims[0]: latitude.values},
                        name="latitude_weights")


def _cell_areas_ascending(lat: np.ndarray) -> np.ndarray:
    """sin(upper) - sin(lower) per row of ascending latitudes (degrees), unnormalised."""
    if lat.size == 1:
        return np.ones(1)
    inner = (lat[:-1] + lat[1:]) / 2
    outer_low = lat[0] - (lat[1] - lat[0]) / 2
    outer_high = lat[-1] + (lat[-1] - lat[-2]) / 2
    bounds = np.clip(np.concatenate([[outer_low], inner, [outer_high]]), -90.0, 90.0)
    sin_bounds = np.sin(np.deg2rad(bounds))
    return sin_bounds[1:] - sin_bounds[:-1]


# --------------------------------------------------------------------------- regions


def region_mask(latitude: xr.DataArray, region: str = "global") -> xr.DataArray:
    """Boolean (latitude,): True for rows inside ``region`` (a key of ``REGIONS``)."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {sorted(REGIONS)}")
    low, high = REGIONS[region]
    keep = (latitude >= low) & (latitude <= high)
    if not bool(keep.any()):
        raise ValueError(f"region {region!r} ({low}..{high} deg N) contains no latitude of this "
                         f"grid (latitude spans {float(latitude.min())}..{float(latitude.max())})")
    return keep


def select_region(x: Data, region: str = "global") -> tuple[Data, xr.DataArray]:
    """(x restricted to the region's rows, their latitude weights (latitude,)).

    The weights are the whole grid's cell areas restricted to the region, so a mean over
    them is renormalised over the region exactly as WeatherBench 2 does; recomputing cell
    areas on the cropped grid would instead change the edge rows.
    """
    weights = latitude_weights(x["latitude"])
    keep = region_mask(x["latitude"], region).values
    if keep.all():  # the whole grid: no copy of x
        return x, weights
    return x.isel(latitude=keep), weights.isel(latitude=keep)
