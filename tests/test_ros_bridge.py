"""The ROS bridge core with the in-memory transport: no ROS needed, simulated time.

A ``World`` owns the clock: the bridge's sleeps advance it, and while it advances the world
publishes observations the way a robot's driver would, until the test "kills" that publisher.
"""

from __future__ import annotations

import os
import signal
import threading

import gymnasium
import numpy as np
import pytest
import torch

from embodied.assets import asset_path
from embodied.config import ConfigError
from embodied.sim2real.ros.bridge import BridgeError, PolicyBridge, RosRobot, learner_policy
from embodied.sim2real.ros.codecs import (
    BadMessage,
    decode_command,
    decode_observation,
    encode_command,
    encode_observation,
    join_observation,
    split_observation,
    topic_spaces,
)
from embodied.sim2real.ros.config import BridgeCfg, SafetyCfg, TopicCfg, load_bridge_cfg
from embodied.sim2real.ros.sim_node import SimNode
from embodied.sim2real.ros.transport import InMemoryTransport

JOINTS = ("shoulder", "elbow", "wrist")
OBS_SPACE = gymnasium.spaces.Box(-10.0, 10.0, (3,), np.float32)
ACTION_SPACE = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)


def arm_cfg(**changes) -> BridgeCfg:
    cfg = BridgeCfg(
        rate_hz=100.0,
        observations=[TopicCfg(topic="/joint_states", type="sensor_msgs/JointState", names=JOINTS)],
        command=TopicCfg(topic="/cmd", type="std_msgs/Float64MultiArray"),
        action_scale=2.0,
        action_offset=1.0,
        safety=SafetyCfg(safe_action="hold"),
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


class World:
    """Simulated time; a joint-state publisher at ``publish_hz`` that stops at ``publisher_dies_at``."""

    def __init__(self, transport: InMemoryTransport, publish_hz: float = 100.0, publisher_dies_at: float = 1e9):
        self.t = 0.0
        self.transport = transport
        self.publish_period = 1.0 / publish_hz
        self.next_publish = 0.0
        self.publisher_dies_at = publisher_dies_at
        self.transport.advertise("/joint_states", "sensor_msgs/JointState")

    def clock(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        end = self.t + max(dt, 1e-6)
        while self.next_publish <= end and self.next_publish < self.publisher_dies_at:
            self.t = max(self.t, self.next_publish)
            # The robot reports its joints in its own order, not the training order.
            self.transport.publish("/joint_states", {"name": ["wrist", "shoulder", "elbow"],
                                                     "position": [0.3, 0.1, 0.2], "velocity": [], "effort": []})
            self.next_publish += self.publish_period
        self.t = end


def make_bridge(policy, cfg: BridgeCfg | None = None, **world_kw):
    transport = InMemoryTransport()
    world = World(transport, **world_kw)
    robot = RosRobot(cfg or arm_cfg(), OBS_SPACE, ACTION_SPACE, transport, clock=world.clock)
    return PolicyBridge(policy, robot, clock=world.clock, sleep=world.sleep), transport, world


def commands(transport: InMemoryTransport, topic: str = "/cmd") -> np.ndarray:
    return np.array([m["data"] for m in transport.published[topic]])


# ---------------------------------------------------------------------- codecs
def test_joint_state_is_reordered_by_name_and_checked():
    topic = TopicCfg(topic="/j", type="sensor_msgs/JointState", names=JOINTS)
    msg = {"name": ["elbow", "wrist", "shoulder"], "position": [2.0, 3.0, 1.0]}
    assert decode_observation(topic, msg, (3,), np.dtype(np.float32)).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(BadMessage, match=r"joints \['wrist'\] missing"):
        decode_observation(topic, {"name": ["elbow", "shoulder"], "position": [2.0, 1.0]}, (3,), np.dtype(np.float32))
    with pytest.raises(BadMessage, match="3 names but 2 position values"):
        decode_observation(topic, {"name": list(JOINTS), "position": [1.0, 2.0]}, (3,), np.dtype(np.float32))
    with pytest.raises(BadMessage, match="NaN or inf at indices \\[1\\]"):
        decode_observation(topic, {"name": list(JOINTS), "position": [1.0, float("nan"), 3.0]}, (3,),
                           np.dtype(np.float32))


def test_array_and_image_sizes_are_checked():
    array = TopicCfg(topic="/a", type="std_msgs/Float64MultiArray")
    with pytest.raises(BadMessage, match="2 values, expected 3"):
        decode_observation(array, {"data": [1.0, 2.0]}, (3,), np.dtype(np.float32))
    image = TopicCfg(topic="/depth", type="sensor_msgs/Image", key="depth")
    depth = np.random.default_rng(0).random((4, 5, 1)).astype(np.float32)
    msg = encode_observation(image, depth, 0.0)
    assert msg["encoding"] == "32FC1" and msg["step"] == 20
    np.testing.assert_array_equal(decode_observation(image, msg, (4, 5, 1), np.dtype(np.float32)), depth)
    with pytest.raises(BadMessage, match="has 20 values, expected 30"):
        decode_observation(image, msg, (5, 6, 1), np.dtype(np.float32))
    with pytest.raises(BadMessage, match="encoding 'bgr16' not supported"):
        decode_observation(image, {**msg, "encoding": "bgr16"}, (4, 5, 1), np.dtype(np.float32))


@pytest.mark.parametrize("kind", ["std_msgs/Float64MultiArray", "trajectory_msgs/JointTrajectory", "geometry_msgs/Twist"])
def test_command_messages_round_trip(kind):
    topic = TopicCfg(topic="/cmd", type=kind, names=("linear.x", "angular.z") if "Twist" in kind else ("a", "b"))
    msg = encode_command(topic, np.array([0.5, -0.25]), 0.02)
    np.testing.assert_array_equal(decode_command(topic, msg, 2), [0.5, -0.25])
    if kind == "trajectory_msgs/JointTrajectory":
        assert msg["joint_names"] == ["a", "b"] and msg["points"][0]["time_from_start"] == 0.02
        with pytest.raises(BadMessage, match="expected \\['a', 'b'\\]"):
            decode_command(topic, {**msg, "joint_names": ["a", "c"]}, 2)


def test_shipped_configs_load_and_bad_keys_are_named(tmp_path):
    for task in ("Control/Pendulum-v0", "Beam/OrbitCorrection-CM1-v0", "Nav/ObjectNav-v0"):
        assert load_bridge_cfg(task).observations
    bad = tmp_path / "bridge.yaml"
    bad.write_text("rate_hz: 100\ncommand: {topik: /cmd}\n")
    with pytest.raises(ConfigError, match="unknown config key 'command.topik'.*did you mean 'topic'"):
        load_bridge_cfg("Control/Pendulum-v0", bad)
    with pytest.raises(ConfigError, match="rate_hz must be positive"):
        load_bridge_cfg("Control/Pendulum-v0", overrides={"rate_hz": 0})


# ---------------------------------------------------------------------- the loop
def test_policy_actions_are_scaled_limited_and_reported():
    seen = []
    bridge, transport, _ = make_bridge(lambda obs: (seen.append(obs.clone()), torch.tensor([0.25, -0.5]))[1])
    stats = bridge.run(steps=50)
    assert seen[0].tolist() == pytest.approx([0.1, 0.2, 0.3])  # the training order, not the wire's
    wire = commands(transport)
    # Before the first joint state arrives the safe action goes out; then action * 2 + 1.
    np.testing.assert_allclose(wire[-2], [1.5, 0.0])
    assert stats.policy_steps >= 48 and stats.faults["missing"] <= 1
    assert stats.answered >= 48 and len(stats.latencies_ms) == stats.policy_steps
    status = [m["data"] for m in transport.published["/embodied/status"]]
    assert '"state": "ok"' in status[1] and '"state": "safe"' in status[-1]


@pytest.mark.parametrize("extreme", [1e6, -1e9, float("nan"), float("inf")])
def test_extreme_policy_output_never_reaches_the_wire_outside_the_bounds(extreme):
    bridge, transport, _ = make_bridge(lambda obs: torch.full((2,), extreme))
    stats = bridge.run(steps=20)
    wire = commands(transport)
    assert np.isfinite(wire).all()
    assert (wire >= -1.0 * 2 + 1).all() and (wire <= 1.0 * 2 + 1).all()  # [low, high] * scale + offset
    if np.isnan(extreme) or np.isinf(extreme):
        assert stats.nonfinite == stats.policy_steps
    else:
        assert stats.clipped >= stats.policy_steps


def test_wrongly_shaped_policy_output_sends_the_safe_action():
    bridge, transport, _ = make_bridge(lambda obs: torch.zeros(5))
    stats = bridge.run(steps=10)
    assert stats.policy_steps == 0 and stats.faults["shape"] >= 9
    assert "wrong shape" in transport.published["/embodied/status"][-2]["data"]


def test_dead_publisher_trips_the_watchdog_within_two_periods():
    # Hold: the safe action repeats the last applied command.
    bridge, transport, world = make_bridge(lambda obs: torch.tensor([0.5, 0.5]), publisher_dies_at=0.5)
    stats = bridge.run(duration_s=1.0)
    assert len(stats.watchdog_trips_ms) == 1
    assert stats.watchdog_trips_ms[0] <= 2 * bridge.cfg.period_s * 1e3
    assert stats.faults["stale"] >= 40  # every tick after the publisher died
    wire = commands(transport)
    np.testing.assert_allclose(wire[-1], [2.0, 2.0])  # held, not zero
    assert "stale observation on /joint_states" in stats.last_reason or stats.last_reason.startswith("stop")


def test_zero_safe_action_and_late_inference():
    cfg = arm_cfg(safety=SafetyCfg(safe_action="zero"))
    holder: dict = {}

    def slow_policy(obs):
        holder["world"].t += 0.05  # five periods of inference
        return torch.tensor([0.5, 0.5])

    bridge, transport, world = make_bridge(slow_policy, cfg)
    holder["world"] = world
    stats = bridge.run(steps=10)
    assert stats.policy_steps == 0 and stats.faults["late"] >= 9 and stats.overruns >= 9
    assert (commands(transport) == [1.0, 1.0]).all()  # zero * 2 + 1 on the wire


def test_bad_messages_are_rejected_and_the_loop_keeps_running(caplog):
    bridge, transport, world = make_bridge(lambda obs: torch.tensor([0.1, 0.1]))
    original_sleep = world.sleep

    def sleep_with_garbage(dt):
        transport.publish("/joint_states", {"name": ["shoulder", "elbow"], "position": [1.0, 2.0]})
        transport.publish("/joint_states", {"name": list(JOINTS), "position": [1.0, float("nan"), 2.0]})
        original_sleep(dt)

    world.sleep = sleep_with_garbage  # type: ignore[method-assign]
    bridge.sleep = sleep_with_garbage
    with caplog.at_level("WARNING"):
        stats = bridge.run(steps=30)
    assert stats.rejected["/joint_states"] >= 50 and stats.policy_steps >= 28
    assert "joints ['wrist'] missing" in caplog.text and "NaN or inf" in caplog.text


def test_graph_going_away_stops_with_a_clear_error_after_the_safe_action():
    def policy(obs):
        if bridge.stats.steps == 20:
            transport.error = "the ROS master at http://127.0.0.1:1 went away"
        return torch.tensor([0.5, 0.5])

    bridge, transport, _ = make_bridge(policy)
    with pytest.raises(BridgeError, match="master at http://127.0.0.1:1 went away; the safe action was sent last"):
        bridge.run(steps=100)
    assert bridge.stats.steps == 20 and bridge.stats.faults["stop"] == 1  # the 21st found the graph gone
    np.testing.assert_allclose(commands(transport)[-1], [2.0, 2.0])


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigterm_stops_the_loop_and_sends_the_safe_action_last():
    cfg = arm_cfg(safety=SafetyCfg(safe_action="zero"))

    def policy(obs):
        if bridge.stats.steps == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        return torch.tensor([0.5, 0.5])

    bridge, transport, _ = make_bridge(policy, cfg)
    stats = bridge.run(steps=1000)
    assert stats.stop_reason == "SIGTERM" and stats.steps <= 12
    np.testing.assert_allclose(commands(transport)[-1], [1.0, 1.0])
    assert signal.getsignal(signal.SIGTERM) is not None


def test_sim_node_and_policy_node_in_lockstep():
    """The shipped Pendulum policy drives the sim node through the shipped control config."""
    from embodied.policies.train import load_policy

    transport = InMemoryTransport()
    cfg = load_bridge_cfg("Control/Pendulum-v0", overrides={"rate_hz": 100})
    sim = SimNode("Control/Pendulum-v0", cfg, transport, mode="command", seed=3)
    sim.start()
    learner, _ = load_policy(asset_path("policies", "control_pendulum_sac.pt"))
    env = sim.robot.env
    t = [0.0]

    def sleep(dt):
        t[0] += dt

    robot = RosRobot(cfg, env.single_observation_space, env.single_action_space, transport, clock=lambda: t[0])
    stats = PolicyBridge(learner_policy(learner), robot, clock=lambda: t[0], sleep=sleep).run(steps=400)
    # The sim's first observation went out before the bridge subscribed, so step 1 sends the safe
    # action; every command since was answered before the next tick.
    assert stats.steps == 400 and stats.policy_steps == stats.answered == 399
    assert sim.commands == stats.commands_sent == 401  # 400 policy actions and the final safe one
    assert sim.episode_returns and sim.episode_returns[0] > -400  # swung up and balanced (random: about -1200)
    sim.close()


@pytest.mark.parametrize("task_id", ["Beam/OrbitCorrection-CM1-v0", "Nav/ObjectNav-v0", "Tactile/PegInsert-v0"])
def test_shipped_family_configs_serve_and_drive_their_tasks(task_id):
    """BPM arrays for the beam; depth and colour Images plus arrays for a dict observation (Nav);
    an Image and a taxel array per tactile pad, the teacher's privileged state unobserved (Tactile)."""
    transport = InMemoryTransport()
    cfg, now = load_bridge_cfg(task_id), [0.0]
    sim = SimNode(task_id, cfg, transport, clock=lambda: now[0])
    space = sim.robot.action_space
    robot = RosRobot(cfg, sim.robot.observation_space, space, transport, clock=lambda: now[0])
    robot.connect()
    sim.start()
    expected = sim.robot.read_observation()  # what the first policy step must see
    seen = []
    bridge = PolicyBridge(lambda obs: (seen.append(obs), torch.zeros(space.shape))[1], robot, clock=lambda: now[0])
    for _ in range(5):
        bridge.step()
        now[0] += cfg.period_s
    assert bridge.stats.policy_steps == 5 and sim.commands == 5 and not robot.rejected
    got = seen[0]
    if isinstance(expected, dict):
        assert set(got) == set(expected)
        for key in expected:
            want = torch.zeros_like(expected[key]) if key in cfg.unobserved else expected[key]
            torch.testing.assert_close(got[key], want.to(got[key].dtype), msg=key)
        assert "tactile_image" not in got or got["tactile_image"].float().std() > 10  # real gel images crossed
    else:
        torch.testing.assert_close(got, expected)
    sim.close()


def test_tactile_pads_travel_as_one_image_each_channels_first_in_the_observation():
    topic = TopicCfg(topic="/tactile/left/image_raw", type="sensor_msgs/Image", key="tactile_image", index=0,
                     layout="CHW")
    image = np.random.default_rng(1).integers(0, 256, (3, 6, 8), dtype=np.uint8)  # channels, rows, columns
    msg = encode_observation(topic, image, 0.0)
    assert (msg["height"], msg["width"], msg["encoding"], msg["step"]) == (6, 8, "rgb8", 24)
    # On the wire, pixel (row 2, column 5) is three consecutive bytes: its R, G, B.
    pixel = np.frombuffer(msg["data"], np.uint8).reshape(6, 8, 3)[2, 5]
    np.testing.assert_array_equal(pixel, image[:, 2, 5])
    np.testing.assert_array_equal(decode_observation(topic, msg, (3, 6, 8), np.dtype(np.uint8)), image)


def test_topics_must_cover_every_entry_once():
    space = gymnasium.spaces.Dict({
        "pads": gymnasium.spaces.Box(0, 255, (2, 3, 4, 4), np.uint8),
        "proprio": gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32),
        "privileged": gymnasium.spaces.Box(-1.0, 1.0, (5,), np.float32),
    })

    def pad(i):
        return TopicCfg(topic=f"/pad{i}", type="sensor_msgs/Image", key="pads", index=i, layout="CHW")

    proprio = TopicCfg(topic="/proprio", key="proprio")
    good = BridgeCfg(observations=[pad(1), proprio, pad(0)], unobserved=("privileged",))
    assert topic_spaces(good, space)["/pad1"].shape == (3, 4, 4)
    values = split_observation(good, space.sample())
    joined = join_observation(good, space, values)
    np.testing.assert_array_equal(joined["pads"][1], values["/pad1"])
    assert not joined["privileged"].any()
    for observations, unobserved, error in [
        ([pad(0), proprio], ("privileged",), r"pads has 2 slices, but topics for \[0\]"),
        ([pad(0), pad(1), pad(2), proprio], ("privileged",), "index 2 is not one of the 2 slices"),
        ([pad(0), pad(1), proprio], (), r"entries \['privileged'\] have no topic"),
        ([pad(0), pad(1), proprio], ("privileged", "proprio"), "listed as unobserved but have a topic"),
        ([pad(0), pad(1), proprio], ("privileged", "velocity"), "not observation entries"),
        ([pad(0), pad(1), proprio, TopicCfg(topic="/all", key="pads")], ("privileged",), "whole and in slices"),
    ]:
        with pytest.raises(ValueError, match=error):
            topic_spaces(BridgeCfg(observations=observations, unobserved=unobserved), space)
    with pytest.raises(ConfigError, match="index must be >= 0"):
        load_bridge_cfg("Tactile/PegInsert-v0", overrides={"observations": [{"topic": "/p", "index": -2}]})


def test_nav_base_gets_one_twist_per_discrete_action_and_the_sim_node_maps_it_back():
    """The shipped Nav config: argmax over the scores picks a (linear.x, angular.z) row held for one
    period, which is Habitat's step (0.25 m, 30 degrees) at the config's rate."""
    from embodied.sim.nav.agent import ACTION_NAMES, AgentCfg

    cfg, now = load_bridge_cfg("Nav/ObjectNav-v0"), [0.0]
    agent = AgentCfg()
    rows = np.asarray(cfg.command.discrete)
    assert cfg.command.type == "geometry_msgs/Twist" and len(rows) == len(ACTION_NAMES)
    np.testing.assert_allclose(rows * cfg.period_s, [[0, 0], [agent.forward_step, 0],
                                                     [0, np.radians(agent.turn_angle)], [0, -np.radians(agent.turn_angle)]])
    transport = InMemoryTransport()
    sim = SimNode("Nav/ObjectNav-v0", cfg, transport, clock=lambda: now[0])
    robot = RosRobot(cfg, sim.robot.observation_space, sim.robot.action_space, transport, clock=lambda: now[0])
    robot.connect()
    sim.start()
    chosen = [1, 2, 1, 3, 1]  # forward, left, forward, right, forward
    scores = iter(torch.nn.functional.one_hot(torch.tensor(chosen), 4).float() * 0.8 - 0.1)
    bridge = PolicyBridge(lambda obs: next(scores), robot, clock=lambda: now[0])
    applied = []
    for _ in chosen:
        bridge.step()
        applied.append(int(np.argmax(sim.last_action)))
        now[0] += cfg.period_s
    twists = [(m["linear"]["x"], m["angular"]["z"]) for m in transport.published["/cmd_vel"]]
    np.testing.assert_allclose(twists, rows[chosen])
    assert applied == chosen and sim.rejected == 0
    # A twist that is none of the four actions is rejected with its reason, and nothing moves.
    transport.publish("/cmd_vel", encode_command(cfg.command, np.array([0.3, 0.0]), cfg.period_s))
    assert sim.rejected == 1 and "none of the discrete actions" in sim.last_rejection and sim.steps == len(chosen)
    robot.send_safe_action()
    assert transport.published["/cmd_vel"][-1]["linear"]["x"] == 0.0  # the safe action: zero scores -> stop
    with pytest.raises(ValueError, match="3 rows for a task with 4 actions"):
        SimNode("Nav/ObjectNav-v0", load_bridge_cfg("Nav/ObjectNav-v0", overrides={"command.discrete": rows[:3].tolist()}),
                InMemoryTransport())
    sim.close()
