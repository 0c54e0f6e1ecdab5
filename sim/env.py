"""The batched environment contract every task implements.

A :class:`BatchedEnv` runs ``num_envs`` environments at once. Observations (a tensor, or a
dict of tensors), rewards, ``terminated`` and ``truncated`` are torch tensors on
``env.device``, batch first.

Autoreset is **same-step** (``metadata["autoreset_mode"] == AutoresetMode.SAME_STEP``): when
an env finishes, ``step`` resets it at once and returns the first observation of its next
episode; the observation it finished in is in ``info["final_obs"]``. ``info["final_obs"]``
is always present and equals ``obs`` for envs that did not finish, so a learner can store
``(obs, action, reward, info["final_obs"], terminated)`` for every env without branching.
Gymnasium's default next-step mode would hand a replay buffer a transition across the reset.

Also in ``info`` every step: ``episode_return`` and ``episode_length`` (meaningful where
``terminated | truncated``), and ``reward_terms`` (name -> (num_envs,) tensor), the named
parts of the reward that learners log.

A task subclasses :class:`BatchedEnv` and implements four hooks:
``_reset_envs(env_ids)``, ``_apply_action(action)`` (advance physics),
``_observe()`` and ``_reward_and_termination(action)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

Obs = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class TaskCfg:
    """Fields every task config has; a task's config inherits this once, and no deeper."""

    out_of_bounds_actions: Literal["clip", "error"] = "clip"
    """What ``step`` does with actions outside the action space: clip them, or raise ValueError."""


@dataclass(frozen=True)
class RandomizedParam:
    """A physical parameter a task lets domain randomisation change per env."""

    name: str
    nominal: float
    low: float
    high: float
    """The widest range the task supports; an adapter may ask for any sub-range."""


