"""Control/InvertedPendulum-v0: balance a pole on a cart, batched MuJoCo (Gymnasium InvertedPendulum-v5).

Task
    Push a cart along a rail so that the pole hinged on it stays upright. Model, dynamics,
    observation (qpos, qvel), reward (+1 per step while upright), termination and reset follow
    Gymnasium's InvertedPendulum-v5 exactly; a perfect policy scores 1000 per episode.
Randomised
    Initial qpos and qvel: the model's plus uniform noise in [-0.01, 0.01]. Domain
    randomisation may change ``mass_scale``, ``damping_scale`` and ``actuator_gain_scale`` per env.
Success
    Keeping the pole within 0.2 rad of upright for all 1000 steps (the episode terminates as
    soon as it leaves that range or the state stops being finite).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embodied.sim.env import TaskCfg
from embodied.tasks.control.mujoco_task import MujocoTask


@dataclass
class InvertedPendulumCfg(TaskCfg):
    xml_file: str = "inverted_pendulum.xml"
    """A model in Gymnasium's assets folder, or a path."""
    frame_skip: int = 2
    """MuJoCo steps per env step (dt = 0.04 s)."""
    reset_noise_scale: float = 0.01
    """Half-width of the uniform noise added to the initial qpos and qvel."""
    max_pole_angle: float = 0.2
    """The episode terminates when |pole angle| exceeds this (rad)."""
    sim_threads: int = 0
    """Threads stepping the envs (0: one per CPU core, at most 8); results do not depend on it."""


class InvertedPendulumEnv(MujocoTask):
    default_max_episode_steps = 1000
    param_ranges = {"mass_scale": (0.5, 2.0), "damping_scale": (0.5, 2.0), "actuator_gain_scale": (0.75, 1.25)}
    camera = {"lookat": (0.0, 0.0, 0.3), "distance": 2.04, "elevation": -10.0, "azimuth": 90.0}

    def _observe(self) -> torch.Tensor:
        return torch.cat([self.qpos, self.qvel], dim=-1).float()

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        state = torch.cat([self.qpos, self.qvel], dim=-1)
        terminated = ~torch.isfinite(state).all(-1) | (state[:, 1].abs() > self.cfg.max_pole_angle)
        return {"alive": (~terminated).float()}, terminated
