"""The simulation behind the viewer: one batched env, the acting policy and the controls' effects.

:class:`ViewerSession` knows nothing about the browser, so the server, the bench and the tests
drive the same object. Widget callbacks run on viser's threads and the play loop on its own, so
every public method takes :attr:`ViewerSession.lock` (re-entrant: a scene update may call back).

Domain-randomisation values chosen in the page are *pinned*: a reset hook, installed after any
DR adapter's, sets them with the task's own ``set_params`` for every env reset from then on
(explicit resets and autoresets alike), so they win over the adapter's draw and over a task's
own randomisation (tactile tasks skip their draw for parameters set this way).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embodied.sim.env import BatchedEnv, BatchedWrapper, RandomizedParam
from embodied.sim2real.latency import ActionLatency
from embodied.sim2real.noise import ObservationNoise
from embodied.tasks import registry

log = logging.getLogger(__name__)

POLICIES = ("checkpoint", "random", "zero")
"""What can act: the loaded checkpoint (when there is one), uniform random or all-zero actions."""


@dataclass
class StepRecord:
    """The last step of the shown env (plain floats, so plots and recordings need no tensors)."""

    step: int = 0
    reward: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    done: bool = False
    episode_return: float = 0.0
    success: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """The env's full info of the step (batched tensors), for family metrics."""


def check_checkpoint(path: str | Path, task_id: str, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """``load_policy(path)`` or a ValueError/FileNotFoundError saying why it cannot act on ``task_id``."""
    from embodied.policies.train import load_policy

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path} (give checkpoint.pt, a run folder or a shipped policy file)")
    learner, run = load_policy(path, device=device)
    if run["task_id"] != task_id:
        raise ValueError(f"checkpoint {path} was trained on {run['task_id']}, not {task_id}: it cannot act here")
    return learner, run


