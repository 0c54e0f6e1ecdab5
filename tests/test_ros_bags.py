"""Bags: written with rosbags, read back by the suite and by Debian's ``rosbag info``; replay and conversion.

(Bags that ``rosbag record`` writes from a live graph are read in ``tests/test_ros1.py``.)
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="bags need rosbags (pip install rosbags; the dev extra has it)")

from embodied.cli import main  # noqa: E402
from embodied.sim2real.ros.bags import BagMessage, read_bag, write_bag  # noqa: E402
from embodied.sim2real.ros.codecs import encode_command, encode_observation  # noqa: E402
from embodied.sim2real.ros.config import TopicCfg  # noqa: E402

TASK = "Control/Pendulum-v0"
POLICY = "assets/policies/control_pendulum_sac.pt"


@pytest.mark.parametrize("name", ["episode.bag", "episode_mcap"])
def test_eval_records_a_bag_that_replays_to_the_same_actions(tmp_path, capsys, name):
    bag = tmp_path / name
    assert main(["eval", TASK, "--checkpoint", POLICY, "--episodes", "1", "--record-bag", str(bag)]) == 0
    recorded = json.loads(capsys.readouterr().out)["recorded_bag"]
    assert recorded["steps"] == 200 and recorded["messages"] > 600
    topics = {m.topic for m in read_bag(bag)}
    assert topics == {"/joint_states", "/forward_command_controller/commands", "/clock", "/embodied/status"}
    if name.endswith("mcap"):
        assert len(list(bag.glob("*.mcap"))) == 1 and (bag / "metadata.yaml").is_file()

    rollout = tmp_path / "episode.npz"
    assert main(["ros", "replay", TASK, str(bag), "--checkpoint", POLICY, "--rollout", str(rollout)]) == 0
    replay = json.loads(capsys.readouterr().out)
    # Open loop on the recorded observations, the same policy gives the recorded commands.
    assert replay["pairs"] == 200 and replay["rejected"] == 0 and replay["action_error_max"] == 0.0
    with np.load(rollout, allow_pickle=False) as data:
        assert str(data["format"]) == "embodied-rollout-v1"
        assert data["obs"].shape == (200, 3) and data["actions"].shape == (200, 1)
        assert np.abs(data["actions"]).max() <= 2.0


@pytest.mark.skipif(shutil.which("rosbag") is None, reason="Debian's rosbag is not installed (.ci/run installs it)")
def test_debians_rosbag_info_reads_a_suite_bag(tmp_path, capsys):
    bag = tmp_path / "episode.bag"
    assert main(["eval", TASK, "--checkpoint", POLICY, "--episodes", "1", "--record-bag", str(bag)]) == 0
    info = subprocess.run(["rosbag", "info", "--yaml", str(bag)], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    import yaml

    topics = {t["topic"]: t for t in yaml.safe_load(info.stdout)["topics"]}
    assert topics["/joint_states"]["type"] == "sensor_msgs/JointState" and topics["/joint_states"]["messages"] == 201
    assert topics["/forward_command_controller/commands"]["messages"] == 200


@pytest.mark.parametrize("name", ["all.bag", "all_mcap"])
def test_every_message_type_survives_a_bag(tmp_path, name):
    depth = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    messages = [
        BagMessage("/depth", "sensor_msgs/Image", 1.0,
                   encode_observation(TopicCfg(topic="/depth", type="sensor_msgs/Image"), depth, 1.0)),
        BagMessage("/traj", "trajectory_msgs/JointTrajectory", 1.5,
                   encode_command(TopicCfg(topic="/traj", type="trajectory_msgs/JointTrajectory", names=("a", "b")),
                                  np.array([0.5, -1.0]), 0.02)),
        BagMessage("/cmd_vel", "geometry_msgs/Twist", 2.0,
                   encode_command(TopicCfg(topic="/cmd_vel", type="geometry_msgs/Twist"), np.array([0.3, -0.2]), 0.1)),
    ]
    write_bag(tmp_path / name, messages)
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_bag(tmp_path / name, messages)
    image, trajectory, twist = list(read_bag(tmp_path / name))
    assert image.data["encoding"] == "32FC1" and image.stamp_s == pytest.approx(1.0)
    np.testing.assert_array_equal(np.frombuffer(image.data["data"], np.float32).reshape(3, 4, 1), depth)
    assert trajectory.data["joint_names"] == ["a", "b"] and trajectory.data["points"][0]["positions"] == [0.5, -1.0]
    assert trajectory.data["points"][0]["time_from_start"] == pytest.approx(0.02)
    assert twist.data["linear"]["x"] == pytest.approx(0.3) and twist.data["angular"]["z"] == pytest.approx(-0.2)


def test_a_tactile_episode_bag_replays_to_the_same_actions(tmp_path):
    """Per-pad Images and taxel arrays, proprioception and Twist commands through a bag and back:
    a policy reading every sensed entry gives, open loop on the replayed observations, the
    recorded commands (so every pad's pixels and forces survived the trip)."""
    import torch

    from embodied.sim2real.ros.bags import record_episode_bag, replay_bag
    from embodied.sim2real.ros.config import load_bridge_cfg

    task = "Tactile/PegInsert-v0"

    def policy(obs):
        image, forces = obs["tactile_image"].float(), obs["force_field"].float()
        assert not obs["privileged"].any()  # a robot cannot sense it, and neither can the deployed policy
        features = torch.stack([image[0].mean() / 255, image[1].mean() / 255, image[0, 1].std() / 64,
                                forces[0].abs().sum() / 10, forces[1].abs().sum() / 10, obs["proprio"][2] * 10])
        return torch.tanh(features - 0.5)

    cfg = load_bridge_cfg(task)
    summary = record_episode_bag(task, policy, tmp_path / "peg.bag", cfg, seed=3)
    assert summary["steps"] == 150
    topics = {m.topic for m in read_bag(tmp_path / "peg.bag")}
    assert {"/tactile/left/image_raw", "/tactile/right/image_raw", "/tactile/left/force_field", "/servo/twist_cmd"} <= topics
    replay = replay_bag(tmp_path / "peg.bag", task, cfg, policy_fn=policy, rollout_path=tmp_path / "peg.npz")
    assert replay["pairs"] == 150 and replay["rejected"] == 0
    assert replay["action_error_max"] < 1e-6  # wire = action * (1 or 5): float rounding only
    with np.load(tmp_path / "peg.npz", allow_pickle=False) as data:
        assert data["obs/tactile_image"].shape == (150, 2, 3, 60, 80)