def map_obs(obs: Obs, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to a tensor observation or to each entry of a dict observation."""
    if isinstance(obs, dict):
        return {k: fn(v) for k, v in obs.items()}
    return fn(obs)


class BatchedEnv(gymnasium.vector.VectorEnv):
    """Base class of all tasks: ``num_envs`` environments stepped as one, in torch."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}
    default_max_episode_steps: int = 1000
    primitive_steps_per_step: int = 1
    """Primitive env steps one call of ``step`` advances (a decision-rate adapter multiplies it);
    training budgets count primitive steps, so methods with different decision rates compare."""

    def __init__(
        self,
        cfg: TaskCfg,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        backend: str | None = None,
        task_id: str | None = None,
        seed: int | None = None,
        max_episode_steps: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.backend = backend
        self.task_id = task_id or type(self).__name__
        if max_episode_steps is None and task_id is not None:
            from embodied.tasks.registry import spec

            max_episode_steps = spec(task_id).max_episode_steps
        self.max_episode_steps = int(max_episode_steps or self.default_max_episode_steps)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63))
        self.episode_return = torch.zeros(self.num_envs, device=self.device)
        self.episode_length = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.reset_hooks: list[Callable[[torch.Tensor], None]] = []
        """Called with the env ids about to be reset, before the task's own reset (domain randomisation)."""
        self.all_env_ids = torch.arange(self.num_envs, device=self.device)

    # ------------------------------------------------------------------ spaces
    def _set_spaces(self, observation_space: gymnasium.Space, action_space: gymnasium.spaces.Box) -> None:
        """Declare the single-env spaces; the batched ones follow."""
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.observation_space = batch_space(observation_space, self.num_envs)
        self.action_space = batch_space(action_space, self.num_envs)
        self.action_low = torch.as_tensor(action_space.low, dtype=torch.float32, device=self.device)
        self.action_high = torch.as_tensor(action_space.high, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ hooks a task implements
    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        """Put envs ``env_ids`` in a fresh initial state, drawing randomness from ``self.generator``."""
        raise NotImplementedError

    def _apply_action(self, action: torch.Tensor) -> None:
        """Advance every env by one step under ``action`` (num_envs, *action_shape), already validated."""
        raise NotImplementedError

    def _observe(self) -> Obs:
        """The current observation of every env."""
        raise NotImplementedError

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Named reward terms (each (num_envs,), summed into the reward) and ``terminated`` (num_envs,) bool."""
        raise NotImplementedError

    def randomizable_params(self) -> dict[str, RandomizedParam]:
        """Parameters domain randomisation may change per env (none by default)."""
        return {}

    def set_params(self, env_ids: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Set declared parameters for envs ``env_ids`` (values: name -> (len(env_ids),))."""
        if values:
            raise NotImplementedError(f"{self.task_id} declares no randomisable parameters")

    def _sim_state(self) -> dict[str, Any]:
        """The simulator state needed to continue bit-identically (for checkpoints)."""
        raise NotImplementedError(f"{self.task_id} cannot save its simulator state")

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError(f"{self.task_id} cannot load a simulator state")

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        raise NotImplementedError(f"{self.task_id} does not render")

    # ------------------------------------------------------------------ public API
    def reset(
        self,
        *,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
        env_ids: torch.Tensor | None = None,
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset all envs (or only ``env_ids``) and return the observation of all envs.

        ``seed`` reseeds the env's generator, so the same seed gives the same rollouts.
        """
        if seed is not None:
            self.generator.manual_seed(int(seed))
        ids = self.all_env_ids if env_ids is None else torch.as_tensor(env_ids, device=self.device).long()
        self._reset_ids(ids)
        return self._observe(), {}

    def _reset_ids(self, env_ids: torch.Tensor) -> None:
        if len(env_ids) == 0:
            return
        for hook in self.reset_hooks:
            hook(env_ids)
        self._reset_envs(env_ids)
        self.episode_return[env_ids] = 0.0
        self.episode_length[env_ids] = 0

    def step(self, actions: torch.Tensor | np.ndarray) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance all envs one step; finished envs are reset in the same call (see module doc)."""
        action = self.check_action(actions)
        self._apply_action(action)
        terms, terminated = self._reward_and_termination(action)
        reward = sum(terms.values()) if terms else torch.zeros(self.num_envs, device=self.device)
        self.episode_return += reward
        self.episode_length += 1
        truncated = (self.episode_length >= self.max_episode_steps) & ~terminated
        obs = self._observe()
        info: dict[str, Any] = {
            "reward_terms": terms,
            "episode_return": self.episode_return.clone(),
            "episode_length": self.episode_length.clone(),
            "final_obs": obs,
        }
        done = terminated | truncated
        if done.any():
            self._reset_ids(done.nonzero().squeeze(-1))
            obs = self._observe()
        return obs, reward, terminated, truncated, info

    def check_action(self, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Return ``actions`` as a float tensor on the env's device, or raise a clear ValueError."""
        action = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        expected = (self.num_envs, *self.single_action_space.shape)
        if tuple(action.shape) != expected:
            raise ValueError(f"{self.task_id}: action has shape {tuple(action.shape)}, expected {expected} (num_envs, action_dim)")
        # Few torch ops on the common path: this runs every step, and at small batches op overhead dominates.
        if not bool(torch.isfinite(action).all()):
            bad = (~torch.isfinite(action)).reshape(self.num_envs, -1).any(1).nonzero().squeeze(-1).tolist()
            raise ValueError(f"{self.task_id}: action contains NaN or inf in envs {bad}")
        clipped = torch.clamp(action, self.action_low, self.action_high)
        if self.cfg.out_of_bounds_actions == "error" and not torch.equal(clipped, action):
            bad = (clipped != action).reshape(self.num_envs, -1).any(1).nonzero().squeeze(-1).tolist()
            raise ValueError(
                f"{self.task_id}: action outside the action space [{self.single_action_space.low}, "
                f"{self.single_action_space.high}] in envs {bad} (out_of_bounds_actions='error')"
            )
        return clipped

    def random_action(self) -> torch.Tensor:
        """Uniform random actions within the action space, (num_envs, *action_shape)."""
        u = torch.rand((self.num_envs, *self.single_action_space.shape), generator=self.generator, device=self.device)
        return self.action_low + u * (self.action_high - self.action_low)

    def render(self, env_id: int = 0, width: int = 320, height: int = 240) -> np.ndarray:
        """An RGB frame (height, width, 3) uint8 of env ``env_id``."""
        if not 0 <= env_id < self.num_envs:
            raise IndexError(f"{self.task_id}: env_id {env_id} out of range [0, {self.num_envs})")
        return self._render_env(env_id, width, height)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue these envs exactly (used by training checkpoints)."""
        return {
            "sim": self._sim_state(),
            "generator": self.generator.get_state(),
            "episode_return": self.episode_return.clone(),
            "episode_length": self.episode_length.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_sim_state(state["sim"])
        self.generator.set_state(state["generator"])
        self.episode_return.copy_(state["episode_return"])
        self.episode_length.copy_(state["episode_length"])

    @property
    def unwrapped(self) -> BatchedEnv:
        return self

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary of this env (id, sizes, config)."""
        return {
            "task_id": self.task_id,
            "num_envs": self.num_envs,
            "device": str(self.device),
            "backend": self.backend,
            "max_episode_steps": self.max_episode_steps,
            "cfg": dataclasses.asdict(self.cfg),
        }

    def close(self, **kwargs: Any) -> None:
        pass


class BatchedWrapper(BatchedEnv):
    """Base of the sim-to-real adapters: forwards everything to the wrapped env.

    It deliberately skips ``BatchedEnv.__init__``: state lives in the innermost env, and
    attribute reads fall through to it.
    """

    def __init__(self, env: BatchedEnv) -> None:
        self.env = env

    def __getattr__(self, name: str) -> Any:
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    @property
    def unwrapped(self) -> BatchedEnv:
        return self.env.unwrapped

    @property
    def primitive_steps_per_step(self) -> int:  # type: ignore[override]
        return self.env.primitive_steps_per_step

    @property
    def max_episode_steps(self) -> int:  # type: ignore[override]
        return self.env.max_episode_steps

    @max_episode_steps.setter
    def max_episode_steps(self, value: int) -> None:
        self.env.max_episode_steps = value

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None):
        return self.env.reset(seed=seed, options=options, env_ids=env_ids)

    def step(self, actions):
        return self.env.step(actions)

    def check_action(self, actions):
        return self.env.check_action(actions)

    def random_action(self) -> torch.Tensor:
        return self.env.random_action()

    def render(self, env_id: int = 0, width: int = 320, height: int = 240) -> np.ndarray:
        return self.env.render(env_id, width, height)

    def state_dict(self) -> dict[str, Any]:
        return {"env": self.env.state_dict(), "wrapper": self._wrapper_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state["env"])
        self._load_wrapper_state(state["wrapper"])

    def _wrapper_state(self) -> dict[str, Any]:
        return {}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        out = self.env.describe()
        out.setdefault("adapters", []).append(type(self).__name__)
        return out

    def close(self, **kwargs: Any) -> None:
        self.env.close()
