"""Control/Pendulum-v0: swing up an inverted pendulum, batched in torch.

Task
    Apply a torque to a pendulum hanging from a fixed pivot so that it swings up and stays
    upright. Dynamics, reward and reset follow Gymnasium's Pendulum-v1 exactly, so returns
    compare with published numbers (a good policy scores about -150 per 200-step episode).
Randomised
    Initial angle in [-pi, pi] and angular velocity in [-1, 1] rad/s. Domain randomisation may
    change ``mass``, ``length`` and ``gravity`` per env (see ``randomizable_params``).
Success
    None; the episode is truncated after 200 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, RandomizedParam, TaskCfg


@dataclass
class PendulumCfg(TaskCfg):
    max_speed: float = 8.0
    """Angular velocity limit (rad/s)."""
    max_torque: float = 2.0
    """Torque limit (N m); the action space is [-max_torque, max_torque]."""
    dt: float = 0.05
    """Integration step (s)."""
    gravity: float = 10.0
    mass: float = 1.0
    length: float = 1.0


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    return ((x + math.pi) % (2 * math.pi)) - math.pi


class PendulumEnv(BatchedEnv):
    default_max_episode_steps = 200

    def __init__(self, cfg: PendulumCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        high = np.array([1.0, 1.0, cfg.max_speed], dtype=np.float32)
        self._set_spaces(
            gymnasium.spaces.Box(-high, high, dtype=np.float32),
            gymnasium.spaces.Box(-cfg.max_torque, cfg.max_torque, shape=(1,), dtype=np.float32),
        )
        n, dev = self.num_envs, self.device
        self.theta = torch.zeros(n, device=dev)
        self.theta_dot = torch.zeros(n, device=dev)
        self.mass = torch.full((n,), cfg.mass, device=dev)
        self.length = torch.full((n,), cfg.length, device=dev)
        self.gravity = torch.full((n,), cfg.gravity, device=dev)
        self._last_torque = torch.zeros(n, device=dev)

    def randomizable_params(self) -> dict[str, RandomizedParam]:
        c = self.cfg
        return {
            "mass": RandomizedParam("mass", c.mass, 0.25 * c.mass, 4.0 * c.mass),
            "length": RandomizedParam("length", c.length, 0.5 * c.length, 2.0 * c.length),
            "gravity": RandomizedParam("gravity", c.gravity, 0.5 * c.gravity, 1.5 * c.gravity),
        }

    def set_params(self, env_ids: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            getattr(self, name)[env_ids] = value.to(self.device, torch.float32)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        k = len(env_ids)
        u = torch.rand((2, k), generator=self.generator, device=self.device)
        self.theta[env_ids] = (2 * u[0] - 1) * math.pi
        self.theta_dot[env_ids] = 2 * u[1] - 1
        self._last_torque[env_ids] = 0.0

    def _apply_action(self, action: torch.Tensor) -> None:
        c = self.cfg
        u = action[:, 0].clamp(-c.max_torque, c.max_torque)
        # The reward is computed on the state before the update, as in Gymnasium.
        self._cost = angle_normalize(self.theta) ** 2 + 0.1 * self.theta_dot**2 + 0.001 * u**2
        g, m, length = self.gravity, self.mass, self.length
        theta_dot = self.theta_dot + (3 * g / (2 * length) * torch.sin(self.theta) + 3.0 / (m * length**2) * u) * c.dt
        self.theta_dot = theta_dot.clamp(-c.max_speed, c.max_speed)
        self.theta = self.theta + self.theta_dot * c.dt
        self._last_torque = u

    def _observe(self) -> torch.Tensor:
        return torch.stack([torch.cos(self.theta), torch.sin(self.theta), self.theta_dot], dim=-1)

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return {"swing_up": -self._cost}, terminated

    def _sim_state(self) -> dict[str, Any]:
        names = ("theta", "theta_dot", "mass", "length", "gravity", "_last_torque")
        return {n: getattr(self, n).clone() for n in names}

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value.clone().to(self.device))

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        img = np.full((height, width, 3), 255, dtype=np.uint8)
        cx, cy, r = width // 2, height // 2, 0.4 * min(width, height)
        th = float(self.theta[env_id])
        # theta = 0 is upright; image y grows downwards.
        tip = (int(cx + r * math.sin(th)), int(cy - r * math.cos(th)))
        cv2.line(img, (cx, cy), tip, (204, 77, 77), max(2, width // 40), cv2.LINE_AA)
        cv2.circle(img, (cx, cy), max(2, width // 80), (0, 0, 0), -1, cv2.LINE_AA)
        torque = float(self._last_torque[env_id]) / self.cfg.max_torque
        cv2.ellipse(img, (cx, cy), (int(r / 3), int(r / 3)), -90, 0, 180 * torque, (80, 80, 80), 2, cv2.LINE_AA)
        return img
