"""One backend-neutral description of a tactile gripper scene, and the backend interface.

A scene is a JSON file in ``assets/tactile_scenes/`` (``load_scene("pinch_sphere")`` or a path).
Every physics backend builds the same bodies from it: MuJoCo and MuJoCo Warp from generated
MJCF (:mod:`.tactile_mujoco`), PyBullet and Isaac Gym from generated URDF
(:mod:`.tactile_pybullet`). Nothing else describes the geometry, so the backends cannot drift.

The file format (keys as in the dataclasses below; every key optional, unknown keys are errors)::

    {"format": "embodied/tactile-scene", "version": 1, "name": "pinch_sphere",
     "timestep": 0.002, "substeps": 5, "gravity": [0, 0, -9.81],
     "gripper": {"home": [x, y, z, rx, ry, rz, opening], "max_opening": 0.06,
                 "palm_half_extents": [...], "finger_half_extents": [...], "palm_mass": ..., "finger_mass": ...,
                 "pad": {"width": 0.025, "length": 0.02, "thickness": 0.003, "offset": 0.0},
                 "gel": {"stiffness": 5000, "damping_ratio": 0.7, "friction": 1.0, ...},
                 "gains": {"position": [kp, kd], "rotation": [kp, kd], "finger": [kp, kd]}},
     "objects": [{"name": "ball", "fixed": true, "pos": [...], "quat": [1, 0, 0, 0], "mass": 0.05,
                  "geoms": [{"shape": "sphere", "radius": 0.012}]}],
     "floor": false}

The gripper: a floating palm driven by six Cartesian joints (slide x, y, z in the world, then
hinges about x, y, z: ``R = Rx(rx) Ry(ry) Rz(rz)``) and two fingers sliding along the palm's x
axis, each with a box gel pad on its inner face. Every joint is a PD (impedance) servo with the
scene's gains and gravity compensation, so a target acts like an impedance-controlled end
effector. A target row is ``[x, y, z, rx, ry, rz, opening]`` (m, rad; ``opening`` = the gap
between the two gel surfaces). The gel's compliance is the engine's soft contact, calibrated to
``gel.stiffness`` newtons per metre per contact point in every engine.

Pad frames follow the tactile contract: origin at the centre of the undeformed gel surface,
+z the gel's outward normal (towards the other finger), +y along the pad's length towards the
fingertip, +x = y cross z along its width (the left pad's +x is the palm's +y, the right pad's
is the palm's -y). Sensed objects: each geom of an object with ``sensed`` true is one tactile
shape, with its own frame (its pose and velocity are the body's carried to the geom's origin).
"""

from __future__ import annotations

import dataclasses
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from embodied.config import ConfigError, apply_overrides

SCENES_DIR = Path(__file__).resolve().parents[2] / "assets" / "tactile_scenes"
"""Shipped scene files (``<name>.json``)."""
SCENE_FORMAT = "embodied/tactile-scene"
SCENE_VERSION = 1

NUM_PADS = 2
TARGET_DIM = 7
"""A target row: hand position xyz (m), hand angles rx, ry, rz (rad), opening between the gels (m)."""
GEL_PARAMS = ("stiffness", "damping_ratio", "friction")
"""Gel contact parameters that :meth:`TactileBackend.set_gel` changes per env."""
JOINT_NAMES = ("hand_x", "hand_y", "hand_z", "hand_rx", "hand_ry", "hand_rz", "finger_left", "finger_right")
"""The gripper's joints, in the order of :meth:`TactileBackend.joint_pos` (fingers: inward slide, m)."""

ShapeName = Literal["sphere", "box", "cylinder", "capsule"]


# ---------------------------------------------------------------------------------------- the format
def _check_finite(cfg: Any, name: str) -> None:
    value = getattr(cfg, name)
    values = value if isinstance(value, tuple) else (value,)
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"scene {type(cfg).__name__}.{name} must be finite, got {value!r}")


