"""The tactile scene in PyBullet: URDF generated from the scene file, one DIRECT client per env.

:func:`scene_urdfs` writes the gripper and each object as URDF (Isaac Gym loads the same files).
The gripper is a fixed-base multibody: six Cartesian joints (slide x, y, z, hinge x, y, z), the
palm, two sliding fingers and a gel pad on each, fixed to its finger as its own link so that only
the pad gets the soft contact. Gel compliance is Bullet's contact stiffness and damping on the
pad links (``changeDynamics(contactStiffness=K, contactDamping=D)``): Bullet turns them into
ERP/CFM, and a static press of F newtons sinks F / K, the same as the calibrated MuJoCo pairs.
D = 2 zeta sqrt(K m) with m the finger's mass (the damping is approximate, the statics exact).

Batching: one ``pybullet`` DIRECT client per env (envs cannot touch each other and a reset is
local), stepped in a Python loop. The joint servos are the scene's PD laws applied as joint
torques every physics step, plus gravity compensation from Bullet's inverse dynamics, as
MuJoCo's position actuators with ``gravcomp`` do.

Friction: a pad-object pair uses gel friction x object friction (Bullet's product rule, which
the MuJoCo pairs copy). Bullet combines spinning friction as s0 * mu1 + s1 * mu0, so objects get
no spinning friction and the pads ``gel.torsional_friction``: a pad-object pair resists twisting
with ``gel.torsional_friction x object friction`` (m), as the MuJoCo pairs do, and objects among
themselves with none (MuJoCo's object geoms have no torsional or rolling friction either).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.config import ConfigError
from embodied.sim.physics.tactile_backend import TactileBackend
from embodied.sim.physics.tactile_scene import (
    JOINT_NAMES,
    GeomSpec,
    TactileScene,
    box_inertia,
    layout,
    load_scene,
    object_inertia,
    quat_to_mat,
)

CHAIN_MASS = 1e-3
"""Mass (kg) of each massless-in-MuJoCo link between the hand's joints (URDF needs one)."""


def _f(values: Any) -> str:
    return " ".join(f"{float(v):.9g}" for v in np.atleast_1d(np.asarray(values, dtype=float)))


