"""ROS bridge bench: round-trip latency through a real ROS 1 graph, raw TCP for scale, the watchdog.

    python bench/ros.py            # as root: runs itself again inside a private network namespace
    python bench/ros.py --force    # measure again rather than reuse bench/results/ros/*.json

Pieces (each a JSON file under bench/results/ros/, printed together as one JSON object):

- ``ros1.<rate>``: a pinger node publishes sensor_msgs/JointState at ``rate`` Hz through the
  bridge's ROS 1 transport; an echo node answers each with a std_msgs/Float64MultiArray carrying
  the same counter. Round trip p50/p90/p99 and messages never answered (``dropped``).
- ``tcp``: the same count of small messages ping-ponged over a raw loopback TCP socket between
  two processes, the floor any transport sits on.
- ``watchdog``: ``embodied ros sim`` (rate mode, 100 Hz) and ``embodied ros deploy`` at 100 Hz;
  after 3 s of control the sim is killed (then the policy node gets SIGTERM), and it reports the time from its newest observation to the
  safe action (``watchdog_ms``) and its control-loop periods (``jitter``).

- ``ros2.<rate>``: the same pair on ROS 2, each node's rclpy in its sidecar (``ros2.py``), Fast
  DDS discovery on localhost only; ``scripts/setup_ros2.sh`` must have made ``.venv-ros2``.

Everything binds 127.0.0.1 inside a namespace where only loopback exists.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pieces import REPO, code_state, machine, run_piece  # noqa: E402

RESULTS = REPO / "bench" / "results" / "ros"
EMBODIED = str(Path(sys.executable).parent / "embodied")
RATES = {100: 2000, 500: 2500}
"""Rate (Hz) -> messages sent."""


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 3) for q in (50, 90, 99)}


# ---------------------------------------------------------------------- node roles (subprocesses)
def make_transport(ros: int, name: str) -> Any:
    from embodied.sim2real.ros.config import BridgeCfg
    from embodied.sim2real.ros.nodes import make_transport as bridge_transport

    return bridge_transport(ros, name, BridgeCfg())


def role_echo(ros: int) -> None:
    """Answer every JointState on /ping with a Float64MultiArray on /pong holding its counter."""
    from embodied.sim2real.ros.codecs import array_message

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # the transport's threads inherit it; sigwait takes it
    transport = make_transport(ros, "bench_echo")
    transport.advertise("/pong", "std_msgs/Float64MultiArray")
    transport.subscribe("/ping", "sensor_msgs/JointState",
                        lambda msg: transport.publish("/pong", array_message(msg["position"][:1], "counter")))
    signal.sigwait({signal.SIGTERM})
    transport.close()


def role_ping(ros: int, rate: float, count: int, out: str) -> None:
    """Send ``count`` JointStates at ``rate`` Hz and time each answer; write the round trips to ``out``."""
    transport = make_transport(ros, "bench_ping")
    sent: dict[int, float] = {}
    round_trips: list[float] = []

    def on_pong(msg: dict[str, Any]) -> None:
        start = sent.pop(int(msg["data"][0]), None)
        if start is not None:
            round_trips.append((time.perf_counter() - start) * 1e3)

    transport.subscribe("/pong", "std_msgs/Float64MultiArray", on_pong)
    transport.advertise("/ping", "sensor_msgs/JointState")
    assert transport.wait_for_subscribers("/ping", 30), "the echo node never subscribed"
    time.sleep(1.0)  # let /pong connect back too
    period, next_send = 1.0 / rate, time.perf_counter()
    for i in range(count):
        sent[i] = time.perf_counter()
        transport.publish("/ping", {"name": ["j0", "j1", "j2"], "position": [float(i), 0.0, 0.0]})
        next_send += period
        time.sleep(max(0.0, next_send - time.perf_counter()))
    time.sleep(1.0)  # late answers still count
    Path(out).write_text(json.dumps({"round_trips_ms": round_trips, "dropped": count - len(round_trips)}))
    transport.close(linger_s=0.0)


def role_tcp_echo(port_file: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        Path(port_file).write_text(str(server.getsockname()[1]))
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(64):
            conn.sendall(data)


# ---------------------------------------------------------------------- pieces
class Master:
    """A rosmaster on 127.0.0.1 and a free port, for one piece."""

    def __enter__(self) -> dict[str, str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.home = tempfile.mkdtemp(prefix="ros_home")
        self.env = {**os.environ, "ROS_MASTER_URI": f"http://127.0.0.1:{port}", "ROS_IP": "127.0.0.1",
                    "ROS_HOME": self.home}
        self.process = subprocess.Popen(["rosmaster", "--core", "-p", str(port)], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return self.env
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("rosmaster did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def ping_pong(ros: int, rate: int, count: int, env: dict[str, str]) -> dict[str, Any]:
    """An echo node and a pinger node (separate processes) on ROS ``ros``; their round trips."""
    with tempfile.TemporaryDirectory() as tmp:
        echo = subprocess.Popen([sys.executable, __file__, "--role", "echo", "--ros", str(ros)], env=env)
        out = Path(tmp) / "ping.json"
        subprocess.run([sys.executable, __file__, "--role", "ping", "--ros", str(ros), "--rate", str(rate),
                        "--count", str(count), "--out", str(out)], env=env, check=True, timeout=600)
        echo.send_signal(signal.SIGTERM)
        echo.wait(30)
        return json.loads(out.read_text())


def piece_ros2(rate: int, count: int) -> dict[str, Any]:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": "42"}
    result = ping_pong(2, rate, count, env)
    return {"rate_hz": rate, "sent": count, **percentiles(result["round_trips_ms"]), "dropped": result["dropped"],
            "max_ms": round(max(result["round_trips_ms"]), 3), "machine": machine(), "code": code_state("sim2real/ros")}


def piece_ros1(rate: int, count: int) -> dict[str, Any]:
    with Master() as env:
        result = ping_pong(1, rate, count, env)
    return {"rate_hz": rate, "sent": count, **percentiles(result["round_trips_ms"]), "dropped": result["dropped"],
            "max_ms": round(max(result["round_trips_ms"]), 3), "machine": machine(), "code": code_state("sim2real/ros")}


def piece_tcp(count: int = 2000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        server = subprocess.Popen([sys.executable, __file__, "--role", "tcp-echo", "--out", str(port_file)])
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        round_trips = []
        with socket.create_connection(("127.0.0.1", int(port_file.read_text()))) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            payload = b"x" * 48
            for _ in range(count):
                start = time.perf_counter()
                client.sendall(payload)
                received = 0
                while received < len(payload):
                    received += len(client.recv(64))
                round_trips.append((time.perf_counter() - start) * 1e3)
        server.wait(30)
    stats = percentiles(round_trips)
    return {"messages": count, "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"], "machine": machine()}


def piece_watchdog() -> dict[str, Any]:
    task, policy = "Control/Pendulum-v0", str(REPO / "assets" / "policies" / "control_pendulum_sac.pt")
    with Master() as env, tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "deploy.json"
        sim = subprocess.Popen([EMBODIED, "ros", "sim", task, "--mode", "rate", "rate_hz=100"], env=env)
        deploy = subprocess.Popen([EMBODIED, "ros", "deploy", task, "--checkpoint", policy, "--report", str(report),
                                   "rate_hz=100"], env=env)
        # The first heartbeat says the loop runs; give it 3 s of control, kill the robot, then stop the node.
        subprocess.run(["rostopic", "echo", "-n", "1", "/embodied/status"], env=env, capture_output=True, timeout=120)
        time.sleep(3.0)
        sim.kill()
        time.sleep(1.0)
        deploy.send_signal(signal.SIGTERM)
        deploy.wait(60)
        result = json.loads(report.read_text())
    return {"watchdog_ms": round(result["watchdog_trips_ms"][-1], 3), "watchdog_trips": len(result["watchdog_trips_ms"]),
            "policy_steps": result["policy_steps"], "stop_reason": result["stop_reason"],
            "period_ms": result["period_ms"], "inference_ms": result["latency_ms"], "steps": result["steps"],
            "machine": machine(), "code": code_state("sim2real/ros")}


def measure(force: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate, count in RATES.items():
        piece = run_piece(RESULTS, f"ros1_{rate}hz", lambda r=rate, c=count: piece_ros1(r, c), force)
        out[f"ros1.{rate}"] = {k: piece[k] for k in ("p50_ms", "p90_ms", "p99_ms", "dropped")}
    for rate, count in RATES.items():
        piece = run_piece(RESULTS, f"ros2_{rate}hz", lambda r=rate, c=count: piece_ros2(r, c), force)
        out[f"ros2.{rate}"] = {k: piece[k] for k in ("p50_ms", "p90_ms", "p99_ms", "dropped")}
    tcp = run_piece(RESULTS, "tcp", piece_tcp, force)
    out["tcp"] = {"p50_ms": tcp["p50_ms"], "p99_ms": tcp["p99_ms"]}
    watchdog = run_piece(RESULTS, "watchdog", piece_watchdog, force)
    out["watchdog_ms"] = watchdog["watchdog_ms"]
    out["jitter"] = {"period_ms_100hz": watchdog["period_ms"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="measure again rather than reuse results")
    parser.add_argument("--role", choices=("echo", "ping", "tcp-echo"), help=argparse.SUPPRESS)
    parser.add_argument("--ros", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "echo":
        return role_echo(args.ros)
    if args.role == "ping":
        return role_ping(args.ros, args.rate, args.count, args.out)
    if args.role == "tcp-echo":
        return role_tcp_echo(args.out)
    if os.environ.get("EMBODIED_BENCH_ROS_NAMESPACE") != "1":
        # Nothing may leave the machine: run again where only loopback exists.
        inner = f"ip link set lo up && {sys.executable} {__file__}" + (" --force" if args.force else "")
        env = {**os.environ, "EMBODIED_BENCH_ROS_NAMESPACE": "1"}
        sys.exit(subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", inner],
                                env=env, cwd=REPO).returncode)
    print(json.dumps(measure(args.force), indent=2))


if __name__ == "__main__":
    main()
