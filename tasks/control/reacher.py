"""Control/Reacher-v0: move a two-link arm's fingertip to a target, batched MuJoCo (Gymnasium Reacher-v5).

Task
    Apply torques at the two joints of a planar arm so that its fingertip reaches a target
    placed at random. Model, dynamics, observation, reward (minus the fingertip-target
    distance, minus the squared action) and reset follow Gymnasium's Reacher-v5 exactly; a good
    policy scores about -4 per 50-step episode.
Randomised
    Joint angles: the model's plus uniform noise in [-0.1, 0.1]; joint velocities: uniform in
    [-0.005, 0.005]; target: uniform in the disc of radius 0.2 around the arm's base. Domain
    randomisation may change ``mass_scale``, ``damping_scale`` and ``actuator_gain_scale`` per env.
Success
    None; the episode is truncated after 50 steps (the fingertip ending within about 0.01 of
    the target is a reasonable success criterion).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embodied.sim.env import TaskCfg
from embodied.tasks.control.mujoco_task import MujocoTask


@dataclass
class ReacherCfg(TaskCfg):
    xml_file: str = "reacher.xml"
    """A model in Gymnasium's assets folder, or a path."""
    frame_skip: int = 2
    """MuJoCo steps per env step (dt = 0.02 s)."""
    reward_dist_weight: float = 1.0
    """Weight of the fingertip-target distance penalty."""
    reward_control_weight: float = 1.0
    """Weight of the squared-action penalty."""
    reset_angle_noise: float = 0.1
    """Half-width of the uniform noise added to the initial joint angles."""
    reset_velocity_noise: float = 0.005
    """Half-width of the uniform initial joint velocities."""
    goal_radius: float = 0.2
    """Targets are drawn uniformly in the open disc of this radius."""
    sim_threads: int = 0
    """Threads stepping the envs (0: one per CPU core, at most 8); results do not depend on it."""


class ReacherEnv(MujocoTask):
    default_max_episode_steps = 50
    body_names = ("fingertip", "target")
    param_ranges = {"mass_scale": (0.5, 2.0), "damping_scale": (0.5, 2.0), "actuator_gain_scale": (0.75, 1.25)}
    camera = {"lookat": (0.0, 0.0, 0.0), "distance": 0.9, "elevation": -90.0, "azimuth": 90.0}

    def _initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        qpos = self.init_qpos + self._uniform((n, self.sim.model.nq), -c.reset_angle_noise, c.reset_angle_noise)
        qpos[:, -2:] = self._sample_goals(n)
        qvel = self.init_qvel + self._uniform((n, self.sim.model.nv), -c.reset_velocity_noise, c.reset_velocity_noise)
        qvel[:, -2:] = 0.0
        return qpos, qvel

    def _sample_goals(self, n: int) -> torch.Tensor:
        """``n`` points uniform in the disc of radius ``goal_radius`` (rejection sampling from the square)."""
        r = self.cfg.goal_radius
        goals = torch.empty((n, 2), dtype=torch.float64, device=self.device)
        todo = torch.ones(n, dtype=torch.bool, device=self.device)
        while todo.any():
            k = int(todo.sum())
            candidate = self._uniform((k, 2), -r, r)
            ids = todo.nonzero().squeeze(-1)
            accepted = candidate.norm(dim=-1) < r
            goals[ids[accepted]] = candidate[accepted]
            todo[ids[accepted]] = False
        return goals

    def _fingertip_to_target(self) -> torch.Tensor:
        xpos = self.xpos
        return xpos[:, 0] - xpos[:, 1]

    def _observe(self) -> torch.Tensor:
        qpos, qvel = self.qpos, self.qvel
        theta = qpos[:, :2]
        parts = [theta.cos(), theta.sin(), qpos[:, 2:], qvel[:, :2], self._fingertip_to_target()[:, :2]]
        return torch.cat(parts, dim=-1).float()

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        c = self.cfg
        distance = -self._fingertip_to_target().norm(dim=-1) * c.reward_dist_weight
        terms = {"distance": distance.float(), "ctrl_cost": -self._ctrl_square(action) * c.reward_control_weight}
        return terms, torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
