"""The hardware interface: one protocol for a real device and for a simulated suite task.

Modelled on LeRobot's ``Robot``: a device describes its observation and action spaces
without connecting, is used between ``connect()`` and ``disconnect()`` (or as a context
manager), ``read_observation()`` returns one unbatched observation, and ``send_action(a)``
returns the action really sent. Every action goes through the device's
:class:`~embodied.sim2real.safety.ActionLimiter` in :meth:`Hardware.send_action`, which
drivers do not override: they implement ``_send`` and only ever receive limited actions.

:class:`SimulatedHardware` implements the protocol on a ``num_envs=1`` suite task (wrapped
in adapters or not), and :func:`run_policy` is the control loop, so the same policy code
drives a simulated task or a real device. A ROS bridge builds on this protocol.

Observations and actions are torch tensors (or dicts of them) without a batch dimension.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, Obs, map_obs
from embodied.sim2real.safety import ActionLimiter, SafetyCfg

logger = logging.getLogger(__name__)


class HardwareError(RuntimeError):
    """A device was used in the wrong connection state (or failed to connect)."""


class Hardware(abc.ABC):
    """A device a policy drives: spaces readable offline, connect / read / send / disconnect."""

    name: str = "hardware"

    def __init__(self, safety: SafetyCfg | None = None) -> None:
        self.safety_cfg = safety or SafetyCfg()
        self.limiter = ActionLimiter.from_cfg(self.safety_cfg, self.action_space)
        self._connected = False
        self._prev = self.limiter.zero.clone()
        self._has_prev = self.safety_cfg.rate_limit_first
        self.last_safety: dict[str, torch.Tensor] | None = None
        """The limiter's report for the latest ``send_action`` (unbatched)."""

    # ------------------------------------------------------------------ what a driver implements
    @property
    @abc.abstractmethod
    def observation_space(self) -> gymnasium.Space:
        """The space of one observation; readable without connecting."""

    @property
    @abc.abstractmethod
    def action_space(self) -> gymnasium.spaces.Box:
        """The space of one action; readable without connecting."""

    @abc.abstractmethod
    def _connect(self) -> None: ...

    @abc.abstractmethod
    def _disconnect(self) -> None: ...

    @abc.abstractmethod
    def _read(self) -> Obs: ...

    @abc.abstractmethod
    def _send(self, action: torch.Tensor) -> None:
        """Command the device; ``action`` has already passed the safety limiter."""

    # ------------------------------------------------------------------ the protocol
    @property
    def features(self) -> dict[str, gymnasium.Space]:
        return {"observation": self.observation_space, "action": self.action_space}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self._connected:
            raise HardwareError(f"{self.name} is already connected; call disconnect() first")
        self._connect()
        self._connected = True
        self._prev = self.limiter.zero.clone()
        self._has_prev = self.safety_cfg.rate_limit_first
        logger.info("%s connected", self.name)

    def disconnect(self) -> None:
        if not self._connected:
            raise HardwareError(f"{self.name} is not connected; nothing to disconnect")
        try:
            self._disconnect()
        finally:
            self._connected = False
            logger.info("%s disconnected", self.name)

    def _require_connection(self, what: str) -> None:
        if not self._connected:
            raise HardwareError(f"{self.name}.{what}() needs a connection: call connect() first or use `with {self.name}:`")

    def read_observation(self) -> Obs:
        self._require_connection("read_observation")
        return self._read()

    def send_action(self, action: torch.Tensor | np.ndarray | list[float]) -> torch.Tensor:
        """Limit ``action`` (bounds, rate, NaN/inf), send it, and return what was really sent."""
        self._require_connection("send_action")
        requested = torch.as_tensor(action, dtype=torch.float32, device=self.limiter.low.device)
        if tuple(requested.shape) != self.limiter.shape:
            raise ValueError(f"{self.name}: action has shape {tuple(requested.shape)}, expected {self.limiter.shape}")
        has_prev = torch.tensor([self._has_prev], device=requested.device)
        sent, report = self.limiter.limit(requested[None], self._prev[None], has_prev)
        sent = sent[0]
        self._send(sent.clone())
        self._prev, self._has_prev = sent, True
        self.last_safety = {k: v[0] for k, v in report.items()}
        return sent.clone()

    def __enter__(self) -> Hardware:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._connected:
            self.disconnect()