def quat_to_rpy(q: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """URDF roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll)) of a wxyz quaternion."""
    m = quat_to_mat(q)
    pitch = math.asin(max(-1.0, min(1.0, -m[2, 0])))
    if abs(m[2, 0]) < 1 - 1e-9:
        roll, yaw = math.atan2(m[2, 1], m[2, 2]), math.atan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: put it all in yaw
        roll, yaw = 0.0, math.atan2(-m[0, 1], m[1, 1])
    return np.array([roll, pitch, yaw])


def _inertial(mass: float, diag: np.ndarray | None = None, full: np.ndarray | None = None, xyz: Any = (0, 0, 0)) -> str:
    i = np.diag(diag) if full is None else full
    return (
        f'<inertial><origin xyz="{_f(xyz)}" rpy="0 0 0"/><mass value="{mass:.9g}"/>'
        f'<inertia ixx="{i[0, 0]:.9g}" ixy="{i[0, 1]:.9g}" ixz="{i[0, 2]:.9g}" iyy="{i[1, 1]:.9g}" '
        f'iyz="{i[1, 2]:.9g}" izz="{i[2, 2]:.9g}"/></inertial>'
    )


def _geometry(g: GeomSpec | None, box: Any = None) -> str:
    if g is None:
        return f'<geometry><box size="{_f(2 * np.asarray(box))}"/></geometry>'
    if g.shape == "sphere":
        return f'<geometry><sphere radius="{g.radius:.9g}"/></geometry>'
    if g.shape == "box":
        return f'<geometry><box size="{_f(2 * np.asarray(g.half_extents))}"/></geometry>'
    return f'<geometry><{g.shape} radius="{g.radius:.9g}" length="{2 * g.half_length:.9g}"/></geometry>'


def scene_urdfs(scene: TactileScene | str | Path) -> dict[str, str]:
    """URDF texts: ``"gripper"`` and one per object name (object frames = the scene's body frames)."""
    scene = load_scene(scene)
    g, lay = scene.gripper, layout(scene)
    tiny = np.full(3, 1e-7)
    links = ['<link name="world"/>']
    joints = []
    parent = "world"
    for j, name in enumerate(JOINT_NAMES[:6]):
        child = "palm" if j == 5 else f"{name}_link"
        kind, limit = ("prismatic", 10.0) if j < 3 else ("revolute", math.pi)
        if child != "palm":
            links.append(f'<link name="{child}">{_inertial(CHAIN_MASS, tiny)}</link>')
        joints.append(
            f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
            f'<origin xyz="0 0 0" rpy="0 0 0"/><axis xyz="{_f(np.eye(3)[j % 3])}"/>'
            f'<limit lower="{-limit}" upper="{limit}" effort="1e6" velocity="1e3"/></joint>'
        )
        parent = child
    links.append(
        f'<link name="palm">{_inertial(g.palm_mass, box_inertia(g.palm_mass, g.palm_half_extents))}'
        f'<collision><origin xyz="0 0 0"/>{_geometry(None, g.palm_half_extents)}</collision></link>'
    )
    for side, tag in enumerate(("left", "right")):
        fi = box_inertia(g.finger_mass, g.finger_half_extents)
        links.append(
            f'<link name="finger_{tag}">{_inertial(g.finger_mass, fi)}'
            f'<collision><origin xyz="0 0 0"/>{_geometry(None, g.finger_half_extents)}</collision></link>'
        )
        joints.append(
            f'<joint name="finger_{tag}" type="prismatic"><parent link="palm"/><child link="finger_{tag}"/>'
            f'<origin xyz="{_f(lay.finger_pos[side])}" rpy="0 0 0"/><axis xyz="{_f(lay.finger_axis[side])}"/>'
            f'<limit lower="0" upper="{g.max_opening / 2:.9g}" effort="{g.finger_force_limit:.9g}" velocity="10"/></joint>'
        )
        links.append(
            f'<link name="pad_{tag}">{_inertial(1e-4, np.full(3, 1e-9))}'
            f'<collision><origin xyz="0 0 0"/>{_geometry(None, lay.pad_half_extents)}</collision></link>'
        )
        joints.append(
            f'<joint name="pad_{tag}_fixed" type="fixed"><parent link="finger_{tag}"/><child link="pad_{tag}"/>'
            f'<origin xyz="{_f(lay.pad_geom_pos[side])}" rpy="0 0 0"/></joint>'
        )
    out = {"gripper": '<?xml version="1.0"?>\n<robot name="gripper">\n' + "\n".join(links + joints) + "\n</robot>\n"}
    for obj in scene.objects:
        com, inertia = object_inertia(obj)
        cols = [
            f'<collision><origin xyz="{_f(geom.pos)}" rpy="{_f(quat_to_rpy(geom.quat))}"/>{_geometry(geom)}</collision>'
            for geom in obj.geoms
        ]
        out[obj.name] = (
            f'<?xml version="1.0"?>\n<robot name="{obj.name}">\n<link name="{obj.name}">'
            f"{_inertial(obj.mass, full=inertia, xyz=com)}\n" + "\n".join(cols) + "\n</link>\n</robot>\n"
        )
    return out


def write_urdfs(scene: TactileScene, folder: str | Path) -> dict[str, Path]:
    """Write :func:`scene_urdfs` into ``folder`` (``<name>.urdf``) and return the paths."""
    folder = Path(folder)
    paths = {}
    for name, text in scene_urdfs(scene).items():
        paths[name] = folder / f"{name}.urdf"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def _xyzw(q: Any) -> list[float]:
    return [float(q[1]), float(q[2]), float(q[3]), float(q[0])]


def _wxyz(q: Any) -> list[float]:
    return [q[3], q[0], q[1], q[2]]


class PybulletTactileBackend(TactileBackend):
    """The scene in PyBullet: one DIRECT client per env, PD joint torques each physics step."""

    name = "pybullet"

    def __init__(self, scene: TactileScene | str | Path, num_envs: int, device: str | torch.device = "cpu") -> None:
        super().__init__(scene, num_envs, device)
        import pybullet as p  # imported here so that the other backends never need it

        self.p = p
        s, g = self.scene, self.scene.gripper
        gel = g.gel
        kp = np.array([g.gains.position[0]] * 3 + [g.gains.rotation[0]] * 3 + [g.gains.finger[0]] * 2)
        kd = np.array([g.gains.position[1]] * 3 + [g.gains.rotation[1]] * 3 + [g.gains.finger[1]] * 2)
        self._kp, self._kd = kp, kd
        self._limit = np.array([np.inf] * 6 + [g.finger_force_limit] * 2)
        self._clients: list[int] = []
        self._objects: list[list[int]] = []
        with tempfile.TemporaryDirectory(prefix="tactile_urdf_") as tmp:
            paths = write_urdfs(s, tmp)
            for _ in range(num_envs):
                c = p.connect(p.DIRECT)
                self._clients.append(c)
                p.setGravity(*s.gravity, physicsClientId=c)
                p.setPhysicsEngineParameter(
                    fixedTimeStep=s.timestep, numSubSteps=0, numSolverIterations=50,
                    deterministicOverlappingPairs=1, physicsClientId=c,
                )  # fmt: skip
                if s.floor:
                    plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
                    p.createMultiBody(0, plane, physicsClientId=c)
                flags = p.URDF_USE_INERTIA_FROM_FILE | p.URDF_USE_IMPLICIT_CYLINDER  # true cylinders, not hulls
                hand = p.loadURDF(str(paths["gripper"]), useFixedBase=True, flags=flags, physicsClientId=c)
                objs = []
                for obj in s.objects:
                    body = p.loadURDF(
                        str(paths[obj.name]), obj.pos, _xyzw(obj.quat), useFixedBase=obj.fixed, flags=flags,
                        physicsClientId=c,
                    )  # fmt: skip
                    p.changeDynamics(
                        body, -1, lateralFriction=obj.friction, spinningFriction=0.0, rollingFriction=0.0,
                        linearDamping=0.0, angularDamping=0.0, physicsClientId=c,
                    )  # fmt: skip
                    objs.append(body)
                self._objects.append(objs)
        c0 = self._clients[0]
        self._hand = hand  # the same body id in every client (same load order)
        index = {
            p.getJointInfo(hand, j, physicsClientId=c0)[1].decode(): j
            for j in range(p.getNumJoints(hand, physicsClientId=c0))
        }
        self._joints = [index[n] for n in JOINT_NAMES]
        self._pads = [index["pad_left_fixed"], index["pad_right_fixed"]]
        self._fingers = self._joints[6:]
        m_eff = g.finger_mass
        for c in self._clients:
            p.setJointMotorControlArray(hand, self._joints, p.VELOCITY_CONTROL, forces=[0.0] * 8, physicsClientId=c)
            for link in range(-1, p.getNumJoints(hand, physicsClientId=c)):
                p.changeDynamics(hand, link, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0, physicsClientId=c)
            for pad in self._pads:
                p.changeDynamics(
                    hand, pad, contactStiffness=gel.stiffness,
                    contactDamping=2 * gel.damping_ratio * math.sqrt(gel.stiffness * m_eff),
                    lateralFriction=gel.friction,
                    spinningFriction=gel.torsional_friction, physicsClientId=c,
                )  # fmt: skip
        self._check_gains(c0)
        # Body frame = centre-of-mass frame composed with the inverse of the local inertial frame.
        self._inertial_inv = []
        for body in self._objects[0]:
            info = p.getDynamicsInfo(body, -1, physicsClientId=c0)
            self._inertial_inv.append(p.invertTransform(info[3], info[4]))
        self._targets = np.zeros((num_envs, 8))
        self._q = np.zeros((num_envs, 8))
        self.reset()

    def _check_gains(self, c: int) -> None:
        """Refuse gains that explicit PD torques cannot integrate stably at the scene's timestep."""
        q = self.targets_to_joints(self._home[None])[0].double().tolist()
        mass = np.diag(np.array(self.p.calculateMassMatrix(self._hand, q, physicsClientId=c)))
        ratio = self._kd * self.scene.timestep / mass
        freq = np.sqrt(self._kp / mass) * self.scene.timestep
        bad = np.flatnonzero((ratio > 1.8) | (freq > 1.8))
        if len(bad):
            j = int(bad[0])
            raise ConfigError(
                f"scene gains for joint {JOINT_NAMES[j]!r} are too stiff for PyBullet's explicit PD at timestep "
                f"{self.scene.timestep} s: kd*dt/inertia = {ratio[j]:.2f} and sqrt(kp/inertia)*dt = {freq[j]:.2f} "
                f"(inertia {mass[j]:.3g}); both must stay below 1.8: lower the gains or the timestep"
            )

    # ------------------------------------------------------------------ engine hooks
    def _step_targets(self, targets: torch.Tensor) -> None:
        p, hand = self.p, self._hand
        tgt = targets.double().cpu().numpy()
        for i, c in enumerate(self._clients):
            for _ in range(self.scene.substeps):
                states = p.getJointStates(hand, self._joints, physicsClientId=c)
                q = np.array([st[0] for st in states])
                qd = np.array([st[1] for st in states])
                gravity = p.calculateInverseDynamics(hand, q.tolist(), [0.0] * 8, [0.0] * 8, physicsClientId=c)
                tau = np.clip(self._kp * (tgt[i] - q) - self._kd * qd, -self._limit, self._limit) + np.asarray(gravity)
                p.setJointMotorControlArray(
                    hand, self._joints, p.TORQUE_CONTROL, forces=tau.tolist(), physicsClientId=c
                )
                p.stepSimulation(physicsClientId=c)

    def _reset_envs(self, env_ids: torch.Tensor, joints: torch.Tensor, objects: torch.Tensor) -> None:
        p, hand = self.p, self._hand
        q = joints.double().cpu().numpy()
        obj = objects.double().cpu().numpy()
        for k, i in enumerate(env_ids.tolist()):
            c = self._clients[i]
            for j, value in zip(self._joints, q[k], strict=True):
                p.resetJointState(hand, j, float(value), 0.0, physicsClientId=c)
            for f, o in enumerate(self.free_objects):
                body = self._objects[i][o]
                inv_pos, inv_orn = self._inertial_inv[o]
                local = p.invertTransform(inv_pos, inv_orn)
                pos, orn = p.multiplyTransforms(obj[k, f, :3].tolist(), _xyzw(obj[k, f, 3:]), *local)
                p.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=c)
                p.resetBaseVelocity(body, [0.0] * 3, [0.0] * 3, physicsClientId=c)
            for fixed in (o for o in range(len(self.scene.objects)) if o not in self.free_objects):
                spec = self.scene.objects[fixed]
                body = self._objects[i][fixed]
                local = p.invertTransform(*self._inertial_inv[fixed])
                pos, orn = p.multiplyTransforms(list(spec.pos), _xyzw(spec.quat), *local)
                p.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=c)

    def _set_gel(self, env_ids: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        m = self.scene.gripper.finger_mass
        values = {name: v.double().cpu().numpy() for name, v in params.items()}
        for j, i in enumerate(env_ids.tolist()):
            k = float(values["stiffness"][j])
            for pad in self._pads:
                self.p.changeDynamics(
                    self._hand, pad, contactStiffness=k,
                    contactDamping=2.0 * float(values["damping_ratio"][j]) * math.sqrt(k * m),
                    lateralFriction=float(values["friction"][j]), physicsClientId=self._clients[i],
                )  # fmt: skip

    def _body_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        p, hand = self.p, self._hand
        n, b = self.num_envs, 2 + len(self.scene.objects)
        pose = np.zeros((n, b, 7))
        vel = np.zeros((n, b, 6))
        for i, c in enumerate(self._clients):
            for k, st in enumerate(
                p.getLinkStates(
                    hand, self._fingers, computeLinkVelocity=1, computeForwardKinematics=1, physicsClientId=c
                )
            ):
                origin, com, w = np.array(st[4]), np.array(st[0]), np.array(st[7])
                pose[i, k] = [*origin, *_wxyz(st[5])]
                vel[i, k] = [*(np.array(st[6]) + np.cross(w, origin - com)), *w]
            for o, body in enumerate(self._objects[i]):
                com, com_orn = p.getBasePositionAndOrientation(body, physicsClientId=c)
                pos, orn = p.multiplyTransforms(com, com_orn, *self._inertial_inv[o])
                lin, ang = p.getBaseVelocity(body, physicsClientId=c)
                w = np.array(ang)
                pose[i, 2 + o] = [*pos, *_wxyz(orn)]
                vel[i, 2 + o] = [*(np.array(lin) + np.cross(w, np.array(pos) - np.array(com))), *w]
        # Keep quaternions in one hemisphere (w >= 0), as MuJoCo reports them after normalising.
        pose[..., 3:] *= np.where(pose[..., 3:4] < 0, -1.0, 1.0)
        return (
            torch.as_tensor(pose, dtype=torch.float32).to(self.device),
            torch.as_tensor(vel, dtype=torch.float32).to(self.device),
        )

    def joint_pos(self) -> torch.Tensor:
        p = self.p
        for i, c in enumerate(self._clients):
            self._q[i] = [st[0] for st in p.getJointStates(self._hand, self._joints, physicsClientId=c)]
        return torch.as_tensor(self._q, dtype=torch.float32).to(self.device)

    def pad_contact_force(self) -> torch.Tensor:
        """Total normal force (N) the engine applies on each pad (N, 2)."""
        out = np.zeros((self.num_envs, 2))
        for i, c in enumerate(self._clients):
            for side, pad in enumerate(self._pads):
                contacts = self.p.getContactPoints(bodyA=self._hand, linkIndexA=pad, physicsClientId=c)
                out[i, side] = sum(ct[9] for ct in contacts)
        return torch.as_tensor(out, dtype=torch.float32).to(self.device)

    def close(self) -> None:
        for c in self._clients:
            try:
                self.p.disconnect(physicsClientId=c)
            except self.p.error:  # already gone
                pass
        self._clients = []
