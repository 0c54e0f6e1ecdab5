"""Nav/Darkroom-v0: find a hidden goal cell in a dark grid, and remember it across a trial's episodes.

Task
    The Darkroom of the Decision-Pretrained Transformer paper (Lee et al. 2023), as ReLIC ships it
    for small in-context RL runs: a ``size`` x ``size`` grid (10 x 10), five actions (0 stay,
    1 up, 2 down, 3 left, 4 right; a move into a wall leaves the agent where it is), reward 1 on
    every step that ends on the goal cell, 100 steps per episode (truncated, never terminated).
    The goal is hidden (the observation is the agent's cell only) and fixed for a whole **trial**
    of ``trial_episodes`` consecutive episodes, so an in-context learner explores in the first
    episodes and walks straight to the goal in the later ones. Each episode starts at the corner
    (0, 0), as DPT's code and ReLIC's copy of it do (``random_start=True``: at a uniformly random
    cell, a harder variant: the way back to a remembered goal differs every episode). The action space is a Box of five
    scores in [-1, 1] and the env takes their argmax (as ``Nav/ObjectNav-v0`` does), so a
    discrete policy sends a one-hot and continuous-action learners work unchanged.

Observation
    ``(N, 4)`` with ``obs_mode="xy"`` (the default: the cell's x and y, DPT's state, scaled to
    [-1, 1]) or ``(N, size*size + 2)`` with ``"onehot"`` (the agent's cell, one-hot; both methods
    learn about half as much in 1M steps from it), then the previous step's reward (0 on an
    episode's first step: in-context learners take the reward as an input, and in the observation
    it reaches a policy that only acts, as in evaluation), then 1 on the first step of a trial and
    0 otherwise (a learner with memory clears it there: episode ends are ``truncated``, and only a
    new trial means a new goal). No goal information.

Info (besides the contract's)
    ``episode_in_trial`` (N,) long: index within its trial of the episode the step belonged to;
    ``trial_done`` (N,) bool: that episode was the trial's last (the next observation starts a
    new trial); ``success`` (N,) bool: the agent stood on the goal at least once in the episode.
    All are read where ``terminated | truncated``, like ``episode_return``.

Randomised
    The goal cell per trial, drawn from the ``goals`` set: "train" (the cells with
    ``(x + 2 y) % heldout_every != 0``), "heldout" (the others: 20 of 100 cells, spread over the
    grid, never a training goal) or "all". The start cell per episode with ``random_start``. No
    physical parameters.

Success
    Reaching the goal in an episode. Once the goal is known the optimal return is
    ``101 - (its Manhattan distance from the start)``: on average 92 from the corner and 94 from a random cell over the held-out goals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, TaskCfg

ACTION_NAMES = ("stay", "up", "down", "left", "right")
_MOVES = ((0, 0), (0, 1), (0, -1), (-1, 0), (1, 0))


@dataclass
class DarkroomCfg(TaskCfg):
    size: int = 10
    """Grid side length in cells."""
    trial_episodes: int = 5
    """Episodes per trial: the goal and the learner's memory last this long."""
    random_start: bool = False
    """Start each episode at a uniformly random cell; False (DPT's and ReLIC's Darkroom): always at (0, 0)."""
    obs_mode: Literal["onehot", "xy"] = "xy"
    """The agent's cell as (x, y) scaled to [-1, 1] (DPT's state), or as a one-hot vector."""
    goals: Literal["train", "heldout", "all"] = "train"
    """Which goal cells trials draw from; evaluate generalisation with "heldout" (unseen goals)."""
    heldout_every: int = 5
    """Cells with ``(x + 2 y) % heldout_every == 0`` are the held-out goals."""


