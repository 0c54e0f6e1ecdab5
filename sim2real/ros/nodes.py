"""What ``embodied ros sim`` and ``embodied ros deploy`` run: a node process around the cores.

Each function makes the transport of the chosen ROS version, runs a core from ``bridge.py`` or
``sim_node.py`` until its end (or SIGINT/SIGTERM), and writes a JSON report (``report_path``)
that tests and users can read; :func:`run_record` records the config's topics into a bag.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Literal

from embodied.sim2real.ros.bridge import BridgeError, PolicyBridge, PolicyFn, RosRobot, learner_policy
from embodied.sim2real.ros.config import BridgeCfg
from embodied.sim2real.ros.sim_node import SimNode
from embodied.sim2real.ros.transport import Transport

logger = logging.getLogger(__name__)


def make_transport(ros: int, node_name: str, cfg: BridgeCfg) -> Transport:
    """The transport of ROS version ``ros``: rospy in this process (1), or an rclpy sidecar (2)."""
    if ros == 1:
        from embodied.sim2real.ros.ros1 import Ros1Transport

        return Ros1Transport(node_name, cfg.master_check_every_s)
    if ros == 2:
        from embodied.sim2real.ros.ros2 import Ros2Transport

        return Ros2Transport(node_name)
    raise ValueError(f"--ros {ros}: the bridge speaks ROS 1 or ROS 2")


def _write_report(path: str | Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2))


def run_sim(
    task_id: str,
    cfg: BridgeCfg,
    mode: Literal["command", "rate"] = "command",
    seed: int = 0,
    duration_s: float | None = None,
    report_path: str | Path | None = None,
    ros: int = 1,
) -> dict[str, Any]:
    """Serve ``task_id`` as a robot until SIGINT/SIGTERM (or ``duration_s``); returns the report."""
    transport = make_transport(ros, "embodied_sim", cfg)
    node = SimNode(task_id, cfg, transport, mode=mode, seed=seed)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    error = ""
    try:
        node.start()
        logger.info("serving %s on %s (%s mode)", task_id, [t.topic for t in cfg.observations], mode)
        node.run(stop, duration_s)
    except Exception as err:  # the report says why the node stopped; the CLI turns it into an exit code
        error = str(err)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        report = {"task_id": task_id, "mode": mode, **node.report(), "error": error}
        _write_report(report_path, report)
        node.close()
        transport.close()
    return report


def run_deploy(
    task_id: str,
    checkpoint: str | Path | None,
    cfg: BridgeCfg,
    steps: int | None = None,
    duration_s: float | None = None,
    report_path: str | Path | None = None,
    ros: int = 1,
    wait_s: float = 10.0,
    policy_fn: PolicyFn | None = None,
    subscribers: int = 1,
) -> dict[str, Any]:
    """Drive the robot on ``cfg``'s topics with the checkpoint's policy (or ``policy_fn``); returns the report.

    Waits up to ``wait_s`` for the command topic to have ``subscribers`` subscribers, so no command
    is lost to connection set-up. A master that goes away raises :class:`BridgeError` after the safe action.
    """
    from embodied.tasks import registry

    task_overrides: dict[str, Any] = {}
    if policy_fn is None:
        if checkpoint is None:
            raise ValueError("deploy needs --checkpoint (a run folder, checkpoint.pt or a shipped policy file)")
        from embodied.policies.train import load_policy

        learner, run = load_policy(checkpoint)
        if run["task_id"] != task_id:
            raise ValueError(f"checkpoint {checkpoint} was trained on {run['task_id']}, not {task_id}")
        task_overrides = run["task_overrides"]
        policy_fn = learner_policy(learner)
    env = registry.make(task_id, num_envs=1, **task_overrides)
    observation_space, action_space = env.single_observation_space, env.single_action_space
    env.close()
    transport = make_transport(ros, "embodied_policy", cfg)
    robot = RosRobot(cfg, observation_space, action_space, transport)
    bridge = PolicyBridge(policy_fn, robot)
    report: dict[str, Any] = {"task_id": task_id, "checkpoint": None if checkpoint is None else str(checkpoint)}
    try:
        robot.connect()
        wait = getattr(transport, "wait_for_subscribers", None)
        if wait is not None and not wait(cfg.command.topic, wait_s, subscribers):
            logger.warning("fewer than %d subscribers on %s after %.0f s; sending anyway", subscribers,
                           cfg.command.topic, wait_s)
        bridge.run(steps=steps, duration_s=duration_s)
        # The replies to the last commands are still on the wire when the loop ends; count them in
        # the report rather than calling them lost.
        bridge.stats.received = _wait_for_late_replies(robot, cfg.period_s)
    except BridgeError as err:
        report["error"] = str(err)
        raise
    finally:
        report.update(bridge.stats.to_dict())
        _write_report(report_path, report)
        transport.close()
    return report


def _wait_for_late_replies(robot: RosRobot, period_s: float, quiet_s: float = 0.1, limit_s: float = 1.0) -> int:
    """Observation messages received once none has come for ``quiet_s`` (or ``period_s`` x 3), at most ``limit_s``."""
    quiet = max(quiet_s, 3 * period_s)
    deadline = time.monotonic() + limit_s
    received, last_change = robot.received(), time.monotonic()
    while (now := time.monotonic()) < deadline and now - last_change < quiet:
        time.sleep(min(period_s, quiet) / 2)
        if (count := robot.received()) != received:
            received, last_change = count, time.monotonic()
    return robot.received()


def run_record(
    task_id: str,
    cfg: BridgeCfg,
    bag_path: str | Path,
    duration_s: float | None = None,
    ros: int = 1,
) -> dict[str, Any]:
    """Record the config's observation, command and status topics until SIGINT/SIGTERM (or ``duration_s``)."""
    from embodied.sim2real.ros.bags import record_topics

    transport = make_transport(ros, "embodied_record", cfg)
    topics = [(t.topic, t.type) for t in cfg.observations]
    topics += [(cfg.command.topic, cfg.command.type), (cfg.status_topic, "std_msgs/String")]
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return {"task_id": task_id, **record_topics(transport, topics, bag_path, stop, duration_s)}
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        transport.close(linger_s=0.0)