class ViewerSession:
    """``num_envs`` envs of ``task_id`` stepped one batched step at a time under a chosen policy."""

    def __init__(
        self,
        task_id: str,
        num_envs: int = 1,
        checkpoint: str | Path | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        registry.spec(task_id)  # an unknown id fails here, with the registry's suggestions
        if num_envs < 1:
            raise ValueError(f"--num-envs must be >= 1, got {num_envs}")
        self.lock = threading.RLock()
        self.task_id = task_id
        self.family = task_id.split("/", 1)[0]
        self.device = device
        self.seed = seed
        self.learner: Any = None
        self.run: dict[str, Any] = {}
        if checkpoint is not None:
            self.learner, self.run = check_checkpoint(checkpoint, task_id, device)
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.env: BatchedEnv = self._build_env(num_envs, seed)
        self.base = self.env.unwrapped
        self.noise = _find_wrapper(self.env, ObservationNoise)
        """The observation-noise adapter the page tunes live (None: the task has no float observations)."""
        self.latency = _find_wrapper(self.env, ActionLatency)
        """The action-latency adapter the page tunes live."""
        self.declared: dict[str, RandomizedParam] = self.base.randomizable_params()
        self.pinned: dict[str, float] = {}
        """DR parameter values chosen in the page, applied to every env at its next reset."""
        self.base.reset_hooks.append(self._apply_pinned)
        self.policy = "checkpoint" if self.learner is not None else "random"
        self.env_id = 0
        self.steps = 0
        """Batched steps taken since the session started (the page's step counter)."""
        self.episodes = 0
        """Episodes the shown env finished."""
        self.obs, _ = self.env.reset(seed=seed)
        self.last = StepRecord()

    def _build_env(self, num_envs: int, seed: int) -> BatchedEnv:
        """The task under the checkpoint's adapters, plus observation noise and action latency switched
        off (std 0, 0 steps) where the checkpoint has none, so the page can turn them on live."""
        from embodied.policies.train import build_env

        adapters = {"latency": {"steps": 0}, "noise": {"std": 0.0}, **(self.run.get("adapters") or {})}
        overrides = self.run.get("task_overrides")
        try:
            return build_env(self.task_id, num_envs, self.device, seed, overrides, adapters)
        except ValueError as err:
            if "noise" not in str(err):
                raise
            log.info("viewer: %s takes no observation noise (%s)", self.task_id, err)
            adapters.pop("noise")
            return build_env(self.task_id, num_envs, self.device, seed, overrides, adapters)

    # ------------------------------------------------------------------ controls
    def set_noise_std(self, std: float) -> None:
        """Observation noise from the next observation on (0: off)."""
        if self.noise is None:
            raise ValueError(f"{self.task_id} has no float observations to add noise to")
        with self.lock:
            self.noise.set_std(std)

    def set_latency_steps(self, steps: int) -> None:
        """Action latency in primitive steps from the next step on (0: off)."""
        with self.lock:
            self.latency.set_steps(steps)  # type: ignore[union-attr]

    @property
    def num_envs(self) -> int:
        return self.env.num_envs

    def policies(self) -> list[str]:
        """The policy names that can act now (``checkpoint`` only once one is loaded)."""
        return [p for p in POLICIES if p != "checkpoint" or self.learner is not None]

    def set_policy(self, name: str) -> None:
        if name not in self.policies():
            raise ValueError(f"policy {name!r} is not available; choose one of {self.policies()}")
        with self.lock:
            self.policy = name

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a checkpoint for this task and act with it; on error the current policy stays."""
        learner, run = check_checkpoint(path, self.task_id, self.device)
        with self.lock:
            self.learner, self.run, self.checkpoint = learner, run, str(path)
            self.policy = "checkpoint"

    def set_env_id(self, env_id: int) -> None:
        if not 0 <= env_id < self.num_envs:
            raise ValueError(f"env {env_id} out of range [0, {self.num_envs})")
        with self.lock:
            self.env_id = int(env_id)

    def pin_param(self, name: str, value: float) -> None:
        """Use ``value`` for DR parameter ``name`` at every reset from the next one on."""
        p = self.declared.get(name)
        if p is None:
            raise KeyError(
                f"{self.task_id} declares no randomisable parameter {name!r}; it has {sorted(self.declared)}"
            )
        if not p.low <= value <= p.high:
            raise ValueError(f"{name} = {value} leaves the supported range [{p.low}, {p.high}]")
        with self.lock:
            self.pinned[name] = float(value)

    def _apply_pinned(self, env_ids: torch.Tensor) -> None:
        if self.pinned:
            values = {n: torch.full((len(env_ids),), v, device=self.base.device) for n, v in self.pinned.items()}
            self.base.set_params(env_ids, values)

    # ------------------------------------------------------------------ stepping
    def action(self) -> torch.Tensor:
        """The batched action of the current policy for the current observation."""
        if self.policy == "checkpoint" and self.learner is not None:
            with torch.no_grad():
                return self.learner.act(self.obs, deterministic=True)
        if self.policy == "zero":
            zero = torch.zeros((self.num_envs, *self.env.single_action_space.shape), device=self.base.device)
            return torch.clamp(zero, self.base.action_low, self.base.action_high)
        return self.env.random_action()

    def step(self) -> StepRecord:
        """One batched step; returns (and keeps in :attr:`last`) what happened in the shown env."""
        with self.lock:
            action = self.action()
            self.obs, reward, terminated, truncated, info = self.env.step(action)
            done = terminated | truncated
            ended = getattr(self.learner, "episodes_ended", None) if self.policy == "checkpoint" else None
            if ended is not None:
                ended(done)
            i = self.env_id
            self.steps += 1
            rec = StepRecord(
                step=self.steps,
                reward=float(reward[i]),
                terms={k: float(v[i]) for k, v in info.get("reward_terms", {}).items()},
                done=bool(done[i]),
                episode_return=float(info["episode_return"][i]),
                success=float(info["success"][i]) if "success" in info else None,
                info=info,
            )
            self.episodes += int(rec.done)
            self.last = rec
            return rec

    def reset(self) -> None:
        """Reset every env (pinned DR values apply); episode counters restart."""
        with self.lock:
            self.obs, _ = self.env.reset()
            reset_learner = getattr(self.learner, "episodes_ended", None)
            if reset_learner is not None:
                reset_learner(torch.ones(self.num_envs, dtype=torch.bool, device=self.base.device))
            self.last = StepRecord(step=self.steps)

    def close(self) -> None:
        with self.lock:
            if self._apply_pinned in self.base.reset_hooks:
                self.base.reset_hooks.remove(self._apply_pinned)
            self.env.close()


def _find_wrapper(env: BatchedEnv, kind: type) -> Any:
    """The adapter of type ``kind`` in ``env``'s wrapper chain, or None."""
    while isinstance(env, BatchedWrapper):
        if isinstance(env, kind):
            return env
        env = env.env
    return None