def _check_positive(cfg: Any, name: str, unit: str) -> None:
    value = getattr(cfg, name)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"scene {type(cfg).__name__}.{name} must be a finite number > 0 {unit}, got {value!r}")


def _check_range(cfg: Any, name: str, lo: float, hi: float) -> None:
    value = getattr(cfg, name)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"scene {type(cfg).__name__}.{name} must be in [{lo}, {hi}], got {value!r}")


def _unit_quat(q: tuple[float, ...], what: str) -> tuple[float, float, float, float]:
    n = math.sqrt(sum(v * v for v in q))
    if not math.isfinite(n) or n < 1e-6:
        raise ConfigError(f"scene {what} must be a non-zero finite quaternion (w, x, y, z), got {q!r}")
    return tuple(v / n for v in q)  # type: ignore[return-value]


@dataclass(frozen=True)
class GelCfg:
    """The elastomer's contact behaviour, as the physics engine sees it."""

    stiffness: float = 5000.0
    """Normal stiffness (N/m) of one contact point: a static press of F newtons sinks F / stiffness."""
    damping_ratio: float = 0.7
    """Damping of the contact spring relative to critical for the contact's effective mass."""
    friction: float = 1.0
    """Sliding friction coefficient; a pad-object pair uses gel friction x object friction (Bullet's rule)."""
    torsional_friction: float = 0.002
    """Torsional (spinning) friction length (m), so a single contact patch resists twisting a held peg."""
    impedance: float = 0.9
    """MuJoCo's constraint impedance d (solimp dmin = dmax); the stiffness calibration accounts for it."""

    def __post_init__(self) -> None:
        _check_positive(self, "stiffness", "N/m")
        _check_range(self, "damping_ratio", 0.0, 10.0)
        _check_range(self, "friction", 0.0, 10.0)
        _check_range(self, "torsional_friction", 0.0, 0.1)
        _check_range(self, "impedance", 0.01, 0.99)


@dataclass(frozen=True)
class PadCfg:
    """A gel pad on a finger's inner face (one per finger, same size)."""

    width: float = 0.025
    """Along the pad's x (the palm's y), m; the tactile sensor's ``pad_size[0]``."""
    length: float = 0.02
    """Along the pad's y (towards the fingertip), m; the tactile sensor's ``pad_size[1]``."""
    thickness: float = 0.003
    """Gel thickness (m); an object pressing deeper reaches the rigid finger."""
    offset: float = 0.0
    """Pad centre along the finger, from the finger's centre towards the palm (m; negative = towards the tip)."""

    def __post_init__(self) -> None:
        for name in ("width", "length", "thickness"):
            _check_positive(self, name, "m")
        _check_finite(self, "offset")


@dataclass(frozen=True)
class GainsCfg:
    """PD gains (stiffness, damping) of the gripper's servos.

    PyBullet applies them as explicit joint torques, which is stable only while
    kd * timestep / inertia < 2 and sqrt(kp / inertia) * timestep < 2 for every joint (inertia:
    the joint's diagonal of the mass matrix; the hand's lightest axis, roll, is ~1e-4 kg m^2).
    The PyBullet backend checks the damping condition at build time."""

    position: tuple[float, float] = (2000.0, 60.0)
    """Hand slides: N/m, N s/m."""
    rotation: tuple[float, float] = (5.0, 0.04)
    """Hand hinges: N m/rad, N m s/rad."""
    finger: tuple[float, float] = (400.0, 6.0)
    """Each finger slide: N/m, N s/m; squeeze force = finger kp x (commanded - actual closing)."""

    def __post_init__(self) -> None:
        for name in ("position", "rotation", "finger"):
            kp, kd = getattr(self, name)
            if not (math.isfinite(kp) and math.isfinite(kd) and kp > 0 and kd >= 0):
                raise ConfigError(f"scene gains.{name} must be (kp > 0, kd >= 0), got {(kp, kd)!r}")


