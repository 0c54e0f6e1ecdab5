"""Every env's house in fixed-size slots on the device, with a 2-D uniform grid for ray and collision queries.

    scene = SceneBatch(num_envs, device="cpu")
    scene.set_house(env_id, house)          # writes that env's slot in place (partial reset)
    scene.struct                            # the Warp view the ray caster and the agent kernel read

Slots have a fixed capacity (:data:`MAX_PRIMS` primitives, :data:`MAX_CELLS` grid cells,
:data:`MAX_ITEMS` cell entries), so a reset rewrites one env's rows of persistent torch tensors and
the Warp arrays (zero-copy views of them) never move. The grid covers the floor plan plus one cell
of margin; cell (i, j) lists, CSR style, every primitive whose footprint overlaps it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import warp as wp

from embodied.sim.nav.house import CYLINDER, SEMANTIC_CLASSES, House

wp.config.quiet = True
wp.init()

MAX_PRIMS = 64
MAX_CELLS = 1600
MAX_ITEMS = 4096
CELL = 0.5
"""Uniform grid cell size (m): a few primitives per cell in a typical room."""

CLASS_COLOURS = (
    np.array(
        [
            (0, 0, 0),  # void
            (150, 120, 90),  # floor
            (235, 235, 225),  # ceiling
            (200, 195, 180),  # wall
            (140, 90, 50),  # table
            (100, 70, 60),  # cabinet
            (220, 60, 50),  # chair
            (70, 110, 200),  # bed
            (50, 170, 70),  # plant
            (240, 240, 250),  # toilet
            (40, 40, 45),  # tv_monitor
            (200, 150, 40),  # sofa
        ],
        np.float32,
    )
    / 255.0
)
"""RGB in [0, 1] of each semantic class (index as in SEMANTIC_CLASSES)."""

FLOOR_ID = SEMANTIC_CLASSES.index("floor")
CEILING_ID = SEMANTIC_CLASSES.index("ceiling")
FIRST_INSTANCE_ID = 3
"""Instance-mode semantic ids: 0 void, 1 floor, 2 ceiling, primitive k of a house is 3 + k."""


@wp.struct
class Scene:
    """Warp view of a :class:`SceneBatch` (first index: env)."""

    kind: wp.array2d(dtype=wp.int32)
    geom: wp.array2d(dtype=wp.vec4)
    z: wp.array2d(dtype=wp.vec2)
    sem: wp.array2d(dtype=wp.int32)
    colour: wp.array2d(dtype=wp.vec3)
    origin: wp.array(dtype=wp.vec2)
    dims: wp.array2d(dtype=wp.int32)
    cell_start: wp.array2d(dtype=wp.int32)
    items: wp.array2d(dtype=wp.int32)
    ceiling: wp.array(dtype=float)
    cell: float


class SceneBatch:
    """The houses of ``num_envs`` envs packed for the kernels (see the module docstring)."""

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", semantic: str = "category") -> None:
        if semantic not in ("category", "instance"):
            raise ValueError(f"semantic must be 'category' or 'instance', got {semantic!r}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.semantic = semantic
        self.houses: list[House | None] = [None] * num_envs
        n, dev = num_envs, self.device
        self.kind = torch.zeros(n, MAX_PRIMS, dtype=torch.int32, device=dev)
        self.geom = torch.zeros(n, MAX_PRIMS, 4, device=dev)
        self.z = torch.zeros(n, MAX_PRIMS, 2, device=dev)
        self.sem = torch.zeros(n, MAX_PRIMS, dtype=torch.int32, device=dev)
        self.colour = torch.zeros(n, MAX_PRIMS, 3, device=dev)
        self.origin = torch.zeros(n, 2, device=dev)
        self.dims = torch.zeros(n, 2, dtype=torch.int32, device=dev)
        self.cell_start = torch.zeros(n, MAX_CELLS + 1, dtype=torch.int32, device=dev)
        self.items = torch.zeros(n, MAX_ITEMS, dtype=torch.int32, device=dev)
        self.ceiling = torch.zeros(n, device=dev)
        s = Scene()
        s.kind = wp.from_torch(self.kind)
        s.geom = wp.from_torch(self.geom, dtype=wp.vec4)
        s.z = wp.from_torch(self.z, dtype=wp.vec2)
        s.sem = wp.from_torch(self.sem)
        s.colour = wp.from_torch(self.colour, dtype=wp.vec3)
        s.origin = wp.from_torch(self.origin, dtype=wp.vec2)
        s.dims = wp.from_torch(self.dims)
        s.cell_start = wp.from_torch(self.cell_start)
        s.items = wp.from_torch(self.items)
        s.ceiling = wp.from_torch(self.ceiling)
        s.cell = CELL
        self.struct = s

    def set_house(self, env_id: int, house: House) -> None:
        """Write ``house`` into env ``env_id``'s slot."""
        p = house.num_prims
        if p > MAX_PRIMS:
            raise ValueError(f"house {house.seed} has {p} primitives; a slot holds {MAX_PRIMS}")
        origin, dims, cell_start, items = uniform_grid(house)
        if dims[0] * dims[1] > MAX_CELLS or len(items) > MAX_ITEMS:
            raise ValueError(f"house {house.seed} ({house.size[0]} x {house.size[1]} m) does not fit a scene slot")
        sem = house.category if self.semantic == "category" else FIRST_INSTANCE_ID + np.arange(p, dtype=np.int32)
        rows = {
            "kind": (self.kind, house.kind),
            "geom": (self.geom, house.geom),
            "z": (self.z, house.z),
            "sem": (self.sem, sem),
            "colour": (self.colour, CLASS_COLOURS[house.category]),
            "cell_start": (self.cell_start, cell_start),
            "items": (self.items, items),
        }
        for target, values in rows.values():
            target[env_id].zero_()
            target[env_id, : len(values)] = torch.as_tensor(np.asarray(values), device=self.device).to(target.dtype)
        self.origin[env_id] = torch.as_tensor(origin, device=self.device)
        self.dims[env_id] = torch.as_tensor(dims, dtype=torch.int32, device=self.device)
        self.ceiling[env_id] = float(house.ceiling)
        self.houses[env_id] = house


