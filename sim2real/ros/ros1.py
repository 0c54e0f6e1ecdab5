"""The ROS 1 transport, on Debian's rospy (``python3-rospy``; ``scripts/setup_ros1.sh`` lets the venv import it).

Messages cross as dicts (see ``codecs.py``): :func:`to_ros` fills a rospy message class from
one, :func:`from_ros` reads one back, both by the class's own slot list, so every message type
the bridge uses needs no code of its own. Times are float seconds on the dict side.

rospy allows one node per process, so a :class:`Ros1Transport` is made once per process. It
checks that a master answers before ``init_node`` (which would otherwise wait forever), and a
thread asks the master every ``master_check_every_s`` whether it is still there: when it is not,
``check()`` raises :class:`~embodied.sim2real.ros.transport.TransportError` and the loop stops
safely. Publishers and subscribers use ``tcp_nodelay`` (without it, 100 Hz replies wait for
Nagle's algorithm: p99 30-100 ms here).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from embodied.sim2real.ros.transport import Callback, Message, TransportError

logger = logging.getLogger(__name__)

QUEUE_SIZE = 100
"""Messages a publisher or subscriber buffers; enough for a second of a stalled peer at 100 Hz."""


def import_rospy() -> Any:
    """rospy, or a ModuleNotFoundError saying how to install Debian's ROS 1."""
    try:
        import rospy
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the ROS 1 backend needs Debian's rospy: apt-get install python3-rospy python3-rosmaster python3-rostopic"
            " python3-std-msgs python3-sensor-msgs python3-geometry-msgs python3-trajectory-msgs, then run"
            " scripts/setup_ros1.sh (make setup does) so the venv can import it"
        ) from None
    return rospy


def message_class(msg_type: str) -> type:
    """The rospy class of ``pkg/Name`` (``Header`` is ``std_msgs/Header``)."""
    import roslib.message

    cls = roslib.message.get_message_class("std_msgs/Header" if msg_type == "Header" else msg_type)
    if cls is None:
        raise ModuleNotFoundError(f"no ROS 1 message class {msg_type}: install its Debian package (python3-<pkg>-msgs)")
    return cls


def _is_message(slot_type: str) -> bool:
    return "/" in slot_type or slot_type == "Header"


def to_ros(msg_type: str, data: Message) -> Any:
    """A rospy message of ``msg_type`` with the fields in ``data`` (missing fields keep their defaults)."""
    import rospy

    cls = message_class(msg_type)
    msg = cls()
    for slot, slot_type in zip(cls.__slots__, cls._slot_types, strict=True):
        if slot not in data:
            continue
        value = data[slot]
        base = slot_type.split("[")[0]
        if slot_type == "time":
            value = rospy.Time.from_sec(float(value))
        elif slot_type == "duration":
            value = rospy.Duration.from_sec(float(value))
        elif _is_message(base):
            value = [to_ros(base, v) for v in value] if slot_type.endswith("]") else to_ros(base, value)
        elif slot_type.startswith("uint8["):
            value = bytes(value)
        setattr(msg, slot, value)
    return msg


def from_ros(msg: Any) -> Message:
    """The fields of a rospy message as a dict (times as float seconds, byte arrays as bytes)."""
    out: Message = {}
    for slot, slot_type in zip(msg.__slots__, msg._slot_types, strict=True):
        value = getattr(msg, slot)
        base = slot_type.split("[")[0]
        if slot_type in ("time", "duration"):
            value = value.to_sec()
        elif _is_message(base):
            value = [from_ros(v) for v in value] if slot_type.endswith("]") else from_ros(value)
        elif slot_type.startswith("uint8["):
            value = bytes(value)
        elif slot_type.endswith("]"):
            value = list(value)
        out[slot] = value
    return out


def _keep_suite_logs_on_stderr(level: int) -> None:
    """rospy's ``init_node`` sends the root logger to its own log files; the suite's warnings
    (rejected messages, safe actions) must still reach the node's stderr."""
    suite = logging.getLogger("embodied")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    suite.addHandler(handler)
    suite.setLevel(level)
    suite.propagate = False


class Ros1Transport:
    """One rospy node: subscribe, advertise, publish; ``check`` fails once the master is gone."""

    def __init__(self, node_name: str, master_check_every_s: float = 0.5) -> None:
        rospy = import_rospy()
        import rosgraph

        self.rospy = rospy
        self.master_uri = rosgraph.get_master_uri()
        if not rosgraph.is_master_online():
            raise TransportError(
                f"no ROS master answers at {self.master_uri}: start one (rosmaster --core -p 11311, or roscore)"
                " or set ROS_MASTER_URI"
            )
        os.environ.setdefault("ROS_IP", "127.0.0.1")  # nodes bind loopback unless told otherwise
        level = logging.getLogger().getEffectiveLevel()
        rospy.init_node(node_name, anonymous=True, disable_signals=True, disable_rosout=True, disable_rostime=True)
        _keep_suite_logs_on_stderr(level)
        self.publishers: dict[str, Any] = {}
        self.subscribers: list[Any] = []
        self.error: str | None = None
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch_master, args=(master_check_every_s,), daemon=True)
        self._watcher.start()

    def _watch_master(self, every_s: float) -> None:
        import rosgraph

        while not self._closing.wait(every_s):
            if not rosgraph.is_master_online():
                self.error = f"the ROS master at {self.master_uri} went away"
                logger.error("%s", self.error)
                return

    def subscribe(self, topic: str, msg_type: str, callback: Callback) -> None:
        cls = message_class(msg_type)
        self.subscribers.append(self.rospy.Subscriber(topic, cls, lambda m: callback(from_ros(m)),
                                                      queue_size=QUEUE_SIZE, tcp_nodelay=True))

    def advertise(self, topic: str, msg_type: str) -> None:
        if topic not in self.publishers:
            self.publishers[topic] = (msg_type, self.rospy.Publisher(topic, message_class(msg_type),
                                                                     queue_size=QUEUE_SIZE, tcp_nodelay=True))

    def publish(self, topic: str, msg: Message) -> None:
        msg_type, publisher = self.publishers[topic]
        publisher.publish(to_ros(msg_type, msg))

    def wait_for_subscribers(self, topic: str, timeout_s: float, count: int = 1) -> bool:
        """Wait until ``count`` subscribers listen on ``topic`` (so the first messages are not lost); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.publishers[topic][1].get_num_connections() >= count:
                return True
            time.sleep(0.02)
        return False

    def check(self) -> None:
        if self.error is not None:
            raise TransportError(self.error)

    def close(self, linger_s: float = 0.2) -> None:
        """Give queued messages ``linger_s`` to leave (the last safe action among them), then shut rospy down."""
        self._closing.set()
        time.sleep(linger_s)
        self.rospy.signal_shutdown("embodied node stopped")
