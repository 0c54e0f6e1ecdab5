"""One parametrised contract test over every registered task (as Gymnasium and dm_control do).

Every task added later is covered automatically: make, the batched spec checker, Gymnasium's
env checker on the single env, seeded determinism, non-constant observations, randomised
initial states, spec pickling and JSON, render shape, and Gymnasium's make_vec.
"""

from __future__ import annotations

import json
import pickle

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import embodied
from embodied.config import to_dict
from embodied.sim.check import check_batched_env, check_render
from embodied.sim.env import map_obs
from embodied.tasks import registry

TASKS = registry.list_tasks()


def flat(obs) -> torch.Tensor:
    if isinstance(obs, dict):
        return torch.cat([v.reshape(v.shape[0], -1).float() for v in obs.values()], dim=1)
    return obs.reshape(obs.shape[0], -1).float()


def initial_state(env, obs) -> torch.Tensor:
    """Observation and simulator state, one flat row per env (with the tensors of ``state_dict()["sim"]``)."""
    leaves = [flat(obs).double().cpu()]

    def collect(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)
        elif isinstance(value, torch.Tensor | np.ndarray) and value.ndim >= 1 and len(value) == env.num_envs:
            leaves.append(torch.as_tensor(value).reshape(env.num_envs, -1).double().cpu())

    collect(env.state_dict()["sim"])
    return torch.cat(leaves, dim=1)


def rollout(task_id: str, seed: int, steps: int, device: str) -> tuple[list, list]:
    env = embodied.make(task_id, num_envs=2, device=device, seed=seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [flat(obs)], []
    for _ in range(steps):
        obs, reward, *_ = env.step(env.random_action())
        observations.append(flat(obs))
        rewards.append(reward)
    env.close()
    return observations, rewards


def test_registry_lists_tasks_of_each_family_present():
    assert "Control/Pendulum-v0" in TASKS
    for task_id in TASKS:
        assert registry.ID_PATTERN.match(task_id)


@pytest.mark.parametrize("task_id", TASKS, ids=TASKS)
def test_batched_contract(task_id, device):
    env = embodied.make(task_id, num_envs=3, device=device, seed=0)
    check_batched_env(env)
    env.close()


@pytest.mark.parametrize("task_id", TASKS, ids=TASKS)
def test_gymnasium_env_checker(task_id):
    env = gymnasium.make(f"embodied:{task_id}")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task_id", TASKS, ids=TASKS)
def test_seeded_determinism(task_id, device):
    obs_a, rew_a = rollout(task_id, 7, 50, device)
    obs_b, rew_b = rollout(task_id, 7, 50, device)
    for a, b in zip(obs_a, obs_b, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(rew_a, rew_b, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("task_id", TASKS, ids=TASKS)
def test_observations_change_and_initial_states_are_random(task_id, device):
    observations, _ = rollout(task_id, 3, 20, device)
    stacked = torch.stack(observations)
    assert (stacked.std(0) > 0).any(), "observations never change"
    env = embodied.make(task_id, num_envs=2, device=device)
    # The state, not only the observation: a Darkroom trial starts at the same corner with the
    # goal hidden, so its first observations are equal by design while its goals differ.
    first = initial_state(env, env.reset(seed=1)[0])
    second = initial_state(env, env.reset(seed=2)[0])
    assert not torch.equal(first, second), "different seeds gave the same initial state"
    assert not torch.equal(first[0], first[1]), "envs in a batch start identically"


@pytest.mark.parametrize("task_id", TASKS, ids=TASKS)
def test_spec_pickles_and_config_is_json(task_id):
    spec = registry.spec(task_id)
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert pickle.loads(pickle.dumps(gymnasium.spec(task_id))).id == task_id
    json.dumps(spec.to_dict())
    cfg = registry.load_cfg(task_id)
    assert registry.load_cfg(task_id, **to_dict(cfg)) == cfg


@pytest.mark.parametrize("task_id", TASKS, ids=TASKS)
def test_render_shape(task_id):
    env = embodied.make(task_id, num_envs=2, seed=0)
    env.reset(seed=0)
    check_render(env)
    env.close()


@pytest.mark.parametrize("task_id", TASKS, ids=TASKS)
def test_gymnasium_make_vec_gives_the_batched_env(task_id):
    env = gymnasium.make_vec(f"embodied:{task_id}", 4, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=0)
    assert map_obs(obs, lambda x: x.shape[0]) in (4, {k: 4 for k in obs} if isinstance(obs, dict) else 4)
    _, reward, *_ = env.step(env.random_action())
    assert reward.shape == (4,)
    env.close()
