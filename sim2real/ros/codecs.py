"""Messages to observations and actions to messages, for every message type the bridge speaks.

Messages here are plain dicts with ROS's field names (``{"name": [...], "position": [...]}``);
times are float seconds. Each backend turns them into its own message classes, so this file
knows no ROS version and the in-memory transport of the unit tests carries the same dicts.

Decoding checks everything a wire can get wrong (names, sizes, NaN/inf, encodings) and raises
:class:`BadMessage` with the reason; the bridge logs the reason and drops the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np

from embodied.sim2real.ros.config import BridgeCfg, TopicCfg

Message = dict[str, Any]

# Image encodings the bridge reads and writes, and the element type of each.
IMAGE_ENCODINGS: dict[str, np.dtype] = {
    "32FC1": np.dtype(np.float32),
    "mono8": np.dtype(np.uint8),
    "rgb8": np.dtype(np.uint8),
}


class BadMessage(ValueError):
    """A message that cannot become part of an observation or an action; the text says why."""


def element_names(topic: TopicCfg, size: int, default_prefix: str) -> tuple[str, ...]:
    """The topic's configured names, or ``<prefix>_<i>``; a count other than ``size`` is a config error."""
    if not topic.names:
        return tuple(f"{default_prefix}_{i}" for i in range(size))
    if len(topic.names) != size:
        raise ValueError(f"{topic.topic}: {len(topic.names)} names configured for {size} values: {list(topic.names)}")
    return tuple(topic.names)


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise BadMessage(f"{what} holds NaN or inf at indices {np.flatnonzero(~np.isfinite(values)).tolist()}")
    return values


# ---------------------------------------------------------------------- observations
def entry_space(space: gymnasium.Space, topic: TopicCfg) -> gymnasium.spaces.Box:
    """What ``topic`` fills: the whole Box, or the dict entry ``topic.key``, or one slice of it (``topic.index``)."""
    if isinstance(space, gymnasium.spaces.Dict):
        if topic.key not in space.spaces:
            raise ValueError(f"{topic.topic}: key {topic.key!r} is not an observation entry; entries: {list(space.spaces)}")
        box = space.spaces[topic.key]
    elif topic.key:
        raise ValueError(f"{topic.topic}: key {topic.key!r} given, but the observation is one vector (leave key empty)")
    else:
        box = space
    if topic.index == -1:
        return box  # type: ignore[return-value]
    if not 0 <= topic.index < box.shape[0]:
        raise ValueError(f"{topic.topic}: index {topic.index} is not one of the {box.shape[0]} slices of"
                         f" {topic.key or 'the observation'} {box.shape}")
    return gymnasium.spaces.Box(box.low[topic.index], box.high[topic.index], dtype=box.dtype)


def topic_spaces(cfg: BridgeCfg, space: gymnasium.Space) -> dict[str, gymnasium.spaces.Box]:
    """Each observation topic's part of ``space``, checking that the topics cover it exactly once.

    An entry is covered by one topic (``index: -1``) or by one topic per slice; entries named in
    ``unobserved`` by none (and only those)."""
    boxes = {t.topic: entry_space(space, t) for t in cfg.observations}
    if len(boxes) != len(cfg.observations):
        raise ValueError(f"an observation topic is listed twice: {[t.topic for t in cfg.observations]}")
    indices: dict[str, list[int]] = {}
    for t in cfg.observations:
        indices.setdefault(t.key, []).append(t.index)
    for key, got in indices.items():
        name = key or "the observation"
        if -1 in got and len(got) > 1:
            raise ValueError(f"{name} is given whole and in slices, or twice")
        if -1 in got:
            continue
        slices = entry_space(space, TopicCfg(topic=f"/{key}", key=key)).shape[0]
        if sorted(got) != list(range(slices)):
            raise ValueError(f"{name} has {slices} slices, but topics for {sorted(got)}")
    entries = set(space.spaces) if isinstance(space, gymnasium.spaces.Dict) else {""}
    if unknown := set(cfg.unobserved) - entries:
        raise ValueError(f"unobserved entries {sorted(unknown)} are not observation entries {sorted(entries)}")
    if both := set(cfg.unobserved) & set(indices):
        raise ValueError(f"entries {sorted(both)} are listed as unobserved but have a topic")
    if missing := entries - set(indices) - set(cfg.unobserved):
        raise ValueError(f"observation entries {sorted(missing)} have no topic in the bridge config"
                         " (list an entry the robot cannot sense under unobserved)")
    return boxes


