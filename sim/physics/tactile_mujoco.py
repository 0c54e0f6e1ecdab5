"""The tactile scene in MuJoCo: MJCF generated from the scene file, stepped with ``MujocoBatch``.

:func:`scene_mjcf` writes the MJCF (MuJoCo Warp loads the same text). Gel compliance is MuJoCo's
soft contact: every pad touches the objects only through explicit ``<pair>`` contacts whose
``solref`` is given as direct (stiffness, damping) and calibrated so that a static press of F
newtons sinks F / ``gel.stiffness`` metres, as in PyBullet. Why the calibration is needed: with
impedance d (``solimp`` dmin = dmax = d) MuJoCo's constraint regulariser is R = (1-d)/d * A,
with A its approximation of the contact's inverse mass (``body_invweight0`` of both bodies);
MuJoCo divides a direct stiffness k by d^2, and at rest the penetration is r = F R d^2 / (d k)
= F (1-d) A / k, so k = K (1-d) A gives r = F / K whatever d is. The contact then oscillates at
sqrt(k) rad/s, and the damping b = 2 zeta sqrt(k) damps it at ``gel.damping_ratio``.

:class:`MujocoTactileBackend` steps one ``MjData`` per env (CPU, threads via ``MujocoBatch``)
and reads body poses (``xpos``, ``xquat``) and velocities (``cvel`` carried from the subtree
centre of mass to the body origin) straight from each ``MjData``. After each step it refreshes
the kinematics (``mj_kinematics``, ``mj_comPos``, ``mj_comVel``: derived quantities only, the
trajectory is unchanged), so readouts are of the state after the step, as in PyBullet.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch

from embodied.sim.physics.mujoco_batch import MujocoBatch, default_num_threads
from embodied.sim.physics.tactile_backend import TactileBackend
from embodied.sim.physics.tactile_scene import (
    JOINT_NAMES,
    GeomSpec,
    TactileScene,
    box_inertia,
    layout,
    load_scene,
    object_inertia,
)

PAD_NAMES = ("pad_left", "pad_right")
FRICTION_DAMPING = 0.6
"""Damping of the pads' friction rows, as a fraction of 1 / timestep. MuJoCo's friction is soft:
it creeps under any tangential load, at a speed proportional to the load over this damping. With
the normal rows' damping a pad sliding over an object carried about half its Coulomb load; at
0.6 / timestep (as strong as an explicit velocity reference stays stable) it carries mu x normal
within a few percent, as Bullet's (hard) friction does. What remains is a slow creep under a
sustained tangential load (a 20 g peg held by the pads sinks ~1 mm/s; Bullet holds it).

