"""Tactile tasks: the gripper, peg and socket from the MuJoCo model; each finger's tactile image
and its force field (normal force as a heat map, shear as arrows on it) in the panel.

Other physics engines (PyBullet, Isaac Gym) have no MuJoCo model to draw: their scene is the
task's ``render()``, with the same tactile panels.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from embodied.sim.env import BatchedEnv
from embodied.sim.physics.mujoco_batch import MujocoBatch
from embodied.sim.viewer.mujoco_geoms import MujocoGeoms
from embodied.sim.viewer.scenes import Scene

FIELD_PIXELS = 12
"""Heat-map pixels per taxel."""
FINGERS = ("left", "right")


def force_field_image(field: np.ndarray, max_normal: float) -> np.ndarray:
    """One pad's taxel forces (rows, cols, 3: shear x, shear y, normal; N) as an RGB heat map of the
    normal force (0 .. ``max_normal``) with the shear drawn as white arrows."""
    rows, cols = field.shape[:2]
    level = np.clip(field[..., 2] / max(max_normal, 1e-9), 0, 1)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    img = np.ascontiguousarray(
        cv2.resize(heat, (cols * FIELD_PIXELS, rows * FIELD_PIXELS), interpolation=cv2.INTER_NEAREST)
    )
    shear = field[..., :2]
    scale = 0.5 * FIELD_PIXELS / max(float(np.abs(shear).max()), 1e-9)
    for r in range(rows):
        for c in range(cols):
            sx, sy = shear[r, c]
            if abs(sx) + abs(sy) < 1e-6:
                continue
            x0, y0 = int((c + 0.5) * FIELD_PIXELS), int((r + 0.5) * FIELD_PIXELS)
            cv2.arrowedLine(
                img, (x0, y0), (int(x0 + sx * scale), int(y0 + sy * scale)), (255, 255, 255), 1, tipLength=0.3
            )
    return img


class TactileScene(Scene):
    """Gripper, peg and socket in 3D; per finger the tactile image and the force field in the panel."""

    metric_names = ("contact_force_left_N", "contact_force_right_N", "keypoint_dist_mm")

    def __init__(self, server: Any, env: BatchedEnv) -> None:
        base = env.unwrapped
        self.rig = base.rig
        sim = getattr(self.rig.backend, "sim", None)
        self.sim = sim if isinstance(sim, MujocoBatch) else None
        if self.sim is not None:
            self.geoms: MujocoGeoms | None = MujocoGeoms(server.scene, self.sim.model, root="/tactile")
            self.camera = ((-0.094, -0.163, 0.103), (0.0, 0.0, 0.035))  # the task's render() view
            self.render_handle = None
        else:
            self.geoms = None
            self.render_handle = server.gui.add_image(env.render(0, 320, 240), label="render()", order=3)
        images = self.rig.images("policy")[0].cpu().numpy()
        self.max_normal = 1.0
        with server.gui.add_folder("Tactile", order=3):
            self.image_handles = [
                server.gui.add_image(images[k], label=f"{f} finger image") for k, f in enumerate(FINGERS)
            ]
            blank = np.zeros((FIELD_PIXELS, FIELD_PIXELS, 3), np.uint8)
            self.field_handles = [
                server.gui.add_image(blank, label=f"{f} finger force field (normal; shear arrows)") for f in FINGERS
            ]

    def snapshot(self, env: BatchedEnv, env_id: int) -> dict[str, np.ndarray]:
        snap: dict[str, np.ndarray] = {}
        if self.geoms is not None and self.sim is not None:
            snap.update(self.geoms.poses(self.sim.datas[env_id]))
        else:
            snap["frame"] = env.render(env_id, 320, 240)
        snap["tactile_image"] = self.rig.images("policy")[env_id].cpu().numpy()
        forces = self.rig.forces
        snap["force_field"] = forces[env_id].cpu().numpy() if forces is not None else np.zeros((2, 1, 1, 3), np.float32)
        return snap

    def draw(self, snap: dict[str, np.ndarray]) -> None:
        if self.geoms is not None and "geom_pos" in snap:
            self.geoms.draw(snap)
        elif self.render_handle is not None and "frame" in snap:
            self.render_handle.image = snap["frame"]
        field = snap["force_field"]
        # The colour scale only grows, so a pad's heat map compares over the episode.
        self.max_normal = max(self.max_normal, float(field[..., 2].max()))
        for k in range(2):
            self.image_handles[k].image = snap["tactile_image"][k]
            self.field_handles[k].image = force_field_image(field[k], self.max_normal)

    def metrics(self, env: BatchedEnv, env_id: int, info: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        forces = self.rig.forces
        if forces is not None:
            normal = forces[env_id, ..., 2].sum(dim=(-1, -2)).cpu().numpy()
            out["contact_force_left_N"], out["contact_force_right_N"] = float(normal[0]), float(normal[1])
        if "keypoint_dist" in info:
            out["keypoint_dist_mm"] = float(info["keypoint_dist"][env_id]) * 1000
        return out


def make_scene(server: Any, env: BatchedEnv) -> Scene:
    return TactileScene(server, env)
