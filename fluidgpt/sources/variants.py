"""Dataset variants that need no new simulation: the paper-style replication with inert labels.

FLUID-GPT's 3125 cases were 125 distinct simulations, each repeated under 25 pressure labels
that changed nothing. ``paper_style_variant`` rebuilds that situation from a physical
dataset: every case is repeated once per combination of the inert labels (consecutively, in
blocks, as in the paper's grid), and ``group`` keeps the physical identity, so a random split
can be compared with a leak-free (interior or block) one.
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from ..schema import CONDITION_ATTRS, validate

__all__ = ["paper_style_variant"]


def paper_style_variant(ds: xr.Dataset, inert: dict[str, tuple[float, ...]]) -> xr.Dataset:
    """Repeat every case of `ds` under each combination of the `inert` label values.

    The result has N * prod(len(values)) cases; replicas of case i are consecutive, share
    its group and add the inert names as extra condition columns.
    """
    validate(ds, erosion="erosion_rate" in ds)
    if not inert:
        raise ValueError("paper_style_variant needs at least one inert label")
    clash = [name for name in inert if name in [str(c) for c in ds["condition"].values]]
    if clash:
        raise ValueError(f"inert labels {clash} are already conditions of the dataset")
    unknown = [name for name in inert if name not in CONDITION_ATTRS]
    if unknown:
        raise ValueError(f"unknown inert labels {unknown}; known: {sorted(CONDITION_ATTRS)}")
    combos = np.array(list(itertools.product(*inert.values())), dtype=float)  # (R, L)
    R, N = len(combos), ds.sizes["case"]
    out = ds.isel(case=np.repeat(np.arange(N), R))
    labels = np.tile(combos, (N, 1))                                          # (N R, L)
    extra = xr.DataArray(labels, dims=("case", "condition"), coords={
        "condition": list(inert),
        "condition_units": ("condition", [CONDITION_ATTRS[n][0] for n in inert])})
    conditions = xr.concat([out["conditions"].drop_vars("condition_units"),
                            extra.drop_vars("condition_units")], dim="condition")
    units = np.concatenate([ds["condition_units"].values.astype(str),
                            extra["condition_units"].values.astype(str)])
    out = out.drop_vars(["conditions", "condition", "condition_units"])
    out["conditions"] = conditions.assign_attrs(ds["conditions"].attrs)
    out = out.assign_coords(condition_units=("condition", units))
    out["condition_units"].attrs = ds["condition_units"].attrs
    out.attrs = {**ds.attrs, "variant": "paper_style",
                 "inert_labels": ", ".join(inert),
                 "replicas_per_group": R}
    return validate(out, erosion="erosion_rate" in out)
