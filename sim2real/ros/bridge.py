"""The policy node's core: a fixed-rate loop from ROS messages to safe commands, knowing no ROS version.

:class:`RosRobot` is the robot seen through a :class:`~embodied.sim2real.ros.transport.Transport`,
behind the suite's :class:`~embodied.sim2real.hardware.Hardware` protocol: its observation and
action spaces are the task's, so every action passes the same
:class:`~embodied.sim2real.safety.ActionLimiter` as in simulation, and the wire carries
``action * action_scale + action_offset``. Incoming messages are decoded and checked (joint
names and order, sizes, NaN) by ``codecs.py``; a bad one is dropped with its reason logged.

:class:`PolicyBridge` runs the loop. Each period it either sends the policy's (limited) action
or, when something is wrong, the task's **safe action** (``safety.safe_action``: hold the last
applied action, or zero) and says why:

- an observation topic has never spoken, or its newest message is older than the watchdog
  timeout (checked at each tick *and* at the moment the timeout runs out, so a dead publisher
  is caught within ``obs_timeout_s`` rather than at the next tick);
- the policy answered after the inference deadline, or with an action of the wrong shape;
- the transport says the graph is gone (then the loop stops with :class:`BridgeError`).

It publishes a JSON heartbeat (std_msgs/String), logs per-step inference latency (warning past
the period), and on SIGINT/SIGTERM, or any error, sends the safe action last.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch

from embodied.sim.env import Obs, map_obs
from embodied.sim2real.hardware import Hardware
from embodied.sim2real.ros.codecs import BadMessage, CommandCodec, decode_observation, join_observation, topic_spaces
from embodied.sim2real.ros.config import BridgeCfg, TopicCfg
from embodied.sim2real.ros.transport import Message, Transport, TransportError

logger = logging.getLogger(__name__)

PolicyFn = Callable[[Obs], Any]


class BridgeError(RuntimeError):
    """The loop had to stop (the ROS graph went away); the safe action was sent first."""


@dataclass
class _Latest:
    """The newest accepted observation entry of one topic and when (monotonic seconds) it arrived."""

    value: np.ndarray | None = None
    received: float = 0.0
    count: int = 0


class RosRobot(Hardware):
    """A robot reached through ROS topics, described by the task's spaces and a :class:`BridgeCfg`."""

    def __init__(
        self,
        cfg: BridgeCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        transport: Transport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg, self.transport, self.clock = cfg, transport, clock
        self._observation_space, self._action_space = observation_space, action_space
        self.name = f"RosRobot({cfg.command.topic})"
        self.entries = topic_spaces(cfg, observation_space)
        self.command = CommandCodec(cfg, int(np.prod(action_space.shape)))
        self._latest = {t.topic: _Latest() for t in cfg.observations}
        self._lock = threading.Lock()
        self.rejected: Counter[str] = Counter()
        """Rejected messages per topic."""
        self.last_rejection: str = ""
        self.commands_sent = 0
        super().__init__(cfg.safety)

    @property
    def observation_space(self) -> gymnasium.Space:
        return self._observation_space

    @property
    def action_space(self) -> gymnasium.spaces.Box:
        return self._action_space

    # ------------------------------------------------------------------ Hardware hooks
    def _connect(self) -> None:
        for topic in self.cfg.observations:
            self.transport.subscribe(topic.topic, topic.type, self._receiver(topic))
        self.transport.advertise(self.cfg.command.topic, self.cfg.command.type)
        self.transport.advertise(self.cfg.status_topic, "std_msgs/String")

    def _disconnect(self) -> None:
        pass  # the transport outlives the robot: the caller closes it

    def _read(self) -> Obs:
        with self._lock:
            values = {topic: latest.value for topic, latest in self._latest.items()}
        if any(v is None for v in values.values()):
            raise RuntimeError("read before every observation topic has spoken; check observation_fault() first")
        return map_obs(join_observation(self.cfg, self._observation_space, values), torch.as_tensor)

    def _send(self, action: torch.Tensor) -> None:
        self.transport.publish(self.cfg.command.topic, self.command.encode(action.double().cpu().numpy(), self.cfg.period_s))
        self.commands_sent += 1

    # ------------------------------------------------------------------ incoming messages
    def _receiver(self, topic: TopicCfg) -> Callable[[Message], None]:
        box = self.entries[topic.topic]

        def receive(msg: Message) -> None:
            try:
                value = decode_observation(topic, msg, tuple(box.shape), box.dtype)
            except BadMessage as err:
                self.rejected[topic.topic] += 1
                self.last_rejection = str(err)
                if self.rejected[topic.topic] <= 10 or self.rejected[topic.topic] % 100 == 0:
                    logger.warning("rejected message %d on %s: %s", self.rejected[topic.topic], topic.topic, err)
                return
            now = self.clock()
            with self._lock:
                latest = self._latest[topic.topic]
                latest.value, latest.received, latest.count = value, now, latest.count + 1

        return receive

    def received(self) -> int:
        """Observation messages accepted so far, over all topics."""
        with self._lock:
            return sum(latest.count for latest in self._latest.values())

    def observation_fault(self) -> str | None:
        """Why the observation cannot be used now (a topic silent or stale), or None."""
        now = self.clock()
        timeout = self.cfg.watchdog_timeout_s
        with self._lock:
            for topic, latest in self._latest.items():
                if latest.value is None:
                    return f"no observation on {topic} yet"
                if now >= latest.received + timeout:  # the same sum as watchdog_expiry, so both agree
                    age = now - latest.received
                    return f"stale observation on {topic}: {age * 1e3:.1f} ms old >= timeout {timeout * 1e3:.1f} ms"
        return None

    def watchdog_expiry(self) -> float:
        """The clock time at which the oldest topic's newest message turns stale (inf before any arrives)."""
        with self._lock:
            if any(latest.value is None for latest in self._latest.values()):
                return float("inf")
            return min(latest.received for latest in self._latest.values()) + self.cfg.watchdog_timeout_s

    def last_received(self) -> float:
        with self._lock:
            return min(latest.received for latest in self._latest.values())

    # ------------------------------------------------------------------ the safe action
    def send_safe_action(self) -> torch.Tensor:
        """Send the safe action (hold the last applied action, or zero), not rate-limited; return it."""
        self._require_connection("send_safe_action")
        held = self._prev if self._has_prev else self.limiter.zero
        safe = (held if self.limiter.safe_action == "hold" else self.limiter.zero).clamp(self.limiter.low, self.limiter.high)
        self._send(safe.clone())
        self._prev, self._has_prev = safe.clone(), True
        return safe.clone()


@dataclass
class BridgeStats:
    """What a :class:`PolicyBridge` run did; ``to_dict`` is the JSON the CLI writes."""

    steps: int = 0
    policy_steps: int = 0
    """Steps that sent the policy's (limited) action."""
    safe_steps: int = 0
    """Safe actions sent: at faulty ticks, watchdog expiries and the stop."""
    answered: int = 0
    """Steps that found an observation newer than at the previous step."""
    overruns: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    """Inference time of each policy step."""
    faults: Counter[str] = field(default_factory=Counter)
    """Safe actions per kind of reason (``stale``, ``missing``, ``late``, ``shape``, ``stop``, ``transport``)."""
    last_reason: str = ""
    tick_starts: list[float] = field(default_factory=list)
    """Clock time at which each tick began (for the period jitter)."""
    watchdog_trips_ms: list[float] = field(default_factory=list)
    """For each ok -> stale transition: ms from the newest observation to the safe action."""
    clipped: int = 0
    nonfinite: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    received: int = 0
    commands_sent: int = 0
    stop_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        periods = np.diff(self.tick_starts) * 1e3 if len(self.tick_starts) > 1 else np.zeros(1)
        return {
            "steps": self.steps, "policy_steps": self.policy_steps, "safe_steps": self.safe_steps,
            "answered": self.answered, "overruns": self.overruns, "received": self.received,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                           "max": float(lat.max())},
            "period_ms": {"p1": float(np.percentile(periods, 1)), "p50": float(np.percentile(periods, 50)),
                          "p99": float(np.percentile(periods, 99)), "max": float(periods.max())},
            "faults": dict(self.faults), "last_reason": self.last_reason,
            "watchdog_trips_ms": self.watchdog_trips_ms, "clipped": self.clipped, "nonfinite": self.nonfinite,
            "rejected": self.rejected, "commands_sent": self.commands_sent, "stop_reason": self.stop_reason,
        }


