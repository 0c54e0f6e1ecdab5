"""Bags: record the bridge's topics, write episodes, replay them open-loop, convert them to rollouts.

Bags are written and read with ``rosbags`` (pure Python): a path ending in ``.bag`` is a ROS 1
bag (Debian's ``rosbag info/play`` read it), any other path a ROS 2 bag folder with MCAP storage.
Messages cross as the same dicts the transports carry (``codecs.py``), converted field by field
through rosbags' own type definitions, so a bag holds exactly what the live graph carries.

- :func:`record_episode_bag` (``embodied eval --record-bag``): one episode of a policy driving a
  task, run through the real bridge core and sim node over an in-memory transport in simulated
  time, every published message kept.
- :func:`record_topics` (``embodied ros record``): the config's topics on a live graph.
- :func:`replay_bag` (``embodied ros replay``): each recorded command paired with the
  observation it answered; a policy acts on those observations open-loop, its actions are
  compared with the recorded ones, and the pairs can be saved in the rollout format.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.sim2real.ros.bridge import PolicyBridge, PolicyFn, RosRobot
from embodied.sim2real.ros.codecs import BadMessage, CommandCodec, decode_observation, join_observation, topic_spaces
from embodied.sim2real.ros.config import BridgeCfg
from embodied.sim2real.ros.sim_node import SimNode
from embodied.sim2real.ros.transport import Callback, InMemoryTransport, Message, Transport


@dataclass
class BagMessage:
    topic: str
    msg_type: str
    """ROS 1 spelling, ``sensor_msgs/JointState``."""
    stamp_s: float
    data: Message


def _typestore(ros1: bool) -> Any:
    try:
        from rosbags.typesys import Stores, get_typestore
    except ModuleNotFoundError:
        raise ModuleNotFoundError("bags need rosbags: pip install rosbags (the dev and ros extras have it)") from None
    return get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_JAZZY)


def _bag_type(msg_type: str) -> str:
    package, name = msg_type.split("/")
    return f"{package}/msg/{name}"


def is_ros1_bag(path: str | Path) -> bool:
    return Path(path).suffix == ".bag"


# ---------------------------------------------------------------------- dicts <-> rosbags messages
def _to_bag(store: Any, bag_type: str, data: Message) -> Any:
    """A rosbags message of ``bag_type`` from a dict (missing fields get zero values)."""
    from rosbags.typesys.base import Nodetype

    if bag_type in ("builtin_interfaces/msg/Time", "builtin_interfaces/msg/Duration"):
        ns = round(float(data if not isinstance(data, dict) else 0.0) * 1e9)
        return store.types[bag_type](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    fields = {}
    for name, (kind, spec) in store.fielddefs[bag_type][1]:
        value = data.get(name) if isinstance(data, dict) else None
        if kind == Nodetype.NAME:
            fields[name] = _to_bag(store, spec, value if value is not None else {})
        elif kind == Nodetype.BASE:
            base = spec[0]
            fields[name] = (value or "") if base == "string" else (float(value or 0) if "float" in base else int(value or 0))
        else:  # a sequence or fixed-size array
            (item_kind, item_spec), _ = spec
            items = value if value is not None else []
            if item_kind == Nodetype.NAME:
                fields[name] = [_to_bag(store, item_spec, v) for v in items]
            elif item_spec[0] == "string":
                fields[name] = list(items)
            elif item_spec[0] == "uint8":
                fields[name] = np.frombuffer(bytes(items), dtype=np.uint8)
            else:
                fields[name] = np.asarray(items, dtype=np.dtype(item_spec[0]))
    return store.types[bag_type](**fields)


def _from_bag(store: Any, bag_type: str, msg: Any) -> Any:
    """The dict of a rosbags message (times as float seconds, uint8 arrays as bytes)."""
    from rosbags.typesys.base import Nodetype

    if bag_type in ("builtin_interfaces/msg/Time", "builtin_interfaces/msg/Duration"):
        return msg.sec + msg.nanosec * 1e-9
    out: Message = {}
    for name, (kind, spec) in store.fielddefs[bag_type][1]:
        value = getattr(msg, name)
        if kind == Nodetype.NAME:
            out[name] = _from_bag(store, spec, value)
        elif kind == Nodetype.BASE:
            out[name] = value
        else:
            (item_kind, item_spec), _ = spec
            if item_kind == Nodetype.NAME:
                out[name] = [_from_bag(store, item_spec, v) for v in value]
            elif item_spec[0] == "uint8":
                out[name] = bytes(np.asarray(value, dtype=np.uint8))
            else:
                out[name] = list(value) if item_spec[0] == "string" else np.asarray(value).tolist()
    return out


# ---------------------------------------------------------------------- write and read
def write_bag(path: str | Path, messages: Iterable[BagMessage]) -> Path:
    """Write ``messages`` to a ROS 1 bag (``.bag``) or a ROS 2 MCAP bag folder (any other path)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; bags are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    ros1 = is_ros1_bag(path)
    store = _typestore(ros1)
    if ros1:
        from rosbags.rosbag1 import Writer

        writer: Any = Writer(path)
        serialize = store.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        serialize = store.serialize_cdr
    connections: dict[str, Any] = {}
    with writer:
        for m in messages:
            bag_type = _bag_type(m.msg_type)
            if m.topic not in connections:
                connections[m.topic] = writer.add_connection(m.topic, bag_type, typestore=store)
            writer.write(connections[m.topic], round(m.stamp_s * 1e9), serialize(_to_bag(store, bag_type, m.data), bag_type))
    return path


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """The messages of a ROS 1 or ROS 2 bag (ours, or ``rosbag record``'s), in time order."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no bag at {path}")
    wanted = set(topics) if topics is not None else None
    with AnyReader([path], default_typestore=_typestore(is_ros1_bag(path))) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for connection, stamp_ns, raw in reader.messages(connections=connections):
            bag_type = connection.msgtype
            data = _from_bag(reader.typestore, bag_type, reader.deserialize(raw, bag_type))
            yield BagMessage(connection.topic, bag_type.replace("/msg/", "/"), stamp_ns * 1e-9, data)


# ---------------------------------------------------------------------- recording
class RecordingTransport(InMemoryTransport):
    """The in-memory transport, keeping every published message with the clock's time."""

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        self.recorded: list[BagMessage] = []

    def publish(self, topic: str, msg: Message) -> None:
        # Strictly increasing stamps: a command and the observation it causes share one clock
        # time, and a ROS 1 bag reader orders equal stamps by topic, not by publication.
        stamp = max(self.clock(), self.recorded[-1].stamp_s + 1e-6) if self.recorded else self.clock()
        self.recorded.append(BagMessage(topic, self.types[topic], stamp, msg))
        super().publish(topic, msg)


