"""Contact geometry for tactile sensors: validated shape dataclasses and their Warp form.

Shapes (one object frame each; see ``docs/tactile.md`` and the tactile contract):

- :class:`Sphere` ``(radius)``, :class:`Box` ``(half_extents)``,
- :class:`Capsule` ``(radius, half_length)`` and :class:`Cylinder` ``(radius, half_length)``, both
  along the local z axis; ``half_length`` is half the length of the axis segment (a capsule's
  total length is ``2 * (half_length + radius)``, a cylinder's ``2 * half_length``),
- :class:`Plane` ``()``: the half-space ``z <= 0`` of its frame (outward normal +z),
- :class:`SdfGrid`: a signed distance field sampled on a regular grid, built once from a closed
  triangle mesh (:meth:`SdfGrid.from_mesh`), saved and loaded as ``.npz``.

Distances are in metres; negative inside. The gradient of the distance is the outward normal.

Warp side
---------
:func:`pack_shapes` turns a list of shapes into a :class:`PackedShapes` Warp struct on a device
(shape type ids, four float parameters per shape, and all SDF grids concatenated with per-grid
offsets, dimensions and bounds). Kernels in other modules evaluate shape ``k`` with::

    @wp.func
    def shape_sdf(shapes: PackedShapes, k: int, p: wp.vec3) -> wp.vec4
        # p: point in shape k's local frame (m)
        # returns wp.vec4(signed distance (m), outward unit normal x, y, z) in the local frame

Usage from a kernel::

    from embodied.sim.tactile.shapes import PackedShapes, shape_sdf, load_pose

    @wp.kernel
    def my_kernel(shapes: PackedShapes, obj_pose: wp.array3d(dtype=float), ...):
        x_obj = load_pose(obj_pose, env, k)            # wp.transform, from (pos, quat wxyz)
        q = wp.transform_point(wp.transform_inverse(x_obj), p_world)
        sd = shape_sdf(shapes, k, q)                    # sd[0] distance, (sd[1], sd[2], sd[3]) normal
        n_world = wp.transform_vector(x_obj, wp.vec3(sd[1], sd[2], sd[3]))

Poses follow the contract: ``(..., 7)`` = position xyz + quaternion **wxyz**; Warp's own
quaternions are xyzw, so always go through :func:`quat_wxyz` / :func:`load_pose`.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import warp as wp

# Warp 1.19 replaced ``wp.config.quiet`` with ``log_level``: keep the banner and per-module
# compile messages out of users' logs (warnings still show).
wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)

SHAPE_SPHERE = 0
SHAPE_BOX = 1
SHAPE_CAPSULE = 2
SHAPE_CYLINDER = 3
SHAPE_PLANE = 4
SHAPE_SDF_GRID = 5

SDF_GRID_FORMAT_VERSION = 1


def _positive(owner: str, name: str, value: Any) -> float:
    """``value`` as a float, or a ValueError naming ``owner.name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{owner}.{name} must be a number (m), got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{owner}.{name} must be a finite number > 0 (m), got {value!r}")
    return v


@dataclass(frozen=True)
class Sphere:
    """A sphere of ``radius`` (m) centred at the object frame's origin."""

    radius: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _positive("Sphere", "radius", self.radius))


@dataclass(frozen=True)
class Box:
    """An axis-aligned box (in its frame) with ``half_extents`` (hx, hy, hz) in m."""

    half_extents: tuple[float, float, float]

    def __post_init__(self) -> None:
        he = self.half_extents
        if not isinstance(he, (tuple, list, np.ndarray)) or len(he) != 3:
            raise ValueError(f"Box.half_extents must be 3 numbers (hx, hy, hz) in m, got {he!r}")
        vals = tuple(_positive("Box", f"half_extents[{i}]", v) for i, v in enumerate(he))
        object.__setattr__(self, "half_extents", vals)


@dataclass(frozen=True)
class Capsule:
    """A capsule along local z: segment from z=-half_length to z=+half_length, swept by ``radius``."""

    radius: float
    half_length: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _positive("Capsule", "radius", self.radius))
        object.__setattr__(self, "half_length", _positive("Capsule", "half_length", self.half_length))


