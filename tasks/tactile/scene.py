"""Peg-and-socket scenes for the tactile tasks, built from a few numbers (no file per variant).

:func:`peg_scene` returns a tactile scene mapping (the format of ``assets/tactile_scenes/``,
loaded by :func:`embodied.sim.physics.tactile_scene.load_scene`): the gripper of
``peg_socket.json`` with longer fingers (the pads sit near the fingertips, so a held peg sticks
out below them and can go into a socket without the fingers hitting it), a free peg between
the pads and a fixed socket on the floor whose hole matches the peg with a chosen clearance.

Peg shapes (:data:`PEG_SHAPES`), all with their axis along z and the pads touching flat sides
(``size`` is the half-width across the gripped faces, i.e. along the fingers' axis):

- ``"round"``: a cylinder of radius ``size``; its hole is a regular octagon inscribed
  ``size + clearance`` from the axis (within 0.08 x radius of a round hole, and made of boxes,
  which every backend collides robustly).
- ``"rect"``: a box ``2 size x 2 size_y``; a rectangular hole.
- ``"hex"``: a hexagonal prism (three boxes rotated by 60 degrees, whose union is a hexagon)
  with flats ``size`` from the axis facing the pads; a hexagonal hole. Held out for evaluation.

Frames: the socket's hole is centred on the world z axis, its floor at z = 0 (the scene's
floor), its top at ``socket_height``. The peg's body frame is its centre (half-way along the axis).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from embodied.config import ConfigError
from embodied.sim.physics.tactile_scene import SCENES_DIR

PegShape = Literal["round", "rect", "hex"]
PEG_SHAPES: tuple[str, ...] = ("round", "rect", "hex")

FINGER_HALF_EXTENTS = (0.004, 0.0135, 0.025)
"""Fingers 50 mm long (``peg_socket.json``'s are 30 mm), so the pads reach below the palm."""
PAD_OFFSET = -0.01
"""Pad centre 10 mm below the finger's centre (towards the tip): the pad ends 5 mm above the tip."""
WALL_HALF_THICKNESS = 0.003
"""Half thickness (m) of the socket's wall boxes."""


@dataclass(frozen=True)
class PegGeometry:
    """The numbers that make a peg-and-socket scene (see the module docstring)."""

    shape: PegShape = "round"
    size: float = 0.006
    """Half-width (m) across the faces the pads grip (round: radius; hex: apothem)."""
    size_y: float = 0.008
    """rect only: half-width (m) along the pads' width (the palm's y)."""
    half_length: float = 0.025
    """Half the peg's length along its axis (m)."""
    clearance: float = 0.0005
    """Gap (m) between the peg's side and the hole's wall, per side."""
    socket_height: float = 0.012
    """Depth of the hole = height of the socket's top above the floor (m)."""
    mass: float = 0.02

    def __post_init__(self) -> None:
        if self.shape not in PEG_SHAPES:
            raise ConfigError(f"peg shape must be one of {list(PEG_SHAPES)}, got {self.shape!r}")
        for name, lo, hi in (
            ("size", 0.002, 0.0115),
            ("size_y", 0.002, 0.012),
            ("half_length", 0.01, 0.04),
            ("clearance", 0.0, 0.005),
            ("socket_height", 0.003, 0.03),
            ("mass", 1e-3, 1.0),
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
                raise ConfigError(f"peg geometry {name} must be in [{lo}, {hi}], got {value!r}")

    @property
    def grip_width(self) -> float:
        """Distance (m) between the two faces the pads touch."""
        return 2.0 * self.size


def _zquat(angle: float) -> list[float]:
    return [math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)]


def peg_geoms(g: PegGeometry) -> list[dict[str, Any]]:
    """Geoms of the peg in its body frame (every one sensed by the pads)."""
    if g.shape == "round":
        return [{"shape": "cylinder", "radius": g.size, "half_length": g.half_length}]
    if g.shape == "rect":
        return [{"shape": "box", "half_extents": [g.size, g.size_y, g.half_length]}]
    # hex: flats at apothem `size` facing +-x; circumradius R; each box spans two opposite vertices.
    radius = g.size / math.cos(math.pi / 6)
    return [
        {"shape": "box", "half_extents": [radius / 2, g.size, g.half_length], "quat": _zquat(a)}
        for a in (math.pi / 2, math.pi / 2 + math.pi / 3, math.pi / 2 - math.pi / 3)
    ]


def _walls(faces: list[tuple[float, float, float]], height: float) -> list[dict[str, Any]]:
    """Wall boxes of a hole: one per face (normal angle, distance of the face from the axis,
    half-length along the face)."""
    t = WALL_HALF_THICKNESS
    out = []
    for angle, dist, half_len in faces:
        r = dist + t
        out.append(
            {
                "shape": "box",
                "half_extents": [t, half_len, height / 2],
                "pos": [r * math.cos(angle), r * math.sin(angle), height / 2],
                "quat": _zquat(angle),
                "sensed": False,
            }
        )
    return out


def socket_geoms(g: PegGeometry) -> list[dict[str, Any]]:
    """The socket's wall boxes (not sensed), hole centred on the z axis, floor at z = 0."""
    c, h, t = g.clearance, g.socket_height, WALL_HALF_THICKNESS
    if g.shape == "rect":
        ax, ay = g.size + c, g.size_y + c
        faces = [(0.0, ax, ay + 2 * t), (math.pi, ax, ay + 2 * t)]
        faces += [(math.pi / 2, ay, ax + 2 * t), (-math.pi / 2, ay, ax + 2 * t)]
        return _walls(faces, h)
    n = 8 if g.shape == "round" else 6
    a = g.size + c
    half_len = (a + 2 * t) * math.tan(math.pi / n)
    return _walls([(2 * math.pi * k / n, a, half_len) for k in range(n)], h)


def base_gripper() -> dict[str, Any]:
    """``peg_socket.json``'s gripper with the longer fingers and pads near the tips."""
    base = json.loads((SCENES_DIR / "peg_socket.json").read_text(encoding="utf-8"))["gripper"]
    base["finger_half_extents"] = list(FINGER_HALF_EXTENTS)
    base["pad"] = dict(base["pad"], offset=PAD_OFFSET)
    return base


def pad_centre_z(gripper: dict[str, Any]) -> float:
    """Height of the pads' centres below the hand frame (negative, m)."""
    palm_half_z = gripper.get("palm_half_extents", [0.05, 0.015, 0.01])[2]
    return -(palm_half_z + gripper["finger_half_extents"][2]) + gripper["pad"]["offset"]


def peg_scene(g: PegGeometry, name: str = "peg_insert") -> dict[str, Any]:
    """The scene mapping: gripper, free peg (index 0 in ``objects``), fixed socket, floor.

    The peg starts at an arbitrary resting place; tasks place it in the hand at every reset."""
    gripper = base_gripper()
    gripper["home"] = [0.0, 0.0, 0.12, 0.0, 0.0, 0.0, g.grip_width]
    return {
        "format": "embodied/tactile-scene",
        "version": 1,
        "name": name,
        "description": f"{g.shape} peg (half-width {g.size} m), socket with {g.clearance} m clearance",
        "timestep": 0.002,
        "substeps": 5,
        "gripper": gripper,
        "objects": [
            {
                "name": "peg",
                "fixed": False,
                "pos": [0.0, 0.0, 0.06],
                "mass": g.mass,
                "friction": 1.0,
                "geoms": peg_geoms(g),
            },
            {
                "name": "socket",
                "fixed": True,
                "pos": [0.0, 0.0, 0.0],
                "mass": 1.0,
                "friction": 1.0,
                "geoms": socket_geoms(g),
            },
        ],
        "floor": True,
    }


SHIPPED: dict[str, PegGeometry] = {
    "peg_insert_round": PegGeometry(shape="round"),
    "peg_insert_rect": PegGeometry(shape="rect"),
    "peg_insert_hex": PegGeometry(shape="hex"),
}
"""The task scenes at their default sizes, also shipped as JSON in ``assets/tactile_scenes/`` so any
backend or tool loads them by name (``TactileRig("peg_insert_rect")``); the tasks build theirs here."""


def write_scene_files(folder: str | None = None) -> list[str]:
    """(Re)write the :data:`SHIPPED` scenes as JSON (``python -m embodied.tasks.tactile.scene``)."""
    out = []
    for name, geometry in SHIPPED.items():
        path = Path(folder or SCENES_DIR) / f"{name}.json"
        path.write_text(json.dumps(peg_scene(geometry, name=name), indent=1) + "\n", encoding="utf-8")
        out.append(str(path))
    return out


if __name__ == "__main__":
    print("\n".join(write_scene_files()))
