"""Navigation tasks: the house (walls, doors as gaps under their lintels, furniture, the goal
category's objects lit up), the agent and its path in 3D; in the panel the agent's camera (RGB
and depth) and a top-down map. Plotted: the geodesic distance to the goal, and at each finished
episode its success, SPL and index within the trial.

Tasks without a house (``Nav/Darkroom-v0``, a grid) show their own ``render()``.

A snapshot holds the house's seed, not its geometry: houses are generated from their seed
(``sim/nav/house.py``), so a replay rebuilds the same house.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import trimesh

from embodied.sim.env import BatchedEnv
from embodied.sim.nav.house import CYLINDER, GOAL_CATEGORIES, SEMANTIC_CLASSES, House, generate_house
from embodied.sim.nav.raycast import CameraCfg, RayCaster
from embodied.sim.nav.topdown import prim_colours, top_down_map
from embodied.sim.viewer.scenes import ImageScene, Scene

WALL_OPACITY = 0.45
"""Walls are see-through enough that a camera above the house shows the rooms inside."""
PANEL_WIDTH = 192
"""Pixels across the camera and map images in the panel."""


@lru_cache(maxsize=8)
def house_of(seed: int) -> House:
    """The house of ``seed`` (generation takes tens of ms; a replay asks for the same few again)."""
    return generate_house(seed)


def _unit_box() -> tuple[np.ndarray, np.ndarray]:
    """A 1 m cube standing on z = 0, centred in x and y (scaled per primitive)."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.apply_translation((0.0, 0.0, 0.5))
    return np.asarray(box.vertices, np.float32), np.asarray(box.faces, np.uint32)


def _unit_cylinder() -> tuple[np.ndarray, np.ndarray]:
    """A cylinder of radius 1 m and height 1 m standing on z = 0."""
    cyl = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=20)
    cyl.apply_translation((0.0, 0.0, 0.5))
    return np.asarray(cyl.vertices, np.float32), np.asarray(cyl.faces, np.uint32)


def depth_image(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """A depth frame (H, W) in metres (or normalised) as an RGB image, near bright, far dark."""
    level = 1.0 - np.clip(depth / max(max_depth, 1e-6), 0.0, 1.0)
    return np.ascontiguousarray(cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1])


