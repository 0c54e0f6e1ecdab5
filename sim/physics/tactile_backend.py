"""The interface every tactile physics backend implements, and the pose maths they share.

:class:`TactileBackend` is a batch of ``num_envs`` copies of one
:class:`~embodied.sim.physics.tactile_scene.TactileScene` in one engine. An engine implements
four hooks (step towards joint targets, reset, body states, joint positions); everything the
tactile sensor reads is derived here from the fingers' and objects' body frames, identically for
every engine: pad frames (the contract's sensor frame) and the frames of the sensed geoms, with
velocities carried from each body's origin to the frame's origin (v + w x r).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.sim.physics.tactile_scene import TactileScene, layout, load_scene

NUM_PADS = 2
TARGET_DIM = 7
"""A target row: hand position xyz (m), hand angles rx, ry, rz (rad), opening between the gels (m)."""
GEL_PARAMS = ("stiffness", "damping_ratio", "friction")
"""Gel contact parameters that :meth:`TactileBackend.set_gel` changes per env."""


# ---------------------------------------------------------------------------------------- pose maths (torch)
def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions (..., 4)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors (..., 3) by wxyz quaternions (..., 4)."""
    w, xyz = q[..., :1], q[..., 1:]
    t = 2.0 * torch.linalg.cross(xyz, v, dim=-1)
    return v + w * t + torch.linalg.cross(xyz, t, dim=-1)


