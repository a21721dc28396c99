"""Read an OpenFOAM (v1912, ASCII) case with a Lagrangian cloud and particleErosion.

* Tracks: every write time's ``lagrangian/<cloud>/{positions, U, d, origId, origProcId}``
  (``positions`` in the legacy ``(x y z) celli`` form); a particle is the pair
  (origProcId, origId), and its track is the union of its samples over the write times.
  A time whose cloud holds only barycentric ``coordinates`` (no legacy ``positions``: a
  ``0/`` written by mapFields, say) is skipped with a note, since locating barycentric
  coordinates needs the mesh's tetrahedral decomposition. Decomposed cases
  (``processor*/``) are read processor by processor.
* Erosion: the boundary field ``<cloud>Q`` (cumulative eroded volume [m3] per wall face);
  the rate between write times t1 < t2 is rho_wall * (Q(t2) - Q(t1)) / (A (t2 - t1))
  [kg m-2 s-1], meaningful when the particle feed is steady over [t1, t2].
* Wall faces: centres and areas computed from ``constant/polyMesh/{points, faces,
  boundary}`` with OpenFOAM's own face decomposition (triangles about the vertex average,
  area-weighted), so no post-processing run is needed; ``read_cell_centre_boundary`` reads
  the output of ``postProcess -func writeCellCentres`` (boundary values of C) to cross-check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .foam_format import (
    FoamFormatError,
    parse_dict,
    parse_field_value,
    parse_list,
    read_foam_file,
)

__all__ = ["FoamFormatError", "time_directories", "read_cloud", "read_tracks",
           "particle_key", "read_boundary", "read_wall_faces", "read_cell_centre_boundary",
           "read_eroded_volume", "erosion_rate"]

_TIME = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def time_directories(case) -> list[tuple[float, Path]]:
    """The numeric time directories of a case, sorted by time."""
    case = Path(case)
    if not case.is_dir():
        raise FileNotFoundError(f"{case}: no such OpenFOAM case directory")
    out = [(float(p.name), p) for p in case.iterdir() if p.is_dir() and _TIME.match(p.name)]
    return sorted(out, key=lambda tp: tp[0])


def particle_key(orig_proc, orig_id) -> np.ndarray:
    """One int64 id per particle from (origProcId, origId): proc * 2**32 + id."""
    return np.asarray(orig_proc, np.int64) * (1 << 32) + np.asarray(orig_id, np.int64)


def _read_list(path: Path, kind: str, n: int | None) -> np.ndarray:
    f = read_foam_file(path)
    values, end = parse_list(f.body, kind, f, what=path.name)
    if f.body[end:].strip():
        raise f.error(f"unexpected text after the list: {f.body[end:end + 40].strip()!r}")
    if n is not None and len(values) != n:
        raise f.error(f"{len(values)} entries, but positions has {n} parcels")
    return values


def read_cloud(time_dir, cloud: str = "kinematicCloud") -> dict[str, np.ndarray]:
    """The parcels of one write time: orig_proc, orig_id (N,), position (N, 3), U (N, 3), d (N,).

    Returns empty arrays when the time has no cloud (no parcels in the domain).
    """
    base = Path(time_dir) / "lagrangian" / cloud
    if _barycentric_only(base):
        raise FoamFormatError(base / "positions", "file not found: the cloud holds only "
                              "barycentric coordinates, which this reader cannot locate "
                              "without the mesh's tet decomposition (read_tracks skips it)")
    if not (base / "positions").exists():
        if base.is_dir():
            raise FoamFormatError(base / "positions", "file not found (other cloud files "
                                  "exist; v1912 writes legacy positions next to coordinates)")
        return {"orig_proc": np.zeros(0, np.int64), "orig_id": np.zeros(0, np.int64),
                "position": np.zeros((0, 3)), "U": np.zeros((0, 3)), "d": np.zeros(0)}
    pos = _read_list(base / "positions", "positions", None)   # (N, 4): x y z celli
    n = len(pos)
    out = {"position": pos[:, :3], "U": _read_list(base / "U", "vector", n),
           "d": _read_list(base / "d", "scalar", n)}
    for key, name in (("orig_id", "origId"), ("orig_proc", "origProcId")):
        values = _read_list(base / name, "label", n)
        if not np.array_equal(values, np.round(values)):
            raise FoamFormatError(base / name, "labels must be integers")
        out[key] = values.astype(np.int64)
    return out


def _barycentric_only(cloud_dir: Path) -> bool:
    """A cloud written without legacy positions (mapFields, writeLagrangianPositions off)."""
    return (cloud_dir / "coordinates").exists() and not (cloud_dir / "positions").exists()


def _track_roots(case: Path) -> list[Path]:
    procs = sorted(case.glob("processor[0-9]*"), key=lambda p: int(p.name[9:]))
    return procs if procs else [case]


def read_tracks(case, cloud: str = "kinematicCloud", t_max: float | None = None,
                t_min: float | None = None) -> pd.DataFrame:
    """The track table (see readers.tracks) of every parcel at every write time.

    Columns: particle (particle_key), orig_proc, orig_id, time, x, y, z, u, v, w, diameter.
    Only write times in [t_min, t_max] are read; the times skipped because their cloud holds
    only barycentric coordinates are named in ``attrs["notes"]``.
    """
    frames, skipped = [], []
    for root in _track_roots(Path(case)):
        for t, path in time_directories(root):
            if (t_max is not None and t > t_max) or (t_min is not None and t < t_min):
                continue
            if _barycentric_only(path / "lagrangian" / cloud):
                skipped.append(path)
                continue
            c = read_cloud(path, cloud)
            if len(c["d"]) == 0:
                continue
            frames.append(pd.DataFrame({
                "particle": particle_key(c["orig_proc"], c["orig_id"]),
                "orig_proc": c["orig_proc"], "orig_id": c["orig_id"], "time": t,
                "x": c["position"][:, 0], "y": c["position"][:, 1], "z": c["position"][:, 2],
                "u": c["U"][:, 0], "v": c["U"][:, 1], "w": c["U"][:, 2], "diameter": c["d"]}))
    notes = [f"{p}: skipped: lagrangian/{cloud} holds only barycentric coordinates, no "
             "legacy positions (a mapped time?)" for p in skipped]
    if not frames:
        raise FileNotFoundError(f"{case}: no lagrangian/{cloud} data at any write time"
                                + (f" ({len(skipped)} with only barycentric coordinates)"
                                   if skipped else ""))
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(["particle", "time"], kind="stable", ignore_index=True)
    table.attrs["notes"] = notes
    return table


def read_boundary(case) -> dict[str, dict]:
    """constant/polyMesh/boundary as {patch: {type, nFaces, startFace}} in file order."""
    path = Path(case) / "constant" / "polyMesh" / "boundary"
    f = read_foam_file(path)
    m = re.search(r"(\d+)\s*\(", f.body)
    close = f.body.rfind(")")
    if m is None or close < m.end():
        raise f.error("expected a list 'N ( name { ... } ... )' of patches")
    patches = parse_dict(f.body[m.end():close], f)
    if len(patches) != int(m.group(1)):
        raise f.error(f"header says {m.group(1)} patches, found {len(patches)}")
    out = {}
    for name, entry in patches.items():
        try:
            out[name] = {"type": entry["type"], "nFaces": int(entry["nFaces"]),
                         "startFace": int(entry["startFace"])}
        except (KeyError, TypeError, ValueError) as e:
            raise f.error(f"patch {name!r}: needs type, nFaces and startFace ({e})") from None
    return out


def _read_faces(path: Path, stop: int) -> list[np.ndarray]:
    """The first `stop` faces of a faceList file (vertex labels per face)."""
    f = read_foam_file(path)
    if "Compact" in f.cls:
        raise f.error("faceCompactList is not supported; write the mesh with "
                      "writeCompression off and a faceList")
    m = re.search(r"(\d+)\s*\(", f.body)
    if m is None:
        raise f.error("expected a face list 'N ( n(a b c ...) ... )'")
    n = int(m.group(1))
    if stop > n:
        raise f.error(f"the boundary needs {stop} faces, the file has {n}")
    faces = []
    for fm in re.finditer(r"(\d+)\s*\(([^()]*)\)", f.body[m.end():]):
        words = fm.group(2).split()
        bad = next((w for w in words if not (w.isascii() and w.isdigit())), None)
        if bad is not None:
            raise f.error(f"face {len(faces)}: expected vertex labels, found {bad!r}")
        labels = np.array(words, dtype=np.int64)
        if len(labels) != int(fm.group(1)) or len(labels) < 3:
            raise f.error(f"face {len(faces)}: header says {fm.group(1)} vertices, found "
                          f"{len(labels)}")
        faces.append(labels)
        if len(faces) == stop:
            return faces
    raise f.error(f"truncated: found {len(faces)} faces, needed {stop}")


def _face_geometry(points: np.ndarray, faces: list[np.ndarray]):
    """Centres (F, 3) and areas (F,) as OpenFOAM's face::centre / face::mag compute them."""
    centres, areas = np.zeros((len(faces), 3)), np.zeros(len(faces))
    by_size: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        by_size.setdefault(len(f), []).append(i)
    for n, idx in by_size.items():
        p = points[np.stack([faces[i] for i in idx])]           # (F_n, n, 3)
        if n == 3:
            normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
            centres[idx] = p.mean(axis=1)
            areas[idx] = 0.5 * np.linalg.norm(normal, axis=-1)
            continue
        pivot = p.mean(axis=1, keepdims=True)                   # (F_n, 1, 3)
        nxt = np.roll(p, -1, axis=1)
        tri_n = np.cross(nxt - p, pivot - p)                      # (F_n, n, 3)
        tri_c = (p + nxt + pivot) / 3.0
        total_n = tri_n.sum(axis=1)                               # (F_n, 3)
        unit = total_n / np.linalg.norm(total_n, axis=-1, keepdims=True)
        weight = np.einsum("fnc,fc->fn", tri_n, unit)             # signed triangle areas
        centres[idx] = np.einsum("fn,fnc->fc", weight, tri_c) / weight.sum(-1, keepdims=True)
        areas[idx] = 0.5 * np.linalg.norm(total_n, axis=-1)
    return centres, areas


