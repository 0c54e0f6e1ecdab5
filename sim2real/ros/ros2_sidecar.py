"""The ROS 2 sidecar: one rclpy node in its own interpreter, driven by JSON lines on stdin/stdout.

ROS 1 and ROS 2 message modules share names (``std_msgs``...), so rclpy cannot live in the
suite's interpreter. ``ros2.py`` starts this file with the Python of the ROS 2 venv
(``scripts/setup_ros2.sh``); it imports only the standard library and rclpy.

Requests (one JSON object a line on stdin):
``{"op": "subscribe" | "advertise", "topic": ..., "type": "pkg/Name"}``,
``{"op": "publish", "topic": ..., "msg": {...}}``,
``{"op": "subscribers", "topic": ..., "count": n, "timeout_s": t}`` (answered ``{"reply": bool}``),
``{"op": "shutdown"}``. Incoming messages go out as ``{"topic": ..., "msg": {...}}``. Messages are
dicts with ROS's field names, times as float seconds, bytes as ``{"__bytes__": base64}``.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor

TIME_TYPES = ("builtin_interfaces/Time", "builtin_interfaces/Duration")
QUEUE_DEPTH = 100  # reliable delivery with room for a second at 100 Hz


def message_class(msg_type: str) -> type:
    package, name = msg_type.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def to_ros(cls: type, data: dict[str, Any]) -> Any:
    msg = cls()
    for field, field_type in cls.get_fields_and_field_types().items():
        if field not in data:
            continue
        value = data[field]
        item_type = field_type[len("sequence<"):-1] if field_type.startswith("sequence<") else None
        if field_type in TIME_TYPES:
            ns = round(float(value) * 1e9)
            value = type(getattr(msg, field))(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        elif isinstance(value, dict) and "__bytes__" in value:
            value = base64.b64decode(value["__bytes__"])
        elif item_type is not None and "/" in item_type:
            value = [to_ros(message_class(item_type.replace("/msg/", "/")), v) for v in value]
        elif "/" in field_type:
            value = to_ros(type(getattr(msg, field)), value)
        setattr(msg, field, value)
    return msg


def from_ros(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, field_type in msg.get_fields_and_field_types().items():
        value = getattr(msg, field)
        if field_type in TIME_TYPES:
            value = value.sec + value.nanosec * 1e-9
        elif field_type == "sequence<uint8>" or isinstance(value, bytes):
            value = {"__bytes__": base64.b64encode(bytes(value)).decode()}
        elif field_type.startswith("sequence<") and "/" in field_type:
            value = [from_ros(v) for v in value]
        elif "/" in field_type:
            value = from_ros(value)
        elif field_type.startswith("sequence<") or hasattr(value, "tolist"):
            value = list(value.tolist() if hasattr(value, "tolist") else value)
        out[field] = value
    return out


def main() -> None:
    rclpy.init()
    node = rclpy.create_node(sys.argv[1] if len(sys.argv) > 1 else "embodied")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    write_lock = threading.Lock()
    node_lock = threading.Lock()
    publishers: dict[str, Any] = {}

    def send(obj: dict[str, Any]) -> None:
        with write_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    spinning = threading.Thread(target=executor.spin, daemon=True)
    spinning.start()
    send({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "shutdown":
            break
        topic = request.get("topic", "")
        with node_lock:
            if op == "subscribe":
                node.create_subscription(message_class(request["type"]), topic,
                                         lambda m, t=topic: send({"topic": t, "msg": from_ros(m)}), QUEUE_DEPTH)
            elif op == "advertise" and topic not in publishers:
                cls = message_class(request["type"])
                publishers[topic] = (cls, node.create_publisher(cls, topic, QUEUE_DEPTH))
            elif op == "publish":
                cls, publisher = publishers[topic]
                publisher.publish(to_ros(cls, request["msg"]))
        if op == "subscribers":
            deadline = time.monotonic() + request["timeout_s"]
            while publishers[topic][1].get_subscription_count() < request["count"] and time.monotonic() < deadline:
                time.sleep(0.02)
            send({"reply": publishers[topic][1].get_subscription_count() >= request["count"]})
    # Stop spinning before the node goes, or rclpy's C++ side aborts ("terminate called ...").
    executor.shutdown(timeout_sec=2.0)
    spinning.join(timeout=2.0)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