def split_observation(cfg: BridgeCfg, obs: Any) -> dict[str, np.ndarray]:
    """What each observation topic carries of ``obs`` (a NumPy array or a dict of them)."""
    out = {}
    for t in cfg.observations:
        values = np.asarray(obs[t.key] if isinstance(obs, Mapping) else obs)
        out[t.topic] = values if t.index == -1 else values[t.index]
    return out


def join_observation(cfg: BridgeCfg, space: gymnasium.Space, values: Mapping[str, np.ndarray]) -> Any:
    """The observation from each topic's values (the inverse of :func:`split_observation`);
    ``unobserved`` entries are zeros."""

    def entry(key: str) -> np.ndarray:
        topics = sorted((t for t in cfg.observations if t.key == key), key=lambda t: t.index)
        if topics[0].index == -1:
            return values[topics[0].topic]
        return np.stack([values[t.topic] for t in topics])

    if not isinstance(space, gymnasium.spaces.Dict):
        return entry("")
    return {key: np.zeros(box.shape, box.dtype) if key in cfg.unobserved else entry(key)
            for key, box in space.spaces.items()}


def decode_observation(topic: TopicCfg, msg: Mapping[str, Any], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The observation entry ``msg`` carries, shaped ``shape``; :class:`BadMessage` if it cannot be one."""
    size = int(np.prod(shape))
    where = f"{topic.type} on {topic.topic}"
    if topic.type == "sensor_msgs/JointState":
        names = element_names(topic, size, topic.key or "obs")
        got_names = list(msg.get("name") or [])
        values = np.asarray(msg.get(topic.field) or [], dtype=np.float64)
        if len(values) != len(got_names):
            raise BadMessage(f"{where}: {len(got_names)} names but {len(values)} {topic.field} values")
        index = {n: i for i, n in enumerate(got_names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise BadMessage(f"{where}: joints {missing} missing (got {got_names}; expected {list(names)})")
        values = values[[index[n] for n in names]]
    elif topic.type == "std_msgs/Float64MultiArray":
        values = np.asarray(msg.get("data") or [], dtype=np.float64)
        if values.size != size:
            raise BadMessage(f"{where}: {values.size} values, expected {size}")
    elif topic.type == "sensor_msgs/Image":
        values = _decode_image(msg, size, where)
        if topic.layout == "CHW":  # the wire is rows x columns x channels
            channels, rows, cols = shape
            values = values.reshape(rows, cols, channels).transpose(2, 0, 1)
    else:
        raise ValueError(f"{where}: message type {topic.type} cannot carry an observation")
    return _finite(values.reshape(shape), where).astype(dtype, copy=False)


def encode_observation(topic: TopicCfg, values: np.ndarray, stamp: float) -> Message:
    """The message that carries observation entry ``values`` (what the sim node publishes)."""
    header = {"stamp": stamp, "frame_id": ""}
    flat = np.asarray(values).reshape(-1)
    if topic.type == "sensor_msgs/JointState":
        names = element_names(topic, flat.size, topic.key or "obs")
        msg: Message = {"header": header, "name": list(names), "position": [], "velocity": [], "effort": []}
        msg[topic.field] = flat.astype(np.float64).tolist()
        return msg
    if topic.type == "std_msgs/Float64MultiArray":
        return array_message(flat, topic.key or "observation")
    if topic.type == "sensor_msgs/Image":
        image = np.asarray(values)
        return _encode_image(image.transpose(1, 2, 0) if topic.layout == "CHW" else image, header)
    raise ValueError(f"{topic.topic}: message type {topic.type} cannot carry an observation")


def _decode_image(msg: Mapping[str, Any], size: int, where: str) -> np.ndarray:
    encoding = msg.get("encoding", "")
    if encoding not in IMAGE_ENCODINGS:
        raise BadMessage(f"{where}: image encoding {encoding!r} not supported (use one of {sorted(IMAGE_ENCODINGS)})")
    dtype = IMAGE_ENCODINGS[encoding].newbyteorder(">" if msg.get("is_bigendian") else "<")
    data = bytes(msg.get("data") or b"")
    if len(data) % dtype.itemsize:
        raise BadMessage(f"{where}: {len(data)} bytes is not a whole number of {encoding} elements")
    values = np.frombuffer(data, dtype=dtype)
    if values.size != size:
        raise BadMessage(f"{where}: {msg.get('height')}x{msg.get('width')} {encoding} image has {values.size} values,"
                         f" expected {size}")
    return values.astype(IMAGE_ENCODINGS[encoding])


def _encode_image(values: np.ndarray, header: Message) -> Message:
    """A (H, W) or (H, W, C) array as an Image: float -> 32FC1 (depth), uint8 with 3 channels -> rgb8."""
    image = values.reshape(values.shape[0], values.shape[1], -1)
    channels = image.shape[2]
    if image.dtype == np.uint8:
        encoding = "rgb8" if channels == 3 else "mono8"
    else:
        image = image.astype(np.float32)
        encoding = "32FC1"
    if channels != 1 and encoding != "rgb8":
        raise ValueError(f"cannot send a {image.shape} {image.dtype} array as one Image (1 channel, or 3 for rgb8)")
    return {"header": header, "height": image.shape[0], "width": image.shape[1], "encoding": encoding,
            "is_bigendian": 0, "step": image.shape[1] * channels * image.itemsize, "data": image.tobytes()}


def array_message(values: np.ndarray | Sequence[float], label: str) -> Message:
    """A one-dimensional Float64MultiArray."""
    data = np.asarray(values, dtype=np.float64).reshape(-1).tolist()
    return {"layout": {"dim": [{"label": label, "size": len(data), "stride": len(data)}], "data_offset": 0},
            "data": data}


# ---------------------------------------------------------------------- commands
def wire_transform(cfg: BridgeCfg, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``action_scale`` and ``action_offset`` as per-element arrays of ``size``."""
    out = []
    for name in ("action_scale", "action_offset"):
        value = np.asarray(getattr(cfg, name), dtype=np.float64).reshape(-1)
        if value.size not in (1, size):
            raise ValueError(f"{name} has {value.size} values, expected 1 or {size}")
        out.append(np.broadcast_to(value, (size,)).copy())
    if (out[0] == 0).any():
        raise ValueError("action_scale must not be zero (the sim node divides by it)")
    return out[0], out[1]


class CommandCodec:
    """The task's actions to command messages and back, as the bridge config says.

    Continuous: the wire carries ``action * action_scale + action_offset``. Discrete
    (``command.discrete`` rows, for tasks that act by argmax over scores): the wire carries the
    argmax's row, and a received row decodes to scores with +1 for its action and -1 elsewhere.
    """

    def __init__(self, cfg: BridgeCfg, action_size: int) -> None:
        self.topic, self.action_size = cfg.command, action_size
        self.scale, self.offset = wire_transform(cfg, action_size)
        self.rows = np.asarray(cfg.command.discrete, dtype=np.float64) if cfg.command.discrete else None
        if self.rows is not None and len(self.rows) != action_size:
            raise ValueError(f"command.discrete has {len(self.rows)} rows for a task with {action_size} actions")
        self.wire_size = self.rows.shape[1] if self.rows is not None else action_size
        encode_command(self.topic, np.zeros(self.wire_size), 0.0)  # names that do not fit fail here, not mid-run

    def wire(self, action: np.ndarray) -> np.ndarray:
        """The values the command message carries for ``action``."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if self.rows is not None:
            return self.rows[int(np.argmax(action))]
        return action * self.scale + self.offset

    def encode(self, action: np.ndarray, duration_s: float) -> Message:
        return encode_command(self.topic, self.wire(action), duration_s)

    def decode(self, msg: Mapping[str, Any]) -> np.ndarray:
        """The action (flat, float64) a command message asks for; :class:`BadMessage` if it asks for none."""
        wire = decode_command(self.topic, msg, self.wire_size)
        if self.rows is None:
            return (wire - self.offset) / self.scale
        match = np.flatnonzero(np.all(np.abs(self.rows - wire) <= 1e-9, axis=1))
        if not match.size:
            raise BadMessage(f"{self.topic.type} on {self.topic.topic}: {wire.tolist()} is none of the discrete"
                             f" actions' commands {self.rows.tolist()}")
        scores = np.full(self.action_size, -1.0)
        scores[match[0]] = 1.0
        return scores


def encode_command(topic: TopicCfg, wire: np.ndarray, duration_s: float) -> Message:
    """The command message for ``wire`` (the action already scaled to the robot's units)."""
    wire = np.asarray(wire, dtype=np.float64).reshape(-1)
    if topic.type == "std_msgs/Float64MultiArray":
        return array_message(wire, "action")
    if topic.type == "trajectory_msgs/JointTrajectory":
        names = element_names(topic, wire.size, "action")
        point = {"positions": [], "velocities": [], "accelerations": [], "effort": [], "time_from_start": duration_s}
        point["positions" if topic.field == "position" else "velocities" if topic.field == "velocity" else "effort"] = (
            wire.tolist()
        )
        return {"header": {"stamp": 0.0, "frame_id": ""}, "joint_names": list(names), "points": [point]}
    if topic.type == "geometry_msgs/Twist":
        msg: Message = {"linear": {"x": 0.0, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}
        for name, value in zip(_twist_names(topic, wire.size), wire, strict=True):
            part, axis = name.split(".")
            msg[part][axis] = float(value)
        return msg
    raise ValueError(f"{topic.topic}: message type {topic.type} cannot carry a command")


def decode_command(topic: TopicCfg, msg: Mapping[str, Any], size: int) -> np.ndarray:
    """The wire values of a command message (what the sim node receives); :class:`BadMessage` if malformed."""
    where = f"{topic.type} on {topic.topic}"
    if topic.type == "std_msgs/Float64MultiArray":
        wire = np.asarray(msg.get("data") or [], dtype=np.float64)
    elif topic.type == "trajectory_msgs/JointTrajectory":
        names = element_names(topic, size, "action")
        points = msg.get("points") or []
        if not points:
            raise BadMessage(f"{where}: a trajectory without points")
        key = {"position": "positions", "velocity": "velocities", "effort": "effort"}[topic.field]
        values = list(points[0].get(key) or [])
        got = list(msg.get("joint_names") or [])
        if len(got) != len(values) or sorted(got) != sorted(names):
            raise BadMessage(f"{where}: joints {got} with {len(values)} {key}, expected {list(names)}")
        wire = np.asarray(values, dtype=np.float64)[[got.index(n) for n in names]]
    elif topic.type == "geometry_msgs/Twist":
        wire = np.asarray([msg[part][axis] for part, axis in (n.split(".") for n in _twist_names(topic, size))])
    else:
        raise ValueError(f"{where}: message type {topic.type} cannot carry a command")
    if wire.size != size:
        raise BadMessage(f"{where}: {wire.size} values, expected {size}")
    return _finite(wire, where)


def _twist_names(topic: TopicCfg, size: int) -> tuple[str, ...]:
    names = topic.names or ("linear.x", "angular.z")[:size]
    valid = {f"{p}.{a}" for p in ("linear", "angular") for a in "xyz"}
    if len(names) != size or not set(names) <= valid:
        raise ValueError(f"{topic.topic}: a Twist command needs {size} names out of {sorted(valid)}, got {list(names)}")
    return tuple(names)