Two MuJoCo remedies, both with a cost measured on the press-and-slide scene: raising ``impratio``
stiffens friction but makes the elliptic cone press on the normal rows while sliding (the gel
sinks ~30 % less than F / K); the no-slip pass (``noslip_iterations=1`` or more, a backend
option) removes the creep entirely and makes a slide follow Bullet's to 0.15 mm, but while
sliding the gel sinks ~23 % less. The default keeps the gel's depth right (the tactile signal)
and accepts the creep."""
FINGER_NAMES = ("finger_left", "finger_right")


def _f(values: Any) -> str:
    return " ".join(f"{float(v):.9g}" for v in np.atleast_1d(np.asarray(values, dtype=float)))


def geom_name(obj: str, k: int) -> str:
    return f"{obj}_geom{k}"


def _geom_xml(name: str, g: GeomSpec, friction: float) -> str:
    if g.shape == "sphere":
        size = _f([g.radius])
    elif g.shape == "box":
        size = _f(g.half_extents)
    else:
        size = _f([g.radius, g.half_length])
    return (
        f'<geom name="{name}" type="{g.shape}" size="{size}" pos="{_f(g.pos)}" quat="{_f(g.quat)}" '
        f'friction="{friction:.9g} 0 0" rgba="0.8 0.6 0.3 1"/>'
    )


def scene_mjcf(
    scene: TactileScene | str | Path,
    pair_solref: dict[tuple[int, str], tuple[float, float]] | None = None,
    noslip_iterations: int = 0,
) -> str:
    """MJCF text of a scene. Without ``pair_solref`` the pad pairs are calibrated (see the module
    docstring) by compiling the model once; ``pair_solref[(pad, geom name)]`` overrides that.
    ``noslip_iterations`` > 0 turns on MuJoCo's no-slip friction pass (see :data:`FRICTION_DAMPING`)."""
    scene = load_scene(scene)
    if pair_solref is None:
        pair_solref = calibrated_pair_solref(scene, mujoco.MjModel.from_xml_string(scene_mjcf(scene, {})))
    noslip = f' noslip_iterations="{int(noslip_iterations)}"' if noslip_iterations > 0 else ""
    g, lay = scene.gripper, layout(scene)
    gel = g.gel
    fx, fy, fz = g.finger_half_extents
    finger_inertia = box_inertia(g.finger_mass, g.finger_half_extents)
    palm_inertia = box_inertia(g.palm_mass, g.palm_half_extents)
    kp_pos, kd_pos = g.gains.position
    kp_rot, kd_rot = g.gains.rotation
    kp_f, kd_f = g.gains.finger
    lines = [
        f'<mujoco model="{scene.name}">',
        '  <compiler angle="radian" autolimits="true"/>',
        f'  <option timestep="{scene.timestep:.9g}" gravity="{_f(scene.gravity)}" integrator="implicitfast" cone="elliptic"{noslip}/>',
        "  <worldbody>",
    ]
    if scene.floor:
        lines.append('    <geom name="floor" type="plane" size="1 1 0.05" rgba="0.5 0.5 0.5 1"/>')
    lines.append('    <body name="hand" gravcomp="1">')
    for name, kind, axis in zip(JOINT_NAMES[:6], ["slide"] * 3 + ["hinge"] * 3, np.eye(3).tolist() * 2, strict=True):
        lines.append(f'      <joint name="{name}" type="{kind}" axis="{_f(axis)}"/>')
    lines += [
        f'      <inertial pos="0 0 0" mass="{g.palm_mass:.9g}" diaginertia="{_f(palm_inertia)}"/>',
        f'      <geom name="palm" type="box" size="{_f(g.palm_half_extents)}" rgba="0.3 0.3 0.35 1"/>',
    ]
    for side in range(2):
        lines += [
            f'      <body name="{FINGER_NAMES[side]}" pos="{_f(lay.finger_pos[side])}" gravcomp="1">',
            f'        <joint name="{JOINT_NAMES[6 + side]}" type="slide" axis="{_f(lay.finger_axis[side])}" '
            f'range="0 {g.max_opening / 2:.9g}"/>',
            f'        <inertial pos="0 0 0" mass="{g.finger_mass:.9g}" diaginertia="{_f(finger_inertia)}"/>',
            f'        <geom name="{FINGER_NAMES[side]}" type="box" size="{_f([fx, fy, fz])}" rgba="0.3 0.3 0.35 1"/>',
            # The gel: touched only through the calibrated <pair>s below.
            f'        <geom name="{PAD_NAMES[side]}" type="box" pos="{_f(lay.pad_geom_pos[side])}" '
            f'size="{_f(lay.pad_half_extents)}" contype="0" conaffinity="0" rgba="0.2 0.7 0.9 1"/>',
            f'        <site name="{PAD_NAMES[side]}" pos="{_f(lay.pad_frame[side, :3])}" quat="{_f(lay.pad_frame[side, 3:])}"/>',
            "      </body>",
        ]
    lines.append("    </body>")
    for obj in scene.objects:
        com, inertia = object_inertia(obj)
        full = [inertia[0, 0], inertia[1, 1], inertia[2, 2], inertia[0, 1], inertia[0, 2], inertia[1, 2]]
        lines.append(f'    <body name="{obj.name}" pos="{_f(obj.pos)}" quat="{_f(obj.quat)}">')
        if not obj.fixed:
            lines.append(f'      <freejoint name="{obj.name}"/>')
        lines.append(f'      <inertial pos="{_f(com)}" mass="{obj.mass:.9g}" fullinertia="{_f(full)}"/>')
        lines += [f"      {_geom_xml(geom_name(obj.name, k), geom, obj.friction)}" for k, geom in enumerate(obj.geoms)]
        lines.append("    </body>")
    lines += ["  </worldbody>", "  <contact>"]
    d = gel.impedance
    b_friction = FRICTION_DAMPING / scene.timestep
    for side, pad in enumerate(PAD_NAMES):
        others = [(geom_name(o.name, k), o.friction) for o in scene.objects for k in range(len(o.geoms))]
        if scene.floor:
            others.append(("floor", 1.0))
        for other, friction in others:
            k, b = pair_solref.get((side, other), (1.0, 1.0))
            mu = gel.friction * friction
            lines.append(
                f'    <pair geom1="{pad}" geom2="{other}" condim="4" friction="{mu:.9g} {mu:.9g} '
                f'{gel.torsional_friction * friction:.9g} 0 0" solref="{-k:.9g} {-b:.9g}" solreffriction="-1 {-b_friction:.9g}" solimp="{d:.9g} {d:.9g} 0.001 0.5 2"/>'
            )
    lines += ["  </contact>", "  <actuator>"]
    for j, name in enumerate(JOINT_NAMES):
        kp, kv = (kp_pos, kd_pos) if j < 3 else (kp_rot, kd_rot) if j < 6 else (kp_f, kd_f)
        limit = f' forcerange="{-g.finger_force_limit:.9g} {g.finger_force_limit:.9g}"' if j >= 6 else ""
        lines.append(f'    <position name="{name}" joint="{name}" kp="{kp:.9g}" kv="{kv:.9g}"{limit}/>')
    lines += ["  </actuator>", "</mujoco>", ""]
    return "\n".join(lines)


