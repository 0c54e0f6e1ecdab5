"""Habitat's discrete agent: stop, move forward 0.25 m, turn left / right 30 degrees; all envs in one launch.

    mover = AgentMover(AgentCfg(), num_envs, device)
    collided = mover.step(scene, pose, actions)     # pose (N, 3) x, y, heading: updated in place

The agent is an upright cylinder (radius 0.1 m by default). A forward move is cut into
``substeps`` pieces (each shorter than any wall is thick, so nothing is tunnelled through); each
piece is taken whole if the cylinder stays clear of every obstacle, else only its x part, else
only its y part (sliding along axis-aligned walls, as Habitat's navmesh does), else dropped. An
obstacle is any primitive whose bottom is below the agent's height (a lintel above a door is
not). A position is clear when its horizontal distance to every obstacle footprint is at least
the radius, found through the scene's 2-D grid, so the agent never ends inside anything if it
starts clear. ``collided`` is True where some piece of the move was blocked (Habitat's
``collisions.is_collision``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import warp as wp

from embodied.sim.nav.scene import Scene, SceneBatch, wp_device, wp_stream

STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT = 0, 1, 2, 3
ACTION_NAMES: tuple[str, ...] = ("stop", "move_forward", "turn_left", "turn_right")
"""Habitat's action ids and names."""


@dataclass(frozen=True)
class AgentCfg:
    """Size of the agent's cylinder and of its discrete moves (Habitat's defaults)."""

    radius: float = 0.1
    height: float = 0.88
    forward_step: float = 0.25
    """Metres per move_forward."""
    turn_angle: float = 30.0
    """Degrees per turn_left / turn_right."""
    substeps: int = 5


@wp.func
def clear(scene: Scene, e: int, x: float, y: float, radius: float, height: float) -> bool:
    """True when a cylinder at (x, y) is at least ``radius`` from every obstacle footprint of env ``e``."""
    cell = scene.cell
    o = scene.origin[e]
    ncols = scene.dims[e, 0]
    nrows = scene.dims[e, 1]
    c0 = wp.max(int(wp.floor((x - radius - o[0]) / cell)), 0)
    c1 = wp.min(int(wp.floor((x + radius - o[0]) / cell)), ncols - 1)
    r0 = wp.max(int(wp.floor((y - radius - o[1]) / cell)), 0)
    r1 = wp.min(int(wp.floor((y + radius - o[1]) / cell)), nrows - 1)
    if c0 > c1 or r0 > r1:
        return False  # outside the house's grid
    for r in range(r0, r1 + 1):
        for c in range(c0, c1 + 1):
            cid = r * ncols + c
            for k in range(scene.cell_start[e, cid], scene.cell_start[e, cid + 1]):
                p = scene.items[e, k]
                if scene.z[e, p][0] < height:
                    g = scene.geom[e, p]
                    d = wp.float32(0.0)
                    if scene.kind[e, p] == 1:
                        d = wp.length(wp.vec2(x - g[0], y - g[1])) - g[2]
                    else:
                        dx = wp.max(wp.max(g[0] - x, x - g[2]), 0.0)
                        dy = wp.max(wp.max(g[1] - y, y - g[3]), 0.0)
                        d = wp.length(wp.vec2(dx, dy))
                    if d < radius:
                        return False
    return True


@wp.kernel(enable_backward=False)
def move_kernel(
    scene: Scene,
    actions: wp.array(dtype=wp.int32),
    pose: wp.array(dtype=wp.vec3),
    radius: float,
    height: float,
    forward_step: float,
    turn: float,
    substeps: int,
    collided: wp.array(dtype=wp.int32),
):
    e = wp.tid()
    q = pose[e]
    a = actions[e]
    hit = wp.int32(0)
    x = q[0]
    y = q[1]
    h = q[2]
    if a == 1:
        dx = wp.cos(h) * forward_step / float(substeps)
        dy = wp.sin(h) * forward_step / float(substeps)
        for _ in range(substeps):
            if clear(scene, e, x + dx, y + dy, radius, height):
                x += dx
                y += dy
            else:
                hit = 1
                if clear(scene, e, x + dx, y, radius, height):
                    x += dx
                elif clear(scene, e, x, y + dy, radius, height):
                    y += dy
    elif a == 2 or a == 3:
        if a == 2:
            h += turn
        else:
            h -= turn
        # wrap to [-pi, pi)
        h = h - 2.0 * wp.pi * wp.floor((h + wp.pi) / (2.0 * wp.pi))
    pose[e] = wp.vec3(x, y, h)
    collided[e] = hit


class AgentMover:
    """Applies one discrete action per env to the agents' poses (see the module docstring)."""

    def __init__(self, cfg: AgentCfg, num_envs: int, device: str | torch.device = "cpu") -> None:
        if cfg.radius <= 0 or cfg.height <= 0 or cfg.forward_step <= 0 or cfg.substeps < 1:
            raise ValueError(f"agent needs radius, height, forward_step > 0 and substeps >= 1, got {cfg}")
        if cfg.forward_step / cfg.substeps > 0.1:
            raise ValueError(
                f"agent substeps of {cfg.forward_step / cfg.substeps:.3f} m could pass through a 0.1 m wall;"
                f" raise substeps to at least {math.ceil(cfg.forward_step / 0.1)}"
            )
        self.cfg = cfg
        self.device = torch.device(device)
        self.collided = torch.zeros(num_envs, dtype=torch.int32, device=self.device)

    def step(self, scene: SceneBatch, pose: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Move every env's agent in place; ``actions`` (N,) int in 0..3; returns (N,) bool collided."""
        cfg = self.cfg
        wp.launch(
            move_kernel,
            dim=len(actions),
            inputs=[
                scene.struct,
                wp.from_torch(actions.to(torch.int32).contiguous()),
                wp.from_torch(pose, dtype=wp.vec3),
                cfg.radius,
                cfg.height,
                cfg.forward_step,
                math.radians(cfg.turn_angle),
                cfg.substeps,
                wp.from_torch(self.collided),
            ],
            device=wp_device(self.device),
            stream=wp_stream(self.device),
        )
        return self.collided.bool()
