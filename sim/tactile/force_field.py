"""The tactile force field: one Warp launch for every env x sensor x taxel, all objects at once.

Per taxel (its position and frame come from :func:`~embodied.sim.tactile.config.taxel_layout`):

1. The taxel's rest point on the gel goes to world by the pad pose, then into each object's
   frame; the object's SDF gives the distance and the outward contact normal there.
2. Objects are reduced by **deepest penetration**: the object that reaches deepest into this
   taxel alone defines its contact (depth, normal, velocity). One point of gel can only be
   pushed by one surface, and this matches the image's height map (the deepest surface wins);
   summing would double-count where two objects overlap each other.
3. depth ``d = max(-sdf, 0)``; normal force ``fn = kn * d`` plus, when ``kd > 0``, Hunt-Crossley
   damping ``kd * d_dot * d`` (``d_dot`` from the previous call's depth; 0 on the first call after
   a reset), clamped at ``fn >= 0``.
4. Relative velocity at the taxel point: ``(v_pad + w_pad x r_pad) - (v_obj + w_obj x r_obj)``;
   its part tangential to the contact normal is ``vt``.
5. Shear ("velocity" model): ``ft = -min(kt * |vt|, mu * fn) * vt / |vt|``.
   Shear ("stick_slip" model): a per-taxel displacement ``u`` (taxel frame, m) accumulates
   ``vt * dt`` while in contact; ``ft = -kt_spring * u``; when ``|ft| > mu * fn`` the taxel slips
   and ``u`` is rescaled so that ``|ft| = mu * fn``; out of contact ``u = 0``.
6. Output, in the taxel frame: ``(ft . t1, ft . t2, fn)`` -- the force the object exerts on the
   gel, shear along the pad's x and y (projected on the gel surface) and the normal component,
   >= 0 and exactly ``fn`` (a tilted contact normal changes the shear direction, not the normal
   reading).

A first small launch turns every pose into a transform and its inverse (once per frame, not
once per taxel). All inputs are Warp arrays here; :class:`~embodied.sim.tactile.sensor.TactileSensor` wraps torch
tensors zero-copy. :func:`measure_force_fields_per_s` times the kernel for the bench.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import warp as wp

from embodied.sim.tactile.shapes import (
    PackedShapes,
    load_pose,
    load_twist_angular,
    load_twist_linear,
    shape_sdf,
)

wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)
# forward only: no gradients are taken through the sensor, and this halves the cold compile
wp.set_module_options({"enable_backward": False})


@wp.kernel
def pose_kernel(
    poses: wp.array3d(dtype=float),
    xf: wp.array2d(dtype=wp.transform),
    xf_inv: wp.array2d(dtype=wp.transform),
):
    """(N, M, 7) poses (wxyz) to transforms and their inverses, once per frame (not per taxel)."""
    i, j = wp.tid()
    x = load_pose(poses, i, j)
    xf[i, j] = x
    xf_inv[i, j] = wp.transform_inverse(x)


@wp.func
def _contact_force(
    shapes: PackedShapes,
    k: int,
    depth: float,
    p: wp.vec3,
    x_pad: wp.transform,
    frame: wp.mat33,
    v_pad: wp.vec3,
    w_pad: wp.vec3,
    x_obj: wp.transform,
    inv_obj: wp.transform,
    v_o: wp.vec3,
    w_o: wp.vec3,
    prev: float,
    disp: wp.vec2,
    dt: float,
    kn: float,
    kd: float,
    kt: float,
    kt_spring: float,
    mu: float,
    stick_slip: int,
) -> wp.mat33:
    """Force of object ``k`` on a taxel at world point ``p`` pressed ``depth`` deep.

    Returns rows (force (shear x, shear y, normal), new stick-slip displacement (x, y, 0), unused);
    only taxels in contact get here.
    """
    fn = kn * depth
    if kd > 0.0 and prev >= 0.0:
        fn = fn + kd * (depth - prev) / dt * depth
    fn = wp.max(fn, 0.0)
    # taxel axes in world
    rot = wp.quat_to_matrix(wp.transform_get_rotation(x_pad)) * frame
    t1 = wp.vec3(rot[0, 0], rot[1, 0], rot[2, 0])
    t2 = wp.vec3(rot[0, 1], rot[1, 1], rot[2, 1])
    # contact normal (world) and the tangential relative velocity of gel point against object point
    sd = shape_sdf(shapes, k, wp.transform_point(inv_obj, p))
    nrm = wp.normalize(wp.transform_vector(x_obj, wp.vec3(sd[1], sd[2], sd[3])))
    v_tax = v_pad + wp.cross(w_pad, p - wp.transform_get_translation(x_pad))
    v_obj = v_o + wp.cross(w_o, p - wp.transform_get_translation(x_obj))
    vrel = v_tax - v_obj
    vt = vrel - wp.dot(vrel, nrm) * nrm
    cap = mu * fn
    f = wp.vec2(0.0, 0.0)
    u = disp
    if stick_slip == 0:
        speed = wp.length(vt)
        if speed > 1.0e-12:
            mag = wp.min(kt * speed, cap)
            f = wp.vec2(wp.dot(vt, t1), wp.dot(vt, t2)) * (-mag / speed)
    else:
        u = disp + wp.vec2(wp.dot(vt, t1), wp.dot(vt, t2)) * dt
        f = -kt_spring * u
        fmag = wp.length(f)
        if fmag > cap:
            # slip: the anchor follows so that the elastic shear sits on the Coulomb cap
            u = u * (cap / fmag)
            f = -kt_spring * u
    return wp.mat33(f[0], f[1], fn, u[0], u[1], 0.0, 0.0, 0.0, 0.0)


@wp.kernel
def force_field_kernel(
    shapes: PackedShapes,
    num_objects: int,
    taxel_pos: wp.array(dtype=wp.vec3),
    taxel_rot: wp.array(dtype=wp.mat33),
    pad_xf: wp.array2d(dtype=wp.transform),
    pad_vel: wp.array3d(dtype=float),
    obj_xf: wp.array2d(dtype=wp.transform),
    obj_inv: wp.array2d(dtype=wp.transform),
    obj_vel: wp.array3d(dtype=float),
    dt: float,
    kn: float,
    kd: float,
    kt: float,
    kt_spring: float,
    mu: float,
    stick_slip: int,
    prev_depth: wp.array3d(dtype=float),
    shear_disp: wp.array3d(dtype=wp.vec2),
    depth_out: wp.array3d(dtype=float),
    force_out: wp.array3d(dtype=wp.vec3),
):
    """Launch with dim (num_envs, num_sensors, num_taxels).

    taxel_pos (T,) and taxel_rot (T,) columns (t1, t2, n) are in the pad frame; pad_xf (N,S) and
    obj_xf, obj_inv (N,O) come from :func:`pose_kernel`; pad_vel (N,S,6), obj_vel (N,O,6);
    prev_depth (N,S,T) < 0 means unknown (read and written only when kd > 0); shear_disp
    (N,S,T) is the stick-slip memory (only with stick_slip); depth_out (N,S,T) and force_out
    (N,S,T) vec3 are written.
    """
    n, s, t = wp.tid()
    x_pad = pad_xf[n, s]
    p = wp.transform_point(x_pad, taxel_pos[t])
    # deepest penetration over this env's objects
    # Warp needs typed constructors for variables a dynamic loop or branch reassigns
    best_k = int(-1)  # noqa: UP018
    best_d = float(0.0)  # noqa: UP018
    for k in range(num_objects):
        q = wp.transform_point(obj_inv[n, k], p)
        # outside an object's bounding sphere its distance is positive: skip the SDF query
        if wp.length_sq(q) < shapes.bound_sq[k]:
            sd = shape_sdf(shapes, k, q)
            if -sd[0] > best_d:
                best_d = -sd[0]
                best_k = k
    depth_out[n, s, t] = best_d
    if best_k < 0:
        # state is touched only by the models that use it
        if kd > 0.0:
            prev_depth[n, s, t] = 0.0
        if stick_slip != 0:
            shear_disp[n, s, t] = wp.vec2(0.0, 0.0)
        force_out[n, s, t] = wp.vec3(0.0, 0.0, 0.0)
        return
    prev = float(-1.0)  # noqa: UP018
    if kd > 0.0:
        prev = prev_depth[n, s, t]
        prev_depth[n, s, t] = best_d
    disp = wp.vec2(0.0, 0.0)
    if stick_slip != 0:
        disp = shear_disp[n, s, t]
    res = _contact_force(
        shapes,
        best_k,
        best_d,
        p,
        x_pad,
        taxel_rot[t],
        load_twist_linear(pad_vel, n, s),
        load_twist_angular(pad_vel, n, s),
        obj_xf[n, best_k],
        obj_inv[n, best_k],
        load_twist_linear(obj_vel, n, best_k),
        load_twist_angular(obj_vel, n, best_k),
        prev,
        disp,
        dt,
        kn,
        kd,
        kt,
        kt_spring,
        mu,
        stick_slip,
    )
    if stick_slip != 0:
        shear_disp[n, s, t] = wp.vec2(res[1, 0], res[1, 1])
    force_out[n, s, t] = wp.vec3(res[0, 0], res[0, 1], res[0, 2])


def pose_buffers(num_envs: int, num_sensors: int, num_objects: int, device: Any) -> dict[str, wp.array]:
    """Scratch transforms for :func:`launch_force_field` (allocate once, reuse every call)."""
    return {
        "pad_xf": wp.empty((num_envs, num_sensors), dtype=wp.transform, device=device),
        "pad_inv": wp.empty((num_envs, num_sensors), dtype=wp.transform, device=device),
        "obj_xf": wp.empty((num_envs, num_objects), dtype=wp.transform, device=device),
        "obj_inv": wp.empty((num_envs, num_objects), dtype=wp.transform, device=device),
    }


def launch_force_field(
    shapes: PackedShapes,
    num_objects: int,
    taxel_pos: wp.array,
    taxel_rot: wp.array,
    pad_pose: wp.array,
    pad_vel: wp.array,
    obj_pose: wp.array,
    obj_vel: wp.array,
    dt: float,
    params: dict[str, float],
    stick_slip: bool,
    prev_depth: wp.array,
    shear_disp: wp.array,
    depth_out: wp.array,
    force_out: wp.array,
    device: Any,
    stream: Any = None,
    scratch: dict[str, wp.array] | None = None,
    dim: tuple[int, int, int] | None = None,
) -> None:
    """Force field over ``force_out.shape`` = (N, S, T): two launches, poses then taxels.

    Poses are (N, S, 7) / (N, O, 7) float32 arrays (position, quaternion wxyz), velocities
    (N, S, 6) / (N, O, 6). ``params`` holds kn, kd, kt, kt_spring, mu (see
    :class:`TactileSensorCfg` for units). ``scratch`` comes from :func:`pose_buffers`. Arrays
    may be ``wp.array`` or ``wp.from_torch(..., return_ctype=True)`` descriptors; with the latter
    pass ``dim`` = (N, S, T).
    """
    dim = tuple(force_out.shape) if dim is None else tuple(dim)
    n, s, _ = dim
    if scratch is None:
        scratch = pose_buffers(n, s, num_objects, device)
    # normalise and invert every frame once, not once per taxel
    wp.launch(
        pose_kernel, dim=(n, s), inputs=[pad_pose, scratch["pad_xf"], scratch["pad_inv"]], device=device, stream=stream
    )
    wp.launch(
        pose_kernel,
        dim=(n, num_objects),
        inputs=[obj_pose, scratch["obj_xf"], scratch["obj_inv"]],
        device=device,
        stream=stream,
    )
    wp.launch(
        force_field_kernel,
        dim=dim,
        inputs=[
            shapes,
            int(num_objects),
            taxel_pos,
            taxel_rot,
            scratch["pad_xf"],
            pad_vel,
            scratch["obj_xf"],
            scratch["obj_inv"],
            obj_vel,
            float(dt),
            float(params["kn"]),
            float(params["kd"]),
            float(params["kt"]),
            float(params["kt_spring"]),
            float(params["mu"]),
            int(stick_slip),
            prev_depth,
            shear_disp,
            depth_out,
            force_out,
        ],
        device=device,
        stream=stream,
    )


def measure_force_fields_per_s(
    num_envs: int,
    num_sensors: int = 2,
    rows: int = 20,
    cols: int = 25,
    device: str = "cpu",
    repeats: int = 5,
    shear_model: str = "velocity",
) -> float:
    """Force fields (one pad's rows x cols field each) per second, one sphere pressed per env.

    Times ``TactileSensor.force_field`` end to end (input checks included) after one warm-up
    call; returns ``num_envs * num_sensors / t`` with ``t`` the fastest of ``repeats`` calls
    (the least disturbed by other processes on a shared machine).
    """
    import torch

    from embodied.sim.tactile.config import TactileSensorCfg
    from embodied.sim.tactile.sensor import TactileSensor
    from embodied.sim.tactile.shapes import Sphere

    cfg = TactileSensorCfg(rows=rows, cols=cols, shear_model=shear_model)  # type: ignore[arg-type]
    sensor = TactileSensor(cfg, num_envs=num_envs, num_sensors=num_sensors, shapes=[Sphere(0.01)], device=device)
    pad_pose = torch.zeros(num_envs, num_sensors, 7, device=device)
    pad_pose[..., 3] = 1.0
    obj_pose = torch.zeros(num_envs, 1, 7, device=device)
    obj_pose[..., 2] = 0.0095  # sphere pressed 0.5 mm into the pad
    obj_pose[..., 3] = 1.0
    pad_vel = torch.zeros(num_envs, num_sensors, 6, device=device)
    obj_vel = torch.zeros(num_envs, 1, 6, device=device)
    obj_vel[..., 0] = 0.01
    sensor.force_field(pad_pose, pad_vel, obj_pose, obj_vel, dt=0.01)
    best = math.inf
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        sensor.force_field(pad_pose, pad_vel, obj_pose, obj_vel, dt=0.01)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return float(num_envs * num_sensors / best)


def taxel_arrays(positions: np.ndarray, frames: np.ndarray, device: Any) -> tuple[wp.array, wp.array]:
    """(T,) vec3 positions and (T,) mat33 frames on ``device`` from :func:`taxel_layout`'s output."""
    pos = np.ascontiguousarray(positions.reshape(-1, 3), dtype=np.float32)
    rot = np.ascontiguousarray(frames.reshape(-1, 3, 3), dtype=np.float32)
    return wp.array(pos, dtype=wp.vec3, device=device), wp.array(rot, dtype=wp.mat33, device=device)
