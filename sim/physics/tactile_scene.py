"""One backend-neutral description of a tactile gripper scene (the interface: :mod:`.tactile_backend`).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embodied.config import ConfigError, apply_overrides

SCENES_DIR = Path(__file__).resolve().parents[2] / "assets" / "tactile_scenes"
"""Shipped scene files (``<name>.json``)."""
SCENE_FORMAT = "embodied/tactile-scene"
SCENE_VERSION = 1

JOINT_NAMES = ("hand_x", "hand_y", "hand_z", "hand_rx", "hand_ry", "hand_rz", "finger_left", "finger_right")
"""The gripper's joints, in the order of ``TactileBackend.joint_pos`` (fingers: inward slide, m)."""

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
    """Normal stiffness (N/m) of one contact point: a static press of F newtons sinks F / stiffness.
    A curved object touches the pad at one point in every engine; a flat face touching it flat makes
    several contact points (MuJoCo up to 8 for box on box, Bullet up to 4), each this stiff."""
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