@dataclass(frozen=True)
class Cylinder:
    """A solid cylinder along local z of ``radius``, from z=-half_length to z=+half_length."""

    radius: float
    half_length: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _positive("Cylinder", "radius", self.radius))
        object.__setattr__(self, "half_length", _positive("Cylinder", "half_length", self.half_length))


@dataclass(frozen=True)
class Plane:
    """The half-space z <= 0 of its frame (a table top, a flat indenter); outward normal +z."""


@dataclass(eq=False)
class SdfGrid:
    """Signed distances sampled at the nodes of a regular grid (a mesh's precomputed SDF).

    ``values[i, j, k]`` is the distance (m, negative inside) at
    ``lower + (i, j, k) * (upper - lower) / (shape - 1)``. Between nodes the field is trilinear;
    outside the bounds it is the boundary value plus the distance to the grid box.
    """

    values: np.ndarray
    """(nx, ny, nz) float32 signed distances, each dim >= 2."""
    lower: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """(3,) grid box minimum corner (m) in the object frame."""
    upper: np.ndarray = field(default_factory=lambda: np.ones(3))
    """(3,) grid box maximum corner (m) in the object frame."""

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        if values.ndim != 3 or min(values.shape) < 2:
            raise ValueError(f"SdfGrid.values must be a 3-D array with every dim >= 2, got shape {values.shape}")
        if not np.issubdtype(values.dtype, np.floating) or not np.all(np.isfinite(values)):
            raise ValueError("SdfGrid.values must be finite floating-point signed distances")
        lower = np.asarray(self.lower, dtype=np.float64).reshape(-1)
        upper = np.asarray(self.upper, dtype=np.float64).reshape(-1)
        for name, arr in (("lower", lower), ("upper", upper)):
            if arr.shape != (3,) or not np.all(np.isfinite(arr)):
                raise ValueError(f"SdfGrid.{name} must be 3 finite numbers (m), got {arr.tolist()}")
        if not np.all(upper > lower):
            raise ValueError(f"SdfGrid bounds need upper > lower on every axis, got lower={lower}, upper={upper}")
        self.values = np.ascontiguousarray(values, dtype=np.float32)
        self.lower, self.upper = lower, upper

    @property
    def spacing(self) -> np.ndarray:
        """(3,) distance between neighbouring nodes along each axis (m)."""
        return (self.upper - self.lower) / (np.array(self.values.shape) - 1)

    @classmethod
    def from_mesh(
        cls,
        vertices: np.ndarray,
        faces: np.ndarray,
        resolution: int = 64,
        padding: float | None = None,
        check_closed: bool = True,
    ) -> SdfGrid:
        """Precompute the SDF of a closed triangle mesh (once, not per step).

        Args:
            vertices: (V, 3) vertex positions (m) in the object frame.
            faces: (F, 3) vertex indices of each triangle.
            resolution: nodes along the longest axis of the padded bounding box (>= 4); the
                other axes get the same spacing (cubic cells).
            padding: margin (m) added around the mesh's bounding box; default 10 % of the
                longest extent, so a gel pressed into the object stays inside the grid.
            check_closed: raise unless every edge is shared by exactly two faces.

        The sign comes from the mesh's generalised winding number (Warp's ``wp.Mesh``), so it
        is robust to small defects; the distance is to the closest point on the surface.
        """
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4 or not np.all(np.isfinite(v)):
            raise ValueError(f"SdfGrid.from_mesh: vertices must be a finite (V>=4, 3) array, got shape {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or len(f) < 4 or not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"SdfGrid.from_mesh: faces must be an integer (F>=4, 3) array, got {f.dtype} {f.shape}")
        if f.min() < 0 or f.max() >= len(v):
            raise ValueError(
                f"SdfGrid.from_mesh: face indices must lie in [0, {len(v) - 1}], got [{f.min()}, {f.max()}]"
            )
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 4:
            raise ValueError(f"SdfGrid.from_mesh: resolution must be an int >= 4, got {resolution!r}")
        if check_closed:
            open_edges = _count_open_edges(f)
            if open_edges:
                raise ValueError(
                    f"SdfGrid.from_mesh needs a closed (watertight) mesh: {open_edges} edges are not shared by "
                    "exactly two faces; repair the mesh or pass check_closed=False"
                )
        lo, hi = v.min(axis=0), v.max(axis=0)
        extent = float((hi - lo).max())
        if extent <= 0.0:
            raise ValueError("SdfGrid.from_mesh: the mesh has zero extent")
        pad = 0.1 * extent if padding is None else float(padding)
        if not math.isfinite(pad) or pad < 0.0:
            raise ValueError(f"SdfGrid.from_mesh: padding must be a finite number >= 0 (m), got {padding!r}")
        lo, hi = lo - pad, hi + pad
        h = float((hi - lo).max()) / (resolution - 1)
        dims = np.maximum(np.ceil((hi - lo) / h - 1e-9).astype(int) + 1, 2)
        hi = lo + (dims - 1) * h  # cubic cells: grow the box to whole cells
        values = _mesh_sdf_warp(v, f.astype(np.int32), lo, h, dims)
        return cls(values=values, lower=lo, upper=hi)

    def save(self, path: str | Path) -> None:
        """Write the grid to ``path`` (.npz with keys values, lower, upper, format_version)."""
        np.savez_compressed(
            path, values=self.values, lower=self.lower, upper=self.upper, format_version=SDF_GRID_FORMAT_VERSION
        )

    @classmethod
    def load(cls, path: str | Path) -> SdfGrid:
        """Read a grid written by :meth:`save`; malformed files raise ValueError naming the problem."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SdfGrid.load: no file at {path}")
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError(f"SdfGrid.load: {path} is a plain .npy array, expected an .npz from SdfGrid.save")
            with data:
                arrays = {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ValueError(f"SdfGrid.load: {path} is not a readable .npz file ({err})") from None
        except ValueError as err:
            if str(err).startswith("SdfGrid.load"):
                raise
            raise ValueError(f"SdfGrid.load: {path} is not a readable .npz file ({err})") from None
        missing = [k for k in ("values", "lower", "upper") if k not in arrays]
        if missing:
            raise ValueError(
                f"SdfGrid.load: {path} lacks keys {missing} (has {sorted(arrays)}); write it with SdfGrid.save"
            )
        version = int(arrays.get("format_version", SDF_GRID_FORMAT_VERSION))
        if version != SDF_GRID_FORMAT_VERSION:
            raise ValueError(
                f"SdfGrid.load: {path} has format_version {version}, this code reads {SDF_GRID_FORMAT_VERSION}"
            )
        try:
            return cls(values=arrays["values"], lower=arrays["lower"], upper=arrays["upper"])
        except ValueError as err:
            raise ValueError(f"SdfGrid.load: {path}: {err}") from None


Shape = Sphere | Box | Capsule | Cylinder | Plane | SdfGrid
SHAPE_TYPES = (Sphere, Box, Capsule, Cylinder, Plane, SdfGrid)


def _count_open_edges(faces: np.ndarray) -> int:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.sort(edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int(np.sum(counts != 2))


@wp.kernel
def _mesh_sdf_kernel(
    mesh: wp.uint64,
    lower: wp.vec3,
    h: float,
    ny: int,
    nz: int,
    out: wp.array(dtype=float),
):
    tid = wp.tid()
    i = tid // (ny * nz)
    j = (tid // nz) % ny
    k = tid % nz
    p = lower + wp.vec3(float(i) * h, float(j) * h, float(k) * h)
    q = wp.mesh_query_point_sign_winding_number(mesh, p, 1.0e6)
    d = 1.0e6
    if q.result:
        c = wp.mesh_eval_position(mesh, q.face, q.u, q.v)
        d = wp.length(p - c) * q.sign
    out[tid] = d


def _mesh_sdf_warp(v: np.ndarray, f: np.ndarray, lower: np.ndarray, h: float, dims: np.ndarray) -> np.ndarray:
    """Signed distance of each grid node to the mesh, on Warp's CPU device (one-off, cached)."""
    with wp.ScopedDevice("cpu"):
        mesh = wp.Mesh(
            points=wp.array(v.astype(np.float32), dtype=wp.vec3),
            indices=wp.array(f.reshape(-1), dtype=wp.int32),
            support_winding_number=True,
        )
        n = int(np.prod(dims))
        out = wp.zeros(n, dtype=float)
        wp.launch(
            _mesh_sdf_kernel,
            dim=n,
            inputs=[mesh.id, wp.vec3(*lower.astype(np.float32)), float(h), int(dims[1]), int(dims[2]), out],
        )
        return out.numpy().reshape(tuple(int(d) for d in dims))


# ---------------------------------------------------------------------------------------------
# Simple closed meshes (tests, examples, quick objects)


def icosphere_mesh(radius: float = 1.0, subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3), faces (F, 3)) of a closed, outward-wound icosphere of ``radius``."""
    t = (1.0 + 5.0**0.5) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t)]
    verts += [(t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    vlist = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in verts]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2)]
    faces += [(10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5)]
    faces += [(2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = vlist[a] + vlist[b]
                vlist.append(m / np.linalg.norm(m))
                cache[key] = len(vlist) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(vlist) * radius, np.array(faces, dtype=np.int64)


def box_mesh(half_extents: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (8, 3), faces (12, 3)) of a closed, outward-wound box."""
    h = np.asarray(half_extents, dtype=np.float64)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64) * h
    # corner index = 4*ix + 2*iy + iz
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = []
    for a, b, c, d in quads:
        faces += [(a, b, c), (a, c, d)]
    return corners, np.array(faces, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Warp packing


@wp.struct
class PackedShapes:
    """All objects' geometry on one device; object k of every env has shape k."""

    types: wp.array(dtype=wp.int32)
    """(K,) SHAPE_* id per shape."""
    params: wp.array(dtype=wp.vec4)
    """(K,) sphere (r), box (hx, hy, hz), capsule/cylinder (r, half_length), grid (grid index)."""
    grid_data: wp.array(dtype=float)
    """All grids' values, each C-ordered (nx, ny, nz), concatenated."""
    grid_offset: wp.array(dtype=wp.int32)
    grid_dims: wp.array(dtype=wp.vec3i)
    grid_lower: wp.array(dtype=wp.vec3)
    grid_upper: wp.array(dtype=wp.vec3)
    bound_sq: wp.array(dtype=float)
    """(K,) squared radius (m^2) of a sphere about the shape's origin that holds the whole solid
    (1e30 for a plane); a point outside it has a positive distance."""


def shape_type_id(shape: Shape) -> int:
    """The SHAPE_* id of a shape instance (TypeError for anything else)."""
    for tid, cls in enumerate(SHAPE_TYPES):
        if isinstance(shape, cls):
            return tid
    raise TypeError(
        f"unsupported shape {type(shape).__name__}; use one of {', '.join(c.__name__ for c in SHAPE_TYPES)}"
    )


def shape_params(shape: Shape, grid_index: int = -1) -> tuple[float, float, float, float]:
    """The four floats :func:`shape_sdf` reads for ``shape``."""
    if isinstance(shape, Sphere):
        return (shape.radius, 0.0, 0.0, 0.0)
    if isinstance(shape, Box):
        return (*shape.half_extents, 0.0)
    if isinstance(shape, (Capsule, Cylinder)):
        return (shape.radius, shape.half_length, 0.0, 0.0)
    if isinstance(shape, Plane):
        return (0.0, 0.0, 0.0, 0.0)
    if isinstance(shape, SdfGrid):
        return (float(grid_index), 0.0, 0.0, 0.0)
    raise TypeError(f"unsupported shape {type(shape).__name__}")


def bounding_radius(shape: Shape) -> float:
    """Radius (m) of a sphere about the shape's origin that contains the solid (inf for Plane)."""
    if isinstance(shape, Sphere):
        return shape.radius
    if isinstance(shape, Box):
        return float(np.linalg.norm(shape.half_extents))
    if isinstance(shape, Capsule):
        return shape.radius + shape.half_length
    if isinstance(shape, Cylinder):
        return float(np.hypot(shape.radius, shape.half_length))
    if isinstance(shape, SdfGrid):
        return _grid_bounding_radius(shape)
    return math.inf


def _grid_bounding_radius(grid: SdfGrid) -> float:
    v = grid.values
    inside = np.argwhere(v < 0)
    if len(inside) == 0:
        return 0.0
    diag = float(np.linalg.norm(grid.spacing))
    # a trilinear value < 0 needs a negative corner in its cell, at most one cell diagonal away
    radius = float(np.linalg.norm(grid.lower + inside * grid.spacing, axis=1).max()) + diag
    faces = [v[0], v[-1], v[:, 0], v[:, -1], v[:, :, 0], v[:, :, -1]]
    lowest_face = min(float(f.min()) for f in faces)
    if lowest_face < 0:  # solid reaches the grid's edge: outside values are boundary + distance
        corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])
        far = float(np.linalg.norm(np.where(corners == 0, grid.lower, grid.upper), axis=1).max())
        radius = max(radius, far - lowest_face)
    return radius


