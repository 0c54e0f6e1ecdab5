"""What every learner implements, so that one training loop drives them all.

The loop (``embodied.policies.train``) does, for every batched env step::

    action = learner.act(obs)
    next_obs, reward, terminated, truncated, info = env.step(action)
    learner.observe(obs, action, reward, info["final_obs"], terminated, truncated, info)
    if learner.ready_to_update():
        metrics = learner.update()

``info["final_obs"]`` is where each env ended up this step (before any autoreset), so
off-policy learners store correct transitions and on-policy learners bootstrap truncated
episodes from it. A learner holds no task code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import gymnasium
import torch


class ValidationPlan(NamedTuple):
    """When and how the training loop validates a learner (early stopping, see ``Learner.validation``)."""

    every: int
    """Env steps between validations."""
    episodes: int
    """Episodes per validation (one env each)."""
    seed: int
    """Seed of the held-out validation env, the same at every validation."""
    episodes_per_env: int = 1
    """Consecutive episodes each validation env plays (a learner with memory across episodes, such
    as ReLIC over a trial, is judged on whole trials)."""


class Learner(ABC):
    """A reinforcement-learning algorithm on the batched env contract."""

    name: str = ""
    default_num_envs: int = 1
    default_total_steps: int = 100_000

    def __init__(
        self,
        cfg: Any,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        """``observation_space`` and ``action_space`` are the single-env spaces."""
        self.cfg = cfg
        self.observation_space = observation_space
        self.action_space = action_space
        self.num_envs = num_envs
        self.device = torch.device(device)

    @abstractmethod
    def act(self, obs: Any, deterministic: bool = False) -> torch.Tensor:
        """Actions (num_envs, action_dim) inside the action space for observations ``obs``."""

    @abstractmethod
    def observe(
        self,
        obs: Any,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: Any,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Record one batched transition (``next_obs`` is ``info["final_obs"]``; ``info`` is the
        env's, for learners that need more, such as the primitive steps inside a decision)."""

    @abstractmethod
    def ready_to_update(self) -> bool:
        """Whether enough experience has arrived for :meth:`update`."""

    @abstractmethod
    def update(self) -> dict[str, float]:
        """One learning update; returns scalar metrics named like ``losses/actor``."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything to resume exactly: networks, optimisers, buffers, counters."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def episodes_ended(self, done: torch.Tensor) -> None:
        """Envs where ``done`` (num_envs,) is true start a new episode at the next ``act``.

        The loop and ``evaluate`` call this after every step; a learner with memory across
        steps (a recurrent or sequence policy) clears those envs' memory here.
        """
        return None  # memoryless learners have nothing to clear

    def validation(self) -> ValidationPlan | None:
        """Early stopping: when this returns a plan, the loop evaluates the deterministic policy
        on a held-out env every ``plan.every`` steps and calls :meth:`on_validation`."""
        return None

    def on_validation(self, summary: dict[str, Any], step: int) -> bool:
        """Hear a validation's ``evaluate`` summary; True when it is the best so far (the loop
        then saves the policy as ``best_policy.pt``)."""
        return False

    @classmethod
    def required_adapters(cls, cfg: Any) -> dict[str, Any]:
        """Adapters this learner needs around the task (``AdaptersCfg`` overrides), e.g. a
        sequence policy's decision rate. The loop adds them; the run's own settings win."""
        return {}

    def policy_state_dict(self) -> dict[str, Any]:
        """The smaller part of the state needed only to act (shipped policies, evaluation)."""
        return self.state_dict()

    def rollout_state(self) -> dict[str, Any]:
        """What a rollout worker's copy of this learner needs to act as this learner would now;
        sent to every worker once per round (``embodied.policies.scaleout``). Default: the policy."""
        return self.policy_state_dict()

    def load_rollout_state(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)

    # Learners with memory across steps (a recurrent student, an in-context transformer) act in
    # rollout workers through the two pairs of hooks below; memoryless learners need none of them.
    def act_memory(self) -> dict[str, torch.Tensor]:
        """The per-env memory ``act`` carries from step to step, saved with a rollout worker's
        envs (so a replaced or resumed worker continues exactly); {} for memoryless learners."""
        return {}

    def load_act_memory(self, state: dict[str, torch.Tensor]) -> None:
        return None

    def act_record(self) -> dict[str, torch.Tensor] | None:
        """What ``observe`` needs from the last ``act`` that the step does not carry (per env,
        batch first): a worker's copy sends it with each step and the driver's learner takes it
        with :meth:`take_act_record`. None: nothing (a memoryless learner re-scores the step)."""
        return None

    def take_act_record(self, obs: Any, action: torch.Tensor, record: dict[str, torch.Tensor]) -> None:
        """Accept ``action``, taken on ``obs`` by a rollout worker's copy of this learner, as if
        this learner's own ``act`` had taken it, so that ``observe`` can store the step."""
        raise NotImplementedError(f"{type(self).__name__} cannot take actions from rollout workers")

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)
