"""The ROS bridge on ROS 2: the rclpy sidecar (its own venv, wheels from PyPI) under both nodes.

The outer test makes ``.venv-ros2`` with ``scripts/setup_ros2.sh`` (idempotent; it downloads
about 250 MB the first time), then runs this file again inside ``unshare --net --pid --fork
--mount-proc`` (as root; skipped with the reason where that is impossible), where only loopback
exists. Discovery stays on it: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a ``ROS_DOMAIN_ID``
of the test's own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ros_namespace import run_inside_a_namespace

IN_NAMESPACE = os.environ.get("EMBODIED_TEST_ROS2_NAMESPACE") == "1"
HERE = Path(__file__).resolve()
REPO = HERE.parent.parent

if not IN_NAMESPACE:

    def test_ros2_bridge_in_a_private_namespace():
        setup = subprocess.run([str(REPO / "scripts" / "setup_ros2.sh")], capture_output=True, text=True, timeout=900)
        if setup.returncode != 0:
            pytest.skip(f"cannot make the ROS 2 venv (rclpy wheels from PyPI): {setup.stderr.strip()[-500:]}")
        run_inside_a_namespace(HERE, "EMBODIED_TEST_ROS2_NAMESPACE", "not slow")

else:
    EMBODIED = str(Path(sys.executable).parent / "embodied")
    TASK = "Control/Pendulum-v0"
    POLICY = str(REPO / "assets" / "policies" / "control_pendulum_sac.pt")

    def test_policy_node_and_sim_node_exchange_messages_over_ros2(tmp_path):
        env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "ROS_DOMAIN_ID": str(random.randrange(1, 100)), "PYTHONUNBUFFERED": "1"}

        def start(name: str, *args: str) -> subprocess.Popen:
            log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            return subprocess.Popen([EMBODIED, "ros", *args, "--ros", "2", "--report", str(tmp_path / f"{name}.json")],
                                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

        sim = start("sim", "sim", TASK, "rate_hz=50")
        deploy = start("deploy", "deploy", TASK, "--checkpoint", POLICY, "--steps", "200", "rate_hz=50")
        try:
            assert deploy.wait(120) == 0, (tmp_path / "deploy.log").read_text()
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(30)
        policy = json.loads((tmp_path / "deploy.json").read_text())
        robot = json.loads((tmp_path / "sim.json").read_text())
        # Every command crossed two sidecars and DDS, stepped the simulator and was answered.
        assert policy["steps"] == 200 and policy["policy_steps"] >= 150, policy
        assert robot["commands"] == policy["commands_sent"] == robot["steps"] and robot["rejected"] == 0
        assert policy["received"] >= policy["commands_sent"] - 1
        assert "terminate called" not in (tmp_path / "sim.log").read_text()