def wp_device(device: torch.device) -> str:
    """Warp's name for a torch device ("cuda" without an index is torch's current CUDA device)."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return wp.device_from_torch(device).alias


def wp_stream(device: torch.device) -> wp.Stream | None:
    """Torch's current stream on a CUDA ``device`` as a Warp stream (None on the CPU).

    Warp launches on its own stream by default; launching on torch's keeps the kernels ordered
    after the torch ops that wrote their inputs and before the ones that read their outputs."""
    return wp.stream_from_torch(torch.cuda.current_stream(device)) if device.type == "cuda" else None


def uniform_grid(house: House) -> tuple[np.ndarray, tuple[int, int], np.ndarray, np.ndarray]:
    """(origin (2,), (cols, rows), cell_start (cells + 1,), items) of ``house``'s 2-D grid (cell (r, c) is r * cols + c)."""
    origin = np.array([-CELL, -CELL], np.float32)
    cols = int(math.ceil(house.size[0] / CELL)) + 2
    rows = int(math.ceil(house.size[1] / CELL)) + 2
    g = house.geom.astype(np.float64)
    lo = np.where(house.kind[:, None] == CYLINDER, g[:, :2] - g[:, 2:3], g[:, :2])
    hi = np.where(house.kind[:, None] == CYLINDER, g[:, :2] + g[:, 2:3], g[:, 2:])
    c0 = np.clip(np.floor((lo - origin) / CELL).astype(int), 0, [cols - 1, rows - 1])
    c1 = np.clip(np.floor((hi - origin) / CELL).astype(int), 0, [cols - 1, rows - 1])
    buckets: list[list[int]] = [[] for _ in range(rows * cols)]
    for k in range(house.num_prims):
        for r in range(c0[k, 1], c1[k, 1] + 1):
            for c in range(c0[k, 0], c1[k, 0] + 1):
                buckets[r * cols + c].append(k)
    counts = np.array([len(b) for b in buckets], np.int32)
    cell_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    items = np.array([k for b in buckets for k in b], np.int32)
    return origin, (cols, rows), cell_start, items