@dataclass(frozen=True)
class GripperCfg:
    """The floating parallel gripper."""

    home: tuple[float, float, float, float, float, float, float] = (0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.05)
    """Start state as a target row: x, y, z (m), rx, ry, rz (rad), opening (m)."""
    max_opening: float = 0.06
    """Widest gap between the two gel surfaces (m); fingers close from there to 0."""
    palm_half_extents: tuple[float, float, float] = (0.05, 0.015, 0.01)
    palm_mass: float = 0.3
    finger_half_extents: tuple[float, float, float] = (0.004, 0.0135, 0.015)
    """Half sizes of a finger box (across, along the palm's y, along the finger), m."""
    finger_mass: float = 0.05
    finger_force_limit: float = 30.0
    """Largest force (N) a finger servo exerts."""
    pad: PadCfg = field(default_factory=PadCfg)
    gel: GelCfg = field(default_factory=GelCfg)
    gains: GainsCfg = field(default_factory=GainsCfg)

    def __post_init__(self) -> None:
        for name in ("max_opening", "palm_mass", "finger_mass", "finger_force_limit"):
            _check_positive(self, name, "")
        for name in ("palm_half_extents", "finger_half_extents"):
            if min(getattr(self, name)) <= 0 or not all(map(math.isfinite, getattr(self, name))):
                raise ConfigError(
                    f"scene gripper.{name} must be three finite sizes > 0 (m), got {getattr(self, name)!r}"
                )
        if not all(map(math.isfinite, self.home)):
            raise ConfigError(f"scene gripper.home must be finite, got {self.home!r}")
        if not 0.0 <= self.home[6] <= self.max_opening:
            raise ConfigError(
                f"scene gripper.home opening must be in [0, max_opening={self.max_opening}], got {self.home[6]}"
            )
        _, fy, fz = self.finger_half_extents
        if self.pad.width > 2 * fy + 1e-9 or abs(self.pad.offset) + self.pad.length / 2 > fz + 1e-9:
            raise ConfigError(
                f"scene gripper.pad ({self.pad.width} x {self.pad.length} m, offset {self.pad.offset}) does not fit "
                f"on the finger's face ({2 * fy} x {2 * fz} m): enlarge finger_half_extents or shrink the pad"
            )
        if (
            self.max_opening / 2 + self.pad.thickness + 2 * self.finger_half_extents[0]
            > self.palm_half_extents[0] + 0.03
        ):
            raise ConfigError("scene gripper.max_opening is too wide for the palm: widen palm_half_extents[0]")


@dataclass(frozen=True)
class GeomSpec:
    """One collision shape of an object, in the object's body frame."""

    shape: ShapeName = "sphere"
    radius: float = 0.01
    """sphere, cylinder, capsule (m)."""
    half_extents: tuple[float, float, float] = (0.01, 0.01, 0.01)
    """box (m)."""
    half_length: float = 0.01
    """cylinder, capsule: half the axis segment along the geom's z (m)."""
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    """wxyz."""
    sensed: bool = True
    """Whether the tactile sensors see this geom (each sensed geom is one tactile shape)."""

    def __post_init__(self) -> None:
        if self.shape not in ("sphere", "box", "cylinder", "capsule"):
            raise ConfigError(f"scene geom shape must be one of sphere, box, cylinder, capsule; got {self.shape!r}")
        if not (self.radius > 0 and self.half_length > 0 and min(self.half_extents) > 0):
            raise ConfigError(f"scene geom sizes must be > 0, got {self}")
        object.__setattr__(self, "quat", _unit_quat(self.quat, "geom quat"))
        _check_finite(self, "pos")