def pack_shapes(shapes: list[Shape] | tuple[Shape, ...], device: str | Any = "cpu") -> PackedShapes:
    """Pack ``shapes`` (object k has shape k) into a :class:`PackedShapes` on ``device``."""
    if not isinstance(shapes, (list, tuple)) or len(shapes) == 0:
        raise ValueError(f"shapes must be a non-empty list of shapes (one per object), got {shapes!r}")
    types, params, grids = [], [], []
    for k, s in enumerate(shapes):
        try:
            types.append(shape_type_id(s))
        except TypeError as err:
            raise TypeError(f"shapes[{k}]: {err}") from None
        if isinstance(s, SdfGrid):
            params.append(shape_params(s, len(grids)))
            grids.append(s)
        else:
            params.append(shape_params(s))
    if grids:
        data = np.concatenate([g.values.reshape(-1) for g in grids]).astype(np.float32)
        sizes = [g.values.size for g in grids]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
        dims = np.array([g.values.shape for g in grids], dtype=np.int32)
        lower = np.array([g.lower for g in grids], dtype=np.float32)
        upper = np.array([g.upper for g in grids], dtype=np.float32)
    else:  # Warp structs want real arrays: one unused dummy grid
        data = np.zeros(8, dtype=np.float32)
        offsets = np.zeros(1, dtype=np.int32)
        dims = np.full((1, 3), 2, dtype=np.int32)
        lower, upper = np.zeros((1, 3), np.float32), np.ones((1, 3), np.float32)
    packed = PackedShapes()
    packed.types = wp.array(np.array(types, dtype=np.int32), dtype=wp.int32, device=device)
    packed.params = wp.array(np.array(params, dtype=np.float32), dtype=wp.vec4, device=device)
    packed.grid_data = wp.array(data, dtype=float, device=device)
    packed.grid_offset = wp.array(offsets, dtype=wp.int32, device=device)
    packed.grid_dims = wp.array(dims, dtype=wp.vec3i, device=device)
    packed.grid_lower = wp.array(lower, dtype=wp.vec3, device=device)
    packed.grid_upper = wp.array(upper, dtype=wp.vec3, device=device)
    radii = np.array([bounding_radius(s) for s in shapes])
    # a small margin keeps float32 round-off from dropping a point right on the surface
    bound_sq = np.where(np.isfinite(radii), (radii * 1.001 + 1e-6) ** 2, 1e30).astype(np.float32)
    packed.bound_sq = wp.array(bound_sq, dtype=float, device=device)
    return packed