def calibrated_pair_solref(scene: TactileScene, model: mujoco.MjModel) -> dict[tuple[int, str], tuple[float, float]]:
    """Direct (stiffness, damping) per pad pair so a static press sinks F / ``gel.stiffness``."""
    gel = scene.gripper.gel
    d = gel.impedance
    out = {}
    for side, finger in enumerate(FINGER_NAMES):
        inv_finger = model.body_invweight0[model.body(finger).id, 0]
        others = [(geom_name(o.name, k), o.name) for o in scene.objects for k in range(len(o.geoms))]
        if scene.floor:
            others.append(("floor", "world"))
        for geom, body in others:
            inv = inv_finger + model.body_invweight0[model.body(body).id, 0]
            k = gel.stiffness * (1.0 - d) * inv
            out[(side, geom)] = (k, 2.0 * gel.damping_ratio * math.sqrt(k))
    return out


def pair_object_friction(scene: TactileScene) -> np.ndarray:
    """The non-pad side's friction coefficient of every pad pair, in ``scene_mjcf``'s pair order."""
    others = [o.friction for o in scene.objects for _ in o.geoms] + ([1.0] if scene.floor else [])
    return np.array(others * 2, dtype=float)


class _TactileBatch(MujocoBatch):
    """``MujocoBatch`` that also gathers the body orientations and velocities the sensor needs."""

    def setup_readouts(self, body_ids: np.ndarray) -> None:
        m = self.model
        self._read_ids = body_ids
        self._root_ids = m.body_rootid[body_ids]
        n, b = self.num_envs, len(body_ids)
        self.body_xpos = np.zeros((n, b, 3))
        self.body_xquat = np.zeros((n, b, 4))
        self.body_vel = np.zeros((n, b, 6))
        for i in range(n):
            self._gather(i)

    def _gather(self, i: int) -> None:
        super()._gather(i)
        ids = getattr(self, "_read_ids", None)
        if ids is None:
            return
        m, data = self.models[i], self.datas[i]
        mujoco.mj_kinematics(m, data)
        mujoco.mj_comPos(m, data)
        mujoco.mj_comVel(m, data)
        self.body_xpos[i] = data.xpos[ids]
        self.body_xquat[i] = data.xquat[ids]
        cvel = data.cvel[ids]  # [angular, linear at the subtree centre of mass], world axes
        r = data.xpos[ids] - data.subtree_com[self._root_ids]
        self.body_vel[i, :, :3] = cvel[:, 3:] + np.cross(cvel[:, :3], r)
        self.body_vel[i, :, 3:] = cvel[:, :3]


