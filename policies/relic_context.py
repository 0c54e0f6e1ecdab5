"""The per-env context of an in-context learner: a timeline of steps shared by a batch of envs.

Position ``i`` of the timeline is the ``i``-th step since the oldest kept one, the same step for
every env of the batch, so a chunk of steps is one slice ``[p0, p)`` for all envs and a KV cache
is one tensor per layer. Each position stores the raw token (observation features, previous
action, episode-boundary flag, step within the episode), the trial it belongs to (``seg``: trial
ids never repeat within an env, so "same trial" is one comparison), and what PPO needs (action,
log-probability, value, reward, trial-level done). Trials of different envs need not be aligned:
attention masks by ``seg``. :meth:`Context.compact` drops steps no env's current trial needs
(and, past the capacity, the oldest steps: a sliding window).
"""

from __future__ import annotations

from typing import Any

import torch

from embodied.policies.kv_transformer import KVCache, extended

_TIMELINE = ("tokens", "seg", "starts", "actions", "logprobs", "values", "rewards", "dones")
_PER_ENV = ("trial_id", "boundary", "prev_action", "step_in_episode")


class Context:
    """A batch of ``batch`` envs' timelines of up to ``capacity`` steps (one spare slot for a bootstrap token).

    With ``max_capacity`` above ``capacity`` the timeline (and its cache) doubles when full, up to
    ``max_capacity``: an evaluation of many envs allocates for the trials it plays, not for the
    longest context it may reach (200 envs at 64k steps would be 13 GB of cache).
    """

    def __init__(
        self,
        batch: int,
        capacity: int,
        token_dim: int,
        num_actions: int,
        device: torch.device,
        max_capacity: int | None = None,
    ) -> None:
        self.batch, self.capacity, self.device = batch, capacity, device
        self.max_capacity = max(capacity, max_capacity or capacity)
        slots = capacity + 1
        self.tokens = torch.zeros(batch, slots, token_dim, device=device)
        self.seg = torch.zeros(batch, slots, dtype=torch.long, device=device)
        self.starts = torch.zeros(batch, slots, dtype=torch.bool, device=device)
        """A new trial starts at this position (the recurrent baseline clears its memory there)."""
        self.actions = torch.zeros(batch, slots, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(batch, slots, device=device)
        self.values = torch.zeros(batch, slots, device=device)
        self.rewards = torch.zeros(batch, slots, device=device)
        self.dones = torch.zeros(batch, slots, device=device)
        """1 where the step ended a trial (GAE does not bootstrap across it)."""
        self.trial_id = torch.zeros(batch, dtype=torch.long, device=device)
        self.boundary = torch.zeros(batch, dtype=torch.bool, device=device)
        """An episode ended since the last step: the next token carries the boundary flag."""
        self.num_actions = num_actions
        self.prev_action = torch.full((batch,), num_actions, dtype=torch.long, device=device)
        self.step_in_episode = torch.zeros(batch, dtype=torch.long, device=device)
        self.p = 0
        """Steps in the timeline (the next step goes to position ``p``)."""
        self.p0 = 0
        """First step not yet used by an update."""
        self.pf = 0
        """First step of the current rollout: not yet used by a full update (``pf <= p0``)."""
        self.cache: KVCache | None = None
        self.memory: torch.Tensor | None = None
        self.memory0: torch.Tensor | None = None
        self.memory_f: torch.Tensor | None = None
        """The recurrent baseline's memory at ``p0`` and at ``pf``: its updates replay from there."""

    @staticmethod
    def token(
        features: torch.Tensor, prev_action: torch.Tensor, boundary: torch.Tensor, step: torch.Tensor
    ) -> torch.Tensor:
        """A raw token row (B, token_dim): features, then previous action, boundary flag and step as floats."""
        extra = torch.stack([prev_action.float(), boundary.float(), step.float()], dim=-1)
        return torch.cat([features, extra], dim=-1)

    def push(self, features: torch.Tensor, new_trial: torch.Tensor) -> None:
        """Write the token of the step at position ``p`` (B, obs_dim features; ``new_trial`` (B,) bool)."""
        self.trial_id += new_trial.long()
        self.prev_action = torch.where(new_trial, self.num_actions, self.prev_action)
        self.step_in_episode = torch.where(new_trial | self.boundary, 0, self.step_in_episode)
        p = self.p
        self.tokens[:, p] = self.token(features, self.prev_action, self.boundary & ~new_trial, self.step_in_episode)
        self.seg[:, p] = self.trial_id
        self.starts[:, p] = new_trial
        self.boundary.zero_()

    def record_action(self, action: torch.Tensor, logprob: torch.Tensor, value: torch.Tensor) -> None:
        """Store what the policy did at position ``p`` and advance."""
        p = self.p
        self.actions[:, p], self.logprobs[:, p], self.values[:, p] = action, logprob, value
        self.prev_action = action
        self.step_in_episode = self.step_in_episode + 1
        self.p += 1

    def trial_starts(self) -> torch.Tensor:
        """Position (B,) where each env's current trial began (``p`` if it begins at the next step)."""
        p = self.p
        current = self.seg[:, :p] == self.trial_id.unsqueeze(-1)
        first = torch.where(current.any(-1), current.float().argmax(-1), p)
        if p > 0:
            first = torch.where(self.dones[:, p - 1] > 0, p, first)
        return first

    def grow(self) -> bool:
        """Double the room, up to ``max_capacity``, keeping every step; False when already there."""
        if self.capacity >= self.max_capacity:
            return False
        capacity = min(2 * self.capacity, self.max_capacity)
        for name in _TIMELINE:
            setattr(self, name, extended(getattr(self, name), capacity + 1, dim=1))
        if self.cache is not None:
            self.cache.grow(capacity + 1)
        self.capacity = capacity
        return True

    def compact(self, trial_starts: torch.Tensor, keep: int) -> None:
        """Drop the steps before every env's current trial, and beyond ``keep`` the oldest (never ``>= pf``)."""
        p = self.p
        shift = int(trial_starts.min()) if p else 0
        if p - shift > keep:
            shift = p - keep
        shift = min(shift, self.pf)
        if shift <= 0:
            return
        for name in _TIMELINE:
            t = getattr(self, name)
            t[:, : p - shift] = t[:, shift:p].clone()
        if self.cache is not None:
            self.cache.shift(shift, p)
        self.p -= shift
        self.p0 -= shift
        self.pf -= shift

    def state_dict(self) -> dict[str, Any]:
        p = self.p
        state: dict[str, Any] = {name: getattr(self, name)[:, :p].clone() for name in _TIMELINE}
        state.update({name: getattr(self, name).clone() for name in _PER_ENV})
        state.update({"p": p, "p0": self.p0, "pf": self.pf})
        if self.cache is not None:
            state["cache_k"] = [k[:, :, : 1 + p].clone() for k in self.cache.k]
            state["cache_v"] = [v[:, :, : 1 + p].clone() for v in self.cache.v]
        if self.memory is not None:
            state["memory"], state["memory0"] = self.memory.clone(), self.memory0.clone()
            state["memory_f"] = self.memory_f.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        p = self.p = int(state["p"])
        self.p0 = int(state["p0"])
        self.pf = int(state.get("pf", self.p0))  # checkpoints from before full updates
        for name in _TIMELINE:
            getattr(self, name)[:, :p] = state[name]
        for name in _PER_ENV:
            getattr(self, name).copy_(state[name])
        if self.cache is not None:
            for mine, saved in ((self.cache.k, state["cache_k"]), (self.cache.v, state["cache_v"])):
                for t, s in zip(mine, saved, strict=True):
                    t[:, :, : 1 + p] = s
        if self.memory is not None:
            self.memory, self.memory0 = state["memory"].clone(), state["memory0"].clone()
            self.memory_f = state.get("memory_f", state["memory0"]).clone()