# ---------------------------------------------------------------------------------------------
# Warp functions: poses and signed distances


@wp.func
def quat_wxyz(w: float, x: float, y: float, z: float) -> wp.quat:
    """A unit Warp quaternion (xyzw inside) from wxyz components (normalised here)."""
    return wp.normalize(wp.quat(x, y, z, w))


@wp.func
def load_pose(poses: wp.array3d(dtype=float), i: int, j: int) -> wp.transform:
    """``poses[i, j, 0:7]`` = (x, y, z, qw, qx, qy, qz) as a wp.transform."""
    p = wp.vec3(poses[i, j, 0], poses[i, j, 1], poses[i, j, 2])
    q = quat_wxyz(poses[i, j, 3], poses[i, j, 4], poses[i, j, 5], poses[i, j, 6])
    return wp.transform(p, q)


@wp.func
def load_twist_linear(vel: wp.array3d(dtype=float), i: int, j: int) -> wp.vec3:
    """Linear velocity ``vel[i, j, 0:3]`` (world, m/s)."""
    return wp.vec3(vel[i, j, 0], vel[i, j, 1], vel[i, j, 2])


@wp.func
def load_twist_angular(vel: wp.array3d(dtype=float), i: int, j: int) -> wp.vec3:
    """Angular velocity ``vel[i, j, 3:6]`` (world, rad/s)."""
    return wp.vec3(vel[i, j, 3], vel[i, j, 4], vel[i, j, 5])


