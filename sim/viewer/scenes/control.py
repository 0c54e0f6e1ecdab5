"""Control tasks: a MuJoCo task's geoms, posed live; tasks without MuJoCo show their ``render()``."""

from __future__ import annotations

from typing import Any

import numpy as np

from embodied.sim.env import BatchedEnv
from embodied.sim.physics.mujoco_batch import MujocoBatch
from embodied.sim.viewer.mujoco_geoms import MujocoGeoms
from embodied.sim.viewer.scenes import ImageScene, Scene


class MujocoScene(Scene):
    """The geoms of a :class:`MujocoBatch`'s model, posed from env ``env_id``'s data.

    Legged tasks run off any fixed view, so with ``follow_body`` the drawing is shifted so that
    body stays over the origin in x and y (the grid moves instead of the camera)."""

    def __init__(self, server: Any, sim: MujocoBatch, follow_body: str | None = None) -> None:
        self.sim = sim
        self.root = server.scene.add_frame("/world", show_axes=False)
        self.geoms = MujocoGeoms(server.scene, sim.model, root="/world/mujoco")
        self.follow = sim.model.body(follow_body).id if follow_body else None
        self.camera = view_of(sim)

    def snapshot(self, env: BatchedEnv, env_id: int) -> dict[str, np.ndarray]:
        data = self.sim.datas[env_id]
        snap = self.geoms.poses(data)
        snap["origin"] = -data.xpos[self.follow].copy() * [1, 1, 0] if self.follow is not None else np.zeros(3)
        return snap

    def draw(self, snap: dict[str, np.ndarray]) -> None:
        self.geoms.draw(snap)
        self.root.position = snap["origin"]


def view_of(sim: MujocoBatch) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A camera (position, look-at) seeing every geom but planes, from the side (-y), a little above."""
    import mujoco

    m, data = sim.model, sim.datas[0]
    solid = m.geom_type != mujoco.mjtGeom.mjGEOM_PLANE
    pos = data.geom_xpos[solid] if solid.any() else np.zeros((1, 3))
    centre = pos.mean(0)
    radius = max(float(np.linalg.norm(pos - centre, axis=1).max() + m.geom_rbound[solid].max(initial=0.1)), 0.05)
    return tuple(centre + np.array([0.6, -2.2, 0.8]) * radius), tuple(centre)


def make_scene(server: Any, env: BatchedEnv) -> Scene:
    base = env.unwrapped
    sim = getattr(base, "sim", None)
    if isinstance(sim, MujocoBatch):
        track = getattr(base, "camera", {}).get("track_body")
        return MujocoScene(server, sim, follow_body=track)
    return ImageScene(server, env)