@dataclass(frozen=True)
class ObjectSpec:
    """A rigid object: free (6-DoF, under gravity) or fixed to the world."""

    name: str = "object"
    fixed: bool = False
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    """Start pose of the body frame (wxyz)."""
    mass: float = 0.05
    """kg, spread over the geoms by volume."""
    friction: float = 1.0
    geoms: tuple[GeomSpec, ...] = (GeomSpec(),)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"scene object name must be an identifier, got {self.name!r}")
        if not self.geoms:
            raise ConfigError(f"scene object {self.name!r} needs at least one geom")
        _check_positive(self, "mass", "kg")
        _check_range(self, "friction", 0.0, 10.0)
        _check_finite(self, "pos")
        object.__setattr__(self, "quat", _unit_quat(self.quat, f"object {self.name!r} quat"))


@dataclass(frozen=True)
class TactileScene:
    """A gripper with two gel pads and the objects it touches (see the module docstring)."""

    format: str = SCENE_FORMAT
    version: int = SCENE_VERSION
    name: str = "scene"
    description: str = ""
    timestep: float = 0.002
    """Physics step (s)."""
    substeps: int = 5
    """Physics steps per backend ``step`` (one control period = timestep x substeps)."""
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)
    gripper: GripperCfg = field(default_factory=GripperCfg)
    objects: tuple[ObjectSpec, ...] = ()
    floor: bool = False
    """A ground plane at z = 0 (not sensed)."""

    def __post_init__(self) -> None:
        if self.format != SCENE_FORMAT or self.version != SCENE_VERSION:
            raise ConfigError(
                f"scene format {self.format!r} version {self.version} is not supported; "
                f"expected {SCENE_FORMAT!r} version {SCENE_VERSION}"
            )
        if not 1e-5 <= self.timestep <= 0.02:
            raise ConfigError(f"scene timestep must be in [1e-5, 0.02] s, got {self.timestep!r}")
        if not 1 <= self.substeps <= 1000:
            raise ConfigError(f"scene substeps must be in [1, 1000], got {self.substeps!r}")
        names = [o.name for o in self.objects]
        if len(set(names)) != len(names):
            raise ConfigError(f"scene object names must be unique, got {names}")

    @property
    def dt(self) -> float:
        """Seconds of simulated time per backend step."""
        return self.timestep * self.substeps

    @property
    def sensed(self) -> list[tuple[int, GeomSpec]]:
        """(object index, geom) of every sensed geom, in tactile-shape order."""
        return [(i, g) for i, o in enumerate(self.objects) for g in o.geoms if g.sensed]


# ---------------------------------------------------------------------------------------- loading
def list_scenes() -> list[str]:
    """Names of the shipped scenes."""
    return sorted(p.stem for p in SCENES_DIR.glob("*.json"))


def load_scene(scene: str | Path | dict[str, Any] | TactileScene, **overrides: Any) -> TactileScene:
    """A validated scene from a shipped name, a JSON path, a mapping or a scene; ``overrides`` are
    dotted keys applied on top (``load_scene("pinch_sphere", **{"gripper.gel.stiffness": 3000.0})``)."""
    if isinstance(scene, TactileScene):
        data: TactileScene | dict[str, Any] = scene
    elif isinstance(scene, dict):
        data = scene
    else:
        path = Path(scene)
        if path.suffix != ".json":
            path = SCENES_DIR / f"{scene}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"tactile scene {str(scene)!r} not found (looked at {path}); shipped: {list_scenes()}"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"tactile scene {path} is not valid JSON: {err}") from None
    out = data if isinstance(data, TactileScene) else apply_overrides(TactileScene(), data)
    return apply_overrides(out, overrides) if overrides else out


def scene_to_dict(scene: TactileScene) -> dict[str, Any]:
    """The JSON-ready mapping of a scene (``load_scene`` of it gives the scene back)."""
    return json.loads(json.dumps(dataclasses.asdict(scene)))