@wp.func
def _safe_normal(v: wp.vec3) -> wp.vec3:
    n = wp.length(v)
    if n > 1.0e-12:
        return v / n
    return wp.vec3(0.0, 0.0, 1.0)


@wp.func
def sdf_sphere(p: wp.vec3, r: float) -> wp.vec4:
    n = _safe_normal(p)
    return wp.vec4(wp.length(p) - r, n[0], n[1], n[2])


@wp.func
def sdf_box(p: wp.vec3, h: wp.vec3) -> wp.vec4:
    a = wp.vec3(wp.abs(p[0]), wp.abs(p[1]), wp.abs(p[2]))
    q = a - h
    qo = wp.vec3(wp.max(q[0], 0.0), wp.max(q[1], 0.0), wp.max(q[2], 0.0))
    s = wp.vec3(wp.sign(p[0]), wp.sign(p[1]), wp.sign(p[2]))
    if s[0] == 0.0:
        s = wp.vec3(1.0, s[1], s[2])
    if s[1] == 0.0:
        s = wp.vec3(s[0], 1.0, s[2])
    if s[2] == 0.0:
        s = wp.vec3(s[0], s[1], 1.0)
    lo = wp.length(qo)
    if lo > 0.0:
        n = wp.vec3(qo[0] * s[0], qo[1] * s[1], qo[2] * s[2]) / lo
        return wp.vec4(lo, n[0], n[1], n[2])
    # inside (or on the surface): the nearest face is the axis with the largest q
    if q[0] >= q[1] and q[0] >= q[2]:
        return wp.vec4(q[0], s[0], 0.0, 0.0)
    if q[1] >= q[2]:
        return wp.vec4(q[1], 0.0, s[1], 0.0)
    return wp.vec4(q[2], 0.0, 0.0, s[2])


