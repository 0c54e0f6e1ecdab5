"""Control/Hopper-v0: make a one-legged robot hop forward, batched MuJoCo (Gymnasium Hopper-v5).

Task
    Apply torques at the thigh, leg and foot joints of a planar one-legged robot so that it hops
    forward as fast as it can without falling. Model, dynamics, observation, reward (forward
    velocity + 1 per healthy step - 0.001 * squared action), termination and reset follow
    Gymnasium's Hopper-v5 exactly; good policies score about 3000-3500 per 1000-step episode.
Randomised
    Initial qpos and qvel: the model's plus uniform noise in [-0.005, 0.005]. Domain
    randomisation may change ``friction_scale``, ``mass_scale``, ``damping_scale`` and
    ``actuator_gain_scale`` per env.
Success
    None; the episode terminates when the hopper is unhealthy (torso height at most 0.7,
    |torso angle| at least 0.2, or any other state value outside (-100, 100)) and is
    truncated after 1000 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from embodied.sim.env import TaskCfg
from embodied.tasks.control.mujoco_task import LOCOMOTION_PARAM_RANGES, MujocoTask


@dataclass
class HopperCfg(TaskCfg):
    xml_file: str = "hopper.xml"
    """A model in Gymnasium's assets folder, or a path."""
    frame_skip: int = 4
    """MuJoCo steps per env step (dt = 0.008 s)."""
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-3
    healthy_reward: float = 1.0
    """Reward per step while healthy."""
    terminate_when_unhealthy: bool = True
    healthy_state_range: tuple[float, float] = (-100.0, 100.0)
    """Open range every qpos[2:] and qvel value must lie in to be healthy."""
    healthy_z_range: tuple[float, float] = (0.7, float("inf"))
    """Open range of the torso height."""
    healthy_angle_range: tuple[float, float] = (-0.2, 0.2)
    """Open range of the torso angle (rad)."""
    reset_noise_scale: float = 5e-3
    """Half-width of the uniform noise added to the initial qpos and qvel."""
    exclude_current_positions_from_observation: bool = True
    """Leave the x position out of the observation."""
    observation_velocity_clip: float = 10.0
    """Velocities are clipped to [-clip, clip] in the observation (not in the health check)."""
    sim_threads: int = 0
    """Threads stepping the envs (0: one per CPU core, at most 8); results do not depend on it."""


class HopperEnv(MujocoTask):
    default_max_episode_steps = 1000
    param_ranges = LOCOMOTION_PARAM_RANGES
    camera = {"track_body": "torso", "distance": 3.0, "elevation": -20.0, "azimuth": 90.0}

    def __init__(self, cfg: HopperCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        # Healthy iff low < state_vector[:, 1:] < high in every column: the torso height (z range),
        # the torso angle (angle range and state range), the other joints and the velocities
        # (state range). One comparison per side, the same result as Gymnasium's three checks.
        size = self.sim.model.nq + self.sim.model.nv - 1
        state_low, state_high = cfg.healthy_state_range
        low = torch.full((size,), state_low, dtype=torch.float64)
        high = torch.full((size,), state_high, dtype=torch.float64)
        low[0], high[0] = cfg.healthy_z_range
        low[1] = max(state_low, cfg.healthy_angle_range[0])
        high[1] = min(state_high, cfg.healthy_angle_range[1])
        self._healthy_low, self._healthy_high = low.to(self.device), high.to(self.device)

    def _observe(self) -> torch.Tensor:
        c = self.cfg
        position = self.qpos[:, 1:] if c.exclude_current_positions_from_observation else self.qpos
        velocity = self.qvel.clamp(-c.observation_velocity_clip, c.observation_velocity_clip)
        return torch.cat([position, velocity], dim=-1).float()

    def is_healthy(self) -> torch.Tensor:
        """(num_envs,) bool: the torso height and angle and every other state value within their healthy ranges."""
        state = self.state_vector[:, 1:]
        return ((self._healthy_low < state) & (state < self._healthy_high)).all(-1)

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        c = self.cfg
        x_velocity = (self.qpos[:, 0] - self.qpos_before[:, 0]) / self.dt
        healthy = self.is_healthy()
        terms = {
            "forward": (c.forward_reward_weight * x_velocity).float(),
            "healthy": healthy.float() * c.healthy_reward,
            "ctrl_cost": -c.ctrl_cost_weight * self._ctrl_square(action),
        }
        return terms, ~healthy & c.terminate_when_unhealthy
