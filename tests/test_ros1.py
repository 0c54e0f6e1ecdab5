"""The ROS bridge against a real ROS 1 graph: Debian's rosmaster, rospy, rostopic.

Every node is its own process, as on a robot: ``embodied ros sim`` serves the task,
``embodied ros deploy`` runs the policy, Debian's ``rostopic`` is a stranger's client. Nothing
may leave the machine, so the normal run collects one test that runs this file again inside
``unshare --net --pid --fork --mount-proc`` (as root; skipped with the reason where that or
Debian's ROS 1 is missing), where only loopback exists; in there each test gets its own
``rosmaster`` on 127.0.0.1 and a free port, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_namespace import run_inside_a_namespace

IN_NAMESPACE = os.environ.get("EMBODIED_TEST_ROS_NAMESPACE") == "1"
HERE = Path(__file__).resolve()
REPO = HERE.parent.parent

if not IN_NAMESPACE:

    def _missing_ros1() -> str | None:
        if shutil.which("rosmaster") is None or shutil.which("rostopic") is None:
            return "Debian's ROS 1 is not installed (apt-get install python3-rosmaster python3-rostopic ...; .ci/run does)"
        try:
            import rospy  # noqa: F401
        except ModuleNotFoundError:
            return "the venv cannot import Debian's rospy: run scripts/setup_ros1.sh (make test does)"
        return None

    def _run_inside_a_namespace(markers: str) -> None:
        if (reason := _missing_ros1()) is not None:
            pytest.skip(reason)
        run_inside_a_namespace(HERE, "EMBODIED_TEST_ROS_NAMESPACE", markers)

    def test_ros1_bridge_in_a_private_namespace():
        _run_inside_a_namespace("not slow")

    @pytest.mark.slow  # about 20 s more: rosbag record from a live graph
    def test_slow_ros1_bridge_in_a_private_namespace():
        _run_inside_a_namespace("slow")

else:
    EMBODIED = str(Path(sys.executable).parent / "embodied")
    TASK = "Control/Pendulum-v0"
    POLICY = str(REPO / "assets" / "policies" / "control_pendulum_sac.pt")
    COMMAND = "/forward_command_controller/commands"

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    class Graph:
        """A rosmaster and the processes a test starts against it."""

        def __init__(self, tmp: Path) -> None:
            self.tmp = tmp
            self.port = free_port()
            self.env = {**os.environ, "ROS_MASTER_URI": f"http://127.0.0.1:{self.port}", "ROS_IP": "127.0.0.1",
                        "ROS_HOME": str(tmp / "ros_home"), "PYTHONUNBUFFERED": "1"}
            self.processes: list[subprocess.Popen] = []
            self.master = self.start("master", ["rosmaster", "--core", "-p", str(self.port)])
            deadline = time.monotonic() + 20
            while not self.master_online():
                assert time.monotonic() < deadline, f"rosmaster did not start: {self.log('master')}"
                time.sleep(0.1)

        def master_online(self) -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
            out = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            process = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
            self.processes.append(process)
            return process

        def log(self, name: str) -> str:
            return (self.tmp / f"{name}.log").read_text()

        def sim(self, *args: str) -> subprocess.Popen:
            return self.start("sim", [EMBODIED, "ros", "sim", TASK, "--report", str(self.tmp / "sim.json"), *args])

        def deploy(self, *args: str, name: str = "deploy") -> subprocess.Popen:
            return self.start(name, [EMBODIED, "ros", "deploy", TASK, "--checkpoint", POLICY,
                                     "--report", str(self.tmp / f"{name}.json"), *args])

        def wait_for_topic(self, topic: str, timeout: float = 30.0) -> None:
            deadline = time.monotonic() + timeout
            while topic not in self.rostopic("list"):
                assert time.monotonic() < deadline, f"{topic} never appeared"
                time.sleep(0.2)

        def rostopic(self, *args: str, timeout: float = 30.0) -> str:
            return subprocess.run(["rostopic", *args], env=self.env, capture_output=True, text=True,
                                  timeout=timeout).stdout

        def stop(self, process: subprocess.Popen, timeout: float = 30.0) -> int:
            process.send_signal(signal.SIGTERM)
            return process.wait(timeout)

        def report(self, name: str) -> dict:
            return json.loads((self.tmp / f"{name}.json").read_text())

        def close(self) -> None:
            for process in reversed(self.processes):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(10)
                    except subprocess.TimeoutExpired:
                        process.kill()

    @pytest.fixture
    def graph(tmp_path):
        g = Graph(tmp_path)
        yield g
        g.close()

    def echoed_commands(log: str) -> list[float]:
        """The first element of every ``data: [...]`` that ``rostopic echo`` printed."""
        return [float(line.split("[", 1)[1].split(",")[0].rstrip("]")) for line in log.splitlines()
                if line.startswith("data: [")]

    def test_policy_node_drives_the_sim_node_for_1000_steps_at_100_hz_then_a_stranger_commands_it(graph):
        sim = graph.sim("rate_hz=100")
        deploy = graph.deploy("--steps", "1000", "rate_hz=100")  # it waits for the sim to subscribe
        graph.wait_for_topic("/embodied/status")
        echoed = yaml.safe_load(graph.rostopic("echo", "-n", "1", "/embodied/status").split("\n---")[0])
        heartbeat = json.loads(echoed["data"])
        assert heartbeat["state"] in ("ok", "safe") and "latency_ms" in heartbeat
        assert deploy.wait(60) == 0, graph.log("deploy")
        # The policy node is done; Debian's rostopic, a stranger's client, sends one command.
        out = graph.rostopic("pub", "-1", COMMAND, "std_msgs/Float64MultiArray", "{data: [1.5]}")
        assert graph.stop(sim) == 0, out
        policy, robot = graph.report("deploy"), graph.report("sim")
        # A tick may find no (or a late) observation at the start or when CI's two cores are busy
        # with other tests, so the real-time figures are checked loosely: bench/ros.py measures them.
        assert policy["steps"] == 1000 and policy["policy_steps"] >= 900, policy
        # No command lost on the way, each one stepped the simulator once and was answered.
        assert robot["commands"] == policy["commands_sent"] + 1 == robot["steps"]
        # Every reply reached the policy node: it waits for those still on the wire when its loop ends
        # (CI saw four in flight on a loaded machine before it did); two may come later still.
        assert policy["received"] >= policy["commands_sent"] - 2 and robot["rejected"] == 0
        # Most steps' replies came within their 10 ms period (a broken loop answers none in time).
        assert policy["answered"] >= 0.8 * policy["policy_steps"], policy
        assert max(robot["episode_returns"]) > -400  # the trained policy balances (random: about -1200)
        assert robot["last_action"] == [1.5]  # the stranger's command was obeyed

    def test_extreme_policy_output_never_leaves_the_bounds_on_the_wire(graph):
        # All three at once: the policy node waits for its two subscribers, the sim and rostopic.
        sim = graph.sim("rate_hz=100", "action_scale=2.0", "action_offset=0.5")
        echo = graph.start("echo", ["rostopic", "echo", COMMAND])
        code = (
            "import itertools, torch\n"
            "from embodied.sim2real.ros.config import load_bridge_cfg\n"
            "from embodied.sim2real.ros.nodes import run_deploy\n"
            "values = itertools.cycle([1e9, -1e9, float('nan'), float('inf'), -float('inf')])\n"
            f"cfg = load_bridge_cfg('{TASK}', overrides={{'rate_hz': 100, 'action_scale': 2.0, 'action_offset': 0.5}})\n"
            f"run_deploy('{TASK}', None, cfg, steps=200, report_path='{graph.tmp / 'deploy.json'}',"
            " policy_fn=lambda obs: torch.full((1,), next(values)), subscribers=2, wait_s=60)\n"
        )
        deploy = graph.start("deploy", [sys.executable, "-c", code])
        assert deploy.wait(60) == 0, graph.log("deploy")
        time.sleep(0.5)
        graph.stop(echo)
        graph.stop(sim)
        wire = echoed_commands(graph.log("echo"))
        assert len(wire) >= 190, graph.log("echo")[-2000:]
        # Pendulum's torque bounds are [-2, 2]: on the wire [-2 * 2 + 0.5, 2 * 2 + 0.5].
        assert all(-3.5 <= w <= 4.5 for w in wire), sorted(set(wire))
        report = graph.report("deploy")
        assert report["nonfinite"] >= 100 and report["clipped"] >= 40

    def test_faults_bad_messages_then_a_dead_publisher_then_the_master_gone(graph):
        """One policy-node run through three faults in turn (one run keeps the default tests short):
        malformed messages are rejected with their reason while the loop runs on; a killed
        publisher trips the watchdog within two periods and the safe action goes out; the master
        going away stops the loop with a clear error, after the safe action."""
        sim = graph.sim("--mode", "rate", "rate_hz=100")
        echo = graph.start("echo", ["rostopic", "echo", COMMAND])
        deploy = graph.deploy("--duration", "60", "rate_hz=100")
        graph.wait_for_topic("/embodied/status")
        # One publisher at a time: `rostopic pub -1` latches, and rospy may open a second connection
        # to a latched publisher when several register at once, delivering its message twice.
        for i, bad in enumerate(("{name: [obs_0, obs_1], position: [1.0, 2.0]}",  # a joint missing
                                 "{name: [obs_0, obs_1, obs_2], position: [1.0, 2.0]}",  # 3 names, 2 values
                                 "{name: [obs_0, obs_1, obs_2], position: [1.0, .nan, 2.0]}")):  # NaN
            publisher = graph.start(f"bad{i}", ["rostopic", "pub", "-1", "/joint_states", "sensor_msgs/JointState", bad])
            assert publisher.wait(30) == 0
        log = graph.log("deploy")
        assert "joints ['obs_2'] missing" in log and "3 names but 2 position values" in log and "NaN or inf" in log
        steps_before = json.loads(yaml.safe_load(graph.rostopic("echo", "-n", "1", "/embodied/status")
                                                 .split("\n---")[0])["data"])["step"]
        time.sleep(0.5)
        sim.send_signal(signal.SIGKILL)
        time.sleep(1.0)
        graph.stop(graph.master)
        assert deploy.wait(30) == 3
        graph.stop(echo)
        log = graph.log("deploy")
        assert f"the ROS master at http://127.0.0.1:{graph.port} went away; the safe action was sent last" in log
        report = graph.report("deploy")
        # Each bad message is rejected (a duplicate delivery by rospy counts again, never fewer).
        assert 3 <= report["rejected"]["/joint_states"] <= 6 and steps_before > 200  # it ran on past them
        assert "stale observation on /joint_states" in log and report["faults"]["stale"] >= 50
        # A loaded machine may trip it briefly before the kill; the trip after the kill is the last one.
        # Two periods (20 ms) is the bound the simulated-time test (test_ros_bridge.py) and bench/ros.py
        # hold; real processes on a loaded 2-core machine are descheduled for tens of ms at times (28 ms
        # seen in a full parallel test run), so here the bound is four periods.
        assert report["watchdog_trips_ms"] and report["watchdog_trips_ms"][-1] <= 40.0, report["watchdog_trips_ms"]
        assert report["faults"]["stop"] == 1 and "went away" in report["error"]
        assert echoed_commands(graph.log("echo"))[-20:] == [0.0] * 20  # the control family's safe action: zero

    def test_tactile_and_nav_robots_speak_images_and_twists_with_a_stranger(graph):
        """The shipped Tactile and Nav configs on real rospy: Debian's rostopic reads one pad's rgb8
        Image and the depth camera's 32FC1 Image, and a Twist it publishes moves each robot."""
        for name, task in (("tactile", "Tactile/PegInsert-v0"), ("nav", "Nav/ObjectNav-v0")):
            graph.start(name, [EMBODIED, "ros", "sim", task, "--report", str(graph.tmp / f"{name}.json")])
        graph.wait_for_topic("/tactile/right/image_raw", timeout=60)
        graph.wait_for_topic("/camera/depth/image_raw", timeout=60)

        def header_of(topic: str) -> dict:
            return yaml.safe_load(graph.rostopic("echo", "-n", "1", "--noarr", topic).split("\n---")[0])

        assert "Type: sensor_msgs/Image" in graph.rostopic("info", "/tactile/left/image_raw")
        pad, depth = header_of("/tactile/left/image_raw"), header_of("/camera/depth/image_raw")
        assert (pad["height"], pad["width"], pad["encoding"], pad["step"]) == (60, 80, "rgb8", 240)
        assert (depth["height"], depth["width"], depth["encoding"]) == (128, 128, "32FC1")
        graph.rostopic("pub", "-1", "/servo/twist_cmd", "geometry_msgs/Twist",
                       "{linear: {x: 0.5, y: 0.0, z: -1.0}, angular: {x: 0.0, y: 0.0, z: 2.5}}")
        graph.rostopic("pub", "-1", "/cmd_vel", "geometry_msgs/Twist", "{linear: {x: 0.5}}")  # move_forward
        for process in graph.processes[1:]:
            assert graph.stop(process) == 0
        tactile, nav = graph.report("tactile"), graph.report("nav")
        # 1 m/s and 5 rad/s per unit of action (assets/ros/tactile.yaml); the Nav row of move_forward.
        assert tactile["last_action"] == pytest.approx([0.5, 0.0, -1.0, 0.0, 0.0, 0.5]) and tactile["rejected"] == 0
        # One step per command (rospy may deliver a latched `rostopic pub -1` message twice).
        assert nav["last_action"] == [-1.0, 1.0, -1.0, -1.0] and 1 <= nav["steps"] <= 2 and nav["rejected"] == 0

    @pytest.mark.slow
    def test_bags_from_rosbag_record_are_read_and_ours_are_recorded_live(graph):
        from embodied.sim2real.ros.bags import read_bag
        from embodied.sim2real.ros.codecs import decode_observation
        from embodied.sim2real.ros.config import load_bridge_cfg

        sim = graph.sim("--mode", "rate", "rate_hz=50")
        graph.wait_for_topic("/joint_states")
        theirs, ours = graph.tmp / "theirs.bag", graph.tmp / "ours.bag"
        rosbag = graph.start("rosbag", ["rosbag", "record", "--duration", "3", "-O", str(theirs), "/joint_states",
                                        "/clock"])
        recorder = graph.start("record", [EMBODIED, "ros", "record", TASK, str(ours), "--duration", "3"])
        assert rosbag.wait(60) == 0 and recorder.wait(60) == 0, graph.log("rosbag") + graph.log("record")
        graph.stop(sim)
        topic = load_bridge_cfg(TASK).observations[0]
        states = [m for m in read_bag(theirs) if m.topic == "/joint_states"]
        assert len(states) >= 50
        assert decode_observation(topic, states[-1].data, (3,), np.dtype(np.float32)).shape == (3,)
        assert {m.topic for m in read_bag(theirs)} == {"/joint_states", "/clock"}
        info = subprocess.run(["rosbag", "info", "--yaml", str(ours)], capture_output=True, text=True, timeout=60)
        topics = {t["topic"]: t["messages"] for t in yaml.safe_load(info.stdout)["topics"]}
        assert topics["/joint_states"] >= 50, info.stdout + info.stderr