# ---------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Layout:
    """Local frames derived from a scene, used by every backend (numpy float64)."""

    finger_pos: np.ndarray
    """(2, 3) finger body origins in the palm frame at zero closing (left, right)."""
    finger_axis: np.ndarray
    """(2, 3) inward slide axis of each finger, palm frame."""
    pad_geom_pos: np.ndarray
    """(2, 3) pad box centre in its finger's frame."""
    pad_half_extents: tuple[float, float, float]
    """Pad box half sizes along the finger's x, y, z."""
    pad_frame: np.ndarray
    """(2, 7) sensor (pad) frame in its finger's frame: gel surface centre + wxyz."""


def layout(scene: TactileScene) -> Layout:
    g = scene.gripper
    fx, _, fz = g.finger_half_extents
    t = g.pad.thickness
    reach = g.max_opening / 2 + t + fx  # finger centre to the palm's centre plane at full opening
    drop = -(g.palm_half_extents[2] + fz)
    finger_pos = np.array([[reach, 0.0, drop], [-reach, 0.0, drop]])
    finger_axis = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    pad_geom = np.array([[-(fx + t / 2), 0.0, g.pad.offset], [fx + t / 2, 0.0, g.pad.offset]])
    # Columns: pad x, y (towards the fingertip, -z of the finger), z (outward, towards the other finger).
    rot_left = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    rot_right = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    frames = []
    for side, rot in ((-1.0, rot_left), (1.0, rot_right)):
        frames.append(np.concatenate([[side * (fx + t), 0.0, g.pad.offset], mat_to_quat(rot)]))
    return Layout(finger_pos, finger_axis, pad_geom, (t / 2, g.pad.width / 2, g.pad.length / 2), np.array(frames))


def mat_to_quat(m: np.ndarray) -> np.ndarray:
    """wxyz quaternion of a proper rotation matrix (Shepperd's method)."""
    tr = np.trace(m)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k]) * 2
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)


def quat_to_mat(q: np.ndarray | tuple[float, ...]) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def box_inertia(mass: float, half: tuple[float, float, float]) -> np.ndarray:
    """Diagonal inertia (kg m^2) of a solid box about its centre."""
    x, y, z = half
    return mass / 3.0 * np.array([y * y + z * z, x * x + z * z, x * x + y * y])


def _geom_volume_inertia(g: GeomSpec) -> tuple[float, np.ndarray]:
    """Volume and the unit-density inertia tensor about the geom's centre, in the geom frame."""
    r, h = g.radius, g.half_length
    if g.shape == "sphere":
        v = 4 / 3 * math.pi * r**3
        return v, np.eye(3) * 0.4 * v * r * r
    if g.shape == "box":
        v = 8 * float(np.prod(g.half_extents))
        return v, np.diag(box_inertia(v, g.half_extents))
    vc = math.pi * r * r * 2 * h  # the cylinder part
    ixx = vc * (3 * r * r + 4 * h * h) / 12
    izz = vc * r * r / 2
    if g.shape == "cylinder":
        return vc, np.diag([ixx, ixx, izz])
    vh = 2 / 3 * math.pi * r**3  # each hemisphere cap of a capsule
    ixx += 2 * vh * (0.4 * r * r + h * h + 0.75 * h * r)
    izz += 2 * vh * 0.4 * r * r
    return vc + 2 * vh, np.diag([ixx, ixx, izz])


def object_inertia(obj: ObjectSpec) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass (3,) in the body frame and the full inertia tensor (3, 3) about it, uniform density."""
    parts = [_geom_volume_inertia(g) for g in obj.geoms]
    volume = sum(v for v, _ in parts)
    rho = obj.mass / volume
    com = sum(v * np.asarray(g.pos) for (v, _), g in zip(parts, obj.geoms, strict=True)) / volume
    inertia = np.zeros((3, 3))
    for (v, i_local), g in zip(parts, obj.geoms, strict=True):
        rot = quat_to_mat(g.quat)
        d = np.asarray(g.pos) - com
        inertia += rho * (rot @ i_local @ rot.T + v * (d @ d * np.eye(3) - np.outer(d, d)))
    return com, inertia


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