class HouseScene(Scene):
    """The house, agent and path of env ``env_id`` in 3D; its camera and a map in the panel."""

    metric_names = ("distance_to_goal_m", "success", "spl", "episode_in_trial")

    def __init__(self, server: Any, env: BatchedEnv) -> None:
        self.server = server
        self.base = env.unwrapped
        cam = self.base.cfg.camera
        # The panel's camera: the task's, at most PANEL_WIDTH wide (one env: a redraw costs ~1 ms).
        scale = min(1.0, PANEL_WIDTH / cam.width)
        self.camera_cfg = CameraCfg(
            **{**vars(cam), "width": max(int(cam.width * scale), 8), "height": max(int(cam.height * scale), 8)}
        )
        self.caster = RayCaster(self.camera_cfg, 1, self.base.device, threads=1)
        self.box, self.cylinder = _unit_box(), _unit_cylinder()
        self.house_handles: list[Any] = []
        self.shown: tuple[int, int] | None = None
        """(house seed, goal) drawn in 3D now."""
        self.path: dict[int, np.ndarray] = {}
        """Positions of the shown episode by its step number (a replay may scrub backwards)."""
        self.episode_key: tuple[int, int, int] | None = None
        self.finished: dict[int, dict[str, float]] = {}
        """Per env, the numbers of its last finished episode (plotted until the next one ends)."""
        self.agent = server.scene.add_frame("/nav/agent", show_axes=False)
        radius, height = self.base.cfg.agent.radius, self.base.cfg.agent.height
        server.scene.add_mesh_simple(
            "/nav/agent/body", self.cylinder[0] * [radius, radius, height], self.cylinder[1], color=(220, 40, 40)
        )
        nose = trimesh.creation.box(extents=(0.3, 0.06, 0.06))
        nose.apply_translation((0.15 + radius, 0.0, height * 0.8))
        server.scene.add_mesh_simple(
            "/nav/agent/heading",
            np.asarray(nose.vertices, np.float32),
            np.asarray(nose.faces, np.uint32),
            color=(220, 40, 40),
        )
        self.path_line = server.scene.add_line_segments(
            "/nav/path", points=np.zeros((1, 2, 3)), colors=(40, 120, 220), thickness=3.0, thickness_units="screen"
        )
        with server.gui.add_folder("Navigation", order=3):
            self.goal_text = server.gui.add_markdown("")
            blank = np.zeros((self.camera_cfg.height, self.camera_cfg.width, 3), np.uint8)
            self.rgb_handle = server.gui.add_image(blank, label="agent camera (RGB)")
            self.depth_handle = server.gui.add_image(blank, label="agent camera (depth)")
            self.map_handle = server.gui.add_image(
                np.zeros((PANEL_WIDTH, PANEL_WIDTH, 3), np.uint8), label="top-down map (goal objects yellow)"
            )
        self.camera = ((0.0, -6.0, 9.0), (4.0, 4.0, 0.0))

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, env: BatchedEnv, env_id: int) -> dict[str, np.ndarray]:
        base = self.base
        pose = base.pose[env_id : env_id + 1]
        frames = self.caster.render(base.scene, pose, semantic=False, rgb=True, first_env=env_id)
        return {
            "house_seed": np.int64(base.house_seed[env_id]),
            "goal": np.int64(base.goal[env_id]),
            "episode_index": np.int64(base.episode_index[env_id]),
            "nav_steps": np.int64(base.nav_steps[env_id]),
            "pose": pose[0].cpu().numpy().astype(np.float32),
            "rgb": frames.rgb[0].cpu().numpy(),
            "depth": frames.depth[0].cpu().numpy(),
        }

    # ------------------------------------------------------------------ drawing
    def draw(self, snap: dict[str, np.ndarray]) -> None:
        seed, goal = int(snap["house_seed"]), int(snap["goal"])
        house = house_of(seed)
        if self.shown != (seed, goal):
            self._draw_house(house, goal)
        pose = snap["pose"].astype(np.float64)
        key = (seed, goal, int(snap["episode_index"]))
        if key != self.episode_key:
            self.episode_key, self.path = key, {}
        step = int(snap["nav_steps"])
        self.path = {s: p for s, p in self.path.items() if s < step}  # scrubbed back: drop the future
        self.path[step] = pose[:2]
        path = np.array([self.path[s] for s in sorted(self.path)])
        self.agent.position = (pose[0], pose[1], 0.0)
        self.agent.wxyz = (math.cos(pose[2] / 2), 0.0, 0.0, math.sin(pose[2] / 2))
        if len(path) > 1:
            pts = np.concatenate([path, np.full((len(path), 1), 0.05)], axis=1)
            self.path_line.points = np.stack([pts[:-1], pts[1:]], axis=1)
        else:
            self.path_line.points = np.zeros((1, 2, 3))
        self.rgb_handle.image = snap["rgb"]
        self.depth_handle.image = depth_image(snap["depth"], self.camera_cfg.max_depth)
        self.map_handle.image = top_down_map(house, goal, path, pose, PANEL_WIDTH)
        self.goal_text.content = (
            f"goal: **{GOAL_CATEGORIES[goal]}** · house {seed} · episode {int(snap['episode_index'])} · step {step}"
        )

    def draw_recorded(self, rows: dict[str, np.ndarray], t: int) -> None:
        """Row ``t`` with the path of its episode so far, however the scrubber got there."""
        key = np.stack([rows["house_seed"], rows["goal"], rows["episode_index"]], axis=1)
        start = t
        while (
            start > 0 and (key[start - 1] == key[t]).all() and rows["nav_steps"][start - 1] < rows["nav_steps"][start]
        ):
            start -= 1
        self.episode_key = tuple(int(v) for v in key[t])
        self.path = {int(rows["nav_steps"][i]): rows["pose"][i, :2].astype(np.float64) for i in range(start, t + 1)}
        self.draw({k: v[t] for k, v in rows.items()})

    def _draw_house(self, house: House, goal: int) -> None:
        """Replace the 3D house: one batched handle per shape and look (walls, furniture)."""
        for handle in self.house_handles:
            handle.remove()
        self.house_handles = []
        colours = prim_colours(house, goal)
        is_wall = house.category == SEMANTIC_CLASSES.index("wall")
        g, z = house.geom.astype(np.float64), house.z.astype(np.float64)
        cylinder = house.kind == CYLINDER
        centre = np.where(cylinder[:, None], g[:, :2], (g[:, :2] + g[:, 2:]) / 2)
        extent = np.where(cylinder[:, None], g[:, 2:], g[:, 2:] - g[:, :2])
        positions = np.concatenate([centre, z[:, :1]], axis=1)
        scales = np.concatenate([extent, z[:, 1:] - z[:, :1]], axis=1)
        for name, rows, mesh, opacity in (
            ("walls", is_wall & ~cylinder, self.box, WALL_OPACITY),
            ("boxes", ~is_wall & ~cylinder, self.box, 1.0),
            ("cylinders", cylinder, self.cylinder, 1.0),
        ):
            if not rows.any():
                continue
            n = int(rows.sum())
            self.house_handles.append(
                self.server.scene.add_batched_meshes_simple(
                    f"/nav/house/{name}",
                    *mesh,
                    batched_wxyzs=np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)),
                    batched_positions=positions[rows],
                    batched_scales=np.maximum(scales[rows], 1e-3),
                    batched_colors=colours[rows],
                    batched_opacities=np.full(n, opacity),
                    lod="off",
                    cast_shadow=False,
                    receive_shadow=False,
                )
            )
        w, d = house.size
        floor = trimesh.creation.box(extents=(w, d, 0.02))
        floor.apply_translation((w / 2, d / 2, -0.01))
        self.house_handles.append(
            self.server.scene.add_mesh_simple(
                "/nav/house/floor",
                np.asarray(floor.vertices, np.float32),
                np.asarray(floor.faces, np.uint32),
                color=(225, 215, 195),
            )
        )
        self.shown = (house.seed, goal)

    # ------------------------------------------------------------------ numbers
    def metrics(self, env: BatchedEnv, env_id: int, info: dict[str, Any]) -> dict[str, float]:
        """The distance now; success, SPL and index in the trial of the last finished episode (NaN before one)."""
        if "nav_episode_done" in info and bool(info["nav_episode_done"][env_id]):
            self.finished[env_id] = {
                "success": float(info["success"][env_id]),
                "spl": float(info["spl"][env_id]),
                "episode_in_trial": float(info["episode_index"][env_id]),
            }
        last = self.finished.get(env_id, dict.fromkeys(("success", "spl", "episode_in_trial"), math.nan))
        return {"distance_to_goal_m": float(info["distance_to_goal"][env_id]), **last}


def make_scene(server: Any, env: BatchedEnv) -> Scene:
    if hasattr(env.unwrapped, "house_seed"):
        return HouseScene(server, env)
    return ImageScene(server, env)
