"""The typed state that crosses geoformer's boundaries (like Aurora's Batch).

A :class:`State` is the upper-air and surface tensors plus what they mean: variable names,
pressure levels, latitude, longitude, and the names (and values) of any leading dims such as
``time`` or ``number``. It is checked once, on construction; xarray is met only at the edges,
:meth:`State.from_xarray` and :meth:`State.to_xarray` (imported there, so the class itself
needs torch and numpy only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["SPATIAL", "State"]

#: The trailing dims of an upper-air field, in order; surface fields drop ``level``.
SPATIAL = ("level", "latitude", "longitude")


@dataclass(frozen=True, eq=False)
class State:
    """Atmospheric states on one grid, in whatever units the caller holds (physical or
    normalised).

    Args:
        upper: (*B, V, Z, H, W) upper-air fields.
        surface: (*B, S, H, W) surface fields.
        upper_vars: the V upper-air variable names (WeatherBench 2 names).
        surface_vars: the S surface variable names.
        levels: (Z,) pressure levels in hPa.
        latitude: (H,) degrees; longitude: (W,) degrees.
        dims: names of the leading dims *B, e.g. ("time",), ("time", "number") or
            ("batch",); () for a single state.
        coords: values along leading dims (a subset of ``dims``), each of that dim's size;
            ``time`` is datetime64.
    """

    upper: Tensor
    surface: Tensor
    upper_vars: Sequence[str]
    surface_vars: Sequence[str]
    levels: Sequence[int] | np.ndarray
    latitude: Sequence[float] | np.ndarray
    longitude: Sequence[float] | np.ndarray
    dims: Sequence[str] = ()
    coords: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("upper_vars", "surface_vars", "dims"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        for name in ("levels", "latitude", "longitude"):
            values = np.asarray(getattr(self, name))
            if values.ndim != 1:
                raise ValueError(f"State {name} must be 1-D, found shape {values.shape}")
            object.__setattr__(self, name, values)
        object.__setattr__(self, "coords", {str(k): np.asarray(v)
                                            for k, v in self.coords.items()})
        self._check_shapes()
        self._check_dims()

    def _check_shapes(self) -> None:
        u, s = self.upper, self.surface
        if not isinstance(u, Tensor) or u.ndim < 4:
            raise ValueError(f"State upper must be a tensor (..., V, Z, H, W), found "
                             f"{_shape(u)}")
        if not isinstance(s, Tensor) or s.ndim < 3:
            raise ValueError(f"State surface must be a tensor (..., S, H, W), found "
                             f"{_shape(s)}")
        if u.shape[:-4] != s.shape[:-3]:
            raise ValueError(f"State upper has leading dims {tuple(u.shape[:-4])} but surface "
                             f"has {tuple(s.shape[:-3])}")
        expected = [("upper", u.shape[-4], "upper_vars", len(self.upper_vars)),
                    ("upper", u.shape[-3], "levels", len(self.levels)),
                    ("surface", s.shape[-3], "surface_vars", len(self.surface_vars))]
        for tensor in ("upper", "surface"):
            shape = getattr(self, tensor).shape
            expected += [(tensor, shape[-2], "latitude", len(self.latitude)),
                         (tensor, shape[-1], "longitude", len(self.longitude))]
        for tensor, found, name, wanted in expected:
            if found != wanted:
                raise ValueError(f"State {tensor} has shape {tuple(getattr(self, tensor).shape)}"
                                 f": {found} along the {name} axis, but {name} has {wanted}")
        if not self.upper_vars or not self.surface_vars:
            raise ValueError("State needs at least one upper-air and one surface variable, "
                             f"found {list(self.upper_vars)} and {list(self.surface_vars)}")

    def _check_dims(self) -> None:
        lead = tuple(self.upper.shape[:-4])
        if len(self.dims) != len(lead) or len(set(self.dims)) != len(self.dims):
            raise ValueError(f"State dims {self.dims} must name each of the {len(lead)} "
                             f"leading dim(s) {lead} of the tensors once")
        clash = [d for d in self.dims if d in SPATIAL]
        if clash:
            raise ValueError(f"State dims {self.dims} must not include {clash}: those are "
                             "the trailing dims")
        for name, values in self.coords.items():
            if name not in self.dims:
                raise ValueError(f"State coords name {name!r}, which is not in dims "
                                 f"{self.dims}")
            size = lead[self.dims.index(name)]
            if values.shape != (size,):
                raise ValueError(f"State coords {name!r} has shape {values.shape}, expected "
                                 f"({size},) for dim {name!r}")
        if "time" in self.coords and not np.issubdtype(self.coords["time"].dtype,
                                                       np.datetime64):
            raise ValueError(f"State coords 'time' must be datetime64, found "
                             f"{self.coords['time'].dtype}")

    # ------------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        """The leading shape *B."""
        return tuple(self.upper.shape[:-4])

    @property
    def times(self) -> np.ndarray | None:
        """The ``time`` coordinate (datetime64), if the state has one."""
        return self.coords.get("time")

    # ------------------------------------------------------------------ small operations
    def replace(self, **changes: Any) -> State:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def to(self, *args: Any, **kwargs: Any) -> State:
        """Both tensors moved or cast like :meth:`torch.Tensor.to`."""
        return self.replace(upper=self.upper.to(*args, **kwargs),
                            surface=self.surface.to(*args, **kwargs))

    def __len__(self) -> int:
        if not self.dims:
            raise TypeError("a State without leading dims has no length")
        return self.shape[0]

    def __getitem__(self, index: int | slice) -> State:
        """Index or slice the first leading dim (its coordinate follows)."""
        if not self.dims:
            raise TypeError("a State without leading dims cannot be indexed")
        if isinstance(index, np.integer):
            index = int(index)
        if not isinstance(index, (int, slice)):
            raise TypeError(f"a State is indexed by an int or a slice, found {index!r}")
        first, *rest = self.dims
        coords = {k: (v[index] if k == first else v) for k, v in self.coords.items()}
        if isinstance(index, int):
            coords.pop(first, None)
        return self.replace(upper=self.upper[index], surface=self.surface[index],
                            dims=tuple(rest) if isinstance(index, int) else self.dims,
                            coords=coords)

    def flatten(self) -> State:
        """All leading dims merged into one, ``batch`` (without coordinates):
        (*B, V, Z, H, W) -> (B, V, Z, H, W). :meth:`unflatten` undoes it."""
        return self.replace(upper=self.upper.reshape(-1, *self.upper.shape[-4:]),
                            surface=self.surface.reshape(-1, *self.surface.shape[-3:]),
                            dims=("batch",), coords={})

    def unflatten(self, like: State) -> State:
        """The first leading dim split back into ``like``'s leading dims and coordinates;
        any later leading dims stay: (B, *L, ...) -> (*like.shape, *L, ...)."""
        size = int(np.prod(like.shape))
        if not self.dims or self.shape[0] != size:
            raise ValueError(f"cannot unflatten leading dims {self.shape} into {like.shape}: "
                             f"the first must have {size} states")
        rest = self.upper.shape[1:]
        return self.replace(upper=self.upper.reshape(*like.shape, *rest),
                            surface=self.surface.reshape(*like.shape, *self.surface.shape[1:]),
                            dims=(*like.dims, *self.dims[1:]),
                            coords={**like.coords, **{k: v for k, v in self.coords.items()
                                                      if k != self.dims[0]}})

    # ------------------------------------------------------------------------- xarray
    @classmethod
    def from_xarray(cls, ds: xr.Dataset, upper_vars: Sequence[str],
                    surface_vars: Sequence[str], levels: Sequence[int] | None = None,
                    dims: Sequence[str] | None = None) -> State:
        """A State from a Dataset in the internal schema, as float32 tensors.

        Variables are selected by name and transposed to (*dims, level, latitude,
        longitude). ``levels`` (default: all) picks pressure levels; ``dims`` (default: the
        first upper-air variable's other dims, in its order) are the leading dims, which
        every variable must have.
        """
        missing = [v for v in (*upper_vars, *surface_vars) if v not in ds.data_vars]
        if missing:
            raise ValueError(f"the dataset lacks variable(s) {missing}; it has "
                             f"{sorted(map(str, ds.data_vars))}")
        if levels is not None:
            absent = [lv for lv in levels if lv not in ds["level"].values]
            if absent:
                raise ValueError(f"the dataset lacks pressure level(s) {absent}; it has "
                                 f"{ds['level'].values.tolist()}")
            ds = ds.sel(level=list(levels))
        if not upper_vars or not surface_vars:
            raise ValueError("State needs at least one upper-air and one surface variable, "
                             f"found {list(upper_vars)} and {list(surface_vars)}")
        if dims is None:
            dims = [d for d in ds[upper_vars[0]].dims if d not in SPATIAL]
        dims = tuple(dims)
        upper = np.stack([_values(ds, v, (*dims, *SPATIAL)) for v in upper_vars],
                         axis=-4)  # (*B, V, Z, H, W)
        surface = np.stack([_values(ds, v, (*dims, *SPATIAL[1:])) for v in surface_vars],
                           axis=-3)  # (*B, S, H, W)
        return cls(
            upper=torch.from_numpy(upper.astype(np.float32)),
            surface=torch.from_numpy(surface.astype(np.float32)),
            upper_vars=upper_vars, surface_vars=surface_vars, levels=ds["level"].values,
            latitude=ds["latitude"].values, longitude=ds["longitude"].values, dims=dims,
            coords={d: ds[d].values for d in dims if d in ds.coords})

    def to_xarray(self) -> xr.Dataset:
        """The inverse of :meth:`from_xarray`: a Dataset with dims (*dims, [level,]
        latitude, longitude), WeatherBench 2 names and their CF attributes (float32)."""
        import xarray as xr

        from .schema import VARIABLES

        upper = self.upper.detach().float().cpu().numpy()
        surface = self.surface.detach().float().cpu().numpy()
        data = {name: ((*self.dims, *SPATIAL), upper[..., v, :, :, :])
                for v, name in enumerate(self.upper_vars)}
        data.update({name: ((*self.dims, *SPATIAL[1:]), surface[..., s, :, :])
                     for s, name in enumerate(self.surface_vars)})
        out = xr.Dataset(data, coords={**self.coords, "level": self.levels,
                                       "latitude": self.latitude, "longitude": self.longitude})
        for name in out.data_vars:
            info = VARIABLES.get(str(name))
            if info is not None:
                out[name].attrs = {"units": info.units, "standard_name": info.standard_name,
                                   "long_name": info.long_name}
        return out


def _values(ds: xr.Dataset, name: str, dims: tuple[str, ...]) -> np.ndarray:
    found = ds[name].dims
    if set(found) != set(dims) or len(found) != len(dims):
        raise ValueError(f"variable {name!r} has dims {found}, expected {dims} (in any order)")
    return ds[name].transpose(*dims).values


def _shape(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
