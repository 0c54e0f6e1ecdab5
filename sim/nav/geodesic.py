"""Occupancy grids of a house and geodesic distances on them (ObjectNav's distance to goal, SPL).

    grid = OccupancyGrid.of(house, radius=0.1)
    field = grid.distance_field(house, goal=2)     # (rows, cols) metres to the nearest plant, inf if cut off

The grid samples the floor every ``resolution`` metres (cell centres at ``(i + 0.5) * res``). A
cell is free when an agent cylinder of ``radius`` centred there touches no obstacle (a primitive
whose bottom is below the agent's height), so paths on free cells are paths the agent can drive.

A distance field is a shortest-path (Dijkstra) distance over the 8-connected free cells, edge
costs ``res`` and ``res * sqrt(2)``, seeded at the free cells next to the goal's instances with
their straight distance to the instance's footprint. It is computed by synchronous relaxation
(Bellman-Ford on the grid, vectorised over all cells with NumPy), which reaches the same fixed
point as Dijkstra, in about as many sweeps as the longest shortest path has cells. Fields are
cached on the house per (goal, radius, height).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from embodied.sim.nav.house import House

RESOLUTION = 0.1
"""Metres per occupancy cell."""
AGENT_RADIUS = 0.1
AGENT_HEIGHT = 0.88
"""Habitat ObjectNav's agent: cylinder radius 0.1 m (0.18 in some configs), height 0.88 m."""


@dataclass(frozen=True)
class OccupancyGrid:
    """Where an agent's centre may be, on a regular grid over the house's floor."""

    free: np.ndarray
    """(rows, cols) bool; row i is y = (i + 0.5) * res, column j is x = (j + 0.5) * res."""
    resolution: float
    radius: float
    height: float

    @staticmethod
    def of(house: House, radius: float = AGENT_RADIUS, height: float = AGENT_HEIGHT, resolution: float = RESOLUTION):
        """The (cached) occupancy grid of ``house`` for an agent of this radius and height."""
        key = ("occupancy", radius, height, resolution)
        if key not in house._cache:
            cols = int(math.ceil(house.size[0] / resolution))
            rows = int(math.ceil(house.size[1] / resolution))
            centres = cell_centres(rows, cols, resolution).reshape(-1, 2)
            blocking = np.flatnonzero(house.z[:, 0] < height)
            dist = house.footprint_distance(centres, blocking).min(axis=1)
            free = (dist >= radius).reshape(rows, cols)
            house._cache[key] = OccupancyGrid(free, resolution, radius, height)
        return house._cache[key]

    def goal_seeds(self, house: House, goal: int) -> np.ndarray:
        """(rows, cols) float: free cells beside an instance of ``goal`` hold their distance to it, others inf."""
        rows, cols = self.free.shape
        centres = cell_centres(rows, cols, self.resolution).reshape(-1, 2)
        instances = house.instances_of(goal)
        if len(instances) == 0:
            return np.full((rows, cols), np.inf)
        dist = house.footprint_distance(centres, instances).min(axis=1).reshape(rows, cols)
        near = self.free & (dist <= self.radius + 1.5 * self.resolution)
        return np.where(near, dist, np.inf)

    def distance_field(self, house: House, goal: int) -> np.ndarray:
        """(rows, cols) float32 geodesic distance (m) from each free cell to the nearest ``goal`` instance."""
        key = ("distance", goal, self.radius, self.height, self.resolution)
        if key not in house._cache:
            house._cache[key] = relax(self.goal_seeds(house, goal), self.free, self.resolution).astype(np.float32)
        return house._cache[key]


def cell_centres(rows: int, cols: int, resolution: float) -> np.ndarray:
    """(rows, cols, 2) world (x, y) of each cell's centre."""
    xs = (np.arange(cols) + 0.5) * resolution
    ys = (np.arange(rows) + 0.5) * resolution
    return np.stack(np.meshgrid(xs, ys), axis=-1)


_NEIGHBOURS = [(dr, dc, math.hypot(dr, dc)) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]


def relax(seeds: np.ndarray, free: np.ndarray, resolution: float) -> np.ndarray:
    """Shortest 8-connected path lengths over ``free`` cells from ``seeds`` (initial distances, inf elsewhere)."""
    dist = np.where(free, seeds, np.inf)
    rows, cols = dist.shape
    while True:
        new = dist.copy()
        for dr, dc, step in _NEIGHBOURS:
            # new[r, c] = min(new[r, c], dist[r + dr, c + dc] + step)
            dst = new[max(-dr, 0) : rows - max(dr, 0), max(-dc, 0) : cols - max(dc, 0)]
            src = dist[max(dr, 0) : rows + min(dr, 0), max(dc, 0) : cols + min(dc, 0)]
            np.minimum(dst, src + step * resolution, out=dst)
        new[~free] = np.inf
        if np.array_equal(new, dist):
            return dist
        dist = new
