"""The sim node's core: any registered task served as a robot over a transport.

It publishes the task's observation on the bridge config's observation topics (encoded as the
policy node decodes them), simulated time on ``clock_topic``, and obeys the command topic:

- ``mode="command"``: each command steps the simulator once and the new observation goes out
  at once (lockstep: the policy node's rate sets the pace). While no command comes, the latest
  observation is repeated every period, as a robot's state stream never stops.
- ``mode="rate"``: the simulator steps every period with the latest command (zero before the
  first), as a real robot keeps moving whatever the policy does.

A command is turned back into the task's action (undoing the config's scale and offset, or
mapping a discrete command's row to its action), and goes
through :class:`~embodied.sim2real.hardware.SimulatedHardware`, so the action space bounds
hold as on a robot. Malformed commands are dropped with the reason logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from embodied.sim.env import map_obs
from embodied.sim2real.hardware import SimulatedHardware
from embodied.sim2real.ros.codecs import BadMessage, CommandCodec, encode_observation, split_observation, topic_spaces
from embodied.sim2real.ros.config import BridgeCfg
from embodied.sim2real.ros.transport import Message, Transport

logger = logging.getLogger(__name__)


class SimNode:
    """Serve task ``task_id`` (one env) on ``transport`` as the robot the bridge config describes."""

    def __init__(
        self,
        task_id: str,
        cfg: BridgeCfg,
        transport: Transport,
        mode: Literal["command", "rate"] = "command",
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        task_overrides: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ("command", "rate"):
            raise ValueError(f"sim node mode must be 'command' or 'rate', got {mode!r}")
        self.cfg, self.transport, self.mode, self.clock = cfg, transport, mode, clock
        self.robot = SimulatedHardware(task_id, seed=seed, **(task_overrides or {}))
        self.command = CommandCodec(cfg, int(np.prod(self.robot.action_space.shape)))
        topic_spaces(cfg, self.robot.observation_space)  # a config that does not fit the task fails here
        self.dt = float(getattr(self.robot.env.unwrapped, "dt", cfg.period_s))
        self._lock = threading.Lock()
        self._latest_action = torch.zeros(self.robot.action_space.shape)
        self._last_publish = -float("inf")
        self.steps = 0
        self.commands = 0
        self.rejected = 0
        self.last_rejection = ""
        self.published = 0
        self.last_action: list[float] = []
        self.episode_returns: list[float] = []
        self._return = 0.0

    def start(self) -> None:
        self.robot.connect()
        for topic in self.cfg.observations:
            self.transport.advertise(topic.topic, topic.type)
        self.transport.advertise(self.cfg.clock_topic, "rosgraph_msgs/Clock")
        self.transport.subscribe(self.cfg.command.topic, self.cfg.command.type, self._on_command)
        self.publish_observation()

    def _on_command(self, msg: Message) -> None:
        try:
            values = self.command.decode(msg)
        except BadMessage as err:
            self.rejected += 1
            self.last_rejection = str(err)
            logger.warning("rejected command %d: %s", self.rejected, err)
            return
        action = torch.as_tensor(values, dtype=torch.float32).reshape(self._latest_action.shape)
        with self._lock:
            self.commands += 1
            self._latest_action = action
            if self.mode == "command":
                self._step(action)

    def _step(self, action: torch.Tensor) -> None:
        """Step the task once with ``action`` and publish what follows (the caller holds the lock)."""
        sent = self.robot.send_action(action)
        self.last_action = sent.tolist()
        self.steps += 1
        self._return += self.robot.last_step["reward"]
        if self.robot.last_step["terminated"] or self.robot.last_step["truncated"]:
            self.episode_returns.append(self._return)
            self._return = 0.0
        self.publish_observation()

    def publish_observation(self) -> None:
        stamp = self.steps * self.dt
        obs = map_obs(self.robot.read_observation(), lambda x: x.cpu().numpy())
        values = split_observation(self.cfg, obs)
        for topic in self.cfg.observations:
            self.transport.publish(topic.topic, encode_observation(topic, values[topic.topic], stamp))
        self.transport.publish(self.cfg.clock_topic, {"clock": stamp})
        self.published += 1
        self._last_publish = self.clock()

    def tick(self) -> None:
        """One period: step (rate mode), or repeat the observation if no command came (command mode)."""
        with self._lock:
            if self.mode == "rate":
                self._step(self._latest_action)
            elif self.clock() - self._last_publish >= self.cfg.period_s:
                self.publish_observation()

    def run(self, stop: threading.Event, duration_s: float | None = None) -> None:
        """Tick every period until ``stop`` is set (or ``duration_s`` passes)."""
        start = next_tick = self.clock()
        while not stop.is_set() and (duration_s is None or self.clock() - start < duration_s):
            self.transport.check()
            self.tick()
            next_tick += self.cfg.period_s
            stop.wait(max(0.0, next_tick - self.clock()))

    def report(self) -> dict[str, Any]:
        return {"steps": self.steps, "commands": self.commands, "rejected": self.rejected,
                "last_rejection": self.last_rejection, "published": self.published, "last_action": self.last_action,
                "episode_returns": self.episode_returns}

    def close(self) -> None:
        self.robot.close()
