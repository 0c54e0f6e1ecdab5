"""Gymnasium's view of a suite task.

``gymnasium.make(id)`` builds :class:`SingleEnv`: one environment, NumPy in and out, the
standard ``gymnasium.Env`` API, so any library that speaks Gymnasium (Stable-Baselines3,
RLlib, ...) trains on suite tasks. ``gymnasium.make_vec(id, n,
vectorization_mode="vector_entry_point")`` calls :func:`make_vector_env` and gets the natively
batched torch env itself.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, map_obs


def make_vector_env(task_id: str, num_envs: int = 1, max_episode_steps: int | None = None, **overrides: Any) -> BatchedEnv:
    """Gymnasium's ``vector_entry_point``: the batched env on CPU (use ``embodied.make`` for a device)."""
    from embodied.tasks.registry import make

    device = overrides.pop("device", "cpu")
    backend = overrides.pop("backend", None)
    env = make(task_id, num_envs=num_envs, device=device, backend=backend, **overrides)
    if max_episode_steps is not None:
        env.max_episode_steps = int(max_episode_steps)
    return env


def _to_numpy(x: torch.Tensor, space: gymnasium.Space) -> np.ndarray:
    return x[0].detach().cpu().numpy().astype(space.dtype, copy=False)


class SingleEnv(gymnasium.Env):
    """One environment of a suite task, with NumPy observations and actions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, task_id: str, render_mode: str | None = None, **overrides: Any) -> None:
        from embodied.tasks.registry import make

        self.batched = make(task_id, num_envs=1, **overrides)
        self.observation_space = self.batched.single_observation_space
        self.action_space = self.batched.single_action_space
        if render_mode is not None and render_mode not in self.batched.metadata["render_modes"]:
            raise ValueError(f"{task_id}: render_mode {render_mode!r} not in {self.batched.metadata['render_modes']}")
        self.render_mode = render_mode
        # The batched env truncates on its own; Gymnasium's TimeLimit does the same at the same step.
        self.batched.max_episode_steps = 10**12

    def _convert(self, obs: Any) -> Any:
        if isinstance(obs, dict):
            return {k: _to_numpy(v, self.observation_space[k]) for k, v in obs.items()}
        return _to_numpy(obs, self.observation_space)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(2**31))
        self._seeded = True
        obs, _ = self.batched.reset(seed=seed, options=options)
        return self._convert(obs), {}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        batched_action = torch.as_tensor(np.asarray(action, dtype=np.float32)).unsqueeze(0)
        _, reward, terminated, truncated, info = self.batched.step(batched_action)
        # On a finished step the batched env has already reset; report where the episode ended.
        obs = self._convert(info["final_obs"])
        out_info = {k: float(v[0]) for k, v in info["reward_terms"].items()}
        return obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), out_info

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.batched.render(0)
        return None

    def close(self) -> None:
        self.batched.close()


__all__ = ["SingleEnv", "make_vector_env", "map_obs"]
