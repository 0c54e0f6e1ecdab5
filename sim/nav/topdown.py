"""A top-down map of a house: furniture in its category's colour, the goal category's objects lit
up, the path walked and the agent. Drawn by ``ObjectNavEnv.render`` (beside the agent's camera)
and by the viewer's navigation panel.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from embodied.sim.nav.house import CYLINDER, DOOR_HEIGHT, SEMANTIC_CLASSES, House

CATEGORY_COLOURS: dict[str, tuple[int, int, int]] = {
    "wall": (190, 190, 185),
    "table": (150, 110, 70),
    "cabinet": (120, 90, 60),
    "chair": (200, 120, 60),
    "bed": (90, 120, 190),
    "plant": (60, 150, 60),
    "toilet": (220, 220, 230),
    "tv_monitor": (50, 50, 60),
    "sofa": (150, 70, 110),
}
GOAL_COLOUR = (255, 200, 0)
"""Instances of the episode's goal category are drawn in this colour, in 3D and on the map."""
MAP_PIXELS_PER_M = 24
"""Resolution the map is drawn at before it is resized to the size asked for."""


def prim_colours(house: House, goal: int) -> np.ndarray:
    """(P, 3) uint8 colour of each primitive; the goal category's instances in :data:`GOAL_COLOUR`."""
    names = [SEMANTIC_CLASSES[c] for c in house.category]
    colours = np.array([CATEGORY_COLOURS.get(n, (128, 128, 128)) for n in names], np.uint8)
    colours[house.instances_of(goal)] = GOAL_COLOUR
    return colours


def top_down_map(house: House, goal: int, path: np.ndarray, pose: np.ndarray, width: int) -> np.ndarray:
    """An RGB map ``width`` pixels wide of ``house`` (+y up the image) with the goal objects, the
    path walked (K, 2) and the agent at ``pose`` (x, y, heading) as a dot with a heading line."""
    s = MAP_PIXELS_PER_M
    w, d = house.size
    img = np.full((int(math.ceil(d * s)) + 1, int(math.ceil(w * s)) + 1, 3), 245, np.uint8)

    def px(x: float, y: float) -> tuple[int, int]:
        return int(round(x * s)), int(round((d - y) * s))

    colours = prim_colours(house, goal)
    for k in range(house.num_prims):
        if house.z[k, 0] >= DOOR_HEIGHT:  # lintels over doors: the map shows the doorway open
            continue
        colour = tuple(int(c) for c in colours[k])
        g = house.geom[k]
        if house.kind[k] == CYLINDER:
            cv2.circle(img, px(g[0], g[1]), max(int(g[2] * s), 1), colour, -1)
        else:
            cv2.rectangle(img, px(g[0], g[3]), px(g[2], g[1]), colour, -1)
    if len(path) > 1:
        cv2.polylines(img, [np.array([px(x, y) for x, y in path], np.int32)], False, (40, 120, 220), 2)
    x, y, heading = (float(v) for v in pose)
    cv2.circle(img, px(x, y), 5, (220, 40, 40), -1)
    cv2.line(img, px(x, y), px(x + 0.5 * math.cos(heading), y + 0.5 * math.sin(heading)), (220, 40, 40), 2)
    size = (width, max(int(img.shape[0] * width / img.shape[1]), 1))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)