def _wall_patches(boundary: dict, patches: Sequence[str] | None, where) -> list[str]:
    if patches is None:
        return [name for name, b in boundary.items() if b["type"] == "wall"]
    unknown = [p for p in patches if p not in boundary]
    if unknown:
        raise FoamFormatError(where, f"patches {unknown} not in the mesh; it has "
                                     f"{list(boundary)}")
    return list(patches)


def read_wall_faces(case, patches: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Wall faces of `patches` (all wall-type patches when None), in patch then face order.

    Returns face_centre (F, 3) [m], face_area (F,) [m2], patch (F,) names, and
    face_vertices (F, K, 3) [m], the corners of each face in OpenFOAM's order, when every face
    has the same number K of corners (the hex meshes of the sweep: quads), else None.
    """
    mesh = Path(case) / "constant" / "polyMesh"
    boundary = read_boundary(case)
    names = _wall_patches(boundary, patches, mesh / "boundary")
    stop = max(boundary[n]["startFace"] + boundary[n]["nFaces"] for n in names)
    faces = _read_faces(mesh / "faces", stop)
    points = _read_list(mesh / "points", "vector", None)
    top = max(int(f.max()) for f in faces) if faces else -1
    if top >= len(points):
        raise FoamFormatError(mesh / "faces", f"vertex {top} beyond the {len(points)} points")
    select = [faces[i] for n in names for i in range(boundary[n]["startFace"],
                                                     boundary[n]["startFace"]
                                                     + boundary[n]["nFaces"])]
    centre, area = _face_geometry(points, select)
    patch = np.concatenate([[n] * boundary[n]["nFaces"] for n in names]).astype(str)
    corners = {len(f) for f in select}
    vertices = (np.stack([points[np.asarray(f)] for f in select]) if len(corners) == 1
                else None)                                                  # (F, K, 3)
    return {"face_centre": centre, "face_area": area, "patch": patch,
            "face_vertices": vertices}


def _boundary_values(path: Path, patches: Sequence[str], boundary: dict,
                     kind: str) -> np.ndarray:
    f = read_foam_file(path)
    start = f.body.find("boundaryField")
    brace = f.body.find("{", start)
    if start < 0 or brace < 0:
        raise f.error("no boundaryField")
    fields = parse_dict(f.body[start:], f).get("boundaryField")
    if not isinstance(fields, dict):
        raise f.error("boundaryField is not a dictionary")
    out = []
    for name in patches:
        entry = fields.get(name)
        if entry is None:
            entry = next((v for k, v in fields.items() if re.fullmatch(k, name)), None)
        if not isinstance(entry, dict) or "value" not in entry:
            raise f.error(f"boundaryField has no 'value' for patch {name!r}")
        out.append(parse_field_value(entry["value"], kind, boundary[name]["nFaces"], f,
                                     what=f"boundaryField.{name}.value"))
    return np.concatenate(out, axis=0)


def read_cell_centre_boundary(case, time: str | float, patches: Sequence[str] | None = None):
    """Face centres (F, 3) from the boundary values of C (postProcess -func writeCellCentres)."""
    case = Path(case)
    boundary = read_boundary(case)
    names = _wall_patches(boundary, patches, case / "constant/polyMesh/boundary")
    return _boundary_values(_time_path(case, time) / "C", names, boundary, "vector")


def _time_path(case: Path, time) -> Path:
    for t, path in time_directories(case):
        if np.isclose(t, float(time), rtol=1e-9, atol=1e-12):
            return path
    raise FileNotFoundError(f"{case}: no write time {time}; it has "
                            f"{[t for t, _ in time_directories(case)]}")


def read_eroded_volume(case, time, patches: Sequence[str] | None = None,
                       cloud: str = "kinematicCloud") -> np.ndarray:
    """Cumulative eroded volume Q (F,) [m3] per wall face at a write time."""
    case = Path(case)
    boundary = read_boundary(case)
    names = _wall_patches(boundary, patches, case / "constant/polyMesh/boundary")
    return _boundary_values(_time_path(case, time) / f"{cloud}Q", names, boundary, "scalar")


def erosion_rate(case, t1: float, t2: float, wall_density: float, face_area: np.ndarray,
                 patches: Sequence[str] | None = None,
                 cloud: str = "kinematicCloud") -> np.ndarray:
    """Erosion rate (F,) [kg m-2 s-1] = rho_wall (Q(t2) - Q(t1)) / (A (t2 - t1))."""
    if not t2 > t1:
        raise ValueError(f"the erosion window needs t2 > t1, got t1={t1}, t2={t2}")
    dq = (read_eroded_volume(case, t2, patches, cloud)
          - read_eroded_volume(case, t1, patches, cloud))
    if (dq < -1e-12 * max(1.0, np.abs(dq).max())).any():
        raise FoamFormatError(Path(case) / f"{cloud}Q", "eroded volume decreased between "
                              f"t={t1} and t={t2}: Q must be cumulative (resetOnWrite off)")
    return wall_density * np.clip(dq, 0.0, None) / (np.asarray(face_area) * (t2 - t1))
