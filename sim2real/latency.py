"""Action latency: the env applies the action the policy chose ``steps`` primitive steps ago.

Missing actuation delay is a common reason a policy that works in sim shakes on a robot. The
delay is counted in primitive env steps (the control tick), so it stays the same physical
delay whatever the decision rate (this wrapper sits inside :class:`~embodied.sim2real.rate.DecisionRate`).

Each env keeps a queue of the last ``steps`` actions. When an env starts an episode (``reset``,
including a partial ``reset(env_ids=...)``, or an autoreset, seen through
``terminated | truncated``) its queue is refilled with the *initial action*:

- ``"zero"``: zeros, so the first ``steps`` actions of an episode apply zero;
- ``"hold"``: the action this wrapper last passed on for that env (zero before its first step;
  the safety layer inside may still limit it), the way a real actuator keeps its last command
  until a new one arrives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from embodied.sim.env import BatchedEnv, BatchedWrapper
from embodied.sim2real._common import as_action, env_ids_tensor


@dataclass
class LatencyCfg:
    steps: int = 1
    """Delay in primitive env steps; 0 passes actions through (handy in sweeps)."""
    initial_action: Literal["zero", "hold"] = "zero"
    """What fills an env's queue when its episode starts: zeros, or the action it last passed on."""


class ActionLatency(BatchedWrapper):
    """Delay every action by ``cfg.steps`` primitive steps, per env, restarting the queue at each reset."""

    def __init__(self, env: BatchedEnv, cfg: LatencyCfg) -> None:
        if not isinstance(cfg.steps, int) or cfg.steps < 0:
            raise ValueError(f"latency steps must be an int >= 0, got {cfg.steps!r}")
        if cfg.initial_action not in ("zero", "hold"):
            raise ValueError(f"latency initial_action must be 'zero' or 'hold', got {cfg.initial_action!r}")
        super().__init__(env)
        self.cfg = cfg
        self.action_shape = tuple(env.single_action_space.shape)
        n = env.num_envs
        self.queue = torch.zeros((n, cfg.steps, *self.action_shape), device=env.device)
        """queue[:, 0] is applied at the next step; queue[:, -1] is the newest action."""
        self.last_applied = torch.zeros((n, *self.action_shape), device=env.device)

    def _restart(self, env_ids: torch.Tensor) -> None:
        if self.cfg.initial_action == "zero":
            self.queue[env_ids] = 0.0
        else:
            self.queue[env_ids] = self.last_applied[env_ids].unsqueeze(1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None):
        out = self.env.reset(seed=seed, options=options, env_ids=env_ids)
        self._restart(env_ids_tensor(self, env_ids))
        return out

    def step(self, actions):
        action = as_action(self, actions, (self.num_envs, *self.action_shape))
        if self.cfg.steps == 0:
            applied = action
        else:
            applied = self.queue[:, 0].clone()
            self.queue = torch.cat([self.queue[:, 1:], action.unsqueeze(1)], dim=1)
        obs, reward, terminated, truncated, info = self.env.step(applied)
        self.last_applied = applied
        done = terminated | truncated
        if done.any():
            self._restart(done.nonzero().squeeze(-1))
        return obs, reward, terminated, truncated, info

    def set_steps(self, steps: int) -> None:
        """Change the delay from the next step on (the viewer's live control): the newest actions
        queued stay queued, and a longer queue is filled with the action last applied, so the
        change itself sends no zero or stale command."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"latency steps must be an int >= 0, got {steps!r}")
        newest = self.queue[:, max(self.queue.shape[1] - steps, 0) :]
        held = self.last_applied.unsqueeze(1).expand(-1, steps - newest.shape[1], *self.action_shape)
        self.queue = torch.cat([held, newest], dim=1)
        self.cfg = dataclasses.replace(self.cfg, steps=steps)

    def _wrapper_state(self) -> dict[str, Any]:
        return {"queue": self.queue.clone(), "last_applied": self.last_applied.clone()}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self.queue = state["queue"].clone().to(self.device)
        self.last_applied = state["last_applied"].clone().to(self.device)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.setdefault("adapter_cfgs", {})["latency"] = dataclasses.asdict(self.cfg)
        return out