@wp.func
def sdf_capsule(p: wp.vec3, r: float, hl: float) -> wp.vec4:
    c = wp.vec3(0.0, 0.0, wp.clamp(p[2], -hl, hl))
    d = p - c
    n = wp.vec3(1.0, 0.0, 0.0)
    ld = wp.length(d)
    if ld > 1.0e-12:
        n = d / ld
    return wp.vec4(ld - r, n[0], n[1], n[2])


@wp.func
def sdf_cylinder(p: wp.vec3, r: float, hl: float) -> wp.vec4:
    rho = wp.sqrt(p[0] * p[0] + p[1] * p[1])
    er = wp.vec3(1.0, 0.0, 0.0)
    if rho > 1.0e-12:
        er = wp.vec3(p[0] / rho, p[1] / rho, 0.0)
    sz = 1.0
    if p[2] < 0.0:
        sz = -1.0
    ez = wp.vec3(0.0, 0.0, sz)
    dr = rho - r
    dz = wp.abs(p[2]) - hl
    if dr > 0.0 and dz > 0.0:
        dl = wp.sqrt(dr * dr + dz * dz)
        n = (er * dr + ez * dz) / dl
        return wp.vec4(dl, n[0], n[1], n[2])
    if dr >= dz:
        return wp.vec4(dr, er[0], er[1], er[2])
    return wp.vec4(dz, 0.0, 0.0, sz)


