"""A MuJoCo model's geoms as a few viser batched meshes, posed from one ``MjData``.

Geoms of the same shape (type and size, or the same mesh asset) share one batched mesh handle,
with one instance per geom: a scene of ~50 bodies then costs a handful of handles. One handle
per geom costs 5-9 ms of Python per update and reaches the browser at 4-9 updates/s, batched
handles 1.3-1.7 ms at the full rate (``/work/shared/design/viewer.md``).

Poses come from ``data.geom_xpos`` and ``data.geom_xmat`` (what MuJoCo computed in the last
substep): the viewer reads them, it never calls ``mj_forward`` on the simulation's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import trimesh

PLANE_HALF_SIZE = 3.0
"""Half width (m) drawn for an infinite plane (MuJoCo size 0)."""


def mat_to_wxyz(mats: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 9) or (n, 3, 3) to unit quaternions (n, 4), wxyz, vectorised."""
    m = np.asarray(mats, dtype=np.float64).reshape(-1, 3, 3)
    t = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    q = np.empty((len(m), 4))
    # The largest of w, x, y, z picks the numerically safe formula per row.
    cand = np.stack([t, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    k = cand.argmax(-1)
    for case in range(4):
        rows = k == case
        if not rows.any():
            continue
        r = m[rows]
        if case == 0:
            s = np.sqrt(1.0 + t[rows]) * 2
            q[rows] = np.stack(
                [0.25 * s, (r[:, 2, 1] - r[:, 1, 2]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s, (r[:, 1, 0] - r[:, 0, 1]) / s],
                -1,
            )
        elif case == 1:
            s = np.sqrt(1.0 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2]) * 2
            q[rows] = np.stack(
                [(r[:, 2, 1] - r[:, 1, 2]) / s, 0.25 * s, (r[:, 0, 1] + r[:, 1, 0]) / s, (r[:, 0, 2] + r[:, 2, 0]) / s],
                -1,
            )
        elif case == 2:
            s = np.sqrt(1.0 + r[:, 1, 1] - r[:, 0, 0] - r[:, 2, 2]) * 2
            q[rows] = np.stack(
                [(r[:, 0, 2] - r[:, 2, 0]) / s, (r[:, 0, 1] + r[:, 1, 0]) / s, 0.25 * s, (r[:, 1, 2] + r[:, 2, 1]) / s],
                -1,
            )
        else:
            s = np.sqrt(1.0 + r[:, 2, 2] - r[:, 0, 0] - r[:, 1, 1]) * 2
            q[rows] = np.stack(
                [(r[:, 1, 0] - r[:, 0, 1]) / s, (r[:, 0, 2] + r[:, 2, 0]) / s, (r[:, 1, 2] + r[:, 2, 1]) / s, 0.25 * s],
                -1,
            )
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def geom_mesh(model: mujoco.MjModel, geom_id: int) -> trimesh.Trimesh | None:
    """The geom's surface in its own frame (MuJoCo conventions: capsules and cylinders along z,
    ``size[1]`` the half length), or None for geom types not drawn (heightfields, SDFs)."""
    kind = int(model.geom_type[geom_id])
    size = model.geom_size[geom_id]
    g = mujoco.mjtGeom
    if kind == g.mjGEOM_PLANE:
        hx = size[0] if size[0] > 0 else PLANE_HALF_SIZE
        hy = size[1] if size[1] > 0 else PLANE_HALF_SIZE
        mesh = trimesh.creation.box(extents=(2 * hx, 2 * hy, 0.002))
        mesh.apply_translation((0, 0, -0.001))
        return mesh
    if kind == g.mjGEOM_BOX:
        return trimesh.creation.box(extents=2 * size)
    if kind == g.mjGEOM_SPHERE:
        return trimesh.creation.icosphere(subdivisions=2, radius=size[0])
    if kind == g.mjGEOM_ELLIPSOID:
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
        mesh.apply_scale(size)
        return mesh
    if kind == g.mjGEOM_CAPSULE:
        return trimesh.creation.capsule(height=2 * size[1], radius=size[0], count=(16, 16))
    if kind == g.mjGEOM_CYLINDER:
        return trimesh.creation.cylinder(radius=size[0], height=2 * size[1], sections=24)
    if kind == g.mjGEOM_MESH:
        mid = int(model.geom_dataid[geom_id])
        start, count = int(model.mesh_vertadr[mid]), int(model.mesh_vertnum[mid])
        fstart, fcount = int(model.mesh_faceadr[mid]), int(model.mesh_facenum[mid])
        return trimesh.Trimesh(
            model.mesh_vert[start : start + count], model.mesh_face[fstart : fstart + fcount], process=False
        )
    return None


def _shape_key(model: mujoco.MjModel, geom_id: int) -> tuple[Any, ...]:
    kind = int(model.geom_type[geom_id])
    if kind == mujoco.mjtGeom.mjGEOM_MESH:
        return (kind, int(model.geom_dataid[geom_id]))
    return (kind, *np.round(model.geom_size[geom_id], 6).tolist())


@dataclass
class _Group:
    rows: np.ndarray
    """Rows of these geoms in :attr:`MujocoGeoms.geom_ids` order."""
    handle: Any


class MujocoGeoms:
    """Every visible geom of ``model`` under ``root`` in a viser scene, as batched meshes by shape."""

    def __init__(
        self, scene: Any, model: mujoco.MjModel, root: str = "/mujoco", skip_groups: tuple[int, ...] = (3, 4, 5)
    ) -> None:
        self.model = model
        ids_by_shape: dict[tuple[Any, ...], list[int]] = {}
        for gid in range(model.ngeom):
            if int(model.geom_group[gid]) in skip_groups or model.geom_rgba[gid, 3] == 0:
                continue
            ids_by_shape.setdefault(_shape_key(model, gid), []).append(gid)
        self.groups: list[_Group] = []
        self.geom_ids = np.array(sorted(g for ids in ids_by_shape.values() for g in ids), dtype=np.int64)
        for n, ids in enumerate(ids_by_shape.values()):
            mesh = geom_mesh(model, ids[0])
            if mesh is None:
                continue
            rgba = model.geom_rgba[ids]
            colors = np.clip(rgba[:, :3] * 255, 0, 255).astype(np.uint8)
            handle = scene.add_batched_meshes_simple(
                f"{root}/shape{n}",
                vertices=np.asarray(mesh.vertices, dtype=np.float32),
                faces=np.asarray(mesh.faces, dtype=np.uint32),
                batched_wxyzs=np.tile([1.0, 0.0, 0.0, 0.0], (len(ids), 1)),
                batched_positions=np.zeros((len(ids), 3)),
                batched_colors=colors,
                batched_opacities=rgba[:, 3].astype(np.float32) if (rgba[:, 3] < 1).any() else None,
                lod="off",
                cast_shadow=False,
                receive_shadow=False,
            )
            self.groups.append(_Group(np.searchsorted(self.geom_ids, ids), handle))

    def poses(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """The drawn geoms' world poses: ``geom_pos`` (n, 3) and ``geom_wxyz`` (n, 4), in ``geom_ids`` order."""
        ids = self.geom_ids
        return {"geom_pos": data.geom_xpos[ids].copy(), "geom_wxyz": mat_to_wxyz(data.geom_xmat[ids])}

    def draw(self, poses: dict[str, np.ndarray]) -> None:
        """Move every instance to the poses of :meth:`poses` (live or from a recording)."""
        pos, wxyz = poses["geom_pos"], poses["geom_wxyz"]
        for group in self.groups:
            group.handle.batched_positions = pos[group.rows]
            group.handle.batched_wxyzs = wxyz[group.rows]
