"""Decision rate: the policy acts once every ``steps`` primitive env steps.

One call of :meth:`DecisionRate.step` runs ``steps`` primitive steps of the wrapped env.

Actions
    A ``(num_envs, *action_shape)`` action is repeated for all primitive steps. A sequence
    ``(num_envs, steps, *action_shape)`` plays ``action[:, i]`` at primitive step ``i``, so
    sequence policies (action chunks) can play distinct actions. Both shapes are always
    accepted; ``single_action_space`` is the primitive space, or with ``action_sequence=True``
    the sequence space ``(steps, *action_shape)`` (what a learner then sizes its output to).
Rewards
    The undiscounted sum over the primitive steps the env was still in its episode
    (``info["reward_terms"]`` likewise).
Envs that finish part-way (terminated or truncated at primitive step ``j < steps - 1``)
    stop accumulating at ``j``: their reward, ``terminated``, ``truncated``,
    ``info["final_obs"]``, ``episode_return`` and ``episode_length`` are those of step ``j``.
    The base env autoresets them at ``j`` and they keep stepping with the remaining actions,
    but those steps are discarded: after the ``steps`` primitive steps the wrapper calls the
    partial ``reset(env_ids=...)`` for exactly these envs, so their new episode starts cleanly
    (fresh initial state, inner adapters' queues restarted) and the returned ``obs`` is that
    fresh observation. An env that finishes at the last primitive step keeps the base env's
    autoreset observation. Episode lengths stay counted in primitive steps, so a task's
    ``max_episode_steps`` lasts ``ceil(max_episode_steps / steps)`` decisions.
Primitive transitions
    For tensor observations ``info["primitive"]`` holds the single-step transitions inside the
    decision, so learners that train on the fine time scale (SRL's critics and model) see
    every primitive step: ``obs``/``next_obs`` (n, k, obs_dim) (``next_obs`` is each step's
    final observation, before any autoreset), ``action`` (n, k, *action_shape), ``reward``
    and ``terminated`` (n, k), and ``valid`` (n, k) bool, False for the discarded steps after
    an env finished part-way. The first step's ``obs`` is the observation the wrapper last
    returned (from ``step`` or ``reset``), which it keeps (and checkpoints) for this purpose.
Other info
    ``info["safety"]`` reports of an inner :class:`~embodied.sim2real.safety.ActionSafety` are
    merged over the primitive steps (masks OR, counts add); any other key is the last step's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from embodied.sim.env import BatchedEnv, BatchedWrapper, Obs
from embodied.sim2real._common import as_action, where_obs
from embodied.sim2real.safety import merge_safety_reports


@dataclass
class RateCfg:
    steps: int = 2
    """Primitive env steps per decision (the policy's action is held, or played as a sequence, for that long)."""
    action_sequence: bool = False
    """Expose ``single_action_space`` as the sequence space (steps, *action_shape) rather than one action."""


class DecisionRate(BatchedWrapper):
    """Run ``cfg.steps`` primitive steps per call, summing rewards; envs finishing part-way restart cleanly."""

    def __init__(self, env: BatchedEnv, cfg: RateCfg) -> None:
        if not isinstance(cfg.steps, int) or cfg.steps < 1:
            raise ValueError(f"rate steps must be an int >= 1, got {cfg.steps!r}")
        super().__init__(env)
        self.cfg = cfg
        self.primitive_action_space: gymnasium.spaces.Box = env.single_action_space
        self.primitive_shape = tuple(self.primitive_action_space.shape)
        if cfg.action_sequence:
            space = self.primitive_action_space
            tile = (cfg.steps, *([1] * len(self.primitive_shape)))
            self.single_action_space = gymnasium.spaces.Box(
                np.tile(space.low, tile), np.tile(space.high, tile), dtype=space.dtype
            )
            self.action_space = batch_space(self.single_action_space, env.num_envs)
            self.action_low = torch.as_tensor(self.single_action_space.low, device=env.device)
            self.action_high = torch.as_tensor(self.single_action_space.high, device=env.device)
        self._obs: Obs | None = None
        """The observation last returned: the first primitive step's ``obs`` in ``info["primitive"]``."""

    @property
    def primitive_steps_per_step(self) -> int:  # type: ignore[override]
        return self.env.primitive_steps_per_step * self.cfg.steps

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None):
        obs, info = self.env.reset(seed=seed, options=options, env_ids=env_ids)
        self._obs = obs
        return obs, info

    def _sequence(self, actions: Any) -> torch.Tensor:
        """``actions`` as a (num_envs, steps, *action_shape) tensor."""
        n, k = self.num_envs, self.cfg.steps
        action = as_action(self, actions, (n, *self.primitive_shape), (n, k, *self.primitive_shape))
        if action.dim() == len(self.primitive_shape) + 1:
            action = action.unsqueeze(1).expand(n, k, *self.primitive_shape)
        return action

    def check_action(self, actions):
        seq = self._sequence(actions)
        return torch.stack([self.env.check_action(seq[:, i]) for i in range(self.cfg.steps)], dim=1)

    def random_action(self) -> torch.Tensor:
        if self.cfg.action_sequence:
            return torch.stack([self.env.random_action() for _ in range(self.cfg.steps)], dim=1)
        return self.env.random_action()

    def step(self, actions):
        seq = self._sequence(actions)
        n, k = self.num_envs, self.cfg.steps
        active = torch.ones(n, dtype=torch.bool, device=self.device)
        restart = torch.zeros(n, dtype=torch.bool, device=self.device)
        terminated = torch.zeros(n, dtype=torch.bool, device=self.device)
        truncated = torch.zeros(n, dtype=torch.bool, device=self.device)
        reward = torch.zeros(n, device=self.device)
        terms: dict[str, torch.Tensor] = {}
        final: Obs | None = None
        ep_return = ep_length = None
        safety = None
        record = isinstance(self._obs, torch.Tensor)  # primitive transitions for tensor observations only
        steps: list[tuple[torch.Tensor, ...]] = []
        obs = self._obs
        for i in range(k):
            before = obs
            obs, r, te, tr, info = self.env.step(seq[:, i])
            if record:
                steps.append((before, seq[:, i], r, info["final_obs"], te, active.clone()))
            reward = reward + torch.where(active, r, torch.zeros_like(r))
            for name, value in info.get("reward_terms", {}).items():
                terms[name] = terms.get(name, torch.zeros_like(value)) + torch.where(active, value, torch.zeros_like(value))
            final = info["final_obs"] if final is None else where_obs(active, info["final_obs"], final)
            ep_return = info["episode_return"] if ep_return is None else torch.where(active, info["episode_return"], ep_return)
            ep_length = info["episode_length"] if ep_length is None else torch.where(active, info["episode_length"], ep_length)
            if "safety" in info:
                safety = merge_safety_reports(safety, info["safety"])
            finished = active & (te | tr)
            terminated |= finished & te
            truncated |= finished & tr
            if i < k - 1:
                restart |= finished
            active &= ~finished
        if restart.any():
            fresh, _ = self.env.reset(env_ids=restart.nonzero().squeeze(-1))
            obs = where_obs(restart, fresh, obs)
        info = {**info, "reward_terms": terms, "final_obs": final, "episode_return": ep_return, "episode_length": ep_length}
        if safety is not None:
            info["safety"] = safety
        if record:
            names = ("obs", "action", "reward", "next_obs", "terminated", "valid")
            info["primitive"] = {name: torch.stack(column, dim=1) for name, column in zip(names, zip(*steps, strict=True), strict=True)}
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def _wrapper_state(self) -> dict[str, Any]:
        return {"obs": self._obs}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self._obs = state.get("obs")

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.setdefault("adapter_cfgs", {})["rate"] = dataclasses.asdict(self.cfg)
        return out
