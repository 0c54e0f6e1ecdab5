"""Plain NumPy references of the tactile kernels' geometry and force field (float64).

Written independently of the Warp code, to check it in tests: vectorised over points, with a
Python loop only over objects. Nothing here is fast; nothing here imports Warp.

- ``sdf(shape, p)``: signed distance and outward normal of any shape at points ``p`` (..., 3).
- ``mesh_sdf(points, vertices, faces)``: brute-force SDF of a triangle mesh (closest point on
  every triangle, sign from the generalised winding number).
- ``force_field(cfg, shapes, pad_pose, pad_vel, obj_pose, obj_vel, dt, state)``: the force field
  of :mod:`embodied.sim.tactile.force_field` for both shear models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embodied.sim.tactile.config import TactileSensorCfg, taxel_layout
from embodied.sim.tactile.shapes import Box, Capsule, Cylinder, Plane, SdfGrid, Shape, Sphere


def _unit(v: np.ndarray, fallback: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out = np.where(n > 1e-12, v / np.where(n > 1e-12, n, 1.0), np.asarray(fallback))
    return out


def sdf_sphere(p: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    return np.linalg.norm(p, axis=-1) - radius, _unit(p)


def sdf_box(p: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = np.asarray(half, dtype=np.float64)
    sign = np.where(p < 0, -1.0, 1.0)
    q = np.abs(p) - half
    qo = np.maximum(q, 0.0)
    outside = np.linalg.norm(qo, axis=-1)
    axis = np.argmax(q, axis=-1)  # first maximum, like the kernel's >= chain
    inside_n = np.zeros_like(p)
    np.put_along_axis(inside_n, axis[..., None], np.take_along_axis(sign, axis[..., None], -1), -1)
    out_n = qo * sign / np.where(outside > 0, outside, 1.0)[..., None]
    d = np.where(outside > 0, outside, np.max(q, axis=-1))
    n = np.where((outside > 0)[..., None], out_n, inside_n)
    return d, n


def sdf_capsule(p: np.ndarray, radius: float, half_length: float) -> tuple[np.ndarray, np.ndarray]:
    c = np.zeros_like(p)
    c[..., 2] = np.clip(p[..., 2], -half_length, half_length)
    d = p - c
    return np.linalg.norm(d, axis=-1) - radius, _unit(d, (1.0, 0.0, 0.0))


def sdf_cylinder(p: np.ndarray, radius: float, half_length: float) -> tuple[np.ndarray, np.ndarray]:
    rho = np.linalg.norm(p[..., :2], axis=-1)
    er = np.zeros_like(p)
    er[..., :2] = p[..., :2]
    er = _unit(er, (1.0, 0.0, 0.0))
    ez = np.zeros_like(p)
    ez[..., 2] = np.where(p[..., 2] < 0, -1.0, 1.0)
    dr, dz = rho - radius, np.abs(p[..., 2]) - half_length
    corner = np.hypot(np.maximum(dr, 0), np.maximum(dz, 0))
    both = (dr > 0) & (dz > 0)
    d = np.where(both, corner, np.maximum(dr, dz))
    n_corner = (er * dr[..., None] + ez * dz[..., None]) / np.where(both, corner, 1.0)[..., None]
    n = np.where(both[..., None], n_corner, np.where((dr >= dz)[..., None], er, ez))
    return d, n


def sdf_grid(grid: SdfGrid, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear interpolation (analytic gradient) inside; boundary value + box distance outside."""
    lo, hi = grid.lower, grid.upper
    dims = np.array(grid.values.shape)
    h = (hi - lo) / (dims - 1)
    q = np.clip(p, lo, hi)
    f = (q - lo) / h
    i = np.clip(np.floor(f).astype(int), 0, dims - 2)
    t = f - i
    v = grid.values.astype(np.float64)
    val = np.zeros(p.shape[:-1])
    grad = np.zeros(p.shape)
    for cx in (0, 1):
        for cy in (0, 1):
            for cz in (0, 1):
                corner = v[i[..., 0] + cx, i[..., 1] + cy, i[..., 2] + cz]
                wx = t[..., 0] if cx else 1 - t[..., 0]
                wy = t[..., 1] if cy else 1 - t[..., 1]
                wz = t[..., 2] if cz else 1 - t[..., 2]
                val += corner * wx * wy * wz
                grad[..., 0] += corner * (1 if cx else -1) * wy * wz / h[0]
                grad[..., 1] += corner * wx * (1 if cy else -1) * wz / h[1]
                grad[..., 2] += corner * wx * wy * (1 if cz else -1) / h[2]
    out = p - q
    lout = np.linalg.norm(out, axis=-1)
    d = val + lout
    n = np.where((lout > 0)[..., None], _unit(out), _unit(grad))
    return d, n


