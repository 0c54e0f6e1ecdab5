"""What the bridge needs of a ROS version, and an in-memory one for tests.

A transport subscribes callbacks to topics, publishes messages (dicts with ROS's field names,
see ``codecs.py``) and says whether its graph still exists. The ROS 1 backend (``ros1.py``)
implements it on rospy; :class:`InMemoryTransport` delivers synchronously within one process.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

Message = dict[str, Any]
Callback = Callable[[Message], None]


class TransportError(RuntimeError):
    """The ROS graph is gone (the master stopped, the sidecar died): the loop must stop."""


class Transport(Protocol):
    def subscribe(self, topic: str, msg_type: str, callback: Callback) -> None:
        """Call ``callback(message)`` for every message on ``topic`` (possibly from another thread)."""

    def advertise(self, topic: str, msg_type: str) -> None:
        """Announce that this node publishes ``topic``; call before ``publish``."""

    def publish(self, topic: str, msg: Message) -> None: ...

    def check(self) -> None:
        """Raise :class:`TransportError`, saying why, when the graph can no longer carry messages."""

    def close(self) -> None: ...


class InMemoryTransport:
    """Topics within one process: ``publish`` calls the subscribers at once; every message is kept."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[Callback]] = defaultdict(list)
        self.types: dict[str, str] = {}
        self.published: dict[str, list[Message]] = defaultdict(list)
        self.error: str | None = None
        """Set it to make ``check`` fail, as a master that went away does."""

    def _declare(self, topic: str, msg_type: str) -> None:
        known = self.types.setdefault(topic, msg_type)
        if known != msg_type:
            raise TransportError(f"{topic} carries {known}, not {msg_type}")

    def subscribe(self, topic: str, msg_type: str, callback: Callback) -> None:
        self._declare(topic, msg_type)
        self.subscribers[topic].append(callback)

    def advertise(self, topic: str, msg_type: str) -> None:
        self._declare(topic, msg_type)

    def publish(self, topic: str, msg: Message) -> None:
        if topic not in self.types:
            raise TransportError(f"publish on {topic} before advertise")
        self.published[topic].append(msg)
        for callback in list(self.subscribers[topic]):
            callback(msg)

    def check(self) -> None:
        if self.error is not None:
            raise TransportError(self.error)

    def close(self) -> None:
        self.subscribers.clear()