class MujocoTactileBackend(TactileBackend):
    """The scene in CPU MuJoCo: one ``MjData`` per env, stepped by ``MujocoBatch`` (threads optional)."""

    name = "mujoco"

    def __init__(
        self,
        scene: TactileScene | str | Path,
        num_envs: int,
        device: str | torch.device = "cpu",
        num_threads: int = 1,
        noslip_iterations: int = 0,
    ) -> None:
        super().__init__(scene, num_envs, device)
        self.mjcf = scene_mjcf(self.scene, noslip_iterations=noslip_iterations)
        fd, path = tempfile.mkstemp(suffix=".xml", prefix=f"tactile_{self.scene.name}_")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.mjcf)
            threads = num_threads if num_threads > 0 else default_num_threads()
            self.sim = _TactileBatch(path, num_envs, self.scene.substeps, (), threads)
        finally:
            os.unlink(path)
        m = self.sim.model
        names = list(FINGER_NAMES) + self.object_names
        self.sim.setup_readouts(np.array([m.body(n).id for n in names]))
        self._free_qpos = [m.jnt_qposadr[m.joint(self.object_names[i]).id] for i in self.free_objects]
        # The pad pairs as calibrated, for set_gel: stiffness scales k linearly (see scene_mjcf).
        self._pair_k0 = -m.pair_solref[:, 0].copy()
        self._pair_mu_obj = pair_object_friction(self.scene)
        self.reset()

    def _step_targets(self, targets: torch.Tensor) -> None:
        self.sim.step(targets.double().cpu().numpy())

    def _reset_envs(self, env_ids: torch.Tensor, joints: torch.Tensor, objects: torch.Tensor) -> None:
        m = self.sim.model
        k = len(env_ids)
        qpos = np.tile(self.sim.init_qpos, (k, 1))
        qpos[:, :8] = joints.double().cpu().numpy()
        obj = objects.double().cpu().numpy()
        for f, adr in enumerate(self._free_qpos):
            qpos[:, adr : adr + 7] = obj[:, f]
        self.sim.reset(env_ids.cpu().numpy(), qpos, np.zeros((k, m.nv)))

    def _set_gel(self, env_ids: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        k0, gel = self._pair_k0, self.scene.gripper.gel
        values = {name: v.double().cpu().numpy() for name, v in params.items()}
        for j, i in enumerate(env_ids.tolist()):
            if self.sim.models[i] is self.sim.model:  # this env gets its own model (as MujocoBatch's DR does)
                self.sim.models[i] = copy.copy(self.sim.model)
            model = self.sim.models[i]
            k = k0 * values["stiffness"][j] / gel.stiffness
            model.pair_solref[:, 0] = -k
            model.pair_solref[:, 1] = -2.0 * values["damping_ratio"][j] * np.sqrt(k)
            model.pair_friction[:, :2] = (values["friction"][j] * self._pair_mu_obj)[:, None]

    def _body_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        pose = np.concatenate([self.sim.body_xpos, self.sim.body_xquat], -1)
        return (
            torch.as_tensor(pose, dtype=torch.float32).to(self.device),
            torch.as_tensor(self.sim.body_vel, dtype=torch.float32).to(self.device),
        )

    def joint_pos(self) -> torch.Tensor:
        return torch.as_tensor(self.sim.qpos[:, :8], dtype=torch.float32).to(self.device)

    def pad_contact_force(self) -> torch.Tensor:
        """Total normal force (N) the engine applies on each pad (N, 2)."""
        m = self.sim.model
        pads = [m.geom(p).id for p in PAD_NAMES]
        out = np.zeros((self.num_envs, 2))
        wrench = np.zeros(6)
        for i, data in enumerate(self.sim.datas):
            for c in range(data.ncon):
                con = data.contact[c]
                for side, pad in enumerate(pads):
                    if pad in (con.geom1, con.geom2):
                        mujoco.mj_contactForce(self.sim.models[i], data, c, wrench)
                        out[i, side] += wrench[0]
        return torch.as_tensor(out, dtype=torch.float32).to(self.device)

    def close(self) -> None:
        self.sim.close()
