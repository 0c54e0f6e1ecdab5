"""The bridge config: which topics carry what, at which rate, under which limits.

One file (YAML or JSON) drives the policy node, the sim node and either ROS version. It is
read into :class:`BridgeCfg` through the suite's one config style
(:func:`embodied.config.apply_overrides`), so a typo fails naming the key, and command-line
``key=value`` overrides apply on top (``rate_hz=100``, ``command.topic=/arm/command``).

Shipped defaults, one per family, are assets (``assets/ros/<family>.yaml``);
:func:`load_bridge_cfg` starts from the family's file when no config is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from embodied.assets import ASSETS_DIR
from embodied.config import ConfigError, apply_overrides
from embodied.sim2real.safety import Bound, SafetyCfg

CONFIG_DIR = ASSETS_DIR / "ros"

MessageType = Literal[
    "sensor_msgs/JointState",
    "std_msgs/Float64MultiArray",
    "sensor_msgs/Image",
    "trajectory_msgs/JointTrajectory",
    "geometry_msgs/Twist",
]


@dataclass
class TopicCfg:
    """One topic and how its messages map to (part of) an observation or to the action."""

    topic: str = ""
    type: MessageType = "std_msgs/Float64MultiArray"
    key: str = ""
    """The dict-observation entry this topic fills; "" for a task whose observation is one vector."""
    names: tuple[str, ...] = ()
    """Element names in the order the policy was trained with (joint names for JointState and
    JointTrajectory, ``linear.x``-style fields for Twist). Incoming JointStates are reordered by
    name and rejected when a name is missing. Empty: ``<key or obs/action>_<i>``."""
    field: Literal["position", "velocity", "effort"] = "position"
    """The JointState (or JointTrajectory point) field that carries the values."""
    index: int = -1
    """For an observation entry stacked over sensors (``tactile_image`` is (pads, C, H, W)): the
    slice along its first axis this topic carries, one topic per pad; -1: the whole entry."""
    layout: Literal["HWC", "CHW"] = "HWC"
    """How the observation stores an image: ROS Images are rows x columns x channels, so a
    channels-first entry (the tactile images) is transposed on the way."""
    discrete: tuple[tuple[float, ...], ...] = ()
    """For a command of a task that acts by argmax over scores (the Nav family): one row of wire
    values per discrete action, e.g. the (linear.x, angular.z) a base holds for one period. The
    argmax's row is sent; the sim node maps a received row back to that action. Scale and offset
    do not apply. Empty: the action itself, scaled, is the command."""


@dataclass
class BridgeCfg:
    """Everything the policy node and the sim node agree on."""

    rate_hz: float = 50.0
    """Control rate of the policy node (and of the sim node in ``--mode rate``)."""
    obs_timeout_s: float = 0.0
    """The watchdog sends the safe action when the newest observation is older than this; 0: 1.5 periods."""
    inference_deadline_s: float = 0.0
    """An action computed later than this after the step began is replaced by the safe action; 0: one period."""
    observations: list[TopicCfg] = field(
        default_factory=lambda: [TopicCfg(topic="/joint_states", type="sensor_msgs/JointState")]
    )
    command: TopicCfg = field(default_factory=lambda: TopicCfg(topic="/command", type="std_msgs/Float64MultiArray"))
    status_topic: str = "/embodied/status"
    """std_msgs/String carrying a JSON heartbeat: step, state (ok / safe), the reason, latency."""
    status_every_s: float = 0.5
    """Heartbeat period; a change of state is published at once."""
    clock_topic: str = "/clock"
    """Where the sim node publishes simulated time (rosgraph_msgs/Clock)."""
    action_scale: Bound = 1.0
    """Wire command = action * action_scale + action_offset (per element or one for all)."""
    action_offset: Bound = 0.0
    safety: SafetyCfg = field(default_factory=SafetyCfg)
    """Bounds, rate limit and the safe action (``hold`` or ``zero``), in the task's action units."""
    master_check_every_s: float = 0.5
    """How often the ROS 1 backend asks whether the master is still there."""
    unobserved: tuple[str, ...] = ()
    """Dict-observation entries a robot cannot sense (a teacher's ``privileged`` simulator state):
    the policy node fills them with zeros, so only a policy that never reads them may be deployed."""

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def watchdog_timeout_s(self) -> float:
        return self.obs_timeout_s or 1.5 * self.period_s

    @property
    def deadline_s(self) -> float:
        return self.inference_deadline_s or self.period_s


def default_config_path(task_id: str) -> Path:
    """The shipped config of the task's family (``Control/Pendulum-v0`` -> ``assets/ros/control.yaml``)."""
    family = task_id.split("/", 1)[0].lower()
    path = CONFIG_DIR / f"{family}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no shipped ROS bridge config for family {family!r} (have {known}); pass --config FILE")
    return path


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file's top-level mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no bridge config at {path}")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a bridge config must be a mapping of keys to values, got {type(data).__name__}")
    return dict(data)


def load_bridge_cfg(task_id: str, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> BridgeCfg:
    """The config in ``path`` (default: the family's shipped file), then ``overrides``, checked."""
    path = Path(path) if path is not None else default_config_path(task_id)
    try:
        cfg = apply_overrides(BridgeCfg(), read_config_file(path))
        cfg = apply_overrides(cfg, dict(overrides or {}))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    check_bridge_cfg(cfg)
    return cfg


def check_bridge_cfg(cfg: BridgeCfg) -> None:
    """Values no type check catches: rates and timeouts must be positive, topics named."""
    if not cfg.rate_hz > 0:
        raise ConfigError(f"rate_hz must be positive, got {cfg.rate_hz}")
    if cfg.obs_timeout_s < 0 or cfg.inference_deadline_s < 0:
        raise ConfigError("obs_timeout_s and inference_deadline_s must be >= 0 (0 picks the default)")
    if not cfg.observations:
        raise ConfigError("observations must list at least one topic")
    for topic in [*cfg.observations, cfg.command]:
        if not topic.topic.startswith("/"):
            raise ConfigError(f"topic names must be absolute (start with '/'), got {topic.topic!r}")
    if cfg.command.type in ("sensor_msgs/JointState", "sensor_msgs/Image"):
        raise ConfigError(f"command.type {cfg.command.type!r} carries observations, not commands")
    if cfg.command.index != -1:
        raise ConfigError("command.index is for observation topics (one slice of a stacked entry)")
    rows = cfg.command.discrete
    if rows and (len({len(r) for r in rows}) != 1 or not rows[0]):
        raise ConfigError(f"command.discrete rows must all have the same, nonzero length, got {[list(r) for r in rows]}")
    for topic in cfg.observations:
        if topic.discrete:
            raise ConfigError(f"{topic.topic}: discrete is for the command topic")
        if topic.index < -1:
            raise ConfigError(f"{topic.topic}: index must be >= 0 (one slice) or -1 (the whole entry), got {topic.index}")
