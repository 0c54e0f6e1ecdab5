"""Suite tasks as RLlib environments.

RLlib's env runners are separate processes that know nothing of the suite's registry, so a
bare ``Control/Pendulum-v0`` fails there (``NamespaceNotFound``). The id with the module in
front, ``embodied:Control/Pendulum-v0``, makes Gymnasium import the suite first in every
process; :func:`register_rllib_env` does the same through RLlib's own registry, under a name
of your choice and with task settings:

    from ray.rllib.algorithms.ppo import PPOConfig
    config = PPOConfig().environment(rllib_env_id("Control/Pendulum-v0"))
    # or: config.environment(register_rllib_env("Control/Pendulum-v0", max_torque=1.5))

RLlib's ``rllib`` extra pins an older Gymnasium than the suite's: install ``ray[tune]`` and
RLlib's own needs (``dm_tree lz4 ormsgpack scipy``) instead (``docs/scaleout.md``).
"""

from __future__ import annotations

from typing import Any

import gymnasium

from embodied.tasks import registry


def rllib_env_id(task_id: str) -> str:
    """``embodied:<task_id>``: the form every RLlib worker can make (raises for unknown ids)."""
    registry.spec(task_id)
    return f"embodied:{task_id}"


def register_rllib_env(task_id: str, name: str = "", **task_overrides: Any) -> str:
    """Register ``task_id`` (with ``task_overrides``) in RLlib's env registry; returns the name
    to pass to ``AlgorithmConfig.environment``."""
    from ray.tune.registry import register_env

    env_id = rllib_env_id(task_id)

    def make(env_config: dict[str, Any]) -> gymnasium.Env:
        return gymnasium.make(env_id, **{**task_overrides, **dict(env_config)})

    name = name or f"{task_id}+rllib"
    register_env(name, make)
    return name
