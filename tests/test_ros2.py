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
        # The policy node waits for replies still on the wire when its loop ends; two may come later.
        assert policy["received"] >= policy["commands_sent"] - 2
        assert "terminate called" not in (tmp_path / "sim.log").read_text()

    def test_tactile_pads_over_ros2_recorded_to_an_mcap_bag(tmp_path):
        """`ros sim` serves the tactile task on ROS 2 at 20 Hz; `ros record --ros 2` records it: each
        pad's rgb8 Image crosses DDS and two sidecars intact (decoded to the pad's channels-first slice)."""
        import numpy as np

        from embodied.sim2real.ros.bags import read_bag
        from embodied.sim2real.ros.codecs import decode_observation
        from embodied.sim2real.ros.config import load_bridge_cfg

        task = "Tactile/PegInsert-v0"
        env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "ROS_DOMAIN_ID": str(random.randrange(1, 100)), "PYTHONUNBUFFERED": "1"}
        logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("sim", "record")}  # noqa: SIM115
        sim = subprocess.Popen([EMBODIED, "ros", "sim", task, "--ros", "2", "--mode", "rate", "rate_hz=20"],
                               env=env, stdout=logs["sim"], stderr=subprocess.STDOUT, cwd=REPO)
        bag = tmp_path / "pads_mcap"
        try:
            # 20 s: on a fresh machine the sim node first compiles the tactile kernels (about 10 s).
            record = subprocess.run([EMBODIED, "ros", "record", task, str(bag), "--ros", "2", "--duration", "20"],
                                    env=env, stdout=logs["record"], stderr=subprocess.STDOUT, cwd=REPO, timeout=120)
            assert record.returncode == 0, (tmp_path / "record.log").read_text()
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(30)
        cfg = load_bridge_cfg(task)
        left = next(t for t in cfg.observations if t.topic == "/tactile/left/image_raw")
        images = [m for m in read_bag(bag) if m.topic == left.topic]
        assert len(images) >= 20, (tmp_path / "record.log").read_text()  # 20 s at 20 Hz, less the start-up
        pad = decode_observation(left, images[-1].data, (3, 60, 80), np.dtype(np.uint8))
        assert pad.std() > 10  # a gel image, not a blank
        assert {m.topic for m in read_bag(bag)} >= {"/tactile/right/image_raw", "/tactile/left/force_field", "/arm/proprio"}
