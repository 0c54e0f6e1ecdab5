"""Procedurally generated multi-room houses, reproducible from a seed.

    house = generate_house(seed=3)          # the same seed always gives the same house
    house.prims                             # walls, lintels, furniture, goal objects

A house is a rectangle split into rooms by binary space partitioning: each split puts an inner
wall across the parent rectangle with one door in it, so every room is reachable (the doors form
a tree). Walls are 0.1 m thick boxes from the floor to the ceiling, cut at each door and closed
above it by a lintel (from :data:`DOOR_HEIGHT` to the ceiling). Each room then gets furniture:
at least one instance of every goal category of :data:`GOAL_CATEGORIES` (Habitat ObjectNav's six
HM3D categories) in the house, plus distractor tables and cabinets. Every piece is a vertical
extrusion (an axis-aligned box or an upright cylinder standing on the floor, or hung above it):
that is what lets the ray caster trace one 2-D ray per image column (see ``raycast.py``).

Placement keeps objects 0.3 m from walls, 0.5 m from each other and 1 m from doorways, and the
free space the agent can reach is checked to be one connected region that touches every goal
object (otherwise the objects are drawn again from the same stream), so every episode is
solvable.

Seeds split into training and held-out ranges (:data:`HOUSE_SPLITS`), as Habitat splits its
scene datasets: houses built from the held-out range are never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage

SEMANTIC_CLASSES: tuple[str, ...] = (
    "void",
    "floor",
    "ceiling",
    "wall",
    "table",
    "cabinet",
    "chair",
    "bed",
    "plant",
    "toilet",
    "tv_monitor",
    "sofa",
)
"""Semantic class ids (index in this tuple), as the ``semantic`` observation gives them by default."""
GOAL_CATEGORIES: tuple[str, ...] = ("chair", "bed", "plant", "toilet", "tv_monitor", "sofa")
"""ObjectNav goal categories; ``objectgoal`` is an index into this tuple (Habitat's HM3D order)."""
DISTRACTORS: tuple[str, ...] = ("table", "cabinet")

BOX, CYLINDER = 0, 1
WALL_THICKNESS = 0.1
CEILING_HEIGHT = 2.5
DOOR_WIDTH = 1.0
DOOR_HEIGHT = 2.1
MIN_ROOM = 2.5
"""Smallest room side (m)."""
WALL_GAP = 0.3
OBJECT_GAP = 0.5
DOOR_CLEARANCE = 1.0

# category -> (shape, width x, depth y, zmin, zmax) before a random 0.85-1.15 scale and 90-degree turn;
# a cylinder's width is its diameter.
FURNITURE: dict[str, tuple[int, float, float, float, float]] = {
    "table": (BOX, 1.2, 0.8, 0.0, 0.75),
    "cabinet": (BOX, 0.8, 0.5, 0.0, 1.8),
    "chair": (BOX, 0.5, 0.5, 0.0, 0.9),
    "bed": (BOX, 2.0, 1.5, 0.0, 0.6),
    "plant": (CYLINDER, 0.5, 0.5, 0.0, 1.0),
    "toilet": (BOX, 0.45, 0.7, 0.0, 0.8),
    "tv_monitor": (BOX, 1.0, 0.2, 0.5, 1.1),
    "sofa": (BOX, 1.9, 0.9, 0.0, 0.85),
}

HOUSE_SPLITS: dict[str, tuple[int, int]] = {"train": (0, 800), "val": (100_000, 100_100)}
"""Seed ranges [start, stop) of the training and held-out houses (80/20 scenes in HM3D ObjectNav's
train/val; here 800 training and 100 held-out houses)."""


@dataclass
class House:
    """One house: its outline and every primitive in it (float32 arrays, metres, z up)."""

    seed: int
    size: tuple[float, float]
    """(width along x, depth along y) of the outer rectangle; the floor spans [0, w] x [0, d]."""
    rooms: list[tuple[float, float, float, float]]
    """(x0, y0, x1, y1) of each room."""
    doors: list[tuple[str, float, float, float]]
    """(axis of the wall, "x" or "y"; wall coordinate; door start; door end) of each door."""
    kind: np.ndarray
    """(P,) int32: BOX or CYLINDER."""
    geom: np.ndarray
    """(P, 4) float32: box (xmin, ymin, xmax, ymax); cylinder (cx, cy, radius, radius)."""
    z: np.ndarray
    """(P, 2) float32: (zmin, zmax)."""
    category: np.ndarray
    """(P,) int32: index in :data:`SEMANTIC_CLASSES`."""
    ceiling: float = CEILING_HEIGHT
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_prims(self) -> int:
        return len(self.kind)

    def instances_of(self, goal: int) -> np.ndarray:
        """Indices of the primitives that are instances of goal category ``goal`` (index in GOAL_CATEGORIES)."""
        return np.flatnonzero(self.category == SEMANTIC_CLASSES.index(GOAL_CATEGORIES[goal]))

    def footprint_distance(self, points: np.ndarray, prims: np.ndarray | None = None) -> np.ndarray:
        """(M, len(prims)) horizontal distance from ``points`` (M, 2) to each primitive's footprint (0 inside)."""
        prims = np.arange(self.num_prims) if prims is None else prims
        return footprint_distance(points, self.kind[prims], self.geom[prims])


def footprint_distance(points: np.ndarray, kind: np.ndarray, geom: np.ndarray) -> np.ndarray:
    """(M, P) horizontal distance from points (M, 2) to boxes and cylinders (0 inside a footprint)."""
    p = points[:, None, :].astype(np.float64)
    g = geom[None].astype(np.float64)
    dx = np.maximum(np.maximum(g[..., 0] - p[..., 0], p[..., 0] - g[..., 2]), 0.0)
    dy = np.maximum(np.maximum(g[..., 1] - p[..., 1], p[..., 1] - g[..., 3]), 0.0)
    box = np.hypot(dx, dy)
    cyl = np.maximum(np.hypot(p[..., 0] - g[..., 0], p[..., 1] - g[..., 1]) - g[..., 2], 0.0)
    return np.where(kind[None] == CYLINDER, cyl, box)


def house_seeds(split: str) -> range:
    """The seeds of a split ("train" or "val"), or a ValueError listing the splits."""
    if split not in HOUSE_SPLITS:
        raise ValueError(f"unknown house split {split!r}; choose one of {sorted(HOUSE_SPLITS)}")
    return range(*HOUSE_SPLITS[split])


# ---------------------------------------------------------------------------------------------
# Generation


def generate_house(seed: int, num_rooms: tuple[int, int] = (3, 6)) -> House:
    """The house of ``seed``: rooms, walls with doors, furniture and goal objects (see the module doc)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6E6176]))
    w = round(float(rng.uniform(7.0, 12.0)), 1)
    d = round(float(rng.uniform(6.0, 10.0)), 1)
    rooms, walls, doors = _split_rooms(rng, w, d, int(rng.integers(num_rooms[0], num_rooms[1] + 1)))
    prims: list[tuple[int, tuple[float, float, float, float], tuple[float, float], int]] = []
    wall_cls = SEMANTIC_CLASSES.index("wall")
    for box, zr in walls:
        prims.append((BOX, box, zr, wall_cls))
    for _attempt in range(20):
        furniture = _place_furniture(rng, rooms, doors)
        candidate = prims + furniture
        house = _house_from(seed, (w, d), rooms, doors, candidate)
        if _goals_reachable(house):
            return house
    raise RuntimeError(f"house {seed}: could not place reachable furniture in 20 attempts")  # never seen


def _split_rooms(rng: np.random.Generator, w: float, d: float, target: int):
    """BSP rooms, the wall boxes ((xmin, ymin, xmax, ymax), (zmin, zmax)) and the doors."""
    h = WALL_THICKNESS / 2
    full = (0.0, CEILING_HEIGHT)
    walls = [
        ((-h, -h, w + h, h), full),
        ((-h, d - h, w + h, d + h), full),
        ((-h, -h, h, d + h), full),
        ((w - h, -h, w + h, d + h), full),
    ]
    rooms = [(0.0, 0.0, w, d)]
    doors: list[tuple[str, float, float, float]] = []
    for _ in range(target - 1):
        rooms.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)
        for i, (x0, y0, x1, y1) in enumerate(rooms):
            split = _try_split(rng, (x0, y0, x1, y1), doors)
            if split is None:
                continue
            axis, c = split
            # The new wall spans the room; its door sits somewhere along it.
            lo, hi = (y0, y1) if axis == "x" else (x0, x1)
            a = round(float(rng.uniform(lo + 0.3, hi - 0.3 - DOOR_WIDTH)), 2)
            doors.append((axis, c, a, a + DOOR_WIDTH))
            for s0, s1 in ((lo, a), (a + DOOR_WIDTH, hi)):
                walls.append((_wall_box(axis, c, s0, s1), full))
            walls.append((_wall_box(axis, c, a, a + DOOR_WIDTH), (DOOR_HEIGHT, CEILING_HEIGHT)))
            first, second = ((x0, y0, c, y1), (c, y0, x1, y1)) if axis == "x" else ((x0, y0, x1, c), (x0, c, x1, y1))
            rooms[i : i + 1] = [first, second]
            break
        else:
            break  # no room can be split further
    return rooms, walls, doors


def _wall_box(axis: str, c: float, s0: float, s1: float) -> tuple[float, float, float, float]:
    """A wall at x = c (axis "x") or y = c (axis "y") running from s0 to s1 along the other axis."""
    h = WALL_THICKNESS / 2
    return (c - h, s0, c + h, s1) if axis == "x" else (s0, c - h, s1, c + h)


def _try_split(rng: np.random.Generator, room, doors) -> tuple[str, float] | None:
    """A split (wall axis, coordinate) of ``room`` that leaves both halves >= MIN_ROOM and misses doors."""
    x0, y0, x1, y1 = room
    axis = "x" if (x1 - x0) >= (y1 - y0) else "y"
    lo, hi = (x0, x1) if axis == "x" else (y0, y1)
    if hi - lo < 2 * MIN_ROOM:
        return None
    for _ in range(10):
        c = round(float(rng.uniform(lo + MIN_ROOM, hi - MIN_ROOM)), 1)
        # The new wall ends on the room's two walls across it: keep it off their doors.
        ends = (y0, y1) if axis == "x" else (x0, x1)
        blocked = any(
            door_axis != axis and abs(coord - e) < 1e-6 and start - 0.3 < c < end + 0.3
            for door_axis, coord, start, end in doors
            for e in ends
        )
        if not blocked:
            return axis, c
    return None


def _place_furniture(rng: np.random.Generator, rooms, doors):
    """Goal objects (1-2 of each goal category) and 2-5 distractors, each in a random room."""
    names = [c for c in GOAL_CATEGORIES for _ in range(int(rng.integers(1, 3)))]
    names.sort(key=lambda c: -FURNITURE[c][1] * FURNITURE[c][2])  # largest first: they need the most room
    names += [DISTRACTORS[int(rng.integers(len(DISTRACTORS)))] for _ in range(int(rng.integers(2, 6)))]
    door_centres = np.array(
        [((c, (a + b) / 2) if axis == "x" else ((a + b) / 2, c)) for axis, c, a, b in doors] or np.zeros((0, 2))
    ).reshape(-1, 2)
    placed: list[tuple[int, tuple[float, float, float, float], tuple[float, float], int]] = []
    for name in names:
        shape, fw, fd, zmin, zmax = FURNITURE[name]
        for _ in range(60):
            scale = float(rng.uniform(0.85, 1.15))
            sw, sd = (fd, fw) if rng.random() < 0.5 else (fw, fd)
            sw, sd = sw * scale, sd * scale
            if shape == CYLINDER:
                sd = sw
            x0, y0, x1, y1 = rooms[int(rng.integers(len(rooms)))]
            m = WALL_THICKNESS / 2 + WALL_GAP
            if x1 - x0 - 2 * m < sw or y1 - y0 - 2 * m < sd:
                continue
            cx = float(rng.uniform(x0 + m + sw / 2, x1 - m - sw / 2))
            cy = float(rng.uniform(y0 + m + sd / 2, y1 - m - sd / 2))
            box = (cx - sw / 2, cy - sd / 2, cx + sw / 2, cy + sd / 2)
            if _too_close(box, placed, door_centres):
                continue
            geom = (cx, cy, sw / 2, sw / 2) if shape == CYLINDER else box
            placed.append((shape, geom, (zmin, zmax * scale if zmin == 0 else zmax), SEMANTIC_CLASSES.index(name)))
            break
    return placed


def _too_close(box, placed, door_centres: np.ndarray) -> bool:
    for shape, geom, _, _ in placed:
        other = (
            (geom[0] - geom[2], geom[1] - geom[2], geom[0] + geom[2], geom[1] + geom[2]) if shape == CYLINDER else geom
        )
        gap_x = max(other[0] - box[2], box[0] - other[2])
        gap_y = max(other[1] - box[3], box[1] - other[3])
        if max(gap_x, gap_y) < OBJECT_GAP:
            return True
    if len(door_centres):
        dx = np.maximum(np.maximum(box[0] - door_centres[:, 0], door_centres[:, 0] - box[2]), 0)
        dy = np.maximum(np.maximum(box[1] - door_centres[:, 1], door_centres[:, 1] - box[3]), 0)
        if (np.hypot(dx, dy) < DOOR_CLEARANCE).any():
            return True
    return False


def _house_from(seed, size, rooms, doors, prims) -> House:
    return House(
        seed=int(seed),
        size=size,
        rooms=list(rooms),
        doors=list(doors),
        kind=np.array([p[0] for p in prims], np.int32),
        geom=np.array([p[1] for p in prims], np.float32).reshape(-1, 4),
        z=np.array([p[2] for p in prims], np.float32).reshape(-1, 2),
        category=np.array([p[3] for p in prims], np.int32),
    )


def _goals_reachable(house: House) -> bool:
    """True when the agent's free space is one region and every goal object borders it."""
    from embodied.sim.nav.geodesic import OccupancyGrid  # geodesic imports this module

    grid = OccupancyGrid.of(house)
    _, regions = scipy.ndimage.label(grid.free)  # 4-connected, as the agent moves between cells
    if regions != 1:
        return False
    return all(np.isfinite(grid.goal_seeds(house, g)).any() for g in range(len(GOAL_CATEGORIES)))