def sdf(shape: Shape, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (...,) and outward unit normal (..., 3) of ``shape`` at local points ``p``."""
    p = np.asarray(p, dtype=np.float64)
    if isinstance(shape, Sphere):
        return sdf_sphere(p, shape.radius)
    if isinstance(shape, Box):
        return sdf_box(p, np.array(shape.half_extents))
    if isinstance(shape, Capsule):
        return sdf_capsule(p, shape.radius, shape.half_length)
    if isinstance(shape, Cylinder):
        return sdf_cylinder(p, shape.radius, shape.half_length)
    if isinstance(shape, Plane):
        return p[..., 2].copy(), np.broadcast_to(np.array([0.0, 0.0, 1.0]), p.shape).copy()
    if isinstance(shape, SdfGrid):
        return sdf_grid(shape, p)
    raise TypeError(f"unsupported shape {type(shape).__name__}")


def mesh_sdf(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Brute-force signed distance of points (P, 3) to a closed mesh: (P,), negative inside."""
    p = np.asarray(points, dtype=np.float64)[:, None, :]  # (P, 1, 3)
    a, b, c = (np.asarray(vertices, dtype=np.float64)[faces[:, k]][None] for k in range(3))  # (1, F, 3)
    closest = _closest_on_triangles(p, a, b, c)
    dist = np.linalg.norm(p - closest, axis=-1).min(axis=1)
    # generalised winding number: solid angle of every triangle seen from p, / 4 pi
    ra, rb, rc = a - p, b - p, c - p
    la, lb, lc = (np.linalg.norm(r, axis=-1) for r in (ra, rb, rc))
    num = np.einsum("...i,...i", ra, np.cross(rb, rc))
    den = la * lb * lc + np.einsum("...i,...i", ra, rb) * lc
    den += np.einsum("...i,...i", rb, rc) * la + np.einsum("...i,...i", rc, ra) * lb
    winding = (2.0 * np.arctan2(num, den)).sum(axis=1) / (4.0 * np.pi)
    return np.where(winding > 0.5, -dist, dist)


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point on each triangle (a, b, c) to p (Ericson's region tests, vectorised)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) > 1e-30, denom, 1e-30)
    v = vb / denom
    w = vc / denom
    result = a + ab * v[..., None] + ac * w[..., None]  # interior by default

    def put(mask: np.ndarray, value: np.ndarray) -> None:
        nonlocal result
        result = np.where(mask[..., None], value, result)

    # edges, then vertices last so they take precedence
    with np.errstate(divide="ignore", invalid="ignore"):
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), b + (c - b) * t_bc[..., None])
        t_ac = d2 / (d2 - d6)
        put((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * t_ac[..., None])
        t_ab = d1 / (d1 - d3)
        put((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * t_ab[..., None])
    put((d6 >= 0) & (d5 <= d6), np.broadcast_to(c, result.shape))
    put((d3 >= 0) & (d4 <= d3), np.broadcast_to(b, result.shape))
    put((d1 <= 0) & (d2 <= 0), np.broadcast_to(a, result.shape))
    return result


# ---------------------------------------------------------------------------------------------
# poses and the force field


def quat_to_matrix_wxyz(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions wxyz (normalised here) to (..., 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def new_state(num_envs: int, num_sensors: int, cfg: TactileSensorCfg) -> dict[str, np.ndarray]:
    """Initial force-field memory: unknown previous depth, no shear displacement."""
    t = cfg.num_taxels
    return {
        "prev_depth": np.full((num_envs, num_sensors, t), -1.0),
        "shear_disp": np.zeros((num_envs, num_sensors, t, 2)),
    }


def force_field(
    cfg: TactileSensorCfg,
    shapes: list[Shape],
    pad_pose: np.ndarray,
    pad_vel: np.ndarray,
    obj_pose: np.ndarray,
    obj_vel: np.ndarray,
    dt: float,
    state: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Reference force field: returns (forces (N,S,rows,cols,3), depth (N,S,rows,cols), new state).

    Same model as the Warp kernel (see :mod:`embodied.sim.tactile.force_field`); ``state`` (from
    :func:`new_state`, or None for a fresh one) is not modified.
    """
    pad_pose, pad_vel = np.asarray(pad_pose, np.float64), np.asarray(pad_vel, np.float64)
    obj_pose, obj_vel = np.asarray(obj_pose, np.float64), np.asarray(obj_vel, np.float64)
    n_env, n_sen = pad_pose.shape[:2]
    if state is None:
        state = new_state(n_env, n_sen, cfg)
    pos, frames = taxel_layout(cfg)
    pos, frames = pos.reshape(-1, 3), frames.reshape(-1, 3, 3)
    r_pad = quat_to_matrix_wxyz(pad_pose[..., 3:])  # (N, S, 3, 3)
    p = np.einsum("nsij,tj->nsti", r_pad, pos) + pad_pose[:, :, None, :3]  # (N, S, T, 3) world
    best_d = np.zeros(p.shape[:-1])
    best_k = np.full(p.shape[:-1], -1)
    best_n = np.zeros(p.shape)
    for k, shape in enumerate(shapes):
        r_obj = quat_to_matrix_wxyz(obj_pose[:, k, 3:])  # (N, 3, 3)
        local = np.einsum("nji,nstj->nsti", r_obj, p - obj_pose[:, k, None, None, :3])
        d, nrm = sdf(shape, local)
        deeper = -d > best_d
        best_d = np.where(deeper, -d, best_d)
        best_k = np.where(deeper, k, best_k)
        best_n = np.where(deeper[..., None], np.einsum("nij,nstj->nsti", r_obj, nrm), best_n)
    contact = best_k >= 0
    fn = cfg.kn * best_d
    prev = state["prev_depth"]
    if cfg.kd > 0:
        fn = np.where(prev >= 0, fn + cfg.kd * (best_d - prev) / dt * best_d, fn)
    fn = np.where(contact, np.maximum(fn, 0.0), 0.0)
    # velocities of the gel point and of the touching object's material point
    w_pad = pad_vel[:, :, None, 3:]
    v_tax = pad_vel[:, :, None, :3] + np.cross(w_pad, p - pad_pose[:, :, None, :3])
    k_idx = np.maximum(best_k, 0)
    env = np.arange(n_env)[:, None, None]
    v_o, w_o, x_o = obj_vel[env, k_idx, :3], obj_vel[env, k_idx, 3:], obj_pose[env, k_idx, :3]
    v_obj = v_o + np.cross(w_o, p - x_o)
    nrm = _unit(best_n)
    vrel = v_tax - v_obj
    vt = vrel - (vrel * nrm).sum(-1, keepdims=True) * nrm
    axes = np.einsum("nsij,tjk->nstik", r_pad, frames)  # columns t1, t2, n in world
    vt_local = np.einsum("nstik,nsti->nstk", axes[..., :2], vt)  # (N, S, T, 2)
    cap = cfg.mu * fn
    if cfg.shear_model == "velocity":
        speed = np.linalg.norm(vt, axis=-1)
        mag = np.minimum(cfg.kt * speed, cap)
        shear = -mag[..., None] * vt_local / np.where(speed > 1e-12, speed, 1.0)[..., None]
        shear = np.where((speed > 1e-12)[..., None], shear, 0.0)
        disp = np.zeros_like(state["shear_disp"])
    else:
        u = state["shear_disp"] + vt_local * dt
        f = -cfg.kt_spring * u
        fmag = np.linalg.norm(f, axis=-1)
        scale = np.where(fmag > cap, cap / np.where(fmag > 0, fmag, 1.0), 1.0)
        u = u * scale[..., None]
        shear = -cfg.kt_spring * u
        disp = u
    forces = np.concatenate([shear, fn[..., None]], axis=-1)
    forces = np.where(contact[..., None], forces, 0.0)
    disp = np.where(contact[..., None], disp, 0.0)
    new = {"prev_depth": np.where(contact, best_d, 0.0), "shear_disp": disp}
    shape5 = (n_env, n_sen, cfg.rows, cfg.cols)
    return forces.reshape(*shape5, 3), best_d.reshape(shape5), new