def carry_frames(
    body_pose: torch.Tensor, body_vel: torch.Tensor, body_index: torch.Tensor, local: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Poses (N, K, 7) and velocities (N, K, 6) of frames fixed on bodies.

    ``body_pose`` (N, B, 7) and ``body_vel`` (N, B, 6) (linear velocity of the body origin +
    angular, world) of the bodies; frame k sits on body ``body_index[k]`` at ``local[k]`` (pos +
    wxyz). A frame's linear velocity is its body's carried to the frame origin: v + w x r.
    """
    pose = body_pose[:, body_index]
    vel = body_vel[:, body_index]
    r = quat_rotate(pose[..., 3:], local[..., :3].expand_as(pose[..., :3]))
    quat = quat_mul(pose[..., 3:], local[..., 3:].expand_as(pose[..., 3:]))
    out_pose = torch.cat([pose[..., :3] + r, quat], -1)
    out_vel = torch.cat([vel[..., :3] + torch.linalg.cross(vel[..., 3:], r, dim=-1), vel[..., 3:]], -1)
    return out_pose, out_vel


def euler_xyz_to_quat(angles: torch.Tensor) -> torch.Tensor:
    """wxyz quaternion of R = Rx(a) Ry(b) Rz(c) (the hand's hinge chain), angles (..., 3)."""
    half = angles * 0.5
    c, s = torch.cos(half), torch.sin(half)
    zero = torch.zeros_like(c[..., 0])
    qx = torch.stack([c[..., 0], s[..., 0], zero, zero], -1)
    qy = torch.stack([c[..., 1], zero, s[..., 1], zero], -1)
    qz = torch.stack([c[..., 2], zero, zero, s[..., 2]], -1)
    return quat_mul(quat_mul(qx, qy), qz)


# ---------------------------------------------------------------------------------------- backend interface
class TactileBackend(ABC):
    """A batch of ``num_envs`` copies of one :class:`TactileScene` in one physics engine.

    Subclasses implement ``_step_targets``, ``_reset_envs`` and ``_body_states``; everything the
    tactile sensor reads (pad and object frames) is derived here, identically for every engine.
    Readouts are float32 torch tensors on :attr:`device`.
    """

    name: str = "?"

    def __init__(self, scene: TactileScene | str | Path, num_envs: int, device: str | torch.device = "cpu") -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"{self.name} tactile backend: num_envs must be an int >= 1, got {num_envs!r}")
        self.scene = load_scene(scene)
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.layout = layout(self.scene)
        self.dt = self.scene.dt
        """Simulated seconds per :meth:`step`."""
        self.object_names = [o.name for o in self.scene.objects]
        self.free_objects = [i for i, o in enumerate(self.scene.objects) if not o.fixed]
        """Indices (into ``scene.objects``) of the free objects, the ones :meth:`reset` can place."""
        # Frames fixed on bodies; bodies are ordered (left finger, right finger, objects...).
        sensed = self.scene.sensed
        index = [0, 1] + [2 + i for i, _ in sensed]
        local = list(self.layout.pad_frame) + [np.concatenate([g.pos, g.quat]) for _, g in sensed]
        self._frame_body = torch.tensor(index, device=self.device)
        self._frame_local = torch.tensor(np.array(local), dtype=torch.float32, device=self.device)
        self._home = torch.tensor(self.scene.gripper.home, dtype=torch.float32, device=self.device)
        self._object_home = torch.tensor(
            [list(o.pos) + list(o.quat) for o in self.scene.objects], dtype=torch.float32, device=self.device
        ).reshape(len(self.scene.objects), 7)
        self._frames: tuple[torch.Tensor, torch.Tensor] | None = None
        gel = self.scene.gripper.gel
        self.gel = {name: torch.full((num_envs,), float(getattr(gel, name)), device=self.device) for name in GEL_PARAMS}
        """Per-env gel contact parameters now in force (name -> (N,)); change them with :meth:`set_gel`."""

    # ------------------------------------------------------------------ what engines implement
    @abstractmethod
    def _step_targets(self, targets: torch.Tensor) -> None:
        """Advance every env by ``scene.substeps`` physics steps towards joint targets (N, 8)."""

    @abstractmethod
    def _reset_envs(self, env_ids: torch.Tensor, joints: torch.Tensor, objects: torch.Tensor) -> None:
        """Put envs ``env_ids`` at rest with joint positions (k, 8) and free-object poses (k, F, 7)."""

    @abstractmethod
    def _body_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Body poses (N, 2 + O, 7) and velocities (N, 2 + O, 6) of (left finger, right finger, objects)."""

    def _set_gel(self, env_ids: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        """Apply per-env gel parameters (each (k,)) to envs ``env_ids`` in the engine."""
        raise NotImplementedError(f"the {self.name!r} tactile backend cannot change gel parameters per env")

    @abstractmethod
    def joint_pos(self) -> torch.Tensor:
        """Gripper joint positions (N, 8) in :data:`JOINT_NAMES` order."""

    def pad_contact_force(self) -> torch.Tensor:
        """Total normal force (N) the engine applies on each pad (N, 2); MuJoCo and PyBullet report it."""
        raise NotImplementedError(f"the {self.name!r} tactile backend does not report pad contact forces")

    def close(self) -> None:  # noqa: B027  (engines without resources to free keep this)
        """Free engine resources."""

    # ------------------------------------------------------------------ the public interface
    def step(self, targets: torch.Tensor) -> None:
        """Drive the gripper towards ``targets`` (N, 7) = [x, y, z, rx, ry, rz, opening] for one
        control period (``dt`` seconds). Openings are clipped to [0, max_opening]."""
        t = self._check_targets(targets, "targets", self.num_envs)
        self._step_targets(self.targets_to_joints(t))
        self._frames = None

    def reset(
        self,
        env_ids: torch.Tensor | None = None,
        hand: torch.Tensor | None = None,
        object_pose: torch.Tensor | None = None,
    ) -> None:
        """Reset envs ``env_ids`` (all when None) to rest: the gripper at ``hand`` (k, 7) target
        rows (default the scene's home) and the free objects at ``object_pose`` (k, F, 7) (default
        their scene poses; F = ``len(free_objects)``)."""
        ids = self._check_env_ids(env_ids)
        k = len(ids)
        hand_t = self._home.expand(k, TARGET_DIM) if hand is None else self._check_targets(hand, "hand", k)
        free = self._object_home[self.free_objects]
        if object_pose is None:
            obj = free.expand(k, *free.shape)
        else:
            obj = torch.as_tensor(object_pose, dtype=torch.float32, device=self.device)
            if obj.shape != (k, len(self.free_objects), 7) or not torch.isfinite(obj).all():
                raise ValueError(
                    f"{self.name} tactile backend: object_pose must be finite with shape {(k, len(self.free_objects), 7)} "
                    f"(env, free object, pos + wxyz), got {tuple(obj.shape)}"
                )
            obj = torch.cat([obj[..., :3], obj[..., 3:] / obj[..., 3:].norm(dim=-1, keepdim=True).clamp_min(1e-9)], -1)
        self._reset_envs(ids, self.targets_to_joints(hand_t), obj)
        self._frames = None

    def set_gel(
        self,
        env_ids: torch.Tensor | None = None,
        stiffness: torch.Tensor | float | None = None,
        damping_ratio: torch.Tensor | float | None = None,
        friction: torch.Tensor | float | None = None,
    ) -> None:
        """Change the gel's contact stiffness (N/m per contact point), damping ratio and friction of
        envs ``env_ids`` (all when None), e.g. for domain randomisation; each value a float or a
        (k,) tensor, None keeps it. Takes effect from the next step."""
        ids = self._check_env_ids(env_ids)
        lows = {"stiffness": 0.0, "damping_ratio": 0.0, "friction": 0.0}
        for name, value in (("stiffness", stiffness), ("damping_ratio", damping_ratio), ("friction", friction)):
            if value is None:
                continue
            v = torch.as_tensor(value, dtype=torch.float32, device=self.device)
            if v.dim() == 0:
                v = v.expand(len(ids))
            if v.shape != (len(ids),) or not torch.isfinite(v).all() or (v < lows[name]).any():
                raise ValueError(
                    f"{self.name} tactile backend: gel {name} must be a float or a ({len(ids)},) tensor of finite "
                    f"values >= {lows[name]}{' (and > 0)' if name == 'stiffness' else ''}, got {value!r}"
                )
            if name == "stiffness" and (v <= 0).any():
                raise ValueError(f"{self.name} tactile backend: gel stiffness must be > 0 N/m, got {value!r}")
            self.gel[name][ids] = v
        self._set_gel(ids, {name: values[ids] for name, values in self.gel.items()})

    def targets_to_joints(self, targets: torch.Tensor) -> torch.Tensor:
        """Joint positions (N, 8) for target rows (N, 7): the fingers close symmetrically."""
        o_max = self.scene.gripper.max_opening
        closing = 0.5 * (o_max - targets[:, 6:7].clamp(0.0, o_max))
        return torch.cat([targets[:, :6], closing, closing], -1)

    def hand_state(self) -> torch.Tensor:
        """The current state as target rows (N, 7): hand position, angles and the gel opening."""
        q = self.joint_pos()
        return torch.cat([q[:, :6], self.scene.gripper.max_opening - q[:, 6:7] - q[:, 7:8]], -1)

    def body_pose(self) -> torch.Tensor:
        """(N, 2 + O, 7) poses of the left finger, the right finger and each object's body frame."""
        return self._body_states()[0]

    def pad_pose(self) -> torch.Tensor:
        """Sensor frames (N, 2, 7): left pad, right pad (contract pad frame, wxyz)."""
        return self._frame_states()[0][:, :NUM_PADS]

    def pad_vel(self) -> torch.Tensor:
        """Sensor frame velocities (N, 2, 6): linear (of the gel surface centre) + angular, world."""
        return self._frame_states()[1][:, :NUM_PADS]

    def obj_pose(self) -> torch.Tensor:
        """Frames of the sensed geoms (N, O, 7), in :attr:`tactile_shapes` order."""
        return self._frame_states()[0][:, NUM_PADS:]

    def obj_vel(self) -> torch.Tensor:
        """Velocities of the sensed geoms' frames (N, O, 6)."""
        return self._frame_states()[1][:, NUM_PADS:]

    @property
    def tactile_shapes(self) -> list[Any]:
        """``embodied.sim.tactile`` shapes of the sensed geoms, matching :meth:`obj_pose`."""
        from embodied.sim.tactile import Box, Capsule, Cylinder, Sphere

        out: list[Any] = []
        for _, g in self.scene.sensed:
            if g.shape == "sphere":
                out.append(Sphere(g.radius))
            elif g.shape == "box":
                out.append(Box(tuple(g.half_extents)))
            elif g.shape == "cylinder":
                out.append(Cylinder(g.radius, g.half_length))
            else:
                out.append(Capsule(g.radius, g.half_length))
        return out

    # ------------------------------------------------------------------ helpers
    def _frame_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._frames is None:
            pose, vel = self._body_states()
            self._frames = carry_frames(pose, vel, self._frame_body, self._frame_local)
        return self._frames

    def _check_targets(self, targets: Any, what: str, rows: int) -> torch.Tensor:
        t = torch.as_tensor(targets, dtype=torch.float32, device=self.device)
        if t.shape != (rows, TARGET_DIM):
            raise ValueError(
                f"{self.name} tactile backend: {what} must have shape ({rows}, {TARGET_DIM}) "
                f"= [x, y, z, rx, ry, rz, opening] per env, got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).any(-1).nonzero().flatten().tolist()
            raise ValueError(f"{self.name} tactile backend: {what} contain NaN or inf (envs {bad})")
        return t

    def _check_env_ids(self, env_ids: Any) -> torch.Tensor:
        if env_ids is None:
            return torch.arange(self.num_envs, device=self.device)
        ids = torch.as_tensor(env_ids, device=self.device).flatten()
        if ids.dtype == torch.bool:
            if ids.numel() != self.num_envs:
                raise ValueError(f"{self.name} tactile backend: a boolean env mask needs {self.num_envs} entries")
            ids = ids.nonzero().flatten()
        if ids.is_floating_point() or (len(ids) and (ids.min() < 0 or ids.max() >= self.num_envs)):
            raise ValueError(
                f"{self.name} tactile backend: env_ids must be integers in [0, {self.num_envs}), got {ids.tolist()}"
            )
        return ids.long()

    def __enter__(self) -> TactileBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
