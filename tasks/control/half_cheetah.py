"""Control/HalfCheetah-v0: make a planar cheetah run forward, batched MuJoCo (Gymnasium HalfCheetah-v5).

Task
    Apply torques at the six leg joints of a planar two-legged "cheetah" so that it runs
    forward as fast as it can. Model, dynamics, observation, reward (forward velocity - 0.1 *
    squared action) and reset follow Gymnasium's HalfCheetah-v5 exactly; good policies score
    about 10000-12000 per 1000-step episode.
Randomised
    Initial qpos: the model's plus uniform noise in [-0.1, 0.1]; initial qvel: Gaussian noise
    of standard deviation 0.1. Domain randomisation may change ``friction_scale``,
    ``mass_scale``, ``damping_scale`` and ``actuator_gain_scale`` per env.
Success
    None; the episode never terminates and is truncated after 1000 steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embodied.sim.env import TaskCfg
from embodied.tasks.control.mujoco_task import LOCOMOTION_PARAM_RANGES, MujocoTask


@dataclass
class HalfCheetahCfg(TaskCfg):
    xml_file: str = "half_cheetah.xml"
    """A model in Gymnasium's assets folder, or a path."""
    frame_skip: int = 5
    """MuJoCo steps per env step (dt = 0.05 s)."""
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 0.1
    reset_noise_scale: float = 0.1
    """Half-width of the uniform qpos noise and standard deviation of the Gaussian qvel noise."""
    exclude_current_positions_from_observation: bool = True
    """Leave the x position out of the observation."""
    sim_threads: int = 0
    """Threads stepping the envs (0: one per CPU core, at most 8); results do not depend on it."""


class HalfCheetahEnv(MujocoTask):
    default_max_episode_steps = 1000
    param_ranges = LOCOMOTION_PARAM_RANGES
    camera = {"track_body": "torso", "distance": 4.0, "elevation": -20.0, "azimuth": 90.0}

    def _initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        scale, model = self.cfg.reset_noise_scale, self.sim.model
        qpos = self.init_qpos + self._uniform((n, model.nq), -scale, scale)
        noise = torch.randn((n, model.nv), generator=self.generator, dtype=torch.float64, device=self.device)
        return qpos, self.init_qvel + scale * noise

    def _observe(self) -> torch.Tensor:
        position = self.qpos[:, 1:] if self.cfg.exclude_current_positions_from_observation else self.qpos
        return torch.cat([position, self.qvel], dim=-1).float()

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        c = self.cfg
        x_velocity = (self.qpos[:, 0] - self.qpos_before[:, 0]) / self.dt
        terms = {
            "forward": (c.forward_reward_weight * x_velocity).float(),
            "ctrl_cost": -c.ctrl_cost_weight * self._ctrl_square(action),
        }
        return terms, torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
