"""Wall maps as VTK unstructured grids (.vtu) for ParaView, through meshio.

One file per case, one cell per wall face, with the face's ``erosion_rate`` [kg m-2 s-1] and
``wall_loss_rate`` [mm yr-1] as cell data. Where the dataset has the corners of each face
(``face_vertex`` (face, corner, xyz)) the cells are the faces themselves (quads for a hex
mesh), on the mesh's shared points, so ParaView's filters see a connected surface; an older
dataset without them gets a VTK_VERTEX cell at each face centre (view it with Point Gaussian).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .wall import wall_loss_mm_per_year

__all__ = ["CELL_TYPES", "wall_cells", "vtk_paths", "write_wall_vtk"]

#: meshio cell type of a face with this many corners.
CELL_TYPES = {3: "triangle", 4: "quad"}


def wall_cells(face_centre: np.ndarray,
               face_vertex: np.ndarray | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """Points (M, 3), the meshio cell type and cells (F, K) point indices of the wall.

    face_centre (F, 3) [m]; face_vertex (F, K, 3) [m] or None (one vertex cell per centre).
    Corners shared by neighbouring faces are the same mesh point, so they are merged.
    """
    centre = np.asarray(face_centre, dtype=float)
    if face_vertex is None:
        return centre, "vertex", np.arange(len(centre))[:, None]  # (F, 1)
    corners = np.asarray(face_vertex, dtype=float)
    F, K, _ = corners.shape
    if F != len(centre) or K not in CELL_TYPES:
        raise ValueError(f"face_vertex must be (F, K, 3) with F = {len(centre)} and K in "
                         f"{sorted(CELL_TYPES)}, found shape {corners.shape}")
    points, index = np.unique(corners.reshape(F * K, 3), axis=0, return_inverse=True)
    return points, CELL_TYPES[K], index.reshape(F, K)  # (M, 3), (F, K)


def vtk_paths(directory: str | Path, stem: str, n_cases: int) -> list[Path]:
    """``<directory>/<stem>_case<k>.vtu`` for k = 0 .. n_cases - 1."""
    return [Path(directory) / f"{stem}_case{k}.vtu" for k in range(n_cases)]


def write_wall_vtk(ds: xr.Dataset, case: int, path: str | Path) -> bool:
    """Write the wall map of ``ds.isel(case=case)`` to ``path`` (.vtu); True when the cells
    are the faces (``face_vertex`` present), False for vertex cells at the face centres.

    ``ds`` has ``erosion_rate`` (case, face) and the face coordinates of the canonical
    dataset; ``wall_loss_rate`` (case, face) is written as it is, or computed at the
    default wall density where it is missing.
    """
    import meshio

    if "erosion_rate" not in ds or "face_centre" not in ds.coords:
        raise ValueError("a wall map needs erosion_rate (case, face) and the face_centre "
                         f"coordinate; found variables {sorted(ds.data_vars)}")
    rate = ds["erosion_rate"].isel(case=case).transpose("face")
    loss = (ds["wall_loss_rate"].isel(case=case).transpose("face") if "wall_loss_rate" in ds
            else wall_loss_mm_per_year(rate))
    vertex = (ds["face_vertex"].transpose("face", "corner", "xyz").values
              if "face_vertex" in ds.coords else None)
    points, kind, cells = wall_cells(ds["face_centre"].transpose("face", "xyz").values, vertex)
    mesh = meshio.Mesh(points, [(kind, cells)], cell_data={
        "erosion_rate": [rate.values.astype(np.float64)],
        "wall_loss_rate": [loss.values.astype(np.float64)]})
    meshio.write(Path(path), mesh, file_format="vtu")
    return vertex is not None
