"""Experience storage for the learners, in torch on the learner's device.

:class:`ReplayBuffer` (off-policy) keeps ``(obs, action, reward, next_obs, terminated)``.
Truncation is not termination: the learner stores ``next_obs = info["final_obs"]`` and
``terminated`` only, so the critic bootstraps through time limits.

:class:`RolloutBuffer` (on-policy) keeps one rollout and computes GAE. A truncated episode
is bootstrapped by adding ``gamma * V(final_obs)`` to the reward of its last step, after
which the step counts as an episode end like any other.

Both save their contents and position in ``state_dict``, so training resumes exactly.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

# ---------------------------------------------------------------------------- replay


class Batch(NamedTuple):
    """A sampled minibatch: obs (B, obs_dim), action (B, act_dim), reward/terminated (B,)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """A preallocated ring of transitions; sampling is uniform, with replacement, by torch.

    All five fields live side by side in one (capacity, width) float tensor, so adding is one
    copy and sampling one gather; the fields come back as views of the gathered rows.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self._splits = (obs_dim, act_dim, 1, obs_dim, 1)
        self.data = torch.zeros(self.capacity, sum(self._splits), device=self.device)
        self.pos = 0
        """Row the next transition goes to."""
        self.size = 0
        """Rows holding transitions (grows to ``capacity``, then the oldest are overwritten)."""

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> None:
        """Store a batch of ``n`` transitions: obs/next_obs (n, obs_dim), action (n, act_dim), reward/terminated (n,)."""
        rows = torch.cat(
            [obs, action, reward.unsqueeze(-1), next_obs, terminated.unsqueeze(-1).to(self.data.dtype)], dim=-1
        )
        n = rows.shape[0]
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions at once to a replay buffer of capacity {self.capacity}")
        end = self.pos + n
        if end <= self.capacity:
            self.data[self.pos : end] = rows
        else:  # wrap around the ring
            first = self.capacity - self.pos
            self.data[self.pos :] = rows[:first]
            self.data[: n - first] = rows[first:]
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        """``batch_size`` transitions drawn uniformly (global torch RNG)."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        idx = torch.randint(self.size, (batch_size,), device=self.device)
        obs, action, reward, next_obs, terminated = self.data[idx].split(self._splits, dim=-1)
        return Batch(obs, action, reward.squeeze(-1), next_obs, terminated.squeeze(-1))

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions (only the filled rows) and the ring position."""
        return {"data": self.data[: self.size].clone(), "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = int(state["size"])
        if size > self.capacity or state["data"].shape[1:] != self.data.shape[1:]:
            raise ValueError(
                f"replay buffer state of shape {tuple(state['data'].shape)} does not fit this buffer "
                f"{tuple(self.data.shape)}; was it saved with another buffer_size or task?"
            )
        self.data[:size] = state["data"].to(self.device)
        self.pos, self.size = int(state["pos"]), size


# ---------------------------------------------------------------------------- rollout


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns, both (T, n).

    ``rewards``, ``values`` and ``dones`` are (T, n); ``dones[t]`` says the episode ended at
    step ``t`` (so nothing after it is bootstrapped); ``last_value`` (n,) is V of the
    observation reached after the last step.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(num_steps)):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_adv = delta + gamma * lam * not_done * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


class RolloutBuffer:
    """One on-policy rollout of ``num_steps`` batched steps from ``num_envs`` envs."""

    def __init__(
        self, num_steps: int, num_envs: int, obs_dim: int, act_dim: int, gamma: float, device: torch.device | str = "cpu"
    ) -> None:
        self.num_steps, self.num_envs, self.gamma = num_steps, num_envs, gamma
        self.device = torch.device(device)
        zeros = lambda *shape: torch.zeros(num_steps, num_envs, *shape, device=self.device)  # noqa: E731
        self.obs = zeros(obs_dim)
        self.actions = zeros(act_dim)
        self.logprobs = zeros()
        self.values = zeros()
        self.rewards = zeros()
        """Rewards, with ``gamma * V(final_obs)`` added where an episode was truncated."""
        self.dones = zeros()
        self.last_value = torch.zeros(num_envs, device=self.device)
        """V of where each env was after the newest step (bootstraps the rollout's end)."""
        self.step = 0

    @property
    def full(self) -> bool:
        return self.step == self.num_steps

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        logprob: torch.Tensor,
        value: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        next_value: torch.Tensor,
    ) -> None:
        """Store one batched step; ``next_value`` (n,) is V(info["final_obs"]).

        Where an env was truncated (and not terminated) its reward gains ``gamma * next_value``:
        the episode's unseen future, estimated by the critic.
        """
        if self.full:
            raise RuntimeError("rollout buffer is full; compute advantages and reset() it first")
        t = self.step
        truncated_only = (truncated & ~terminated).to(reward.dtype)
        self.obs[t] = obs
        self.actions[t] = action
        self.logprobs[t] = logprob
        self.values[t] = value
        self.rewards[t] = reward + self.gamma * next_value * truncated_only
        self.dones[t] = (terminated | truncated).to(reward.dtype)
        self.last_value.copy_(next_value)
        self.step += 1

    def advantages_and_returns(self, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(``lam``) advantages and value targets of the full rollout, each (T, n)."""
        return gae(self.rewards, self.values, self.dones, self.last_value, self.gamma, lam)

    def reset(self) -> None:
        self.step = 0

    _FIELDS = ("obs", "actions", "logprobs", "values", "rewards", "dones", "last_value")

    def state_dict(self) -> dict[str, Any]:
        return {**{name: getattr(self, name).clone() for name in self._FIELDS}, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._FIELDS:
            getattr(self, name).copy_(state[name])
        self.step = int(state["step"])
