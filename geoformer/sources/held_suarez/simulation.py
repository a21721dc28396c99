"""The dinosaur driver: Held-Suarez forcing on the sigma-level primitive equations.

Spins the model up from a resting isothermal atmosphere and yields the saved states, evaluated
on the output grid, as :class:`SigmaLevelFields` (the container handed to the post-processing).
jax and dinosaur are imported only inside the functions that run the model.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from .recipe import _time_axis

log = logging.getLogger(__name__)

_INSTALL_HINT = (
    'Building the Held-Suarez dataset needs jax and dinosaur: pip install "sciforecast[simulation]"'
)


@dataclass(frozen=True)
class SigmaLevelFields:
    """Model-level output of T saved states on the output grid (latitude north to south).

    time: (T,) datetime64[ns]. sigma: (N,) layer centres, top to bottom (increasing).
    temperature (K), u, v (m s-1): (T, N, H, W). surface_pressure (Pa): (T, H, W).
    """

    time: np.ndarray
    sigma: np.ndarray
    temperature: np.ndarray
    u: np.ndarray
    v: np.ndarray
    surface_pressure: np.ndarray

    def __post_init__(self):
        T, N = len(self.time), len(self.sigma)
        if not np.all(np.diff(self.sigma) > 0) or not 0 < self.sigma[0] < self.sigma[-1] < 1:
            raise ValueError(f"sigma must increase strictly inside (0, 1), found {self.sigma}")
        for name in ("temperature", "u", "v"):
            shape = getattr(self, name).shape
            if len(shape) != 4 or shape[:2] != (T, N):
                raise ValueError(f"{name} must be (T={T}, N={N}, H, W), found {shape}")
        if self.surface_pressure.shape != (T, *self.temperature.shape[2:]):
            raise ValueError(
                f"surface_pressure must be (T, H, W) = {(T, *self.temperature.shape[2:])}, "
                f"found {self.surface_pressure.shape}"
            )


def _import_dinosaur():
    try:
        import dinosaur  # noqa: F401
        import jax  # noqa: F401
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return dinosaur


def _dinosaur_version() -> str:
    try:
        return metadata.version("dinosaur")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class _Model:
    """A ready-to-run Held-Suarez model.

    advance: modal state -> modal state one output interval later.
    evaluate: (list of modal states, their (T,) times) -> SigmaLevelFields on the output grid.
    """

    initial_state: Any
    advance: Callable[[Any], Any]
    evaluate: Callable[[list, np.ndarray], SigmaLevelFields]


def _held_suarez_model(recipe: dict) -> _Model:
    """dinosaur's sigma-coordinate primitive equations with Held-Suarez forcing."""
    _import_dinosaur()
    import jax
    from dinosaur import (
        coordinate_systems,
        held_suarez,
        primitive_equations,
        primitive_equations_states,
        scales,
        sigma_coordinates,
        spherical_harmonic,
        time_integration,
        xarray_utils,
    )

    units = scales.units
    impl = spherical_harmonic.FastSphericalHarmonics
    grid = getattr(spherical_harmonic.Grid, recipe["resolution"])(spherical_harmonics_impl=impl)
    coords = coordinate_systems.CoordinateSystem(
        horizontal=grid,
        vertical=sigma_coordinates.SigmaCoordinates.equidistant(recipe["sigma_levels"]),
    )
    specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
    initial_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
        coords, specs, p0=1e5 * units.pascal
    )
    reference_temperature = aux[xarray_utils.REF_TEMP_KEY]
    key = jax.random.PRNGKey(recipe["seed"])
    state = initial_fn(key)  # uniform 1000 hPa: the key only draws a perturbation of size 0
    # The rest state is exactly zonally symmetric and would stay so: perturb it.
    noise = recipe["temperature_noise_kelvin"] * jax.random.normal(key, coords.nodal_shape)
    state.temperature_variation = state.temperature_variation + grid.to_modal(
        specs.nondimensionalize(noise * units.degK)
    )

    dynamics = primitive_equations.PrimitiveEquationsSigma(
        reference_temperature, grid.to_modal(aux[xarray_utils.OROGRAPHY]), coords, specs
    )
    forcing = held_suarez.HeldSuarezForcingSigma(
        coords=coords, physics_specs=specs, reference_temperature=reference_temperature
    )
    # Integer minutes and hours keep the step count exact (no rounding of pint quantities).
    dt = specs.nondimensionalize(recipe["dt_minutes"] * units.minute)
    step = time_integration.imex_rk_sil3(
        time_integration.compose_equations([dynamics, forcing]), dt
    )
    # dinosaur's default exponential filter damps the smallest scales (scaled by dt / tau).
    step = time_integration.step_with_filters(
        step, [time_integration.exponential_step_filter(grid, dt)]
    )
    steps_per_output = recipe["every_hours"] * 60 // recipe["dt_minutes"]
    advance = jax.jit(time_integration.repeated(step, steps_per_output))

    output_grid = _output_grid(grid, recipe["grid"]["latitudes"], recipe["grid"]["longitudes"])
    nodal = jax.jit(jax.vmap(lambda s: _nodal_fields(s, output_grid, reference_temperature)))
    scale = {
        "temperature": specs.dimensionalize(1.0, units.degK).m,
        "wind": specs.dimensionalize(1.0, units.m / units.s).m,
        "pressure": specs.dimensionalize(1.0, units.pascal).m,
    }
    sigma = np.asarray(coords.vertical.centers, dtype=np.float64)

    def evaluate(states: list, times: np.ndarray) -> SigmaLevelFields:
        stacked = jax.tree.map(lambda *xs: jax.numpy.stack(xs), *states)
        t, u, v, ps = (_to_hw(np.asarray(a, dtype=np.float64)) for a in nodal(stacked))
        return SigmaLevelFields(
            time=times, sigma=sigma, temperature=t * scale["temperature"],
            u=u * scale["wind"], v=v * scale["wind"], surface_pressure=ps * scale["pressure"],
        )

    return _Model(initial_state=state, advance=advance, evaluate=evaluate)