def _fault_kind(reason: str) -> str:
    for kind in ("stale", "no observation", "inference", "shape", "stop", "graph"):
        if kind in reason:
            return {"no observation": "missing", "inference": "late", "graph": "transport"}.get(kind, kind)
    return "other"


class PolicyBridge:
    """Drive a :class:`RosRobot` with ``policy_fn(observation) -> action`` at ``cfg.rate_hz``."""

    def __init__(self, policy_fn: PolicyFn, robot: RosRobot, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy_fn, self.robot, self.cfg = policy_fn, robot, robot.cfg
        self.clock, self.sleep = clock, sleep
        self.stats = BridgeStats()
        self.state = "starting"
        self.reason = ""
        self._stop = threading.Event()
        self._last_status = -float("inf")
        self._seen = 0
        self._last_latency_warning = -float("inf")

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to stop after the current step (thread- and signal-safe)."""
        self.stats.stop_reason = self.stats.stop_reason or reason
        self._stop.set()

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        """One control period: the policy's limited action, or the safe action and the reason."""
        self.robot.transport.check()
        received = self.robot.received()
        if received > self._seen:
            self.stats.answered += 1
        self._seen = received
        self.stats.steps += 1
        fault = self.robot.observation_fault()
        if fault is None:
            start = self.clock()
            action = self.policy_fn(self.robot.read_observation())
            latency = self.clock() - start
            self._record_latency(latency)
            if latency > self.cfg.deadline_s:
                fault = f"inference took {latency * 1e3:.1f} ms > deadline {self.cfg.deadline_s * 1e3:.1f} ms"
            else:
                try:
                    self.robot.send_action(action)
                except ValueError as err:  # wrongly shaped policy output
                    fault = f"policy action has the wrong shape: {err}"
                else:
                    self._count_limits()
                    self.stats.policy_steps += 1
                    self._set_state("ok", "")
        if fault is not None:
            self._send_safe(fault)

    def _send_safe(self, reason: str) -> None:
        self.robot.send_safe_action()
        kind = _fault_kind(reason)
        if kind == "stale" and self.state == "ok":  # a watchdog trip: time from the newest observation
            self.stats.watchdog_trips_ms.append((self.clock() - self.robot.last_received()) * 1e3)
        self.stats.safe_steps += 1
        self.stats.faults[kind] += 1
        self.stats.last_reason = reason
        self._set_state("safe", reason)

    def _watchdog(self) -> None:
        """Called when the newest observation turns stale between ticks: act now, not at the next tick."""
        fault = self.robot.observation_fault()
        if fault is not None and self.state == "ok":
            self._send_safe(fault)

    def _count_limits(self) -> None:
        report = self.robot.last_safety
        if report is not None:
            self.stats.nonfinite += int(report["nonfinite"])
            self.stats.clipped += int((report["bound_clipped"] | report["rate_limited"]).sum())

    def _record_latency(self, latency: float) -> None:
        self.stats.latencies_ms.append(latency * 1e3)
        logger.debug("step %d inference %.2f ms", self.stats.steps, latency * 1e3)
        now = self.clock()
        if latency > self.cfg.period_s and now - self._last_latency_warning > 1.0:  # at most one warning a second
            self._last_latency_warning = now
            logger.warning("inference took %.1f ms, longer than the %.1f ms period", latency * 1e3, self.cfg.period_s * 1e3)

    # ------------------------------------------------------------------ status
    def _set_state(self, state: str, reason: str) -> None:
        # A change of kind is news; "stale, 25 ms old" after "stale, 15 ms old" is not.
        changed = state != self.state or _fault_kind(reason) != _fault_kind(self.reason)
        if changed and state == "safe":
            logger.warning("sending the safe action: %s", reason)
        self.state, self.reason = state, reason
        if changed or self.clock() - self._last_status >= self.cfg.status_every_s:
            self.publish_status()

    def publish_status(self) -> None:
        self._last_status = self.clock()
        lat = self.stats.latencies_ms[-1] if self.stats.latencies_ms else None
        status = {"step": self.stats.steps, "state": self.state, "reason": self.reason, "latency_ms": lat,
                  "safe_steps": self.stats.safe_steps, "rejected": int(sum(self.robot.rejected.values()))}
        self.robot.transport.publish(self.cfg.status_topic, {"data": json.dumps(status)})

    # ------------------------------------------------------------------ the loop
    def run(self, steps: int | None = None, duration_s: float | None = None) -> BridgeStats:
        """Run until ``steps`` ticks, ``duration_s`` seconds, a stop request or SIGINT/SIGTERM.

        Always ends by sending the safe action. A transport failure raises :class:`BridgeError`
        after that; any other error propagates after it too.
        """
        robot = self.robot
        opened = not robot.is_connected
        if opened:
            robot.connect()
        previous_handlers = self._install_signal_handlers()
        period = self.cfg.period_s
        start = next_tick = self.clock()
        error: BaseException | None = None
        try:
            while not self._stop.is_set():
                now = self.clock()
                if steps is not None and self.stats.steps >= steps:
                    self.request_stop(f"{steps} steps done")
                    break
                if duration_s is not None and now - start >= duration_s:
                    self.request_stop(f"{duration_s} s done")
                    break
                if now >= next_tick:
                    self.stats.tick_starts.append(now)
                    self.step()
                    next_tick += period
                    if self.clock() > next_tick:  # behind: skip the missed ticks rather than bursting
                        self.stats.overruns += 1
                        next_tick = self.clock() + period
                    continue
                expiry = robot.watchdog_expiry() if self.state == "ok" else float("inf")
                if expiry <= now:
                    self._watchdog()
                    continue
                self.sleep(max(0.0, min(next_tick, expiry) - now))
        except TransportError as err:
            error = err
            self.stats.stop_reason = f"the ROS graph went away: {err}"
        except BaseException as err:
            error = err
            self.stats.stop_reason = f"error: {err!r}"
        finally:
            self._restore_signal_handlers(previous_handlers)
            self._final_safe_action()
            self.stats.rejected = dict(robot.rejected)
            self.stats.received = robot.received()
            self.stats.commands_sent = robot.commands_sent
            if opened and robot.is_connected:
                robot.disconnect()
        if isinstance(error, TransportError):
            raise BridgeError(f"stopped: {error}; the safe action was sent last") from error
        if error is not None:
            raise error
        return self.stats

    def _final_safe_action(self) -> None:
        reason = f"stop: {self.stats.stop_reason or 'loop ended'}"
        try:
            self._send_safe(reason)
        except Exception as err:  # the graph may be gone: the last command could not go out
            logger.error("could not send the final safe action: %s", err)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda s, f: self.request_stop(signal.Signals(s).name))
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def learner_policy(learner: Any) -> PolicyFn:
    """``learner.act`` on one unbatched observation (deterministic, no gradients)."""

    def act(obs: Obs) -> torch.Tensor:
        with torch.no_grad():
            return torch.as_tensor(learner.act(map_obs(obs, lambda x: x[None]), deterministic=True))[0]

    return act