def goal_cells(size: int, goals: str, heldout_every: int) -> torch.Tensor:
    """Flat indices ``y * size + x`` of the cells a trial may draw its goal from."""
    cells = torch.arange(size * size)
    heldout = (cells % size + 2 * (cells // size)) % heldout_every == 0
    if goals == "train":
        return cells[~heldout]
    if goals == "heldout":
        return cells[heldout]
    if goals == "all":
        return cells
    raise ValueError(f"goals must be 'train', 'heldout' or 'all', got {goals!r}")


class DarkroomEnv(BatchedEnv):
    default_max_episode_steps = 100

    def __init__(self, cfg: DarkroomCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        if cfg.size < 2 or cfg.trial_episodes < 1 or cfg.heldout_every < 2:
            raise ValueError(
                f"Darkroom needs size >= 2, trial_episodes >= 1 and heldout_every >= 2 "
                f"(got {cfg.size}, {cfg.trial_episodes}, {cfg.heldout_every})"
            )
        obs_dim = (cfg.size * cfg.size if cfg.obs_mode == "onehot" else 2) + 2
        low = 0.0 if cfg.obs_mode == "onehot" else -1.0
        self._set_spaces(
            gymnasium.spaces.Box(low, 1.0, (obs_dim,), np.float32),
            gymnasium.spaces.Box(-1.0, 1.0, (len(ACTION_NAMES),), np.float32),
        )
        n, dev = self.num_envs, self.device
        self.goal_set = goal_cells(cfg.size, cfg.goals, cfg.heldout_every).to(dev)
        self.moves = torch.tensor(_MOVES, device=dev)
        self.pos = torch.zeros(n, 2, dtype=torch.long, device=dev)
        """The agent's cell (x, y)."""
        self.goal = torch.zeros(n, 2, dtype=torch.long, device=dev)
        self.episode_index = torch.zeros(n, dtype=torch.long, device=dev)
        """Index of the current episode within its trial."""
        self.reached = torch.zeros(n, dtype=torch.bool, device=dev)
        """The agent has stood on the goal in the current episode."""
        self.last_reward = torch.zeros(n, device=dev)
        self._new_trial = torch.ones(n, dtype=torch.bool, device=dev)
        """Envs whose next reset starts a new trial (explicit ``reset`` calls always do)."""
        self._reset_ids(self.all_env_ids)

    # ------------------------------------------------------------------ trials and episodes
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """A reset from outside starts a new trial (new goal); autoresets continue the trial."""
        ids = self.all_env_ids if env_ids is None else torch.as_tensor(env_ids, device=self.device).long()
        self._new_trial[ids] = True
        return super().reset(seed=seed, options=options, env_ids=ids)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        cfg, dev = self.cfg, self.device
        new_trial = self._new_trial[env_ids] | (self.episode_index[env_ids] + 1 >= cfg.trial_episodes)
        draws = torch.randint(0, 2**31 - 1, (2, len(env_ids)), generator=self.generator, device=dev)
        goal = self.goal_set[draws[0] % len(self.goal_set)]
        goal_xy = torch.stack([goal % cfg.size, goal // cfg.size], dim=-1)
        self.goal[env_ids] = torch.where(new_trial.unsqueeze(-1), goal_xy, self.goal[env_ids])
        self.episode_index[env_ids] = torch.where(new_trial, 0, self.episode_index[env_ids] + 1)
        start = draws[1] % (cfg.size * cfg.size) if cfg.random_start else torch.zeros_like(draws[1])
        self.pos[env_ids] = torch.stack([start % cfg.size, start // cfg.size], dim=-1)
        self.reached[env_ids] = False
        self.last_reward[env_ids] = 0.0
        self._new_trial[env_ids] = False

    def _apply_action(self, action: torch.Tensor) -> None:
        self.pos = (self.pos + self.moves[action.argmax(dim=1)]).clamp(0, self.cfg.size - 1)

    def _observe(self) -> torch.Tensor:
        cfg = self.cfg
        trial_start = ((self.episode_index == 0) & (self.episode_length == 0)).float()
        if cfg.obs_mode == "onehot":
            cell = torch.nn.functional.one_hot(self.pos[:, 1] * cfg.size + self.pos[:, 0], cfg.size * cfg.size).float()
        else:
            cell = self.pos.float() * (2.0 / (cfg.size - 1)) - 1.0
        return torch.cat([cell, self.last_reward.unsqueeze(-1), trial_start.unsqueeze(-1)], dim=-1)

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        on_goal = (self.pos == self.goal).all(dim=-1)
        self.reached |= on_goal
        self.last_reward = on_goal.float()
        # What the step's info reports about the episode, read before a same-step autoreset changes it.
        self._step_info = {"episode_in_trial": self.episode_index.clone(), "success": self.reached.clone()}
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return {"goal": on_goal.float()}, terminated

    def step(
        self, actions: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """The contract's step, plus ``episode_in_trial``, ``trial_done`` and ``success`` in ``info``."""
        obs, reward, terminated, truncated, info = super().step(actions)
        info.update(self._step_info)
        last = info["episode_in_trial"] + 1 >= self.cfg.trial_episodes
        info["trial_done"] = (terminated | truncated) & last
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------ state and rendering
    _STATE = ("pos", "goal", "episode_index", "reached", "last_reward", "_new_trial")

    def _sim_state(self) -> dict[str, Any]:
        return {name: getattr(self, name).clone() for name in self._STATE}

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, state[name].clone().to(self.device))

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        size = self.cfg.size
        img = np.full((size, size, 3), 30, dtype=np.uint8)
        gx, gy = self.goal[env_id].tolist()
        ax, ay = self.pos[env_id].tolist()
        img[size - 1 - gy, gx] = (60, 160, 60)  # row 0 is the top: y grows upwards
        img[size - 1 - ay, ax] = (230, 200, 40)
        rows = np.minimum(np.arange(height) * size // height, size - 1)
        cols = np.minimum(np.arange(width) * size // width, size - 1)
        return img[rows][:, cols]
