"""Is a store the reference build? A short fingerprint of its last saved state.

The flow is chaotic: two builds that differ anywhere in the last bit of the arithmetic end in
different weather. So the 500 hPa geopotential of the last saved time at a few grid points
tells a store from the reference build, the one the documented demo scores come from,
without shipping any data. The post-processing's float noise is far below the tolerance,
another weather sequence far above it (hundreds of m2 s-2).
"""

from __future__ import annotations

from dataclasses import dataclass

import xarray as xr

# (latitude index, longitude index) on the 32 x 64 grid, spread over both hemispheres.
POINTS = ((4, 0), (8, 16), (12, 32), (14, 48), (17, 8), (20, 40), (24, 56), (28, 24))
TOLERANCE = 1.0  # m2 s-2

# recipe_hash -> Z500 (m2 s-2) at POINTS at the last saved time of the reference build
# (x86-64, the build process pinned to XLA SSE4_2, OpenBLAS Nehalem and numpy's X86_V2
# baseline; dinosaur 1.5.1, jax 0.10.2, numpy 2.4.6; built 2026-12-03 on an AMD EPYC by
# `geoformer dataset held-suarez`, the values read back with `fingerprint`).
REFERENCE: dict[str, tuple[float, ...]] = {
    "3084b4dee946142e": (50507.2, 51217.0, 55825.9, 56293.5, 56222.5, 55755.9, 52757.2, 51475.8),
}


@dataclass(frozen=True)
class ReferenceCheck:
    matches: bool | None  # None: no reference build is recorded for this recipe
    message: str


def fingerprint(ds: xr.Dataset) -> tuple[float, ...]:
    """Z500 (m2 s-2, rounded to 0.1) at :data:`POINTS` at the last saved time."""
    z500 = ds["geopotential"].sel(level=500).isel(time=-1)
    z500 = z500.transpose("latitude", "longitude").values
    return tuple(round(float(z500[i, j]), 1) for i, j in POINTS)


def check_reference_build(ds: xr.Dataset) -> ReferenceCheck:
    """Whether ``ds`` is the reference build of its recipe, with a sentence saying so."""
    reference = REFERENCE.get(ds.attrs.get("recipe_hash", ""))
    if reference is None:
        return ReferenceCheck(None, "no reference build is recorded for this recipe")
    found = fingerprint(ds)
    if len(found) != len(reference):
        raise ValueError(f"fingerprint has {len(found)} points, the reference {len(reference)}")
    worst = max(abs(a - b) for a, b in zip(found, reference, strict=True))
    when = str(ds["time"].values[-1])[:16]
    if worst <= TOLERANCE:
        return ReferenceCheck(True, f"the reference build (Z500 of {when} within {worst:.1f} "
                                    f"m2 s-2 of it at {len(found)} points): the model scores "
                                    "are those of docs/geoformer.md")
    pins = ", ".join(f"{name} {ds.attrs.get(key, 'not recorded')}" for name, key in (
        ("XLA", "xla_cpu_max_isa"), ("OpenBLAS", "openblas_coretype"),
        ("numpy", "numpy_cpu_dispatch")))
    return ReferenceCheck(False, f"not the reference build: Z500 of {when} differs from it by "
                                 f"up to {worst:.0f} m2 s-2 (another weather sequence; built "
                                 f"with {pins}), so every score, the references' too, differs "
                                 "from docs/geoformer.md's by the sampling of the weather")