class SimulatedHardware(Hardware):
    """A suite task (``num_envs=1``) behind the hardware protocol: connect resets it, send_action steps it.

    Episodes autoreset as in the batched env; ``last_step`` holds the latest reward,
    ``terminated``, ``truncated`` and ``final_obs`` (simulation extras a real device lacks).
    """

    def __init__(
        self,
        task: str | BatchedEnv,
        *,
        safety: SafetyCfg | None = None,
        seed: int | None = None,
        device: str = "cpu",
        **overrides: Any,
    ) -> None:
        if isinstance(task, str):
            from embodied.tasks.registry import make

            task = make(task, num_envs=1, device=device, seed=seed, **overrides)
        elif overrides:
            raise ValueError(f"task overrides {sorted(overrides)} only apply when SimulatedHardware makes the task from an id")
        if task.num_envs != 1:
            raise ValueError(f"SimulatedHardware drives one env, got a batch of num_envs={task.num_envs}")
        self.env = task
        self.seed = seed
        self.name = f"SimulatedHardware({task.unwrapped.task_id})"
        self._obs: Obs | None = None
        self.last_step: dict[str, Any] = {}
        super().__init__(safety)

    @property
    def observation_space(self) -> gymnasium.Space:
        return self.env.single_observation_space

    @property
    def action_space(self) -> gymnasium.spaces.Box:
        return self.env.single_action_space

    def _connect(self) -> None:
        self._obs, _ = self.env.reset(seed=self.seed)
        self.seed = None  # a reconnect continues the random stream rather than replaying it

    def _disconnect(self) -> None:
        self._obs = None

    def _read(self) -> Obs:
        assert self._obs is not None
        return map_obs(self._obs, lambda x: x[0].clone())

    def _send(self, action: torch.Tensor) -> None:
        obs, reward, terminated, truncated, info = self.env.step(action.to(self.env.device)[None])
        self._obs = obs
        self.last_step = {
            "reward": float(reward[0]),
            "terminated": bool(terminated[0]),
            "truncated": bool(truncated[0]),
            "final_obs": map_obs(info["final_obs"], lambda x: x[0].clone()),
        }

    def close(self) -> None:
        if self._connected:
            self.disconnect()
        self.env.close()


@dataclass
class RunStats:
    """What :func:`run_policy` did."""

    steps: int
    elapsed_s: float
    overruns: int
    """Steps that took longer than the period at ``rate_hz`` (the loop does not try to catch up)."""
    nonfinite: int
    """Actions the safety limiter replaced because they held NaN or inf."""
    clipped: int
    """Action elements the limiter changed to keep the bounds or the rate limit (each counted once per step)."""


def run_policy(
    policy_fn: Callable[[Obs], Any],
    hardware: Hardware,
    steps: int,
    rate_hz: float | None = None,
) -> RunStats:
    """Drive ``hardware`` with ``policy_fn(observation) -> action`` for ``steps`` control steps.

    Each step reads an observation, asks the policy and sends the action (through the safety
    limiter). With ``rate_hz`` the loop keeps that control rate, sleeping out the rest of
    each period; without it, it runs as fast as the device answers (simulation). A
    disconnected device is connected for the run and disconnected after it, even on error.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"run_policy steps must be an int >= 0, got {steps!r}")
    if rate_hz is not None and not (np.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"run_policy rate_hz must be a positive number or None, got {rate_hz!r}")
    period = None if rate_hz is None else 1.0 / rate_hz
    opened = not hardware.is_connected
    if opened:
        hardware.connect()
    stats = RunStats(steps=0, elapsed_s=0.0, overruns=0, nonfinite=0, clipped=0)
    start = deadline = time.perf_counter()
    try:
        for _ in range(steps):
            hardware.send_action(policy_fn(hardware.read_observation()))
            report = hardware.last_safety
            stats.steps += 1
            if report is not None:
                stats.nonfinite += int(report["nonfinite"])
                stats.clipped += int((report["bound_clipped"] | report["rate_limited"]).sum())
            if period is not None:
                deadline += period
                wait = deadline - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                else:
                    stats.overruns += 1
                    deadline = time.perf_counter()
    finally:
        stats.elapsed_s = time.perf_counter() - start
        if opened and hardware.is_connected:
            hardware.disconnect()
    return stats