def _output_grid(model_grid, latitudes: int, longitudes: int):
    """The model's spherical harmonics evaluated on an equiangular grid without poles."""
    from dinosaur import spherical_harmonic

    return spherical_harmonic.Grid(
        longitude_wavenumbers=model_grid.longitude_wavenumbers,
        total_wavenumbers=model_grid.total_wavenumbers,
        longitude_nodes=longitudes,
        latitude_nodes=latitudes,
        latitude_spacing="equiangular",
        spherical_harmonics_impl=model_grid.spherical_harmonics_impl,
        radius=model_grid.radius,
    )


def _nodal_fields(state, grid, reference_temperature):
    """Non-dimensional T, u, v (N, lon, lat) and surface pressure (lon, lat) on ``grid``."""
    import jax.numpy as jnp
    from dinosaur import spherical_harmonic

    temperature = grid.to_nodal(state.temperature_variation) + reference_temperature[:, None, None]
    u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
    surface_pressure = jnp.exp(grid.to_nodal(state.log_surface_pressure)[0])
    return temperature, u, v, surface_pressure


def _to_hw(a: np.ndarray) -> np.ndarray:
    """dinosaur's nodal (..., W, H) with latitude south to north -> (..., H, W) north to south."""
    return np.flip(np.swapaxes(a, -1, -2), axis=-2)  # (..., H, W)


def _simulate_blocks(recipe: dict, block_size: int = 120) -> Iterator[SigmaLevelFields]:
    """Spin up, then yield the saved states in blocks of at most ``block_size`` times."""
    model = _held_suarez_model(recipe)
    intervals_per_day = 24 // recipe["every_hours"] if 24 % recipe["every_hours"] == 0 else None
    spinup = round(recipe["spinup_days"] * 24 / recipe["every_hours"])
    times = _time_axis(recipe).to_numpy()
    started = time.perf_counter()

    def states() -> Iterator[Any]:
        state = model.initial_state
        for _ in range(spinup):
            state = model.advance(state)
        log.info("Held-Suarez spin-up of %s days took %.0f s", recipe["spinup_days"],
                 time.perf_counter() - started)
        yield state
        for _ in range(len(times) - 1):
            state = model.advance(state)
            yield state

    trajectory = states()
    for first in range(0, len(times), block_size):
        block_times = times[first:first + block_size]
        block = list(itertools.islice(trajectory, len(block_times)))
        yield model.evaluate(block, block_times)
        if intervals_per_day:
            log.info("Held-Suarez day %d of %s saved (%.0f s)",
                     (first + len(block_times)) // intervals_per_day, recipe["days"],
                     time.perf_counter() - started)