@wp.func
def _grid_node(shapes: PackedShapes, off: int, ny: int, nz: int, i: int, j: int, k: int) -> float:
    return shapes.grid_data[off + (i * ny + j) * nz + k]


@wp.func
def sdf_grid(shapes: PackedShapes, g: int, p: wp.vec3) -> wp.vec4:
    lo = shapes.grid_lower[g]
    hi = shapes.grid_upper[g]
    dims = shapes.grid_dims[g]
    off = shapes.grid_offset[g]
    q = wp.vec3(wp.clamp(p[0], lo[0], hi[0]), wp.clamp(p[1], lo[1], hi[1]), wp.clamp(p[2], lo[2], hi[2]))
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    cx = (hi[0] - lo[0]) / float(nx - 1)
    cy = (hi[1] - lo[1]) / float(ny - 1)
    cz = (hi[2] - lo[2]) / float(nz - 1)
    fx = (q[0] - lo[0]) / cx
    fy = (q[1] - lo[1]) / cy
    fz = (q[2] - lo[2]) / cz
    i = wp.clamp(int(wp.floor(fx)), 0, nx - 2)
    j = wp.clamp(int(wp.floor(fy)), 0, ny - 2)
    k = wp.clamp(int(wp.floor(fz)), 0, nz - 2)
    tx = fx - float(i)
    ty = fy - float(j)
    tz = fz - float(k)
    v000 = _grid_node(shapes, off, ny, nz, i, j, k)
    v001 = _grid_node(shapes, off, ny, nz, i, j, k + 1)
    v010 = _grid_node(shapes, off, ny, nz, i, j + 1, k)
    v011 = _grid_node(shapes, off, ny, nz, i, j + 1, k + 1)
    v100 = _grid_node(shapes, off, ny, nz, i + 1, j, k)
    v101 = _grid_node(shapes, off, ny, nz, i + 1, j, k + 1)
    v110 = _grid_node(shapes, off, ny, nz, i + 1, j + 1, k)
    v111 = _grid_node(shapes, off, ny, nz, i + 1, j + 1, k + 1)
    # interpolate along z, then y, then x; the analytic trilinear derivative gives the normal
    c00 = v000 + (v001 - v000) * tz
    c01 = v010 + (v011 - v010) * tz
    c10 = v100 + (v101 - v100) * tz
    c11 = v110 + (v111 - v110) * tz
    c0 = c00 + (c01 - c00) * ty
    c1 = c10 + (c11 - c10) * ty
    val = c0 + (c1 - c0) * tx
    gx = (c1 - c0) / cx
    d0 = (c01 - c00) + ((c11 - c10) - (c01 - c00)) * tx
    gy = d0 / cy
    z00 = v001 - v000
    z01 = v011 - v010
    z10 = v101 - v100
    z11 = v111 - v110
    z0 = z00 + (z01 - z00) * ty
    z1 = z10 + (z11 - z10) * ty
    gz = (z0 + (z1 - z0) * tx) / cz
    out = p - q
    lout = wp.length(out)
    if lout > 0.0:
        n = out / lout
        return wp.vec4(val + lout, n[0], n[1], n[2])
    n = _safe_normal(wp.vec3(gx, gy, gz))
    return wp.vec4(val, n[0], n[1], n[2])


@wp.func
def shape_sdf(shapes: PackedShapes, k: int, p: wp.vec3) -> wp.vec4:
    """(signed distance, outward normal xyz) of shape ``k`` at ``p`` in its local frame."""
    t = shapes.types[k]
    a = shapes.params[k]
    if t == SHAPE_SPHERE:
        return sdf_sphere(p, a[0])
    if t == SHAPE_BOX:
        return sdf_box(p, wp.vec3(a[0], a[1], a[2]))
    if t == SHAPE_CAPSULE:
        return sdf_capsule(p, a[0], a[1])
    if t == SHAPE_CYLINDER:
        return sdf_cylinder(p, a[0], a[1])
    if t == SHAPE_PLANE:
        return wp.vec4(p[2], 0.0, 0.0, 1.0)
    return sdf_grid(shapes, int(a[0]), p)
