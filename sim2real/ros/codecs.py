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

import numpy as np

from embodied.sim2real.ros.config import TopicCfg

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
        return _encode_image(np.asarray(values), header)
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
