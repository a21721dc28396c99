"""First-order conservative regridding between regular global latitude-longitude grids.

Used when a forecast's initial state is on another grid than the checkpoint's. Separable:
the overlap of cells is computed along latitude (in sin(latitude), so areas are exact on the
sphere) and along longitude (periodic), and the area-weighted average of the source cells
covering each target cell is taken.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["latitude_bounds", "longitude_bounds", "overlap_matrix", "regrid_conservative"]


def latitude_bounds(lat: np.ndarray) -> np.ndarray:
    """Cell edges (n + 1) of latitudes sorted either way: midpoints, outer edges half a
    spacing out, clipped to +-90 (so a pole point owns a half cell)."""
    lat = np.asarray(lat, dtype=np.float64)
    mid = (lat[1:] + lat[:-1]) / 2
    first, last = lat[0] - (mid[0] - lat[0]), lat[-1] + (lat[-1] - mid[-1])
    return np.clip(np.concatenate([[first], mid, [last]]), -90.0, 90.0)


def longitude_bounds(lon: np.ndarray) -> np.ndarray:
    """Cell edges (n + 1) of ascending, evenly spaced longitudes covering the globe."""
    lon = np.asarray(lon, dtype=np.float64)
    step = 360.0 / lon.size
    return np.concatenate([lon - step / 2, [lon[-1] + step / 2]])


def _overlap(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(n_dst, n_src) length of overlap of 1D intervals given by ascending edges."""
    lo = np.maximum(dst[:-1, None], src[None, :-1])
    hi = np.minimum(dst[1:, None], src[None, 1:])
    return np.clip(hi - lo, 0.0, None)


def overlap_matrix(dst_edges: np.ndarray, src_edges: np.ndarray, periodic: float | None = None,
                   transform=None) -> np.ndarray:
    """Row-normalised overlap weights (n_dst, n_src); ``periodic`` is the period (360 for
    longitude), ``transform`` maps edges first (np.sin of radians for latitude)."""
    d, s = np.asarray(dst_edges, dtype=np.float64), np.asarray(src_edges, dtype=np.float64)
    if (np.diff(s) < 0).any() or (np.diff(d) < 0).any():
        raise ValueError("cell edges must be ascending")
    if transform is not None:
        d, s = transform(d), transform(s)
    weights = _overlap(d, s)
    if periodic:
        weights = weights + _overlap(d, s + periodic) + _overlap(d, s - periodic)
    total = weights.sum(axis=1, keepdims=True)
    if (total <= 0).any():
        raise ValueError("some target cells are not covered by the source grid")
    return weights / total


def regrid_conservative(ds: xr.Dataset, latitude: np.ndarray,
                        longitude: np.ndarray) -> xr.Dataset:
    """Regrid every (latitude, longitude) variable of ``ds`` onto the given grid.

    Both grids must be regular and global in longitude. Latitude order of the target is
    kept as given.
    """
    src_lat, src_lon = ds["latitude"].values, ds["longitude"].values
    lat_w = _lat_weights(np.asarray(latitude, dtype=np.float64), src_lat)
    lon_w = overlap_matrix(longitude_bounds(longitude), longitude_bounds(src_lon),
                           periodic=360.0)
    out = {}
    for name, da in ds.data_vars.items():
        if "latitude" in da.dims and "longitude" in da.dims:
            a = xr.DataArray(lat_w, dims=("lat_out", "latitude"))
            b = xr.DataArray(lon_w, dims=("lon_out", "longitude"))
            r = xr.dot(xr.dot(da.astype(np.float64), a, dim="latitude"), b, dim="longitude")
            r = r.rename(lat_out="latitude", lon_out="longitude")
            r = r.transpose(*da.dims).astype(da.dtype)
            r.attrs = da.attrs
            out[name] = r
        else:
            out[name] = da
    coords = {k: v for k, v in ds.coords.items() if "latitude" not in v.dims
              and "longitude" not in v.dims}
    new = xr.Dataset(out, coords=coords, attrs=ds.attrs)
    new = new.assign_coords(latitude=("latitude", np.asarray(latitude, dtype=np.float64),
                                      ds["latitude"].attrs),
                            longitude=("longitude", np.asarray(longitude, dtype=np.float64),
                                       ds["longitude"].attrs))
    return new


def _sin_deg(x: np.ndarray) -> np.ndarray:
    return np.sin(np.deg2rad(x))


def _lat_weights(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Latitude overlap weights (n_dst, n_src) for either latitude order on either side."""
    dst_order, src_order = np.argsort(dst), np.argsort(src)
    w = overlap_matrix(latitude_bounds(dst[dst_order]), latitude_bounds(src[src_order]),
                       transform=_sin_deg)
    out = np.empty_like(w)
    out[np.ix_(dst_order, src_order)] = w
    return out
