"""Geometry of the elbow case: a square duct bend with a side branch, written for blockMesh.

The duct (width W in y, depth H in z) runs along +x from the main inlet, turns 90 degrees
(+x to +y) around a bend of inner radius R, and rises to the outlet. A small square branch
(ws x hs) enters the straight leg from below at x = xs: the particles are injected there,
like the sub-inlets of the boiler header in FLUID-GPT. Inertial particles cross the main
stream, miss the turn and hit the outer wall of the bend, where the erosion concentrates.

Patches: mainInlet, sideInlet, outlet and the walls wallStraight, wallBend, wallRiser,
wallBranch (every wall name starts with "wall").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ElbowGeometry", "block_mesh_dict", "injection_positions", "WALL_PATCHES"]

WALL_PATCHES = ("wallStraight", "wallBend", "wallRiser", "wallBranch")

# Outward-pointing block faces of a hex (v0..v7) in OpenFOAM's local axes
# (a: v0->v1, b: v1->v2, c: v0->v4).
_FACES = {
    "a-": (0, 4, 7, 3), "a+": (1, 2, 6, 5),
    "b-": (0, 1, 5, 4), "b+": (3, 7, 6, 2),
    "c-": (0, 3, 2, 1), "c+": (4, 5, 6, 7),
}


@dataclass(frozen=True)
class ElbowGeometry:
    """Dimensions [m] and the target cell size [m] of the elbow.

    width: duct width (y in the straight leg); depth: duct depth (z); inlet_length: straight
    leg before the bend; bend_radius: inner radius of the bend; riser_length: leg after the
    bend; branch_x: upstream edge of the branch; branch_width (x) and branch_depth (z): its
    section, centred in z; branch_length: its length below the duct; cell_size: edge length
    that sets every block's cell count.
    """

    width: float = 0.1
    depth: float = 0.1
    inlet_length: float = 0.5
    bend_radius: float = 0.1
    riser_length: float = 0.4
    branch_x: float = 0.15
    branch_width: float = 0.03
    branch_depth: float = 0.03
    branch_length: float = 0.1
    cell_size: float = 0.01

    def __post_init__(self):
        for name in ("width", "depth", "inlet_length", "bend_radius", "riser_length",
                     "branch_width", "branch_depth", "branch_length", "cell_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ElbowGeometry.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.branch_x < self.branch_x + self.branch_width < self.inlet_length:
            raise ValueError(
                f"the branch [{self.branch_x}, {self.branch_x + self.branch_width}] m must lie "
                f"inside the straight leg (0, {self.inlet_length}) m")
        if not self.branch_depth < self.depth:
            raise ValueError(f"branch_depth {self.branch_depth} must be < depth {self.depth}")

    def cells(self, length: float) -> int:
        return max(1, round(length / self.cell_size))

    @property
    def branch_z(self) -> tuple[float, float]:
        z0 = 0.5 * (self.depth - self.branch_depth)
        return z0, z0 + self.branch_depth

    @property
    def bend_centre(self) -> tuple[float, float]:
        return self.inlet_length, self.width + self.bend_radius


class _Blocks:
    """Accumulates unique vertices, hex blocks, arc edges and patch faces."""

    def __init__(self):
        self.vertices: dict[tuple[float, float, float], int] = {}
        self.blocks: list[tuple[list[int], tuple[int, int, int]]] = []
        self.edges: dict[tuple[int, int], tuple[float, float, float]] = {}
        self.patches: dict[str, list[tuple[int, ...]]] = {}

    def vertex(self, p) -> int:
        key = tuple(round(float(v), 9) for v in p)
        return self.vertices.setdefault(key, len(self.vertices))

    def hex(self, corners, counts, patches=None, arcs=None) -> None:
        """corners: 8 points in OpenFOAM hex order; patches: {face key: patch name}."""
        ids = [self.vertex(p) for p in corners]
        self.blocks.append((ids, counts))
        for key, name in (patches or {}).items():
            self.patches.setdefault(name, []).append(tuple(ids[i] for i in _FACES[key]))
        for (i, j), mid in (arcs or {}).items():
            self.edges[(ids[i], ids[j])] = mid


def _box(x0, x1, y0, y1, z0, z1):
    return [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0),
            (x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]


def _build(g: ElbowGeometry) -> _Blocks:
    out = _Blocks()
    W, R, L1 = g.width, g.bend_radius, g.inlet_length
    zb0, zb1 = g.branch_z
    zs = (0.0, zb0, zb1, g.depth)
    xs = (0.0, g.branch_x, g.branch_x + g.branch_width, L1)
    nz = [g.cells(zs[k + 1] - zs[k]) for k in range(3)]
    nb = g.cells(W)
    cx, cy = g.bend_centre
    ro, ri = R + W, R
    for k in range(3):
        zw = {"c-": "wallStraight"} if k == 0 else {"c+": "wallStraight"} if k == 2 else {}
        for i in range(3):
            faces = {"b+": "wallStraight", **zw}
            if not (i == 1 and k == 1):
                faces["b-"] = "wallStraight"
            if i == 0:
                faces["a-"] = "mainInlet"
            counts = (g.cells(xs[i + 1] - xs[i]), nb, nz[k])
            out.hex(_box(xs[i], xs[i + 1], 0.0, W, zs[k], zs[k + 1]), counts, faces)
        # Bend: a along the arc, b from the outer wall (r = ro) to the inner one (r = ri).
        def arc_point(theta, r, z):
            return (cx + r * math.cos(theta), cy + r * math.sin(theta), z)
        t0, tm, t1 = -0.5 * math.pi, -0.25 * math.pi, 0.0
        z0, z1 = zs[k], zs[k + 1]
        corners = [arc_point(t0, ro, z0), arc_point(t1, ro, z0), arc_point(t1, ri, z0),
                   arc_point(t0, ri, z0), arc_point(t0, ro, z1), arc_point(t1, ro, z1),
                   arc_point(t1, ri, z1), arc_point(t0, ri, z1)]
        arcs = {(0, 1): arc_point(tm, ro, z0), (3, 2): arc_point(tm, ri, z0),
                (4, 5): arc_point(tm, ro, z1), (7, 6): arc_point(tm, ri, z1)}
        faces = {"b-": "wallBend", "b+": "wallBend"}
        faces.update({"c-": "wallBend"} if k == 0 else {"c+": "wallBend"} if k == 2 else {})
        n_arc = g.cells(0.5 * math.pi * (R + 0.5 * W))
        out.hex(corners, (n_arc, nb, nz[k]), faces, arcs)
        # Riser: a along +y, b from the outer wall (x = cx + ro) to the inner one.
        y0, y1 = cy, cy + g.riser_length
        corners = [(cx + ro, y0, z0), (cx + ro, y1, z0), (cx + ri, y1, z0), (cx + ri, y0, z0),
                   (cx + ro, y0, z1), (cx + ro, y1, z1), (cx + ri, y1, z1), (cx + ri, y0, z1)]
        faces = {"b-": "wallRiser", "b+": "wallRiser", "a+": "outlet"}
        faces.update({"c-": "wallRiser"} if k == 0 else {"c+": "wallRiser"} if k == 2 else {})
        out.hex(corners, (g.cells(g.riser_length), nb, nz[k]), faces)
    # Branch below the straight leg, flowing +y into it.
    faces = {"a-": "wallBranch", "a+": "wallBranch", "c-": "wallBranch", "c+": "wallBranch",
             "b-": "sideInlet"}
    corners = [(xs[1], -g.branch_length, zb0), (xs[2], -g.branch_length, zb0),
               (xs[2], 0.0, zb0), (xs[1], 0.0, zb0), (xs[1], -g.branch_length, zb1),
               (xs[2], -g.branch_length, zb1), (xs[2], 0.0, zb1), (xs[1], 0.0, zb1)]
    # Local axes here: a = +x, b = +y, c = +z, so "b-" is the inlet plane y = -length.
    out.hex(corners, (g.cells(g.branch_width), g.cells(g.branch_length), nz[1]), faces)
    return out


_PATCH_TYPES = {"mainInlet": "patch", "sideInlet": "patch", "outlet": "patch",
                **{name: "wall" for name in WALL_PATCHES}}

_HEADER = """FoamFile
{{
    version     2.0;
    format      ascii;
    class       dictionary;
    object      {name};
}}
"""


def block_mesh_dict(g: ElbowGeometry) -> str:
    """The system/blockMeshDict text of the elbow (coordinates in metres)."""
    b = _build(g)
    lines = [_HEADER.format(name="blockMeshDict"), "// generated by fluidgpt.sources.elbow",
             "scale 1;", "", "vertices", "("]
    lines += [f"    ({x:.9g} {y:.9g} {z:.9g})" for (x, y, z) in b.vertices]
    lines += [");", "", "blocks", "("]
    for ids, (na, nb, nc) in b.blocks:
        lines.append(f"    hex ({' '.join(map(str, ids))}) ({na} {nb} {nc}) simpleGrading (1 1 1)")
    lines += [");", "", "edges", "("]
    lines += [f"    arc {i} {j} ({m[0]:.9g} {m[1]:.9g} {m[2]:.9g})"
              for (i, j), m in b.edges.items()]
    lines += [");", "", "boundary", "("]
    for name, faces in b.patches.items():
        lines += [f"    {name}", "    {", f"        type {_PATCH_TYPES[name]};",
                  "        faces", "        ("]
        lines += [f"            ({' '.join(map(str, f))})" for f in faces]
        lines += ["        );", "    }"]
    lines += [");", "", "mergePatchPairs", "(", ");", ""]
    return "\n".join(lines)


def injection_positions(g: ElbowGeometry, count: int, seed: int, jitter: float = 0.5,
                        offset: float = 0.005) -> np.ndarray:
    """Injection points (P, 3) [m] on a plane across the branch, `offset` above its inlet.

    A stratified grid of ceil(sqrt(P))^2 cells covering the branch section (inset by half a
    cell from its walls), P of them chosen evenly in row-major order (x fastest), each moved
    within its cell by a uniform offset of +-jitter/2 cell seeded by `seed`. The order is
    fixed, so particle p is the same physical particle in every case built with one seed.
    """
    if count < 1:
        raise ValueError(f"need at least one particle, got {count}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [0, 1], got {jitter}")
    if not 0.0 < offset < g.branch_length:
        raise ValueError(f"offset {offset} must lie inside the branch (0, {g.branch_length})")
    n = math.ceil(math.sqrt(count))
    pick = np.round(np.linspace(0, n * n - 1, count)).astype(int)
    iz, ix = np.divmod(pick, n)
    rng = np.random.default_rng(seed)
    u = rng.uniform(-0.5, 0.5, size=(n * n, 2))[pick] * jitter   # (P, 2)
    zb0, _ = g.branch_z
    dx, dz = g.branch_width / n, g.branch_depth / n
    x = g.branch_x + (ix + 0.5 + u[:, 0]) * dx
    z = zb0 + (iz + 0.5 + u[:, 1]) * dz
    y = np.full(count, -g.branch_length + offset)
    return np.stack([x, y, z], axis=-1)   # (P, 3)
