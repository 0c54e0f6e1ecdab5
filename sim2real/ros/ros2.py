"""The ROS 2 transport: rclpy in a sidecar process, spoken to over a pipe.

ROS 1 and ROS 2 message modules cannot share an interpreter, so the ROS 2 node runs
``ros2_sidecar.py`` with the Python of its own venv (``scripts/setup_ros2.sh`` makes
``.venv-ros2`` with rclpy wheels from PyPI; ``EMBODIED_ROS2_PYTHON`` names another). The bridge
core sees the same :class:`~embodied.sim2real.ros.transport.Transport` as with ROS 1: messages
are the same dicts, with bytes wrapped as ``{"__bytes__": base64}`` on the pipe. Discovery
follows ROS 2's environment (``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

from embodied.sim2real.ros.transport import Callback, Message, TransportError

logger = logging.getLogger(__name__)

SIDECAR = Path(__file__).with_name("ros2_sidecar.py")
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-ros2"


def ros2_python() -> str:
    """The ROS 2 venv's Python, or a ModuleNotFoundError saying how to make it."""
    python = os.environ.get("EMBODIED_ROS2_PYTHON") or str(DEFAULT_VENV / "bin" / "python")
    if not Path(python).is_file():
        raise ModuleNotFoundError(f"the ROS 2 backend needs rclpy in its own venv ({python} is missing):"
                                  " run scripts/setup_ros2.sh, or set EMBODIED_ROS2_PYTHON")
    return python


def _wrap_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: _wrap_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wrap_bytes(v) for v in value]
    return value


def _unwrap_bytes(value: Any) -> Any:
    if isinstance(value, dict):
        if "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        return {k: _unwrap_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_bytes(v) for v in value]
    return value


class Ros2Transport:
    """A ROS 2 node in a sidecar process; ``check`` fails once the sidecar is gone."""

    def __init__(self, node_name: str, start_timeout_s: float = 60.0) -> None:
        self.process = subprocess.Popen([ros2_python(), str(SIDECAR), node_name], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.process.stdout is not None
        self.callbacks: dict[str, list[Callback]] = {}
        self.replies: queue.Queue[Any] = queue.Queue()
        self._write_lock = threading.Lock()
        first = self.process.stdout.readline()
        if not first or not json.loads(first).get("ready"):
            raise TransportError(f"the ROS 2 sidecar did not start (exit code {self.process.poll()})")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            item = json.loads(line)
            if "reply" in item:
                self.replies.put(item["reply"])
                continue
            msg = _unwrap_bytes(item["msg"])
            for callback in self.callbacks.get(item["topic"], []):
                callback(msg)

    def _send(self, request: dict[str, Any]) -> None:
        self.check()
        assert self.process.stdin is not None
        with self._write_lock:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()

    def subscribe(self, topic: str, msg_type: str, callback: Callback) -> None:
        first = topic not in self.callbacks
        self.callbacks.setdefault(topic, []).append(callback)
        if first:
            self._send({"op": "subscribe", "topic": topic, "type": msg_type})

    def advertise(self, topic: str, msg_type: str) -> None:
        self._send({"op": "advertise", "topic": topic, "type": msg_type})

    def publish(self, topic: str, msg: Message) -> None:
        self._send({"op": "publish", "topic": topic, "msg": _wrap_bytes(msg)})

    def wait_for_subscribers(self, topic: str, timeout_s: float, count: int = 1) -> bool:
        self._send({"op": "subscribers", "topic": topic, "count": count, "timeout_s": timeout_s})
        return bool(self.replies.get(timeout=timeout_s + 10))

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise TransportError(f"the ROS 2 sidecar exited with code {code}")

    def close(self, linger_s: float = 0.2) -> None:
        """Let queued messages leave, then stop the sidecar."""
        if self.process.poll() is None:
            threading.Event().wait(linger_s)
            try:
                self._send({"op": "shutdown"})
                self.process.wait(10)
            except (TransportError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