def record_episode_bag(
    task_id: str,
    policy_fn: PolicyFn,
    path: str | Path,
    cfg: BridgeCfg,
    seed: int = 0,
    task_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One episode of ``policy_fn`` on ``task_id`` through the bridge and the sim node, written as a bag."""
    from embodied.tasks import registry

    now = [0.0]
    transport = RecordingTransport(lambda: now[0])
    sim = SimNode(task_id, cfg, transport, mode="command", seed=seed, clock=lambda: now[0], task_overrides=task_overrides)
    robot = RosRobot(cfg, sim.robot.observation_space, sim.robot.action_space, transport, clock=lambda: now[0])
    bridge = PolicyBridge(policy_fn, robot, clock=lambda: now[0], sleep=lambda dt: None)
    robot.connect()  # before the sim's first observation goes out
    sim.start()
    limit = registry.spec(task_id).max_episode_steps
    while not sim.episode_returns and bridge.stats.steps < limit:
        bridge.step()
        now[0] += cfg.period_s
    sim.close()
    write_bag(path, transport.recorded)
    return {"bag": str(path), "steps": bridge.stats.steps, "messages": len(transport.recorded),
            "episode_return": sim.episode_returns[0] if sim.episode_returns else None}


def record_topics(transport: Transport, topics: list[tuple[str, str]], path: str | Path, stop: threading.Event,
                  duration_s: float | None = None) -> dict[str, Any]:
    """Record ``topics`` [(name, type)] from a live graph until ``stop`` (or ``duration_s``), then write the bag."""
    recorded: list[BagMessage] = []
    lock = threading.Lock()

    def keep(topic: str, msg_type: str) -> Callback:
        def callback(msg: Message) -> None:
            with lock:
                recorded.append(BagMessage(topic, msg_type, time.time(), msg))

        return callback

    for topic, msg_type in topics:
        transport.subscribe(topic, msg_type, keep(topic, msg_type))
    stop.wait(duration_s)
    with lock:
        messages = sorted(recorded, key=lambda m: m.stamp_s)
    write_bag(path, messages)
    counts: dict[str, int] = {}
    for m in messages:
        counts[m.topic] = counts.get(m.topic, 0) + 1
    return {"bag": str(path), "messages": counts}


# ---------------------------------------------------------------------- replay
def replay_bag(
    path: str | Path,
    task_id: str,
    cfg: BridgeCfg,
    policy_fn: PolicyFn | None = None,
    rollout_path: str | Path | None = None,
) -> dict[str, Any]:
    """Pair each recorded command with the observation it answered; evaluate ``policy_fn`` on them open-loop.

    Returns the number of pairs, messages rejected on the way (with the first reason) and, with a
    policy, the mean and largest difference between its actions and the recorded ones (in the
    task's action units). ``rollout_path`` saves the pairs as an ``embodied-rollout-v1`` file
    (``obs``, ``actions``; rewards are NaN: a bag has none).
    """
    from embodied.tasks import registry

    env = registry.make(task_id, num_envs=1)
    observation_space, action_space = env.single_observation_space, env.single_action_space
    env.close()
    command = CommandCodec(cfg, int(np.prod(action_space.shape)))
    spaces = topic_spaces(cfg, observation_space)
    topics = {t.topic: t for t in cfg.observations}
    latest: dict[str, np.ndarray] = {}
    observations: list[Any] = []
    actions: list[np.ndarray] = []
    rejected: list[str] = []
    for m in read_bag(path, [*topics, cfg.command.topic]):
        try:
            if m.topic in topics:
                box = spaces[m.topic]
                latest[m.topic] = decode_observation(topics[m.topic], m.data, tuple(box.shape), box.dtype)
            elif len(latest) == len(topics):
                actions.append(command.decode(m.data).astype(np.float32).reshape(action_space.shape))
                observations.append(join_observation(cfg, observation_space, latest))
        except BadMessage as err:
            rejected.append(str(err))
    if not actions:
        raise ValueError(f"{path}: no command on {cfg.command.topic} after observations on {list(topics)}")
    summary: dict[str, Any] = {"bag": str(path), "task_id": task_id, "pairs": len(actions), "rejected": len(rejected),
                               "first_rejection": rejected[0] if rejected else ""}
    if policy_fn is not None:
        predicted = []
        for obs in observations:
            as_tensor = {k: torch.as_tensor(v) for k, v in obs.items()} if isinstance(obs, dict) else torch.as_tensor(obs)
            predicted.append(np.asarray(torch.as_tensor(policy_fn(as_tensor)).reshape(action_space.shape)))
        clipped = np.clip(np.stack(predicted), action_space.low, action_space.high)
        error = np.abs(clipped - np.stack(actions))
        summary.update(action_error_mean=float(error.mean()), action_error_max=float(error.max()))
    if rollout_path is not None:
        summary["rollout"] = str(save_pairs_as_rollout(rollout_path, task_id, path, observations, actions))
    return summary


def save_pairs_as_rollout(path: str | Path, task_id: str, bag: str | Path, observations: list[Any],
                          actions: list[np.ndarray]) -> Path:
    """(observation, action) pairs in the rollout format (``sim/viewer/record.py``); rewards unknown (NaN)."""
    from embodied.sim.viewer.record import save_rollout

    steps = len(actions)
    arrays: dict[str, np.ndarray] = {
        "actions": np.stack(actions).astype(np.float32),
        "rewards": np.full(steps, np.nan, np.float32),
        "terminated": np.zeros(steps, bool),
        "truncated": np.zeros(steps, bool),
        "episode_return": np.full(steps, np.nan, np.float32),
    }
    if isinstance(observations[0], dict):
        arrays.update({f"obs/{k}": np.stack([o[k] for o in observations]) for k in observations[0]})
    else:
        arrays["obs"] = np.stack(observations)
    meta = {"task_id": task_id, "policy": "bag", "bag": str(bag), "seed": None, "episodes": 0, "steps": steps,
            "task_overrides": {}, "adapters": {}}
    return save_rollout(path, meta, arrays)
